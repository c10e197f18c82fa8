"""Opening a partition alone: loading its segments and recovering them after a crash.

The rules are not here: they are :func:`~logstore.storage.plan.plan_recovery`, a pure
function from what is on disk to a :class:`~logstore.storage.plan.RecoveryPlan` (the same
one ``verify`` reports). The open lists the directory, reads the checkpoint and the
recovery point (:func:`synced_recovery_point`), walks the segments the plan rescans (and
only those: after a clean shutdown none, so open time does not grow with the data; each
walk rebuilds the segment's indexes as it goes), then carries the plan out: leftovers
removed, segments cut or deleted (a WARNING names each), or, when the plan refuses
(damage to records known to be synced), a :class:`~logstore.errors.CorruptRecordError`
naming file and position with the logs left as they are. After a clean shutdown the last
segment's index tail is then read (:meth:`~logstore.storage.segment.Segment.load_active`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterator, Mapping

from logstore.errors import CorruptRecordError
from logstore.storage.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from logstore.storage.compaction import clamp_progress
from logstore.storage.files import FileSystem
from logstore.storage.head import HEAD_NAME, HEAD_SIZE, unpack_head
from logstore.storage.listing import Listing, read_listing
from logstore.storage.logbase import LogState
from logstore.storage.plan import (
    Action,
    RecoveryPlan,
    live_segments,
    log_start,
    plan_recovery,
    rescan_start,
)
from logstore.storage.segment import Segment, SegmentScan
from logstore.storage.swap import complete_pending_swaps, pending_view

log = logging.getLogger("logstore.storage.log")


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


class _Scans(Mapping[int, SegmentScan]):
    """The scans a plan asks for, made when first asked: only the segments an open
    rescans are walked (the others are trusted and stay unopened)."""

    def __init__(self, segments: dict[int, Segment], rescanned: list[int]) -> None:
        self._segments = segments
        self._rescanned = frozenset(rescanned)
        self._order = rescanned
        self._done: dict[int, SegmentScan] = {}

    def __getitem__(self, base: int) -> SegmentScan:
        if base not in self._rescanned:
            raise KeyError(base)
        if base not in self._done:
            self._done[base] = self._segments[base].scan()
        return self._done[base]

    def __contains__(self, base: object) -> bool:
        return base in self._rescanned

    def __iter__(self) -> Iterator[int]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._rescanned)


class Recovery(LogState):
    """How a partition log loads and recovers its segments when it opens alone: it
    builds a :class:`~logstore.storage.plan.RecoveryPlan` and carries it out."""

    recovery_plan: RecoveryPlan | None
    """The plan the open of this log carried out (None: it joined other processes)."""

    def _load(self) -> None:
        fs = self.fs
        try:
            names = fs.listdir(self.directory)
        except FileNotFoundError:
            if not self._read_only:
                raise
            names = []  # read-only: the missing directory reads as an empty partition
        listing = read_listing(names)
        staged: frozenset[int] = frozenset()
        if listing.swaps:  # a crash interrupted the cleaner's swap: finish it first
            if self._read_only:
                listing, staged = pending_view(fs, self.directory, listing)
            else:
                complete_pending_swaps(fs, self.directory, listing)
                listing = read_listing(fs.listdir(self.directory))
        cp = read_checkpoint(fs, self.directory)
        self.was_clean = cp is not None and cp.clean
        self.log_start_offset = log_start(listing, cp)
        self.recovery_point = synced_recovery_point(fs, self.directory, cp)
        gaps = listing.gaps
        segments = {
            base: Segment(
                fs, self.directory, base, self.config, gaps=base in gaps, staged=base in staged
            )
            for base in listing.logs
        }
        try:
            self._load_segments(listing, cp, segments)
        except BaseException:
            for seg in segments.values():  # a failed open leaves no file open
                with contextlib.suppress(Exception):
                    seg.close_files()
            raise

    def _load_segments(
        self, listing: Listing, cp: Checkpoint | None, segments: dict[int, Segment]
    ) -> None:
        live = live_segments(listing, cp)
        for base, nxt in itertools.pairwise(live):
            segments[base].next_offset = nxt
        first = rescan_start(live, self.was_clean, self.recovery_point)
        scans = _Scans(segments, live[first:])
        plan = plan_recovery(self.directory, listing, cp, self.recovery_point, scans)
        self.recovery_plan = plan
        kept = self._carry_out(plan, segments)
        if not kept:
            base = self.log_start_offset
            kept.append(Segment.create(self.fs, self.directory, base, self.config, self._now()))
            self.recovery_point = base
            self.was_clean = True
            if not self._read_only:  # read-only: the empty segment lives in memory only
                write_checkpoint(self.fs, self.directory, Checkpoint(base, base, clean=True))
        elif self.was_clean:
            kept[-1].load_active()
        if kept[-1].created_ms is None:
            # Kafka measures segment_ms from the load time when records carry no timestamp.
            kept[-1].created_ms = self._now()
        self._set_segments(kept)
        self.log_start_offset = max(self.log_start_offset, kept[0].base_offset)
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)
        if self.recovery_point > self.log_end_offset:
            # every offset below the recovery point was fsynced: a log that ends before it
            # lost synced records (a file cut short), which is never repaired silently
            active = kept[-1]
            raise CorruptRecordError(
                f"{active.log_path}: the log ends at offset {self.log_end_offset} (position "
                f"{active.size}), but the checkpoint says offsets up to "
                f"{self.recovery_point - 1} were synced: records are missing (restore the "
                f"partition from a copy, or delete its checkpoint file to accept the loss)",
                active.log_path,
                active.size,
            )
        if not self._read_only:
            clamp_progress(self.fs, self.directory, self.log_end_offset)
        self._last_flush_ms = self._now()

    def _carry_out(self, plan: RecoveryPlan, segments: dict[int, Segment]) -> list[Segment]:
        """Do what ``plan`` says; return the segments that stay, in order.

        Raises:
            CorruptRecordError: the plan refuses (damage to synced records); the logs stay
                as they are.
        """
        if not self._read_only:
            self._remove(list(plan.remove))
        kept: list[Segment] = []
        dropped_later = False
        for step in plan.segments:
            seg = segments[step.base_offset]
            if step.action is Action.KEEP and step.problem is None:
                kept.append(seg)  # trusted: not opened
                continue
            if step.action is Action.DELETE:
                after = kept[-1] if kept else None  # None: below the log start
                self._delete(seg, after)
                dropped_later |= after is not None
                continue
            if step.action is Action.KEEP and step.problem is not None:
                seg.unbuild(seg.next_offset)  # the walk stopped at damage the open refuses
            if step.action is Action.CUT:
                assert step.cut_at is not None and step.problem is not None
                self.recovered_bytes += seg.cut(step.cut_at, step.problem)
            kept.append(seg)
        if dropped_later and not self._read_only:
            self.fs.fsync_dir(self.directory)
        if plan.error is not None:
            raise CorruptRecordError(
                f"{plan.error.path}: {plan.error.message}",
                plan.error.path,
                plan.error.position,
            )
        for seg, nxt in itertools.pairwise(kept):
            seg.next_offset = nxt.base_offset
        for seg in kept[:-1]:
            if seg.is_open:
                seg.close_files()  # reopened lazily, like every sealed segment
        return kept

    def _delete(self, seg: Segment, after: Segment | None) -> None:
        """Delete a segment the plan drops: below the log start (``after`` None), or
        following data lost in segment ``after``."""
        if self._read_only:
            if after is not None:
                log.warning(
                    "ignoring %s: it follows data lost in %s (the store is read-only: the "
                    "file stays)",
                    seg.log_path,
                    after.log_path,
                )
            seg.close_files()
            return
        if after is not None:
            log.warning("deleting %s: it follows data lost in %s", seg.log_path, after.log_path)
        seg.delete()

    def _remove(self, names: list[str]) -> None:
        for name in names:
            path = os.path.join(self.directory, name)
            log.info("removing leftover file %s", path)
            self.fs.unlink(path, missing_ok=True)
