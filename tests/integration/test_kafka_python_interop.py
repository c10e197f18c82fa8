"""Interoperability of the records codec with kafka-python, a Kafka client nobody here wrote.

* kafka-python's ``DefaultRecordBatch`` reads batches logstore wrote (CRC included);
* logstore reads batches kafka-python's ``DefaultRecordBatchBuilder`` wrote;
* logstore reads golden kafka-python batches stored in ``tests/data`` (made by
  ``tests/data/make_golden.py``);
* an uncompressed batch is byte-for-byte the one kafka-python builds from the same input.
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings

from logstore.records.batch import (
    decode_header,
    encode_batch,
    scan,
    set_base_offset,
    set_log_append_time,
)
from logstore.records.decode import decode_batch_records, decode_batches
from logstore.types import Compression, TimestampType
from tests.strategies import RecordTuple, compressions, record_inputs

with warnings.catch_warnings():
    # ``import kafka`` trips a DeprecationWarning (importlib.resources.read_text) that
    # pytest's filterwarnings=error would turn into a collection error.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
    from kafka.record.memory_records import MemoryRecords

DATA = Path(__file__).resolve().parent.parent / "data"
CODECS = list(Compression)
CODEC_IDS = [c.name.lower() for c in CODECS]
T0 = 1_700_000_000_000

# Compressible values, so kafka-python's builder keeps the codec instead of falling back
# to an uncompressed batch (it does when compression does not shrink the records).
FIXED_RECORDS: list[RecordTuple] = [
    (T0, None, b'{"event": "created", "id": 1}' * 4, (("trace", b"t-1"), ("null", None))),
    (T0 + 3, b"key-1", None, ()),
    (T0 + 70_000, b"", b"same text, same text, same text, same text" * 3, (("ключ", b""),)),
    (T0 + 70_001, b"key-3", b"x" * 9000, ()),  # lengths that need 3-byte varints
]


def _kafka_python_build(
    records: list[RecordTuple],
    compression: Compression = Compression.NONE,
    *,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(compression),
        is_transactional=is_transactional,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    for offset, (timestamp, key, value, headers) in enumerate(records):
        assert builder.append(offset, timestamp, key, value, list(headers)) is not None
    return bytes(builder.build())


def _kafka_python_read(buf: bytes) -> tuple[DefaultRecordBatch, list[tuple[object, ...]]]:
    batch = DefaultRecordBatch(buf)
    assert batch.validate_crc()  # before iterating, as kafka-python requires
    records = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
    return batch, records


def _expected(records: list[RecordTuple], base_offset: int = 0) -> list[tuple[object, ...]]:
    return [
        (base_offset + i, t, k, v, list(h)) for i, (t, k, v, h) in enumerate(records)
    ]


def _logstore_read(buf: bytes) -> list[tuple[object, ...]]:
    return [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in decode_batches(buf)]


# --------------------------------------------------------------------------- logstore -> kafka


@pytest.mark.parametrize("compression", CODECS, ids=CODEC_IDS)
def test_kafka_python_reads_batch_logstore_wrote(compression: Compression) -> None:
    buf = encode_batch(
        FIXED_RECORDS,
        base_offset=500,
        compression=compression,
        producer_id=77,
        producer_epoch=2,
        base_sequence=9,
        is_transactional=True,
    )
    batch, records = _kafka_python_read(buf)
    assert records == _expected(FIXED_RECORDS, 500)
    assert batch.compression_type == int(compression)
    assert (batch.base_offset, batch.last_offset_delta, batch.records_count) == (500, 3, 4)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (77, 2, 9)
    assert batch.is_transactional
    assert not batch.is_control_batch
    assert batch.max_timestamp == T0 + 70_001
    assert batch.size_in_bytes == len(buf)


@settings(deadline=None, max_examples=60)
@given(records=record_inputs(max_size=20), compression=compressions())
def test_kafka_python_reads_arbitrary_batch_logstore_wrote(
    records: list[RecordTuple], compression: Compression
) -> None:
    _, decoded = _kafka_python_read(encode_batch(records, compression=compression))
    assert decoded == _expected(records)


def test_kafka_python_reads_every_batch_of_a_logstore_buffer() -> None:
    buf, offset = b"", 0
    for compression in CODECS:
        buf += encode_batch(FIXED_RECORDS, base_offset=offset, compression=compression)
        offset += len(FIXED_RECORDS)
    memory = MemoryRecords(buf)
    offsets = []
    while memory.has_next():
        batch = memory.next_batch()
        assert batch.validate_crc()
        offsets += [r.offset for r in batch]
    assert offsets == list(range(offset))


@pytest.mark.parametrize("compression", CODECS, ids=CODEC_IDS)
def test_kafka_python_reads_log_append_time_batch_logstore_wrote(
    compression: Compression,
) -> None:
    buf = encode_batch(
        FIXED_RECORDS,
        compression=compression,
        timestamp_type=TimestampType.LOG_APPEND_TIME,
        log_append_time=T0 + 123_456,
    )
    batch, records = _kafka_python_read(buf)
    assert batch.timestamp_type == 1
    assert [r[1] for r in records] == [T0 + 123_456] * len(FIXED_RECORDS)


@pytest.mark.parametrize("compression", CODECS, ids=CODEC_IDS)
def test_kafka_python_validates_crc_after_in_place_edits(compression: Compression) -> None:
    first = encode_batch(FIXED_RECORDS[:1])
    buf = bytearray(first + encode_batch(FIXED_RECORDS, compression=compression))
    set_base_offset(buf, len(first), 2**33)
    set_log_append_time(buf, len(first), T0 + 9)
    batch, records = _kafka_python_read(bytes(buf[len(first) :]))
    assert batch.timestamp_type == 1
    assert [r[:2] for r in records] == [(2**33 + i, T0 + 9) for i in range(4)]


def test_kafka_python_reads_control_batch_logstore_wrote() -> None:
    commit_key = struct.pack(">hh", 0, 1)  # version 0, type 1 = COMMIT (kafka.md §1.4)
    marker_value = struct.pack(">hi", 0, 12)  # version 0, coordinator epoch 12
    buf = encode_batch(
        [(T0, commit_key, marker_value, ())],
        base_offset=40,
        is_control=True,
        is_transactional=True,
        producer_id=5,
        producer_epoch=1,
    )
    batch = DefaultRecordBatch(buf)
    assert batch.validate_crc()
    assert batch.is_control_batch
    assert batch.is_transactional
    (record,) = list(batch)
    assert record.commit
    assert record.offset == 40


# --------------------------------------------------------------------------- kafka -> logstore


@pytest.mark.parametrize("compression", CODECS, ids=CODEC_IDS)
def test_logstore_reads_batch_kafka_python_wrote(compression: Compression) -> None:
    buf = _kafka_python_build(
        FIXED_RECORDS,
        compression,
        producer_id=31,
        producer_epoch=4,
        base_sequence=1000,
        is_transactional=True,
    )
    (header,) = list(scan(buf))  # verifies size, magic and CRC
    assert header.compression == compression  # the builder really compressed
    assert header.is_transactional
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (31, 4, 1000)
    assert (header.last_offset_delta, header.records_count) == (3, 4)
    assert (header.base_timestamp, header.max_timestamp) == (T0, T0 + 70_001)
    assert _logstore_read(buf) == _expected(FIXED_RECORDS)


@settings(deadline=None, max_examples=60)
@given(records=record_inputs(max_size=20), compression=compressions())
def test_logstore_reads_arbitrary_batch_kafka_python_wrote(
    records: list[RecordTuple], compression: Compression
) -> None:
    assert _logstore_read(_kafka_python_build(records, compression)) == _expected(records)


def test_logstore_reads_consecutive_batches_kafka_python_wrote() -> None:
    buf = bytearray()
    for i, compression in enumerate(CODECS):
        batch = bytearray(_kafka_python_build(FIXED_RECORDS, compression))
        struct.pack_into(">q", batch, 0, 4 * i)  # as a broker assigns offsets
        buf += batch
    assert [r.offset for r in decode_batches(buf)] == list(range(4 * len(CODECS)))


# --------------------------------------------------------------------------- golden files


def _golden(codec: str) -> tuple[bytes, dict[str, object]]:
    buf = bytes.fromhex((DATA / f"kafka_python_{codec}.hex").read_text().strip())
    expected = json.loads((DATA / f"kafka_python_{codec}.json").read_text(encoding="utf-8"))
    return buf, expected


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_logstore_decodes_golden_kafka_python_batch(codec: str) -> None:
    buf, expected = _golden(codec)
    (header,) = list(scan(buf))
    assert expected["compression"] == codec
    assert header.compression == Compression[codec.upper()]
    batch = expected["batch"]
    assert isinstance(batch, dict)
    assert header.size == batch.pop("size") == len(buf)
    assert {k: getattr(header, k) for k in batch} == batch
    records = [
        {
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": None if r.key is None else r.key.hex(),
            "value": None if r.value is None else r.value.hex(),
            "headers": [[k, None if v is None else v.hex()] for k, v in r.headers],
        }
        for r in decode_batch_records(buf, header)
    ]
    assert records == expected["records"]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_golden_kafka_python_batch_round_trips_through_logstore(codec: str) -> None:
    buf, _ = _golden(codec)
    header = decode_header(buf)
    assert header is not None
    decoded = list(decode_batches(buf))
    again = encode_batch(
        [(r.timestamp, r.key, r.value, tuple(r.headers)) for r in decoded],
        base_offset=header.base_offset,
        compression=header.compression,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        is_transactional=header.is_transactional,
    )
    assert list(decode_batches(again)) == decoded
    _, by_kafka_python = _kafka_python_read(again)
    assert by_kafka_python == [
        (r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in decoded
    ]


# --------------------------------------------------------------------------- byte identity

OUT_OF_ORDER_RECORDS: list[RecordTuple] = [
    (T0 + 500, b"late", b"v", ()),
    (T0, None, None, (("h", None),)),  # a negative timestamp delta
    (T0 - 70_000, b"k", b"x" * 200, ()),
]


@pytest.mark.parametrize(
    "producer",
    [
        {},
        {"producer_id": 123_456_789, "producer_epoch": 5, "base_sequence": 2**31 - 10},
        {"producer_id": 8, "producer_epoch": 0, "base_sequence": 0, "is_transactional": True},
    ],
    ids=["plain", "idempotent", "transactional"],
)
@pytest.mark.parametrize(
    "records", [FIXED_RECORDS, OUT_OF_ORDER_RECORDS], ids=["ascending", "out-of-order"]
)
def test_encode_batch_is_byte_identical_to_kafka_python_when_uncompressed(
    records: list[RecordTuple], producer: dict[str, int]
) -> None:
    # kafka-python writes partitionLeaderEpoch 0 (a broker overwrites it), logstore -1 by
    # default: pass 0, the one field where the two may legitimately differ.
    ours = encode_batch(records, partition_leader_epoch=0, **producer)
    theirs = _kafka_python_build(records, **producer)
    assert ours.hex() == theirs.hex()
    assert ours[17:21] == theirs[17:21]  # the CRC too


def test_encode_batch_is_byte_identical_to_golden_uncompressed_batch() -> None:
    buf, expected = _golden("none")
    batch, records = expected["batch"], expected["records"]
    assert isinstance(batch, dict)
    assert isinstance(records, list)
    inputs = [
        (
            r["timestamp"],
            None if r["key"] is None else bytes.fromhex(r["key"]),
            None if r["value"] is None else bytes.fromhex(r["value"]),
            tuple((k, None if v is None else bytes.fromhex(v)) for k, v in r["headers"]),
        )
        for r in records
    ]
    ours = encode_batch(
        inputs,
        base_offset=batch["base_offset"],
        partition_leader_epoch=batch["partition_leader_epoch"],
        producer_id=batch["producer_id"],
        producer_epoch=batch["producer_epoch"],
        base_sequence=batch["base_sequence"],
    )
    assert ours.hex() == buf.hex()


# --------------------------------------------------------------------------- partial decode


def _sparse_batch(offsets: list[int]) -> bytes:
    """A batch whose offset deltas have gaps (as compaction leaves them), built by
    kafka-python, which lets the caller choose each record's offset."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30,
    )
    for offset in offsets:
        assert builder.append(offset, T0 + offset, b"k", b"v%d" % offset, []) is not None
    return bytes(builder.build())


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize(("start", "limit"), [(None, None), (0, 1), (3, 2), (5, None), (9, 5)])
def test_decode_batch_records_skips_below_start_and_stops_at_limit(
    sparse: bool, start: int | None, limit: int | None
) -> None:
    offsets = [0, 2, 3, 5, 8, 9] if sparse else list(range(10))
    buf = _sparse_batch(offsets)
    header = next(scan(buf))
    got = [r.offset for r in decode_batch_records(buf, header, start_offset=start, limit=limit)]
    expected = [o for o in offsets if start is None or o >= start][:limit]
    assert got == expected
