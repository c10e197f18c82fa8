"""Reading one segment: finding a batch by offset, whole batches from a position, and
the first offset at or after a timestamp.

:class:`SegmentReads` is the read side of :class:`~logstore.storage.segment.Segment`.
These are the hot paths of a fetch, so they walk headers inline (one chunk read per
index interval, no per-batch allocation beyond the header) instead of through
:func:`~logstore.storage.batches.walk_batches`; the offset checks are the same:
``baseOffset`` must follow on from the batch before, or (in a segment that declares
gaps) at least not go back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from logstore.config import TopicConfig
from logstore.errors import CorruptIndexError, CorruptRecordError
from logstore.records import HEADER_SIZE, crc_valid, decode_batch_records, decode_header, scan
from logstore.storage.files import FileHandle
from logstore.storage.index import OffsetIndex, TimeIndex
from logstore.types import BatchHeader

log = logging.getLogger("logstore.storage.segment")
_T = TypeVar("_T")


class SegmentReads:
    """The read side of a segment (the attributes are :class:`Segment`'s)."""

    base_offset: int
    next_offset: int
    max_timestamp: int
    config: TopicConfig
    log_path: str
    gaps: bool

    @property
    def log_file(self) -> FileHandle:
        raise NotImplementedError

    @property
    def size(self) -> int:
        raise NotImplementedError

    @property
    def index(self) -> OffsetIndex:
        raise NotImplementedError

    @property
    def time_index(self) -> TimeIndex:
        raise NotImplementedError

    def _rebuild_indexes(self) -> None:
        raise NotImplementedError

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

    def _rebuilding(self, lookup: Callable[[], _T]) -> _T:
        """``lookup()``, after rebuilding the indexes from the log if loading one finds it
        damaged (indexes are loaded lazily, on the first lookup)."""
        try:
            return lookup()
        except CorruptIndexError as err:
            log.warning("rebuilding indexes of %s: %s", self.log_path, err)
            self._rebuild_indexes()
            return lookup()

    def _index_lookup(self, offset: int) -> tuple[int, int]:
        """``(indexed offset, byte position)`` to scan from for ``offset``."""
        return self._rebuilding(lambda: self.index.lookup(offset))

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

    def _time_index_lookup(self, timestamp: int) -> int:
        return self._rebuilding(lambda: self.time_index.lookup(timestamp))

    def find_batch(self, offset: int) -> BatchHeader | None:
        """Header (with its file position) of the first batch holding an offset >= ``offset``.

        Raises:
            CorruptRecordError: a batch that is cut short, or offsets that do not follow on.
        """
        indexed, position = self._index_lookup(offset)
        size = self.size
        expected: int | None = self.base_offset if position == 0 else None
        previous: BatchHeader | None = None
        # One read covers the stretch after the index entry (about index_interval_bytes)
        # and usually the batch sought, instead of one read per batch header.
        chunk_size = max(self.config.index_interval_bytes * 2, 64 * 1024)
        chunk, chunk_start = b"", position
        while position < size:
            try:
                if position - chunk_start + HEADER_SIZE > len(chunk):
                    chunk_start = position
                    chunk = self.log_file.pread(min(chunk_size, size - position), position)
                header = decode_header(chunk, position - chunk_start)
                if header is None or position + header.size > size:
                    raise self._overrun(position, header, size)
                header = header._replace(position=position)
                if expected is None:  # the batch an index entry names ends at that offset
                    expected = indexed - header.last_offset_delta
                self._check_contiguous(header, expected, position)
            except CorruptRecordError as err:
                if err.path is None:
                    err = CorruptRecordError(f"{self.log_path}: {err}", self.log_path, position)
                raise self._blame(err, previous) from err
            if header.last_offset >= offset:
                return header
            expected = header.next_offset
            previous = header
            position += header.size
        reached = self.base_offset if expected is None else expected
        if offset < self.next_offset and reached < self.next_offset and not self.gaps:
            # the segment should hold offsets up to next_offset - 1 (the next segment's
            # base, or the committed end): moving on would silently skip offsets
            raise CorruptRecordError(
                f"{self.log_path}: the data ends at offset {reached} (position {size}), "
                f"but the segment should hold offsets up to {self.next_offset - 1}",
                self.log_path,
                size,
            )
        return None

    def read_from(self, position: int, max_bytes: int, max_position: int | None = None) -> bytes:
        """Whole batches from ``position``: at most ``max_bytes``, but at least one batch.

        Raises:
            CorruptRecordError: (naming this file and the absolute position) a batch cut
                short, an impossible header, or offsets that do not follow on.
        """
        end = self.size if max_position is None else min(self.size, max_position)
        if position >= end:
            return b""
        data = self.log_file.pread(min(max(max_bytes, HEADER_SIZE), end - position), position)
        try:
            first = decode_header(data, 0)
            if first is None or first.size > len(data):
                if first is None or position + first.size > end:
                    raise self._overrun(position, first, end)
                return self.log_file.pread(first.size, position)
        except CorruptRecordError as err:
            raise self._blame(err.with_position(position), None) from err
        cut = 0
        expected = first.base_offset
        previous: BatchHeader | None = None
        try:
            for header in scan(data, verify=False):
                self._check_contiguous(header, expected, position + header.position)
                expected = header.next_offset
                previous = header
                cut = header.position + header.size
            if cut < len(data) and position + len(data) == end:
                # the read reached the end of the data, so a partial batch there is damage
                raise self._overrun(position + cut, decode_header(data, cut), end)
        except CorruptRecordError as err:
            if err.path is None:  # from scan: the position is relative to ``data``
                err = err.with_position(position + (err.position or 0))
            prev = None if previous is None else previous._replace(
                position=position + previous.position
            )
            raw = None if previous is None else data[
                previous.position : previous.position + previous.size
            ]
            raise self._blame(err, prev, raw) from err
        return data[:cut]

    def find_offset_by_timestamp(self, timestamp: int, start_offset: int) -> int | None:
        """Offset of the first record at or after ``start_offset`` with timestamp >=
        ``timestamp``, or None if this segment has none."""
        if self.max_timestamp < timestamp and self.next_offset > self.base_offset:
            return None
        offset = max(self._time_index_lookup(timestamp), start_offset)
        header = self.find_batch(offset)
        while header is not None:
            if header.max_timestamp >= timestamp:
                data = self.log_file.pread(header.size, header.position)
                try:
                    records = decode_batch_records(data, header._replace(position=0))
                except CorruptRecordError as err:
                    raise CorruptRecordError(
                        f"{self.log_path}: record batch at position {header.position}: {err}",
                        self.log_path,
                        header.position,
                    ) from err
                for record in records:
                    if record.offset >= start_offset and record.timestamp >= timestamp:
                        found: int = record.offset
                        return found
            position = header.position + header.size
            if position >= self.size:
                return None
            following = self._read_header(position)
            if following is None or position + following.size > self.size:
                raise self._blame(self._overrun(position, following, self.size), header)
            if following.base_offset != header.next_offset:
                try:
                    self._check_contiguous(following, header.next_offset, position)
                except CorruptRecordError as err:
                    raise self._blame(err, header) from err
            header = following
        return None
