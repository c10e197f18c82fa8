"""Kafka RecordBatch v2 codec: pure functions, bytes in and out, no I/O.

Its record loops and varints run compiled when the C codec is built (ACCELERATED;
:mod:`logstore.records.accel`); the varints exported here are then the compiled ones.
"""

from collections.abc import Callable

from logstore.records import batch as _batch
from logstore.records.accel import ACCELERATED
from logstore.records.accel import codec as _compiled
from logstore.records.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    RecordInput,
    batch_size,
    check_batch,
    crc_valid,
    decode_header,
    encode_batch,
    encode_retained_batch,
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

encode_varint: Callable[[int], bytes] = (
    _batch.encode_varint if _compiled is None else _compiled.encode_varint
)
decode_varint: Callable[[bytes | bytearray | memoryview, int], tuple[int, int]] = (
    _batch.decode_varint if _compiled is None else _compiled.decode_varint
)

__all__ = [
    "ACCELERATED",
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
    "encode_retained_batch",
    "encode_varint",
    "records_to_inputs",
    "scan",
    "set_base_offset",
    "set_log_append_time",
]
