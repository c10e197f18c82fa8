"""Log compaction: the cleaner of ``cleanup_policy="compact"`` (and ``"compact,delete"``).

Kafka's design (reference §3.3, ``LogCleaner.scala``), for one partition at a time:

* The sealed segments from the log start up to the **cleanable end** are cleaned; the
  active segment never is, nor any segment whose newest record is younger than
  ``min_compaction_lag_ms`` (the cleanable end is the first such segment's base).
* The **clean section** ``[log start, first dirty)`` was compacted before; the **dirty
  section** ``[first dirty, cleanable end)`` was not. The cleaner runs when the dirty share
  of those bytes is above ``min_cleanable_dirty_ratio``, or when the oldest dirty segment's
  first record is older than ``max_compaction_lag_ms`` (or when asked: ``force``).
* A key -> last offset map of the dirty section is built, then every segment up to the
  cleanable end is recopied without the records whose key has a later offset in the map,
  without tombstones (null values) older than ``delete_retention_ms`` (by their timestamp:
  Kafka counts from the segment's first cleaning, which needs a horizon stored in each
  batch; a record's own timestamp is what logstore has) and without records that have no
  key (Kafka's cleaner drops them too). Offsets never change: a batch keeps its base
  offset and ``lastOffsetDelta`` and its records their offset deltas
  (:func:`~logstore.records.batch.encode_retained_batch`); a batch whose records all stay
  is copied byte for byte. Control batches and transactional batches are kept whole
  (logstore has no transactions yet; keeping them never loses a record). Adjacent small
  segments are merged, up to ``segment_bytes`` per cleaned segment.
* Each cleaned segment is swapped in crash-safely (:mod:`logstore.storage.swap`), and
  declares offset gaps (:mod:`logstore.storage.gaps`).
* Progress (the first dirty offset, bytes reclaimed, runs) is kept in the partition's
  ``cleaner.checkpoint`` (Kafka's ``cleaner-offset-checkpoint``); losing it only makes the
  next run clean everything again.

Which process cleans: any process with the partition open and write access may call
:meth:`~logstore.storage.log.PartitionLog.compact`; the ``.cleaner.lock`` flock picks one at
a time (the others skip the partition). This module reads segments and writes the cleaned
ones; swapping them in is the log's (it holds the locks readers follow).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from logstore.config import TopicConfig
from logstore.errors import CorruptionError
from logstore.records import decode_batch_records, encode_retained_batch, scan
from logstore.storage.files import FileSystem
from logstore.storage.listing import CLEANER_CHECKPOINT_NAME
from logstore.storage.segment import Segment
from logstore.storage.statefile import read_state, write_state
from logstore.types import BatchHeader

log = logging.getLogger(__name__)

PROGRESS_KIND = "cleaner-checkpoint"
READ_CHUNK_BYTES = 8 << 20
"""How much of a segment the cleaner reads at a time (whole batches)."""
WRITE_CHUNK_BYTES = 4 << 20
"""How much cleaned data it gathers before appending it to the cleaned segment."""
MAX_MAP_ENTRIES = 10_000_000
"""Keys one run maps at most (Kafka bounds its map by a 128 MiB buffer): past it, the
dirty section is cut at a segment boundary and the rest waits for the next run."""
_INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class CleanerProgress:
    """What the cleaner has done to a partition (its ``cleaner.checkpoint``)."""

    first_dirty_offset: int = 0
    """Offsets below this were compacted (the clean section ends here)."""
    bytes_reclaimed: int = 0
    runs: int = 0
    last_run_ms: int = -1


def progress_path(directory: str) -> str:
    return f"{directory}/{CLEANER_CHECKPOINT_NAME}"


def read_progress(fs: FileSystem, directory: str) -> CleanerProgress:
    """The partition's cleaner progress; a fresh one when there is none, or when it is
    damaged (a WARNING: cleaning everything again is always correct)."""
    path = progress_path(directory)
    try:
        data = json.loads(read_state(fs, path, PROGRESS_KIND))
        progress = CleanerProgress(**data)
        if not all(type(v) is int for v in dataclasses.astuple(progress)):
            raise ValueError(f"fields {data!r}")
        return progress
    except FileNotFoundError:
        return CleanerProgress()
    except (CorruptionError, ValueError, TypeError) as err:
        log.warning("%s is damaged (%s): the next compaction cleans the whole log", path, err)
        return CleanerProgress()


def write_progress(fs: FileSystem, directory: str, progress: CleanerProgress) -> None:
    payload = json.dumps(dataclasses.asdict(progress)).encode()
    write_state(fs, progress_path(directory), PROGRESS_KIND, payload)


def clamp_progress(fs: FileSystem, directory: str, log_end_offset: int) -> None:
    """After a recovery cut the log below the first dirty offset, later appends reuse those
    offsets: they are dirty, so the clean section is moved back to the log start."""
    if not fs.exists(progress_path(directory)):
        return
    progress = read_progress(fs, directory)
    if progress.first_dirty_offset > log_end_offset:
        write_progress(fs, directory, dataclasses.replace(progress, first_dirty_offset=0))


class SealedInfo(NamedTuple):
    """What the cleaner needs of a sealed segment to decide (sizes, timestamps)."""

    base_offset: int
    end_offset: int
    """The next segment's base offset."""
    size: int
    largest_timestamp: int
    first_timestamp: int
    """The first batch's largest timestamp (-1: unknown)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CompactionState:
    """How compacted a partition is, and whether the cleaner would clean it now."""

    first_dirty_offset: int
    cleanable_end: int
    """The first offset the cleaner may not clean yet (active segment, or too young)."""
    clean_bytes: int
    dirty_bytes: int
    dirty_ratio: float
    due: bool
    """The dirty ratio is above ``min_cleanable_dirty_ratio`` or ``max_compaction_lag_ms``
    has passed, with something to clean."""
    bytes_reclaimed: int
    runs: int
    last_run_ms: int

    @property
    def last_cleaned_offset(self) -> int:
        """The last offset of the clean section (-1: nothing cleaned yet)."""
        return self.first_dirty_offset - 1

    def to_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["last_cleaned_offset"] = self.last_cleaned_offset
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class CompactionStats:
    """What one cleaner run did."""

    start_offset: int
    end_offset: int
    segments_in: int
    segments_out: int
    bytes_in: int
    bytes_out: int
    records_in: int
    records_out: int
    tombstones_removed: int
    map_entries: int
    seconds: float

    @property
    def throughput_mb_s(self) -> float:
        """Megabytes (10^6) of segments read per second of the run."""
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["throughput_mb_s"] = round(self.throughput_mb_s, 2)
        return out


def measure(
    sealed: Sequence[SealedInfo],
    log_start: int,
    progress: CleanerProgress,
    config: TopicConfig,
    now_ms: int,
) -> CompactionState:
    """Where the clean and dirty sections lie among the ``sealed`` segments (oldest first)
    and whether the cleaner is due."""
    end = log_start
    for info in sealed:
        if config.min_compaction_lag_ms and info.largest_timestamp > (
            now_ms - config.min_compaction_lag_ms
        ):
            break
        end = info.end_offset
    end = max(end, log_start)
    first_dirty = min(max(progress.first_dirty_offset, log_start), end)
    clean = dirty = 0
    oldest_dirty = -1
    for info in sealed:
        if info.base_offset >= end:
            break
        if info.end_offset <= log_start:
            continue
        if info.end_offset <= first_dirty:
            clean += info.size
        else:
            dirty += info.size
            if oldest_dirty < 0:
                oldest_dirty = info.first_timestamp
    ratio = dirty / (clean + dirty) if clean + dirty else 0.0
    overdue = oldest_dirty >= 0 and now_ms - oldest_dirty > config.max_compaction_lag_ms
    due = dirty > 0 and (ratio > config.min_cleanable_dirty_ratio or overdue)
    return CompactionState(
        first_dirty, end, clean, dirty, ratio, due,
        progress.bytes_reclaimed, progress.runs, progress.last_run_ms,
    )


# --------------------------------------------------------------------------- reading


def batches(seg: Segment) -> Iterator[tuple[bytes, BatchHeader]]:
    """Every batch of a sealed segment, read in chunks of whole batches: ``(chunk,
    header)`` with the header's position in ``chunk`` (CRC-checked). The files are open
    only meanwhile; opening them records which file the segment is (an empty one too),
    which the swap checks."""
    position = 0
    size = seg.log_file.size
    try:
        while position < size:
            data = seg.read_from(position, READ_CHUNK_BYTES)
            if not data:
                return
            for header in scan(data, verify=True):
                yield data, header
            position += len(data)
    finally:
        seg.close_files()


def build_offset_map(
    dirty: Sequence[Segment], max_entries: int = MAX_MAP_ENTRIES
) -> tuple[dict[bytes, int], int]:
    """The last offset of each key in ``dirty`` (whole segments, in order), and the
    offset the map covers up to (the end of the last segment mapped: a segment that would
    take the map past ``max_entries`` waits, unless it is the first)."""
    offsets: dict[bytes, int] = {}
    covered = dirty[0].base_offset if dirty else 0
    for seg in dirty:
        before = dict(offsets) if len(offsets) > max_entries // 2 else None
        for data, header in batches(seg):
            if header.is_control or header.is_transactional:
                continue
            offsets.update(
                {r.key: r.offset for r in decode_batch_records(data, header, verify=False)}
            )
        offsets.pop(None, None)  # type: ignore[call-overload]  # keyless: never mapped
        if len(offsets) > max_entries and before is not None and covered > dirty[0].base_offset:
            return before, covered
        covered = seg.next_offset
    return offsets, covered


class Retention:
    """Which records of a batch stay: the rule the cleaner applies."""

    def __init__(
        self, offsets: dict[bytes, int], log_start: int, tombstone_horizon: int
    ) -> None:
        self.offsets = offsets
        self.log_start = log_start
        self.tombstone_horizon = tombstone_horizon
        """Tombstones with a timestamp at or below this go."""
        self.tombstones_removed = 0

    def filter(self, data: bytes, header: BatchHeader) -> tuple[bytes, BatchHeader] | None:
        """The batch as it stays, with its header (position 0): its own bytes when every
        record stays, a rewritten batch when some do, None when none does.

        A record stays if it has a key, is at or past the log start, no later offset of
        its key is in the map, and it is not a tombstone at or below the horizon. Control
        and transactional batches stay whole."""
        whole = data[header.position : header.position + header.size]
        if header.is_control or header.is_transactional:
            return whole, header._replace(position=0)
        if header.last_offset < self.log_start:
            return None
        records = decode_batch_records(data, header, verify=False)
        # one list comprehension: the cleaner's per-record hot loop
        latest, start, horizon = self.offsets.get, self.log_start, self.tombstone_horizon
        kept = [
            r for r in records
            if r.key is not None and r.offset >= start and latest(r.key, -1) <= r.offset
            and (r.value is not None or r.timestamp > horizon)
        ]
        if len(kept) != len(records):  # count the tombstones that went for their age
            self.tombstones_removed += sum(
                1 for r in records
                if r.value is None and r.key is not None and r.offset >= start
                and latest(r.key, -1) <= r.offset and r.timestamp <= horizon
            )
        if len(kept) == len(records):
            return whole, header._replace(position=0)
        if not kept:
            return None
        batch = encode_retained_batch(header, kept)
        return batch, next(scan(batch))


class GroupResult(NamedTuple):
    segment: Segment
    """The cleaned segment, under its ``.cleaned`` names (sealed, fsynced)."""
    bytes_in: int
    bytes_out: int
    records_in: int
    records_out: int
    changed: bool
    """Whether any record went (else the swap can be skipped for a single segment)."""


def clean_group(
    fs: FileSystem,
    directory: str,
    segments: Sequence[Segment],
    retention: Retention,
    config: TopicConfig,
    now_ms: int,
) -> tuple[GroupResult, int]:
    """Write the cleaned copy of the first of ``segments`` and as many of the following
    ones as fit (Kafka merges small adjacent segments the same way): at the first one's
    base, under the ``.cleaned`` names, sealed and fsynced with the directory. A segment
    joins while the cleaned data so far plus its whole size stays within
    ``segment_bytes`` (its cleaned copy is never larger) and its offsets stay within what
    an index can address from the base. Returns the result and how many segments it took.
    """
    base = segments[0].base_offset
    out = Segment.create(fs, directory, base, config, now_ms, gaps=True, staged=True)
    bytes_in = bytes_out = records_in = records_out = 0
    parts: list[bytes] = []
    headers: list[BatchHeader] = []
    pending = taken = 0
    try:
        for seg in segments:
            if taken and (
                bytes_out + pending + seg.size > config.segment_bytes
                or seg.next_offset - base > _INT32_MAX
            ):
                break
            taken += 1
            bytes_in += seg.size
            for data, header in batches(seg):
                records_in += header.records_count
                kept = retention.filter(data, header)
                if kept is None:
                    continue
                batch, new = kept
                headers.append(new._replace(position=pending))
                records_out += new.records_count
                parts.append(batch)
                pending += len(batch)
                if pending >= WRITE_CHUNK_BYTES:
                    out.append(parts, headers)
                    bytes_out += pending
                    parts, headers, pending = [], [], 0
        if parts:
            out.append(parts, headers)
            bytes_out += pending
        out.seal(fsync=True)
        out.close_files()
    except BaseException:
        out.delete()
        raise
    fs.fsync_dir(directory)
    result = GroupResult(
        out, bytes_in, bytes_out, records_in, records_out,
        records_out != records_in or taken > 1,
    )
    return result, taken


__all__ = [
    "MAX_MAP_ENTRIES",
    "CleanerProgress",
    "CompactionState",
    "CompactionStats",
    "GroupResult",
    "Retention",
    "SealedInfo",
    "build_offset_map",
    "clamp_progress",
    "clean_group",
    "measure",
    "read_progress",
    "write_progress",
]
