"""RetryingConsumer across real processes (issue 16): a worker SIGKILLed mid-run and a
new one started in its place lose no record: every input ends handled or dead-lettered."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import logstore
from logstore import headers as h
from tests.integration.workers import Worker

RETRY_WORKER = str(Path(__file__).with_name("retry_worker.py"))


def _spawn(data: Path, ledger: Path, idle_ms: int) -> Worker:
    return Worker([sys.executable, RETRY_WORKER, str(data), "jobs", "workers",
                   str(ledger), str(idle_ms)])


def _start(data: Path, ledger: Path, idle_ms: int) -> Worker:
    worker = _spawn(data, ledger, idle_ms)
    worker.wait_ready()
    return worker


def _handled(ledger: Path) -> list[str]:
    if not ledger.exists():
        return []
    return [line.split(" ", 1)[1] for line in ledger.read_text().splitlines()]


def test_retry_worker_killed_mid_run_loses_no_record(tmp_path: Path) -> None:
    data, ledger = tmp_path / "data", tmp_path / "ledger"
    values = [
        f"poison-{i}" if i % 25 == 7 else f"flaky-{i}" if i % 10 == 3 else f"ok-{i}"
        for i in range(400)
    ]
    with logstore.open(data) as store:
        store.create_topic("jobs", partitions=2)
        with store.producer() as producer:
            for i, value in enumerate(values):
                producer.send("jobs", value.encode(), key=b"k%d" % i)
    # both started at once: one started after the other was ready could find it (nearly)
    # done, the start of a process taking long on a busy machine (a parallel test run)
    victim, other = _spawn(data, ledger, 60_000), _spawn(data, ledger, 1500)
    workers = [victim, other]
    try:
        for worker in workers:
            worker.wait_ready()
        deadline = time.monotonic() + 30
        while len(_handled(ledger)) < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
        assert len(set(_handled(ledger))) < len(values) - 16  # killed mid-run
        workers.append(_start(data, ledger, 1500))  # the successor
        for worker in workers[1:]:
            _, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err
    finally:  # none left running (to be reaped in another test) when an assertion fails
        for worker in workers:
            if worker.running():
                worker.kill()
                worker.communicate(timeout=30)
    with logstore.open(data) as store:
        dead = []
        for p in range(len(store.describe_topic("jobs.dlq").partitions)):
            dead += store.read("jobs.dlq", p, 0)
    dead_values = {(r.value or b"").decode() for r in dead}
    handled = set(_handled(ledger))
    poison = {v for v in values if v.startswith("poison")}
    assert dead_values == poison  # dead-lettered: exactly the poison records
    assert handled == set(values) - poison  # the rest handled, none lost
    for record in dead:
        assert dict(record.headers)[h.DLQ_ATTEMPTS] == b"3"
        assert dict(record.headers)[h.DLQ_ORIGINAL_TOPIC] == b"jobs"
