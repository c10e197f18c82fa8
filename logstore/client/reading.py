"""Reading a stretch of one partition through the backend seam, a bounded fetch at a time:
what ``logstore replay``, the dead-letter library and the web console's record browser
share (a consumer is for following a partition; this is for reading ``[first, end)`` of
it once)."""

from __future__ import annotations

from collections.abc import Iterator

from logstore.client.backend import Backend
from logstore.errors import OffsetOutOfRangeError
from logstore.types import ConsumerRecord, TopicPartition

FETCH_BYTES = 1 << 20
FETCH_RECORDS = 500


def read_partition(
    backend: Backend, tp: TopicPartition, first: int, end: int, *,
    most: int | None = None, chunk: int = FETCH_RECORDS, skip_deleted: bool = True,
) -> Iterator[ConsumerRecord]:
    """The records of ``tp`` with offsets in ``[first, end)``, at most ``most`` of them,
    ``chunk`` records (and about 1 MiB) a fetch. It ends early where the partition holds
    no more records below ``end`` (transaction markers, say).

    Records that retention deletes meanwhile are skipped (reading goes on from the new
    log start), or, with ``skip_deleted=False``, the read fails.

    Raises:
        OffsetOutOfRangeError: ``skip_deleted=False`` and records were deleted.
    """
    offset, seen = first, 0
    while offset < end and (most is None or seen < most):
        ask = min(chunk, end - offset) if most is None else min(chunk, most - seen)
        answer = backend.fetch({tp: offset}, max_records=ask, max_bytes=FETCH_BYTES)
        found = answer.get(tp, [])
        if isinstance(found, OffsetOutOfRangeError) and skip_deleted:
            start = backend.offset_range(tp)[0]
            if start <= offset:  # not retention: nothing more to read here
                return
            offset = start
            continue
        if isinstance(found, Exception):
            raise found
        if not found:
            return
        for record in found:
            if record.offset >= end or (most is not None and seen >= most):
                return
            seen += 1
            yield record
        offset = found[-1].offset + 1
