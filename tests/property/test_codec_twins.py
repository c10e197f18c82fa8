"""The compiled record codec (``logstore/records/_codec.c``) is a twin of the pure-Python
one: on any input both give the same bytes or the same records (same types, same values),
or both raise the same exception class.

Valid record sets come from ``tests/strategies.py`` (null keys and values, headers, lengths
across the 1-, 2- and 3-byte varint boundaries, negative and large timestamp deltas); the
decoder's arguments vary as its callers vary them (start offset, limit, a consumer's
topic and partition, a LOG_APPEND_TIME timestamp) and beyond (offsets near 2**63, counts
that lie). Damaged ones are valid sets with bytes flipped, replaced, inserted and cut,
and bytes made of varints and stray bytes. The compiled codec is called directly here;
which one logstore runs is tested in ``tests/unit/records/test_codec_twins.py``.
"""

from __future__ import annotations

import array
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logstore.records import batch, decode, validate
from logstore.types import ConsumerRecord, Record
from tests.compiled_codec import compiled_codec
from tests.strategies import RecordTuple, record_inputs

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@pytest.fixture(scope="module")
def codec() -> ModuleType:
    return compiled_codec()


def shape(value: object) -> object:
    """``value`` with the type of everything in it: bytes and bytearray, an int and a
    bool, a Record and a tuple compare equal, their shapes do not."""
    if isinstance(value, tuple | list):
        return (type(value), [shape(item) for item in value])
    return (type(value), value)


def outcome(function: Callable[..., object], *args: object) -> tuple[str, object]:
    """What calling ``function`` did: what it returned (shaped), or the class it raised."""
    try:
        result = function(*args)
    except Exception as err:
        return ("raised", type(err))
    return ("returned", shape(result))


def python_record_set(records: list[Any], base_timestamp: int) -> bytes:
    return b"".join(batch._encode_records(records, base_timestamp))


class Timestamped(NamedTuple):
    """A record type whose timestamp is not where Record's is (``_replace`` finds it)."""

    timestamp: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: object


RECORD_TYPES: list[tuple[type[Any], tuple[str, int] | tuple[()] | None]] = [
    (Record, None),
    (ConsumerRecord, ("events", 3)),
    (ConsumerRecord, ()),  # falsy: ("", -1), still prefixed
    (tuple, None),
    (Record, ("events", 3)),  # 7 items in a 5-field type: _replace refuses
    (ConsumerRecord, None),
    (Timestamped, None),
]

offsets = st.one_of(
    st.integers(0, 2**40),
    st.sampled_from([0, INT64_MAX, INT64_MAX - 2, INT64_MIN, -1]),
    st.integers(-(2**70), 2**70),
)


@st.composite
def decode_arguments(draw: st.DrawFn, count: int) -> tuple[Any, ...]:
    """``(count, base_offset, base_timestamp, fixed, start_offset, limit, record_type,
    topic_partition)`` for a record set of ``count`` records."""
    base_offset = draw(offsets, label="base_offset")
    record_type, topic_partition = draw(st.sampled_from(RECORD_TYPES), label="record_type")
    return (
        draw(st.just(count) | st.integers(-2, count + 3) | st.just(2**31 - 1), label="count"),
        base_offset,
        draw(offsets, label="base_timestamp"),
        draw(st.none() | st.none() | st.integers(0, 2**41), label="fixed"),
        draw(
            st.none()
            | st.integers(base_offset - 2, base_offset + count + 2)
            | st.integers(-(2**65), 2**65),
            label="start_offset",
        ),
        draw(st.none() | st.none() | st.integers(-2, count + 2), label="limit"),
        record_type,
        topic_partition,
    )


def assert_decoders_agree(
    codec: ModuleType, data: bytes, pos: int, end: int, arguments: tuple[Any, ...]
) -> tuple[str, object]:
    args = (data, pos, end, *arguments)
    compiled = outcome(codec.decode_record_set, *args)
    assert compiled == outcome(decode._decode_record_set, *args)
    return compiled


def assert_checkers_agree(codec: ModuleType, data: bytes, end: int, count: int) -> None:
    assert outcome(codec.check_record_set, data, end, count) == outcome(
        validate._check_record_set, data, end, count
    )


# --------------------------------------------------------------------------- encode


@SETTINGS
@given(records=record_inputs(), base=st.none() | offsets)
def test_encode_records_writes_the_bytes_the_python_twin_writes(
    codec: ModuleType, records: list[RecordTuple], base: int | None
) -> None:
    # base None: the first record's timestamp, as encode_batch passes; else any int, with
    # deltas past int64 that the Python code wraps (encode_batch refuses them before)
    base_timestamp = records[0][0] if base is None else base
    expected = python_record_set(records, base_timestamp)

    assert codec.encode_records(records, base_timestamp) == expected
    assert codec.encode_records(tuple(records), base_timestamp) == expected


payload_objects = st.one_of(
    st.none(),
    st.binary(max_size=20),
    st.binary(max_size=20).map(bytearray),
    st.binary(max_size=20).map(memoryview),
    st.binary(max_size=20).map(lambda b: memoryview(b)[::2]),  # not contiguous
    st.just(array.array("i", [1, 2])),  # len() 2, 8 bytes: written as the twin writes it
    st.sampled_from(["text", 7, 1.5, [1, 2]]),
)
header_objects = st.one_of(
    st.tuples(st.sampled_from(["k", "", "clé", "\ud800", b"k", 5]), payload_objects),
    st.sampled_from([("k",), ("k", b"v", b"w"), "ab", "a", 5, None]),
    st.lists(st.just("k"), max_size=2),
)
headers_objects = st.one_of(
    st.lists(header_objects, max_size=3),
    st.lists(header_objects, max_size=3).map(tuple),
    st.sampled_from([None, (), [], 0, "", {"ab": b"v"}, 5]),
)
timestamp_objects = st.one_of(st.integers(-(2**64), 2**64), st.sampled_from([True, 1.5, None, "1"]))
record_objects = st.one_of(
    st.tuples(timestamp_objects, payload_objects, payload_objects, headers_objects),
    st.tuples(timestamp_objects, payload_objects, payload_objects, headers_objects).map(list),
    st.sampled_from([(), (1, b"k", b"v"), (1, b"k", b"v", (), 5), 5, None]),
)


@settings(deadline=None, max_examples=300)
@given(
    records=st.lists(record_objects, max_size=4) | st.sampled_from([5, None, "ab"]),
    base=st.integers(-(2**64), 2**64) | st.sampled_from([1.5, None]),
)
def test_encode_records_fails_as_the_python_twin_fails_on_any_input(
    codec: ModuleType, records: object, base: object
) -> None:
    assert outcome(codec.encode_records, records, base) == outcome(python_record_set, records, base)


# --------------------------------------------------------------------------- decode


@SETTINGS
@given(records=record_inputs(), data=st.data())
def test_decode_record_set_returns_the_records_the_python_twin_returns(
    codec: ModuleType, records: list[RecordTuple], data: st.DataObject
) -> None:
    body = python_record_set(records, records[0][0])
    arguments = data.draw(decode_arguments(len(records)))

    assert_decoders_agree(codec, body, 0, len(body), arguments)


@SETTINGS
@given(records=record_inputs(max_size=10), base_offset=st.integers(0, 2**62))
def test_decode_record_set_decodes_every_record_when_arguments_are_a_readers(
    codec: ModuleType, records: list[RecordTuple], base_offset: int
) -> None:
    body = python_record_set(records, records[0][0])
    arguments = (len(records), base_offset, records[0][0], None, None, None, Record, None)

    result = assert_decoders_agree(codec, body, 0, len(body), arguments)

    assert result[0] == "returned"
    decoded = codec.decode_record_set(body, 0, len(body), *arguments)
    assert [(r.timestamp, r.key, r.value, tuple(r.headers)) for r in decoded] == [
        (t, k, v, tuple(h)) for t, k, v, h in records
    ]


@SETTINGS
@given(
    records=record_inputs(max_size=6, large_payloads=False),
    before=st.binary(max_size=8),
    after=st.binary(max_size=8),
    end_shift=st.integers(-3, 3),
    data=st.data(),
)
def test_decode_record_set_agrees_when_the_set_sits_inside_a_larger_buffer(
    codec: ModuleType,
    records: list[RecordTuple],
    before: bytes,
    after: bytes,
    end_shift: int,
    data: st.DataObject,
) -> None:
    body = python_record_set(records, records[0][0])
    buf = before + body + after
    end = len(before) + len(body) + end_shift  # reads past end stay inside buf, or not
    arguments = data.draw(decode_arguments(len(records)))

    assert_decoders_agree(codec, buf, len(before), end, arguments)
    assert_checkers_agree(codec, body + after, len(body) + end_shift, len(records))


@SETTINGS
@given(records=record_inputs(max_size=10))
def test_check_record_set_accepts_what_the_python_twin_accepts(
    codec: ModuleType, records: list[RecordTuple]
) -> None:
    body = python_record_set(records, records[0][0])

    assert codec.check_record_set(body, len(body), len(records)) is None
    assert_checkers_agree(codec, body, len(body), len(records) + 1)
    assert_checkers_agree(codec, body, len(body), len(records) - 1)


# --------------------------------------------------------------------------- damaged input

mutation = st.tuples(
    st.sampled_from(["flip", "replace", "insert", "cut", "truncate"]),
    st.integers(0, 10_000),  # where (modulo the length)
    st.integers(1, 255),  # what to xor a flipped byte with
    st.binary(min_size=1, max_size=4),  # bytes replaced or inserted
)


def mutate(body: bytes, mutations: list[tuple[str, int, int, bytes]]) -> bytes:
    out = bytearray(body)
    for kind, where, xor, piece in mutations:
        if not out:
            break
        at = where % len(out)
        if kind == "flip":
            out[at] ^= xor
        elif kind == "replace":
            out[at : at + len(piece)] = piece
        elif kind == "insert":
            out[at:at] = piece
        elif kind == "cut":
            del out[at : at + len(piece)]
        else:
            del out[at:]
    return bytes(out)


@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=record_inputs(max_size=5, large_payloads=False),
    mutations=st.lists(mutation, min_size=1, max_size=3),
    data=st.data(),
)
def test_damaged_record_set_fails_in_both_twins_alike(
    codec: ModuleType,
    records: list[RecordTuple],
    mutations: list[tuple[str, int, int, bytes]],
    data: st.DataObject,
) -> None:
    damaged = mutate(python_record_set(records, records[0][0]), mutations)
    arguments = data.draw(decode_arguments(len(records)))
    end = data.draw(st.just(len(damaged)) | st.integers(-2, len(damaged) + 3), label="end")

    assert_decoders_agree(codec, damaged, 0, end, arguments)
    assert_checkers_agree(codec, damaged, end, arguments[0])


def _record_set_like() -> st.SearchStrategy[bytes]:
    """Bytes that often parse part-way as records: varints of every size (10-byte ones
    past int64 too), small lengths, stray bytes."""
    pieces = st.one_of(
        st.integers(INT64_MIN, INT64_MAX).map(batch.encode_varint),
        st.integers(-2, 40).map(batch.encode_varint),
        st.binary(min_size=9, max_size=9).map(lambda b: bytes(x | 0x80 for x in b) + b"\x7f"),
        st.binary(max_size=6),
        st.just(b"\xff"),
        st.just(b"\x80" * 11),
        st.just("clé".encode()),
        st.just(b"\xed\xa0\x80"),  # a UTF-8 surrogate: not UTF-8 to Python
    )
    return st.lists(pieces, max_size=30).map(b"".join)


@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(body=_record_set_like(), data=st.data())
def test_record_set_like_bytes_give_the_same_outcome_in_both_twins(
    codec: ModuleType, body: bytes, data: st.DataObject
) -> None:
    arguments = data.draw(decode_arguments(data.draw(st.integers(0, 4), label="records")))
    end = data.draw(st.just(len(body)) | st.integers(-2, len(body) + 3), label="end")

    assert_decoders_agree(codec, body, 0, end, arguments)
    assert_checkers_agree(codec, body, end, arguments[0])


# --------------------------------------------------------------------------- varints


@SETTINGS
@given(value=st.integers(INT64_MIN, INT64_MAX) | st.integers(-(2**80), 2**80))
def test_encode_varint_writes_what_the_python_twin_writes(codec: ModuleType, value: int) -> None:
    assert codec.encode_varint(value) == batch.encode_varint(value)


@SETTINGS
@given(
    buf=st.binary(max_size=14) | _record_set_like(),
    pos=st.integers(-16, 16) | st.sampled_from([2**63, -(2**63) - 1, 2**70]),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_decode_varint_reads_what_the_python_twin_reads(
    codec: ModuleType, buf: bytes, pos: int, kind: type[Any]
) -> None:
    assert outcome(codec.decode_varint, kind(buf), pos) == outcome(
        batch.decode_varint, kind(buf), pos
    )
