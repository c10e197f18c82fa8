"""RecordBatch v2 encoding, decoding and scanning (logstore.records.batch; kafka.md §1.2-1.3).

Header fields are parsed here with a struct written from the Kafka spec, not with the
module's own ``HEADER``, and CRCs are checked with kafka-python's pure-Python CRC-32C.
"""

from __future__ import annotations

import struct
import warnings

import pytest

from logstore.errors import CorruptRecordError, InvalidRecordError
from logstore.records.batch import (
    HEADER_SIZE,
    batch_size,
    check_batch,
    crc_valid,
    decode_header,
    encode_batch,
    encode_varint,
    scan,
    set_base_offset,
    set_log_append_time,
)
from logstore.records.decode import decode_batch_records, decode_batches, records_to_inputs
from logstore.types import Compression, Record, TimestampType

with warnings.catch_warnings():
    # ``import kafka`` trips a DeprecationWarning (importlib.resources.read_text) that
    # pytest's filterwarnings=error would turn into a collection error.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record._crc32c import crc as kafka_python_crc32c

# Kafka DefaultRecordBatch header, field by field (kafka.md §1.2).
SPEC_HEADER = struct.Struct(">q i i b I h i q q q h i i")
FIELDS = [
    "base_offset", "batch_length", "partition_leader_epoch", "magic", "crc", "attributes",
    "last_offset_delta", "base_timestamp", "max_timestamp", "producer_id", "producer_epoch",
    "base_sequence", "records_count",
]  # fmt: skip

T0 = 1_700_000_000_000
RECORDS = [
    (T0, b"k0", b"v0", ()),
    (T0 + 5, None, b"value one", (("h1", b"x"), ("h2", None))),
    (T0 + 70_000, b"k2", None, (("clé", b""),)),
]


def _fields(buf: bytes | bytearray, pos: int = 0) -> dict[str, int]:
    return dict(zip(FIELDS, SPEC_HEADER.unpack_from(buf, pos), strict=True))


def _kafka_crc(buf: bytes | bytearray, pos: int = 0) -> int:
    size = _fields(buf, pos)["batch_length"] + 12
    return int(kafka_python_crc32c(bytes(buf[pos + 21 : pos + size])))


def _refresh_crc(buf: bytearray, pos: int = 0) -> None:
    struct.pack_into(">I", buf, pos + 17, _kafka_crc(buf, pos))


def _as_inputs(records: list[Record]) -> list[tuple[object, ...]]:
    return [(r.timestamp, r.key, r.value, tuple(r.headers)) for r in records]


# --------------------------------------------------------------------------- header layout


def test_header_size_is_61_bytes() -> None:
    assert HEADER_SIZE == SPEC_HEADER.size == 61


def test_encode_batch_batch_length_is_size_minus_12() -> None:
    buf = encode_batch(RECORDS)
    assert _fields(buf)["batch_length"] == len(buf) - 12
    assert batch_size(buf) == len(buf)


def test_encode_batch_writes_every_header_field() -> None:
    buf = encode_batch(
        RECORDS,
        base_offset=1234,
        producer_id=987_654_321_000,
        producer_epoch=7,
        base_sequence=42,
        partition_leader_epoch=3,
    )
    assert _fields(buf) == {
        "base_offset": 1234,
        "batch_length": len(buf) - 12,
        "partition_leader_epoch": 3,
        "magic": 2,
        "crc": _kafka_crc(buf),
        "attributes": 0,
        "last_offset_delta": 2,
        "base_timestamp": T0,
        "max_timestamp": T0 + 70_000,
        "producer_id": 987_654_321_000,
        "producer_epoch": 7,
        "base_sequence": 42,
        "records_count": 3,
    }


def test_encode_batch_uses_minus_one_sentinels_by_default() -> None:
    fields = _fields(encode_batch(RECORDS))
    assert fields["base_offset"] == 0
    assert fields["partition_leader_epoch"] == -1
    assert (fields["producer_id"], fields["producer_epoch"], fields["base_sequence"]) == (
        -1, -1, -1,
    )  # fmt: skip


def test_encode_batch_max_timestamp_is_largest_when_timestamps_out_of_order() -> None:
    records = [(T0 + 10, None, b"a", ()), (T0 + 500, None, b"b", ()), (T0 - 3, None, b"c", ())]
    buf = encode_batch(records)
    assert _fields(buf)["max_timestamp"] == T0 + 500
    assert [r.timestamp for r in decode_batches(buf)] == [T0 + 10, T0 + 500, T0 - 3]


def test_encode_batch_base_timestamp_is_first_record_timestamp_when_out_of_order() -> None:
    # kafka.md §1.2: baseTimestamp is the first record's; later deltas may be negative.
    records = [(T0 + 10, None, b"a", ()), (T0 - 3, None, b"c", ())]
    buf = encode_batch(records)
    assert _fields(buf)["base_timestamp"] == T0 + 10
    # length 7 | attrs | tsDelta | offsetDelta | null key | value "a" / "c" | no headers
    first = "0e" "00" "00" "00" "01" "0261" "00"
    second = "0e" "00" "19" "02" "01" "0263" "00"  # tsDelta -13, offsetDelta 1
    assert buf[61:].hex() == first + second
    assert encode_varint(-13) == b"\x19"


def test_encode_batch_last_offset_delta_and_count_follow_record_count() -> None:
    for n in (1, 2, 300):
        fields = _fields(encode_batch([(T0, None, b"v", ())] * n))
        assert (fields["last_offset_delta"], fields["records_count"]) == (n - 1, n)


def test_encode_batch_crc_is_crc32c_of_bytes_from_attributes_to_end() -> None:
    buf = encode_batch(RECORDS, compression=Compression.GZIP)
    assert kafka_python_crc32c(b"123456789") == 0xE3069283  # the reference is Castagnoli
    assert _fields(buf)["crc"] == _kafka_crc(buf)


@pytest.mark.parametrize("codec", list(Compression), ids=lambda c: c.name.lower())
def test_encode_batch_sets_codec_in_attribute_bits_0_to_2(codec: Compression) -> None:
    buf = encode_batch(RECORDS, compression=codec)
    assert _fields(buf)["attributes"] == int(codec)
    assert decode_header(buf).compression == codec  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "attributes"),
    [
        ({}, 0x00),
        ({"timestamp_type": TimestampType.LOG_APPEND_TIME, "log_append_time": T0}, 0x08),
        ({"is_transactional": True, "producer_id": 5, "producer_epoch": 0}, 0x10),
        ({"is_control": True}, 0x20),
        ({"is_transactional": True, "is_control": True, "compression": Compression.ZSTD,
          "timestamp_type": TimestampType.LOG_APPEND_TIME, "log_append_time": T0}, 0x3C),
    ],
    ids=["none", "log-append-time", "transactional", "control", "all"],
)
def test_encode_batch_sets_attribute_bits(kwargs: dict[str, object], attributes: int) -> None:
    buf = encode_batch(RECORDS, **kwargs)  # type: ignore[arg-type]
    assert _fields(buf)["attributes"] == attributes
    header = decode_header(buf)
    assert header is not None
    assert header.timestamp_type == TimestampType(bool(attributes & 0x08))
    assert header.is_transactional == bool(attributes & 0x10)
    assert header.is_control == bool(attributes & 0x20)


# --------------------------------------------------------------------------- record layout


def test_encode_batch_writes_record_fields_byte_by_byte() -> None:
    buf = encode_batch([(T0, None, b"v", (("h", None),))])
    # length 10 | attrs 0 | tsDelta 0 | offsetDelta 0 | key null | value len 1 "v" |
    # 1 header | key len 1 "h" | value null
    assert buf[61:].hex() == "14" "00" "00" "00" "01" "02" "76" "02" "02" "68" "01"


def test_encode_batch_writes_null_key_and_value_lengths_as_0x01() -> None:
    buf = encode_batch([(T0, None, None, ())])
    assert buf[61:].hex() == "0c" "00" "00" "00" "01" "01" "00"


def test_encode_batch_writes_multi_byte_deltas_and_lengths() -> None:
    value = b"x" * 8192  # length 8192: a 3-byte varint
    buf = encode_batch([(T0, None, None, ()), (T0 + 64, b"", value, ())])
    second = buf[61 + 7 :]
    body = (
        b"\x00" + encode_varint(64) + encode_varint(1) + b"\x00"
        + encode_varint(8192) + value + b"\x00"
    )  # fmt: skip
    assert second == encode_varint(len(body)) + body
    assert encode_varint(64) == b"\x80\x01"


# --------------------------------------------------------------------------- decode


@pytest.mark.parametrize("codec", list(Compression), ids=lambda c: c.name.lower())
def test_decode_batches_returns_encoded_records(codec: Compression) -> None:
    buf = encode_batch(RECORDS, base_offset=100, compression=codec)
    decoded = list(decode_batches(buf))
    assert [r.offset for r in decoded] == [100, 101, 102]
    assert _as_inputs(decoded) == [(t, k, v, tuple(h)) for t, k, v, h in RECORDS]


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.LZ4], ids=["none", "lz4"])
def test_decode_batches_returns_offsets_when_offset_deltas_need_multi_byte_varints(
    codec: Compression,
) -> None:
    # offsetDelta 64 is the first 2-byte varint, 8192 the first 3-byte one.
    records = [(T0 + i % 100, None, i.to_bytes(2, "big"), ()) for i in range(8300)]
    decoded = list(decode_batches(encode_batch(records, base_offset=10, compression=codec)))
    assert [r.offset for r in decoded] == list(range(10, 8310))
    assert [r.timestamp for r in decoded] == [T0 + i % 100 for i in range(8300)]
    assert [r.value for r in decoded] == [i.to_bytes(2, "big") for i in range(8300)]


def test_decode_batches_reads_consecutive_batches() -> None:
    buf = encode_batch(RECORDS, base_offset=0) + encode_batch(
        RECORDS[:1], base_offset=3, compression=Compression.SNAPPY
    )
    assert [r.offset for r in decode_batches(buf)] == [0, 1, 2, 3]


def test_decode_batches_accepts_bytearray_and_memoryview() -> None:
    buf = encode_batch(RECORDS)
    expected = list(decode_batches(buf))
    assert list(decode_batches(bytearray(buf))) == expected
    assert list(decode_batches(memoryview(buf))) == expected


def test_encode_batch_timestamps_are_log_append_time_when_log_append_time() -> None:
    buf = encode_batch(
        RECORDS, timestamp_type=TimestampType.LOG_APPEND_TIME, log_append_time=T0 + 999_999
    )
    fields = _fields(buf)
    assert fields["max_timestamp"] == T0 + 999_999
    assert fields["base_timestamp"] == T0
    assert [r.timestamp for r in decode_batches(buf)] == [T0 + 999_999] * 3


def test_encode_batch_raises_invalid_record_when_log_append_time_missing() -> None:
    with pytest.raises(InvalidRecordError):
        encode_batch(RECORDS, timestamp_type=TimestampType.LOG_APPEND_TIME)


def test_decode_batches_skips_control_batches_by_default() -> None:
    control = encode_batch([(T0, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x07", ())],
                           base_offset=3, is_control=True, is_transactional=True,
                           producer_id=9, producer_epoch=1)
    buf = encode_batch(RECORDS) + control
    assert [r.offset for r in decode_batches(buf)] == [0, 1, 2]
    assert [r.offset for r in decode_batches(buf, skip_control=False)] == [0, 1, 2, 3]
    header = list(scan(buf))[1]
    assert header.is_control
    assert decode_batch_records(buf, header)[0].key == b"\x00\x00\x00\x01"


def test_records_to_inputs_round_trips_through_encode_batch() -> None:
    decoded = list(decode_batches(encode_batch(RECORDS)))
    again = list(decode_batches(encode_batch(records_to_inputs(decoded))))
    assert again == decoded


# --------------------------------------------------------------------------- in-place edits


def test_set_base_offset_keeps_crc_valid() -> None:
    first = encode_batch(RECORDS, compression=Compression.LZ4)
    buf = bytearray(first + encode_batch(RECORDS, compression=Compression.GZIP))
    set_base_offset(buf, len(first), 2**40)
    headers = list(scan(buf))  # verifies both CRCs
    assert [h.base_offset for h in headers] == [0, 2**40]
    assert all(crc_valid(buf, h) for h in headers)
    assert buf[: len(first)] == first
    assert [r.offset for r in decode_batches(buf)][3:] == [2**40, 2**40 + 1, 2**40 + 2]


def test_set_log_append_time_keeps_crc_valid() -> None:
    first = encode_batch(RECORDS)
    buf = bytearray(first + encode_batch(RECORDS, compression=Compression.ZSTD))
    before = _fields(buf, len(first))
    set_log_append_time(buf, len(first), T0 + 5_000_000)
    after = _fields(buf, len(first))
    assert after["crc"] == _kafka_crc(buf, len(first))
    assert after["crc"] != before["crc"]
    assert after["attributes"] == before["attributes"] | 0x08  # the codec bits survive
    assert after["max_timestamp"] == T0 + 5_000_000
    headers = list(scan(buf))
    assert headers[1].timestamp_type == TimestampType.LOG_APPEND_TIME
    timestamps = [r.timestamp for r in decode_batches(buf)]
    assert timestamps == [t for t, *_ in RECORDS] + [T0 + 5_000_000] * 3


def test_set_log_append_time_raises_invalid_record_when_no_header() -> None:
    with pytest.raises(InvalidRecordError):
        set_log_append_time(bytearray(encode_batch(RECORDS)[:40]), 0, T0)


# --------------------------------------------------------------------------- invalid input


def test_encode_batch_raises_invalid_record_when_no_records() -> None:
    with pytest.raises(InvalidRecordError):
        encode_batch([])


@pytest.mark.parametrize(
    "record",
    [
        (T0, 5, b"v", ()),
        (T0, None, 3.5, ()),
        None,
        (1.5, None, b"v", ()),
        ("now", None, b"v", ()),
        (None, None, b"v", ()),
        (T0, None, b"v", ((b"bytes-key", b"v"),)),
        (T0, None, b"v", (("k", "str-value"),)),
        (T0, None, b"v", (("k", 7),)),
    ],
    ids=["int-key", "float-value", "none-record", "float-ts", "str-ts", "none-ts",
         "bytes-header-key", "str-header-value", "int-header-value"],
)
def test_encode_batch_raises_invalid_record_when_types_are_wrong(record: object) -> None:
    with pytest.raises(InvalidRecordError):
        encode_batch([(T0, None, b"ok", ()), record])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "record",
    [
        (T0, "str-key", b"v", ()),
        (T0, None, "str-value", ()),
        (T0, None, [1, 2], ()),
        (T0, None, b"v"),
        (T0, None, b"v", (("k",),)),
    ],
    ids=["str-key", "str-value", "list-value", "three-field-record", "one-field-header"],
)
def test_encode_batch_raises_invalid_record_when_shape_or_sequence_type_wrong(
    record: object,
) -> None:
    with pytest.raises(InvalidRecordError):
        encode_batch([(T0, None, b"ok", ()), record])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("records", "kwargs"),
    [
        ([(2**63, None, b"v", ())], {}),
        ([(T0, None, b"v", ())], {"base_offset": 2**63}),
        ([(T0, None, b"v", ())], {"producer_epoch": 2**15}),
        ([(T0, None, b"v", ())], {"base_sequence": 2**31}),
    ],
    ids=["timestamp", "base-offset", "producer-epoch", "base-sequence"],
)
def test_encode_batch_raises_invalid_record_when_field_out_of_range(
    records: list[tuple[object, ...]], kwargs: dict[str, int]
) -> None:
    with pytest.raises(InvalidRecordError):
        encode_batch(records, **kwargs)  # type: ignore[arg-type]


def test_encode_batch_round_trips_or_rejects_when_timestamp_delta_overflows_int64() -> None:
    records = [(-(2**63), None, None, ()), (2**63 - 1, None, None, ())]
    try:
        buf = encode_batch(records)
    except InvalidRecordError:
        return
    assert [r.timestamp for r in decode_batches(buf)] == [-(2**63), 2**63 - 1]


# --------------------------------------------------------------------------- scan


def test_scan_yields_header_per_batch_with_positions() -> None:
    first = encode_batch(RECORDS)
    second = encode_batch(RECORDS[:2], base_offset=3, compression=Compression.GZIP)
    headers = list(scan(first + second))
    assert [(h.position, h.size, h.base_offset) for h in headers] == [
        (0, len(first), 0),
        (len(first), len(second), 3),
    ]
    assert headers[1].next_offset == 5


def test_scan_starts_at_given_position() -> None:
    first = encode_batch(RECORDS)
    buf = first + encode_batch(RECORDS, base_offset=3)
    assert [h.base_offset for h in scan(buf, len(first))] == [3]


def test_scan_yields_only_whole_batches_at_every_cut_point() -> None:
    first = encode_batch(RECORDS, compression=Compression.SNAPPY)
    second = encode_batch(RECORDS, base_offset=3)
    buf = first + second
    for cut in range(len(buf) + 1):
        headers = list(scan(buf[:cut]))  # never raises: a cut is an incomplete tail
        whole = (cut >= len(first)) + (cut == len(buf))
        assert len(headers) == whole, cut
        assert [r.offset for r in decode_batches(buf[:cut])] == list(range(3 * whole)), cut


def test_scan_raises_corrupt_when_tail_is_zero_filled() -> None:
    buf = encode_batch(RECORDS)
    for zeros in (12, 61, 4096):
        headers = scan(buf + bytes(zeros))
        assert next(headers).position == 0
        with pytest.raises(CorruptRecordError, match="length 0") as excinfo:
            next(headers)
        assert excinfo.value.position == len(buf)


def test_scan_raises_corrupt_when_declared_length_below_empty_batch() -> None:
    buf = bytearray(encode_batch(RECORDS))
    struct.pack_into(">i", buf, 8, 48)
    with pytest.raises(CorruptRecordError):
        list(scan(buf))
    with pytest.raises(CorruptRecordError):
        batch_size(buf)


@pytest.mark.parametrize("magic", [0, 1, 3, -1])
def test_scan_raises_corrupt_when_magic_is_not_2(magic: int) -> None:
    first = encode_batch(RECORDS)
    buf = bytearray(first + encode_batch(RECORDS))
    struct.pack_into(">b", buf, len(first) + 16, magic)
    with pytest.raises(CorruptRecordError, match="magic") as excinfo:
        list(scan(buf))
    assert excinfo.value.position == len(first)


def test_scan_raises_corrupt_when_crc_is_wrong() -> None:
    first = encode_batch(RECORDS)
    buf = bytearray(first + encode_batch(RECORDS))
    buf[-1] ^= 0x01
    with pytest.raises(CorruptRecordError, match="CRC") as excinfo:
        list(scan(buf))
    assert excinfo.value.position == len(first)
    assert len(list(scan(buf, verify=False))) == 2


@pytest.mark.parametrize("codec_id", [5, 6, 7])
def test_scan_raises_corrupt_when_codec_is_unknown(codec_id: int) -> None:
    buf = bytearray(encode_batch(RECORDS))
    struct.pack_into(">h", buf, 21, codec_id)
    _refresh_crc(buf)
    with pytest.raises(CorruptRecordError, match="compression"):
        list(scan(buf))
    header = decode_header(buf)
    assert header is not None
    with pytest.raises(CorruptRecordError):
        check_batch(buf, header)
    with pytest.raises(CorruptRecordError):
        decode_batch_records(buf, header, verify=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [(57, 4), (57, 2), (57, -1), (23, -1)],
    ids=["count-too-high", "count-too-low", "count-negative", "last-offset-delta-negative"],
)
def test_decode_batch_records_raises_corrupt_when_counts_disagree_with_records(
    field: int, value: int
) -> None:
    buf = bytearray(encode_batch(RECORDS))
    struct.pack_into(">i", buf, field, value)
    _refresh_crc(buf)
    with pytest.raises(CorruptRecordError) as excinfo:
        list(decode_batches(buf))
    assert excinfo.value.position == 0


def test_decode_batch_records_raises_corrupt_when_compressed_payload_is_garbage() -> None:
    buf = bytearray(encode_batch(RECORDS, compression=Compression.GZIP))
    buf[61:] = b"\x1f\x8bnot really gzip"
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    _refresh_crc(buf)
    with pytest.raises(CorruptRecordError, match="gzip"):
        list(decode_batches(buf))


def test_decode_batch_records_raises_corrupt_when_header_key_is_not_utf8() -> None:
    buf = bytearray(encode_batch([(T0, None, None, (("k", None),))]))
    assert buf[-2:] == b"k\x01"
    buf[-2] = 0xFF  # the header key byte
    _refresh_crc(buf)
    with pytest.raises(CorruptRecordError):
        list(decode_batches(buf))
