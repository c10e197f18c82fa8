"""One segment: a ``.log`` of whole record batches plus its ``.index`` and ``.timeindex``.

Files are named by the segment's base offset, zero-padded to 20 digits
(``00000000000000000000.log``), as Kafka names them. A segment knows byte positions and
offsets, not topics. Its files are opened lazily, so a partition of a thousand sealed
segments opens without touching them. A segment written by the log cleaner carries a
``.gaps`` marker and :attr:`Segment.gaps` (:mod:`logstore.storage.gaps`).

:class:`Segment` is built from parts: :class:`~logstore.storage.segment_reads.SegmentReads`
(find a batch, read from a position, offset for a timestamp) and
:class:`~logstore.storage.segment_load.SegmentLoad` (open a sealed or the active segment
without a full scan); here are the files, the full rescan (:meth:`Segment.scan`, with the
batch walker of :mod:`logstore.storage.batches`), appends, sharing state, seal and delete.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

from logstore.config import TopicConfig
from logstore.errors import CorruptRecordError, StoreClosedError
from logstore.storage.batches import BatchWalk, WalkStop, walk_batches
from logstore.storage.files import Buffer, FileHandle, FileSystem
from logstore.storage.index import OffsetIndex, TimeIndex
from logstore.storage.listing import (
    GAPS_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SUFFIXES,
    TIME_INDEX_SUFFIX,
    is_segment_log,
    parse_segment_name,
    segment_log_bases,
    segment_path,
)
from logstore.storage.segment_load import SegmentLoad
from logstore.types import BatchHeader

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_UNKNOWN_LARGEST = 2**63 - 1
"""The largest timestamp of a segment whose damage stopped the index rebuild: never below
a timestamp sought, so lookups scan the segment instead of skipping it."""


class SegmentScan(NamedTuple):
    """What a CRC-checked walk of a whole segment found (the input of a recovery plan)."""

    size: int
    """The ``.log`` file's size."""
    end: int
    """The position after the last good batch."""
    next_offset: int
    """The offset after the last good batch (the base offset if there is none)."""
    stop: WalkStop | None
    """Where and why the walk stopped before ``size`` (None: every batch is good)."""


class Segment(SegmentLoad):
    """A ``.log`` file with its two sparse indexes.

    ``next_offset`` (one past the last offset stored), ``max_timestamp`` and the byte
    counters are kept by :meth:`load_sealed`, :meth:`load_active`, :meth:`scan` and
    :meth:`append`.
    """

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        config: TopicConfig,
        *,
        gaps: bool = False,
    ):
        self.fs = fs
        self.gaps = gaps
        """Whether the segment declares offset gaps (a ``.gaps`` marker: written by the
        cleaner; see :mod:`logstore.storage.gaps`): its batches' offsets increase but may
        skip, it may start after its base offset and end before the next segment's."""
        self.directory = directory
        self.base_offset = base_offset
        self.config = config
        prefix = segment_path(directory, base_offset, "")
        self.log_path = prefix + LOG_SUFFIX
        self.index_path = prefix + INDEX_SUFFIX
        self.time_index_path = prefix + TIME_INDEX_SUFFIX
        self.gaps_path = prefix + GAPS_SUFFIX
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.first_batch_timestamp: int | None = None
        self.created_ms: int | None = None
        self._bytes_since_index_entry = 0
        self._log: FileHandle | None = None
        self._index: OffsetIndex | None = None
        self._time_index: TimeIndex | None = None
        self._size: int | None = None
        self._deleted = False
        self._indexes_missing = False
        self.producer_batches: dict[int, tuple[int, int, int]] = {}
        """Idempotent producers' last batch seen by a recovery scan: producer id ->
        (base sequence, base offset, last offset)."""

    # ------------------------------------------------------------------ files

    def _open_files(self, create: bool = False) -> None:
        if self._deleted:
            raise StoreClosedError(f"segment {self.log_path} was deleted")
        if self._log is None:
            self._log = self.fs.open(self.log_path, create=create)
            self._size = self._log.size
        if self._index is None:
            self._indexes_missing = not (
                self.fs.exists(self.index_path) and self.fs.exists(self.time_index_path)
            )
            self._index = OffsetIndex(
                self.fs, self.index_path, self.base_offset, self.config.max_index_entries
            )
        if self._time_index is None:
            self._time_index = TimeIndex(
                self.fs, self.time_index_path, self.base_offset, self.config.max_time_index_entries
            )

    @property
    def is_open(self) -> bool:
        return self._log is not None

    @property
    def log_file(self) -> FileHandle:
        if self._log is None:
            self._open_files()
        assert self._log is not None  # for mypy: _open_files sets it
        return self._log

    @property
    def index(self) -> OffsetIndex:
        if self._index is None:
            self.load_sealed()
        assert self._index is not None
        return self._index

    @property
    def time_index(self) -> TimeIndex:
        if self._time_index is None:
            self.load_sealed()
        assert self._time_index is not None
        return self._time_index

    @property
    def size(self) -> int:
        if self._log is not None:
            return self._log.size
        if self._size is None:
            self._size = self.fs.size(self.log_path)
        return self._size

    def close_files(self) -> None:
        """Close the open files; they reopen on the next use."""
        if self._log is not None:
            self._size = self._log.size
        for handle in (self._log, self._index, self._time_index):
            if handle is not None:
                handle.close()
        self._log = self._index = self._time_index = None

    # ------------------------------------------------------------------ load / recover

    @classmethod
    def create(
        cls,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        config: TopicConfig,
        now_ms: int,
        *,
        gaps: bool = False,
    ) -> Segment:
        """A new, empty segment (its files exist once this returns; the caller fsyncs the dir).

        A file already there was left by a writer killed in the middle of a roll: it
        created the file and wrote to it, but died before its head named the segment, so
        nothing in it was acknowledged (the segment starts at the log end). It is emptied:
        appending after its bytes would hold the same offsets twice.
        """
        segment = cls(fs, directory, base_offset, config, gaps=gaps)
        segment._open_files(create=True)
        left = segment.cut_to(0, 0, 0)
        if left:
            log.warning(
                "%s: dropping %d bytes a writer left in this new segment (it died in the "
                "middle of a roll, before any of them was acknowledged)",
                segment.log_path,
                left,
            )
        segment.index.reset()
        segment.time_index.reset()
        segment.created_ms = now_ms
        return segment

    def scan(self) -> SegmentScan:
        """Rescan the whole log with CRC checks (recovery after a crash), rebuilding both
        indexes from its good batches, and say where they end. Nothing is cut here: the
        recovery plan decides (:func:`logstore.storage.recovery.plan_recovery`), then
        :meth:`cut` or :meth:`unbuild` carry it out."""
        self._open_files()
        walk = self._index_walk()
        return SegmentScan(self.size, walk.end, self.next_offset, walk.stop)

    def cut(self, position: int, problem: str) -> int:
        """Cut the log at ``position`` (a torn tail past it); return the bytes dropped."""
        dropped = self.size - position
        if self.fs.read_only:
            log.warning(
                "reading %s only up to position %d: %s (the store is read-only, so the "
                "%d bytes past it stay in the file)",
                self.log_path, position, problem, dropped,
            )
        else:
            log.warning(
                "truncating %s at position %d, dropping %d bytes: %s",
                self.log_path, position, dropped, problem,
            )
        self.log_file.truncate(position)  # read-only: in this process's view only
        return dropped

    def unbuild(self, known_end: int) -> None:
        """Keep nothing half-built after a walk stopped at damage, in memory or on disk:
        with empty indexes every lookup scans from the start (right answers before the
        damage, an error at it), and no later lookup skips the segment for a partial
        largest timestamp. A reopen finds the empty time index and tries again."""
        assert self._index is not None and self._time_index is not None
        self._index.reset()
        self._time_index.reset()
        self.next_offset = max(known_end, self.next_offset)
        self.max_timestamp = _UNKNOWN_LARGEST
        self.offset_of_max_timestamp = self.base_offset

    def _index_walk(self) -> BatchWalk:
        """Reset both indexes and the tail state, then rebuild them from a CRC-checked
        walk of the whole log (which stops at the first bad batch)."""
        assert self._index is not None and self._time_index is not None
        self._index.reset()
        self._time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = self.base_offset
        self.first_batch_timestamp = None
        self._bytes_since_index_entry = 0
        walk = walk_batches(self.log_file, 0, expected=self.base_offset, gaps=self.gaps)
        for h in walk:
            self._index_batch(h, h.position)
            if h.producer_id >= 0 and h.base_sequence >= 0:
                self.producer_batches[h.producer_id] = (
                    h.base_sequence, h.base_offset, h.last_offset
                )
        if self.max_timestamp >= 0:
            # Kafka's recover() ends the same way: the largest timestamp is always indexed,
            # so a lazily opened sealed segment knows it without a scan.
            self._time_index.append(self.max_timestamp, self.offset_of_max_timestamp)
        return walk

    def _rebuild_indexes(self) -> None:
        """Rebuild the indexes of a segment before the recovery point (indexes are derived
        data). Damage in its log is never repaired here.

        Raises:
            CorruptRecordError: the log has a bad batch (naming the file and position).
        """
        known_end = self.next_offset
        stop = self._index_walk().stop
        if stop is not None:
            self.unbuild(known_end)
            raise CorruptRecordError(
                f"{self.log_path}: {stop.message} at position {stop.position} (the segment "
                f"lies before the recovery point, so it is not repaired automatically; run "
                f"`logstore verify` and restore from a copy)",
                self.log_path,
                stop.position,
            )

    def _index_batch(self, header: BatchHeader, position: int) -> None:
        assert self._index is not None and self._time_index is not None
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = header.last_offset
        if self._bytes_since_index_entry > self.config.index_interval_bytes and not (
            self._index.is_full or self._time_index.is_full
        ):
            # A full index takes no more entries (the next append rolls); the index is
            # sparse, so a missing entry only lengthens a lookup's scan.
            self._index.append(header.last_offset, position)
            self._time_index.append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_index_entry = 0
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = header.max_timestamp
        self.next_offset = max(self.next_offset, header.next_offset)
        self._bytes_since_index_entry += header.size

    # ------------------------------------------------------------------ append / read

    def append(self, parts: Buffer | Sequence[Buffer], headers: list[BatchHeader]) -> int:
        """Append ``parts`` (bytes, or buffers to concatenate: whole batches, described by
        ``headers`` with positions relative to the concatenation); return the position it
        starts at."""
        if isinstance(parts, bytes | bytearray | memoryview):
            parts = (parts,)
        self._open_files()
        start = self.log_file.append_parts(parts)
        for header in headers:
            self._index_batch(header, start + header.position)
        return start

    # ------------------------------------------------------------------ processes

    def tail_counters(self) -> tuple[int, int, int]:
        """``(bytes since the last index entry, index entries, time-index entries)``: the
        state of the active segment's indexing, for the partition head."""
        self._open_files()
        assert self._index is not None and self._time_index is not None
        return self._bytes_since_index_entry, len(self._index), len(self._time_index)

    def cut_to(self, size: int, index_entries: int, time_index_entries: int) -> int:
        """Cut the files back to the committed state (what a writer killed mid-append left
        past it goes); return the bytes cut from the log."""
        self._open_files()
        assert self._log is not None and self._index is not None
        assert self._time_index is not None
        actual = self._log.refresh_size()
        if actual > size:
            self._log.truncate(size)
        self._index.cut_to(index_entries)
        self._time_index.cut_to(time_index_entries)
        return max(0, actual - size)

    def adopt_tail(
        self,
        *,
        size: int,
        next_offset: int,
        max_timestamp: int,
        offset_of_max_timestamp: int,
        first_batch_timestamp: int | None,
        created_ms: int | None,
        bytes_since_index_entry: int,
        index_entries: int,
        time_index_entries: int,
    ) -> None:
        """Take the active segment's state from the partition head (written by whichever
        process appended last)."""
        self._open_files()
        assert self._log is not None and self._index is not None
        assert self._time_index is not None
        self._log.size = size
        self._size = size
        self.next_offset = next_offset
        self.max_timestamp = max_timestamp
        self.offset_of_max_timestamp = offset_of_max_timestamp
        self.first_batch_timestamp = first_batch_timestamp
        self.created_ms = created_ms
        self._bytes_since_index_entry = bytes_since_index_entry
        self._index.adopt(index_entries)
        self._time_index.adopt(time_index_entries)

    def largest_timestamp(self) -> int:
        """The largest record timestamp in the segment (-1 if none), loading it if needed."""
        if self._index is None:
            self.load_sealed()
        return self.max_timestamp

    @property
    def index_full(self) -> bool:
        return self.index.is_full or self.time_index.is_full

    # ------------------------------------------------------------------ roll / delete

    def seal(self, *, fsync: bool = True) -> None:
        """Called when a newer segment takes over: write the final time-index entry
        (Kafka's ``onBecomeInactiveSegment``) and, with ``fsync``, sync all three files."""
        if self.max_timestamp >= 0:
            self.time_index.append(self.max_timestamp, self.offset_of_max_timestamp)
        if fsync:
            self.fsync()

    def fsync(self) -> None:
        """Make all three files durable (opening them briefly if they are closed: a sealed
        segment's pages may still be dirty when its files were closed by the LRU)."""
        if self._log is None:
            for path in (self.log_path, self.index_path, self.time_index_path):
                with self.fs.open(path) as handle:
                    handle.fsync()
            return
        self._log.fsync()
        if self._index is not None:
            self._index.fsync()
        if self._time_index is not None:
            self._time_index.fsync()

    def delete(self) -> None:
        """Remove the segment's files, the ``.log`` first so a crash never leaves a log
        without the rest deleted being mistaken for data (orphan indexes are removed on
        open). The caller fsyncs the directory."""
        self.close_files()
        self._deleted = True
        paths = [self.log_path, self.index_path, self.time_index_path]
        for path in [*paths, self.gaps_path] if self.gaps else paths:
            self.fs.unlink(path, missing_ok=True)

    def __repr__(self) -> str:
        return f"Segment(base_offset={self.base_offset}, next_offset={self.next_offset})"


__all__ = [  # the naming helpers live in logstore.storage.listing; re-exported here
    "GAPS_SUFFIX",
    "INDEX_SUFFIX",
    "LOG_SUFFIX",
    "SUFFIXES",
    "TIME_INDEX_SUFFIX",
    "Segment",
    "SegmentScan",
    "is_segment_log",
    "parse_segment_name",
    "segment_log_bases",
    "segment_path",
]
