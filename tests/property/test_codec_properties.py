"""Properties of the RecordBatch v2 codec: round trip, sizes, corruption detection.

Bit flips: the CRC-32C covers bytes [21, end) of a batch; the header checks cover
batchLength (8-11, a declared size) and magic (16). Two ranges are covered by neither,
on purpose (kafka.md §1.2): baseOffset (0-7), which the log rewrites in place on append,
and partitionLeaderEpoch (12-15), which a broker stamps. A flip there cannot be detected
and is not supposed to be; the tests pin down exactly what it changes instead.
"""

from __future__ import annotations

import contextlib
import struct

import crc32c
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from logstore.errors import CorruptRecordError
from logstore.records.batch import (
    HEADER_SIZE,
    batch_size,
    decode_header,
    encode_batch,
    encode_varint,
    scan,
)
from logstore.records.compression import compress, decompress
from logstore.records.decode import decode_batches
from logstore.types import Compression, Record
from tests.strategies import RecordTuple, base_offsets, compressions, record_inputs

SETTINGS = settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)

BASE_OFFSET = range(0, 8)
BATCH_LENGTH = range(8, 12)
PARTITION_LEADER_EPOCH = range(12, 16)
UNCHECKED = (*BASE_OFFSET, *PARTITION_LEADER_EPOCH)


def _as_inputs(records: list[Record]) -> list[tuple[object, ...]]:
    return [(r.timestamp, r.key, r.value, tuple(r.headers)) for r in records]


def _expected(records: list[RecordTuple]) -> list[tuple[object, ...]]:
    return [(t, k, v, tuple(h)) for t, k, v, h in records]


# --------------------------------------------------------------------------- round trip


@SETTINGS
@given(records=record_inputs(), compression=compressions(), base_offset=base_offsets())
def test_encode_batch_round_trips_records(
    records: list[RecordTuple], compression: Compression, base_offset: int
) -> None:
    buf = encode_batch(records, base_offset=base_offset, compression=compression)
    decoded = list(decode_batches(buf))
    assert [r.offset for r in decoded] == [base_offset + i for i in range(len(records))]
    assert _as_inputs(decoded) == _expected(records)
    assert all(type(r.key) in (bytes, type(None)) for r in decoded)
    assert all(type(r.value) in (bytes, type(None)) for r in decoded)


@SETTINGS
@given(records=record_inputs(), compression=compressions())
def test_encode_batch_size_matches_header(
    records: list[RecordTuple], compression: Compression
) -> None:
    buf = encode_batch(records, compression=compression)
    header = decode_header(buf)
    assert header is not None
    assert header.size == len(buf) == batch_size(buf)
    assert header.records_count == len(records)
    assert header.last_offset_delta == len(records) - 1
    assert header.compression == compression
    assert header.max_timestamp == max(r[0] for r in records)
    assert [h.size for h in scan(buf)] == [len(buf)]


@settings(deadline=None, max_examples=40)
@given(batches=st.lists(st.tuples(record_inputs(max_size=5, large_payloads=False),
                                  compressions()), min_size=1, max_size=5))
def test_decode_batches_round_trips_concatenated_batches(
    batches: list[tuple[list[RecordTuple], Compression]],
) -> None:
    buf, expected, offset = b"", [], 0
    for records, compression in batches:
        buf += encode_batch(records, base_offset=offset, compression=compression)
        expected += _expected(records)
        offset += len(records)
    decoded = list(decode_batches(buf))
    assert [r.offset for r in decoded] == list(range(offset))
    assert _as_inputs(decoded) == expected


# --------------------------------------------------------------------------- bit flips


def _checked_positions(size: int) -> st.SearchStrategy[int]:
    """Every byte position of a ``size``-byte batch except baseOffset and leader epoch."""
    return st.integers(0, size - 1 - len(UNCHECKED)).map(lambda i: i + 8 if i < 4 else i + 12)


@settings(deadline=None, max_examples=300)
@given(
    records=record_inputs(max_size=4, large_payloads=False),
    compression=compressions(),
    flip_second=st.booleans(),
    data=st.data(),
)
def test_batch_bit_flip_is_detected_when_outside_base_offset_and_leader_epoch(
    records: list[RecordTuple],
    compression: Compression,
    flip_second: bool,
    data: st.DataObject,
) -> None:
    first = encode_batch(records, compression=compression)
    second = encode_batch(records, base_offset=len(records), compression=compression)
    start = len(first) if flip_second else 0
    target = second if flip_second else first
    position = data.draw(_checked_positions(len(target)), label="byte")
    assert position not in UNCHECKED
    bit = data.draw(st.integers(0, 7), label="bit")
    buf = bytearray(first + second)
    buf[start + position] ^= 1 << bit

    try:
        decoded = list(decode_batches(buf))
    except CorruptRecordError as err:
        assert err.position == start
        return
    # Not raising is acceptable in one case only: the flip grew batchLength so that the
    # batch now looks like an incomplete tail, and scan stops before it, returning none of
    # its records (a larger length that still fits in the buffer would fail the CRC).
    assert position in BATCH_LENGTH
    assert batch_size(buf, start) > len(buf) - start
    assert [h.position for h in scan(buf)] == ([0] if flip_second else [])
    assert _as_inputs(decoded) == (_expected(records) if flip_second else [])


@settings(deadline=None, max_examples=100)
@given(
    records=record_inputs(max_size=4, large_payloads=False),
    compression=compressions(),
    position=st.sampled_from(BASE_OFFSET),
    bit=st.integers(0, 7),
)
def test_batch_bit_flip_in_base_offset_only_shifts_offsets(
    records: list[RecordTuple], compression: Compression, position: int, bit: int
) -> None:
    # Not covered by the CRC by design: the log assigns offsets by rewriting this field.
    buf = bytearray(encode_batch(records, base_offset=1000, compression=compression))
    buf[position] ^= 1 << bit
    (new_base,) = struct.unpack_from(">q", buf, 0)
    decoded = list(decode_batches(buf))
    assert [r.offset for r in decoded] == [new_base + i for i in range(len(records))]
    assert _as_inputs(decoded) == _expected(records)


@settings(deadline=None, max_examples=100)
@given(
    records=record_inputs(max_size=4, large_payloads=False),
    compression=compressions(),
    position=st.sampled_from(PARTITION_LEADER_EPOCH),
    bit=st.integers(0, 7),
)
def test_batch_bit_flip_in_leader_epoch_changes_no_record(
    records: list[RecordTuple], compression: Compression, position: int, bit: int
) -> None:
    # Not covered by the CRC by design: a broker stamps it; records do not depend on it.
    original = encode_batch(records, base_offset=7, compression=compression)
    buf = bytearray(original)
    buf[position] ^= 1 << bit
    header = decode_header(buf)
    assert header is not None
    assert header.partition_leader_epoch != -1
    assert list(decode_batches(buf)) == list(decode_batches(original))


# --------------------------------------------------------------------------- arbitrary input


def _must_raise_only_corrupt(buf: bytes) -> None:
    """Decode ``buf``; anything but CorruptRecordError escapes and fails the test."""
    with contextlib.suppress(CorruptRecordError):
        list(decode_batches(buf, skip_control=False))


@settings(deadline=None, max_examples=300)
@given(buf=st.binary(max_size=400))
def test_decode_batches_raises_only_corrupt_when_bytes_arbitrary(buf: bytes) -> None:
    _must_raise_only_corrupt(buf)


_HEADER = struct.Struct(">qiibIhiqqqhii")


def _batch_with_valid_crc(
    attributes: int, last_offset_delta: int, records_count: int, body: bytes
) -> bytes:
    """A batch whose header and CRC are right around an arbitrary record-set ``body``."""
    head = _HEADER.pack(
        0, HEADER_SIZE - 12 + len(body), -1, 2, 0, attributes, last_offset_delta,
        1_700_000_000_000, 1_700_000_000_000, -1, -1, -1, records_count,
    )  # fmt: skip
    crc = crc32c.crc32c(head[21:] + body)
    return head[:17] + struct.pack(">I", crc) + head[21:] + body


def _record_set_like() -> st.SearchStrategy[bytes]:
    """Bytes that often parse part-way as records: varints, small lengths, stray bytes."""
    pieces = st.one_of(
        st.integers(-(2**64), 2**64).map(lambda v: encode_varint(max(min(v, 2**63 - 1),
                                                                     -(2**63)))),
        st.integers(-2, 40).map(encode_varint),
        st.binary(max_size=6),
        st.just(b"\xff"),
        st.just(b"\x80" * 11),
    )
    return st.lists(pieces, max_size=30).map(b"".join)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    attributes=st.integers(-(2**15), 2**15 - 1) | st.integers(0, 0x3F),
    last_offset_delta=st.integers(-3, 5) | st.integers(-(2**31), 2**31 - 1),
    records_count=st.integers(-3, 5) | st.integers(-(2**31), 2**31 - 1),
    body=_record_set_like(),
    compress_body=st.booleans(),
)
def test_decode_batches_raises_only_corrupt_when_records_arbitrary_under_valid_crc(
    attributes: int, last_offset_delta: int, records_count: int, body: bytes,
    compress_body: bool,
) -> None:
    codec = attributes & 0x07
    if compress_body and 0 < codec <= Compression.ZSTD:
        # Well-formed compression around malformed records reaches the record parser.
        body = compress(Compression(codec), body)
    buf = _batch_with_valid_crc(attributes, last_offset_delta, records_count, body)
    _must_raise_only_corrupt(buf)
    _must_raise_only_corrupt(buf + buf[: len(buf) // 2])


@settings(deadline=None, max_examples=200)
@given(
    records=record_inputs(max_size=3, large_payloads=False),
    compression=compressions(),
    data=st.data(),
)
def test_decode_batches_raises_only_corrupt_when_record_bytes_mutated_under_valid_crc(
    records: list[RecordTuple], compression: Compression, data: st.DataObject
) -> None:
    buf = bytearray(encode_batch(records, compression=compression))
    body = bytearray(buf[HEADER_SIZE:])
    if compression != Compression.NONE:
        body = bytearray(decompress(compression, bytes(body)))
    position = data.draw(st.integers(0, len(body) - 1), label="position")
    replacement = data.draw(st.binary(min_size=0, max_size=4), label="replacement")
    end = data.draw(st.integers(position, min(len(body), position + 4)), label="end")
    mutated = bytes(body[:position]) + replacement + bytes(body[end:])
    assume(mutated != bytes(body))
    if compression != Compression.NONE:
        mutated = compress(compression, mutated)
    header = decode_header(buf)
    assert header is not None
    fresh = _batch_with_valid_crc(
        header.attributes, header.last_offset_delta, header.records_count, mutated
    )
    _must_raise_only_corrupt(fresh)
