"""A partition log: an ordered run of segments in one directory.

Assigns offsets, rolls segments, applies retention, recovers after a crash and keeps the
per-partition checkpoint. Knows a directory and a :class:`TopicConfig`, not its topic.
:class:`PartitionLog` is built from parts (see :mod:`logstore.storage.logbase`):
sharing between processes (:mod:`~logstore.storage.sharing`), recovery on open
(:mod:`~logstore.storage.recovery`), reads (:mod:`~logstore.storage.reads`),
idempotent producers' state (:mod:`~logstore.storage.producing`) and the retention
strategy (:mod:`~logstore.storage.retention`); this module holds append, roll, flush,
retention and close.

On a read-only file system (:class:`~logstore.storage.files.ReadOnlyFileSystem`, a store
opened ``read_only=True``) the log writes nothing: recovery's cuts and index rebuilds
happen in memory only, leftovers stay, no head or checkpoint is written, no lock is held
between calls (so writers opening the partition later recover it as usual; this log then
follows their head), and every write raises :class:`~logstore.errors.ReadOnlyStoreError`.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Self

from logstore.config import TopicConfig
from logstore.errors import (
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from logstore.records import RecordInput, encode_batch, scan
from logstore.records.control import encode_marker
from logstore.storage.appendcheck import TRANSACTIONAL, check_whole_batches, producer_kind
from logstore.storage.checkpoint import read_checkpoint
from logstore.storage.compacting import LogCompaction
from logstore.storage.files import DEFAULT_FS, FileSystem
from logstore.storage.flushing import IntervalFlushing
from logstore.storage.head import HEAD_NAME, OPEN_LOCK_NAME, WRITER_LOCK_NAME, Head
from logstore.storage.listing import (
    LOG_SUFFIX,
    is_leftover,
    is_partition_file,
    read_listing,
    segment_path,
)
from logstore.storage.logbase import MAX_OPEN_SEALED_SEGMENTS
from logstore.storage.producers import MAX_PRODUCERS
from logstore.storage.producing import SNAPSHOT_INTERVAL_BATCHES
from logstore.storage.recovery import synced_recovery_point
from logstore.storage.retention import Cleaner, DeleteCleaner
from logstore.storage.segment import Segment
from logstore.storage.stable import StableReads
from logstore.types import (
    AppendResult,
    BatchHeader,
    Clock,
    Compression,
    SystemClock,
)

_INT32_MAX = 2**31 - 1
_BASE_OFFSET = struct.Struct(">q")
_log = logging.getLogger(__name__)


class PartitionLog(StableReads, IntervalFlushing, LogCompaction):
    """The segments of one partition. Thread-safe: every public method holds one lock.

    Args:
        directory: the partition's directory (created if missing).
        config: the topic's settings.
        fs: the I/O seam (tests pass recording or failing file systems).
        clock: the time source (tests pass a fake clock).
    """

    def __init__(
        self,
        directory: str,
        config: TopicConfig | None = None,
        *,
        fs: FileSystem = DEFAULT_FS,
        clock: Clock | None = None,
    ) -> None:
        self.directory = directory
        self.config = config or TopicConfig()
        self.fs = fs
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self._open_sealed: OrderedDict[int, Segment] = OrderedDict()
        self._producer_state = None
        self._snapshots_retired_below = None
        self._closed = False
        self._failed: str | None = None
        self._marked_dirty = False
        self._last_flush_ms = 0
        self._flush_due: float | None = None  # when the flusher was asked to call
        self.recovery_point = 0
        self.log_start_offset = 0
        self.recovered_bytes = 0
        """Bytes dropped by crash recovery when this log was opened."""
        self.was_clean = False
        """Whether the previous close was clean (no recovery scan was needed)."""
        self._read_only = fs.read_only
        if not fs.is_dir(directory) and not self._read_only:  # read-only: an empty log
            fs.mkdir(directory, exist_ok=True)
            fs.fsync_dir(os.path.dirname(directory) or ".")  # the new name is durable too
        self._writer = fs.lock_file(os.path.join(directory, WRITER_LOCK_NAME))
        self._presence = fs.lock_file(os.path.join(directory, OPEN_LOCK_NAME))
        self._head_file = fs.open(os.path.join(directory, HEAD_NAME), create=True)
        self._head_seen: Head | None = None
        self._generation = 0
        self.recovery_plan = None
        self.cleaner: Cleaner = DeleteCleaner(lambda: self.config, fs.mtime_ms)
        """The retention policy :meth:`apply_retention` applies."""
        try:
            self._open_shared()
        except BaseException:
            self._release_files()
            raise

    # ------------------------------------------------------------------ append

    def append_records(
        self,
        records: Sequence[RecordInput],
        *,
        compression: Compression = Compression.NONE,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
        transactional: bool = False,
    ) -> AppendResult:
        """Encode ``records`` (``(timestamp_ms, key, value, headers)`` tuples) as one batch
        and append it (``transactional``: in the producer's open transaction).

        Raises:
            InvalidRecordError, RecordTooLargeError, LogFailedError, StoreClosedError.
        """
        data = encode_batch(
            records,
            base_offset=0,
            compression=compression,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
            is_transactional=transactional,
        )
        timestamps = [r[0] for r in records]
        attributes = int(compression) | (TRANSACTIONAL if transactional else 0)
        header = BatchHeader(
            0, 0, len(data) - 12, -1, 2, 0, attributes, len(records) - 1,
            timestamps[0], max(timestamps), producer_id, producer_epoch, base_sequence,
            len(records),
        )
        if self.config.compact and any(r[1] is None for r in records):
            self._refuse_keyless(data, [header])  # raises, naming the record
        return self._append(data, [header], keys_checked=True)

    def append_marker(
        self, producer_id: int, producer_epoch: int, *, commit: bool, coordinator_epoch: int = 0
    ) -> AppendResult:
        """Append a transaction marker: a control batch ending ``producer_id``'s
        transaction in this partition (COMMIT or ABORT), as Kafka's WriteTxnMarkers.

        Raises:
            InvalidProducerEpochError: the producer has a newer epoch here.
            LogFailedError, StoreClosedError.
        """
        data = encode_marker(producer_id, producer_epoch, commit=commit,
                             coordinator_epoch=coordinator_epoch, timestamp=self._now())
        return self._append(data, list(scan(data)), keys_checked=True)

    def append_batches(
        self, data: bytes | bytearray | memoryview, *, validate: bool = True
    ) -> AppendResult:
        """Append already-encoded record batches, assigning offsets by replacing each
        batch's 8-byte ``baseOffset`` as it is written (no CRC recomputation, no copy of
        ``data``).

        With ``validate`` (the default, as Kafka's LogValidator does) every record is
        walked once (:func:`~logstore.records.validate.check_batch_records`: its fields
        and lengths, not decoded), so a batch whose CRC is right but whose records are
        malformed is refused instead of stored where every read would fail.
        ``validate=False`` is for batches this process encoded or already checked: only
        their headers are checked (no CRC pass over the bytes: for 1 MiB batches that
        was an eighth of the append's time).

        Raises:
            CorruptRecordError: a batch has a wrong magic or length, or (with
                ``validate``) fails its CRC or holds malformed records or a bad
                compressed payload.
            InvalidRecordError: no batch, trailing bytes, or inconsistent record counts.
            RecordTooLargeError: a batch is larger than ``max_message_bytes``.
        """
        buf = memoryview(data)
        headers = check_whole_batches(buf, validate=validate)
        return self._append(buf, headers)

    def _append(
        self, buf: bytes | memoryview, headers: list[BatchHeader], *, keys_checked: bool = False
    ) -> AppendResult:
        """Append whole batches: an idempotent producer's batch (producer id and base
        sequence >= 0) is checked against the producer state first
        (:mod:`~logstore.storage.producers`): a duplicate of one of its last 5 batches
        returns their offsets and writes nothing.

        Raises:
            InvalidRecordError: an idempotent batch with other batches (Kafka takes one
                batch per partition and request).
            InvalidProducerEpochError, OutOfOrderSequenceError: nothing was written.
        """
        limit = self.config.max_message_bytes
        for h in headers:
            if h.size > limit:
                raise RecordTooLargeError(h.size, limit)
        if self.config.compact and not keys_checked:
            self._refuse_keyless(buf, headers)
        first = headers[0]
        idempotent, marker = producer_kind(headers)
        with self._exclusive():
            now = self._now()
            base = offset = self.log_end_offset
            state = self._producer_state
            if (
                state is None
                or state.end_offset != base
                or state.log_start_offset != self.log_start_offset
            ):
                state = self._producers_at_end()
            if state.unsnapshotted >= SNAPSHOT_INTERVAL_BATCHES:
                # at the log end the head names: a writer dying after this leaves no
                # snapshot past what the next writer keeps (it cuts what was not committed)
                self._snapshot_in_segment(durable=False)
            if marker:
                state.check_marker(first)
            elif idempotent:
                if state.expiry_due(now):
                    state.remove_expired(now)
                prior = state.check(first)
                if prior is not None:
                    # A retry of a batch written already. Its first append may have
                    # failed in fsync (then a reopened log found it), so sync before acking.
                    if self.config.flush == "always":
                        i = max(0, bisect.bisect_right(self._bases, prior.first_offset) - 1)
                        self._segments[i].fsync()
                    first_offset, last_offset = prior.first_offset, prior.last_offset
                    return AppendResult(
                        first_offset, last_offset, now, last_offset - first_offset + 1,
                        self.log_start_offset,
                    )
            placed: list[BatchHeader] = []
            parts: list[bytes | memoryview] = []
            view = memoryview(buf)
            for h in headers:
                parts += (_BASE_OFFSET.pack(offset), view[h.position + 8 : h.position + h.size])
                placed.append(h._replace(base_offset=offset))
                offset += h.last_offset_delta + 1
            self._mark_dirty()
            if self.active_segment.base_offset != base and self.fs.exists(
                segment_path(self.directory, base, LOG_SUFFIX)
            ):  # a segment at the log end no head named: a writer died in its roll
                self._remove_unpublished_segments()
            self._maybe_roll(len(buf), placed, now)
            self.active_segment.append(parts, placed)
            self._flush_per_policy(now)
            if idempotent:
                state.append(placed[0])
            elif marker:
                state.end_transaction(placed[0])
            else:  # inline ProducerState.advance: the hot path of plain appends
                state.end_offset = offset
                state.unsnapshotted += len(placed)
            start = self.log_start_offset
        return AppendResult(base, offset - 1, now, offset - base, start)

    def _maybe_roll(self, size: int, placed: list[BatchHeader], now: int) -> None:
        seg = self.active_segment
        if seg.size == 0:
            return
        cfg = self.config
        max_ts = max(h.max_timestamp for h in placed)
        if seg.first_batch_timestamp is not None and seg.first_batch_timestamp >= 0:
            waited = max_ts - seg.first_batch_timestamp
        else:
            waited = now - (seg.created_ms if seg.created_ms is not None else now)
        if (
            seg.size + size > cfg.segment_bytes
            or waited >= cfg.segment_ms
            or seg.index_full
            or placed[-1].last_offset - seg.base_offset > _INT32_MAX
        ):
            self._roll(now)

    def _roll(self, now: int) -> None:
        # The new file's directory entry is always made durable. The old segment's data is
        # fsynced too, unless flush is "never" (Kafka flushes rolled segments in the
        # background instead): then the recovery point stays where it was, and a crash
        # rescans from it.
        durable = self.config.flush != "never"
        old = self.active_segment
        old.seal(fsync=durable)
        self._snapshot_at_roll(old, durable=durable)  # Kafka's snapshot at each roll (done
        # before the new files exist: a writer killed between their creation and the head
        # naming them leaves a stray segment, so that window stays as short as it was)
        self._remove_unpublished_segments()
        new = Segment.create(self.fs, self.directory, self.log_end_offset, self.config, now)
        new.next_offset = new.base_offset
        self._segments.append(new)
        self._bases.append(new.base_offset)
        self._generation += 1
        self._track_sealed(old)
        self.fs.fsync_dir(self.directory)
        if durable:
            self.recovery_point = new.base_offset
            self._last_flush_ms = now
            self._write_checkpoint(clean=False)

    def _remove_unpublished_segments(self) -> None:
        """Delete the segments past the active one the head names (the writer lock is
        held): a writer killed in its roll left them, unnamed and unacknowledged, and the
        next writers went on in the named one. Left there, an open would find offsets
        held twice (and drop all later segments as following lost data)."""
        active = self.active_segment.base_offset
        listing = read_listing(self.fs.listdir(self.directory))
        for base in listing.logs:
            if base > active:
                stray = Segment(self.fs, self.directory, base, self.config)
                _log.warning("%s: deleting a segment no head named (a writer died in its "
                             "roll; nothing in it was acknowledged)", stray.log_path)
                stray.delete()

    def roll(self) -> None:
        """Start a new segment now (no-op if the active segment is empty)."""
        with self._exclusive():
            if self.active_segment.size:
                self._mark_dirty()
                self._roll(self._now())

    def flush(self) -> None:
        """fsync everything appended so far and advance the recovery point."""
        with self._exclusive():
            self._sync_all()
            if self._marked_dirty:
                self._write_checkpoint(clean=False)
            self._last_flush_ms = self._now()
            self._retire_snapshots_now()

    def _sync_all(self) -> None:
        """fsync every segment from the one holding the recovery point on (older ones
        were synced when they rolled) and the directory; move the recovery point to the
        log end."""
        first = max(0, bisect.bisect_right(self._bases, self.recovery_point) - 1)
        for seg in self._segments[first:]:
            seg.fsync()
        self.fs.fsync_dir(self.directory)
        self.recovery_point = self.log_end_offset

    # ------------------------------------------------------------------ retention

    def apply_retention(self) -> int:
        """Delete the old segments the cleaner picks (:class:`DeleteCleaner`: past
        ``retention_ms`` or ``retention_bytes``, oldest first; only when the cleanup
        policy includes "delete"). Returns how many."""
        if not self.config.delete:
            return 0
        with self._exclusive():
            count = self.cleaner.clean(self._segments, self._now())
            if count:
                self._delete_oldest(count)
            return count

    def delete_records(self, before_offset: int) -> int:
        """Move the log start offset to ``before_offset`` (records below it become
        unreadable) and delete the segments wholly below it. Returns the new log start.

        Raises:
            OffsetOutOfRangeError: ``before_offset`` is past the log end.
        """
        with self._exclusive():
            if before_offset > self.log_end_offset or before_offset < 0:
                raise OffsetOutOfRangeError(
                    before_offset, self.log_start_offset, self.log_end_offset
                )
            if before_offset <= self.log_start_offset:
                return self.log_start_offset
            self.log_start_offset = before_offset
            count = sum(1 for s in self._segments if s.next_offset <= before_offset)
            if count:
                self._delete_oldest(count)
            else:
                self._mark_dirty()
                self._write_checkpoint(clean=False)
            return self.log_start_offset

    def _delete_oldest(self, count: int) -> None:
        self._mark_dirty()
        if count >= len(self._segments):
            if self.active_segment.size == 0:
                count = len(self._segments) - 1
            else:
                self._roll(self._now())
        doomed = self._segments[:count]
        new_start = max(self.log_start_offset, self._segments[count].base_offset)
        self.log_start_offset = new_start
        # The new log start is durable before any file goes: a crash in between leaves
        # segments below it, which the next open deletes.
        self._write_checkpoint(clean=False)
        self._generation += 1
        self._write_head()  # other processes stop reading these segments before they go
        for seg in doomed:
            self._open_sealed.pop(seg.base_offset, None)
            seg.delete()
        self._set_segments(self._segments[count:])
        self._remove_snapshots_below(self._segments[0].base_offset)  # after their segments
        self.fs.fsync_dir(self.directory)

    def reconfigure(self, config: TopicConfig) -> None:
        """Use ``config`` from now on (rolls, retention and flushes follow it)."""
        with self._lock:
            self.config = config
            for seg in self._segments:
                seg.config = config

    # ------------------------------------------------------------------ close

    def close(self) -> None:
        """fsync everything, write a clean checkpoint and close the files. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._read_only:
                    return  # nothing to flush or mark: the files stay as they were
                self._writer.acquire()
                try:
                    # Only the last process to close marks the partition clean: the
                    # others may still be writing.
                    if (
                        self._failed is None
                        and self._head_file.still_named()  # else nothing is left to sync
                        and self._presence.acquire(blocking=False)
                    ):
                        head = self._read_head()
                        if head is not None:
                            self._apply_head(head, writer=True)
                        cp = read_checkpoint(self.fs, self.directory)
                        if cp is None or not cp.clean:
                            self._sync_all()
                            self._snapshot_at_close()  # made durable by the checkpoint's
                            self._write_checkpoint(clean=True)  # directory fsync
                            self._retire_snapshots_now()
                            self._write_head()
                finally:
                    self._writer.release()
            finally:
                for seg in self._segments:
                    seg.close_files()
                self._open_sealed.clear()
                self._close_cleaner()
                self._release_files()

    def _abandon(self) -> None:
        """Drop this log as a killed process would: its descriptors (and so its locks) go,
        and nothing is flushed or marked clean. For crash tests."""
        with self._lock:
            self._closed = True
            for seg in self._segments:
                seg.close_files()
            self._close_cleaner()
            self._release_files()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.directory!r}, log_start_offset={self.log_start_offset}, "
            f"log_end_offset={self.log_end_offset}, segments={len(self._segments)})"
        )


__all__ = [
    "MAX_OPEN_SEALED_SEGMENTS",
    "MAX_PRODUCERS",
    "PartitionLog",
    "is_leftover",
    "is_partition_file",
    "synced_recovery_point",
]
