"""Concurrency (issue 5, part (e)): several processes on one store, and the exclusive lock.

* Writers (processes) append to the same partitions at once, through ``store.append``,
  ``append_many`` and a ``Producer``, while reader processes tail every partition up to
  its current end. Readers see only records whose payload verifies, offsets that run on
  per partition without a gap, each writer's records in its order, and nothing they saw
  vanishes or changes later; every reader saw the same sequence, which is also what the
  store holds at the end, and every acknowledged record is there.
* A ``Store`` opened with ``exclusive=True`` while another process (or another ``Store``
  of this one) has the directory open gets ``StoreLockedError`` at once (well within 1 s);
  after the holder is SIGKILLed, the next exclusive open succeeds.

Knobs: ``LOGSTORE_CONC_RECORDS`` (records per writer), ``LOGSTORE_KILL_SEED``.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import logstore
from logstore.storage.files import FileSystem
from tests.integration.workers import Worker
from tests.reliability.crash_worker import (
    CONC_PARTITIONS,
    CONC_SEGMENT_BYTES,
    CONC_TOPIC,
    check_value,
    digest,
)

WORKER = str(Path(__file__).with_name("crash_worker.py"))
WRITERS = 3
READERS = 3
LOCK_LIMIT_S = 1.0
ACK = re.compile(r"a (\d+) (\d+) ([0-9a-f]{24}) (\d+) (\d+)")
def _seed() -> int:
    env = os.environ.get("LOGSTORE_KILL_SEED")
    return int(env) if env else random.SystemRandom().randrange(2**32)


def _start(*args: object) -> Worker:
    """Start a worker and wait until it has opened the store. Its output is collected
    from the start by the Worker's threads (a full pipe never stalls it)."""
    worker = Worker([sys.executable, WORKER, *map(str, args)])
    worker.wait_ready()
    return worker


def _finish(worker: Worker, timeout: float) -> tuple[str, str]:
    """All of the worker's output once it ends; kill it if it takes over ``timeout`` s."""
    try:
        return worker.communicate(timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.communicate(30)
        raise AssertionError(f"worker {worker.args!r} did not finish in {timeout} s") from None


def _rejected_in_time(directory: Path, *, exclusive: bool) -> float:
    """Open a second Store; it must fail with StoreLockedError within LOCK_LIMIT_S.
    Returns how long the refusal took."""
    t0 = time.perf_counter()
    try:
        store = logstore.open(directory, exclusive=exclusive)
    except logstore.StoreLockedError:
        elapsed = time.perf_counter() - t0
        assert elapsed < LOCK_LIMIT_S, f"the refusal took {elapsed:.2f} s"
        return elapsed
    store.close()
    raise AssertionError(f"a second Store (exclusive={exclusive}) opened {directory}")


def _scan(store: logstore.Store) -> dict[int, list[logstore.Record]]:
    out = {}
    for p in range(CONC_PARTITIONS):
        records: list[logstore.Record] = []
        plog = store.partition(CONC_TOPIC, p)
        end = plog.log_end_offset
        while len(records) < end:
            batch = store.read(CONC_TOPIC, p, len(records))
            assert batch, (p, len(records), end)
            records += batch
        out[p] = records
    return out


def test_writers_and_tailing_readers(
    tmp_path: Path, reliability_report: Callable[[str], None]
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    per_writer = int(os.environ.get("LOGSTORE_CONC_RECORDS", "5000"))
    total = WRITERS * per_writer
    data = tmp_path / "data"
    context = f"seed={seed} (LOGSTORE_KILL_SEED={seed} replays the workers' choices)"
    # The test keeps a Store open throughout, so no worker is ever the first opener (see
    # test_concurrent_plain_opens_never_refuse for why that matters).
    keeper = logstore.open(data)
    keeper.create_topic(
        CONC_TOPIC, CONC_PARTITIONS, segment_bytes=CONC_SEGMENT_BYTES, flush="interval",
        flush_ms=50,
    )
    refusals: list[float] = []
    workers: list[Worker] = []
    try:
        readers = [
            _start("tail", data, "--reader", r, "--expect", total, "--seed",
                   rng.randrange(2**32), "--timeout", 240)
            for r in range(READERS)
        ]
        workers += readers
        writers = [
            _start("write", data, "--writer", w, "--count", per_writer, "--seed",
                   rng.randrange(2**32))
            for w in range(WRITERS)
        ]
        workers += writers
        # while they run, other Stores asking for the directory alone are refused
        t0 = time.monotonic()
        while any(w.running() for w in writers):
            refusals.append(_rejected_in_time(data, exclusive=True))
            time.sleep(0.05)
        write_s = time.monotonic() - t0
        writer_out = [_finish(w, 240) for w in writers]
        reader_out = [_finish(r, 240) for r in readers]
        refusals.append(_rejected_in_time(data, exclusive=True))
        for w, (out, err) in zip(writers, writer_out, strict=True):
            assert w.returncode == 0 and out.endswith("done\n"), f"{context}: writer: {err}"
        for r, (_, err) in zip(readers, reader_out, strict=True):
            assert r.returncode == 0, f"{context}: reader: {err}"

        # every reader read everything, cleanly
        read = 0
        views: dict[int, set[tuple[int, str]]] = {p: set() for p in range(CONC_PARTITIONS)}
        for out, _ in reader_out:
            bad = [line for line in out.splitlines() if line.startswith("bad ")]
            assert not bad, f"{context}: a reader saw:\n" + "\n".join(bad[:20])
            summary = dict(kv.split("=") for kv in out.splitlines()[-1].split()[1:])
            assert int(summary["read"]) == total, (context, summary)
            read += int(summary["read"])
            for line in out.splitlines():
                if line.startswith("view "):
                    _, partition, count, sha = line.split()
                    views[int(partition)].add((int(count), sha))

        # what the readers saw is what the store holds, and holds every ack
        records = _scan(keeper)
        assert sum(len(rs) for rs in records.values()) == total, context
        for p, rs in records.items():
            assert [rec.offset for rec in rs] == list(range(len(rs))), (context, p)
            digests = "".join(digest(rec.key, rec.value) for rec in rs)
            sha = hashlib.sha256(digests.encode()).hexdigest()
            assert views[p] == {(len(rs), sha)}, f"{context}: readers disagree on {p}: {views[p]}"
            last: dict[int, int] = {}
            for rec in rs:
                run, seq = check_value(rec.key, rec.value)
                assert seq > last.get(run, -1), (context, p, rec.offset, run, seq)
                last[run] = seq
        by_position = {
            (p, rec.offset): digest(rec.key, rec.value) for p, rs in records.items() for rec in rs
        }
        acks = [m for out, _ in writer_out for m in ACK.finditer(out)]
        assert len(acks) == total, context
        for m in acks:
            assert by_position[(int(m[1]), int(m[2]))] == m[3], (context, m[0])
        seqs = {(int(m[4]), int(m[5])) for m in acks}
        assert len(seqs) == total, f"{context}: a record was acknowledged twice"
    finally:
        for w in workers:
            if w.running():
                w.kill()
        keeper.close()
    refusals += _holder_killed_then_exclusive_open(tmp_path / "excl", rng)
    reliability_report(
        f"concurrency: {WRITERS} writers x {READERS} readers (processes, {write_s:.1f} s of "
        f"writing), {read} records read, 0 bad reads, 0 vanished; {len(refusals)} "
        f"double-opens, 100% rejected (max {max(refusals) * 1000:.1f} ms); the next "
        f"exclusive open after SIGKILL of the holder succeeded (seed {seed})"
    )


def _holder_killed_then_exclusive_open(data: Path, rng: random.Random) -> list[float]:
    """A process holds the store (appending, or exclusive and idle); other Stores are
    refused; after SIGKILL of the holder an exclusive open succeeds and every record the
    holder acknowledged is there."""
    with logstore.open(data) as store:
        store.create_topic(CONC_TOPIC, CONC_PARTITIONS, segment_bytes=CONC_SEGMENT_BYTES)
    refusals: list[float] = []
    for holder_args in (["--append"], ["--exclusive"], ["--exclusive", "--append"]):
        holder = _start("hold", data, *holder_args)
        try:
            time.sleep(rng.uniform(0, 0.05))
            for _ in range(5):
                refusals.append(_rejected_in_time(data, exclusive=True))
                if "--exclusive" in holder_args:  # then even plain opens are refused
                    refusals.append(_rejected_in_time(data, exclusive=False))
        finally:
            holder.send_signal(signal.SIGKILL)
            out, _ = holder.communicate(timeout=60)
        assert holder.returncode == -signal.SIGKILL
        t0 = time.perf_counter()
        with logstore.open(data, exclusive=True) as store:
            assert time.perf_counter() - t0 < 5.0
            refusals.append(_rejected_in_time(data, exclusive=False))  # same process
            refusals.append(_rejected_in_time(data, exclusive=True))
            for m in ACK.finditer(out):
                got = store.read(CONC_TOPIC, int(m[1]), int(m[2]), max_records=1)
                assert got and digest(got[0].key, got[0].value) == m[3], m[0]
    # and a plain Store of this process keeps an exclusive one out too
    with logstore.open(data):
        refusals.append(_rejected_in_time(data, exclusive=True))
    return refusals


class _PausingFS(FileSystem):
    """Pauses while the opening Store reads its topic registry, with its lock held as
    during any open, until ``go`` is set."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self.go = threading.Event()

    def _open(self, path: str, flags: int) -> int:
        if f"{os.sep}__topics{os.sep}" in path and not self.go.is_set():
            self.paused.set()
            self.go.wait(10)
        return super()._open(path, flags)


def test_concurrent_plain_opens_never_refuse(tmp_path: Path) -> None:
    """Two Stores opened at once, neither exclusive, must both open. The first opener
    takes ``.lock`` exclusively for the whole of its open (to learn it is alone and clean
    up orphans) before turning it into a shared lock; a second opener in that window fails
    its exclusive try, then its non-blocking shared try, and raises StoreLockedError. Here
    the first opener is paused in that window (reading its topic registry) to hit it every
    time; between processes it happens whenever two start together (3 processes opening
    and closing in a loop: 2 of them failed all 200 opens)."""
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 1)
    fs = _PausingFS()
    first: list[logstore.Store] = []
    opener = threading.Thread(target=lambda: first.append(logstore.open(data, fs=fs)))
    opener.start()
    try:
        assert fs.paused.wait(10)
        threading.Timer(0.5, fs.go.set).start()  # a fixed open may wait for the first
        second = logstore.open(data)  # raises StoreLockedError: the bug
        second.close()
    finally:
        fs.go.set()
        opener.join(10)
        for store in first:
            store.close()


def test_reader_sees_what_another_store_appended_before_it_rolled(tmp_path: Path) -> None:
    """Two Stores on one directory act as two processes (own descriptors and locks).
    The reader has seen segment 0 holding offset 0; the writer appends offset 1 to it,
    then offset 2, which rolls to segment 2. Reading offset 1 must return it."""
    data = tmp_path / "data"
    with logstore.open(data) as writer, logstore.open(data) as reader:
        writer.create_topic("t", 1, segment_bytes=400, flush="never")
        writer.append("t", b"x" * 100, partition=0)
        assert [r.offset for r in reader.read("t", 0, 0)] == [0]
        writer.append("t", b"y" * 100, partition=0)  # still fits in segment 0
        writer.append("t", b"z" * 100, partition=0)  # rolls: segment 2
        assert [s.base_offset for s in writer.partition("t", 0).segments] == [0, 2]
        got = reader.read("t", 0, 1)  # CorruptRecordError: "the data ends at offset 1"
        assert [(r.offset, r.value) for r in got] == [(1, b"y" * 100)]
