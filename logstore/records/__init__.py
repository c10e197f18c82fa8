"""Kafka RecordBatch v2 codec: pure functions, bytes in and out, no I/O."""

from logstore.records.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    RecordInput,
    batch_size,
    check_batch,
    crc_valid,
    decode_header,
    decode_varint,
    encode_batch,
    encode_varint,
    scan,
    set_base_offset,
    set_log_append_time,
)
from logstore.records.compression import compress, decompress
from logstore.records.decode import (
    decode_batch_records,
    decode_batches,
    decode_records,
    records_to_inputs,
)

__all__ = [
    "HEADER_SIZE",
    "LOG_OVERHEAD",
    "MAGIC",
    "RecordInput",
    "batch_size",
    "check_batch",
    "compress",
    "crc_valid",
    "decode_batch_records",
    "decode_batches",
    "decode_header",
    "decode_records",
    "decode_varint",
    "decompress",
    "encode_batch",
    "encode_varint",
    "records_to_inputs",
    "scan",
    "set_base_offset",
    "set_log_append_time",
]
