"""The README's at-least-once consumer loop (handle a record, then ``commit()``) run in
real processes that are SIGKILLed at random points, 200 cycles (half of them with a second
member of the group, so partitions move while both commit; some with a member frozen by
SIGSTOP for a while): no record is skipped, and each crash duplicates at most what was
handled since the last commit (issue 10, point 1, acceptance). Each consumer is a child
forked from a server that imported logstore once (``zygote.py``), so the 200 cycles take
seconds, not minutes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import logstore
from logstore.types import TopicPartition

ZYGOTE = str(Path(__file__).with_name("zygote.py"))
CYCLES = 200
PARTITIONS = 3
RECORDS = 30_000

pytestmark = pytest.mark.slow


def _ledger(path: Path) -> list[tuple[str, int, int]]:
    out = []
    for line in path.read_bytes().splitlines():
        kind, p, o = line.split()
        out.append((kind.decode(), int(p), int(o)))
    return out


def test_sigkilled_consumers_committing_each_record_skip_nothing(tmp_path: Path) -> None:
    data, ledgers = tmp_path / "d", tmp_path / "ledgers"
    ledgers.mkdir()
    with logstore.open(data) as store:
        store.create_topic("t", PARTITIONS)
        store.append_many("t", [(b"v%d" % i, b"k%d" % i, None, None, None)
                                for i in range(RECORDS)])
    rng = random.Random(os.environ.get("CRASH_SEED", "10.1"))
    zygote = subprocess.Popen(
        [sys.executable, ZYGOTE, str(data), str(ledgers)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert zygote.stdin is not None and zygote.stdout is not None
    statuses = []
    stopped = two = 0

    def start() -> int:
        zygote.stdin.write("go\n")  # type: ignore[union-attr]
        zygote.stdin.flush()  # type: ignore[union-attr]
        return int(zygote.stdout.readline())  # type: ignore[union-attr]

    try:
        for _ in range(CYCLES):
            pids = [start()]
            if rng.random() < 0.5:  # a second member: rebalances while both commit
                time.sleep(rng.uniform(0.0, 0.05))
                pids.append(start())
                two += 1
            if rng.random() < 0.3:  # one is frozen (SIGSTOP) for a while, then goes on
                frozen = rng.choice(pids)
                time.sleep(rng.uniform(0.0, 0.05))
                os.kill(frozen, signal.SIGSTOP)
                time.sleep(rng.uniform(0.0, 0.1))
                os.kill(frozen, signal.SIGCONT)
                stopped += 1
            time.sleep(rng.uniform(0.0, 0.12))  # joining, fetching, handling, committing
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                time.sleep(rng.uniform(0.0, 0.02))
            for pid in pids:
                zygote.stdin.write(f"wait {pid}\n")
                zygote.stdin.flush()
                statuses.append(int(zygote.stdout.readline()))
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
        zygote.stdout.close()
    # every child died of the SIGKILL, none of an error of its own
    assert all(os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL for s in statuses)

    handled: Counter[tuple[int, int]] = Counter()
    uncommitted_per_crash = []
    for path in sorted(ledgers.iterdir()):
        rows = _ledger(path)
        for kind, p, o in rows:
            if kind == "h":
                handled[(p, o)] += 1
        last_commit = max((i for i, r in enumerate(rows) if r[0] == "c"), default=-1)
        uncommitted_per_crash.append(sum(1 for r in rows[last_commit + 1:] if r[0] == "h"))

    with logstore.open(data) as store:
        committed = {p: store.offsets.committed("g", TopicPartition("t", p))
                     for p in range(PARTITIONS)}
    final = {p: (c.offset if c else 0) for p, c in committed.items()}
    skipped = [(p, o) for p, end in final.items() for o in range(end) if (p, o) not in handled]
    duplicated = sum(n - 1 for n in handled.values())
    print(f"\n{len(statuses)} SIGKILLed consumers in {CYCLES} cycles ({two} with two members, "
          f"{stopped} with one SIGSTOPped for a while): {sum(final.values())} records committed, "
          f"{sum(handled.values())} handlings, skipped {len(skipped)}, duplicated "
          f"{duplicated}, handled-but-uncommitted at a crash: at most "
          f"{max(uncommitted_per_crash)}")
    assert sum(final.values()) >= 400  # the consumers did real work between the kills
    assert skipped == []
    assert max(uncommitted_per_crash) <= 1  # one record at a time: at most one in flight
    assert duplicated <= sum(uncommitted_per_crash)
