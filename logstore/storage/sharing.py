"""Sharing a partition between processes: the head file, the writer lock, following.

Every process with the partition open holds the presence lock shared; a writer takes the
writer lock for each write (:meth:`ProcessSharing._exclusive`) and rewrites the ``head``
file after it: the active segment's committed size, index counts, log end, recovery point
and a generation that changes on every roll or deletion. Other processes follow that head
(:meth:`ProcessSharing._refresh_locked`): a new generation or active segment relists the
directory. The first process to open the partition alone recovers it
(:meth:`~logstore.storage.recovery.Recovery._load`); the rest take its head.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Iterator

from logstore.errors import StorageError, TopicNotFoundError
from logstore.storage.head import HEAD_SIZE, Head, pack_head, unpack_head
from logstore.storage.listing import CLEANER_LOCK_NAME, read_listing
from logstore.storage.recovery import Recovery
from logstore.storage.segment import Segment
from logstore.storage.segment_files import SegmentReplacedError
from logstore.storage.swap import complete_pending_swaps

log = logging.getLogger("logstore.storage.log")

_FOLLOW_TIMEOUT_S = 1.0
"""How long a reader waits for a head naming a segment the directory lacks to move on."""


class _HeadMovedOnError(StorageError):
    """The head read names a segment that is no longer in the directory: another process
    has rolled and deleted it since (the head is read again)."""


class ProcessSharing(Recovery):
    """How a partition log shares its partition with other processes (and threads)."""

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
        listing = read_listing(self.fs.listdir(self.directory))
        bases, gaps = listing.logs, listing.gaps
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
            seg = known.pop(base, None)
            if seg is not None and (seg.gaps != (base in gaps) or not self._same_file(seg)):
                seg.close_files()  # the cleaner swapped a cleaned segment in
                self._open_sealed.pop(base, None)
                seg = None
            segments.append(
                seg or Segment(self.fs, self.directory, base, self.config, gaps=base in gaps)
            )
        for gone in known.values():
            gone.close_files()
            self._open_sealed.pop(gone.base_offset, None)
        for seg, nxt in itertools.pairwise(segments):
            seg.next_offset = nxt.base_offset
        # segments wholly below the log start are on their way out
        while len(segments) > 1 and segments[1].base_offset <= head.log_start_offset:
            segments.pop(0).close_files()
        self._set_segments(segments)

    def _same_file(self, seg: Segment) -> bool:
        """Whether ``seg`` still names the file this process knew (one ``stat``)."""
        if seg.identity is None:
            seg.forget_size()  # never opened: only its size may be cached
            return True
        return self.fs.identity(seg.log_path) == seg.identity

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
        deadline = time.monotonic() + _FOLLOW_TIMEOUT_S
        while True:
            head = self._read_head()
            if head is not None and head != self._head_seen:
                break
            # a cleaner swaps segments before it writes its head: wait for that head
            if time.monotonic() >= deadline:
                if isinstance(err, SegmentReplacedError) and self._finish_abandoned_swaps():
                    return
                if self._failed is not None:
                    raise StorageError(
                        f"partition {self.directory}: segment file {err.filename} is gone "
                        f"after this log failed ({self._failed}); close and reopen the "
                        f"store to recover it (a log cleaner swap is finished then)",
                        str(err.filename) if err.filename else self.directory,
                        errno=err.errno,
                    ) from err
                raise StorageError(
                    f"partition {self.directory}: segment file {err.filename} is missing "
                    f"(deleted by something other than logstore?)",
                    str(err.filename) if err.filename else self.directory,
                    errno=err.errno,
                ) from err
            time.sleep(0.001)
        self._refresh_locked()

    # ------------------------------------------------------------------ cleaner swaps

    def _finish_swaps_locked(self) -> None:
        """Finish the swaps a cleaner left unfinished (the caller holds the cleaner
        lock, so no cleaner is alive in them)."""
        listing = read_listing(self.fs.listdir(self.directory))
        if not listing.swaps:
            return
        with self._exclusive():
            log.warning(
                "%s: finishing %d log cleaner swap(s) a process left unfinished",
                self.directory, len(listing.swaps),
            )
            complete_pending_swaps(self.fs, self.directory, listing)
            self._generation += 1
            head = self._head_seen
            assert head is not None
            self._relist(head._replace(generation=self._generation))

    def _finish_abandoned_swaps(self) -> bool:
        """A reader kept finding a swap under way: if no process holds the cleaner lock,
        its cleaner died in it; finish it (when this log may write). Returns whether it
        did."""
        if self._read_only or self._failed is not None:
            return False
        lock = self.fs.lock_file(os.path.join(self.directory, CLEANER_LOCK_NAME))
        try:
            if not lock.acquire(blocking=False):
                return False
            try:
                self._finish_swaps_locked()
                return True
            finally:
                lock.release()
        finally:
            lock.close()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the writer lock (this process's threads and other processes), with this
        process's view brought up to date first and the head rewritten after."""
        with self._lock:
            self._check_writable()
            self._writer.acquire()
            committed: Head | None = None
            done = False
            try:
                self._check_not_deleted()
                head = self._read_head()
                if head is not None:
                    self._apply_head(head, writer=True)
                committed = self._head_seen
                yield
                done = True
                if not self._closed:
                    self._write_head()
            except StorageError as err:
                if not self._head_file.still_named():  # no failed write: a deleted log
                    raise self._deleted_error() from err
                self._failed = str(err)
                # Only the head's rewrite failed (``done``): the operation's writes and
                # fsyncs all succeeded, and the new head may have reached the file (a
                # short write, then an error); cutting its bytes would leave that head
                # naming synced records the log no longer has. They stay: with an old
                # head the next writer cuts them, like any unpublished tail.
                if committed is not None and not done:
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
