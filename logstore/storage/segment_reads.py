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

from logstore.errors import CorruptIndexError, CorruptRecordError
from logstore.records import HEADER_SIZE, decode_batch_records, decode_header, scan
from logstore.storage.segment_load import SegmentLoad
from logstore.types import BatchHeader

log = logging.getLogger("logstore.storage.segment")
_T = TypeVar("_T")


class SegmentReads(SegmentLoad):
    """The read side of a segment."""

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

    def read_from(
        self,
        position: int,
        max_bytes: int,
        max_position: int | None = None,
        *,
        partial_tail: bool = False,
    ) -> bytes:
        """Whole batches from ``position``: at most ``max_bytes``, but at least one batch.
        With ``partial_tail``, the bytes of the next batch up to ``max_bytes`` too (as a
        Kafka broker fills a fetch: the reader drops the cut batch and fetches it again).

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
        return data if partial_tail else data[:cut]

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
