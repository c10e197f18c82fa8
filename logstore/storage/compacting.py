"""Compacting a partition log: one cleaner run, and the swaps it makes visible.

:class:`LogCompaction` is the part of :class:`~logstore.storage.log.PartitionLog` that
runs the cleaner (:mod:`logstore.storage.compaction`) and swaps its segments in
(:mod:`logstore.storage.swap`). The heavy work (mapping keys, writing cleaned segments)
holds no lock appends or reads need: it uses segment objects of its own. Each swap then
holds the writer lock for the renames only, and bumps the head's generation so every
process lists the directory again. One process cleans a partition at a time: the
``.cleaner.lock`` flock, taken without waiting (the others skip the run).

A swap whose cleaner died part-way is finished by the next process that opens the
partition alone (recovery), by the next cleaner run, or by a reader that keeps finding it
(:meth:`LogCompaction._finish_abandoned_swaps`): whoever takes the free cleaner lock.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
import time

from logstore.config import MAX_COMPACTION_LAG_NONE
from logstore.errors import InvalidRecordError, StorageError
from logstore.records import decode_batch_records
from logstore.storage.compaction import (
    CleanerProgress,
    CompactionState,
    CompactionStats,
    GroupResult,
    Retention,
    SealedInfo,
    build_offset_map,
    clean_group,
    measure,
    read_progress,
    write_progress,
)
from logstore.storage.listing import CLEANER_LOCK_NAME, swap_path
from logstore.storage.locks import LockFile
from logstore.storage.reads import LogReads
from logstore.storage.segment import Segment
from logstore.storage.swap import Swap, commit_swap, complete_swap
from logstore.types import BatchHeader

log = logging.getLogger("logstore.storage.log")


@dataclasses.dataclass(slots=True)
class _Run:
    """What a cleaner run did, added up over its groups."""

    cleaned_to: int
    """Offsets below this are clean now."""
    bytes_in: int = 0
    bytes_out: int = 0
    records_in: int = 0
    records_out: int = 0
    segments_in: int = 0
    segments_out: int = 0
    tombstones_removed: int = 0


class LogCompaction(LogReads):
    """The log cleaner's side of a partition log."""

    _cleaner_lock: LockFile | None = None
    _cleaning: threading.Lock | None = None

    # ------------------------------------------------------------------ state

    def _sealed_infos(self) -> list[SealedInfo]:
        """The sealed segments' sizes, and the timestamps the compaction lags need (only
        when set: finding them opens the segment)."""
        segments = self._segments
        cfg = self.config
        infos: list[SealedInfo] = []
        for seg, nxt in itertools.pairwise(segments):
            largest = first = -1
            if cfg.min_compaction_lag_ms:
                self._track_sealed(seg)
                largest = seg.largest_timestamp()
            if cfg.max_compaction_lag_ms < MAX_COMPACTION_LAG_NONE:
                self._track_sealed(seg)
                header = seg._read_header(0) if seg.size else None
                first = -1 if header is None else header.max_timestamp
            infos.append(SealedInfo(seg.base_offset, nxt.base_offset, seg.size, largest, first))
        return infos

    def compaction_state(self) -> CompactionState:
        """How compacted the log is: the clean and dirty sections, their dirty ratio,
        whether the cleaner is due, what it has reclaimed so far."""
        with self._lock:
            self._check_open()
            self._refresh_locked()
            return measure(
                self._sealed_infos(),
                self.log_start_offset,
                read_progress(self.fs, self.directory),
                self.config,
                self._now(),
            )

    def _refuse_keyless(self, buf: bytes | memoryview, headers: list[BatchHeader]) -> None:
        """A compacted topic takes keyed records only, as Kafka's (its cleaner would drop
        the others; Kafka's broker refuses them with INVALID_RECORD).

        Raises:
            InvalidRecordError: a record (not in a control batch) has no key.
        """
        for h in headers:
            if h.is_control:
                continue
            for record in decode_batch_records(buf, h, verify=False):
                if record.key is None:
                    raise InvalidRecordError(
                        f"record at offset delta {record.offset - h.base_offset} of a batch has "
                        f"no key: topic partition {self.directory} is compacted "
                        f"(cleanup_policy={self.config.cleanup_policy}) and takes keyed "
                        f"records only (give each record a key)"
                    )

    # ------------------------------------------------------------------ cleaning

    def compact(self, *, force: bool = False) -> CompactionStats | None:
        """Run the cleaner once over the sealed segments, if the topic is compacted and
        the cleaner is due (``force``: whenever there are sealed segments it may clean,
        clean ones too, so that tombstones past ``delete_retention_ms`` go).
        Returns what it did, or None (nothing due, not a compacted topic, or another
        process or thread is cleaning this partition now).

        Raises:
            ReadOnlyStoreError, LogFailedError, StoreClosedError: as appends.
            StorageError, CorruptRecordError: reading or writing failed; the partition is
                as before the run, or with some of its segments cleaned.
        """
        if not self.config.compact:
            return None
        with self._lock:
            self._check_writable()
            if self._cleaning is None:
                self._cleaning = threading.Lock()
                self._cleaner_lock = self.fs.lock_file(
                    os.path.join(self.directory, CLEANER_LOCK_NAME)
                )
            cleaning, lock = self._cleaning, self._cleaner_lock
        assert lock is not None
        if not cleaning.acquire(blocking=False):
            return None
        try:
            if not lock.acquire(blocking=False):
                return None
            try:
                return self._clean(force)
            finally:
                lock.release()
        finally:
            cleaning.release()

    def _clean(self, force: bool) -> CompactionStats | None:
        started = time.monotonic()
        self._finish_swaps_locked()
        with self._lock:
            self._check_writable()
            self._refresh_locked()
            now = self._now()
            progress = read_progress(self.fs, self.directory)
            state = measure(
                self._sealed_infos(), self.log_start_offset, progress, self.config, now
            )
            log_start = self.log_start_offset
            if not (state.due or (force and state.dirty_bytes + state.clean_bytes)):
                return None
            # the cleaner's own segment objects: reading them needs no lock of the log's
            mine = [
                Segment(self.fs, self.directory, s.base_offset, self.config, gaps=s.gaps)
                for s, nxt in zip(self._segments, self._segments[1:], strict=False)
                if s.base_offset < state.cleanable_end and nxt.base_offset > log_start
            ]
            for seg, nxt in zip(mine, [*mine[1:], None], strict=True):
                seg.next_offset = nxt.base_offset if nxt else state.cleanable_end
        try:
            dirty = [s for s in mine if s.next_offset > state.first_dirty_offset]
            offsets, covered = (
                build_offset_map(dirty) if dirty else ({}, state.cleanable_end)
            )
            horizon = now - self.config.delete_retention_ms
            retention = Retention(offsets, log_start, horizon)
            run = self._clean_groups(
                [s for s in mine if s.base_offset < covered], retention, now, covered
            )
        finally:
            for seg in mine:
                seg.close_files()
        write_progress(
            self.fs,
            self.directory,
            CleanerProgress(
                run.cleaned_to,
                progress.bytes_reclaimed + max(0, run.bytes_in - run.bytes_out),
                progress.runs + 1,
                now,
            ),
        )
        return CompactionStats(
            mine[0].base_offset if mine else log_start, run.cleaned_to,
            run.segments_in, run.segments_out, run.bytes_in, run.bytes_out,
            run.records_in, run.records_out, run.tombstones_removed, len(offsets),
            time.monotonic() - started,
        )

    def _clean_groups(
        self, segments: list[Segment], retention: Retention, now: int, covered: int
    ) -> _Run:
        """Clean ``segments`` a group at a time, swapping each group's cleaned segment
        in. A group that retention or ``delete_records`` changed meanwhile is left as it
        is, and the run stops there: the clean section ends before it."""
        run = _Run(cleaned_to=covered)
        while segments:
            removed = retention.tombstones_removed
            result, taken = clean_group(
                self.fs, self.directory, segments, retention, self.config, now
            )
            group, segments = segments[:taken], segments[taken:]
            swapped = result.changed and self._swap_in(group, result)
            if not swapped:
                result.segment.delete()
            run.bytes_in += result.bytes_in
            run.records_in += result.records_in
            run.segments_in += len(group)
            if swapped:
                run.bytes_out += result.bytes_out
                run.records_out += result.records_out
                run.segments_out += 1
                continue
            run.bytes_out += result.bytes_in
            run.records_out += result.records_in
            run.segments_out += len(group)
            retention.tombstones_removed = removed  # none of them went
            if result.changed:  # not swapped: the group changed under the cleaner
                run.cleaned_to = group[0].base_offset
                break
        run.tombstones_removed = retention.tombstones_removed
        return run

    def _swap_in(self, group: list[Segment], result: GroupResult) -> bool:
        """Swap the cleaned segment in for ``group``, if the group is still what the
        cleaner read (else False: retention or a delete took some of it meanwhile)."""
        bases = tuple(s.base_offset for s in group)
        with self._exclusive():
            current = {s.base_offset: i for i, s in enumerate(self._segments)}
            if any(b not in current for b in bases) or any(
                self.fs.identity(s.log_path) != s.identity for s in group
            ):
                return False
            first = current[bases[0]]
            last = current[bases[-1]]
            if last - first + 1 != len(bases) or last + 1 >= len(self._segments):
                return False
            end = self._segments[last + 1].base_offset
            swap = Swap(bases, end)
            try:
                commit_swap(self.fs, self.directory, swap)
            except StorageError:
                if not self.fs.exists(swap_path(self.directory, bases[0])):
                    raise  # not committed: the segments are as they were
            for old in self._segments[first : last + 1]:
                old.close_files()
                self._open_sealed.pop(old.base_offset, None)
            try:
                complete_swap(self.fs, self.directory, swap)
            except StorageError as err:  # committed: finish it (it is idempotent)
                log.warning("%s: finishing a swap again after: %s", self.directory, err)
                complete_swap(self.fs, self.directory, swap)
            new = Segment(self.fs, self.directory, bases[0], self.config, gaps=True)
            new.next_offset = end
            self._set_segments([*self._segments[:first], new, *self._segments[last + 1 :]])
            self._generation += 1
        return True

    def _close_cleaner(self) -> None:
        if self._cleaner_lock is not None:
            self._cleaner_lock.close()
            self._cleaner_lock = None


__all__ = ["CompactionState", "CompactionStats", "LogCompaction"]
