"""A partition log: an ordered run of segments in one directory.

Assigns offsets, rolls segments, applies retention, recovers after a crash and keeps the
per-partition checkpoint. Knows a directory and a :class:`TopicConfig`, not its topic.

Recovery on open:

1. Leftover temporary files (:func:`is_leftover`: ``~checkpoint.tmp``, and exactly
   ``checkpoint.tmp`` or a segment file's name plus ``.tmp``, ``.deleted``, ``.cleaned`` or
   ``.swap``) and index files without a ``.log`` are removed. No other name is ever
   touched: a user's ``notes.tmp`` stays.
2. Segments wholly below the checkpointed log start offset are deleted (a crash in the
   middle of retention).
3. Clean shutdown (checkpoint ``clean 1``): only the last segment's index tail is read.
   Otherwise every segment from the one holding the recovery point onwards is rescanned
   with CRC checks, its indexes rebuilt, and the log cut at the first incomplete or corrupt
   batch (a WARNING names file, position and bytes dropped); later segments are deleted, so
   offsets stay contiguous. The recovery point is the higher of the checkpoint's and the
   head's (:func:`synced_recovery_point`: with flush "always", the last acknowledged
   append), and nothing below it is ever cut: a bad batch there is a
   :class:`~logstore.errors.CorruptRecordError` naming file and position, and the files
   stay as they are.
4. Segments before the recovery point are trusted; if reading one finds damage, that is a
   :class:`~logstore.errors.CorruptRecordError` naming file and position, never a silent
   truncation.

On a read-only file system (:class:`~logstore.storage.files.ReadOnlyFileSystem`, a store
opened ``read_only=True``) the log writes nothing: recovery's cuts and index rebuilds
happen in memory only, leftovers stay, no head or checkpoint is written, no lock is held
between calls (so writers opening the partition later recover it as usual; this log then
follows their head), and every write raises :class:`~logstore.errors.ReadOnlyStoreError`.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Self

from logstore.config import TopicConfig
from logstore.errors import (
    CorruptRecordError,
    InvalidRecordError,
    LogFailedError,
    OffsetOutOfRangeError,
    ReadOnlyStoreError,
    RecordTooLargeError,
    StorageError,
    StoreClosedError,
    TopicNotFoundError,
)
from logstore.records import RecordInput, decode_batch_records, encode_batch, scan
from logstore.storage.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from logstore.storage.files import DEFAULT_FS, FileSystem, temp_path
from logstore.storage.head import (
    HEAD_NAME,
    HEAD_SIZE,
    OPEN_LOCK_NAME,
    WRITER_LOCK_NAME,
    Head,
    pack_head,
    unpack_head,
)
from logstore.storage.segment import LOG_SUFFIX, Segment, parse_segment_name, segment_log_bases
from logstore.types import (
    AppendResult,
    BatchHeader,
    Clock,
    Compression,
    FetchResult,
    Record,
    SystemClock,
)

log = logging.getLogger(__name__)

_LEFTOVER_SUFFIXES = (".tmp", ".deleted", ".cleaned", ".swap")
_LEFTOVER_NAMES = frozenset({
    os.path.basename(temp_path(CHECKPOINT_NAME)),
    CHECKPOINT_NAME + ".tmp",  # how logstore 0.1 named it
})
_PARTITION_FILES = frozenset({CHECKPOINT_NAME, HEAD_NAME, OPEN_LOCK_NAME, WRITER_LOCK_NAME})
MAX_OPEN_SEALED_SEGMENTS = 16
"""Sealed segments keep their files open after a read, up to this many per log (LRU)."""
_INT32_MAX = 2**31 - 1
MAX_PRODUCERS = 1024
"""Idempotent producers remembered per partition log (least recently used forgotten)."""
_BASE_OFFSET = struct.Struct(">q")


_FOLLOW_TIMEOUT_S = 1.0
"""How long a reader waits for a head naming a segment the directory lacks to move on."""


class _HeadMovedOnError(StorageError):
    """The head read names a segment that is no longer in the directory: another process
    has rolled and deleted it since (the head is read again)."""


def is_leftover(name: str) -> bool:
    """Whether ``name`` is a temporary file a partition's own writes can leave behind:
    ``~checkpoint.tmp``, or (older logstore and Kafka names, recognised only in exactly
    this form) ``checkpoint.tmp`` and a segment file's name plus ``.tmp``, ``.deleted``,
    ``.cleaned`` or ``.swap``."""
    if name in _LEFTOVER_NAMES:
        return True
    stem, dot, suffix = name.rpartition(".")
    return bool(dot) and dot + suffix in _LEFTOVER_SUFFIXES and (
        parse_segment_name(stem) is not None
    )


def synced_recovery_point(fs: FileSystem, directory: str, cp: Checkpoint | None) -> int:
    """The offset below which every record of the partition in ``directory`` is known to
    be fsynced: the checkpoint's recovery point, or the head's when that is higher.

    The checkpoint moves only on roll, flush and close. After every fsync of the active
    segment (each append with flush "always") the recovery point moves to the log end and
    the head is rewritten *after* that fsync, so whatever head content survives a crash
    (a kill, or a power cut: its in-place write is kept, lost or torn, and a torn head
    fails its CRC) never names offsets that were not synced. Without a readable
    checkpoint nothing is trusted (0): deleting the checkpoint accepts a loss.
    """
    if cp is None:
        return 0
    point = cp.recovery_point
    try:
        head = unpack_head(fs.read_file(os.path.join(directory, HEAD_NAME))[:HEAD_SIZE])
    except FileNotFoundError:
        head = None
    if head is not None:
        point = max(point, head.recovery_point)
    return point


def is_partition_file(name: str) -> bool:
    """Whether ``name`` is one logstore creates in a partition directory: a segment file,
    the checkpoint, the head, a lock file, or a leftover (:func:`is_leftover`)."""
    return name in _PARTITION_FILES or parse_segment_name(name) is not None or is_leftover(
        name
    )


class PartitionLog:
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
        # producer id -> (base sequence, base offset, last offset) of its last batch here
        self._producers: OrderedDict[int, tuple[int, int, int]] = OrderedDict()
        self._closed = False
        self._failed: str | None = None
        self._marked_dirty = False
        self._last_flush_ms = 0
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
        try:
            self._open_shared()
        except BaseException:
            self._release_files()
            raise

    # ------------------------------------------------------------------ processes

    def _open_shared(self) -> None:
        """Open alone (then recover from the segments and the checkpoint, as after any
        restart) or join processes that already have the partition open (then take the
        state from their head)."""
        self._writer.acquire()
        try:
            if self._presence.acquire(blocking=False):  # nobody else has it open
                previous = self._read_head()
                self._load()
                if self._read_only:
                    # Hold nothing: a writer opening it later recovers it as after any
                    # restart, and its new head (a new generation) is followed from here.
                    self._head_seen = previous
                    self._presence.release()
                    return
                self._generation = (previous.generation if previous else 0) + 1
                self._write_head()
                self._presence.acquire(shared=True)
            else:
                if not self._read_only:
                    self._presence.acquire(shared=True)
                head = self._read_head()
                if head is None:
                    raise StorageError(
                        f"partition {self.directory} is open in another process but has no "
                        f"readable head file (is another logstore version using it?)",
                        self.directory,
                    )
                self.was_clean = True
                self._apply_head(head, writer=not self._read_only)
                self._last_flush_ms = self._now()
        finally:
            self._writer.release()

    def _read_head(self) -> Head | None:
        for _ in range(100):  # a reader racing an in-place rewrite reads again
            data = self._head_file.pread(HEAD_SIZE, 0)
            if len(data) < HEAD_SIZE:
                return None
            head = unpack_head(data)
            if head is not None:
                return head
        return None

    def _write_head(self) -> None:
        seg = self.active_segment
        head = Head(
            self._generation,
            seg.base_offset,
            seg.next_offset,
            seg.size,
            seg.max_timestamp,
            seg.offset_of_max_timestamp,
            -1 if seg.first_batch_timestamp is None else seg.first_batch_timestamp,
            -1 if seg.created_ms is None else seg.created_ms,
            self.log_start_offset,
            self.recovery_point,
            *seg.tail_counters(),
        )
        self._head_file.write_at(pack_head(head), 0)
        self._head_seen = head

    def _apply_head(self, head: Head, *, writer: bool) -> None:
        """Make this process's view match ``head``. A ``writer`` (holding the writer
        lock) also cuts off what a writer killed mid-append left past the head."""
        seen = self._head_seen
        if head == seen:
            return
        if (
            seen is None
            or head.generation != seen.generation
            or head.active_base_offset != self.active_segment.base_offset
        ):
            self._relist(head)
        seg = self.active_segment
        if writer:
            dropped = seg.cut_to(head.active_size, head.index_entries, head.time_index_entries)
            if dropped:
                log.warning(
                    "%s: dropping %d bytes a writer left past the committed end (it died "
                    "in the middle of an append)",
                    seg.log_path,
                    dropped,
                )
        seg.adopt_tail(
            size=head.active_size,
            next_offset=head.log_end_offset,
            max_timestamp=head.max_timestamp,
            offset_of_max_timestamp=head.offset_of_max_timestamp,
            first_batch_timestamp=(
                None if head.first_batch_timestamp < 0 else head.first_batch_timestamp
            ),
            created_ms=None if head.created_ms < 0 else head.created_ms,
            bytes_since_index_entry=head.bytes_since_index_entry,
            index_entries=head.index_entries,
            time_index_entries=head.time_index_entries,
        )
        self.log_start_offset = head.log_start_offset
        self.recovery_point = head.recovery_point
        self._generation = head.generation
        self._head_seen = head

    def _relist(self, head: Head) -> None:
        """Rebuild the segment list from the directory after another process rolled,
        deleted or truncated segments."""
        known = {s.base_offset: s for s in self._segments}
        if self._read_only:
            # Segments here may hold private repairs (a cut, a rebuilt index) of files a
            # writer has since recovered and written to: read them afresh.
            for cached in known.values():
                cached.close_files()
            self._open_sealed.clear()
            known.clear()
        bases = segment_log_bases(self.fs.listdir(self.directory))
        if head.active_base_offset not in bases:
            # Checked before any state here changes, so the caller can read the head again
            # and retry: another process rolled and deleted this segment (retention,
            # delete_records, an offsets snapshot) after this head was read.
            raise _HeadMovedOnError(
                f"partition {self.directory}: the head names active segment "
                f"{head.active_base_offset}, which is not in the directory",
                self.directory,
            )
        was_active = self._segments[-1].base_offset if self._segments else None
        if was_active is not None and was_active != head.active_base_offset:
            # Another process rolled: the segment that was active here holds state from an
            # older head (size, index counts, largest timestamp) and would hide that
            # process's last appends to it. Reload it as the sealed segment it now is.
            stale = known.pop(was_active) if was_active in known else None
            if stale is not None:
                stale.close_files()
        bases = [b for b in bases if b <= head.active_base_offset]
        segments: list[Segment] = []
        for base in bases:
            seg = known.pop(base, None) or Segment(self.fs, self.directory, base, self.config)
            segments.append(seg)
        for gone in known.values():
            gone.close_files()
            self._open_sealed.pop(gone.base_offset, None)
        for seg, nxt in itertools.pairwise(segments):
            seg.next_offset = nxt.base_offset
        # segments wholly below the log start are on their way out
        while len(segments) > 1 and segments[1].base_offset <= head.log_start_offset:
            segments.pop(0).close_files()
        self._set_segments(segments)

    def refresh(self) -> None:
        """Catch up with appends, rolls and deletions made by other processes (reads do
        this by themselves)."""
        with self._lock:
            self._check_open()
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        """Follow the head (no writer lock held). Another process may roll, or delete
        segments, between this process reading the head and listing the directory: the
        head has then moved on, so it is read again. Only a head that keeps naming a
        segment the directory does not have (for over a second) is an error."""
        deadline: float | None = None
        while True:
            head = self._read_head()
            if head is None or head == self._head_seen:
                return
            try:
                self._apply_head(head, writer=False)
                return
            except (_HeadMovedOnError, FileNotFoundError) as err:
                # the head's active segment went between the listing and its opening, or
                # before the listing: nothing of this head was taken (_head_seen is the
                # old one), so the next head is applied in full
                if self._read_head() != head:
                    continue  # a newer head: follow that one
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + _FOLLOW_TIMEOUT_S
                if now >= deadline:
                    if isinstance(err, FileNotFoundError):
                        raise StorageError(
                            f"partition {self.directory}: the head names active segment "
                            f"{head.active_base_offset}, whose file {err.filename} is missing",
                            self.directory,
                            errno=err.errno,
                        ) from err
                    raise
                time.sleep(0.001)

    def _segment_vanished(self, err: FileNotFoundError) -> None:
        """A segment file this process had listed is gone: another process deleted it
        (retention, ``delete_records``, an offsets snapshot) after writing a head that
        says so. Follow that head (the caller then retries), or, if the head has not moved,
        raise: the file went missing behind logstore's back."""
        head = self._read_head()
        if head is None or head == self._head_seen:
            raise StorageError(
                f"partition {self.directory}: segment file {err.filename} is missing "
                f"(deleted by something other than logstore?)",
                str(err.filename) if err.filename else self.directory,
                errno=err.errno,
            ) from err
        self._refresh_locked()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the writer lock (this process's threads and other processes), with this
        process's view brought up to date first and the head rewritten after."""
        with self._lock:
            self._check_writable()
            self._writer.acquire()
            committed: Head | None = None
            try:
                self._check_not_deleted()
                head = self._read_head()
                if head is not None:
                    self._apply_head(head, writer=True)
                committed = self._head_seen
                yield
                if not self._closed:
                    self._write_head()
            except StorageError as err:
                if not self._head_file.still_named():  # no failed write: a deleted log
                    raise self._deleted_error() from err
                self._failed = str(err)
                if committed is not None:
                    self._cut_back(committed)
                raise
            finally:
                self._writer.release()

    def _check_not_deleted(self) -> None:
        """Refuse to write to a partition whose directory was deleted under this open log
        (its topic deleted by another process or Store): the writes would land in
        unlinked files, or a new topic's directory, and be acknowledged for nothing."""
        if not self._head_file.still_named():
            raise self._deleted_error()

    def _deleted_error(self) -> TopicNotFoundError:
        return TopicNotFoundError(
            f"partition {self.directory} was deleted while in use (its topic was deleted, "
            f"by another process or Store)"
        )

    def _cut_back(self, head: Head) -> None:
        """After a failed write or fsync, cut what the operation wrote past the committed
        state ``head``. After a failed fsync Linux may have dropped those pages or marked
        them clean, so a later fsync would succeed without writing them: the bytes must
        not stay to be found by recovery and acknowledged (a retry writes them afresh)."""
        try:
            for seg in self._segments:
                if seg.base_offset > head.active_base_offset:
                    seg.cut_to(0, 0, 0)  # created by a roll in the failed operation
                elif seg.base_offset == head.active_base_offset:
                    seg.cut_to(head.active_size, head.index_entries, head.time_index_entries)
        except StorageError as err:
            log.warning("%s: cannot cut back after a failure: %s", self.directory, err)

    def _release_files(self) -> None:
        for closer in (self._head_file.close, self._presence.close, self._writer.close):
            with contextlib.suppress(StorageError):
                closer()

    # ------------------------------------------------------------------ open / recover

    def _load(self) -> None:
        fs = self.fs
        logs: list[int] = []
        others: dict[int, list[str]] = {}
        try:
            names = fs.listdir(self.directory)
        except FileNotFoundError:
            if not self._read_only:
                raise
            names = []  # read-only: the missing directory reads as an empty partition
        for name in names:
            if is_leftover(name):
                if not self._read_only:
                    path = os.path.join(self.directory, name)
                    log.info("removing leftover file %s", path)
                    fs.unlink(path, missing_ok=True)
                continue
            parsed = parse_segment_name(name)
            if parsed is None:
                continue
            base, suffix = parsed
            if suffix == LOG_SUFFIX:
                logs.append(base)
            else:
                others.setdefault(base, []).append(name)
        logs.sort()
        have_log = set(logs)
        for base, orphans in others.items():
            if base not in have_log and not self._read_only:
                for name in orphans:
                    path = os.path.join(self.directory, name)
                    log.info("removing index without a log: %s", path)
                    fs.unlink(path, missing_ok=True)
        cp = read_checkpoint(fs, self.directory)
        self.was_clean = cp is not None and cp.clean
        self.log_start_offset = cp.log_start_offset if cp else (logs[0] if logs else 0)
        self.recovery_point = synced_recovery_point(fs, self.directory, cp)
        segments = [Segment(fs, self.directory, base, self.config) for base in logs]
        try:
            self._load_segments(segments, cp)
        except BaseException:
            for seg in segments:  # a failed open leaves no file open
                with contextlib.suppress(Exception):
                    seg.close_files()
            raise

    def _load_segments(self, segments: list[Segment], cp: Checkpoint | None) -> None:
        fs = self.fs
        for seg, nxt in itertools.pairwise(segments):
            seg.next_offset = nxt.base_offset
        # A crash during retention can leave segments wholly below the log start offset.
        while len(segments) > 1 and segments[1].base_offset <= self.log_start_offset:
            gone = segments.pop(0)
            if self._read_only:
                gone.close_files()
            else:
                gone.delete()
        if not segments:
            base = self.log_start_offset
            segments.append(Segment.create(fs, self.directory, base, self.config, self._now()))
            self.recovery_point = base
            self.was_clean = True
            if not self._read_only:  # read-only: the empty segment lives in memory only
                write_checkpoint(fs, self.directory, Checkpoint(base, base, clean=True))
        elif self.was_clean:
            segments[-1].load_active()
        else:
            segments = self._recover(segments)
        if segments[-1].created_ms is None:
            # Kafka measures segment_ms from the load time when records carry no timestamp.
            segments[-1].created_ms = self._now()
        self._set_segments(segments)
        self.log_start_offset = max(self.log_start_offset, segments[0].base_offset)
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)
        if self.recovery_point > self.log_end_offset:
            # every offset below the recovery point was fsynced: a log that ends before it
            # lost synced records (a file cut short), which is never repaired silently
            active = segments[-1]
            raise CorruptRecordError(
                f"{active.log_path}: the log ends at offset {self.log_end_offset} (position "
                f"{active.size}), but the checkpoint says offsets up to "
                f"{self.recovery_point - 1} were synced: records are missing (restore the "
                f"partition from a copy, or delete its checkpoint file to accept the loss)",
                active.log_path,
                active.size,
            )
        self._last_flush_ms = self._now()

    def _recover(self, segments: list[Segment]) -> list[Segment]:
        bases = [s.base_offset for s in segments]
        first = max(0, bisect.bisect_right(bases, self.recovery_point) - 1)
        for i in range(first, len(segments)):
            seg = segments[i]
            dropped = seg.recover(self.recovery_point)
            is_last = i == len(segments) - 1
            if not is_last and seg.next_offset < self.recovery_point:
                # cut at a batch boundary before the recovery point: synced records are
                # gone, and the later segments are not deleted to cover it up
                raise CorruptRecordError(
                    f"{seg.log_path}: the segment ends at offset {seg.next_offset} (position "
                    f"{seg.size}), but offsets up to {self.recovery_point - 1} were synced: "
                    f"records are missing (restore the partition from a copy, or delete "
                    f"its checkpoint file to accept the loss)",
                    seg.log_path,
                    seg.size,
                )
            self.recovered_bytes += dropped
            # a producer retrying a batch that reached the log before a crash or failed
            # fsync must find it, not write it twice
            self._producers.update(seg.producer_batches)
            if not is_last and (dropped or seg.next_offset != segments[i + 1].base_offset):
                for later in segments[i + 1 :]:
                    if self._read_only:
                        log.warning(
                            "ignoring %s: it follows data lost in %s (the store is read-only: "
                            "the file stays)",
                            later.log_path,
                            seg.log_path,
                        )
                        later.close_files()
                        continue
                    log.warning(
                        "deleting %s: it follows data lost in %s", later.log_path, seg.log_path
                    )
                    later.delete()
                del segments[i + 1 :]
                if not self._read_only:
                    self.fs.fsync_dir(self.directory)
                break
        for seg in segments[:-1]:
            seg.close_files()  # reopened lazily, like every sealed segment
        return segments

    def _set_segments(self, segments: list[Segment]) -> None:
        self._segments = segments
        self._bases = [s.base_offset for s in segments]

    def _now(self) -> int:
        return self.clock.now_ms()

    # ------------------------------------------------------------------ properties

    @property
    def log_end_offset(self) -> int:
        """The offset the next appended record will get."""
        return self._segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        """What readers may see: everything appended (there are no replicas to wait for)."""
        return self._segments[-1].next_offset

    @property
    def active_segment(self) -> Segment:
        return self._segments[-1]

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failed(self) -> bool:
        """Whether a write or fsync failed: the log refuses writes until reopened (what
        the failed append left past the committed end is cut off by the next writer)."""
        return self._failed is not None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"partition log {self.directory} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(
                f"cannot write to partition {self.directory}: its store is open read-only "
                f"(nothing is written; open the store without read_only=True, with write "
                f"access, to append, roll, flush or delete)",
                self.directory,
            )
        if self._failed is not None:
            raise LogFailedError(
                f"partition log {self.directory} refuses writes after an earlier failure "
                f"({self._failed}); close and reopen the store to recover"
            )

    # ------------------------------------------------------------------ append

    def append_records(
        self,
        records: Sequence[RecordInput],
        *,
        compression: Compression = Compression.NONE,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
    ) -> AppendResult:
        """Encode ``records`` (``(timestamp_ms, key, value, headers)`` tuples) as one batch
        and append it.

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
        )
        timestamps = [r[0] for r in records]
        header = BatchHeader(
            0, 0, len(data) - 12, -1, 2, 0, int(compression), len(records) - 1,
            timestamps[0], max(timestamps), producer_id, producer_epoch, base_sequence,
            len(records),
        )
        return self._append(data, [header])

    def append_batches(
        self, data: bytes | bytearray | memoryview, *, validate: bool = True
    ) -> AppendResult:
        """Append already-encoded record batches, assigning offsets by replacing each
        batch's 8-byte ``baseOffset`` as it is written (no CRC recomputation, no copy of
        ``data``).

        With ``validate`` (the default, as Kafka's LogValidator does) every record is
        decoded once, so a batch whose CRC is right but whose records are malformed is
        refused instead of stored where every read would fail. ``validate=False`` is for
        batches this process encoded or already checked.

        Raises:
            CorruptRecordError: a batch fails its CRC, has a wrong magic, or (with
                ``validate``) holds malformed records or a bad compressed payload.
            InvalidRecordError: no batch, trailing bytes, or inconsistent record counts.
            RecordTooLargeError: a batch is larger than ``max_message_bytes``.
        """
        buf = memoryview(data)
        headers = list(scan(buf, verify=True))
        end = headers[-1].position + headers[-1].size if headers else 0
        if not headers or end != len(buf):
            raise InvalidRecordError(
                f"append needs whole record batches: {len(buf) - end} of {len(buf)} bytes "
                f"are not a whole batch"
            )
        for h in headers:
            if h.records_count < 1 or h.last_offset_delta != h.records_count - 1:
                raise InvalidRecordError(
                    f"record batch at position {h.position} has {h.records_count} records "
                    f"but lastOffsetDelta {h.last_offset_delta} (expected records - 1)"
                )
            if validate:
                decoded = decode_batch_records(buf, h, verify=False)
                if len(decoded) != h.records_count:
                    raise CorruptRecordError(
                        f"record batch at position {h.position} declares {h.records_count} "
                        f"records but holds {len(decoded)}",
                        position=h.position,
                    )
        return self._append(buf, headers)

    def _append(self, buf: bytes | memoryview, headers: list[BatchHeader]) -> AppendResult:
        limit = self.config.max_message_bytes
        for h in headers:
            if h.size > limit:
                raise RecordTooLargeError(h.size, limit)
        first = headers[0]
        pid, sequence = first.producer_id, first.base_sequence
        idempotent = pid >= 0 and sequence >= 0 and len(headers) == 1
        with self._exclusive():
            now = self._now()
            if idempotent:
                prior = self._producers.get(pid)
                if prior is not None and prior[0] == sequence:
                    # The same producer's same batch again (a retry): written already.
                    # Its first append may have failed in fsync, so sync before acking.
                    if self.config.flush == "always":
                        i = max(0, bisect.bisect_right(self._bases, prior[1]) - 1)
                        self._segments[i].fsync()
                    return AppendResult(prior[1], prior[2], now, prior[2] - prior[1] + 1)
            base = offset = self.log_end_offset
            placed: list[BatchHeader] = []
            parts: list[bytes | memoryview] = []
            view = memoryview(buf)
            for h in headers:
                parts += (_BASE_OFFSET.pack(offset), view[h.position + 8 : h.position + h.size])
                placed.append(h._replace(base_offset=offset))
                offset += h.last_offset_delta + 1
            self._mark_dirty()
            self._maybe_roll(len(buf), placed, now)
            self.active_segment.append(parts, placed)
            self._flush_per_policy(now)
            if idempotent:
                self._producers[pid] = (sequence, base, offset - 1)
                self._producers.move_to_end(pid)
                if len(self._producers) > MAX_PRODUCERS:
                    self._producers.popitem(last=False)
        return AppendResult(base, offset - 1, now, offset - base)

    def _mark_dirty(self) -> None:
        """Before the first write after an open, record that the log is not clean."""
        if not self._marked_dirty:
            self._write_checkpoint(clean=False)
            self._marked_dirty = True

    def _write_checkpoint(self, *, clean: bool) -> None:
        write_checkpoint(
            self.fs,
            self.directory,
            Checkpoint(self.recovery_point, self.log_start_offset, clean),
        )

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

    def roll(self) -> None:
        """Start a new segment now (no-op if the active segment is empty)."""
        with self._exclusive():
            if self.active_segment.size:
                self._mark_dirty()
                self._roll(self._now())

    def _flush_per_policy(self, now: int) -> None:
        policy = self.config.flush
        if policy == "always" or (
            policy == "interval" and now - self._last_flush_ms >= self.config.flush_ms
        ):
            self.active_segment.log_file.fsync()
            self._last_flush_ms = now
            # Every offset appended so far is now synced (older segments were synced when
            # they rolled). The head written after this append carries the new recovery
            # point, so recovery after a crash never cuts what was acknowledged.
            self.recovery_point = self.log_end_offset

    def flush(self) -> None:
        """fsync everything appended so far and advance the recovery point."""
        with self._exclusive():
            self._sync_all()
            if self._marked_dirty:
                self._write_checkpoint(clean=False)
            self._last_flush_ms = self._now()

    def _sync_all(self) -> None:
        """fsync every segment from the one holding the recovery point on (older ones
        were synced when they rolled) and the directory; move the recovery point to the
        log end."""
        first = max(0, bisect.bisect_right(self._bases, self.recovery_point) - 1)
        for seg in self._segments[first:]:
            seg.fsync()
        self.fs.fsync_dir(self.directory)
        self.recovery_point = self.log_end_offset

    # ------------------------------------------------------------------ read

    def _track_sealed(self, seg: Segment) -> None:
        if seg is self._segments[-1]:
            return
        self._open_sealed[seg.base_offset] = seg
        self._open_sealed.move_to_end(seg.base_offset)
        while len(self._open_sealed) > MAX_OPEN_SEALED_SEGMENTS:
            _, oldest = self._open_sealed.popitem(last=False)
            oldest.close_files()

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

    def read(self, offset: int, max_bytes: int = 1 << 20) -> FetchResult:
        """Whole batches from the one holding ``offset``: at most ``max_bytes`` unless the
        first batch alone is larger (then that batch). Reading at ``log_end_offset`` returns
        no bytes.

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
                        data = seg.read_from(header.position, max_bytes)
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
        with self._lock:
            self._check_open()
            self._refresh_locked()
            while True:
                self._check_offset(offset)
                try:
                    found = self._locate(offset)
                    if found is None:
                        return []
                    seg, first = found
                    wanted = max_bytes
                    if max_records is not None and first.last_offset - offset + 1 >= max_records:
                        wanted = 1  # the first batch holds all that is wanted: read only it
                    data = seg.read_from(first.position, wanted)
                except FileNotFoundError as err:
                    self._segment_vanished(err)
                    continue
                break
        out: list[Any] = []
        limit = max_records
        try:
            for header in scan(data, verify=True):
                if header.is_control or header.last_offset < offset:
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
        except CorruptRecordError as err:
            position = first.position + (err.position or 0)
            raise CorruptRecordError(
                f"{seg.log_path}: corrupt record batch at position {position}: {err}",
                seg.log_path,
                position,
            ) from err
        return out

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

    # ------------------------------------------------------------------ retention

    def _largest_timestamp(self, seg: Segment) -> int:
        largest = seg.largest_timestamp()
        if largest >= 0:
            return largest
        return self.fs.mtime_ms(seg.log_path)

    def apply_retention(self) -> int:
        """Delete whole old segments past ``retention_ms`` or ``retention_bytes``, oldest
        first, stopping at the first one to keep. Returns how many were deleted."""
        with self._exclusive():
            now = self._now()
            cfg = self.config
            count = 0
            total = sum(s.size for s in self._segments)
            for seg in self._segments:
                if seg.size == 0:
                    break
                by_time = cfg.retention_ms >= 0 and now - self._largest_timestamp(seg) > (
                    cfg.retention_ms
                )
                by_size = cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes
                if not (by_time or by_size):
                    break
                total -= seg.size
                count += 1
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
        self.fs.fsync_dir(self.directory)
        self._set_segments(self._segments[count:])

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
                            self._write_checkpoint(clean=True)
                            self._write_head()
                finally:
                    self._writer.release()
            finally:
                for seg in self._segments:
                    seg.close_files()
                self._open_sealed.clear()
                self._release_files()

    def _abandon(self) -> None:
        """Drop this log as a killed process would: its descriptors (and so its locks) go,
        and nothing is flushed or marked clean. For crash tests."""
        with self._lock:
            self._closed = True
            for seg in self._segments:
                seg.close_files()
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
