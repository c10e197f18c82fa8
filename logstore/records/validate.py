"""Checking that a batch's records are well formed, without decoding them.

A batch received from a client (the wire server's Produce) is stored as it came, so its
records must be checked before it is acknowledged: a batch whose CRC is right but whose
records are malformed would otherwise be stored where every read fails. Kafka's
LogValidator iterates the records for the same reason. :func:`check_batch_records` walks
each record's fields and lengths as the decoder would (:mod:`logstore.records.decode`)
but builds no objects: it is several times faster than decoding.

Checked per record: its length fits the record set and is used exactly; the offset
deltas are 0, 1, 2, ... (as Kafka's producers write them); the key and value lengths fit
(negative: null, as Kafka reads them); every header has a UTF-8 key of length >= 0 and a
value (negative length: null).
Per batch: the record count matches the header, and the records fill the record set
exactly (compressed batches are decompressed first). :func:`check_batch_records` runs
the compiled twin of :func:`_check_record_set` when it is built
(:mod:`logstore.records.accel`).

No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Callable

from logstore.errors import CorruptRecordError
from logstore.records.accel import codec as _compiled
from logstore.records.batch import COMPRESSION_MASK, HEADER_SIZE, check_batch, decode_varint
from logstore.records.compression import decompress
from logstore.types import BatchHeader, Compression

_UNZIGZAG = [(b >> 1) ^ -(b & 1) for b in range(128)]


def check_batch_records(
    buf: bytes | bytearray | memoryview, header: BatchHeader, *, verify: bool = False
) -> None:
    """Raise CorruptRecordError unless the records of the batch ``header`` describes (in
    ``buf``) are well formed (``verify``: check its CRC first)."""
    if verify:
        check_batch(buf, header)
    pos = header.position
    start, end = pos + HEADER_SIZE, pos + header.size
    codec_id = header.attributes & COMPRESSION_MASK
    try:
        if codec_id:
            data = decompress(Compression(codec_id), bytes(memoryview(buf)[start:end]))
        else:
            data = bytes(memoryview(buf)[start:end])
        check_record_set(data, len(data), header.records_count)
    except CorruptRecordError as err:
        raise CorruptRecordError(f"record batch at position {pos}: {err}", position=pos) from err
    except (IndexError, ValueError, UnicodeDecodeError) as err:
        raise CorruptRecordError(
            f"record batch at position {pos} holds malformed records: {err}", position=pos
        ) from err


def _check_record_set(data: bytes, end: int, count: int) -> None:
    """Walk the ``count`` records of ``data[:end]`` (the varint reads inlined for the
    one- and two-byte cases, as in the decoder)."""
    zz = _UNZIGZAG
    dv = decode_varint
    pos = 0
    for expected_delta in range(count):
        b = data[pos]
        if b < 0x80:
            length = zz[b]
            pos += 1
        elif data[pos + 1] < 0x80:
            z = (b & 0x7F) | (data[pos + 1] << 7)
            length = (z >> 1) ^ -(z & 1)
            pos += 2
        else:
            length, pos = dv(data, pos)
        record_end = pos + length
        if length < 6 or record_end > end:
            raise ValueError(f"record length {length} at {pos} overruns the record set")
        b = data[pos + 1]  # data[pos] is the attributes byte
        if b < 0x80:
            pos += 2
        elif data[pos + 2] < 0x80:
            pos += 3
        else:
            _, pos = dv(data, pos + 1)
        b = data[pos]
        if b < 0x80:
            delta = zz[b]
            pos += 1
        else:
            delta, pos = dv(data, pos)
        if delta != expected_delta:
            raise ValueError(f"record {expected_delta} has offset delta {delta}")
        for _ in (0, 1):  # key, then value: a length (-1: null) and that many bytes
            b = data[pos]
            if b < 0x80:
                n = zz[b]
                pos += 1
            elif data[pos + 1] < 0x80:
                z = (b & 0x7F) | (data[pos + 1] << 7)
                n = (z >> 1) ^ -(z & 1)
                pos += 2
            else:
                n, pos = dv(data, pos)
            if n > 0:  # negative: null (as Kafka reads it)
                pos += n
        if data[pos] == 0:
            pos += 1
        else:
            pos = _check_headers(data, pos, record_end)
        if pos != record_end:
            raise ValueError(f"record ending at {pos} does not use exactly its {length} bytes")
    if pos != end:
        raise ValueError(f"{end - pos} bytes left over after {count} records")


def _check_headers(data: bytes, pos: int, end: int) -> int:
    count, pos = decode_varint(data, pos)
    if count < 0 or count > end - pos:
        raise ValueError(f"header count {count} is impossible here")
    for _ in range(count):
        klen, pos = decode_varint(data, pos)
        if klen < 0 or pos + klen > end:
            raise ValueError(f"header key length {klen} at {pos}")
        str(data[pos : pos + klen], "utf-8")
        pos += klen
        vlen, pos = decode_varint(data, pos)
        if vlen > 0:  # negative: null
            if pos + vlen > end:
                raise ValueError(f"header value length {vlen} overruns the record")
            pos += vlen
    return pos


check_record_set: Callable[[bytes, int, int], None] = (
    _check_record_set if _compiled is None else _compiled.check_record_set
)
"""What :func:`check_batch_records` walks records with: the compiled twin of
:func:`_check_record_set` when it runs (:mod:`logstore.records.accel`)."""
