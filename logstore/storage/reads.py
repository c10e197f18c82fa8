"""Reading a partition log: whole batches, decoded records, offsets for a timestamp.

Every read first follows the head (another process may have appended, rolled or deleted
segments) and retries when a segment file it had listed is gone.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from logstore.errors import CorruptRecordError, OffsetOutOfRangeError
from logstore.records import decode_batch_records, scan
from logstore.storage.segment import Segment
from logstore.storage.sharing import ProcessSharing
from logstore.types import BatchHeader, FetchResult, Record


class LogReads(ProcessSharing):
    """The read side of a partition log."""

    def _check_offset(self, offset: int) -> None:
        if not self.log_start_offset <= offset <= self.log_end_offset:
            raise OffsetOutOfRangeError(offset, self.log_start_offset, self.log_end_offset)

    def _locate(self, offset: int) -> tuple[Segment, BatchHeader] | None:
        """The segment and batch holding the first offset >= ``offset``, if any."""
        i = max(0, bisect.bisect_right(self._bases, offset) - 1)
        while i < len(self._segments):
            seg = self._segments[i]
            self._track_sealed(seg)
            header = seg.find_batch(offset)
            if header is not None:
                return seg, header
            i += 1
        return None

    def read(
        self, offset: int, max_bytes: int = 1 << 20, *, partial_tail: bool = False
    ) -> FetchResult:
        """Whole batches from the one holding ``offset``: at most ``max_bytes`` unless the
        first batch alone is larger (then that batch). Reading at ``log_end_offset`` returns
        no bytes. ``partial_tail``: fill ``max_bytes`` with the start of the next batch
        too, as a Kafka broker answers a fetch.

        Raises:
            OffsetOutOfRangeError: ``offset`` is below the log start or past the end.
        """
        with self._lock:
            self._check_open()
            self._refresh_locked()
            while True:
                self._check_offset(offset)
                try:
                    found = self._locate(offset)
                    data = b""
                    if found is not None:
                        seg, header = found
                        data = seg.read_from(
                            header.position, max_bytes, partial_tail=partial_tail
                        )
                except FileNotFoundError as err:
                    self._segment_vanished(err)
                    continue
                return FetchResult(data, self.high_watermark, self.log_start_offset)

    def read_records(
        self,
        offset: int,
        max_records: int | None = None,
        max_bytes: int = 1 << 20,
        *,
        record_type: type[Any] = Record,
        topic_partition: tuple[str, int] | None = None,
    ) -> list[Any]:
        """Decode records from ``offset`` on (CRC-checked; control records skipped).

        Records are :class:`Record`s, or ``record_type`` built from ``topic_partition`` +
        a record's fields (how a consumer gets its records without re-wrapping them).

        Raises:
            OffsetOutOfRangeError: as :meth:`read`.
            CorruptRecordError: a batch fails its checks; names the file and position.
        """
        while True:
            with self._lock:
                self._check_open()
                self._refresh_locked()
                found = self._batches_at(offset, max_records, max_bytes)
            if found is None:
                return []
            seg, first, data = found
            out = _decode_in(seg, first, data, offset, max_records, record_type, topic_partition)
            if out or not data:
                return out
            # Only control batches, or records the cleaner removed (a compacted batch keeps
            # its offsets): go on after them, as a Kafka consumer skips to a batch's end.
            offset = _end_of(data)

    def _batches_at(
        self, offset: int, max_records: int | None, max_bytes: int
    ) -> tuple[Segment, BatchHeader, bytes] | None:
        """The segment, first batch and whole batches (about ``max_bytes``, or only the
        first if it holds ``max_records``) from the batch holding ``offset`` (None: at the
        end). The lock is held and the head followed.

        Raises:
            OffsetOutOfRangeError: as :meth:`read`.
        """
        while True:
            self._check_offset(offset)
            try:
                found = self._locate(offset)
                if found is None:
                    return None
                seg, first = found
                wanted = max_bytes
                if max_records is not None and first.last_offset - offset + 1 >= max_records:
                    wanted = 1  # the first batch holds all that is wanted: only it
                return seg, first, seg.read_from(first.position, wanted)
            except FileNotFoundError as err:
                self._segment_vanished(err)


    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """The first offset whose record timestamp is >= ``timestamp``; None if none is."""
        with self._lock:
            self._check_open()
            self._refresh_locked()
            while True:
                try:
                    return self._offset_for_timestamp(timestamp)
                except FileNotFoundError as err:
                    self._segment_vanished(err)

    def _offset_for_timestamp(self, timestamp: int) -> int | None:
        for seg in self._segments:
            if seg.next_offset <= self.log_start_offset:
                continue
            self._track_sealed(seg)
            if seg.largest_timestamp() < timestamp:
                continue
            found = seg.find_offset_by_timestamp(timestamp, self.log_start_offset)
            if found is not None:
                return found
        return None


def _decode_in(
    seg: Segment,
    first: BatchHeader,
    data: bytes,
    offset: int,
    max_records: int | None,
    record_type: type[Any],
    topic_partition: tuple[str, int] | None,
    skip: Callable[[BatchHeader], bool] | None = None,
) -> list[Any]:
    """:func:`_decode` of ``data``, read from ``seg`` at ``first``'s position: damage
    is reported at its file position."""
    try:
        return _decode(data, offset, max_records, record_type, topic_partition, skip)
    except CorruptRecordError as err:
        position = first.position + (err.position or 0)
        raise CorruptRecordError(
            f"{seg.log_path}: corrupt record batch at position {position}: {err}",
            seg.log_path,
            position,
        ) from err


def _decode(
    data: bytes,
    offset: int,
    max_records: int | None,
    record_type: type[Any],
    topic_partition: tuple[str, int] | None,
    skip: Callable[[BatchHeader], bool] | None = None,
) -> list[Any]:
    """The records from ``offset`` on in the whole batches ``data`` (CRC-checked; control
    records skipped, and the batches ``skip`` says), at most ``max_records``."""
    out: list[Any] = []
    limit = max_records
    for header in scan(data, verify=True):
        if header.is_control or header.last_offset < offset:
            continue
        if skip is not None and skip(header):
            continue
        out += decode_batch_records(
            data,
            header,
            verify=False,
            start_offset=offset,
            limit=limit,
            record_type=record_type,
            topic_partition=topic_partition,
        )
        if max_records is not None:
            limit = max_records - len(out)
            if limit <= 0:
                break
    return out


def _end_of(data: bytes) -> int:
    """The offset after the last whole batch in ``data``."""
    return max(header.next_offset for header in scan(data))
