"""kill -9 loops (issue 5, part (a)): a child produces and commits, is SIGKILLed, and the
store must then hold everything the child was told is durable.

* ``test_kill9_loop``: SIGKILL at a random moment 0-300 ms after "ready", about 20% of
  the cycles during the child's open and recovery instead; after every kill the parent
  reopens the store and checks the invariants of the reliability guide (I1-I7), then
  either closes it cleanly or drops it as a killed process would (so the next child
  recovers a dirty store).
* ``test_killat_sweep``: the deterministic variant. The workload runs once without a kill
  to count its N I/O operations, then once per kill point i with ``KILL_AT=i`` (the child
  SIGKILLs itself just before operation i), each from the same starting directory:
  an empty one (store and topic creation) and a dirty one left by an earlier kill (crash
  recovery, rolls, commits, clean close).

Invariants checked after every kill:

* I1: the store opens (timed: the recovery-time figures).
* I2: every acknowledged record is present, byte-identical, at its acknowledged offset
  (the new acks, a random sample of old ones, and all of them in every full check).
* I3: offsets run on from 0 with no gap; no record appears twice.
* I4: no phantom records: every record's payload verifies itself.
* I5: records that were written but not acknowledged belong to the call the child was
  killed in (their sequence numbers follow every acknowledged one of that child).
* I6: each group's committed offset is at least its last acknowledged commit, at most the
  log end, and never moves back.
* I7: an append works after recovery and reads back; index lookups agree with a full
  scan; opening the recovered store again changes nothing.

Children are forked from a server process that has imported logstore already
(``crash_worker.py serve``): a cycle then costs a fork, not a Python start. Stores live on
tmpfs when there is one (kill -9 keeps the page cache, so a disk would add only fsync time)
and are kept after a failure. A ``test_checker_...`` test plants violations to show the
checks catch them.

Knobs: ``LOGSTORE_KILL_CYCLES`` (cycles of the CI loop, default 200),
``LOGSTORE_SOAK_KILL_CYCLES`` (the soak loop, default 3000), ``LOGSTORE_KILL_SEED`` (replay
a seed: exactly for the sweep, approximately for the loop, whose kill moments are
wall-clock), ``LOGSTORE_KILLAT_POINTS`` (cap the kill points per sweep; default all),
``LOGSTORE_KILL_TMP`` (where the stores go).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore.types import TopicPartition
from tests.reliability.crash_worker import (
    GROUPS,
    PARTITIONS,
    SEGMENT_BYTES,
    TOPIC,
    check_value,
    digest,
    random_record,
)

WORKER = str(Path(__file__).with_name("crash_worker.py"))
CI = os.environ.get("CI") == "true"
OPEN_LIMIT_S = 10.0  # I1: the store opens within this time
KILL_WINDOW_S = 0.3  # SIGKILL up to this long after "ready"
DURING_OPEN = 0.22  # the share of cycles meant to be killed during the child's open
FULL_EVERY = 25  # a full check every this many cycles (and after the last)
OLD_SAMPLE = 40  # old acks re-read per cycle
EPOCH = 50  # a fresh store every this many cycles: bounds the data a CI run piles up
SOAK_EPOCH = 200
SWEEP_OPS = 30  # calls of the swept workload (each a few records, about 18 I/O ops)
SOAK_SWEEP_OPS = 120
ACK = re.compile(r"a (\d+) (\d+) ([0-9a-f]{24}) (\d+) (\d+)")
COMMIT = re.compile(r"c (\w+) (\d+:\d+(?:,\d+:\d+)*)")


@pytest.fixture
def kill_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where the stores go: tmpfs (``/dev/shm``) when there is one. kill -9 keeps the page
    cache, so for these tests a disk adds nothing but fsync time (which other processes
    on a shared machine make slow and erratic). Kept after a failure, for a look."""
    base = os.environ.get("LOGSTORE_KILL_TMP") or (
        "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    )
    if base is None:
        yield tmp_path
        return
    directory = Path(tempfile.mkdtemp(prefix="logstore-kill9-", dir=base))
    failed_before = request.session.testsfailed
    yield directory
    if request.session.testsfailed == failed_before:
        shutil.rmtree(directory, ignore_errors=True)


def _seed() -> int:
    env = os.environ.get("LOGSTORE_KILL_SEED")
    return int(env) if env else random.SystemRandom().randrange(2**32)


# ---------------------------------------------------------------------- child processes


class Child:
    """A running crash workload: its pid and the read end of its stdout pipe."""

    def __init__(self, server: ForkServer, pid: int, fd: int, stderr_path: Path) -> None:
        self.server = server
        self.pid = pid
        self.fd = fd
        self.stderr_path = stderr_path
        self.buf = bytearray()
        self.eof = False
        self.code: int | None = None

    def pump(self, until: float, want: bytes | None = None) -> bool:
        """Drain the pipe until monotonic time ``until``, EOF, or (with ``want``) until
        the line ``want`` arrived; return whether it did."""
        while not self.eof:
            if want is not None and want + b"\n" in self.buf:
                return True
            left = until - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 1 << 16)
                if data:
                    self.buf += data
                else:
                    self.eof = True
        return want is not None and want + b"\n" in self.buf

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def finish(self, timeout: float = 60.0) -> int:
        """Read the pipe to its end (the child has died or is dying) and reap the child:
        once this returns, the kernel has dropped its locks."""
        self.pump(time.monotonic() + timeout)
        os.close(self.fd)
        if not self.eof:
            self.kill()
        self.code = self.server.wait_exit(self.pid, timeout)
        return self.code

    @property
    def lines(self) -> list[str]:
        """Whole lines only: a line the child was killed in the middle of was never said."""
        return self.buf.decode("utf-8", "replace").split("\n")[:-1]

    def said(self, line: str) -> bool:
        return line in self.lines

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text()[-4000:]
        except OSError:
            return ""


class ForkServer:
    """``crash_worker.py serve``: imports logstore once and forks a child per cycle, so a
    cycle costs a fork (a few ms) instead of a Python start (~0.3 s)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._log = open(workdir / "server.stderr", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, "serve", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        theirs.close()
        self.sock.settimeout(120)
        self.current: Child | None = None

    def start(self, directory: Path, **options: Any) -> Child:
        r, w = os.pipe()
        stderr_path = self.workdir / "child.stderr"
        err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        msg = json.dumps({"directory": str(directory), "options": options}).encode()
        try:
            socket.send_fds(self.sock, [msg], [w, err])
        finally:
            os.close(w)
            os.close(err)
        answer = self.sock.recv(256).decode()
        assert answer.startswith("pid "), (answer, (self.workdir / "server.stderr").read_text())
        self.current = Child(self, int(answer.split()[1]), r, stderr_path)
        return self.current

    def wait_exit(self, pid: int, timeout: float) -> int:
        self.sock.settimeout(timeout)
        answer = self.sock.recv(256).decode().split()
        assert answer[:2] == ["exit", str(pid)], answer
        return int(answer[2])

    def close(self) -> None:
        if self.current is not None and self.current.code is None:
            self.current.kill()  # a test that failed half-way: no child outlives it
        self.sock.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def fork_server(workdir: Path) -> Iterator[ForkServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = ForkServer(workdir)
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------- ledger and checks


@dataclasses.dataclass
class Stats:
    cycles: int = 0
    during_open: int = 0
    torn: int = 0  # checks whose recovery cut bytes a kill left behind
    acks: int = 0
    commits: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    phantom: int = 0
    gaps: int = 0
    in_flight: int = 0  # records present though never acknowledged (I5 allows a suffix)
    commit_violations: int = 0
    failed_opens: int = 0
    failed_appends: int = 0
    open_ms: list[float] = dataclasses.field(default_factory=list)

    def violations(self) -> int:
        return (
            self.lost + self.duplicated + self.reordered + self.phantom + self.gaps
            + self.commit_violations + self.failed_opens + self.failed_appends
        )

    def recovery(self) -> str:
        if not self.open_ms:
            return "no opens"
        ms = sorted(self.open_ms)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        return f"recovery p50 {statistics.median(ms):.1f} ms / p99 {p99:.1f} ms"


@dataclasses.dataclass
class Ledger:
    """What the children (and the parent's own appends) were told, and what the last
    check verified."""

    acks: dict[tuple[int, int], tuple[str, int, int]] = dataclasses.field(default_factory=dict)
    ack_keys: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    commits: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)
    observed_commits: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)
    max_acked_seq: dict[int, int] = dataclasses.field(default_factory=dict)
    worker_runs: set[int] = dataclasses.field(default_factory=set)
    verified_end: list[int] = dataclasses.field(default_factory=lambda: [0] * PARTITIONS)
    last_key: list[tuple[int, int]] = dataclasses.field(
        default_factory=lambda: [(-1, -1)] * PARTITIONS
    )
    placed: dict[tuple[int, int], tuple[int, int]] = dataclasses.field(default_factory=dict)

    def ack(self, p: int, offset: int, dig: str, run: int, seq: int) -> str | None:
        """Record an acknowledged record; a problem if its offset was handed out before."""
        key = (p, offset)
        old = self.acks.get(key)
        if old is not None and old != (dig, run, seq):
            return f"I2/I3 offset {p}:{offset} acked twice: {old} and {(dig, run, seq)}"
        if old is None:
            self.acks[key] = (dig, run, seq)
            self.ack_keys.append(key)
        self.max_acked_seq[run] = max(self.max_acked_seq.get(run, -1), seq)
        return None

    def take(self, child: Child, run: int, stats: Stats) -> tuple[list[tuple[int, int]], list[str]]:
        """Add a dead child's acks; return the new ack keys and any problems."""
        self.worker_runs.add(run)
        new: list[tuple[int, int]] = []
        problems: list[str] = []
        for line in child.lines:
            if m := ACK.fullmatch(line):
                p, offset, dig, r, seq = (
                    int(m[1]), int(m[2]), m[3], int(m[4]), int(m[5])
                )
                if r != run:
                    problems.append(f"ack of run {r} from child run {run}: {line}")
                if offset < self.verified_end[p]:
                    stats.lost += 1
                    problems.append(
                        f"I2/I3 child acked {p}:{offset}, below the end {self.verified_end[p]} "
                        f"verified before it started (an offset handed out twice)"
                    )
                problem = self.ack(p, offset, dig, r, seq)
                if problem:
                    stats.lost += 1
                    problems.append(problem)
                new.append((p, offset))
                stats.acks += 1
            elif m := COMMIT.fullmatch(line):
                stats.commits += 1
                for pair in m[2].split(","):
                    p, offset = map(int, pair.split(":"))
                    self.commits[(m[1], p)] = offset
            elif line.startswith("bad "):
                stats.phantom += 1
                problems.append(f"I4 the child read a bad record: {line}")
            elif not (line in ("opening", "ready", "done") or line.startswith(("io ", "killat "))):
                problems.append(f"unexpected line from the child: {line!r}")
        return new, problems


def abandon(store: logstore.Store) -> None:
    """Drop an open store as a killed process would: every descriptor (so every lock) goes,
    nothing is flushed or marked clean, so the next open recovers. Reaches into the
    store's internals; ``PartitionLog._abandon`` exists for crash tests."""
    for topic in store._topics.topics():
        for plog in topic._logs.values():
            plog._abandon()
    offsets = store._offset_store
    if offsets is not None:
        offsets._log._abandon()
        offsets._snapshot_lock.close()
    store._registry_lock.close()
    store._store_lock.close()


Committed = dict[str, dict[TopicPartition, Any]]


def open_and_recover(
    directory: Path,
) -> tuple[logstore.Store, list[logstore.PartitionLog] | None, Committed]:
    """Open the store, every partition (recovering it) and the committed offsets."""
    store = logstore.open(directory)
    try:
        logs = None
        if store.has_topic(TOPIC):
            logs = [store.partition(TOPIC, p) for p in range(PARTITIONS)]
        offsets = store.offsets
        committed = {g: offsets.group_offsets(g) for g in GROUPS}
    except BaseException:
        with contextlib.suppress(Exception):
            abandon(store)
        raise
    return store, logs, committed


def check_store(
    directory: Path,
    ledger: Ledger,
    new: list[tuple[int, int]],
    rng: random.Random,
    stats: Stats,
    *,
    full: bool,
    parent_run: int,
    clean_close: bool,
) -> list[str]:
    """Reopen the store after a kill and check I1-I7 against the ledger; returns the
    problems found (and counts them in ``stats``). Leaves the store closed (cleanly or
    dropped as by a kill, per ``clean_close``) and the ledger updated."""
    problems: list[str] = []
    store: logstore.Store | None
    t0 = time.perf_counter()
    try:
        store, logs, committed = open_and_recover(directory)
    except Exception as err:  # I1
        stats.failed_opens += 1
        return [f"I1 the store does not open: {err!r}"]
    elapsed = time.perf_counter() - t0
    stats.open_ms.append(elapsed * 1000)
    if elapsed > OPEN_LIMIT_S:
        stats.failed_opens += 1
        problems.append(f"I1 opening took {elapsed:.1f} s")
    try:
        if logs is None:
            if ledger.acks or ledger.commits:
                stats.lost += 1
                problems.append("I2 the topic is gone although records were acknowledged")
            store.create_topic(
                TOPIC, PARTITIONS, exist_ok=True, segment_bytes=SEGMENT_BYTES, flush="always"
            )
            logs = [store.partition(TOPIC, p) for p in range(PARTITIONS)]
        if any(plog.recovered_bytes for plog in logs):
            stats.torn += 1
        ends = _check_records(store, logs, ledger, new, rng, stats, problems, full=full)
        _check_commits(committed, ends, ledger, stats, problems)
        _append_after_recovery(store, ends, ledger, rng, stats, problems, parent_run)
        if full and not problems:
            # I7: recovering again (the store dropped as by a kill) changes nothing
            before = [plog.log_end_offset for plog in logs]
            abandon(store)
            store = None
            try:
                store, logs, again = open_and_recover(directory)
            except Exception as err:
                stats.failed_opens += 1
                problems.append(f"I7 the store does not open a second time: {err!r}")
                return problems
            after = [plog.log_end_offset for plog in logs or []]
            if after != before or again != committed:
                problems.append(
                    f"I7 a second recovery changed the store: ends {before} -> {after}, "
                    f"committed {committed} -> {again}"
                )
    finally:
        if store is not None:
            if clean_close:
                store.close()
            else:
                abandon(store)
    return problems


def _check_records(
    store: logstore.Store,
    logs: list[logstore.PartitionLog],
    ledger: Ledger,
    new: list[tuple[int, int]],
    rng: random.Random,
    stats: Stats,
    problems: list[str],
    *,
    full: bool,
) -> list[int]:
    """I2-I5 over the records not verified yet (all of them when ``full``), I2 for a
    sample of old acks, I7 index lookups against the scan. Returns the log ends."""
    ends = []
    placed = {} if full else ledger.placed
    for p, plog in enumerate(logs):
        end = plog.log_end_offset
        ends.append(end)
        if plog.log_start_offset != 0:
            stats.lost += 1
            problems.append(f"I3 partition {p} starts at {plog.log_start_offset}, not 0")
        if end < ledger.verified_end[p]:
            stats.lost += 1
            problems.append(
                f"I2 partition {p} ends at {end}, before the {ledger.verified_end[p]} "
                f"records verified earlier"
            )
        start = 0 if full else min(ledger.verified_end[p], end)
        last = (-1, -1) if full else ledger.last_key[p]
        scanned: dict[int, str] = {}
        offset = start
        while offset < end:
            try:
                records = store.read(TOPIC, p, offset)
            except logstore.LogstoreError as err:
                stats.gaps += 1
                problems.append(f"I3 reading {p}:{offset} (log end {end}) failed: {err!r}")
                break
            if not records:
                stats.gaps += 1
                problems.append(f"I3 no record at {p}:{offset} though the log ends at {end}")
                break
            for r in records:
                if r.offset != offset:
                    stats.gaps += 1
                    problems.append(f"I3 partition {p}: offset {r.offset} where {offset} was due")
                offset = r.offset + 1
                dig = digest(r.key, r.value)
                scanned[r.offset] = dig
                acked = ledger.acks.get((p, r.offset))
                if acked is not None and acked[0] != dig:
                    stats.lost += 1
                    problems.append(
                        f"I2 {p}:{r.offset} holds another record than the acked run "
                        f"{acked[1]} seq {acked[2]}"
                    )
                try:
                    key = check_value(r.key, r.value)
                except ValueError as err:
                    stats.phantom += 1
                    problems.append(f"I4 phantom record at {p}:{r.offset}: {err}")
                    continue
                if acked is not None and key != acked[1:]:
                    problems.append(f"I2 {p}:{r.offset} is {key}, acked as {acked[1:]}")
                if key in placed:
                    stats.duplicated += 1
                    problems.append(
                        f"I3 run {key[0]} seq {key[1]} at {p}:{r.offset} and at {placed[key]}"
                    )
                elif key <= last:
                    stats.reordered += 1
                    problems.append(f"I3 partition {p}: {key} at {r.offset} follows {last}")
                placed[key] = (p, r.offset)
                last = key
                if acked is None:
                    stats.in_flight += 1
                    if key[0] in ledger.worker_runs and key[1] <= ledger.max_acked_seq.get(
                        key[0], -1
                    ):
                        stats.lost += 1
                        problems.append(
                            f"I5 {p}:{r.offset} holds run {key[0]} seq {key[1]}, never acked, "
                            f"though later records of that run were (or its ack went to "
                            f"another offset)"
                        )
        ledger.verified_end[p] = end
        ledger.last_key[p] = last
        if full and scanned:  # I7: index lookups find what the scan found
            for off in rng.sample(sorted(scanned), min(20, len(scanned))):
                got = store.read(TOPIC, p, off, max_records=1)
                if not got or got[0].offset != off or (
                    digest(got[0].key, got[0].value) != scanned[off]
                ):
                    stats.lost += 1
                    problems.append(f"I7 the index lookup of {p}:{off} disagrees with the scan")
    ledger.placed = placed
    # I2: the acked records exist (the scan above compared the bytes of those it met)...
    for p, off in ledger.ack_keys if full else new:
        if off >= ends[p]:
            want = ledger.acks[(p, off)]
            stats.lost += 1
            problems.append(
                f"I2 acked {p}:{off} (run {want[1]} seq {want[2]}) is past the end {ends[p]}"
            )
    # ... and a sample of the old ones reads back by index lookup, byte-identical
    if not full and ledger.ack_keys:
        count = min(OLD_SAMPLE, len(ledger.ack_keys))
        for i in rng.sample(range(len(ledger.ack_keys)), count):
            p, off = ledger.ack_keys[i]
            want = ledger.acks[(p, off)]
            got = store.read(TOPIC, p, off, max_records=1) if off < ends[p] else []
            if not got or got[0].offset != off or digest(got[0].key, got[0].value) != want[0]:
                stats.lost += 1
                problems.append(
                    f"I2 acked {p}:{off} (run {want[1]} seq {want[2]}) does not read back"
                )
    return ends


def _check_commits(
    committed: Committed,
    ends: list[int],
    ledger: Ledger,
    stats: Stats,
    problems: list[str],
) -> None:
    """I6."""
    for (group, p), acked in ledger.commits.items():
        got = committed[group].get(TopicPartition(TOPIC, p))
        if got is None or got.offset < acked:
            stats.commit_violations += 1
            problems.append(
                f"I6 group {group} partition {p}: committed {got and got.offset}, acked {acked}"
            )
    for group, offsets in committed.items():
        for tp, got in offsets.items():
            if tp.topic != TOPIC or not 0 <= tp.partition < PARTITIONS:
                stats.commit_violations += 1
                problems.append(f"I6 group {group} has an offset for unknown {tp}")
                continue
            if got.offset > ends[tp.partition]:
                stats.commit_violations += 1
                problems.append(
                    f"I6 group {group} {tp.partition}: committed {got.offset} > end "
                    f"{ends[tp.partition]}"
                )
            seen = ledger.observed_commits.get((group, tp.partition), -1)
            if got.offset < seen:
                stats.commit_violations += 1
                problems.append(
                    f"I6 group {group} {tp.partition}: committed {got.offset}, was {seen}"
                )
            ledger.observed_commits[(group, tp.partition)] = got.offset


def _append_after_recovery(
    store: logstore.Store,
    ends: list[int],
    ledger: Ledger,
    rng: random.Random,
    stats: Stats,
    problems: list[str],
    run: int,
) -> None:
    """I7: one append lands at the end and reads back; it joins the ledger."""
    key, value = random_record(rng, run, 0, 1024)
    p = rng.randrange(PARTITIONS)
    try:
        meta = store.append(TOPIC, value, key=key, partition=p)
        got = store.read(TOPIC, p, meta.offset, max_records=1)
    except logstore.LogstoreError as err:
        stats.failed_appends += 1
        problems.append(f"I7 append after recovery failed: {err!r}")
        return
    if meta.offset != ends[p] or not got or got[0].value != value or got[0].key != key:
        stats.failed_appends += 1
        problems.append(f"I7 append after recovery landed at {meta.offset}, end was {ends[p]}")
        return
    ledger.ack(p, meta.offset, digest(key, value), run, 0)
    ledger.placed[(run, 0)] = (p, meta.offset)
    ledger.verified_end[p] = meta.offset + 1
    ledger.last_key[p] = (run, 0)


# ---------------------------------------------------------------------- the random loop


def kill_loop(workdir: Path, cycles: int, seed: int, *, epoch: int | None = None) -> Stats:
    """``cycles`` kill -9 cycles on one store (a fresh one every ``epoch`` cycles)."""
    rng = random.Random(seed)
    stats = Stats()
    open_times = [0.02]
    store_dir = workdir / "store0"
    ledger = Ledger()
    with fork_server(workdir / "server") as server:
        for cycle in range(cycles):
            if epoch and cycle and cycle % epoch == 0:
                shutil.rmtree(store_dir)
                store_dir = workdir / f"store{cycle}"
                ledger = Ledger()
            context = (
                f"seed={seed} cycle={cycle} dir={store_dir} (replay with "
                f"LOGSTORE_KILL_SEED={seed} LOGSTORE_KILL_CYCLES={cycle + 1}; the kill moments "
                f"are wall-clock, so a replay is close, not exact)"
            )
            run = 2 * cycle
            early = rng.random() < DURING_OPEN
            delay = rng.uniform(0, 0.9 * statistics.median(open_times)) if early else rng.uniform(
                0, KILL_WINDOW_S
            )
            child = server.start(
                store_dir, seed=rng.randrange(2**32), run=run, linger_ms=rng.choice([0, 0, 2, 5])
            )
            hung = ""
            if not child.pump(time.monotonic() + 60, b"opening"):
                hung = "the child did not start in 60 s"
            else:
                t_opening = time.monotonic()
                if early:
                    child.pump(t_opening + delay)
                elif child.pump(t_opening + 60, b"ready"):
                    open_times.append(time.monotonic() - t_opening)
                    child.pump(time.monotonic() + delay)
                elif not child.eof:
                    hung = "I1 the child did not open the store in 60 s"
            child.kill()
            code = child.finish()
            assert not hung, f"{context}: {hung}"
            assert code == -signal.SIGKILL, (
                f"{context}: the child ended with {code}, not by SIGKILL:\n{child.stderr()}"
            )
            if not child.said("ready"):
                stats.during_open += 1
            stats.cycles += 1
            new, problems = ledger.take(child, run, stats)
            full = (cycle + 1) % FULL_EVERY == 0 or cycle == cycles - 1
            problems += check_store(
                store_dir, ledger, new, rng, stats,
                full=full, parent_run=run + 1, clean_close=rng.random() < 0.3,
            )
            assert not problems, f"{context}:\n" + "\n".join(problems[:20])
    return stats


def _loop_report(stats: Stats, seed: int, epoch: int | None) -> str:
    torn = f", {stats.torn} recoveries cut a torn tail" if stats.torn else ""
    stores = f" on stores of {epoch} cycles each" if epoch else ""
    return (
        f"kill -9: {stats.cycles} cycles{stores} ({stats.during_open} during open/recovery"
        f"{torn}), {stats.acks} acks + {stats.commits} commits ({stats.in_flight} records "
        f"written but never acked, all in a killed call), {stats.lost} lost, "
        f"{stats.duplicated} duplicated, {stats.reordered} reordered, {stats.phantom} "
        f"phantom, {stats.commit_violations} commit regressions, {stats.failed_opens} failed "
        f"opens, {stats.failed_appends} failed appends after recovery; {stats.recovery()} "
        f"(seed {seed})"
    )


def test_kill9_loop(kill_dir: Path, reliability_report: Callable[[str], None]) -> None:
    cycles = int(os.environ.get("LOGSTORE_KILL_CYCLES", "200"))
    seed = _seed()
    t0 = time.monotonic()
    stats = kill_loop(kill_dir, cycles, seed, epoch=EPOCH)
    assert stats.violations() == 0, seed
    assert stats.during_open > 0 or cycles < 20, f"seed={seed}: no kill landed during open"
    reliability_report(_loop_report(stats, seed, EPOCH) + f", {time.monotonic() - t0:.0f} s")


@pytest.mark.soak
def test_kill9_loop_soak(kill_dir: Path, reliability_report: Callable[[str], None]) -> None:
    cycles = int(os.environ.get("LOGSTORE_SOAK_KILL_CYCLES", "3000"))
    seed = _seed()
    t0 = time.monotonic()
    stats = kill_loop(kill_dir, cycles, seed, epoch=SOAK_EPOCH)
    assert stats.violations() == 0, seed
    reliability_report(
        "soak " + _loop_report(stats, seed, SOAK_EPOCH) + f", {time.monotonic() - t0:.0f} s"
    )


# ---------------------------------------------------------------------- the KillAt sweep


@dataclasses.dataclass
class Sweep:
    name: str
    points: int = 0
    total: int = 0  # the workload's I/O operations (N)
    kinds: Counter[str] = dataclasses.field(default_factory=Counter)
    violations: int = 0
    stats: Stats = dataclasses.field(default_factory=Stats)


SWEEP_LINGER_MS = 3_600_000
"""The sweeps' producers write only when flushed (by the workload's own thread): with a
shorter linger the producer's sender thread writes batches at moments of its own, and the
I/O operations, which the sweep numbers to kill at each, would differ from run to run."""


def count_ops(directory: Path, *, seed: int, run: int, ops: int) -> tuple[int, list[str]]:
    """Run the workload once through the command line, without a kill: its I/O count."""
    out = subprocess.run(
        [
            sys.executable, WORKER, "run", str(directory), "--seed", str(seed),
            "--run", str(run), "--ops", str(ops), "--close", "--step-clock",
            "--linger-ms", str(SWEEP_LINGER_MS),
        ],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if k != "LOGSTORE_KILL_AT"},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "done", lines[-3:]
    return int(lines[-2].split()[1]), lines


def sweep(
    workdir: Path,
    server: ForkServer,
    name: str,
    base: Path | None,
    base_ledger: Ledger,
    *,
    seed: int,
    ops: int,
    max_points: int | None,
) -> Sweep:
    """Run the workload from ``base`` (or an empty directory) once per kill point."""
    rng = random.Random(seed)
    result = Sweep(name)
    run = 2
    probe = workdir / f"{name}-count"
    if base is not None:
        shutil.copytree(base, probe)
    total, _ = count_ops(probe, seed=seed, run=run, ops=ops)
    result.total = total
    points = list(range(total))
    if max_points is not None and total > max_points:
        stride = -(-total // max_points)
        points = list(range(rng.randrange(stride), total, stride))
    target = workdir / f"{name}-kill"
    said: dict[int, str] = {}
    for i in points:
        context = f"seed={seed} sweep={name} KILL_AT={i} of {total} (replayable exactly)"
        if target.exists():
            shutil.rmtree(target)
        if base is not None:
            shutil.copytree(base, target)
        child = server.start(
            target, seed=seed, run=run, ops=ops, kill_at=i, close=True, step_clock=True,
            linger_ms=SWEEP_LINGER_MS,
        )
        code = child.finish()
        killed = [line for line in child.lines if line.startswith("killat ")]
        assert code == -signal.SIGKILL and killed, (
            f"{context}: the child ended with {code} without reaching its kill point (the "
            f"workload's I/O is not deterministic?):\n{child.stderr()}"
        )
        assert killed[0].split()[1] == str(i), (context, killed)
        result.kinds[killed[0].split()[2]] += 1
        said[i] = killed[0]
        ledger = copy.deepcopy(base_ledger)
        new, problems = ledger.take(child, run, result.stats)
        problems += check_store(
            target, ledger, new, rng, result.stats,
            full=True, parent_run=run + 1, clean_close=True,
        )
        result.points += 1
        if problems:
            result.violations += 1
        assert not problems, f"{context} ({killed[0]}):\n" + "\n".join(problems[:20])
    # the command line with LOGSTORE_KILL_AT stops at the same operation
    i = points[len(points) // 2]
    shutil.rmtree(target)
    if base is not None:
        shutil.copytree(base, target)
    out = subprocess.run(
        [
            sys.executable, WORKER, "run", str(target), "--seed", str(seed), "--run", str(run),
            "--ops", str(ops), "--close", "--step-clock", "--linger-ms", str(SWEEP_LINGER_MS),
        ],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "LOGSTORE_KILL_AT": str(i)},
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert out.stdout.splitlines()[-1] == said[i], (out.stdout[-300:], said[i])
    return result


def killat_sweeps(
    workdir: Path, seed: int, max_points: int | None, *, ops: int = SWEEP_OPS
) -> list[Sweep]:
    rng = random.Random(seed)
    with fork_server(workdir / "server") as server:
        # 1. from an empty directory: store and topic creation, first appends, close
        create = sweep(
            workdir, server, "create", None, Ledger(),
            seed=rng.randrange(2**32), ops=6, max_points=max_points,
        )
        # 2. from a dirty store left by a kill in the middle of a write: recovery, appends,
        #    rolls, commits, clean close
        base = workdir / "base"
        base_seed = rng.randrange(2**32)
        total, _ = count_ops(workdir / "base-count", seed=base_seed, run=0, ops=ops)
        child = server.start(
            base, seed=base_seed, run=0, ops=ops, kill_at=total * 2 // 3, close=True,
            step_clock=True, linger_ms=SWEEP_LINGER_MS,
        )
        assert child.finish() == -signal.SIGKILL, child.stderr()
        base_ledger = Ledger()
        base_stats = Stats()
        _, problems = base_ledger.take(child, 0, base_stats)
        assert not problems and base_stats.acks > 0, problems
        recover = sweep(
            workdir, server, "recover", base, base_ledger,
            seed=rng.randrange(2**32), ops=ops, max_points=max_points,
        )
    return [create, recover]


def _sweep_report(sweeps: list[Sweep], seed: int) -> str:
    kinds: Counter[str] = Counter()
    for s in sweeps:
        kinds.update(s.kinds)
    parts = ", ".join(f"{s.name} {s.points} of {s.total}" for s in sweeps)
    acks = sum(s.stats.acks for s in sweeps)
    violations = sum(s.violations for s in sweeps)
    return (
        f"KillAt sweep: {sum(s.points for s in sweeps)} kill points ({parts} I/O ops; "
        f"{', '.join(f'{n} {k}' for k, n in kinds.most_common())}), {acks} acks checked, "
        f"{violations} violations (seed {seed})"
    )


def test_killat_sweep(kill_dir: Path, reliability_report: Callable[[str], None]) -> None:
    seed = _seed()
    max_points = int(os.environ.get("LOGSTORE_KILLAT_POINTS", "0")) or None
    t0 = time.monotonic()
    sweeps = killat_sweeps(kill_dir, seed, max_points)
    assert all(s.violations == 0 for s in sweeps)
    reliability_report(_sweep_report(sweeps, seed) + f", {time.monotonic() - t0:.0f} s")


@pytest.mark.soak
def test_killat_sweep_full(kill_dir: Path, reliability_report: Callable[[str], None]) -> None:
    seed = _seed()
    t0 = time.monotonic()
    sweeps = killat_sweeps(kill_dir, seed, None, ops=SOAK_SWEEP_OPS)
    assert all(s.violations == 0 for s in sweeps)
    reliability_report("soak " + _sweep_report(sweeps, seed) + f", {time.monotonic() - t0:.0f} s")


# ---------------------------------------------------------------------- the checker itself


def test_checker_catches_planted_violations(tmp_path: Path) -> None:
    """The checks above would see a lost, changed, duplicated or phantom record, a commit
    that went back, and an offset handed out twice (each planted in a copy of a store a
    real child wrote)."""
    base = tmp_path / "base"
    _, lines = count_ops(base, seed=7, run=0, ops=25)

    def fresh(name: str) -> tuple[Path, Ledger, Stats, list[tuple[int, int]]]:
        target = tmp_path / name
        shutil.copytree(base, target)
        ledger, stats = Ledger(), Stats()
        child = Child.__new__(Child)
        child.buf = bytearray("\n".join(lines).encode() + b"\n")
        new, problems = ledger.take(child, 0, stats)
        assert not problems and stats.acks > 10
        return target, ledger, stats, new

    def check(target: Path, ledger: Ledger, stats: Stats, new: list[tuple[int, int]]) -> str:
        problems = check_store(
            target, ledger, new, random.Random(1), stats,
            full=True, parent_run=1, clean_close=True,
        )
        return "\n".join(problems)

    target, ledger, stats, new = fresh("clean")
    assert check(target, ledger, stats, new) == ""

    target, ledger, stats, new = fresh("lost")  # an ack past the end
    ledger.ack(0, 10_000, "0" * 24, 0, 10_000)
    assert "I2 acked 0:10000" in check(target, ledger, stats, new)

    target, ledger, stats, new = fresh("changed")  # an ack whose bytes differ
    p, off = new[0]
    ledger.acks[(p, off)] = ("f" * 24, *ledger.acks[(p, off)][1:])
    assert f"I2 {p}:{off} holds another record" in check(target, ledger, stats, new)

    target, ledger, stats, new = fresh("phantom")  # a record that is not a payload
    with logstore.open(target) as store:
        store.append(TOPIC, b"LSR1 0 1 00 torn", partition=1)
    assert "I4 phantom record" in check(target, ledger, stats, new)

    target, ledger, stats, new = fresh("duplicate")  # an acked record written again
    with logstore.open(target) as store:
        p, off = new[-1]
        again = store.read(TOPIC, p, off, max_records=1)[0]
        store.append(TOPIC, again.value, key=again.key, partition=(p + 1) % PARTITIONS)
    assert "I3 run 0 seq" in check(target, ledger, stats, new)

    target, ledger, stats, new = fresh("commit")  # a commit acked beyond what is there
    ledger.commits[("gd", 2)] = 10_000
    assert "I6 group gd partition 2" in check(target, ledger, stats, new)

    target, ledger, stats, new = fresh("unacked")  # I5: an unacked record before acked ones
    ledger.acks = {k: v for k, v in ledger.acks.items() if v[2] != 0}
    ledger.ack_keys = [k for k in ledger.ack_keys if k in ledger.acks]
    new = [k for k in new if k in ledger.acks]
    assert "holds run 0 seq 0, never acked" in check(target, ledger, stats, new)

    target, ledger, stats, new = fresh("twice")  # a child acks an offset verified before
    ledger.verified_end = [10_000] * PARTITIONS
    child = Child.__new__(Child)
    child.buf = bytearray(b"a 0 3 " + b"0" * 24 + b" 2 0\n")
    assert "offset handed out twice" in "\n".join(ledger.take(child, 2, stats)[1])
