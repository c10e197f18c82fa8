#!/usr/bin/env python3
"""Wire server benchmarks (issue 13): ``logstore serve`` beside a real Apache Kafka broker
on the same machine, in the same run, with the same client (confluent-kafka, 100-byte
values).

    .venv/bin/python benchmarks/bench_server.py --runs 3     # the full run (~4 min)
    .venv/bin/python benchmarks/bench_server.py --quick      # smoke run

Options: as ``run.py`` (``--runs``, ``--quick``, ``--only produce,consume``, ``--json``,
``--workdir``), plus ``--targets kafka,logstore`` (both by default; the Kafka broker is
resolved and started by ``tests/kafka_broker.py``, as ``./dev kafka start`` does, and
stopped at the end if this run started it).

What is measured, per target, alternating kafka / logstore in every run:

* produce: one client process sends N (1,000,000) records (no key, 100-byte value) to a new topic of
  one partition with confluent-kafka's defaults (``linger.ms=5``, ``acks=all``, no
  compression) and waits for every delivery report: records/s from the first send to the
  last report;
* consume: one client process reads N (3,000,000) records back (assigned partition, from
  offset 0, confluent-kafka's defaults but ``fetch.queue.backoff.ms=10``: the default
  1 s pause whenever the client's queue is full made every run take 2.7, 3.6 or 4.4 s
  on either server): records/s from the assignment to the last record.

Each client runs in its own process (this file re-executed as ``_client``), so the
figures include the broker's work, the network round trips on loopback and the client's
own. logstore serves its default topic config (fsync before every acknowledgement); the
"flush.ms=1000" rows make the same topic with a one-second fsync interval, closer to
Kafka's default of leaving writes to the OS (produce only: reads do not depend on it).
The ratio rows are logstore / Kafka of the
medians. The CPU rows are the broker process's user + system time during the client's run
(from /proc), per million records: with the client on the same two cores, a broker that
uses less leaves more to the client.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import Ctx, Metric, git_commit, parse_args, progress, report, run_benchmarks

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.kafka_broker import running as kafka_running  # noqa: E402
from tests.kafka_broker import start as kafka_start  # noqa: E402
from tests.kafka_broker import stop as kafka_stop  # noqa: E402
from tests.server_process import ServedStore, start_server  # noqa: E402

VALUE_SIZE = 100


class Sizes:
    def __init__(self, produce: int, consume: int) -> None:
        self.produce = produce
        self.consume = consume
        """(The consumer reads ~2 M records/s: a smaller count times its start-up.)"""


FULL = Sizes(1_000_000, 3_000_000)
QUICK = Sizes(20_000, 20_000)


class Targets:
    """The two brokers of one benchmark run (started once, shared by every benchmark)."""

    def __init__(self, workdir: Path, wanted: list[str]) -> None:
        self.wanted = wanted
        self.bootstrap: dict[str, str] = {}
        self.pid: dict[str, int] = {}
        self._started_kafka = False
        self._logstore: ServedStore | None = None
        if "kafka" in wanted:
            broker = kafka_running()
            if broker is None:
                progress("starting the Kafka broker (tests/kafka_broker.py)")
                broker = kafka_start()
                self._started_kafka = True
            self.bootstrap["kafka"] = broker.bootstrap
            self.pid["kafka"] = broker.pid
        if "logstore" in wanted:
            data = workdir / "logstore-data"
            data.mkdir(parents=True, exist_ok=True)
            self._logstore = start_server(data)
            self.bootstrap["logstore"] = self._logstore.bootstrap
            self.pid["logstore"] = self._logstore.proc.pid

    def close(self) -> None:
        if self._logstore is not None:
            self._logstore.stop()
        if self._started_kafka:
            kafka_stop()


_RUN: dict[str, Targets] = {}
"""The run's targets, under "targets" (set by main, read by the benchmarks)."""


def _client(*args: str) -> dict[str, Any]:
    """Run this file as ``_client args...`` and return the JSON line it prints."""
    done = subprocess.run([sys.executable, __file__, "_client", *args], capture_output=True,
                          text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"client {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _cpu_s(pid: int) -> float:
    """CPU time (user + system, seconds) process ``pid`` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cases(targets: Targets, kind: str) -> list[tuple[str, str, dict[str, str]]]:
    cases: list[tuple[str, str, dict[str, str]]] = [(t, t, {}) for t in targets.wanted]
    if "logstore" in targets.wanted and kind == "produce":  # reads do not depend on it
        cases.append(("logstore", "logstore, flush.ms=1000", {"flush.ms": "1000"}))
    return cases


def _bench(ctx: Ctx, kind: str) -> list[Metric]:
    """Produce then consume N records per target and run; ``kind`` picks the rows."""
    targets = _RUN["targets"]
    n = ctx.sizes.produce if kind == "produce" else ctx.sizes.consume
    rows: dict[str, Metric] = {}
    cpu: dict[str, Metric] = {}
    for run in range(ctx.runs):
        for target, label, config in _cases(targets, kind):
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            bootstrap, pid = targets.bootstrap[target], targets.pid[target]
            before = _cpu_s(pid)
            made = _client("produce", bootstrap, topic, str(n), json.dumps(config))
            if kind == "consume":
                before = _cpu_s(pid)
                made = _client("consume", bootstrap, topic, str(n))
            used = _cpu_s(pid) - before
            rate = made["rate"]
            row = rows.setdefault(label, Metric(
                kind, f"{label}: {n:,} records of {VALUE_SIZE} B, 1 partition, confluent-kafka",
                "records/s"))
            row.values.append(rate)
            cpu.setdefault(label, Metric(
                kind, f"{label}: the server's CPU time per million records", "ms"
            )).values.append(used / n * 1e9)
            progress(f"{kind} run {run + 1}: {label}: {rate:,.0f} records/s, server CPU "
                     f"{used:.2f} s")
    out = [*rows.values(), *cpu.values()]
    kafka = rows.get("kafka")
    for label, row in rows.items():
        if label != "kafka" and kafka is not None:
            ratio = Metric(kind, f"ratio {label} / kafka (medians)", "x",
                           target=0.5 if kind == "produce" else 1.0)
            ratio.values = [row.median / kafka.median]
            out.append(ratio)
    return out


def bench_produce(ctx: Ctx) -> list[Metric]:
    return _bench(ctx, "produce")


def bench_consume(ctx: Ctx) -> list[Metric]:
    return _bench(ctx, "consume")


BENCHMARKS: dict[str, Callable[[Ctx], list[Metric]]] = {
    "produce": bench_produce,
    "consume": bench_consume,
}


# --------------------------------------------------------------------------- clients


def _produce(bootstrap: str, topic: str, n: int, config: dict[str, str]) -> dict[str, Any]:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    failed: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    value = b"v" * VALUE_SIZE
    produce, poll = producer.produce, producer.poll
    started = time.perf_counter()
    for i in range(n):
        while True:
            try:
                produce(topic, value, on_delivery=report)
                break
            except BufferError:  # the client's queue is full: let deliveries drain it
                poll(0.005)
        if i % 1000 == 0:
            poll(0)
    left = producer.flush(120)
    elapsed = time.perf_counter() - started
    if left or failed:
        raise SystemExit(f"{left} records undelivered, {len(failed)} failed: {failed[:3]}")
    return {"rate": n / elapsed, "seconds": elapsed}


def _consume(bootstrap: str, topic: str, n: int) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"bench-{topic}",
        "enable.auto.commit": False,
        # librdkafka stops fetching for 1 s (its default) each time its local queue is
        # full: runs then took 2.7, 3.6 or 4.4 s depending on how many such pauses fell
        # in, on either server; 10 ms measures the fetch path instead of that timer
        "fetch.queue.backoff.ms": 10,
    })
    started = time.perf_counter()  # from the first fetch (the connection is made at once)
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = 0
    deadline = time.monotonic() + 300
    while got < n and time.monotonic() < deadline:
        # never ask for more than is left: consume() would wait out its timeout for them
        got += sum(1 for m in consumer.consume(min(10_000, n - got), 1.0) if m.error() is None)
    elapsed = time.perf_counter() - started
    consumer.close()
    if got < n:
        raise SystemExit(f"read {got} of {n} records")
    return {"rate": n / elapsed, "seconds": elapsed}


def _client_main(argv: list[str]) -> int:
    kind, bootstrap, topic, n = argv[0], argv[1], argv[2], int(argv[3])
    if kind == "produce":
        result = _produce(bootstrap, topic, n, json.loads(argv[4]))
    else:
        result = _consume(bootstrap, topic, n)
    print(json.dumps(result))
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        return _client_main(argv[1:])
    targets_parser = argparse.ArgumentParser(add_help=False)
    targets_parser.add_argument("--targets", default="kafka,logstore")
    known, rest = targets_parser.parse_known_args(argv)
    wanted = [t.strip() for t in known.targets.split(",") if t.strip()]
    args, names = parse_args(__doc__, BENCHMARKS, rest)
    signal.signal(signal.SIGTERM, _terminate)
    commit = git_commit(ROOT)
    workdir = Path(args.workdir).resolve() / f"server-{os.getpid()}"
    ctx = Ctx(args.runs, QUICK if args.quick else FULL, workdir / "scratch")
    started = datetime.datetime.now().astimezone()
    command = " ".join([".venv/bin/python benchmarks/bench_server.py", *argv])
    targets = _RUN["targets"] = Targets(workdir, wanted)
    try:
        metrics, elapsed = run_benchmarks(ctx, names, BENCHMARKS, command)
    finally:
        targets.close()
        shutil.rmtree(workdir, ignore_errors=True)
    info = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "commit": commit}
    report("logstore serve beside Apache Kafka", f"at commit {commit}", metrics, ctx, args,
           command, started, elapsed, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
