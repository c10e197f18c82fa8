"""Read-only inspection of a partition's files: what ``kafka-dump-log`` shows, and what
recovery would do on the next open (``logstore inspect`` and ``logstore verify``).

Nothing here writes, takes a lock or trusts an index: batches are found by walking every
``.log`` from position 0 with the one batch walker
(:func:`~logstore.storage.batches.walk_batches`, every CRC checked), and what the next
open would do is the recovery plan built from those walks
(:func:`~logstore.storage.plan.plan_recovery`, the function the open itself runs): this
module states no recovery rule of its own. It adds what only a full walk can show:
damage in segments the open trusts (reads there raise ``CorruptRecordError``), indexes
that do not match their log (rebuilt when next used) and damaged producer snapshots
(skipped when the producer state is next loaded).

:func:`walk_log` is the documented reader ``logstore inspect`` dumps batches with.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

from logstore.errors import CorruptionError, CorruptRecordError
from logstore.records import crc_valid, decode_batch_records
from logstore.storage.batches import walk_batches
from logstore.storage.checkpoint import Checkpoint, read_checkpoint
from logstore.storage.files import FileSystem
from logstore.storage.index import OFFSET_ENTRY, TIME_ENTRY
from logstore.storage.listing import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    STAGED_SUFFIX,
    TIME_INDEX_SUFFIX,
    read_listing,
    segment_path,
    snapshot_path,
    swap_path,
)
from logstore.storage.plan import (
    CORRUPT,
    REPAIR,
    Action,
    Finding,
    RecoveryPlan,
    live_segments,
    plan_recovery,
)
from logstore.storage.producers import read_snapshot
from logstore.storage.recovery import synced_recovery_point
from logstore.storage.segment import SegmentScan
from logstore.storage.swap import pending_view
from logstore.types import BatchHeader, Record


class BatchInfo(NamedTuple):
    """One batch of a ``.log`` walk; ``problem`` is set on the entry where the walk stops
    or on a batch whose CRC fails."""

    position: int
    header: BatchHeader | None
    crc_ok: bool
    problem: str | None
    records: list[Record] | None = None  # with ``with_records`` (None if undecodable)


class SegmentReport(NamedTuple):
    base_offset: int
    next_offset: int
    size: int
    batches: int
    records: int


class PartitionReport(NamedTuple):
    directory: str
    checkpoint: Checkpoint | None
    segments: list[SegmentReport]
    findings: list[Finding]
    plan: RecoveryPlan | None = None
    """The recovery plan the next open would carry out."""

    @property
    def records(self) -> int:
        return sum(s.records for s in self.segments)

    @property
    def ok(self) -> bool:
        return not self.findings


def walk_log(fs: FileSystem, path: str, *, with_records: bool = False) -> Iterator[BatchInfo]:
    """Every batch of the ``.log`` at ``path`` in file order, CRCs checked.

    A batch whose CRC fails is yielded with ``crc_ok`` False and the walk goes on (its
    length field is what a reader would follow). The walk stops, yielding a last entry
    with ``header`` None and a ``problem``, at an unreadable header, a length past the
    end of the file, or an incomplete tail.
    """
    with fs.open(path, writable=False) as handle:
        walk = walk_batches(handle, verify=False)
        for header in walk:
            body = handle.pread(header.size, header.position)
            ok = crc_valid(body, header._replace(position=0))
            problem = None if ok else "CRC mismatch"
            records = None
            if with_records:
                try:
                    records = decode_batch_records(body, header._replace(position=0), verify=False)
                except CorruptRecordError as err:
                    problem = problem or str(err)
            yield BatchInfo(header.position, header, ok, problem, records)
        if walk.stop is not None:
            stop = walk.stop
            yield BatchInfo(
                stop.position, None, False,
                f"{stop.message} ({handle.size - stop.position} bytes from here)",
            )


def read_offset_index(fs: FileSystem, path: str, base_offset: int) -> list[tuple[int, int]]:
    """``(offset, position)`` entries of a ``.index`` (absolute offsets); a trailing
    partial entry is ignored."""
    data = fs.read_file(path)
    whole = len(data) - len(data) % OFFSET_ENTRY.size
    return [(base_offset + rel, pos) for rel, pos in OFFSET_ENTRY.iter_unpack(data[:whole])]


def read_time_index(fs: FileSystem, path: str, base_offset: int) -> list[tuple[int, int]]:
    """``(timestamp, offset)`` entries of a ``.timeindex`` (absolute offsets)."""
    data = fs.read_file(path)
    whole = len(data) - len(data) % TIME_ENTRY.size
    return [(ts, base_offset + rel) for ts, rel in TIME_ENTRY.iter_unpack(data[:whole])]


def _check_indexes(
    fs: FileSystem, directory: str, base: int, batches: list[BatchHeader], size: int,
    sealed: bool,
) -> str | None:
    """Why the segment's indexes do not match its (good) batches, or None."""
    index_path = segment_path(directory, base, INDEX_SUFFIX)
    time_path = segment_path(directory, base, TIME_INDEX_SUFFIX)
    if not (fs.exists(index_path) and fs.exists(time_path)):
        return "index files are missing" if size else None
    if fs.size(index_path) % OFFSET_ENTRY.size:
        return f"{index_path} has a partial entry"
    if fs.size(time_path) % TIME_ENTRY.size:
        return f"{time_path} has a partial entry"
    starts = {h.position: h for h in batches}
    previous = -1
    for offset, position in read_offset_index(fs, index_path, base):
        header = starts.get(position)
        if header is None or header.last_offset != offset or offset <= previous:
            return f"{index_path}: entry ({offset}, {position}) does not match the log"
        previous = offset
    running = -1
    largest: dict[int, int] = {}  # batch last offset -> largest timestamp so far
    for h in batches:
        running = max(running, h.max_timestamp)
        largest[h.last_offset] = running
    last_ts = -1
    for ts, offset in read_time_index(fs, time_path, base):
        if ts < last_ts or offset not in largest or ts > largest[offset]:
            return f"{time_path}: entry ({ts}, {offset}) does not match the log"
        last_ts = ts
    if sealed and batches and not fs.size(time_path):
        return f"{time_path} is empty (sealing a segment always indexes its largest timestamp)"
    return None


def verify_partition(fs: FileSystem, directory: str) -> PartitionReport:
    """Check every batch, index and the checkpoint of one partition directory, and say
    what the next open would repair and what it could not (its recovery plan)."""
    listing = read_listing(fs.listdir(directory))
    pending, staged = listing.swaps, frozenset[int]()
    if pending:  # checked as the next open will see it: with the swaps finished
        listing, staged = pending_view(fs, directory, listing)
    cp = read_checkpoint(fs, directory)
    synced = synced_recovery_point(fs, directory, cp)
    scans: dict[int, SegmentScan] = {}
    reports: list[SegmentReport] = []
    good: dict[int, list[BatchHeader]] = {}
    for base in live_segments(listing, cp):
        path = segment_path(directory, base, LOG_SUFFIX + (STAGED_SUFFIX * (base in staged)))
        with fs.open(path, writable=False) as handle:
            walk = walk_batches(handle, expected=base, gaps=base in listing.gaps)
            good[base] = list(walk)
            end = base if walk.next_offset is None else walk.next_offset
            scans[base] = SegmentScan(handle.size, walk.end, end, walk.stop)
        records = sum(h.records_count for h in good[base])
        reports.append(SegmentReport(base, end, scans[base].size, len(good[base]), records))
    plan = plan_recovery(directory, listing, cp, synced, scans)
    findings = list(plan.findings)
    last = reports[-1].base_offset if reports else None
    for step in plan.segments:
        if step.action not in (Action.KEEP, Action.REBUILD):
            continue
        base = step.base_offset
        if base in staged:
            continue  # its indexes are still under their .cleaned names
        why = _check_indexes(fs, directory, base, good[base], scans[base].size,
                             sealed=base != last)
        if why is not None:
            findings.append(Finding(segment_path(directory, base, LOG_SUFFIX), None, REPAIR,
                                    f"{why}: the indexes are rebuilt from the log when used"))
    findings += _snapshot_findings(fs, directory, listing.snapshots, set(plan.remove))
    findings += [
        Finding(swap_path(directory, base), None, REPAIR,
                "a log cleaner swap was committed but not finished: the next open "
                "finishes it")
        for base in pending
    ]
    return PartitionReport(directory, cp, reports, findings, plan)


def _snapshot_findings(
    fs: FileSystem, directory: str, offsets: tuple[int, ...], removed: set[str]
) -> list[Finding]:
    """The damaged producer snapshots among those the open keeps."""
    found = []
    for offset in offsets:
        path = snapshot_path(directory, offset)
        if os.path.basename(path) in removed:
            continue
        try:
            read_snapshot(fs, directory, offset)
        except CorruptionError as err:
            found.append(Finding(path, None, REPAIR, (
                f"damaged producer snapshot ({err}): skipped, and removed, when the "
                f"producer state is next loaded (it is rebuilt from an older snapshot "
                f"and the log)"
            )))
    return found


__all__ = [
    "CORRUPT",
    "REPAIR",
    "BatchInfo",
    "Finding",
    "PartitionReport",
    "SegmentReport",
    "read_offset_index",
    "read_time_index",
    "verify_partition",
    "walk_log",
]
