"""Decoding Kafka RecordBatch v2 records (the layout is in :mod:`logstore.records.batch`).

Records decode into :class:`~logstore.types.Record` (or any ``NamedTuple`` of the same
fields after a prefix: how a consumer gets its records without re-wrapping them); a
compressed batch is decompressed once. Errors are
:class:`~logstore.errors.CorruptRecordError` naming the position.

:func:`decode_batch_records` runs the compiled twin of :func:`_decode_record_set` when it
is built (:mod:`logstore.records.accel`); the Python loop here stays the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from logstore.errors import CorruptRecordError
from logstore.records.accel import codec as _compiled
from logstore.records.batch import (
    COMPRESSION_MASK,
    CONTROL_MASK,
    HEADER_SIZE,
    TIMESTAMP_TYPE_MASK,
    RecordInput,
    check_batch,
    decode_varint,
    scan,
)
from logstore.records.compression import decompress
from logstore.types import BatchHeader, Compression, Header, Record

_UNZIGZAG = [(b >> 1) ^ -(b & 1) for b in range(128)]
"""Values of the one-byte varints, by byte: the decoder's common case is a table lookup."""


def _skip_records(data: bytes, pos: int, end: int, skip: int) -> int:
    """Position of record number ``skip`` of the record set at ``data[pos:end]``, walking
    only the length prefixes."""
    zz = _UNZIGZAG
    for _ in range(skip):
        b = data[pos]
        if b < 0x80:
            length = zz[b]
            pos += 1
        elif data[pos + 1] < 0x80:
            z = (b & 0x7F) | (data[pos + 1] << 7)
            length = (z >> 1) ^ -(z & 1)
            pos += 2
        else:
            length, pos = decode_varint(data, pos)
        if length < 6 or pos + length > end:
            raise ValueError(f"record length {length} at {pos} overruns the record set")
        pos += length
    return pos


def _decode_record_set(
    data: bytes,
    pos: int,
    end: int,
    count: int,
    base_offset: int,
    base_timestamp: int,
    fixed_timestamp: int | None,
    start_offset: int | None = None,
    limit: int | None = None,
    record_type: type[Any] = Record,
    topic_partition: tuple[str, int] | None = None,
) -> list[Any]:
    """Decode the ``count`` records of the uncompressed record set ``data[pos:end]``.

    Records are ``record_type`` tuples: ``(offset, timestamp, key, value, headers)``, or,
    with ``topic_partition``, ``(topic, partition, offset, ...)`` (a consumer's records,
    built directly rather than re-wrapped: one allocation less per record).

    Records below ``start_offset`` are skipped without being decoded, which is only right
    when the offset deltas are 0, 1, 2, ... (the caller checks), and at most ``limit``
    records are returned.

    The varint reads are inlined for the one- and two-byte cases (lengths under 8 KiB):
    a function call per varint would halve decoding speed.
    """
    skip = 0 if start_offset is None else min(start_offset - base_offset, count)
    whole = limit is None or limit >= count - max(skip, 0)
    if skip > 0:
        pos = _skip_records(data, pos, end, skip)
        count -= skip
    if not whole:
        count = min(count, limit or 0)
    records: list[Any] = []
    append = records.append
    new = tuple.__new__  # skips NamedTuple's generated __new__: cheapest construction
    cls = record_type
    topic, partition = topic_partition or ("", -1)
    prefixed = topic_partition is not None
    zz = _UNZIGZAG
    dv = decode_varint
    for _ in range(count):
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
        b = data[pos + 1]  # data[pos] is the attributes byte, unused
        if b < 0x80:
            ts_delta = zz[b]
            pos += 2
        elif data[pos + 2] < 0x80:
            z = (b & 0x7F) | (data[pos + 2] << 7)
            ts_delta = (z >> 1) ^ -(z & 1)
            pos += 3
        else:
            ts_delta, pos = dv(data, pos + 1)
        b = data[pos]
        if b < 0x80:
            offset_delta = zz[b]
            pos += 1
        elif data[pos + 1] < 0x80:
            z = (b & 0x7F) | (data[pos + 1] << 7)
            offset_delta = (z >> 1) ^ -(z & 1)
            pos += 2
        else:
            offset_delta, pos = dv(data, pos)
        b = data[pos]
        if b < 0x80:
            klen = zz[b]
            pos += 1
        else:
            klen, pos = dv(data, pos)
        if klen < 0:
            key = None
        else:
            key = data[pos : pos + klen]
            pos += klen
        b = data[pos]
        if b < 0x80:
            vlen = zz[b]
            pos += 1
        elif data[pos + 1] < 0x80:
            z = (b & 0x7F) | (data[pos + 1] << 7)
            vlen = (z >> 1) ^ -(z & 1)
            pos += 2
        else:
            vlen, pos = dv(data, pos)
        if vlen < 0:
            value = None
        else:
            value = data[pos : pos + vlen]
            pos += vlen
        if data[pos] == 0:
            headers: Sequence[Header] = ()
            pos += 1
        else:
            headers, pos = _decode_headers(data, pos, record_end)
        if pos != record_end:
            raise ValueError(f"record ending at {pos} does not use exactly its {length} bytes")
        if prefixed:
            append(
                new(
                    cls,
                    (
                        topic,
                        partition,
                        base_offset + offset_delta,
                        base_timestamp + ts_delta,
                        key,
                        value,
                        headers,
                    ),
                )
            )
        else:
            append(
                new(
                    cls,
                    (base_offset + offset_delta, base_timestamp + ts_delta, key, value, headers),
                )
            )
    if whole and pos != end:
        raise ValueError(f"{end - pos} bytes left over after {count} records")
    if fixed_timestamp is not None:  # LOG_APPEND_TIME: every record has the batch's time
        records = [r._replace(timestamp=fixed_timestamp) for r in records]
    return records


def _decode_headers(data: bytes, pos: int, end: int) -> tuple[Sequence[Header], int]:
    count, pos = decode_varint(data, pos)
    if count < 0 or count > end - pos:
        raise ValueError(f"header count {count} is impossible here")
    headers: list[Header] = []
    for _ in range(count):
        klen, pos = decode_varint(data, pos)
        if klen < 0 or pos + klen > end:
            raise ValueError(f"header key length {klen} is impossible here")
        hkey = data[pos : pos + klen].decode("utf-8")
        pos += klen
        vlen, pos = decode_varint(data, pos)
        if vlen < 0:
            hvalue = None
        else:
            if pos + vlen > end:
                raise ValueError(f"header value length {vlen} overruns the record")
            hvalue = data[pos : pos + vlen]
            pos += vlen
        headers.append((hkey, hvalue))
    return tuple(headers), pos


decode_record_set: Callable[..., list[Any]] = (
    _decode_record_set if _compiled is None else _compiled.decode_record_set
)
"""What :func:`decode_batch_records` decodes with: the compiled twin of
:func:`_decode_record_set` when it runs (:mod:`logstore.records.accel`); every argument
is passed."""


def decode_batch_records(
    buf: bytes | bytearray | memoryview,
    header: BatchHeader,
    *,
    verify: bool = True,
    start_offset: int | None = None,
    limit: int | None = None,
    record_type: type[Any] = Record,
    topic_partition: tuple[str, int] | None = None,
) -> list[Any]:
    """Decode the records of the batch ``header`` describes (control batches included):
    those at or after ``start_offset``, at most ``limit`` of them (``record_type`` and
    ``topic_partition``: see :func:`_decode_record_set`).

    Raises:
        CorruptRecordError: bad CRC (with ``verify``), bad compression or malformed records.
    """
    if verify:
        check_batch(buf, header)
    pos = header.position
    start, end = pos + HEADER_SIZE, pos + header.size
    codec_id = header.attributes & COMPRESSION_MASK
    try:
        if codec_id:
            data = decompress(Compression(codec_id), bytes(memoryview(buf)[start:end]))
            start, end = 0, len(data)
        else:
            # A copy of just this batch: decoding then runs on bytes the copy left in the
            # CPU cache, which is measurably faster than slicing a large fetch buffer.
            data = bytes(memoryview(buf)[start:end])
            start, end = 0, len(data)
        fixed = header.max_timestamp if header.attributes & TIMESTAMP_TYPE_MASK else None
        if header.last_offset_delta != header.records_count - 1 and start_offset is not None:
            # offset deltas with gaps (compacted): decode everything, then filter
            every = decode_record_set(
                data, start, end, header.records_count, header.base_offset,
                header.base_timestamp, fixed, None, None, record_type, topic_partition,
            )
            return [r for r in every if r.offset >= start_offset][:limit]
        return decode_record_set(
            data,
            start,
            end,
            header.records_count,
            header.base_offset,
            header.base_timestamp,
            fixed,
            start_offset,
            limit,
            record_type,
            topic_partition,
        )
    except CorruptRecordError as err:
        raise CorruptRecordError(f"record batch at position {pos}: {err}", position=pos) from err
    except (IndexError, ValueError, UnicodeDecodeError) as err:
        raise CorruptRecordError(
            f"record batch at position {pos} (offsets {header.base_offset}.."
            f"{header.last_offset}) holds malformed records: {err}",
            position=pos,
        ) from err


def decode_batches(
    buf: bytes | bytearray | memoryview, *, verify: bool = True, skip_control: bool = True
) -> Iterator[Record]:
    """Yield every record of every whole batch in ``buf`` (an incomplete tail is ignored)."""
    for header in scan(buf, verify=verify):
        if skip_control and header.attributes & CONTROL_MASK:
            continue
        yield from decode_batch_records(buf, header, verify=False)


def decode_records(
    buf: bytes | bytearray | memoryview, *, verify: bool = True, skip_control: bool = True
) -> list[Record]:
    """Every record of every whole batch in ``buf``, as one list (faster than iterating
    :func:`decode_batches` when all records are wanted)."""
    out: list[Record] = []
    for header in scan(buf, verify=verify):
        if not (skip_control and header.attributes & CONTROL_MASK):
            out += decode_batch_records(buf, header, verify=False)
    return out


def records_to_inputs(records: Sequence[Any]) -> list[RecordInput]:
    """Turn decoded :class:`Record`s back into encoder inputs (tests, tools)."""
    return [(r.timestamp, r.key, r.value, tuple(r.headers)) for r in records]
