"""One segment: a ``.log`` of whole record batches plus its ``.index`` and ``.timeindex``.

Files are named by the segment's base offset, zero-padded to 20 digits
(``00000000000000000000.log``), as Kafka names them. A segment knows byte positions and
offsets, not topics. Its files are opened lazily, so a partition of a thousand sealed
segments opens without touching them. A segment written by the log cleaner carries a
``.gaps`` marker and :attr:`Segment.gaps` (:mod:`logstore.storage.gaps`).

:class:`Segment` is built bottom-up from parts, each using only those below it:
:class:`~logstore.storage.segment_files.SegmentFiles` (the files, opened lazily, and the
CRC-checked walk of :mod:`logstore.storage.batches` that rebuilds the indexes),
:class:`~logstore.storage.segment_load.SegmentLoad` (open a sealed or the active segment
without a full scan) and :class:`~logstore.storage.segment_reads.SegmentReads` (find a
batch, read from a position, offset for a timestamp); here are create, the full rescan
(:meth:`Segment.scan`), appends, sharing state, seal and delete.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from logstore.config import TopicConfig
from logstore.storage.batches import WalkStop
from logstore.storage.files import Buffer, FileSystem
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
from logstore.storage.segment_reads import SegmentReads
from logstore.types import BatchHeader

log = logging.getLogger(__name__)


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


class Segment(SegmentReads):
    """A ``.log`` file with its two sparse indexes."""

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
        staged: bool = False,
    ) -> Segment:
        """A new, empty segment (its files exist once this returns; the caller fsyncs the dir).

        A file already there was left by a writer killed in the middle of a roll: it
        created the file and wrote to it, but died before its head named the segment, so
        nothing in it was acknowledged (the segment starts at the log end). It is emptied:
        appending after its bytes would hold the same offsets twice. ``staged``: the
        cleaner's segment, under its ``.cleaned`` names until its swap.
        """
        segment = cls(fs, directory, base_offset, config, gaps=gaps, staged=staged)
        segment._open_files(create=True)
        segment.identity = segment.log_file.identity()
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

    # ------------------------------------------------------------------ append

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
