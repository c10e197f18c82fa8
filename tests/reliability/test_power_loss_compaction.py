"""Simulated power loss during log compaction (issue 15): the crash-state explorer of
``test_power_loss.py`` (:mod:`tests.reliability.crashfs`) over the cleaner's swap.

Each workload builds a compacted topic with the real file system (tiny segments, so many
sealed ones; keys that repeat; tombstones, some older than ``delete_retention_ms`` when
the cleaner runs and some younger), closes it (the synced baseline), then runs cleaner
passes under :class:`~tests.reliability.crashfs.RecordingFS`, noting each operation
before it starts and acking it when it returns:

* ``c1-compact``: one forced pass, then a clean close;
* ``c2-interleaved``: flush="always" appends before, during (after each cleaned group is
  written, before it is swapped in) and after a pass; no clean close;
* ``c3-twice``: a pass, appends, the clock past the retention of the tombstones the first
  pass kept, and a second pass that merges the first one's cleaned segments.

Every distinct crash state (capped at :data:`STATE_BUDGET`, a seeded sample) is opened
with the real file system and checked against the ledger of what had been acknowledged:

* C1 the partition opens (recovery finishes a committed swap) and ``verify`` finds
  nothing wrong after the open;
* C2 reading from the log start (0) gives strictly increasing offsets, and folding the
  records into a table (later overrides, a tombstone deletes) gives the table of every
  record written below the log end: the latest value per key (a tombstone may be there
  or not, and a crash before a swap leaves the old records, which is correct);
* C3 no phantom: every record read is the one the workload wrote at that offset;
* C4 nothing acknowledged is lost: the log end is past every acked record, and the latest
  acked write of every key is there (unless it is a tombstone a pass begun before the
  crash was allowed to drop);
* C5 no staged ``.cleaned`` file or ``.swap`` descriptor is left after the open, and an
  append then a reopen work (the reopen reads the same records plus the append).

Planted bugs in the swap order (the replaced segments deleted before the swap descriptor
is written; the descriptor written before the ``.cleaned`` files are fsynced) must be
caught. Figures go to the ``reliability_report`` fixture.

Found by this explorer and fixed: a committed swap whose ``.log`` rename reached the disk
while an index rename did not was finished by recovery without the index renames (the
cleaned ``.log`` kept the replaced segment's indexes); reduced in
``test_swap_finished_after_its_log_rename_keeps_the_cleaned_indexes``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import logstore
from logstore.errors import LogstoreError
from logstore.storage.compaction import CompactionStats, clean_group
from logstore.storage.files import DEFAULT_FS, FileSystem
from logstore.storage.listing import SUFFIXES, parse_swap_name, read_listing, segment_path
from logstore.storage.log import PartitionLog
from logstore.storage.swap import Swap, commit_swap
from logstore.storage.verify import verify_partition
from tests.conftest import FakeClock
from tests.reliability import test_power_loss as power_loss
from tests.reliability.crashfs import (
    CrashModel,
    CrashState,
    RecordingFS,
    live_entries,
)
from tests.reliability.limits import time_limit
from tests.reliability.test_power_loss import (
    BEFORE,
    OPEN_TIMEOUT_S,
    SEED,
    T0,
    Outcome,
    make_value,
    quiet_logstore,
    summary,
)

TOPIC = "c"
DIR = f"{TOPIC}-0"
RETENTION_MS = 60_000
"""The topic's ``delete_retention_ms``."""
KEYS = [b"k%d" % i for i in range(7)]
AFTER = (b"after", b"after")
COMPACTING = "logstore.storage.compacting"
"""Where the log runs the cleaner from (the planted bugs replace its functions there)."""


# --------------------------------------------------------------------------- ledger


@dataclass
class Write:
    offset: int
    key: bytes
    value: bytes | None  # None: a tombstone
    timestamp: int
    attempt: int  # trace position of the note before the append
    durable: int  # of the ack (flush "always": durable once acked)


@dataclass
class Run:
    """A cleaner pass: tombstones stamped at or below ``horizon`` may go from then on."""

    attempt: int
    acked: int
    horizon: int


@dataclass
class Ledger:
    writes: list[Write] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)


class Driver:
    """Runs the steps of a workload, noting and acking each in the trace (``rec`` None:
    the setup, durable by construction)."""

    def __init__(self, ledger: Ledger, clock: FakeClock, rec: RecordingFS | None) -> None:
        self.ledger = ledger
        self.clock = clock
        self.rec = rec

    def _mark(self, kind: str, label: str, info: object) -> int:
        if self.rec is None:
            return BEFORE
        position = self.rec.position
        getattr(self.rec, kind)(label, info)
        return position

    def put(self, store: logstore.Store, key: bytes, *, tombstone: bool = False,
            size: int = 48) -> None:
        offset = len(self.ledger.writes)
        value = None if tombstone else make_value(TOPIC, 0, offset, size)
        attempt = self._mark("note", "append", (offset, key, tombstone))
        md = store.append(TOPIC, value, key=key, partition=0, timestamp=self.clock.now)
        assert md.offset == offset, (md, offset)
        acked = self._mark("ack", "append", offset)
        self.ledger.writes.append(Write(offset, key, value, self.clock.now, attempt, acked))

    def compact(self, store: logstore.Store) -> CompactionStats:
        horizon = self.clock.now - RETENTION_MS
        attempt = self._mark("note", "compact", horizon)
        stats = store.topic(TOPIC).partition(0).compact(force=True)
        acked = self._mark("ack", "compact", stats)
        self.ledger.runs.append(Run(attempt, acked, horizon))
        assert stats is not None and stats.records_out < stats.records_in, stats
        return stats

    def close(self, store: logstore.Store) -> None:
        self._mark("note", "close", None)
        store.close()
        self._mark("ack", "close", None)

    def crash(self, store: logstore.Store) -> None:
        """End as a killed process would: no clean close."""
        store.partition(TOPIC, 0)._abandon()
        store.close()


# --------------------------------------------------------------------------- workloads


@dataclass
class Prepared:
    rec: RecordingFS
    ledger: Ledger
    notes: dict[str, Any] = field(default_factory=dict)


def setup(root: str, clock: FakeClock) -> Ledger:
    """The baseline, built with the real file system and closed: about 40 writes of 7 keys
    in segments of two or three records, the first half stamped long before the rest
    (their tombstones are past ``delete_retention_ms`` when the cleaner runs)."""
    ledger = Ledger()
    rng = random.Random(SEED)
    with logstore.open(root, clock=clock) as store:
        store.create_topic(
            TOPIC, 1, cleanup_policy="compact", segment_bytes=300, index_interval_bytes=100,
            flush="always", delete_retention_ms=RETENTION_MS,
        )
        d = Driver(ledger, clock, None)
        for phase in range(2):
            if phase:
                clock.advance(RETENTION_MS + 1_000)
            for i in range(20):
                clock.advance(10)
                key = rng.choice(KEYS)
                d.put(store, key, tombstone=i % 5 == 3, size=rng.randrange(30, 70))
                if i == 7:  # a key deleted long ago, one deleted lately
                    d.put(store, b"gone" if phase == 0 else b"late", tombstone=phase == 1)
                if i == 12 and phase == 0:
                    d.put(store, b"gone", tombstone=True)
        d.put(store, b"k0", tombstone=True)  # k0's latest write: a tombstone kept by a pass
    return ledger


def c1_compact(root: str, clock: FakeClock) -> Prepared:
    ledger = setup(root, clock)
    rec = RecordingFS(root)
    d = Driver(ledger, clock, rec)
    store = logstore.open(root, fs=rec, clock=clock)
    stats = d.compact(store)
    d.close(store)
    return Prepared(rec, ledger, {"stats": stats})


def c2_interleaved(root: str, clock: FakeClock) -> Prepared:
    ledger = setup(root, clock)
    rec = RecordingFS(root)
    d = Driver(ledger, clock, rec)
    store = logstore.open(root, fs=rec, clock=clock)
    d.put(store, b"k1")
    d.put(store, b"k2", tombstone=True)
    during = iter([(b"k3", False), (b"k1", True), (b"k4", False), (b"k5", False)] * 4)
    groups = []

    def clean_group_then_append(*args: Any, **kwargs: Any) -> Any:
        result = clean_group(*args, **kwargs)  # written and fsynced, not swapped in yet
        groups.append(result[1])
        key, tombstone = next(during)
        clock.advance(5)
        d.put(store, key, tombstone=tombstone, size=120)  # rolls now and then
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(f"{COMPACTING}.clean_group", clean_group_then_append)
        stats = d.compact(store)
    assert len(groups) >= 3, groups
    d.put(store, b"k6")
    d.put(store, b"k3", tombstone=True)
    d.crash(store)
    return Prepared(rec, ledger, {"stats": stats, "groups": groups})


def c3_twice(root: str, clock: FakeClock) -> Prepared:
    ledger = setup(root, clock)
    rec = RecordingFS(root)
    d = Driver(ledger, clock, rec)
    store = logstore.open(root, fs=rec, clock=clock)
    first = d.compact(store)
    directory = os.path.join(root, DIR)
    cleaned = read_listing(os.listdir(directory)).gaps
    clock.advance(RETENTION_MS + 1_000)  # the tombstones the first pass kept may go now
    for key in (b"k1", b"k2", b"k3", b"k1", b"k4", b"k2"):
        clock.advance(10)
        d.put(store, key, size=60)
    store.partition(TOPIC, 0).roll()
    second = d.compact(store)
    after = read_listing(os.listdir(directory))
    merged = cleaned - set(after.logs)
    assert second.segments_out < second.segments_in and merged, (first, second, after)
    d.close(store)
    return Prepared(rec, ledger, {"stats": (first, second), "merged": sorted(merged)})


WORKLOADS: dict[str, Callable[[str, FakeClock], Prepared]] = {
    "c1-compact": c1_compact,
    "c2-interleaved": c2_interleaved,
    "c3-twice": c3_twice,
}


# --------------------------------------------------------------------------- checking


Row = tuple[int, bytes | None, bytes | None]


def read_all(plog: PartitionLog) -> tuple[int, int, list[Row]]:
    """(log start, log end, every record from the log start on), read in fetches."""
    start, end = plog.log_start_offset, plog.log_end_offset
    rows: list[Row] = []
    offset = start
    while offset < end:
        batch = plog.read_records(offset)
        if not batch:
            break  # the rest is gaps (records the cleaner removed)
        rows += [(r.offset, r.key, r.value) for r in batch]
        offset = batch[-1].offset + 1
    return start, end, rows


def fold(rows: list[Row]) -> dict[bytes | None, bytes]:
    table: dict[bytes | None, bytes] = {}
    for _, key, value in rows:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def check_log(
    start: int, end: int, rows: list[Row], ledger: Ledger, state: CrashState
) -> list[str]:
    """C2-C4 on what the recovered log holds. A state seen at several crash points must
    satisfy each: the acks up to its last one, the attempts up to its first one."""
    writes = ledger.writes
    problems = []
    offsets = [o for o, _, _ in rows]
    if start != 0 or any(b <= a for a, b in itertools.pairwise(offsets)):
        problems.append(f"C2: log start {start}, offsets not increasing: {offsets}")
    attempted = sum(1 for w in writes if w.attempt < state.first)
    if end > attempted:
        problems.append(f"C3: log end {end} but only {attempted} records attempted")
    for offset, key, value in rows:
        if not start <= offset < min(end, len(writes)):
            problems.append(f"C3: phantom record at offset {offset} (log end {end})")
        elif (key, value) != (writes[offset].key, writes[offset].value):
            problems.append(f"C3: record at {offset} is not the one written there")
    if problems:
        return problems
    want = fold([(w.offset, w.key, w.value) for w in writes[:end]])
    got = fold(rows)
    if got != want:
        wrong = sorted((k for k in set(want) | set(got) if want.get(k) != got.get(k)), key=repr)
        problems.append(f"C2: the table differs from the writes below {end} for {wrong}")
    lost = [w.offset for w in writes if w.durable < state.last and w.offset >= end]
    if lost:
        problems.append(f"C4: acked records {lost} lost (log end {end})")
    horizon = max((r.horizon for r in ledger.runs if r.attempt < state.first), default=-1)
    latest: dict[bytes, Write] = {}
    for w in writes:
        if w.durable < state.last:
            latest[w.key] = w
    present = set(offsets)
    for w in latest.values():
        droppable = w.value is None and w.timestamp <= horizon
        if w.offset not in present and not droppable:
            problems.append(
                f"C4: key {w.key!r}: its latest acked write (offset {w.offset}"
                f"{', a tombstone' if w.value is None else ''}) is gone"
            )
    return problems


def check_lookups(plog: PartitionLog, start: int, end: int, rows: list[Row]) -> list[str]:
    """C2: a read from any offset (one in a gap too: a consumer's committed position)
    returns the first record the whole read holds from there on (index lookups agree
    with the scan)."""
    following = iter(rows)
    row = next(following, None)
    for offset in range(start, end):
        while row is not None and row[0] < offset:
            row = next(following, None)
        got = plog.read_records(offset, 1)
        found = (got[0].offset, got[0].key, got[0].value) if got else None
        if found != row:
            return [
                f"C2: a read from offset {offset} returns "
                f"{found and found[0]}, the whole read has {row and row[0]} there"
            ]
    return []


def staged_leftovers(directory: str) -> list[str]:
    return sorted(
        n for n in os.listdir(directory)
        if n.endswith((".cleaned", ".swap")) or n.endswith(".swap.tmp")
    )


def check_state(directory: str, ledger: Ledger, state: CrashState) -> list[str]:
    clock = FakeClock(T0 + 10**9)
    pdir = os.path.join(directory, DIR)
    store = None
    try:
        with time_limit(OPEN_TIMEOUT_S):
            store = logstore.open(directory, clock=clock)
            plog = store.partition(TOPIC, 0)
    except Exception as err:
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()
        return [f"C1: open failed: {type(err).__name__}: {err}"]
    problems: list[str] = []
    step = "C1: verify after the open"
    try:
        with time_limit(OPEN_TIMEOUT_S):
            problems += [
                f"{step}: {f.kind} {os.path.basename(f.path)}: {f.message}"
                for f in verify_partition(DEFAULT_FS, pdir).findings
            ]
            left = staged_leftovers(pdir)
            if left:
                problems.append(f"C5: left after the open: {left}")
            step = "C2: reading the log"
            start, end, rows = read_all(plog)
            problems += check_log(start, end, rows, ledger, state)
            step = "C2: reading from each offset"
            problems += check_lookups(plog, start, end, rows)
            step = "C5: an append after the open"
            md = store.append(TOPIC, AFTER[1], key=AFTER[0], partition=0)
            if md.offset != end:
                problems.append(f"{step} got offset {md.offset}")
            store.close()
            step = "C5: the reopen"
            with logstore.open(directory, clock=clock) as again:
                want = (start, end + 1, [*rows, (end, *AFTER)])
                if read_all(again.partition(TOPIC, 0)) != want:
                    problems.append(f"{step} reads something else")
    except Exception as err:
        problems.append(f"{step}: {type(err).__name__}: {err}")
    finally:
        with contextlib.suppress(Exception):
            store.close()
    return problems


def explore(
    name: str, rec: RecordingFS, ledger: Ledger, scratch: str, *, stop_at_first: bool = False
) -> Outcome:
    """``test_power_loss``'s explorer with this file's checks (C1-C5)."""
    return power_loss.explore(
        name, rec, ledger, scratch, stop_at_first=stop_at_first, check=check_state
    )


# --------------------------------------------------------------------------- tests


def prepare(name: str, scratch: str) -> Prepared:
    root = os.path.join(scratch, f"{name}-live")
    with quiet_logstore():
        prepared = WORKLOADS[name](root, FakeClock(T0))
    model = CrashModel(prepared.rec.baseline, prepared.rec.trace)
    assert model.final() == live_entries(root), "RecordingFS missed an operation"
    return prepared


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_power_loss_compaction(
    name: str, scratch: str, reliability_report: Callable[[str], None]
) -> None:
    prepared = prepare(name, scratch)
    outcome = explore(f"compaction {name}", prepared.rec, prepared.ledger, scratch)
    reliability_report(summary(outcome))
    assert not outcome.violations, "\n".join(outcome.violations[:10])


# --------------------------------------------------------------------------- planted bug


def delete_before_commit(mp: pytest.MonkeyPatch) -> None:
    """The replaced segments deleted (and the directory fsynced) before the ``.swap``
    descriptor is written: a crash between the two loses their records, the cleaned
    segment being still staged (a leftover the open deletes)."""
    def delete_then_commit(fs: FileSystem, directory: str, swap: Swap) -> None:
        for other in swap.replaces[1:]:
            for suffix in SUFFIXES:
                fs.unlink(segment_path(directory, other, suffix), missing_ok=True)
        fs.fsync_dir(directory)
        commit_swap(fs, directory, swap)

    mp.setattr(f"{COMPACTING}.commit_swap", delete_then_commit)


def commit_before_fsync(mp: pytest.MonkeyPatch) -> None:
    """The ``.cleaned`` files never fsynced (nor their directory) before the descriptor
    commits the swap: after a power cut the swap goes ahead with files whose data is lost.
    Only the power-loss states show it (a killed process leaves the data in the OS)."""
    def clean_group_unsynced(fs: FileSystem, *args: Any, **kwargs: Any) -> Any:
        assert isinstance(fs, RecordingFS)
        with pytest.MonkeyPatch.context() as inner, fs.dropping_dir_fsyncs():
            inner.setattr(fs, "_fsync", lambda handle: None)
            return clean_group(fs, *args, **kwargs)

    mp.setattr(f"{COMPACTING}.clean_group", clean_group_unsynced)


PLANTED: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "delete-before-commit": delete_before_commit,
    "commit-before-fsync": commit_before_fsync,
}


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_bug_in_the_swap_order_is_caught(
    bug: str, scratch: str, reliability_report: Callable[[str], None]
) -> None:
    """A swap made in the wrong order (:data:`PLANTED`) while ``c1-compact`` runs: the
    explorer must find a lost or unreadable record (it stops at the first)."""
    with pytest.MonkeyPatch.context() as mp:
        PLANTED[bug](mp)
        prepared = prepare("c1-compact", scratch)
    outcome = explore(
        f"compaction planted {bug}", prepared.rec, prepared.ledger, scratch,
        stop_at_first=True,
    )
    reliability_report(summary(outcome) + " (planted bug: stops at the first)")
    assert outcome.violations, f"the explorer missed the planted bug {bug}"
    assert any(f"{c}:" in outcome.violations[0] for c in ("C1", "C2", "C4")), (
        outcome.violations[0]
    )


# --------------------------------------------------------------------------- bugs found


class StopAtIndexRename(FileSystem):
    """Fails the rename of a staged ``.index``: the cleaner stops right after it
    committed its first swap."""

    def _rename(self, src: str, dst: str) -> None:
        if src.endswith(".index.cleaned"):
            raise OSError(5, "injected: stopped before the index rename")
        super()._rename(src, dst)


def test_swap_finished_after_its_log_rename_keeps_the_cleaned_indexes(
    tmp_path: os.PathLike[str],
) -> None:
    """The explorer's finding, reduced (fixed: every staged file still there is renamed).
    ``complete_swap`` renamed ``<base>.index.cleaned``,
    ``.timeindex.cleaned`` then ``.log.cleaned`` and fsyncs the directory only after all
    three (and the unlinks): a power cut may keep the ``.log`` rename alone. Recovery then
    finished the swap, but skipped every rename because ``<base>.log.cleaned`` was gone;
    the open deleted the staged indexes as leftovers and the cleaned ``.log`` kept the
    replaced segment's indexes, which point into the middle of its batches."""
    root = os.fspath(tmp_path)
    clock = FakeClock(T0)
    ledger = setup(root, clock)
    with contextlib.suppress(LogstoreError), logstore.open(
        root, fs=StopAtIndexRename(), clock=clock
    ) as store:
        store.partition(TOPIC, 0).compact(force=True)  # stops after committing a swap
    directory = os.path.join(root, DIR)
    swaps = [b for b in map(parse_swap_name, os.listdir(directory)) if b is not None]
    assert len(swaps) == 1, os.listdir(directory)
    # the power-loss state: of the three unsynced renames, only the .log's reached the disk
    log_path = segment_path(directory, swaps[0], ".log")
    os.rename(log_path + ".cleaned", log_path)
    with logstore.open(root, clock=clock) as store:
        plog = store.partition(TOPIC, 0)
        _, end, rows = read_all(plog)
        assert check_lookups(plog, 0, end, rows) == []
    assert verify_partition(DEFAULT_FS, directory).ok
    assert fold(rows) == fold([(w.offset, w.key, w.value) for w in ledger.writes])
