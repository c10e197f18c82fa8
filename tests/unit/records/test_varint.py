"""Zig-zag varints of logstore.records.batch (Kafka varint/varlong, kafka.md §1.3)."""

from __future__ import annotations

import pytest

from logstore.records.batch import decode_varint, encode_varint

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# (value, expected encoding): protobuf zig-zag, low 7-bit group first.
KNOWN_ENCODINGS = [
    (0, "00"),
    (-1, "01"),
    (1, "02"),
    (-2, "03"),
    (63, "7e"),
    (-64, "7f"),
    (64, "8001"),
    (-65, "8101"),
    (8191, "fe7f"),
    (-8192, "ff7f"),
    (8192, "808001"),
    (-8193, "818001"),
    (300, "d804"),
    (INT32_MAX, "feffffff0f"),
    (INT32_MIN, "ffffffff0f"),
    (INT64_MAX, "feffffffffffffffff01"),
    (INT64_MIN, "ffffffffffffffffff01"),
]

BOUNDARIES = [
    0, 1, -1, 63, -63, 64, -64, 65, -65, 8191, -8191, 8192, -8192, 8193, -8193,
    16383, 16384, -16384, INT32_MAX, INT32_MIN, INT32_MAX + 1, INT32_MIN - 1,
    INT64_MAX, INT64_MIN,
]  # fmt: skip


@pytest.mark.parametrize(("value", "expected_hex"), KNOWN_ENCODINGS)
def test_encode_varint_matches_protobuf_zigzag(value: int, expected_hex: str) -> None:
    assert encode_varint(value).hex() == expected_hex


@pytest.mark.parametrize(("value", "expected_hex"), KNOWN_ENCODINGS)
def test_decode_varint_reads_protobuf_zigzag(value: int, expected_hex: str) -> None:
    encoded = bytes.fromhex(expected_hex)
    assert decode_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize("value", BOUNDARIES)
def test_varint_round_trips_at_boundary(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize(
    ("value", "size"),
    [(63, 1), (-64, 1), (64, 2), (-65, 2), (8191, 2), (-8192, 2), (8192, 3), (-8193, 3),
     (INT32_MAX, 5), (INT32_MIN, 5), (INT64_MAX, 10), (INT64_MIN, 10)],
)  # fmt: skip
def test_encode_varint_uses_minimal_length_at_boundary(value: int, size: int) -> None:
    assert len(encode_varint(value)) == size


def test_varint_round_trips_every_value_around_the_lookup_table() -> None:
    # The encoder serves 0..16383 from a table and computes the rest: cover both sides.
    buf = b"".join(encode_varint(v) for v in range(-20_000, 20_000))
    pos = 0
    for expected in range(-20_000, 20_000):
        value, pos = decode_varint(buf, pos)
        assert value == expected
    assert pos == len(buf)


def test_encode_varint_writes_null_length_as_0x01() -> None:
    assert encode_varint(-1) == b"\x01"


def test_decode_varint_reads_at_position_and_returns_next_position() -> None:
    buf = b"\xaa\xbb" + encode_varint(-8193) + encode_varint(5)
    value, pos = decode_varint(buf, 2)
    assert (value, pos) == (-8193, 5)
    assert decode_varint(buf, pos) == (5, 6)


def test_decode_varint_accepts_bytearray_and_memoryview() -> None:
    encoded = encode_varint(INT64_MIN)
    assert decode_varint(bytearray(encoded), 0) == (INT64_MIN, 10)
    assert decode_varint(memoryview(encoded), 0) == (INT64_MIN, 10)


def test_decode_varint_raises_index_error_when_buffer_ends_inside_varint() -> None:
    with pytest.raises(IndexError):
        decode_varint(b"\x80\x80", 0)


def test_decode_varint_raises_value_error_when_longer_than_10_bytes() -> None:
    with pytest.raises(ValueError, match="10 bytes"):
        decode_varint(b"\xff" * 11 + b"\x01", 0)
