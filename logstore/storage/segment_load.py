"""Loading one segment without a full rescan: a sealed segment's indexes checked when it
is first used, and the active segment's short tail after a clean shutdown.

:class:`SegmentLoad` is that part of :class:`~logstore.storage.segment.Segment`. An index
that fails its checks is rebuilt from the log (indexes are derived data); damage in the
log itself is a :class:`~logstore.errors.CorruptRecordError` (the log was closed cleanly,
or lies before the recovery point, so it is not a torn write).
"""

from __future__ import annotations

import logging

from logstore.errors import CorruptIndexError, CorruptRecordError
from logstore.storage.batches import walk_batches
from logstore.storage.index import OffsetIndex, TimeIndex
from logstore.storage.segment_files import SegmentFiles
from logstore.types import BatchHeader

log = logging.getLogger("logstore.storage.segment")


class SegmentLoad(SegmentFiles):
    """How a segment loads: its indexes, checked on first use, and the active segment's
    short tail after a clean shutdown."""

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
    def index_full(self) -> bool:
        return self.index.is_full or self.time_index.is_full

    def largest_timestamp(self) -> int:
        """The largest record timestamp in the segment (-1 if none), loading it if needed."""
        if self._index is None:
            self.load_sealed()
        return self.max_timestamp

    def load_sealed(self) -> None:
        """Open a segment whose ``next_offset`` is known, loading and checking its indexes.

        An index that fails its checks is rebuilt from the log (indexes are derived data).
        """
        self._open_files()
        assert self._index is not None and self._time_index is not None
        try:
            self._check_present()
            if self.size and not len(self._time_index):
                # sealing always indexes the largest timestamp: an empty time index was lost
                raise CorruptIndexError(
                    f"time index {self.time_index_path} is empty", self.time_index_path
                )
            if len(self._index) < len(self._time_index) - 1:
                # both gain an entry at the same appends; only sealing adds a time entry alone
                raise CorruptIndexError(
                    f"index {self.index_path} has {len(self._index)} entries, its time index "
                    f"{len(self._time_index)}",
                    self.index_path,
                )
            self._index.check_tail(self.size)
            self._time_index.check_tail(self.next_offset)
            last = self._index.last_offset
            if last is not None and last >= self.next_offset:
                raise CorruptIndexError(
                    f"index {self.index_path} names offset {last}, past the segment's end "
                    f"{self.next_offset}",
                    self.index_path,
                )
        except CorruptIndexError as err:
            log.warning("rebuilding indexes of %s: %s", self.log_path, err)
            self._rebuild_indexes()
            return
        entry = self._time_index.last_entry
        if entry is not None:
            self.max_timestamp, self.offset_of_max_timestamp = entry

    def load_active(self) -> None:
        """Open the last segment after a clean shutdown: read indexes, then scan the short
        tail past the last index entry to find ``next_offset`` and ``max_timestamp``.

        Raises:
            CorruptRecordError: the tail is not whole batches (the log was closed cleanly,
                so damage here is corruption, not a torn write).
        """
        self._open_files()
        assert self._index is not None and self._time_index is not None
        try:
            self._check_present()
            self._index.check_tail(self.size)
            entries, time_entries = len(self._index), len(self._time_index)
            if (entries and not time_entries) or time_entries > entries + 1:
                # the time index gains an entry (when the largest timestamp grows) only at
                # appends that add one to the index; recovery adds one more
                raise CorruptIndexError(
                    f"index {self.index_path} has {entries} entries, its time index "
                    f"{time_entries}",
                    self.index_path,
                )
            position = self._index.last_position
            self._scan_tail(position, self._index.last_offset)
            if position > 0:  # the roll-by-time rule needs the segment's first batch
                first = self._read_header(0)
                self.first_batch_timestamp = None if first is None else first.max_timestamp
            self._time_index.check_tail(self.next_offset)
        except CorruptIndexError as err:
            log.warning("rebuilding indexes of %s: %s", self.log_path, err)
            self._rebuild_indexes()
            return
        entry = self._time_index.last_entry
        if entry is not None and entry[0] > self.max_timestamp:
            self.max_timestamp, self.offset_of_max_timestamp = entry

    def _check_present(self) -> None:
        if self._indexes_missing and self.size:
            raise CorruptIndexError(f"index files of {self.log_path} are missing", self.log_path)

    def _scan_tail(self, position: int, indexed: int | None) -> None:
        """Walk batch headers from ``position`` (where the batch ending at offset
        ``indexed`` starts, or 0) to the end, updating the tail state. Offsets must follow
        on, so a damaged ``baseOffset``, ``lastOffsetDelta`` or ``batchLength`` is an error,
        not a phantom log end.

        Raises:
            CorruptRecordError: naming the damaged batch (the log was closed cleanly, so
                this is corruption, not a torn write).
        """
        self._bytes_since_index_entry = 0
        walk = walk_batches(
            self.log_file, position,
            expected=self.base_offset if indexed is None else None,
            first_ends_at=indexed, gaps=self.gaps, verify=False,
        )
        previous: BatchHeader | None = None
        for header in walk:
            if (
                self._bytes_since_index_entry > self.config.index_interval_bytes
                and not self.index_full
            ):  # appends index such a batch (see _index_batch): the entry was lost
                raise CorruptIndexError(
                    f"index {self.index_path} has no entry for the batch at position "
                    f"{header.position}",
                    self.index_path,
                )
            self._note_batch(header)
            previous = header
        if walk.stop is not None:
            stop = walk.stop
            message = stop.message
            if stop.reason.value == "incomplete":
                message = (
                    f"incomplete record batch at position {stop.position} of a cleanly "
                    f"closed log ({self.size - stop.position} bytes)"
                )
            err = CorruptRecordError(f"{self.log_path}: {message}", self.log_path, stop.position)
            raise self._blame(err, previous)

    def _note_batch(self, header: BatchHeader) -> None:
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = header.max_timestamp
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = header.last_offset
        self.next_offset = max(self.next_offset, header.next_offset)
        self._bytes_since_index_entry += header.size
