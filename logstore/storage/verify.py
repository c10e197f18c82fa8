"""Read-only inspection of a partition's files: what ``kafka-dump-log`` shows, and what
recovery would do on the next open (``logstore inspect`` and ``logstore verify``).

Nothing here writes, takes a lock or trusts an index: batches are found by walking the
``.log`` from position 0 with every CRC checked, and the indexes and the checkpoint are
compared with that walk. The rules mirror :mod:`logstore.storage.log` (recovery on open):

* an index that does not match its log is rebuilt when it is next used (derived data);
* damage in a segment the next open rescans (no clean shutdown, from the segment holding
  the recovery point on) is cut off there, and later segments are deleted;
* damage anywhere else is never repaired: reads raise ``CorruptRecordError``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

from logstore.errors import CorruptRecordError
from logstore.records import HEADER_SIZE, crc_valid, decode_batch_records, decode_header
from logstore.storage.checkpoint import CHECKPOINT_NAME, Checkpoint, read_checkpoint
from logstore.storage.files import FileHandle, FileSystem
from logstore.storage.index import OFFSET_ENTRY, TIME_ENTRY
from logstore.storage.log import is_leftover, synced_recovery_point
from logstore.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    parse_segment_name,
    segment_path,
)
from logstore.types import BatchHeader, Record

_CHUNK = 1 << 20

REPAIR = "repair"
"""A finding the next open repairs by itself (index rebuild, tail cut, leftover removal)."""
CORRUPT = "corrupt"
"""A finding no open repairs: reading there raises ``CorruptRecordError``."""


class BatchInfo(NamedTuple):
    """One batch of a ``.log`` walk; ``problem`` is set on the entry where the walk stops
    or on a batch whose CRC fails."""

    position: int
    header: BatchHeader | None
    crc_ok: bool
    problem: str | None
    records: list[Record] | None = None  # with ``with_records`` (None if undecodable)


class Finding(NamedTuple):
    path: str
    position: int | None
    kind: str  # REPAIR or CORRUPT
    message: str


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
        yield from _walk(handle, with_records)


def _walk(handle: FileHandle, with_records: bool) -> Iterator[BatchInfo]:
    size = handle.size
    position = 0
    while position < size:
        head = handle.pread(HEADER_SIZE, position)
        try:
            header = decode_header(head, 0)
        except CorruptRecordError as err:
            yield BatchInfo(position, None, False, f"{err} ({size - position} bytes from here)")
            return
        if header is None or position + header.size > size:
            yield BatchInfo(
                position, None, False,
                f"incomplete record batch ({size - position} bytes at the end)",
            )
            return
        body = handle.pread(header.size, position)
        ok = crc_valid(body, header._replace(position=0))
        problem = None if ok else "CRC mismatch"
        records = None
        if with_records:
            try:
                records = decode_batch_records(body, header._replace(position=0), verify=False)
            except CorruptRecordError as err:
                problem = problem or str(err)
        yield BatchInfo(position, header._replace(position=position), ok, problem, records)
        position += header.size


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
    what the next open would repair and what it could not."""
    findings: list[Finding] = []
    logs: list[int] = []
    others: dict[int, list[str]] = {}
    for name in fs.listdir(directory):
        path = os.path.join(directory, name)
        if is_leftover(name):
            findings.append(Finding(path, None, REPAIR, "leftover temp file: removed on open"))
            continue
        parsed = parse_segment_name(name)
        if parsed is None:
            continue
        if parsed[1] == LOG_SUFFIX:
            logs.append(parsed[0])
        else:
            others.setdefault(parsed[0], []).append(name)
    logs.sort()
    for base, names in sorted(others.items()):
        if base not in logs:
            for name in names:
                findings.append(Finding(os.path.join(directory, name), None, REPAIR,
                                        "index without a .log: removed on open"))
    cp = read_checkpoint(fs, directory)
    if cp is None and logs:
        findings.append(Finding(
            os.path.join(directory, CHECKPOINT_NAME), None, REPAIR,
            "checkpoint missing or damaged: the next open rescans every segment",
        ))
    start = cp.log_start_offset if cp else (logs[0] if logs else 0)
    while len(logs) > 1 and logs[1] <= start:
        findings.append(Finding(segment_path(directory, logs[0], LOG_SUFFIX), None, REPAIR,
                                f"wholly below the log start offset {start}: deleted on open"))
        logs.pop(0)
    synced = synced_recovery_point(fs, directory, cp)  # below it nothing is ever cut
    rescan_from = 0  # index into logs of the first segment the next open rescans
    if cp is not None:
        if cp.clean:
            rescan_from = len(logs)
        else:
            rescan_from = max(0, sum(1 for b in logs if b <= synced) - 1)
    reports: list[SegmentReport] = []
    expected = logs[0] if logs else 0
    for i, base in enumerate(logs):
        path = segment_path(directory, base, LOG_SUFFIX)
        repairs = i >= rescan_from
        if base != expected and i > 0:
            # decided while rescanning the segment before, which must not end below the
            # recovery point
            repairs = i - 1 >= rescan_from and expected >= synced
            findings.append(_damage(
                path, None, repairs,
                f"offsets jump from {expected} to this segment's base {base}",
                "deleted on open (it follows lost data)",
            ))
            if repairs:
                for later in logs[i + 1:]:
                    findings.append(Finding(segment_path(directory, later, LOG_SUFFIX), None,
                                            REPAIR, "deleted on open (it follows lost data)"))
                break
        good: list[BatchHeader] = []
        next_offset = base
        size = fs.size(path)
        stop: tuple[int, str] | None = None
        for info in walk_log(fs, path):
            h = info.header
            if h is None or not info.crc_ok:
                stop = (info.position, info.problem or "unreadable")
                break
            if h.base_offset != next_offset:
                stop = (info.position, f"batch offsets start at {h.base_offset}, expected "
                                       f"{next_offset}")
                break
            good.append(h)
            next_offset = h.next_offset
        records = sum(h.records_count for h in good)
        reports.append(SegmentReport(base, next_offset, size, len(good), records))
        if stop is not None:
            position, problem = stop
            if repairs and next_offset < synced:
                repairs = False  # the cut would lose records known to be synced: refused
            findings.append(_damage(
                path, position, repairs, problem,
                f"cut at position {position} on open, dropping {size - position} bytes "
                f"(offsets from {next_offset})",
            ))
            if repairs:
                for later in logs[i + 1:]:
                    findings.append(Finding(segment_path(directory, later, LOG_SUFFIX), None,
                                            REPAIR, "deleted on open (it follows lost data)"))
                break
        why = _check_indexes(fs, directory, base, good, size, sealed=i < len(logs) - 1)
        if why is not None:
            findings.append(Finding(path, None, REPAIR,
                                    f"{why}: the indexes are rebuilt from the log when used"))
        expected = next_offset
    if (
        cp is not None and logs and reports and len(reports) == len(logs)
        and reports[-1].next_offset < synced
        and not any(f.position is not None for f in findings)
    ):
        path = segment_path(directory, logs[-1], LOG_SUFFIX)
        findings.append(Finding(
            path, reports[-1].size, CORRUPT,
            f"the log ends at offset {reports[-1].next_offset}, but the checkpoint and head "
            f"say offsets up to {synced - 1} were synced: records are missing; "
            f"opening raises CorruptRecordError (restore from a copy, or delete the "
            f"checkpoint to accept the loss)",
        ))
    return PartitionReport(directory, cp, reports, findings)


def _damage(path: str, position: int | None, repairs: bool, problem: str, action: str
            ) -> Finding:
    if repairs:
        return Finding(path, position, REPAIR, f"{problem}: {action}")
    return Finding(
        path, position, CORRUPT,
        f"{problem}: not repaired (these records were synced before the crash, or the log "
        f"was closed cleanly); opening or reading there raises CorruptRecordError; restore "
        f"it from a copy",
    )


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
