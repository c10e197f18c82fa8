"""Kafka RecordBatch v2 (magic 2): encode, decode and scan, byte for byte.

Spec: https://kafka.apache.org/documentation/#recordbatch and Kafka's
``clients/src/main/java/org/apache/kafka/common/record/DefaultRecordBatch.java``.

Batch header (big-endian, 61 bytes)::

    offset  size  field
         0     8  baseOffset            assigned by the log on append
         8     4  batchLength           bytes after this field (batch size - 12)
        12     4  partitionLeaderEpoch  -1 = none
        16     1  magic                 2
        17     4  crc                   CRC-32C of bytes [21, end of batch)
        21     2  attributes            bits 0-2 codec, 3 timestamp type,
                                        4 transactional, 5 control, 6 delete horizon
        23     4  lastOffsetDelta
        27     8  baseTimestamp
        35     8  maxTimestamp
        43     8  producerId            -1 = none
        51     2  producerEpoch         -1 = none
        53     4  baseSequence          -1 = none
        57     4  recordsCount
        61     .  records (compressed as one blob when the codec is not none)

Record::

    length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
    keyLength varint | key | valueLength varint | value |
    headersCount varint | [headerKeyLength varint | key | headerValueLength varint | value]

Varints are zig-zag encoded, 7 bits a byte, low group first; -1 is a null length.

Decoding is in :mod:`logstore.records.decode`. The record loops here (:func:`_encode_records`
and the varints) have a compiled twin, which :func:`encode_batch` uses when it is built
(:mod:`logstore.records.accel`); these stay the reference.

The CRC does not cover baseOffset, batchLength, partitionLeaderEpoch or magic, so the log
assigns offsets by rewriting baseOffset in place (:func:`set_base_offset`) with no CRC
recomputation and no record decoding.

Decoding tells an *incomplete* tail (fewer bytes than the batch declares: normal at the end
of a file being written; :func:`scan` simply stops) from *corrupt* data (a declared size
that cannot be, a wrong magic or CRC: :class:`~logstore.errors.CorruptRecordError`).

No I/O and no clock here: timestamps are arguments.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence

import crc32c as _crc32c

from logstore.errors import CorruptRecordError, InvalidRecordError
from logstore.records.accel import codec as _compiled
from logstore.records.compression import compress
from logstore.types import BatchHeader, Compression, Header, Record, TimestampType

MAGIC = 2
HEADER = struct.Struct(">qiibIhiqqqhii")
"""The whole 61-byte batch header, in field order (see the module docstring)."""
HEADER_SIZE = HEADER.size  # 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: bytes not counted in batchLength
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # 49: a batch with zero records
BASE_OFFSET = struct.Struct(">q")
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21  # the CRC covers [ATTRIBUTES_OFFSET, end of batch)
MAX_TIMESTAMP_OFFSET = 35
RECORDS_COUNT_OFFSET = 57
_PREFIX = struct.Struct(">qiib")  # baseOffset, batchLength, partitionLeaderEpoch, magic
_CRC = struct.Struct(">I")
_INT16 = struct.Struct(">h")
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20
DELETE_HORIZON_MASK = 0x40

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

INT32_MAX = 2**31 - 1
MAX_RECORD_OVERHEAD = 21


# --------------------------------------------------------------------------- varints


def _zigzag_varint(value: int) -> bytes:
    """Zig-zag encode ``value`` (a signed 64-bit int) as a protobuf varint."""
    z = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_TABLE_SIZE = 1 << 14
_VARINT = [_zigzag_varint(n) for n in range(_TABLE_SIZE)]
"""Encoded varints of 0 .. 16383: lengths, small deltas and offset deltas hit this table."""
_NULL = b"\x01"  # zig-zag varint of -1, a null length


def encode_varint(value: int) -> bytes:
    """Zig-zag varint of ``value`` (works for 32- and 64-bit fields alike)."""
    if 0 <= value < _TABLE_SIZE:
        return _VARINT[value]
    return _zigzag_varint(value)


def decode_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode the zig-zag varint at ``buf[pos]``; return ``(value, next position)``.

    Raises:
        IndexError: the buffer ends inside the varint (callers turn this into
            :class:`CorruptRecordError`).
        ValueError: the varint is longer than 10 bytes.
    """
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


# --------------------------------------------------------------------------- encode

RecordInput = tuple[int, "bytes | None", "bytes | None", Sequence[Header]]
"""What :func:`encode_batch` takes per record: ``(timestamp_ms, key, value, headers)``."""


def _encode_headers(headers: Sequence[Header]) -> bytes:
    parts = [encode_varint(len(headers))]
    for hkey, hvalue in headers:
        if not isinstance(hkey, str):
            raise InvalidRecordError(f"header key {hkey!r} must be a str")
        kb = hkey.encode("utf-8")
        parts += (encode_varint(len(kb)), kb)
        if hvalue is None:
            parts.append(_NULL)
        else:
            parts += (encode_varint(len(hvalue)), hvalue)
    return b"".join(parts)


def _encode_records(records: Sequence[RecordInput], base_timestamp: int) -> list[bytes]:
    """Encode records into a list of byte strings whose concatenation is the record set."""
    table = _VARINT
    enc = encode_varint
    out: list[bytes] = []
    for delta, (timestamp, record_key, record_value, headers) in enumerate(records):
        ts_delta = timestamp - base_timestamp
        tsb = table[ts_delta] if 0 <= ts_delta < _TABLE_SIZE else _zigzag_varint(ts_delta)
        ob = table[delta] if delta < _TABLE_SIZE else _zigzag_varint(delta)
        key = b"" if record_key is None else record_key
        value = b"" if record_value is None else record_value
        if record_key is None:
            kb = _NULL
        else:
            klen = len(key)
            kb = table[klen] if klen < _TABLE_SIZE else enc(klen)
        if record_value is None:
            vb = _NULL
        else:
            vlen = len(value)
            vb = table[vlen] if vlen < _TABLE_SIZE else enc(vlen)
        hb = _encode_headers(headers) if headers else b"\x00"
        size = (
            1 + len(tsb) + len(ob) + len(kb) + len(key) + len(vb) + len(value) + len(hb)
        )
        lb = table[size] if size < _TABLE_SIZE else enc(size)
        out += (lb, b"\x00", tsb, ob, kb, key, vb, value, hb)
    return out


def _encode_record_set(records: Sequence[RecordInput], base_timestamp: int) -> bytes:
    """The record set of ``records`` in pure Python (the compiled ``encode_records``'s twin)."""
    return b"".join(_encode_records(records, base_timestamp))


encode_record_set: Callable[[Sequence[RecordInput], int], bytes] = (
    _encode_record_set if _compiled is None else _compiled.encode_records
)
"""What :func:`encode_batch` encodes records with: the compiled codec when it runs."""


def encode_batch(
    records: Sequence[RecordInput],
    *,
    base_offset: int = 0,
    compression: Compression = Compression.NONE,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
    log_append_time: int | None = None,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    is_transactional: bool = False,
    is_control: bool = False,
) -> bytes:
    """Encode ``records`` as one RecordBatch v2.

    Args:
        records: ``(timestamp_ms, key, value, headers)`` tuples, in offset order.
        base_offset: offset of the first record (the log rewrites it on append).
        compression: codec for the record set.
        timestamp_type: CREATE_TIME keeps each record's timestamp; LOG_APPEND_TIME sets
            ``maxTimestamp`` to ``log_append_time`` (required then).
        producer_id, producer_epoch, base_sequence: idempotent-producer fields.

    Returns:
        The encoded batch.

    Raises:
        InvalidRecordError: no records, a key/value of the wrong type, or too many records.
    """
    if not records:
        raise InvalidRecordError("a record batch needs at least one record")
    if len(records) > INT32_MAX:
        raise InvalidRecordError(f"{len(records)} records do not fit in one batch")
    try:
        timestamps = [r[0] for r in records]
        # Kafka's baseTimestamp is the first record's (deltas may be negative).
        base_timestamp = timestamps[0]
        max_timestamp = max(timestamps)
        low, high = min(timestamps) - base_timestamp, max_timestamp - base_timestamp
        if low < _INT64_MIN or high > _INT64_MAX or base_timestamp < _INT64_MIN:
            raise InvalidRecordError(
                f"record timestamps {min(timestamps)}..{max_timestamp} do not fit one batch "
                f"(timestamps and their deltas are signed 64-bit milliseconds)"
            )
        body = encode_record_set(records, base_timestamp)
    except (TypeError, ValueError, IndexError) as err:
        if isinstance(err, InvalidRecordError):
            raise
        raise InvalidRecordError(
            f"cannot encode records: {err} (records are (timestamp:int, key:bytes|None, "
            f"value:bytes|None, headers:[(str, bytes|None)]) tuples)"
        ) from err
    attributes = int(compression) | (TIMESTAMP_TYPE_MASK if timestamp_type else 0)
    if timestamp_type == TimestampType.LOG_APPEND_TIME:
        if log_append_time is None:
            raise InvalidRecordError("LOG_APPEND_TIME batches need a log_append_time")
        max_timestamp = log_append_time
    if is_transactional:
        attributes |= TRANSACTIONAL_MASK
    if is_control:
        attributes |= CONTROL_MASK
    if compression != Compression.NONE:
        body = compress(compression, body)
    try:
        header_tail = HEADER.pack(
            base_offset,
            MIN_BATCH_LENGTH + len(body),
            partition_leader_epoch,
            MAGIC,
            0,
            attributes,
            len(records) - 1,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            len(records),
        )
    except struct.error as err:
        raise InvalidRecordError(
            f"record batch field out of range: {err} (base_offset={base_offset}, "
            f"producer_id={producer_id}, producer_epoch={producer_epoch}, "
            f"base_sequence={base_sequence}, partition_leader_epoch={partition_leader_epoch}, "
            f"timestamps {base_timestamp}..{max_timestamp})"
        ) from err
    crc = _crc32c.crc32c(body, _crc32c.crc32c(memoryview(header_tail)[ATTRIBUTES_OFFSET:]))
    return b"".join(
        (header_tail[:CRC_OFFSET], _CRC.pack(crc), header_tail[ATTRIBUTES_OFFSET:], body)
    )


def encode_retained_batch(header: BatchHeader, records: Sequence[Record]) -> bytes:
    """The batch ``header`` describes, holding only ``records`` (some of its records, in
    order), as Kafka's log cleaner rewrites a batch (``MemoryRecords.filterTo``): the same
    base offset, ``lastOffsetDelta`` (so an idempotent producer's sequence range is kept),
    attributes (compression, timestamp type, transactional, control), producer fields and
    partition leader epoch; each record keeps its offset delta, so offsets never change
    and the gaps stay. ``baseTimestamp`` is the first kept record's, ``maxTimestamp`` the
    largest kept one (a LOG_APPEND_TIME batch keeps its own).

    Raises:
        InvalidRecordError: no records, or a record outside the batch's offsets.
    """
    if not records:
        raise InvalidRecordError("a retained record batch needs at least one record")
    base = header.base_offset
    base_timestamp = records[0].timestamp
    parts: list[bytes] = []
    for record in records:
        delta = record.offset - base
        if not 0 <= delta <= header.last_offset_delta:
            raise InvalidRecordError(
                f"record at offset {record.offset} is outside the batch's offsets "
                f"{base}..{header.last_offset}"
            )
        key, value = record.key, record.value
        body = b"".join((
            b"\x00",
            _zigzag_varint(record.timestamp - base_timestamp),
            encode_varint(delta),
            _NULL if key is None else encode_varint(len(key)) + key,
            _NULL if value is None else encode_varint(len(value)) + value,
            _encode_headers(record.headers) if record.headers else b"\x00",
        ))
        parts += (encode_varint(len(body)), body)
    body = b"".join(parts)
    codec = Compression(header.attributes & COMPRESSION_MASK)
    if codec != Compression.NONE:
        body = compress(codec, body)
    max_timestamp = (
        header.max_timestamp if header.attributes & TIMESTAMP_TYPE_MASK
        else max(r.timestamp for r in records)
    )
    header_tail = HEADER.pack(
        base,
        MIN_BATCH_LENGTH + len(body),
        header.partition_leader_epoch,
        MAGIC,
        0,
        header.attributes,
        header.last_offset_delta,
        base_timestamp,
        max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        len(records),
    )
    crc = _crc32c.crc32c(body, _crc32c.crc32c(memoryview(header_tail)[ATTRIBUTES_OFFSET:]))
    return b"".join(
        (header_tail[:CRC_OFFSET], _CRC.pack(crc), header_tail[ATTRIBUTES_OFFSET:], body)
    )


# --------------------------------------------------------------------------- header / scan


def batch_size(buf: bytes | bytearray | memoryview, pos: int = 0) -> int | None:
    """Total size of the batch at ``pos`` as its header declares, or None if < 12 bytes remain.

    Raises:
        CorruptRecordError: the declared length is smaller than an empty batch.
    """
    if len(buf) - pos < LOG_OVERHEAD:
        return None
    length: int = _INT32.unpack_from(buf, pos + 8)[0]
    if length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"record batch at position {pos} declares length {length}, less than the "
            f"{MIN_BATCH_LENGTH} bytes of an empty batch",
            position=pos,
        )
    return length + LOG_OVERHEAD


def decode_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader | None:
    """Parse the batch header at ``pos``; None if fewer than 61 bytes remain.

    Checks the declared length and the magic byte, not the CRC.

    Raises:
        CorruptRecordError: impossible length or a magic other than 2.
    """
    if len(buf) - pos < HEADER_SIZE:
        if len(buf) - pos >= LOG_OVERHEAD:
            batch_size(buf, pos)  # a short tail may still show a corrupt length
        return None
    fields = HEADER.unpack_from(buf, pos)
    header = BatchHeader(pos, *fields)
    if header.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"record batch at position {pos} declares length {header.batch_length}, less "
            f"than the {MIN_BATCH_LENGTH} bytes of an empty batch",
            position=pos,
        )
    if header.magic != MAGIC:
        raise CorruptRecordError(
            f"record batch at position {pos} has magic {header.magic}, expected {MAGIC} "
            f"(only RecordBatch v2 is supported)",
            position=pos,
        )
    return header


def crc_valid(buf: bytes | bytearray | memoryview, header: BatchHeader) -> bool:
    """Whether the CRC-32C of the batch described by ``header`` matches its bytes."""
    view = memoryview(buf)[header.position + ATTRIBUTES_OFFSET : header.position + header.size]
    return bool(_crc32c.crc32c(view) == header.crc)


def check_batch(buf: bytes | bytearray | memoryview, header: BatchHeader) -> None:
    """Validate what can be validated without decoding records: CRC, counts, offsets.

    Raises:
        CorruptRecordError: naming the position of the batch in ``buf``.
    """
    pos = header.position
    if not crc_valid(buf, header):
        raise CorruptRecordError(
            f"record batch at position {pos} (offsets {header.base_offset}.."
            f"{header.last_offset}) fails its CRC-32C check",
            position=pos,
        )
    if header.last_offset_delta < 0 or header.records_count < 0:
        raise CorruptRecordError(
            f"record batch at position {pos} has lastOffsetDelta {header.last_offset_delta} "
            f"and recordsCount {header.records_count}",
            position=pos,
        )
    if header.attributes & COMPRESSION_MASK > Compression.ZSTD:
        raise CorruptRecordError(
            f"record batch at position {pos} uses unknown compression codec "
            f"{header.attributes & COMPRESSION_MASK}",
            position=pos,
        )


def scan(
    buf: bytes | bytearray | memoryview, pos: int = 0, *, verify: bool = True
) -> Iterator[BatchHeader]:
    """Yield the header of every whole batch in ``buf`` from ``pos``.

    Stops quietly at an incomplete tail; the caller learns where the whole batches end from
    the last header (``h.position + h.size``).

    Raises:
        CorruptRecordError: at the first batch with an impossible length, a wrong magic or
            (with ``verify``) a wrong CRC.
    """
    end = len(buf)
    while pos < end:
        header = decode_header(buf, pos)
        if header is None or pos + header.size > end:
            return
        if verify:
            check_batch(buf, header)
        yield header
        pos += header.size


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Rewrite the baseOffset of the batch at ``pos`` in place (the CRC does not cover it)."""
    BASE_OFFSET.pack_into(buf, pos, base_offset)


def set_log_append_time(buf: bytearray, pos: int, timestamp: int) -> None:
    """Mark the batch at ``pos`` LOG_APPEND_TIME with ``timestamp``, recomputing its CRC."""
    header = decode_header(buf, pos)
    if header is None:
        raise InvalidRecordError(f"no whole batch header at position {pos}")
    attributes = header.attributes | TIMESTAMP_TYPE_MASK
    _INT16.pack_into(buf, pos + ATTRIBUTES_OFFSET, attributes)
    _INT64.pack_into(buf, pos + MAX_TIMESTAMP_OFFSET, timestamp)
    view = memoryview(buf)[pos + ATTRIBUTES_OFFSET : pos + header.size]
    _CRC.pack_into(buf, pos + CRC_OFFSET, _crc32c.crc32c(view))
