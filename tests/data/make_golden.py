"""Write the golden RecordBatch v2 files ``kafka_python_<codec>.hex`` + ``.json``.

The batches come from kafka-python's ``DefaultRecordBatchBuilder`` (an implementation
logstore's authors did not write); logstore is not imported here. Each ``.hex`` file holds
one batch as a single line of hex; the sibling ``.json`` lists what the batch must decode
to: the batch header fields and, per record, offset, timestamp, key and value (hex or
null) and headers (``[key, hex value or null]``).

Run from the repository root, with the test dependencies installed::

    python tests/data/make_golden.py

The files are committed; rerun only to add cases. gzip output embeds an mtime, so it is
pinned to 0 here; zlib, snappy, lz4 and zstd versions may still change the compressed
bytes on a rerun (the decoded records, and so the ``.json``, would stay the same).
"""

from __future__ import annotations

import gzip
import json
import struct
import types
import warnings
from pathlib import Path
from unittest import mock

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # emitted by ``import kafka``
    import kafka
    from kafka.record.default_records import DefaultRecordBatchBuilder

HERE = Path(__file__).resolve().parent
T0 = 1_700_000_000_000
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
FIELDS = (
    "base_offset", "batch_length", "partition_leader_epoch", "magic", "crc", "attributes",
    "last_offset_delta", "base_timestamp", "max_timestamp", "producer_id", "producer_epoch",
    "base_sequence", "records_count",
)  # fmt: skip
HEADER = struct.Struct(">qiibIhiqqqhii")

Headers = list[tuple[str, bytes | None]]


def _records(codec: str) -> list[tuple[int, bytes | None, bytes | None, Headers]]:
    """Fixed records; compressible values so the builder keeps the codec."""
    if codec == "none":
        return [
            (T0, None, b'{"order": 1, "item": "book"}', [("trace-id", b"abc123"), ("clé", None)]),
            (T0 + 15, b"", None, []),  # empty key, null value (a tombstone)
            (T0 - 2_000, b"customer-7", b"", [("\u952e", b"\x00\xff"), ("", b"")]),
            (T0 + 70_000, b"customer-8", b"x" * 300, [("n", None)]),
        ]
    value = (f'{{"codec": "{codec}", "line": "the same words again and again"}} ' * 6).encode()
    return [
        (T0 + 10 * i, f"key-{i % 3}".encode() if i != 2 else None, value, [("i", bytes([i]))])
        for i in range(6)
    ]


def _build(codec: str) -> tuple[bytes, dict[str, object]]:
    transactional = codec == "zstd"
    producer = (4242, 3, 17) if codec in ("none", "zstd") else (-1, -1, -1)
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=CODECS[codec],
        is_transactional=transactional,
        producer_id=producer[0],
        producer_epoch=producer[1],
        base_sequence=producer[2],
        batch_size=1 << 20,
    )
    records = _records(codec)
    for offset, (timestamp, key, value, headers) in enumerate(records):
        assert builder.append(offset, timestamp, key, value, headers) is not None
    # gzip.GzipFile writes time.time() into the member header: pin it for repeatable bytes.
    with mock.patch.object(gzip, "time", types.SimpleNamespace(time=lambda: 0.0)):
        batch = bytearray(builder.build())
    base_offset = 0
    if codec == "none":
        # What a broker does on append: assign the base offset and stamp the leader epoch
        # in place. Neither is covered by the CRC.
        base_offset = 1000
        struct.pack_into(">q", batch, 0, base_offset)
        struct.pack_into(">i", batch, 12, 5)
    header = dict(zip(FIELDS, HEADER.unpack_from(batch), strict=True))
    if header["attributes"] & 0x07 != CODECS[codec]:
        raise SystemExit(f"kafka-python did not keep {codec} compression; use likelier data")
    expected = {
        "generator": "tests/data/make_golden.py",
        "kafka_python_version": kafka.__version__,
        "compression": codec,
        "batch": {k: v for k, v in header.items() if k not in ("crc", "batch_length")}
        | {"size": len(batch)},
        "records": [
            {
                "offset": base_offset + i,
                "timestamp": timestamp,
                "key": None if key is None else key.hex(),
                "value": None if value is None else value.hex(),
                "headers": [[k, None if v is None else v.hex()] for k, v in headers],
            }
            for i, (timestamp, key, value, headers) in enumerate(records)
        ],
    }
    return bytes(batch), expected


def main() -> None:
    for codec in CODECS:
        batch, expected = _build(codec)
        (HERE / f"kafka_python_{codec}.hex").write_text(batch.hex() + "\n")
        (HERE / f"kafka_python_{codec}.json").write_text(
            json.dumps(expected, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(f"kafka_python_{codec}: {len(batch)} bytes")


if __name__ == "__main__":
    main()
