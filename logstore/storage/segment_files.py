"""A segment's three files and the state derived from them: opening them lazily, the
CRC-checked walk that rebuilds both indexes, and the error helpers every walk uses.

:class:`SegmentFiles` is the bottom part of :class:`~logstore.storage.segment.Segment`:
:class:`~logstore.storage.segment_load.SegmentLoad` (loading without a full rescan),
:class:`~logstore.storage.segment_reads.SegmentReads` (the read paths) and
:class:`~logstore.storage.segment.Segment` (create, append, seal, delete) build on it, each
using only what is below it.
"""

from __future__ import annotations

import errno

from logstore.config import TopicConfig
from logstore.errors import CorruptRecordError, StoreClosedError
from logstore.records import HEADER_SIZE, crc_valid, decode_header
from logstore.storage.batches import BatchWalk, walk_batches
from logstore.storage.files import FileHandle, FileSystem
from logstore.storage.index import OffsetIndex, TimeIndex
from logstore.storage.listing import (
    GAPS_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    STAGED_SUFFIX,
    TIME_INDEX_SUFFIX,
    segment_path,
    swap_path,
)
from logstore.types import BatchHeader

_UNKNOWN_LARGEST = 2**63 - 1
"""The largest timestamp of a segment whose damage stopped the index rebuild: never below
a timestamp sought, so lookups scan the segment instead of skipping it."""


class SegmentReplacedError(FileNotFoundError):
    """A segment's file now names another file than the one this process read before
    (the log cleaner swapped a cleaned segment in), or a swap of it is under way: the
    log follows the head and retries, as for a segment deleted by another process."""


class SegmentFiles:
    """A segment's files, opened on first use, and its index rebuild.

    ``next_offset`` (one past the last offset stored), ``max_timestamp`` and the byte
    counters are kept by the loads, :meth:`_index_walk` and appends.
    """

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        config: TopicConfig,
        *,
        gaps: bool = False,
        staged: bool = False,
    ):
        self.fs = fs
        self.gaps = gaps
        """Whether the segment declares offset gaps (a ``.gaps`` marker: written by the
        cleaner; see :mod:`logstore.storage.gaps`): its batches' offsets increase but may
        skip, it may start after its base offset and end before the next segment's."""
        self.directory = directory
        self.staged = staged
        self.base_offset = base_offset
        self.config = config
        prefix = segment_path(directory, base_offset, "")
        staging = STAGED_SUFFIX if staged else ""
        """A segment the cleaner is writing has its files under their names plus
        ``.cleaned`` until its swap renames them (:mod:`logstore.storage.swap`)."""
        self.log_path = prefix + LOG_SUFFIX + staging
        self.index_path = prefix + INDEX_SUFFIX + staging
        self.time_index_path = prefix + TIME_INDEX_SUFFIX + staging
        self.gaps_path = prefix + GAPS_SUFFIX + staging  # a staged one has no marker yet
        self.identity: tuple[int, int] | None = None
        """Which file the ``.log`` was when this process first opened it (a swap puts
        another file under the same name)."""
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

    # ------------------------------------------------------------------ files

    def _open_files(self, create: bool = False) -> None:
        if self._deleted:
            raise StoreClosedError(f"segment {self.log_path} was deleted")
        opened = self._log is None
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
        if opened and not create:
            self._check_identity()

    def _check_identity(self) -> None:
        """Make sure the files just opened are one segment's, the one this process knew.

        The cleaner renames a cleaned segment's three files over a segment's between
        writing its swap descriptor and removing it (:mod:`logstore.storage.swap`), so
        files opened while the descriptor exists, or a ``.log`` no longer named by its
        path once all three are open, may mix two segments: they are closed and
        :class:`SegmentReplacedError` raised (the log waits for the cleaner's head, lists
        the directory again and retries). Costs two ``stat`` calls per opening of a
        segment's files (sealed segments open lazily, at most once per LRU turn)."""
        assert self._log is not None
        own = self._log.identity()
        named = self.fs.identity(self.log_path)
        replaced = (self.identity is not None and own != self.identity) or named != own
        if replaced or (
            not self.staged and self.fs.exists(swap_path(self.directory, self.base_offset))
        ):
            self.close_files()
            raise SegmentReplacedError(
                errno.ENOENT, "segment replaced by the log cleaner", self.log_path
            )
        self.identity = own

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
    def size(self) -> int:
        if self._log is not None:
            return self._log.size
        if self._size is None:
            self._size = self.fs.size(self.log_path)
        return self._size

    def forget_size(self) -> None:
        """Drop the size cached of closed files (another process may have replaced them)."""
        if self._log is None:
            self._size = None

    def close_files(self) -> None:
        """Close the open files; they reopen on the next use."""
        if self._log is not None:
            self._size = self._log.size
        for handle in (self._log, self._index, self._time_index):
            if handle is not None:
                handle.close()
        self._log = self._index = self._time_index = None

    # ------------------------------------------------------------------ index rebuild

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
        if self.max_timestamp >= 0:
            # Kafka's recover() ends the same way: the largest timestamp is always indexed,
            # so a lazily opened sealed segment knows it without a scan.
            self._time_index.append(self.max_timestamp, self.offset_of_max_timestamp)
        return walk

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

    # ------------------------------------------------------------------ walk helpers

    def _read_header(self, position: int) -> BatchHeader | None:
        data = self.log_file.pread(HEADER_SIZE, position)
        try:
            header = decode_header(data, 0)
        except CorruptRecordError as err:
            raise CorruptRecordError(
                f"{self.log_path}: {err}", self.log_path, position
            ) from err
        if header is None:
            return None
        return header._replace(position=position)

    def _check_contiguous(self, header: BatchHeader, expected: int, position: int) -> None:
        """Offsets run on without gaps: ``baseOffset`` lies outside the CRC, so this is
        what catches a damaged one before it serves records under wrong offsets. (In a
        segment that declares gaps they may skip, never go back.)"""
        if header.base_offset != expected and not (self.gaps and header.base_offset > expected):
            raise CorruptRecordError(
                f"{self.log_path}: record batch at position {position} has base offset "
                f"{header.base_offset}, expected {expected} (the offsets do not follow on)",
                self.log_path,
                position,
            )

    def _blame(
        self, err: CorruptRecordError, previous: BatchHeader | None, data: bytes | None = None
    ) -> CorruptRecordError:
        """The error to raise for damage found while walking from batch ``previous`` (its
        header's ``position`` is in the file; ``data`` holds its bytes if already read).

        A damaged ``batchLength`` or ``lastOffsetDelta`` of the previous batch shows up
        only at the next batch (a header at the wrong place, offsets that do not follow
        on); the previous batch's CRC then fails, and it is the one to name."""
        if previous is not None:
            raw = data if data is not None else self.log_file.pread(
                previous.size, previous.position
            )
            if not crc_valid(raw, previous._replace(position=0)):
                return CorruptRecordError(
                    f"{self.log_path}: record batch at position {previous.position} fails "
                    f"its CRC-32C check",
                    self.log_path,
                    previous.position,
                )
        if err.path is None:
            return CorruptRecordError(f"{self.log_path}: {err}", self.log_path, err.position)
        return err

    def _overrun(self, position: int, header: BatchHeader | None, end: int) -> CorruptRecordError:
        """The error for a batch at ``position`` that does not fit before ``end``: the log
        only ever holds whole batches (a failed append is cut back), so this is damage."""
        what = "a batch header" if header is None else f"a batch of {header.size} bytes"
        return CorruptRecordError(
            f"{self.log_path}: {what} at position {position} runs past the end of the data "
            f"({end} bytes)",
            self.log_path,
            position,
        )
