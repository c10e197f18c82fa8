"""Idempotent producers across kill -9 (logstore.storage.producing; kafka.md §5.1).

Two child processes (``producer_worker.py``), two producer ids, append idempotent batches
to one shared partition (tiny segments, so they roll, and producer snapshots every few
batches; each checks its batches against the other's through the head) and are
SIGKILLed at random moments: in an append, a roll, a snapshot write. The parent then
does what each producer's client would: it reopens the partition (crash recovery,
producer state from the newest snapshot plus a replay of the log after it) and retries
the batch that was in flight, then retries each of the last 5 acknowledged batches. Every retry must
land exactly once: the in-flight batch is written if the kill came before it reached the
log and answered with its offsets if not; an acknowledged batch is answered with the
offsets it was acknowledged at, and nothing is written. Now and then the parent closes
the log cleanly (a snapshot at the log end) instead of dropping it (the next child then
replays), changes the flush policy, or starts a new producer epoch.

At the end the log holds every acknowledged batch, once each, in order, and nothing
else; ``verify`` finds nothing to repair that is not repairable.

The power-loss test records a producer's appends (flush "always", rolls, snapshots every
4 batches, a clean close) through ``crashfs.RecordingFS`` and opens a sample of the crash
states POSIX allows (snapshot files torn, lost, renamed or not; see ``crashfs.py``): in
each, every acknowledged batch is in the log at its offsets, no batch is there twice,
a retry of each of the producer's last 5 batches in the log is answered with their
offsets and writes nothing, a gap is refused and the next batch goes in.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logstore.config import TopicConfig
from logstore.errors import OutOfOrderSequenceError
from logstore.storage import log as log_module
from logstore.storage import producing
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.storage.plan import CORRUPT
from logstore.storage.verify import verify_partition
from logstore.types import Record
from tests.conftest import FakeClock
from tests.reliability.crashfs import CrashModel, CrashState, RecordingFS, remove_tree, scratch_root

WORKER = str(Path(__file__).with_name("producer_worker.py"))
ROOT = str(Path(__file__).resolve().parents[2])
CYCLES = int(os.environ.get("LOGSTORE_PRODUCER_KILL_CYCLES", "24"))
SEED = int(os.environ.get("LOGSTORE_KILL_SEED", str(random.randrange(2**32))))
PIDS = (31337, 4711)
SEGMENT_BYTES = 2048

Batch = tuple[int, int, int, int, int]  # epoch, sequence, count, base offset, last offset


@dataclasses.dataclass
class Producer:
    """What the parent knows of one producer id: as its client would."""

    pid: int
    epoch: int = 0
    sequence: int = 0
    acked: list[Batch] = dataclasses.field(default_factory=list)
    sent: tuple[int, int] | None = None  # in flight when its process was killed

    def value(self, epoch: int, sequence: int) -> bytes:
        return b"%d:%d:%d" % (self.pid, epoch, sequence)

    def take(self, lines: list[str]) -> None:
        """Read a killed child's output: what it sent, what was acknowledged."""
        self.sent = None
        for line in lines:
            kind, *fields = line.split()
            if kind == "s":
                self.sent = (int(fields[0]), int(fields[1]))
            else:
                seq, count, base, last = map(int, fields)
                assert self.sent == (seq, count), f"seed {SEED}: ack {line!r} for {self.sent}"
                self.acked.append((self.epoch, seq, count, base, last))
                self.sent, self.sequence = None, seq + count

    def retry(self, plog: PartitionLog, epoch: int, sequence: int, count: int) -> tuple[int, int]:
        now = time.time_ns() // 1_000_000  # a producer's state expires a day after this
        result = plog.append_records(
            [(now, None, self.value(epoch, sequence + i), ()) for i in range(count)],
            producer_id=self.pid, producer_epoch=epoch, base_sequence=sequence,
        )
        return result.base_offset, result.last_offset


def _start(directory: Path, producer: Producer, flush: str, seed: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, WORKER, str(directory), "--pid", str(producer.pid), "--epoch",
         str(producer.epoch), "--sequence", str(producer.sequence), "--seed", str(seed),
         "--flush", flush, "--segment-bytes", str(SEGMENT_BYTES)],
        stdout=subprocess.PIPE, cwd=ROOT, text=True,
    )
    assert child.stdout is not None
    ready = child.stdout.readline()
    assert ready == "ready\n", f"the child did not start: {ready!r}"
    return child


def _kill(child: subprocess.Popen[str]) -> list[str]:
    assert child.stdout is not None
    try:
        child.send_signal(signal.SIGKILL)
        return child.stdout.read().splitlines()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_kill9_idempotent_producers_land_every_batch_exactly_once(
    tmp_path: Path, reliability_report: Callable[[str], None]
) -> None:
    rng = random.Random(SEED)
    directory = tmp_path / "p"
    producers = [Producer(pid) for pid in PIDS]
    in_flight_written = in_flight_new = retries = clean_closes = 0
    for cycle in range(CYCLES):
        flush = rng.choice(["always", "interval", "never"])
        for p in producers:
            if cycle and rng.random() < 0.1:
                p.epoch, p.sequence = p.epoch + 1, 0  # a new instance: its epoch is bumped
        children = [_start(directory, p, flush, rng.randrange(2**32)) for p in producers]
        time.sleep(rng.uniform(0.002, 0.08))
        for p, child in zip(producers, children, strict=True):
            p.take(_kill(child))
            time.sleep(rng.uniform(0, 0.01))
        where = f"seed {SEED}, cycle {cycle}"

        plog = PartitionLog(str(directory), TopicConfig(flush=flush, segment_bytes=SEGMENT_BYTES))
        for p in producers:
            end = plog.log_end_offset
            if p.sent is not None:  # the client retries the batch it got no answer for
                base, last = p.retry(plog, p.epoch, *p.sent)
                if base < end:
                    in_flight_written += 1
                else:
                    in_flight_new += 1
                p.acked.append((p.epoch, p.sent[0], p.sent[1], base, last))
                p.sequence = p.sent[0] + p.sent[1]
        end = plog.log_end_offset
        for p in producers:
            for e, seq, count, base, last in [b for b in p.acked if b[0] == p.epoch][-5:]:
                got = p.retry(plog, e, seq, count)
                assert got == (base, last), f"{where}: retry of {p.pid}/{seq}"
                retries += 1
        assert plog.log_end_offset == end, f"{where}: a retry was written again"
        if rng.random() < 0.4:
            plog.close()
            clean_closes += 1
        else:
            plog._abandon()

    plog = PartitionLog(str(directory), TopicConfig(segment_bytes=SEGMENT_BYTES))
    written = sorted((b[3], p, b) for p in producers for b in p.acked)
    expected = [
        p.value(e, seq + i) for _, p, (e, seq, count, _, _) in written for i in range(count)
    ]
    records: list[Record] = []
    while len(records) < plog.log_end_offset:
        records += plog.read_records(len(records), max_bytes=1 << 30)
    assert [r.offset for r in records] == list(range(len(records)))
    assert [r.value for r in records] == expected, f"seed {SEED}: lost or repeated records"
    for _, p, (e, seq, count, base, last) in written:
        assert records[base].value == p.value(e, seq)
        assert records[last].value == p.value(e, seq + count - 1)
    plog.close()
    report = verify_partition(FileSystem(), str(directory))
    assert [f for f in report.findings if f.kind == CORRUPT] == []
    reliability_report(
        f"producer state under kill -9: {CYCLES} cycles of {len(PIDS)} producer processes "
        f"sharing a partition, {len(written)} batches, {retries} retries of acknowledged "
        f"batches all answered with their offsets, in-flight batch found written "
        f"{in_flight_written} times and written anew {in_flight_new} times, {clean_closes} "
        f"clean closes, 0 lost, 0 repeated (seed {SEED})"
    )


# --------------------------------------------------------------------------- power loss

T0 = 1_700_000_000_000
POWER_BUDGET = 3000
"""Crash states checked (a seeded sample when there are more)."""


def _power_workload(
    root: str, flush: str
) -> tuple[RecordingFS, list[tuple[int, int, int, int, int]]]:
    """A producer's appends under the recorder: ``(ack position, sequence, count, base,
    last)`` per acknowledged batch."""
    directory = os.path.join(root, "p")
    config = TopicConfig(flush=flush, segment_bytes=600)
    os.mkdir(root)
    PartitionLog(directory, config, clock=FakeClock(T0)).close()  # the synced baseline
    rec = RecordingFS(root)
    plog = PartitionLog(directory, config, fs=rec, clock=FakeClock(T0))
    rng = random.Random(SEED)
    acked, sequence = [], 0
    for _ in range(24):
        count = rng.randint(1, 3)
        records = [(T0, None, b"%d/%d" % (sequence, i), ()) for i in range(count)]
        rec.note("append", sequence)
        result = plog.append_records(
            records, producer_id=PIDS[0], producer_epoch=0, base_sequence=sequence
        )
        acked.append((rec.position, sequence, count, result.base_offset, result.last_offset))
        rec.ack("append", sequence)
        sequence += count
        if rng.random() < 0.2:
            plog.append_records([(T0, None, b"plain", ())])
    rec.note("close")
    plog.close()
    rec.ack("close")
    return rec, acked


def _check_power_state(
    directory: str, state: CrashState, acked: list[tuple[int, int, int, int, int]], flush: str
) -> list[str]:
    plog = PartitionLog(directory, TopicConfig(flush="always", segment_bytes=600),
                        clock=FakeClock(T0))
    try:
        records: list[Record] = []
        while len(records) < plog.log_end_offset:
            records += plog.read_records(len(records), max_bytes=1 << 30)
        batches: dict[int, tuple[int, int]] = {}  # sequence -> (base, last) in the log
        for r in records:
            if r.value != b"plain":
                seq, _ = map(int, (r.value or b"").split(b"/"))
                base = batches.get(seq, (r.offset, r.offset))[0]
                batches[seq] = (base, r.offset)
        problems = []
        values = [r.value for r in records if r.value != b"plain"]
        if len(values) != len(set(values)):
            problems.append("a record is in the log twice")
        for position, seq, _, base, last in acked if flush == "always" else []:
            if position < state.first and batches.get(seq) != (base, last):
                problems.append(f"acked batch {seq} at {base}..{last}: {batches.get(seq)}")
        end = plog.log_end_offset
        for seq in sorted(batches)[-5:]:
            count = batches[seq][1] - batches[seq][0] + 1
            got = plog.append_records(
                [(T0, None, b"%d/%d" % (seq, i), ()) for i in range(count)],
                producer_id=PIDS[0], producer_epoch=0, base_sequence=seq,
            )
            if (got.base_offset, got.last_offset) != batches[seq]:
                problems.append(f"retry of {seq} answered {got.base_offset}, not {batches[seq]}")
        if plog.log_end_offset != end:
            problems.append("a retry was written again")
        following = max(batches, default=-1)
        following = following + batches[following][1] - batches[following][0] + 1 if batches else 0
        try:  # (a producer the log holds nothing of may start anywhere)
            if batches:
                plog.append_records([(T0, None, b"gap", ())], producer_id=PIDS[0],
                                    producer_epoch=0, base_sequence=following + 1)
                problems.append(f"a gap after sequence {following - 1} was accepted")
        except OutOfOrderSequenceError:
            pass
        got = plog.append_records([(T0, None, b"next", ())], producer_id=PIDS[0],
                                  producer_epoch=0, base_sequence=following)
        if got.base_offset != end:
            problems.append(f"the next batch went to {got.base_offset}, not {end}")
        return problems
    finally:
        plog.close()


@pytest.mark.parametrize("flush", ["always", "never"])
def test_power_loss_keeps_the_producer_state_of_the_batches_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability_report: Callable[[str], None],
    flush: str,
) -> None:
    """With flush "always" every acknowledged batch survives; with "never" a power cut
    may lose the tail, and snapshots written after the data they cover (not fsynced)
    may survive it: they must not be taken for the log's state."""
    monkeypatch.setattr(producing, "SNAPSHOT_INTERVAL_BATCHES", 4)
    monkeypatch.setattr(log_module, "SNAPSHOT_INTERVAL_BATCHES", 4)
    scratch = scratch_root(str(tmp_path))
    try:
        rec, acked = _power_workload(os.path.join(scratch, "live"), flush)
        model = CrashModel(rec.baseline, rec.trace, seed=SEED)
        states = list(model.distinct_states().values())
        picked = random.Random(SEED).sample(states, min(len(states), POWER_BUDGET))
        violations = []
        for n, state in enumerate(picked):
            directory = os.path.join(scratch, f"state-{n}")
            state.write(directory)
            try:
                problems = _check_power_state(
                    os.path.join(directory, "p"), state, acked, flush
                )
            except Exception as err:  # reported with the state it was seen in
                problems = [f"{type(err).__name__}: {err}"]
            finally:
                remove_tree(directory)
            if problems:
                violations.append(f"{state.kind} ({state.where}): {'; '.join(problems)}")
    finally:
        remove_tree(scratch)
    reliability_report(
        f"producer state under power loss, flush {flush}: {model.crash_points} crash points, "
        f"{len(states)} distinct states, {len(picked)} checked: {len(violations)} violations "
        f"(acknowledged batches kept, retries of the last 5 answered with their offsets; "
        f"seed {SEED})"
    )
    assert not violations, "\n".join(violations[:10])
