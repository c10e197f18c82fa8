"""The recovery plan: what opening a partition does with what is on disk, as a value.

:func:`plan_recovery` is a pure function from what is on disk (the directory
:class:`~logstore.storage.listing.Listing`, the checkpoint, the synced recovery point and
what a :class:`~logstore.storage.segment.SegmentScan` of each rescanned segment found) to
a :class:`RecoveryPlan`: per segment keep, rebuild its indexes, cut at byte position N,
or delete; the files to remove; the error an open raises instead (damage no open
repairs); and the findings ``verify`` reports. The open
(:class:`~logstore.storage.recovery.Recovery`) executes the plan;
:func:`~logstore.storage.verify.verify_partition` builds the same plan from a read-only
walk and reports it. So the two cannot disagree: there is one set of rules, here.

The rules:

* leftover temporaries and segment files without a ``.log`` are removed;
* segments wholly below the checkpointed log start offset are deleted;
* after a clean shutdown nothing is rescanned (:func:`rescan_start`); otherwise every
  segment from the one holding the recovery point on is rescanned with CRC checks and
  its indexes rebuilt;
* a rescanned segment is cut at its first bad batch, and the segments after it are
  deleted (offsets stay contiguous) - unless the cut would lose offsets below the
  recovery point (records known to be synced): then nothing changes and the open
  raises :class:`~logstore.errors.CorruptRecordError`;
* so is a rescanned segment whose offsets stop short of the next segment's base
  (later segments deleted) - unless the segment declares gaps
  (:mod:`logstore.storage.gaps`), which may end before the next base - and a log that
  ends below the recovery point (an error);
* damage in a segment that is not rescanned is not repaired: reads there raise
  ``CorruptRecordError`` (``verify`` reports it from its own walk of every segment);
* producer-state snapshots (:mod:`~logstore.storage.producers`) are kept, except those
  below the first segment that stays (their segments are gone: retention was
  interrupted) and, when the rescans say where the log ends, those past that end (the
  offsets they cover were lost): both are removed. A damaged snapshot is no concern of
  the plan: loading the state skips it (``verify`` reports it).
"""

from __future__ import annotations

import bisect
import enum
import os
from collections.abc import Mapping
from typing import NamedTuple

from logstore.storage.checkpoint import CHECKPOINT_NAME, Checkpoint
from logstore.storage.listing import LOG_SUFFIX, Listing, segment_path, snapshot_path
from logstore.storage.segment import SegmentScan

REPAIR = "repair"
"""A finding the next open repairs by itself (index rebuild, tail cut, leftover removal)."""
CORRUPT = "corrupt"
"""A finding no open repairs: reading there raises ``CorruptRecordError``."""

_RESTORE = (
    "records are missing (restore the partition from a copy, or delete its checkpoint "
    "file to accept the loss)"
)


class Finding(NamedTuple):
    path: str
    position: int | None
    kind: str  # REPAIR or CORRUPT
    message: str


class Action(enum.Enum):
    """What the open does with one segment."""

    KEEP = "keep"
    """Trusted as it is (not rescanned; indexes checked when first used)."""
    REBUILD = "rebuild"
    """Rescanned: every batch good, indexes rebuilt from the log."""
    CUT = "cut"
    """Rescanned: cut at :attr:`SegmentPlan.cut_at`, indexes rebuilt up to there."""
    DELETE = "delete"
    """Deleted: wholly below the log start, or after data that was lost."""


class SegmentPlan(NamedTuple):
    base_offset: int
    action: Action
    cut_at: int | None = None
    """The byte position the log is cut at (``Action.CUT`` only)."""
    problem: str | None = None
    """What the rescan found at the first bad batch (a cut, or damage the open refuses)."""


class PlanError(NamedTuple):
    """Why the open refuses: damage to records known to be synced."""

    path: str
    position: int
    message: str


class RecoveryPlan(NamedTuple):
    remove: tuple[str, ...]
    """Names of leftover temporaries, orphan segment files and stale producer snapshots
    to remove."""
    segments: tuple[SegmentPlan, ...]
    """One entry per ``.log`` in the listing, in offset order."""
    log_start_offset: int
    recovery_point: int
    error: PlanError | None
    """Set when the open raises instead (then nothing on disk changes)."""
    findings: tuple[Finding, ...]
    """What ``verify`` reports (the damage in segments an open does not rescan only when
    the scans cover them)."""

    def actions(self) -> dict[int, SegmentPlan]:
        """The segment plans by base offset (what changes on disk, for comparisons)."""
        return {s.base_offset: s for s in self.segments}


def rescan_start(logs: list[int], clean: bool, synced: int) -> int:
    """The index in ``logs`` of the first segment an open rescans (``len(logs)``: none)."""
    if clean:
        return len(logs)
    return max(0, bisect.bisect_right(logs, synced) - 1)


def log_start(listing: Listing, cp: Checkpoint | None) -> int:
    return cp.log_start_offset if cp else (listing.logs[0] if listing.logs else 0)


def live_segments(listing: Listing, cp: Checkpoint | None) -> list[int]:
    """The bases of the segments not wholly below the log start offset."""
    logs, start = list(listing.logs), log_start(listing, cp)
    while len(logs) > 1 and logs[1] <= start:
        logs.pop(0)
    return logs


class _Planner:
    """Builds one :class:`RecoveryPlan` (see :func:`plan_recovery`)."""

    def __init__(self, directory: str, synced: int, gaps: frozenset[int]) -> None:
        self.directory = directory
        self.synced = synced
        self.gaps = gaps
        self.segments: list[SegmentPlan] = []
        self.findings: list[Finding] = []
        self.error: PlanError | None = None

    def path(self, base: int) -> str:
        return segment_path(self.directory, base, LOG_SUFFIX)

    def note(self, base: int, position: int | None, kind: str, message: str) -> None:
        self.findings.append(Finding(self.path(base), position, kind, message))

    def refuse(self, base: int, position: int, message: str) -> None:
        self.error = PlanError(self.path(base), position, message)
        self.note(base, position, CORRUPT, f"{message}; opening raises CorruptRecordError")

    def delete_after(self, logs: list[int], i: int) -> None:
        for later in logs[i + 1 :]:
            self.segments.append(SegmentPlan(later, Action.DELETE))
            self.note(later, None, REPAIR, "deleted on open (it follows lost data)")

    def follows(self, base: int, end: int, nxt: int) -> bool:
        """Whether a segment whose offsets end at ``end`` may be followed by ``nxt``."""
        return end == nxt or (base in self.gaps and end <= nxt)

    def trusted(self, base: int, scan: SegmentScan, nxt: int | None) -> None:
        """A segment the open does not rescan, walked by ``verify``: kept; damage there
        is only reported."""
        self.segments.append(SegmentPlan(base, Action.KEEP))
        if scan.stop is not None:
            self.note(base, scan.stop.position, CORRUPT, _unrepaired(scan.stop.message))
        elif nxt is not None and not self.follows(base, scan.next_offset, nxt):
            self.note(base, None, CORRUPT, _unrepaired(
                f"offsets end at {scan.next_offset}, but the next segment starts at {nxt}"
            ))

    def rescanned(self, logs: list[int], i: int, scan: SegmentScan) -> bool:
        """Plan a rescanned segment; False when the plan ends here (a cut or an error)."""
        base, synced = logs[i], self.synced
        nxt = logs[i + 1] if i + 1 < len(logs) else None
        if scan.stop is not None:
            stop = scan.stop
            if scan.next_offset < synced:
                self.segments.append(SegmentPlan(base, Action.KEEP, None, stop.message))
                self.refuse(base, stop.position, (
                    f"{stop.message} at position {stop.position} (offsets up to "
                    f"{synced - 1} were synced before the crash, and this batch holds "
                    f"offset {scan.next_offset}, so it is not repaired automatically; run "
                    f"`logstore verify` and restore from a copy, or delete the partition's "
                    f"checkpoint file to accept the loss)"
                ))
                return False
            self.segments.append(SegmentPlan(base, Action.CUT, scan.end, stop.message))
            self.note(base, stop.position, REPAIR, (
                f"{stop.message}: cut at position {scan.end} on open, dropping "
                f"{scan.size - scan.end} bytes (offsets from {scan.next_offset})"
            ))
            self.delete_after(logs, i)
            return False
        self.segments.append(SegmentPlan(base, Action.REBUILD))
        if nxt is None:
            return True
        end = nxt if base in self.gaps and scan.next_offset <= nxt else scan.next_offset
        if end < synced:
            self.refuse(base, scan.size, (
                f"the segment ends at offset {scan.next_offset} (position {scan.size}), but "
                f"offsets up to {synced - 1} were synced: {_RESTORE}"
            ))
            return False
        if not self.follows(base, scan.next_offset, nxt):
            self.note(nxt, None, REPAIR, (
                f"offsets jump from {scan.next_offset} to this segment's base {nxt}: "
                f"deleted on open (it follows lost data)"
            ))
            self.segments.append(SegmentPlan(nxt, Action.DELETE))
            self.delete_after(logs, i + 1)
            return False
        return True


def plan_recovery(
    directory: str,
    listing: Listing,
    cp: Checkpoint | None,
    synced: int,
    scans: Mapping[int, SegmentScan],
) -> RecoveryPlan:
    """The plan for opening the partition in ``directory`` alone.

    Args:
        listing: what the directory holds.
        cp: its checkpoint (None: missing or damaged).
        synced: the recovery point (:func:`~logstore.storage.recovery.synced_recovery_point`).
        scans: what a CRC-checked walk of each segment found, by base offset: at least
            every rescanned segment up to the first that stops early (the open walks
            those); ``verify`` passes every segment.
    """
    p = _Planner(directory, synced, listing.gaps)
    p.findings += _cleanup_findings(directory, listing, cp)
    start = log_start(listing, cp)
    logs = live_segments(listing, cp)
    for base in listing.logs[: len(listing.logs) - len(logs)]:
        p.segments.append(SegmentPlan(base, Action.DELETE))
        p.note(base, None, REPAIR, f"wholly below the log start offset {start}: deleted on open")
    first = rescan_start(logs, cp is not None and cp.clean, synced)
    for i, base in enumerate(logs[:first]):  # trusted: kept; damage only reported
        if base in scans:
            p.trusted(base, scans[base], logs[i + 1] if i + 1 < len(logs) else None)
        else:  # not walked (the open): nothing to report
            p.segments.append(SegmentPlan(base, Action.KEEP))
    for i in range(first, len(logs)):
        if not p.rescanned(logs, i, scans[logs[i]]):
            break
    else:
        last = scans[logs[-1]] if logs and logs[-1] in scans else None
        if last is not None and last.stop is None and last.next_offset < synced:
            p.refuse(logs[-1], last.size, (
                f"the log ends at offset {last.next_offset} (position {last.size}), but the "
                f"checkpoint says offsets up to {synced - 1} were synced: {_RESTORE}"
            ))
    planned = {s.base_offset for s in p.segments}
    p.segments += [SegmentPlan(b, Action.KEEP) for b in logs if b not in planned]  # refused
    rescanned = frozenset(logs[first:])
    stale = _stale_snapshots(p, listing, start, scans, rescanned) if p.error is None else []
    return RecoveryPlan(
        tuple(listing.leftovers) + tuple(listing.orphans) + tuple(stale),
        tuple(p.segments),
        start,
        synced,
        p.error,
        tuple(p.findings),
    )


def _stale_snapshots(
    p: _Planner,
    listing: Listing,
    start: int,
    scans: Mapping[int, SegmentScan],
    rescanned: frozenset[int],
) -> list[str]:
    """The names of the producer snapshots the open removes (with a finding each): below
    the first segment that stays, or past the log end where the open knows it (its last
    segment is rescanned)."""
    if not listing.snapshots:
        return []
    kept = [s.base_offset for s in p.segments if s.action is not Action.DELETE]
    first = kept[0] if kept else start
    end: int | None = start  # no segment stays: the open starts an empty one at the start
    if kept:
        end = scans[kept[-1]].next_offset if kept[-1] in rescanned else None
    names = []
    for offset in listing.snapshots:
        path = snapshot_path(p.directory, offset)
        if offset < first:
            why = f"below offset {first}, where the first segment starts (its segments are gone)"
        elif end is not None and offset > end:
            why = f"past the log end {end} (the offsets it covers were lost)"
        else:
            continue
        names.append(os.path.basename(path))
        p.findings.append(Finding(path, None, REPAIR, f"producer snapshot {why}: removed on open"))
    return names


def _cleanup_findings(directory: str, listing: Listing, cp: Checkpoint | None) -> list[Finding]:
    """Leftovers and orphans (removed on open), and a missing checkpoint."""
    found = [
        Finding(os.path.join(directory, n), None, REPAIR, "leftover temp file: removed on open")
        for n in listing.leftovers
    ]
    found += [
        Finding(os.path.join(directory, n), None, REPAIR, "index without a .log: removed on open")
        for n in listing.orphans
    ]
    if cp is None and listing.logs:
        found.append(Finding(
            os.path.join(directory, CHECKPOINT_NAME), None, REPAIR,
            "checkpoint missing or damaged: the next open rescans every segment",
        ))
    return found


def _unrepaired(problem: str) -> str:
    return (
        f"{problem}: not repaired (these records were synced before the crash, or the log "
        f"was closed cleanly); opening or reading there raises CorruptRecordError; restore "
        f"it from a copy"
    )
