#!/usr/bin/env python3
"""Share-group throughput (issue 16): 4 worker processes on ONE partition, acknowledging
each record, against a baseline measured in the same run: the same 4 processes as a
classic consumer group on 4 partitions, committing after each poll.

    .venv/bin/python benchmarks/bench_share.py --runs 3          # the full run
    .venv/bin/python benchmarks/bench_share.py --quick --runs 1  # smoke run

Options::

    --runs N        repeat each case N times (default 3); the table shows the median,
                    min and max of the N runs
    --records N     records per run (default 20,000; --quick: 2,000); values of 100 bytes
    --max-records N records per poll of each worker (default 50: 4 x 50 = the share
                    group's default 200 in-flight records per partition)
    --workdir DIR   where the stores go (default: a temporary directory)

Each run makes a fresh store, writes the records (one partition for the share group,
four for the classic group), starts 4 worker processes (``python bench_share.py
--worker``) that wait for a start file, then creates it. A share worker polls (explicit
mode) and acknowledges each record with ``ACCEPT``; the next poll carries the
acknowledgements (one state write, fsynced, per poll, as Kafka's ShareFetch). A classic
worker (``Consumer`` with ``group_id``, subscribed, auto commit off) polls and
``commit()``s after each poll. Each worker reports when it got its first record
(``time.monotonic``, shared by the processes); the parent watches the store every 2 ms
until every record is acknowledged (the share group's start offset) or committed (the
classic group's offsets). The throughput is records / (that moment - the first record):
process start-up and the workers' idle wait at the end are not counted (the classic
group's rebalances are).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import logstore
from logstore.backend import LocalBackend, backend_for
from logstore.client.share import ShareConsumer

WORKERS = 4
IDLE_S = 0.5


def worker(kind: str, data_dir: str, go_file: str, max_records: int) -> None:
    with logstore.open(data_dir) as store:
        if kind == "share":
            share = ShareConsumer(store, "bench", ["share"], max_records=max_records,
                                  acknowledgement_mode="explicit")
        else:
            classic = store.consumer(["classic"], group_id="bench", enable_auto_commit=False,
                                     auto_offset_reset="earliest",
                                     max_poll_records=max_records)
        print("ready", flush=True)
        while not os.path.exists(go_file):
            time.sleep(0.001)
        first = None
        count = 0
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < IDLE_S:
            if kind == "share":
                records: list[object] = list(share.poll(100))  # carries the last acks
                for r in records:
                    share.acknowledge(r)  # type: ignore[arg-type]
            else:
                records = list(classic.poll(100))
                if records:
                    classic.commit()
            if records:
                idle_since = time.monotonic()
                first = first if first is not None else idle_since
                count += len(records)
        if kind == "share":
            share.close()
        else:
            classic.close()
        print(json.dumps({"count": count, "first": first}), flush=True)


def done(kind: str, backend: LocalBackend, records: int) -> bool:
    """Whether every record is acknowledged (share) or committed (classic)."""
    if kind == "share":
        parts = backend.describe_share_group("bench")["partitions"]
        return bool(parts) and parts[0]["start_offset"] >= records
    return sum(c.offset for c in backend.committed_offsets("bench").values()) >= records


def one_run(kind: str, workdir: str, records: int, max_records: int) -> float:
    data_dir = tempfile.mkdtemp(prefix=f"{kind}-", dir=workdir)
    try:
        with logstore.open(data_dir) as store:
            store.create_topic(kind, 1 if kind == "share" else WORKERS)
            value = b"x" * 100
            for start in range(0, records, 1000):
                n = min(1000, records - start)
                store.append_many(kind, [
                    (value, None, None, (start + i) % store.topic(kind).config.partitions, None)
                    for i in range(n)
                ])
        go = os.path.join(data_dir, "go")
        procs = [subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, data_dir, go, str(max_records)],
            stdout=subprocess.PIPE, text=True) for _ in range(WORKERS)]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        with logstore.open(data_dir) as store:
            backend = backend_for(store)
            open(go, "w").close()
            while not done(kind, backend, records):  # observed from outside the workers
                time.sleep(0.002)
            end = time.monotonic()
        reports = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            assert p.returncode == 0, f"{kind} worker failed"
            reports.append(json.loads(out.strip().splitlines()[-1]))
        total = sum(r["count"] for r in reports)
        if total < records or (kind == "share" and total != records):
            raise SystemExit(f"{kind}: {total} records delivered, expected {records}")
        first = min(r["first"] for r in reports if r["first"] is not None)
        busy = sum(1 for r in reports if r["count"])
        print(f"  {kind}: {records / (end - first):,.0f} records/s ({busy} workers got "
              f"records)", file=sys.stderr)
        return records / (end - first)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int)
    parser.add_argument("--max-records", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    records = args.records or (2_000 if args.quick else 20_000)
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-share-")
    os.makedirs(workdir, exist_ok=True)
    results: dict[str, list[float]] = {"share": [], "classic": []}
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}", file=sys.stderr)
        for kind in ("share", "classic"):  # interleaved: both see the same machine state
            results[kind].append(one_run(kind, workdir, records, args.max_records))
    print(f"{records:,} records of 100 bytes, {WORKERS} worker processes, "
          f"{args.max_records} records per poll, {args.runs} runs\n")
    print("| case | records/s (median) | min | max |")
    print("|---|---:|---:|---:|")
    names = {"share": "share group, 1 partition, ack each record (sent by the next poll)",
             "classic": "baseline: classic group, 4 partitions, commit per poll"}
    for kind, values in results.items():
        print(f"| {names[kind]} | {statistics.median(values):,.0f} | {min(values):,.0f} | "
              f"{max(values):,.0f} |")
    share, classic = (statistics.median(results[k]) for k in ("share", "classic"))
    print(f"\nshare / classic: {share / classic:.2f}")


if __name__ == "__main__":
    main()
