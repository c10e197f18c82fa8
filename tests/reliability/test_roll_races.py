"""Readers racing another process's roll and retention (issue 11, point 5).

A reader follows the head without the writer lock: between its reading the head and
listing the directory, another process may roll and delete the segment the head named
(retention, ``delete_records``) or swap a cleaned one in (compaction), and a segment it
listed may be deleted before it opens the file. Such a reader must read the head again and go on,
never raise. Here real processes do that at a high rate:

* ``test_a_follower_never_fails_while_another_process_rolls_and_deletes``: one process
  appends and calls ``delete_records`` up to the log end every 1-3 appends (each one a
  roll and a deletion of the old active segment), three follow the partition. Before the
  fix the followers raised ``StorageError: the head names active segment N, which is not
  in the directory`` and ``FileNotFoundError`` within seconds.
* ``test_churn_*``: producer and consumer-group processes SIGKILLed at random and
  restarted, while segments roll every ~100 records, retention deletes old ones and
  ``__consumer_offsets-0`` (4 KiB segments) rolls every 25-40 commits and is compacted
  after each roll: 0 consumer exceptions, every acknowledged record still in the log (or
  below the log start, deleted by retention) at its offset, each group's committed offset
  never past the log end, and the cleaner having run on the offsets log.
  ``LOGSTORE_CHURN_S`` sets the soak's length (default 100 s).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import logstore
import logstore.metadata
from logstore.metadata import OFFSETS_SEGMENT_BYTES
from logstore.types import TopicPartition
from tests.reliability import churn_worker

WORKER = str(Path(__file__).with_name("churn_worker.py"))
FOLLOWERS = 3


class Child:
    def __init__(self, role: str, data: Path, out: Path, seconds: float, seed: int) -> None:
        self.role = role
        self.out = out
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, role, str(data), str(out), str(seconds), str(seed)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []


def _setup(data: Path, out: Path) -> None:
    subprocess.run([sys.executable, WORKER, "setup", str(data), str(out), "0"], check=True,
                   env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), timeout=60)


def _seed() -> int:
    env = os.environ.get("LOGSTORE_KILL_SEED")
    return int(env) if env else random.SystemRandom().randrange(2**32)


def _exceptions(children: list[Child]) -> list[str]:
    return [f"{c.role} {c.out.name}: {line}" for c in children for line in c.lines()
            if line.startswith("exc ")]


def test_a_follower_never_fails_while_another_process_rolls_and_deletes(
    tmp_path: Path, reliability_report: Callable[[str], None]
) -> None:
    seed = _seed()
    data = tmp_path / "d"
    _setup(data, tmp_path / "setup.out")
    seconds = 6.0
    roller = Child("roller", data, tmp_path / "roller.out", seconds, seed)
    followers = [Child("follower", data, tmp_path / f"follower-{i}.out", seconds, seed + i)
                 for i in range(FOLLOWERS)]
    children = [roller, *followers]
    for c in children:
        _, err = c.proc.communicate(timeout=120)
        assert c.proc.returncode == 0, f"{c.role} (seed {seed}): {err.decode()[-2000:]}"
    errors = _exceptions(children)
    acks = sum(1 for line in roller.lines() if line.startswith("ack "))
    reads = sum(int(line.split()[1]) for c in followers for line in c.lines()
                if line.startswith("reads "))
    rolls = sum(int(line.split()[1]) for line in roller.lines() if line.startswith("rolls "))
    reliability_report(
        f"roll races: 1 process appending ({acks} appends) and rolling then deleting the old "
        f"active segment ({rolls} times, delete_records every 1-3 appends), {FOLLOWERS} "
        f"following "
        f"for {seconds:.0f} s: {reads} reads, {len(errors)} exceptions (seed {seed})"
    )
    assert acks > 50 and reads > 100, (acks, reads)
    assert not errors, f"seed {seed}: {len(errors)} exceptions:\n" + "\n".join(errors[:20])


def run_churn(
    tmp_path: Path, seconds: float, report: Callable[[str], None], *,
    producers: int = 2, consumers: int = 3,
) -> None:
    logstore.metadata.OFFSETS_SEGMENT_BYTES = churn_worker.OFFSETS_SEGMENT_BYTES  # as
    try:  # the children have it (this process reads the offsets log at the end)
        _run_churn(tmp_path, seconds, report, producers, consumers)
    finally:
        logstore.metadata.OFFSETS_SEGMENT_BYTES = OFFSETS_SEGMENT_BYTES


def _run_churn(
    tmp_path: Path, seconds: float, report: Callable[[str], None], producers: int,
    consumers: int,
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    data = tmp_path / "d"
    _setup(data, tmp_path / "setup.out")
    children: list[Child] = []
    live: dict[str, Child] = {}
    serial = 0

    def spawn(role: str, slot: str) -> None:
        nonlocal serial
        serial += 1
        child = Child(role, data, tmp_path / f"{slot}-{serial}.out", seconds + 30,
                      rng.randrange(1 << 30))
        children.append(child)
        live[slot] = child

    for i in range(producers):
        spawn("producer", f"producer{i}")
    for i in range(consumers):
        spawn("consumer", f"consumer{i}")
    kills = {"producer": 0, "consumer": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.2, 1.2))
        slot = rng.choice(sorted(live))
        child = live[slot]
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGKILL)
            kills[child.role] += 1
        child.proc.wait(timeout=60)
        spawn(child.role, slot)
    for child in live.values():  # the end: stop the rest the same way
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGKILL)
    for child in children:
        child.proc.wait(timeout=60)
        if child.proc.stderr is not None:
            child.proc.stderr.close()
    errors = _exceptions(children)
    acked: dict[tuple[int, int], str] = {}
    for child in children:
        if child.role == "producer":
            for line in child.lines():
                parts = line.split()
                if parts[0] == "ack" and len(parts) == 4:
                    acked[(int(parts[1]), int(parts[2]))] = parts[3]
    handled = sum(1 for c in children if c.role == "consumer" for line in c.lines()
                  if line.startswith("h "))
    refused = sum(1 for c in children if c.role == "consumer" for line in c.lines()
                  if line == "refused")
    lost = 0
    present = 0
    with logstore.open(data) as store:
        for partition in range(churn_worker.PARTITIONS):
            plog = store.partition(churn_worker.TOPIC, partition)
            start, end = plog.log_start_offset, plog.log_end_offset
            values: dict[int, str] = {}
            offset = start
            while offset < end:
                records = plog.read_records(offset)
                values.update({r.offset: (r.value or b"").decode() for r in records})
                offset = records[-1].offset + 1
            for (p, o), value in acked.items():
                if p == partition and o >= start:
                    present += 1
                    lost += values.get(o) != value
            committed = store.offsets.committed(
                churn_worker.GROUP, TopicPartition(churn_worker.TOPIC, partition))
            assert committed is None or committed.offset <= end, (partition, committed, end)
        offsets_log = store.offsets._log
        cleaned = offsets_log.compaction_state()
        offsets_bytes = offsets_log.size_bytes
        commits = offsets_log.log_end_offset
    report(
        f"churn: {seconds:.0f} s, {kills['consumer']} consumer and {kills['producer']} "
        f"producer SIGKILLs, {len(acked)} acknowledged ({present} still above the log "
        f"start, {lost} lost), {handled} records handled by consumers, {refused} commits "
        f"refused in a rebalance, {len(errors)} exceptions; offsets log: {commits} commit "
        f"records, {cleaned.runs} cleaner runs, {offsets_bytes:,} bytes left (seed {seed})"
    )
    assert not errors, f"seed {seed}: {len(errors)} exceptions:\n" + "\n".join(errors[:20])
    assert lost == 0, f"seed {seed}: {lost} acknowledged records lost"
    assert len(acked) > 300 and handled > 100, (len(acked), handled)  # progress, when busy
    assert cleaned.runs > 0, f"seed {seed}: the offsets log ({commits} records) never compacted"


def test_churn_producers_and_consumers_killed_while_segments_roll(
    tmp_path: Path, reliability_report: Callable[[str], None]
) -> None:
    run_churn(tmp_path, 15.0, reliability_report)


@pytest.mark.soak
def test_churn_soak(tmp_path: Path, reliability_report: Callable[[str], None]) -> None:
    run_churn(tmp_path, float(os.environ.get("LOGSTORE_CHURN_S", "100")), reliability_report,
              producers=3, consumers=4)


_HALF_ROLL_CHILD = """
import os, signal, sys
import logstore
from logstore.storage.log import PartitionLog
from logstore.storage.segment import Segment

rolled = []
original_roll, original_append = PartitionLog._roll, Segment.append

def roll(self, now):
    original_roll(self, now)
    rolled.append(self.active_segment.base_offset)

def append(self, parts, headers):
    position = original_append(self, parts, headers)
    if rolled:  # the new segment holds a batch; the head does not name it yet
        os.kill(os.getpid(), signal.SIGKILL)
    return position

PartitionLog._roll, Segment.append = roll, append
store = logstore.open(sys.argv[1])
while True:
    store.append("t", b"x" * 40, partition=0)
"""


def test_a_writer_killed_in_the_middle_of_a_roll_leaves_no_batch_in_the_next_segment(
    tmp_path: Path,
) -> None:
    """A writer killed after creating the next segment and writing a batch to it, but
    before rewriting the head: while other processes keep the partition open, the next
    writer rolls to the same base offset. Before the fix it appended after the dead
    writer's unacknowledged batch, so the segment held offset N twice and every read of
    it raised CorruptRecordError ("the offsets do not follow on"); found by the churn
    soak."""
    data = tmp_path / "d"
    with logstore.open(data) as store:
        store.create_topic("t", 1, segment_bytes=1024)
        for _ in range(5):
            store.append("t", b"y" * 40, partition=0)
        plog = store.partition("t", 0)  # held open: the next writer joins via the head
        proc = subprocess.run([sys.executable, "-c", _HALF_ROLL_CHILD, str(data)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        bases = sorted(int(p.stem) for p in (data / "t-0").glob("*.log"))
        assert len(bases) == 2, bases
        plog.refresh()
        end = plog.log_end_offset  # the head's: the dead writer's last batch is not in it
        assert end == bases[1]
        for i in range(60):  # a roll to bases[1] again, then more
            store.append("t", b"z%d" % i, partition=0)
        records = []
        offset = plog.log_start_offset
        while offset < plog.log_end_offset:
            got = plog.read_records(offset)
            records += got
            offset = got[-1].offset + 1
        assert [r.offset for r in records] == list(range(plog.log_end_offset))
        assert [r.value for r in records[end:]] == [b"z%d" % i for i in range(60)]
