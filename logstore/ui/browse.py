"""The record browser: a page of one partition's records from an offset or a time,
filtered, with where the next and the previous page start; read a bounded fetch at a
time, so a page costs the same memory whatever the partition holds.

A page holds at most :data:`MAX_LIMIT` records and about :data:`PAGE_CHARS` characters
(a page of large values ends sooner: ``next_offset`` goes on from there); a filtered page
reads at most ``max_scan`` records (``scan_limited`` says it stopped there). The previous
page is found by reading back from the page's first offset (offsets of a compacted topic,
or of transaction markers, hold no record: counting offsets would overlap the pages).
"""

from __future__ import annotations

from typing import Any

from logstore.client.backend import Backend
from logstore.client.reading import read_partition
from logstore.errors import InvalidConfigError, OffsetOutOfRangeError, PartitionNotFoundError
from logstore.types import TopicPartition

from .payloads import NO_FILTER, RecordFilter, record_json, shown_size

MAX_LIMIT = 500
"""The most records (or dead letters) one page holds."""
MAX_SCAN = 100_000
"""The most records one filtered request may read."""
PAGE_CHARS = 4 * 1024 * 1024
"""About the most characters of keys, values and headers one page holds."""


def partition_range(backend: Backend, tp: TopicPartition) -> tuple[int, int]:
    """``(start, end)`` of ``tp``.

    Raises:
        TopicNotFoundError, PartitionNotFoundError (in the store's words).
    """
    count = backend.topic_metadata(tp.topic).partitions
    if not 0 <= tp.partition < count:
        raise PartitionNotFoundError(
            f"topic {tp.topic!r} has no partition {tp.partition} (it has partitions "
            f"0..{count - 1})")
    return backend.offset_range(tp)


def records_page(
    backend: Backend, topic: str, partition: int, *, offset: int | None = None,
    timestamp: int | None = None, limit: int = 50, where: RecordFilter = NO_FILTER,
    max_scan: int = 10_000,
) -> dict[str, Any]:
    """A page of ``topic``'s ``partition``: from ``offset``, from the first record at or
    after ``timestamp``, or from the start; at most ``limit`` records that match
    ``where``, reading at most ``max_scan`` records.

    Raises:
        TopicNotFoundError, PartitionNotFoundError.
        OffsetOutOfRangeError: ``offset`` outside ``[start, end]``.
        InvalidConfigError: ``limit`` or ``max_scan`` out of bounds.
    """
    if not 1 <= limit <= MAX_LIMIT or not 1 <= max_scan <= MAX_SCAN:
        raise InvalidConfigError(
            f"limit={limit} and max_scan={max_scan} must be within 1..{MAX_LIMIT} and "
            f"1..{MAX_SCAN}")
    tp = TopicPartition(topic, partition)
    start, end = partition_range(backend, tp)
    if timestamp is not None:
        found = backend.offset_for_timestamp(tp, timestamp)
        first = end if found is None else max(found.offset, start)
    elif offset is not None:
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(offset, start, end)
        first = offset
    else:
        first = start
    page: list[dict[str, Any]] = []
    chars = scanned = 0
    position = first
    full = False
    for record in read_partition(backend, tp, first, end, most=max_scan):
        scanned += 1
        position = record.offset + 1
        if where.matches(record):
            shown = record_json(record)
            page.append(shown)
            chars += shown_size(shown)
            if len(page) == limit or chars >= PAGE_CHARS:
                full = True
                break
    else:
        if scanned < max_scan:
            position = end  # read to the end (maybe past offsets that hold no record)
    if full and position < end and not any(read_partition(backend, tp, position, end, most=1)):
        position = end  # only transaction markers (or nothing) left: no next page
    at_end = position >= end
    return {
        "topic": topic, "partition": partition, "start_offset": start, "end_offset": end,
        "from_offset": first, "records": page,
        "next_offset": None if at_end else position,
        "prev_offset": None if where.active else _previous(backend, tp, start, first, limit),
        "scanned": scanned,
        "scan_limited": not full and not at_end,
    }


def _previous(
    backend: Backend, tp: TopicPartition, start: int, first: int, limit: int
) -> int | None:
    """Where the page of ``limit`` records before ``first`` starts (None: there is no
    record before it), read back a growing window at a time (bounded by
    :data:`MAX_SCAN`)."""
    window = limit
    while True:
        low = max(start, first - window)
        offsets = [r.offset for r in read_partition(backend, tp, low, first, most=MAX_SCAN)]
        if len(offsets) >= limit:
            return offsets[-limit]
        if low == start or window >= MAX_SCAN:
            return offsets[0] if offsets else (None if low == start else low)
        window *= 8
