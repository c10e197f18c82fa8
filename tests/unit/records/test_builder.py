"""The producer's batch builders: the pure-Python :class:`PyBatchBuilder` and its compiled
twin behave alike, and the compiled ``send_keyed`` does what ``Producer.send()``'s Python
code does for a keyed record (the partition mmh3 picks, the wall clock, the future)."""

from __future__ import annotations

import threading
import time
from types import ModuleType
from typing import Any

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.records.builder import PyBatchBuilder
from tests.compiled_codec import compiled_codec


@pytest.fixture(scope="module")
def codec() -> ModuleType:
    return compiled_codec()


_op = st.one_of(
    st.tuples(
        st.just("append"),
        st.integers(0, 2**62),
        st.none() | st.binary(max_size=8),
        st.none() | st.binary(max_size=8),
        st.integers(0, 300),
    ),
    st.tuples(st.just("close")),
)


def _run(builder: Any, ops: list[tuple[Any, ...]]) -> list[object]:
    out: list[object] = []
    for op in ops:
        if op[0] == "append":
            _, ts, key, value, size = op
            out.append(builder.append(ts, key, value, (), size))
        else:
            out.append(builder.close())
        out.append((len(builder), builder.size, builder.closed))
    out.append(list(builder.records))
    return out


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(0, 1000), ops=st.lists(_op, max_size=30))
def test_compiled_builder_twins_the_pure_python_one(
    codec: ModuleType, limit: int, ops: list[tuple[Any, ...]]
) -> None:
    assert _run(codec.BatchBuilder(limit), ops) == _run(PyBatchBuilder(limit), ops)


def test_a_builder_takes_its_first_record_whatever_its_size_then_keeps_to_the_limit(
    codec: ModuleType,
) -> None:
    for cls in (PyBatchBuilder, codec.BatchBuilder):
        b = cls(100)
        assert b.append(1, b"k", b"v", (), 500) == 0  # alone: taken
        assert b.append(2, b"k", b"v", (), 1) == -1
        c = cls(100)
        assert [c.append(i, None, None, (), 50) for i in range(3)] == [0, 1, -1]
        assert c.close() == 2
        assert c.append(9, None, None, (), 0) == -1  # closed
        assert c.records == [(0, None, None, ()), (1, None, None, ())]


def test_compiled_builder_subclasses_carry_slots(codec: ModuleType) -> None:
    class Batch(codec.BatchBuilder):  # type: ignore[misc, name-defined]
        __slots__ = ("topic",)

        def __init__(self, limit: int) -> None:
            super().__init__(limit)
            self.topic = "t"

    b = Batch(10)
    assert (b.append(1, b"k", None, (), 5), b.topic, b.limit) == (0, "t", 10)


def test_no_append_is_lost_to_a_close_from_another_thread(codec: ModuleType) -> None:
    """What append() accepted is in records once close() returned, and nothing after."""
    for cls in (PyBatchBuilder, codec.BatchBuilder):
        for _ in range(20):
            b = cls(10**9)
            accepted: list[int] = []

            def fill(b: Any = b, accepted: list[int] = accepted) -> None:
                i = 0
                while (index := b.append(i, None, b"x", (), 1)) >= 0:
                    accepted.append(index)
                    i += 1

            t = threading.Thread(target=fill)
            t.start()
            time.sleep(0.002)
            count = b.close()
            t.join()
            assert len(accepted) == count == len(b.records)
            assert [r[0] for r in b.records] == list(range(count))


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=64))
def test_compiled_murmur3_is_mmh3(codec: ModuleType, key: bytes) -> None:
    assert codec.murmur3(key) == mmh3.hash(key, 0, False)


class _Future(tuple[Any, int]):
    __slots__ = ()


@settings(max_examples=100, deadline=None)
@given(key=st.binary(max_size=40), value=st.none() | st.binary(max_size=40),
       partitions=st.integers(1, 16))
def test_send_keyed_appends_where_send_would(
    codec: ModuleType, key: bytes, value: bytes | None, partitions: int
) -> None:
    batches = [codec.BatchBuilder(10**6) for _ in range(partitions)]
    before = time.time_ns() // 1_000_000
    future = codec.send_keyed(batches, time.monotonic() + 60, key, value, _Future)
    after = time.time_ns() // 1_000_000
    partition = mmh3.hash(key, 0, False) % partitions  # Producer.send()'s choice
    assert type(future) is _Future
    assert future[0] is batches[partition] and future[1] == 0
    ((ts, k, v, headers),) = batches[partition].records
    assert before <= ts <= after and (k, v, headers) == (key, value, ())
    assert batches[partition].size == 36 + len(key) + len(value or b"")  # _RECORD_OVERHEAD


def test_send_keyed_leaves_every_other_case_to_python(codec: ModuleType) -> None:
    fresh = time.monotonic() + 60

    def batches() -> list[Any]:
        return [codec.BatchBuilder(100)]

    assert codec.send_keyed(batches(), fresh, None, b"v", _Future) is None  # null key
    assert codec.send_keyed(batches(), fresh, bytearray(b"k"), b"v", _Future) is None
    assert codec.send_keyed(batches(), fresh, b"k", "text", _Future) is None
    assert codec.send_keyed(batches(), time.monotonic() - 1, b"k", b"v", _Future) is None
    assert codec.send_keyed([None], fresh, b"k", b"v", _Future) is None  # no open batch
    assert codec.send_keyed([PyBatchBuilder(100)], fresh, b"k", b"v", _Future) is None
    closed = batches()
    closed[0].close()
    assert codec.send_keyed(closed, fresh, b"k", b"v", _Future) is None
    full = batches()
    assert full[0].append(1, None, None, (), 90) == 0
    assert codec.send_keyed(full, fresh, b"k", b"v", _Future) is None
    assert len(full[0]) == 1
