"""The records half of the Backend Protocol, driven directly on every backend: what the
clients rely on below their public API, and what the wire server will (``append_batch``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore.backend import backend_for
from logstore.client.backend import Backend, PartitionFetch
from logstore.errors import (
    CorruptRecordError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    TopicNotFoundError,
)
from logstore.records import encode_batch
from logstore.types import ConsumerRecord, OffsetAndTimestamp, TopicPartition
from tests.conftest import FakeClock
from tests.fakes import MemoryBackend

T = "events"
TP0, TP1 = TopicPartition(T, 0), TopicPartition(T, 1)


@pytest.fixture(params=["local", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    if request.param == "memory":
        memory = MemoryBackend(clock)
        memory.create_topic(T, 2)
        yield memory
        return
    with logstore.open(str(tmp_path / "store"), clock=clock) as store:
        store.create_topic(T, 2)
        yield backend_for(store)  # type: ignore[misc]


def _append(backend: Backend, tp: TopicPartition, *values: bytes, **options: int) -> None:
    topic_id = backend.topic_metadata(tp.topic).topic_id
    rows = [(1000 * (i + 1), None, v, ()) for i, v in enumerate(values)]
    backend.append(tp, rows, topic_id=topic_id, **options)  # type: ignore[arg-type]


def _fetch(
    backend: Backend, positions: dict[TopicPartition, int], max_wait_ms: int = 0
) -> dict[TopicPartition, PartitionFetch]:
    return backend.fetch(positions, max_records=1000, max_bytes=1 << 20, max_wait_ms=max_wait_ms)


def _records(backend: Backend, tp: TopicPartition, offset: int = 0) -> list[ConsumerRecord]:
    answer = _fetch(backend, {tp: offset}).get(tp, [])
    assert isinstance(answer, list)
    return answer


def test_metadata_names_the_topic_its_id_and_partitions(backend: Backend) -> None:
    meta = backend.topic_metadata(T)

    assert (meta.name, meta.partitions, meta.partitioner) == (T, 2, "murmur3")
    assert meta.topic_id and meta.max_message_bytes > 0
    assert T in backend.list_topics()
    with pytest.raises(TopicNotFoundError):
        backend.topic_metadata("nope")


def test_append_assigns_offsets_and_fetch_returns_records(backend: Backend) -> None:
    topic_id = backend.topic_metadata(T).topic_id
    first = backend.append(TP0, [(5, b"k", b"a", [("h", b"1")]), (6, None, b"b", [])],
                           topic_id=topic_id)

    assert (first.base_offset, first.last_offset, first.records_count) == (0, 1, 2)
    assert _records(backend, TP0) == [
        ConsumerRecord(T, 0, 0, 5, b"k", b"a", (("h", b"1"),)),
        ConsumerRecord(T, 0, 1, 6, None, b"b", ()),
    ]
    assert [r.offset for r in _records(backend, TP0, 1)] == [1]
    assert backend.offset_range(TP0) == (0, 2)


def test_append_to_an_old_incarnation_writes_nothing(backend: Backend) -> None:
    with pytest.raises(TopicNotFoundError):
        backend.append(TP0, [(1, None, b"x", ())], topic_id="not-its-id")
    with pytest.raises(PartitionNotFoundError):
        _append(backend, TopicPartition(T, 2), b"x")
    assert backend.offset_range(TP0) == (0, 0)


def test_an_idempotent_batch_sent_twice_is_written_once(backend: Backend) -> None:
    producer_id, epoch = backend.init_producer_id()
    ids = {"producer_id": producer_id, "producer_epoch": epoch}

    _append(backend, TP0, b"a", b"b", base_sequence=0, **ids)
    _append(backend, TP0, b"a", b"b", base_sequence=0, **ids)  # the retry
    _append(backend, TP0, b"c", base_sequence=2, **ids)
    _append(backend, TP0, b"c")  # not idempotent: never deduplicated
    _append(backend, TP0, b"c")

    assert [r.value for r in _records(backend, TP0)] == [b"a", b"b", b"c", b"c", b"c"]
    assert backend.init_producer_id()[0] != producer_id


def test_fetch_budgets_cap_records_and_bytes_but_return_one_batch(backend: Backend) -> None:
    for _ in range(3):
        _append(backend, TP0, b"x" * 100, b"y" * 100)

    assert len(backend.fetch({TP0: 0}, max_records=3, max_bytes=1 << 20)[TP0]) == 3  # type: ignore[arg-type]
    assert len(backend.fetch({TP0: 0}, max_records=100, max_bytes=1)[TP0]) == 2  # type: ignore[arg-type]


def test_fetch_out_of_range_answers_per_partition(backend: Backend) -> None:
    _append(backend, TP1, b"a")

    answer = _fetch(backend, {TP0: 5, TP1: 0})

    error = answer[TP0]
    assert isinstance(error, OffsetOutOfRangeError)
    assert (error.offset, error.log_start_offset, error.log_end_offset) == (5, 0, 0)
    assert [r.value for r in answer[TP1]] == [b"a"]  # type: ignore[union-attr]
    assert not _fetch(backend, {TP0: 0}).get(TP0)  # at the end: nothing, no error
    with pytest.raises(TopicNotFoundError):
        _fetch(backend, {TopicPartition("nope", 0): 0})


def test_fetch_waits_until_a_record_is_appended(backend: Backend) -> None:
    timer = threading.Timer(0.05, _append, (backend, TP1, b"late"))
    timer.start()
    started = time.monotonic()

    answer = _fetch(backend, {TP0: 0, TP1: 0}, max_wait_ms=5000)

    timer.join()
    assert [r.value for r in answer[TP1]] == [b"late"]  # type: ignore[union-attr]
    assert time.monotonic() - started < 4


def test_fetch_with_nothing_to_read_waits_max_wait_ms(backend: Backend) -> None:
    started = time.monotonic()

    answer = _fetch(backend, {TP0: 0}, max_wait_ms=100)

    assert not answer.get(TP0)
    assert time.monotonic() - started >= 0.09


def test_offset_for_timestamp_finds_the_first_record_at_or_after_it(backend: Backend) -> None:
    _append(backend, TP0, b"a", b"b", b"c")  # timestamps 1000, 2000, 3000

    assert backend.offset_for_timestamp(TP0, 1500) == OffsetAndTimestamp(1, 2000)
    assert backend.offset_for_timestamp(TP0, 0) == OffsetAndTimestamp(0, 1000)
    assert backend.offset_for_timestamp(TP0, 3001) is None
    assert backend.offset_for_timestamp(TP1, 0) is None


def test_append_batch_takes_encoded_bytes_and_assigns_offsets(backend: Backend) -> None:
    _append(backend, TP0, b"first")
    batch = encode_batch([(7, b"k", b"v1", ()), (8, None, b"v2", (("h", None),))],
                         base_offset=99)

    result = backend.append_batch(TP0, batch)

    assert (result.base_offset, result.last_offset) == (1, 2)
    assert [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
            for r in _records(backend, TP0, 1)] == [
        (1, 7, b"k", b"v1", ()), (2, 8, None, b"v2", (("h", None),)),
    ]


def test_append_batch_refuses_a_corrupt_batch(backend: Backend) -> None:
    batch = bytearray(encode_batch([(7, None, b"value", ())]))
    batch[-1] ^= 0xFF

    with pytest.raises((CorruptRecordError, InvalidRecordError)):
        backend.append_batch(TP0, bytes(batch))
    assert backend.offset_range(TP0) == (0, 0)


def test_append_batch_deduplicates_by_the_batchs_producer_sequence(backend: Backend) -> None:
    producer_id, epoch = backend.init_producer_id()
    batch = encode_batch([(7, None, b"once", ())], producer_id=producer_id,
                         producer_epoch=epoch, base_sequence=0)

    backend.append_batch(TP0, batch)
    backend.append_batch(TP0, batch)

    assert [r.value for r in _records(backend, TP0)] == [b"once"]


def test_committed_offsets_carry_metadata_and_topic_id(backend: Backend) -> None:
    backend.commit_offsets("g", {TP0: (3, "note"), TP1: (0, "")})

    committed = backend.committed_offsets("g")
    assert {tp: (c.offset, c.metadata) for tp, c in committed.items()} == {
        TP0: (3, "note"), TP1: (0, ""),
    }
    assert committed[TP0].topic_id == backend.topic_metadata(T).topic_id
    assert set(backend.committed_offsets("g", [TP1])) == {TP1}
    backend.delete_offsets("g", [TP0])
    assert set(backend.committed_offsets("g")) == {TP1}
    assert backend.committed_offsets("other") == {}


def test_now_ms_is_the_backends_clock(backend: Backend, clock: FakeClock) -> None:
    assert backend.now_ms() == clock.now


def test_local_fetch_is_woken_by_another_stores_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append through another open of the store (as another process's) wakes a
    waiting fetch through the watcher (inotify): with the fetch's own safety re-look
    put off to 30 s, only the watcher can wake it within a second."""
    from logstore.backend import local

    monkeypatch.setattr(local, "_WAIT_RECHECK_S", 30.0)
    monkeypatch.setattr(local, "_WAIT_MAX_S", 30.0)  # the no-inotify fallback's pace too
    path = str(tmp_path / "store")
    with logstore.open(path) as reader_store, logstore.open(path) as writer_store:
        reader_store.create_topic(T, 1)
        reader = backend_for(reader_store)
        writer = backend_for(writer_store)
        done: list[float] = []

        def append_later() -> None:
            time.sleep(0.2)
            done.append(time.monotonic())
            _append(writer, TP0, b"from the other store")

        thread = threading.Thread(target=append_later)
        thread.start()
        answer = _fetch(reader, {TP0: 0}, max_wait_ms=10_000)
        woken = time.monotonic()
        thread.join()
        assert [r.value for r in answer[TP0]] == [b"from the other store"]  # type: ignore[union-attr]
        assert woken - done[0] < 1.0
