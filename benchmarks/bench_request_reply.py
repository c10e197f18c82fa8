#!/usr/bin/env python3
"""Request-reply benchmark (issue 16): round-trip latency of 1,000 concurrent requests from
4 requester processes to 2 responder processes, against the one-way produce -> consume
latency of the same burst on the same store (the baseline).

    .venv/bin/python benchmarks/bench_request_reply.py --runs 3
    .venv/bin/python benchmarks/bench_request_reply.py --quick     # smoke run

Each run uses a fresh store and fresh processes:

* ``concurrent``: 4 requester processes (one reply partition each) each fire 250 requests
  at once (``request_async``) on a go signal; 2 responders (one group) answer with the
  request's value. Round trip: ``request_async()`` called -> reply future resolved.
* ``sequential``: one requester, 200 requests one after the other (``request()``).
* ``one-way`` (baseline): 4 producer processes each send 250 records at once (linger_ms=0,
  the requests' settings) to a 4-partition topic; one consumer process (assigned, no group)
  reads them. Latency: ``send()`` called -> record returned by ``poll()``.
* ``one-way-seq`` (baseline of ``sequential``): one producer process sends 200 records one
  after the other (each acknowledged before the next), one consumer process reads them.

Times are ``time.monotonic_ns()`` (one clock for every process on Linux). The table
(medians of the runs' p50/p99/max, in ms, with the runs' min and max) goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_and_memory, git_commit, percentile

import logstore
from logstore.patterns.request_reply import Requester, Responder
from logstore.types import ConsumerRecord, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
REQUESTERS, RESPONDERS = 4, 2


# --------------------------------------------------------------------------- workers


def _respond(data: str, stop_file: str) -> None:
    def handler(record: ConsumerRecord) -> bytes | None:
        return record.value

    with logstore.open(data) as store, Responder(store, "rpc", "svc", handler) as responder:
        print("ready", flush=True)
        while not os.path.exists(stop_file):
            responder.poll_once(50)


def _request(data: str, partition: int, count: int, mode: str) -> None:
    with logstore.open(data) as store, Requester(
        store, reply_topic="rpc.replies", reply_partition=partition, timeout_ms=60_000
    ) as requester:
        requester.request("rpc", b"warm-up")  # both sides' metadata and group are settled
        print("ready", flush=True)
        sys.stdin.readline()  # go
        latencies = []
        if mode == "seq":
            for i in range(count):
                started = time.monotonic_ns()
                requester.request("rpc", b"%d" % i)
                latencies.append(time.monotonic_ns() - started)
        else:
            done = [0] * count
            started = [0] * count
            futures = []
            for i in range(count):
                started[i] = time.monotonic_ns()
                future = requester.request_async("rpc", b"%d" % i)
                future.add_done_callback(lambda _f, i=i: done.__setitem__(i, time.monotonic_ns()))
                futures.append(future)
            for future in futures:
                future.result()
            latencies = [d - s for d, s in zip(done, started, strict=True)]
        print(json.dumps(latencies), flush=True)


def _produce(data: str, count: int, mode: str) -> None:
    with logstore.open(data) as store, store.producer(linger_ms=0) as producer:
        producer.send("oneway", b"warm-up").result()
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(count):
            sent = producer.send("oneway", b"%d" % time.monotonic_ns())
            if mode == "seq":
                sent.result()
        producer.flush()
        print("[]", flush=True)


def _consume(data: str, total: int) -> None:
    with logstore.open(data) as store, store.consumer() as consumer:
        partitions = store.describe_topic("oneway").partitions
        tps = [TopicPartition("oneway", p) for p in range(len(partitions))]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        for tp in tps:
            consumer.position(tp)
        print("ready", flush=True)
        latencies: list[int] = []
        deadline = time.monotonic() + 120
        while len(latencies) < total and time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=100)
            now = time.monotonic_ns()
            latencies += [now - int(r.value or b"0") for r in records if r.value != b"warm-up"]
        print(json.dumps(latencies), flush=True)


# --------------------------------------------------------------------------- one run


def _spawn(*args: object) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        raise RuntimeError(f"worker {args!r} did not start: {line!r}")
    return proc


def _go_and_collect(procs: list[subprocess.Popen[str]]) -> list[int]:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    found: list[int] = []
    for proc in procs:
        assert proc.stdout is not None
        found += json.loads(proc.stdout.readline())
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(60)
    return found


def one_run(workdir: Path, per_requester: int, sequential: int) -> dict[str, list[int]]:
    data = str(workdir / "store")
    with logstore.open(data) as store:
        store.create_topic("rpc", partitions=4)
        store.create_topic("rpc.replies", partitions=REQUESTERS)
        store.create_topic("oneway", partitions=4)
    stop = workdir / "stop"
    responders = [_spawn("_respond", data, stop) for _ in range(RESPONDERS)]
    out: dict[str, list[int]] = {}
    try:
        requesters = [
            _spawn("_request", data, n, per_requester, "burst") for n in range(REQUESTERS)
        ]
        out["concurrent"] = _go_and_collect(requesters)
        out["sequential"] = _go_and_collect([_spawn("_request", data, 0, sequential, "seq")])
    finally:
        stop.touch()
        for proc in responders:
            proc.wait(60)
    for name, producers, count, mode in (
        ("one-way", REQUESTERS, per_requester, "burst"),
        ("one-way-seq", 1, sequential, "seq"),
    ):
        consumer = _spawn("_consume", data, producers * count)
        _go_and_collect([_spawn("_produce", data, count, mode) for _ in range(producers)])
        assert consumer.stdout is not None
        out[name] = json.loads(consumer.stdout.readline())
        consumer.wait(60)
    expected = {"concurrent": REQUESTERS * per_requester, "sequential": sequential,
                "one-way": REQUESTERS * per_requester, "one-way-seq": sequential}
    for name, values in out.items():
        if len(values) != expected[name]:
            raise RuntimeError(f"{name}: {len(values)} latencies, expected {expected[name]}")
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        kind, args = sys.argv[1], sys.argv[2:]
        if kind == "_respond":
            _respond(*args)
        elif kind == "_request":
            _request(args[0], int(args[1]), int(args[2]), args[3])
        elif kind == "_produce":
            _produce(args[0], int(args[1]), args[2])
        elif kind == "_consume":
            _consume(args[0], int(args[1]))
        return
    parser = argparse.ArgumentParser(description="request-reply latency benchmark")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--json", help="also write every run's figures as JSON here")
    args = parser.parse_args()
    per_requester, sequential = (25, 20) if args.quick else (250, 200)
    runs: list[dict[str, dict[str, float]]] = []
    for n in range(args.runs):
        print(f"run {n + 1}/{args.runs} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-rr-") as tmp:
            started = time.monotonic()
            found = one_run(Path(tmp), per_requester, sequential)
            elapsed = time.monotonic() - started
        summary = {}
        for name, values in found.items():
            ms = sorted(v / 1e6 for v in values)
            summary[name] = {"p50": percentile(ms, 50), "p99": percentile(ms, 99),
                             "max": ms[-1], "n": len(ms)}
        print(f"  done in {elapsed:.1f} s", file=sys.stderr, flush=True)
        runs.append(summary)
    print(f"requests: {REQUESTERS} requester processes x {per_requester} concurrent, "
          f"{RESPONDERS} responder processes; medians of {args.runs} runs (min-max)\n")
    print("| case | records | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    labels = {
        "concurrent": "round trip, 1,000 concurrent requests (4 procs -> 2 responders)",
        "sequential": "round trip, one request at a time (1 proc)",
        "one-way": "baseline: one-way produce -> consume, same burst (4 procs -> 1)",
        "one-way-seq": "baseline: one-way produce -> consume, one record at a time (1 -> 1)",
    }
    if args.quick:
        labels = {k: v.replace("1,000", str(REQUESTERS * per_requester)) for k, v in labels.items()}
    for name, label in labels.items():
        cells = []
        for stat in ("p50", "p99", "max"):
            values = [r[name][stat] for r in runs]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        print(f"| {label} | {runs[0][name]['n']:,} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "runs": runs, "machine": cpu_and_memory(), "commit": git_commit(ROOT),
        }, indent=1))


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
