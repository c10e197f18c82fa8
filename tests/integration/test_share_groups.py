"""Share groups across real worker processes (tests/integration/share_worker.py): a
worker killed with SIGKILL while holding records, a poison record dead-lettered after
exactly ``max_delivery_attempts`` deliveries, and a group stopped mid-way and resumed by
new processes. The ledger is what the workers print: "rec" per delivery, "ack" per
acknowledgement the coordinator applied, "fail" per one it refused."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import logstore
from logstore import headers as h
from logstore.backend import backend_for
from tests.integration.workers import Worker

SHARE_WORKER = str(Path(__file__).with_name("share_worker.py"))


def start(*args: object) -> Worker:
    worker = Worker([sys.executable, SHARE_WORKER, *map(str, args)])
    worker.wait_ready()
    return worker


def lines(workers: list[Worker], kind: str) -> list[list[str]]:
    return [line.split()[1:] for w in workers for line in w.output().splitlines()
            if line.startswith(kind + " ")]


def acked(workers: list[Worker]) -> Counter[int]:
    return Counter(int(offset) for _, offset, _ in lines(workers, "ack"))


def wait_until(done: Callable[[], bool], workers: list[Worker], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        for w in workers:
            assert w.running(), f"worker {w.pid} ended: {w.communicate(5)}"
        assert time.monotonic() < deadline, [w.output()[-2000:] for w in workers]
        time.sleep(0.02)  # polling the workers' output, not a synchronisation


def stop(workers: list[Worker], stop_file: Path) -> None:
    stop_file.touch()
    for w in workers:
        _, err = w.communicate(timeout=30)
        assert w.returncode == 0, err


def fill(path: str, topic: str, values: list[str]) -> None:
    with logstore.open(path) as store:
        store.create_topic(topic, 1)
        store.append_many(topic, [(v.encode(), None, None, None, None) for v in values])


def test_share_killed_worker_records_go_to_another_after_the_lock_timeout(
    tmp_path: Path,
) -> None:
    path, stop_file = str(tmp_path / "s"), tmp_path / "stop"
    fill(path, "jobs", [f"j{i}" for i in range(120)])
    holder = start("hold", path, "jobs", "q", 1000, 5, 10)
    wait_until(lambda: "holding" in holder.output(), [holder])
    held = {int(o) for _, o, _, _ in lines([holder], "rec")}
    holder.kill()  # SIGKILL: its records stay locked until the lock times out
    holder.communicate(timeout=10)
    assert held == set(range(10))
    workers = [start("work", path, "jobs", "q", 1000, 5, stop_file, 5, 0) for _ in range(3)]
    wait_until(lambda: set(acked(workers)) == set(range(120)), workers)
    stop(workers, stop_file)
    assert max(acked(workers).values()) == 1  # every record acknowledged exactly once
    deliveries = Counter(int(o) for _, o, _, _ in lines(workers, "rec"))
    redelivered = {int(o): int(n) for _, o, _, n in lines(workers, "rec") if n != "1"}
    assert held <= set(redelivered) and all(redelivered[o] == 2 for o in held)
    expired_elsewhere = {int(o) for _, o, name in lines(workers, "fail")}
    assert set(redelivered) - held <= expired_elsewhere  # duplicates only after a lock expiry
    # each refused (lock expired) acknowledgement cost exactly one more delivery
    assert sum(deliveries.values()) == 120 + len(lines(workers, "fail"))


def test_share_poison_record_is_dead_lettered_after_exactly_max_attempts(
    tmp_path: Path,
) -> None:
    path, stop_file = str(tmp_path / "s"), tmp_path / "stop"
    values = [f"m{i}" for i in range(30)]
    values[7] = "poison"
    fill(path, "mail", values)
    workers = [start("work", path, "mail", "q", 5000, 3, stop_file, 4, 0, "poison")
               for _ in range(2)]
    with logstore.open(path) as store:
        def finished() -> bool:
            return len(acked(workers)) == 29 and store.has_topic("mail.dlq") and bool(
                store.read("mail.dlq", 0, 0)
            )
        wait_until(finished, workers)
        stop(workers, stop_file)
        (dead,) = store.read("mail.dlq", 0, 0)
        original = store.read("mail", 0, 7, max_records=1)[0]
    poison = sorted(int(n) for _, o, _, n in lines(workers, "rec") if o == "7")
    assert poison == [1, 2, 3]
    assert dead.value == b"poison"
    found = {k: (v or b"").decode() for k, v in dead.headers}
    assert found[h.DLQ_ORIGINAL_TOPIC] == "mail"
    assert found[h.DLQ_ORIGINAL_PARTITION] == "0"
    assert found[h.DLQ_ORIGINAL_OFFSET] == "7"
    assert found[h.DLQ_ORIGINAL_TIMESTAMP] == str(original.timestamp)
    assert found[h.DLQ_ERROR_CLASS] == "ValueError"
    assert found[h.DLQ_ERROR_MESSAGE] == "poison (attempt 3)"
    assert found[h.DLQ_ATTEMPTS] == "3"
    assert set(acked(workers)) == set(range(30)) - {7}


def test_share_group_resumes_after_every_worker_stopped(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    fill(path, "work", [f"w{i}" for i in range(200)])
    first = [start("work", path, "work", "q", 10_000, 5, tmp_path / "stop1", 3, 20)
             for _ in range(2)]
    wait_until(lambda: len(acked(first)) >= 50, first)
    stop(first, tmp_path / "stop1")
    before = acked(first)
    assert 50 <= len(before) < 200
    second = [start("work", path, "work", "q", 10_000, 5, tmp_path / "stop2", 3, 0)
              for _ in range(2)]
    wait_until(lambda: set(before) | set(acked(second)) == set(range(200)), second)
    stop(second, tmp_path / "stop2")
    after = acked(second)
    assert not set(before) & {int(o) for _, o, _, _ in lines(second, "rec")}
    assert set(before).isdisjoint(after) and max((before + after).values()) == 1
    assert all(n == "1" for *_, n in lines(first + second, "rec"))  # no lock expired
    with logstore.open(path) as store:
        (p,) = backend_for(store).describe_share_group("q")["partitions"]
    assert (p["start_offset"], p["end_offset"], p["acquired"]) == (200, 200, 0)
