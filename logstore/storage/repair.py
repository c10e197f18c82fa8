"""Repair: accepting a loss that recovery refuses to accept silently (``logstore repair``).

A partition whose synced records (those below its recovery point) are damaged or missing
is never cut by an open: the open raises :class:`~logstore.errors.CorruptRecordError`, or
reads there do, and ``verify`` reports the damage as not repairable (see
:mod:`logstore.storage.plan`). Repair is the explicit way to accept that loss:
:func:`plan_repair` says exactly what would be dropped (per segment file: bytes,
offsets, batches and records) and :func:`carry_out_repair` drops it.

The rules are the recovery plan's (:func:`~logstore.storage.plan.plan_recovery`), with
nothing trusted: every live segment rescanned and no recovery point protecting anything,
so each synced segment is treated as recovery treats unsynced data after a crash: cut at
its last good batch, the segments after lost data deleted. A partition the open accepts
as it is (healthy, or damage the next open repairs by itself) has an empty plan, and
repair changes nothing there.

Carrying a plan out holds the partition's writer lock and its presence lock exclusively
(no other process may have the partition open: :class:`PartitionInUseError`), plans
again under them (a plan that no longer matches the files is refused:
:class:`RepairPlanChangedError`), then, in this order:

1. deletes the segments after the lost data, newest first, and fsyncs the directory;
2. rescans the segment that is now the last one (rebuilding its indexes, as an open
   does), cuts it at its last good batch and fsyncs it;
3. removes the leftovers and the producer snapshots past the new log end;
4. lowers the ``head``'s recovery point to the new log end (in place, fsynced): recovery
   takes the higher of the checkpoint's and the head's;
5. writes the checkpoint (atomically): recovery point = the new log end, not clean, so
   the next open rescans the last segment as after a crash.

Until step 5 the checkpoint still vouches for the lost records, so a crash at any point
leaves a partition that an open refuses as before (or, when nothing but the bytes already
dropped was wrong, accepts as repaired); running the repair again finishes it. Every file
operation goes through the :class:`~logstore.storage.files.FileSystem` seam, and nothing
outside the partition directory is touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import NamedTuple

from logstore.config import TopicConfig
from logstore.errors import LogstoreError, StoreLockedError
from logstore.storage.batches import StopReason, walk_batches
from logstore.storage.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from logstore.storage.files import FileHandle, FileSystem
from logstore.storage.head import (
    HEAD_NAME,
    HEAD_SIZE,
    OPEN_LOCK_NAME,
    WRITER_LOCK_NAME,
    pack_head,
    unpack_head,
)
from logstore.storage.listing import LOG_SUFFIX, Listing, read_listing, segment_path
from logstore.storage.plan import CORRUPT, Action, live_segments, log_start, plan_recovery
from logstore.storage.recovery import synced_recovery_point
from logstore.storage.segment import Segment, SegmentScan
from logstore.storage.swap import complete_pending_swaps

log = logging.getLogger(__name__)


class PartitionInUseError(StoreLockedError):
    """Another process (or another log in this one) has the partition open: repair needs
    it to itself."""


class RepairPlanChangedError(LogstoreError):
    """The partition's files changed between planning a repair and carrying it out."""


class SegmentLoss(NamedTuple):
    """What a repair drops from one segment file: bytes ``[start_position,
    end_position)`` of its ``.log`` (all of it, with its indexes, when ``deleted``)."""

    path: str
    """The segment's ``.log``."""
    base_offset: int
    deleted: bool
    """True: the whole segment is deleted; False: its ``.log`` is cut at ``start_position``."""
    start_position: int
    end_position: int
    """The ``.log``'s size."""
    first_offset: int
    """The first offset dropped."""
    end_offset: int | None
    """The offset after the last one dropped (None: unknown, the bytes at the end are
    damaged and the segment is the last)."""
    batches: int
    """Whole batches dropped that pass their checks (CRC included)."""
    records: int
    """The records of those batches."""
    damaged_bytes: int
    """Bytes dropped that hold no sound batch: their batches and records cannot be counted."""
    problem: str | None
    """What is wrong at ``start_position`` (a cut), None for a deleted segment."""

    @property
    def bytes(self) -> int:
        return self.end_position - self.start_position


class RepairPlan(NamedTuple):
    """What :func:`carry_out_repair` does to a partition; empty (:attr:`needed` False)
    when the open accepts the partition as it is."""

    directory: str
    reasons: tuple[str, ...]
    """Why the partition needs a repair: the damage to synced records ``verify`` reports
    as not repairable (file, position and problem). Empty: nothing to repair."""
    losses: tuple[SegmentLoss, ...]
    """What is dropped, per segment file, in offset order."""
    remove: tuple[str, ...]
    """Names of files removed with it: leftovers, and producer snapshots past the new end."""
    log_start_offset: int
    recovery_point: int
    """Offsets below this were synced, says the checkpoint (or the head)."""
    log_end_offset: int
    """The log end after the repair, also its new recovery point."""

    @property
    def needed(self) -> bool:
        return bool(self.reasons)

    @property
    def records(self) -> int:
        """The records dropped that can be counted (see :attr:`damaged_bytes`)."""
        return sum(loss.records for loss in self.losses)

    @property
    def damaged_bytes(self) -> int:
        return sum(loss.damaged_bytes for loss in self.losses)

    @property
    def lost_end(self) -> int:
        """The end of the offsets lost, as far as it is known: the recovery point, or the
        end of the last batch dropped when that is higher."""
        ends = [loss.end_offset for loss in self.losses if loss.end_offset is not None]
        return max([self.recovery_point, self.log_end_offset, *ends])


def plan_repair(fs: FileSystem, directory: str) -> RepairPlan:
    """What repairing the partition in ``directory`` would drop. Drops nothing (the
    partition's lock files are created if missing, and a log cleaner swap a crash
    interrupted is finished first, as any open of the partition does: that loses
    nothing); walks every live segment with CRC checks.

    Raises:
        PartitionInUseError: another process or log has the partition open.
        StorageError: the directory cannot be read.
    """
    with _alone(fs, directory):
        listing = read_listing(fs.listdir(directory))
        if listing.swaps and not fs.read_only:
            complete_pending_swaps(fs, directory, listing)
        return _plan(fs, directory)


def carry_out_repair(
    fs: FileSystem, directory: str, plan: RepairPlan, config: TopicConfig | None = None
) -> None:
    """Drop what ``plan`` (from :func:`plan_repair`) lists, and make the partition open
    normally: its recovery point becomes the new log end. An empty plan changes nothing.

    Args:
        config: the topic's settings (the rebuilt indexes follow its index settings).

    Raises:
        PartitionInUseError: another process or log has the partition open.
        RepairPlanChangedError: the files no longer match ``plan`` (nothing changed; plan
            again).
        StorageError: a file operation failed (run the repair again: see the module).
    """
    if not plan.needed:
        return
    config = config or TopicConfig()
    with _alone(fs, directory):
        current = _plan(fs, directory)
        if current != plan:
            raise RepairPlanChangedError(
                f"partition {directory} changed since its repair was planned: nothing was "
                f"dropped (plan the repair again)"
            )
        gaps = read_listing(fs.listdir(directory)).gaps
        deleted = [loss for loss in plan.losses if loss.deleted]
        for loss in reversed(deleted):  # newest first: a crash leaves no hole in the offsets
            log.info("repair: deleting %s (it follows lost data)", loss.path)
            Segment(fs, directory, loss.base_offset, config, gaps=loss.base_offset in gaps).delete()
        if deleted:
            fs.fsync_dir(directory)
        _cut_last(fs, directory, plan, config, gaps)
        for name in plan.remove:
            log.info("repair: removing %s", os.path.join(directory, name))
            fs.unlink(os.path.join(directory, name), missing_ok=True)
        if plan.remove:
            fs.fsync_dir(directory)
        _lower_head(fs, directory, plan.log_end_offset)
        end = plan.log_end_offset
        write_checkpoint(
            fs, directory, Checkpoint(end, min(plan.log_start_offset, end), clean=False)
        )


# --------------------------------------------------------------------------- planning


def _plan(fs: FileSystem, directory: str) -> RepairPlan:
    """:func:`plan_repair` without the locks."""
    listing = read_listing(fs.listdir(directory))
    cp = read_checkpoint(fs, directory)
    synced = synced_recovery_point(fs, directory, cp)
    live = live_segments(listing, cp)
    scans = {base: _scan(fs, directory, base, base in listing.gaps) for base in live}
    as_open = plan_recovery(directory, listing, cp, synced, scans)
    reasons = tuple(
        _where(f.path, f.position, f.message) for f in as_open.findings if f.kind == CORRUPT
    )
    # Nothing trusted: no recovery point, every live segment rescanned and cut at its
    # first bad batch (the log start stays).
    trust_nothing = None if cp is None else cp._replace(recovery_point=0, clean=False)
    plan = plan_recovery(directory, listing, trust_nothing, 0, scans)
    kept = [s.base_offset for s in plan.segments
            if s.action is not Action.DELETE and s.base_offset in scans]
    end = scans[kept[-1]].next_offset if kept else log_start(listing, cp)
    if not reasons:
        return RepairPlan(directory, (), (), (), log_start(listing, cp), synced, end)
    losses = []
    for step in plan.segments:
        if step.base_offset not in scans:
            continue  # wholly below the log start: the open deletes it, nothing is lost
        if step.action is Action.CUT:
            assert step.cut_at is not None
            scan = scans[step.base_offset]
            losses.append(_loss(fs, directory, listing, step.base_offset, step.cut_at,
                                scan.next_offset, step.problem))
        elif step.action is Action.DELETE:
            losses.append(_loss(fs, directory, listing, step.base_offset, 0,
                                step.base_offset, None))
    return RepairPlan(
        directory, reasons, tuple(losses), plan.remove, log_start(listing, cp), synced, end
    )


def _where(path: str, position: int | None, message: str) -> str:
    return f"{path}: {message}" if position is None else f"{path} at position {position}: {message}"


def _scan(fs: FileSystem, directory: str, base: int, gaps: bool) -> SegmentScan:
    """A CRC-checked walk of one segment (what ``verify`` walks), for the plans."""
    with fs.open(segment_path(directory, base, LOG_SUFFIX), writable=False) as handle:
        walk = walk_batches(handle, expected=base, gaps=gaps)
        for _ in walk:
            pass
        end = base if walk.next_offset is None else walk.next_offset
        return SegmentScan(handle.size, walk.end, end, walk.stop)


def _loss(
    fs: FileSystem,
    directory: str,
    listing: Listing,
    base: int,
    start: int,
    first_offset: int,
    problem: str | None,
) -> SegmentLoss:
    """What dropping bytes ``start`` to the end of segment ``base``'s ``.log`` loses: the
    whole segment when there is no ``problem`` (it follows lost data), else a cut."""
    path = segment_path(directory, base, LOG_SUFFIX)
    with fs.open(path, writable=False) as handle:
        batches, records, damaged, tail_end = _count(handle, start)
        size = handle.size
    if tail_end is not None:
        end: int | None = tail_end
    elif not damaged:
        end = first_offset  # nothing there
    else:  # damaged at the end: its offsets end where the next segment starts, if any
        later = [b for b in listing.logs if b > base]
        end = later[0] if later and base not in listing.gaps else None
    return SegmentLoss(path, base, problem is None, start, size, first_offset, end, batches,
                       records, damaged, problem)


def _count(handle: FileHandle, start: int) -> tuple[int, int, int, int | None]:
    """``(batches, records, damaged bytes, end offset)`` of the bytes from ``start`` to
    the end: the sound batches (CRC checked) counted; a damaged batch whose header still
    gives its length is skipped by it (as ``logstore inspect`` does), and anything else
    is damaged to the end. The end offset is the sound last batch's (None if the bytes
    end with damage, or hold nothing)."""
    batches = records = damaged = 0
    end_offset: int | None = None
    position, size = start, handle.size
    while position < size:
        walk = walk_batches(handle, position)  # offsets only need to follow on in a run
        for header in walk:
            batches += 1
            records += header.records_count
            end_offset = header.next_offset
        stop = walk.stop
        if stop is None:
            break
        if stop.reason is StopReason.OFFSETS:
            position = stop.position  # a sound batch that does not follow on: a new run
            continue
        found = next(iter(walk_batches(handle, stop.position, verify=False)), None)
        skip = found.size if found is not None else size - stop.position
        damaged += skip
        end_offset = None
        position = stop.position + skip
    return batches, records, damaged, end_offset


# --------------------------------------------------------------------------- carrying out


@contextlib.contextmanager
def _alone(fs: FileSystem, directory: str) -> Iterator[None]:
    """Hold the partition's writer lock and its presence lock exclusively (as an open
    that finds no other process does, but without waiting).

    Raises:
        PartitionInUseError: either is held.
    """
    writer = fs.lock_file(os.path.join(directory, WRITER_LOCK_NAME))
    try:
        presence = fs.lock_file(os.path.join(directory, OPEN_LOCK_NAME))
        try:
            if not (writer.acquire(blocking=False) and presence.acquire(blocking=False)):
                raise PartitionInUseError(
                    f"partition {directory} is open in another process (or another log): "
                    f"repair needs it to itself (close the others first)"
                )
            yield
        finally:
            presence.close()
    finally:
        writer.close()


def _cut_last(
    fs: FileSystem, directory: str, plan: RepairPlan, config: TopicConfig, gaps: frozenset[int]
) -> None:
    """Rescan the segment that is now the last one (rebuilding its indexes, as an open
    does), cut it where the plan says and make it durable."""
    bases = read_listing(fs.listdir(directory)).logs
    if not bases:
        return
    cut = next((loss for loss in plan.losses if not loss.deleted), None)
    seg = Segment(fs, directory, bases[-1], config, gaps=bases[-1] in gaps)
    try:
        scan = seg.scan()
        expected = plan.log_end_offset
        if scan.next_offset != expected or (cut is not None and scan.end != cut.start_position):
            raise RepairPlanChangedError(
                f"{seg.log_path} changed while it was being repaired (its good batches end "
                f"at offset {scan.next_offset}, position {scan.end}; the plan said offset "
                f"{expected}): plan the repair again"
            )
        if cut is not None:
            log.info("repair: cutting %s at position %d (%s)", cut.path, cut.start_position,
                     cut.problem)
            seg.log_file.truncate(cut.start_position)
        seg.fsync()
    finally:
        seg.close_files()


def _lower_head(fs: FileSystem, directory: str, end: int) -> None:
    """Make the head's recovery point no higher than ``end`` (rewritten in place, as
    writers rewrite it, and fsynced before the checkpoint is written: a torn head fails
    its CRC and is ignored). A first open uses nothing else of an old head but its
    generation."""
    path = os.path.join(directory, HEAD_NAME)
    try:
        head = unpack_head(fs.read_file(path)[:HEAD_SIZE])
    except FileNotFoundError:
        return
    if head is None or head.recovery_point <= end:
        return
    with fs.open(path) as handle:
        handle.write_at(pack_head(head._replace(recovery_point=end)), 0)
        handle.fsync()


__all__ = [
    "PartitionInUseError",
    "RepairPlan",
    "RepairPlanChangedError",
    "SegmentLoss",
    "carry_out_repair",
    "plan_repair",
]
