"""``read_committed`` reads of a partition log: the last stable offset, aborted records
skipped (Kafka's transactions, KIP-98; kafka.md §5.2).

:class:`StableReads` is the part of :class:`~logstore.storage.log.PartitionLog` above the
producer state (:mod:`~logstore.storage.producing`):

* **The last stable offset** (LSO) is the first offset of the oldest transaction still
  open in the partition (:meth:`ProducerState.first_unstable_offset
  <logstore.storage.producers.ProducerState.first_unstable_offset>`), or the log end when
  none is. A reader that does not write keeps its own view of the producer state,
  loaded from the newest snapshot and replayed from the batch headers (no file written),
  and caught up with each read (a header walk of what was appended since).
* **Aborted records**: below the LSO every transaction has its marker, but the marker
  may lie after the LSO (another transaction opened in between). Kafka keeps an index of
  aborted transactions per segment (``.txnindex``); logstore derives it from the log
  instead: an :class:`AbortedScan` walks the batch headers forward from the read's
  offset, reading only the control batches' records, and remembers, per producer, the
  offsets of its transactions that were aborted. It goes on from where it stopped when
  the next read follows on (a consumer reads forward), and stops as soon as every
  transaction with a batch in the read has its marker. Nothing new is written to disk,
  so nothing new needs recovering after a crash (a store's directories stay Kafka's
  own, less the ``.txnindex`` files).

Control batches are never returned as records (as before transactions).
"""

from __future__ import annotations

import bisect
import functools
from typing import Any

from logstore.records import scan
from logstore.records.control import ControlType, control_type
from logstore.storage.batches import walk_batches
from logstore.storage.producers import ProducerState
from logstore.storage.producing import ProducerTracking
from logstore.storage.reads import _decode_in, _end_of
from logstore.types import BatchHeader, FetchResult, Record


class AbortedScan:
    """The aborted transactions of a partition from offset :attr:`start` on, as far as
    the log was walked (:attr:`frontier`)."""

    __slots__ = ("aborted", "frontier", "open", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.frontier = start
        """Every batch below this offset (and at or above :attr:`start`) was walked."""
        self.open: dict[int, int] = {}
        """Producer id -> first offset (>= start) of its transaction with no marker yet."""
        self.aborted: dict[int, list[tuple[int, int]]] = {}
        """Producer id -> ``(first offset, marker offset)`` of its aborted transactions."""

    def see(self, header: BatchHeader, kind: int | None) -> None:
        """Walk past batch ``header`` (``kind``: its control type, for a control batch)."""
        pid = header.producer_id
        if kind is not None:
            first = self.open.pop(pid, None)
            if first is not None and kind == ControlType.ABORT:
                self.aborted.setdefault(pid, []).append((first, header.base_offset))
        elif header.is_transactional and pid not in self.open:
            self.open[pid] = header.base_offset
        self.frontier = header.next_offset

    def spans_in(self, offset: int, end: int) -> dict[int, list[tuple[int, int]]]:
        """A copy of the aborted spans that overlap ``[offset, end)``, per producer."""
        out: dict[int, list[tuple[int, int]]] = {}
        for pid, spans in self.aborted.items():
            kept = [s for s in spans if s[0] < end and s[1] >= offset]
            if kept:
                out[pid] = kept
        return out

    def unresolved_below(self, offset: int) -> bool:
        """Whether a transaction with a batch below ``offset`` has no marker yet."""
        return any(first < offset for first in self.open.values())

    def aborted_from(self, offset: int, end: int) -> list[tuple[int, int]]:
        """``(producer id, first offset)`` of the aborted transactions with batches in
        ``[offset, end)``: a Fetch response's AbortedTransactions."""
        return sorted(
            (pid, max(first, offset))
            for pid, spans in self.aborted.items()
            for first, last in spans
            if first < end and last >= offset
        )

    def forget_below(self, offset: int) -> None:
        """Drop what only batches below ``offset`` need (reads moved on): a read below
        it starts a new scan."""
        self.start = max(self.start, offset)
        for pid in list(self.aborted):
            kept = [s for s in self.aborted[pid] if s[1] >= offset]
            if kept:
                self.aborted[pid] = kept
            else:
                del self.aborted[pid]


class StableReads(ProducerTracking):
    """``read_committed`` reads (see the module docstring)."""

    _txn_view: ProducerState | None = None
    """A reader's own view of the producer state (None: not loaded)."""
    _aborted_scan: AbortedScan | None = None

    def last_stable_offset(self) -> int:
        """The offset below which every transaction is decided (the log end when none is
        open): what a ``read_committed`` reader may read up to."""
        with self._lock:
            self._check_open()
            self._refresh_locked()
            while True:
                try:
                    return self._stable_end()
                except FileNotFoundError as err:
                    self._segment_vanished(err)

    def _stable_end(self) -> int:
        end = self.log_end_offset
        first = self._producer_view().first_unstable_offset()
        return end if first is None else min(first, end)

    def _producer_view(self) -> ProducerState:
        """The producer state as of the log end: the writer's own if it is current, else
        this log's reader view, loaded or caught up (no file is written)."""
        end = self.log_end_offset
        state = self._producer_state
        if state is not None and state.end_offset == end:
            return state
        self._txn_view = view = self._caught_up(self._txn_view, end, reader=True)
        return view

    def read_committed(
        self,
        offset: int,
        max_records: int | None = None,
        max_bytes: int = 1 << 20,
        *,
        record_type: type[Any] = Record,
        topic_partition: tuple[str, int] | None = None,
    ) -> list[Any]:
        """:meth:`read_records` for a ``read_committed`` reader: records below the last
        stable offset only, and none of an aborted transaction.

        Raises:
            OffsetOutOfRangeError, CorruptRecordError: as :meth:`read_records`.
        """
        while True:
            with self._lock:
                self._check_open()
                self._refresh_locked()
                while True:
                    try:
                        stable = self._stable_end()
                        self._check_offset(offset)
                        if offset >= stable:
                            return []
                        found = self._batches_at(offset, max_records, max_bytes)
                        if found is None:
                            return []
                        seg, first, data = found
                        data = _below(data, stable)
                        end = _end_of(data) if data else offset
                        spans = self._scan_aborted(offset, end).spans_in(offset, end)
                        break
                    except FileNotFoundError as err:
                        self._segment_vanished(err)
            out = _decode_in(
                seg, first, data, offset, max_records, record_type, topic_partition,
                skip=functools.partial(_is_aborted, spans),
            )
            if out or not data:
                return out
            offset = _end_of(data)  # only aborted or control batches: go on after them

    def read_stable(self, offset: int, max_bytes: int) -> FetchResult:
        """:meth:`read` for a ``read_committed`` Fetch: whole batches below the last stable
        offset (and the start of the next one there, cut at ``max_bytes``), with the LSO and
        the aborted transactions among them (the reader drops their batches)."""
        with self._lock:
            self._check_open()
            self._refresh_locked()
            while True:
                try:
                    stable = self._stable_end()
                    self._check_offset(offset)
                    found = self._locate(offset) if offset < stable else None
                    data = b""
                    aborted: list[tuple[int, int]] = []
                    if found is not None:
                        seg, header = found
                        data = _below(seg.read_from(header.position, max_bytes), stable)
                        if data:
                            aborted = self._scan_aborted(offset, _end_of(data)).aborted_from(
                                offset, _end_of(data)
                            )
                    return FetchResult(
                        data, self.high_watermark, self.log_start_offset, stable, aborted
                    )
                except FileNotFoundError as err:
                    self._segment_vanished(err)

    def _scan_aborted(self, offset: int, end: int) -> AbortedScan:
        """The aborted-transaction scan, walked far enough to decide every transactional
        batch in ``[offset, end)`` (the lock is held)."""
        scan_ = self._aborted_scan
        if scan_ is None or not scan_.start <= offset <= scan_.frontier:
            scan_ = AbortedScan(offset)
        elif scan_.frontier > self.log_end_offset:
            scan_ = AbortedScan(offset)  # the log was cut back since
        else:
            scan_.forget_below(offset)
        self._aborted_scan = scan_
        self._walk(scan_, end)
        return scan_

    def _walk(self, scan_: AbortedScan, until: int) -> None:
        """Walk the batches from ``scan_.frontier`` on, a segment at a time, up to
        ``until`` and then on until every transaction with a batch below ``until`` has
        its marker (or the log ends)."""

        def done() -> bool:
            return scan_.frontier >= until and not scan_.unresolved_below(until)

        while not done() and scan_.frontier < self.log_end_offset:
            start = scan_.frontier
            i = max(0, bisect.bisect_right(self._bases, start) - 1)
            seg = self._segments[i]
            self._track_sealed(seg)
            found = seg.find_batch(start)
            if found is None:
                if i + 1 >= len(self._segments):
                    return
                scan_.frontier = self._segments[i + 1].base_offset
                continue
            walk = walk_batches(
                seg.log_file, found.position, seg.size, expected=found.base_offset,
                gaps=seg.gaps, verify=False,
            )
            for header in walk:
                kind = None
                if header.is_control:
                    data = seg.read_from(header.position, 1)
                    kind = control_type(data, header._replace(position=0))
                scan_.see(header, kind)
                if done():
                    return
            if scan_.frontier == start:
                return  # nothing more in the log


def _is_aborted(spans: dict[int, list[tuple[int, int]]], header: BatchHeader) -> bool:
    """Whether transactional data batch ``header`` lies in one of its producer's
    aborted ``spans``."""
    if not header.is_transactional:
        return False
    spans_of = spans.get(header.producer_id, ())
    return any(first <= header.base_offset <= last for first, last in spans_of)


def _below(data: bytes, stable: int) -> bytes:
    """The whole batches of ``data`` below offset ``stable`` (a batch holding it is cut,
    and so are all after it)."""
    end = 0
    for header in scan(data):
        if header.next_offset > stable:
            break
        end = header.position + header.size
    return data[:end] if end < len(data) else data
