"""Segments that declare offset gaps, as the log cleaner (compaction) writes them.

Kafka's compaction keeps offsets and drops records, so a cleaned segment has gaps between
its batches, may start after its base offset and may end before the next segment's base.
Everywhere else a gap is damage (``baseOffset`` lies outside the CRC, so offsets that do
not follow on are how a damaged one is caught). So contiguity is a property each segment
declares:

* A segment with a marker file ``<20-digit base>.gaps`` beside its ``.log`` declares gaps
  (the content of the marker is not read; its presence is the declaration). The marker
  is written, and made durable, before the segment's ``.log`` exists, so a segment is
  never visible without it (:func:`write_cleaned_segment`).
* In such a segment offsets must still increase from batch to batch (never go back) and
  stay at or above its base offset; reads, offset and time index lookups, index rebuilds,
  recovery and ``verify`` accept the gaps. Reading an offset inside a gap returns the next
  record that survives (Kafka's semantics), in this segment or the next.
* Between such a segment and the next one the offsets may skip too; recovery never
  deletes the later segments because of it. A segment without the marker must still end
  exactly at the next segment's base, and its offsets must follow on without a gap: the
  same gaps there are still reported and treated as corruption.
* Deleting the segment deletes the marker (after the ``.log``); a marker without a
  ``.log`` is removed on open, like an orphan index.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from logstore.config import TopicConfig
from logstore.errors import InvalidRecordError, StorageError
from logstore.records import scan
from logstore.storage.files import FileSystem
from logstore.storage.listing import GAPS_SUFFIX, LOG_SUFFIX, segment_path
from logstore.storage.segment import Segment
from logstore.types import BatchHeader

MARKER = b"logstore: this segment's offsets may have gaps (written by the log cleaner)\n"


def write_cleaned_segment(
    fs: FileSystem,
    directory: str,
    base_offset: int,
    batches: Sequence[bytes],
    config: TopicConfig,
    *,
    now_ms: int = 0,
) -> Segment:
    """Write a new sealed segment at ``base_offset`` that declares gaps, holding
    ``batches`` (whole encoded record batches whose ``baseOffset`` is already set, in
    increasing offset order, each at or above ``base_offset``).

    The ``.gaps`` marker is written and made durable first, then the ``.log``, ``.index``
    and ``.timeindex`` are written as appends index them, sealed and fsynced, and the
    directory fsynced. For tests and the log cleaner: swapping the segment in for the
    ones it replaces (Kafka's ``.cleaned``/``.swap`` protocol) is the cleaner's job; the
    segment must not exist yet, and the caller must not have the partition open.

    Raises:
        InvalidRecordError: the batches are not whole or their offsets go back.
        StorageError: a segment at ``base_offset`` exists already.
    """
    data = b"".join(batches)
    headers = _check_batches(data, base_offset)
    if fs.exists(segment_path(directory, base_offset, LOG_SUFFIX)):
        raise StorageError(
            f"cannot write a cleaned segment at offset {base_offset} in {directory}: a "
            f"segment is there already",
            directory,
        )
    fs.write_file_atomic(segment_path(directory, base_offset, GAPS_SUFFIX), MARKER)
    seg = Segment.create(fs, directory, base_offset, config, now_ms, gaps=True)
    seg.append(data, headers)
    seg.seal(fsync=True)
    fs.fsync_dir(os.path.dirname(seg.log_path) or ".")
    seg.close_files()
    return seg


def _check_batches(data: bytes, base_offset: int) -> list[BatchHeader]:
    headers = list(scan(data, verify=True))
    end = headers[-1].position + headers[-1].size if headers else 0
    if not headers or end != len(data):
        raise InvalidRecordError(
            f"a cleaned segment needs whole record batches: {len(data) - end} of "
            f"{len(data)} bytes are not a whole batch"
        )
    expected = base_offset
    for h in headers:
        if h.base_offset < expected:
            raise InvalidRecordError(
                f"record batch at position {h.position} has base offset {h.base_offset}, "
                f"below {expected}: offsets in a cleaned segment may skip but not go back"
            )
        expected = h.next_offset
    return headers


__all__ = ["MARKER", "write_cleaned_segment"]
