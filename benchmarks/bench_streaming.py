#!/usr/bin/env python3
"""Streaming API benchmarks (issue 3): Producer.send(), Consumer poll/iteration, and the
end-to-end latency from a producer process to a consumer process.

    .venv/bin/python benchmarks/bench_streaming.py --runs 3     # the full run (~5 min)
    .venv/bin/python benchmarks/bench_streaming.py --quick      # smoke run (< 20 s)

Options::

    --runs N       repeat every benchmark N times (default 3); the table shows the median
                   of the N runs with their min and max
    --quick        small sizes: a smoke run whose numbers mean little
    --only NAME    run only these benchmarks (comma-separated): producer, consumer, latency,
                   commit
    --json PATH    also write every run's values (and the machine) as JSON to PATH
    --workdir DIR  where the data goes (default benchmarks/.scratch/; deleted afterwards)
    --profile      cProfile each benchmark (the latency benchmark profiles its two worker
                   processes) and print the top functions to stderr; timings are inflated

The markdown table goes to stdout, progress to stderr. The exit status is 0 whether or not
targets are met; it is non-zero only when something fails (records lost, a worker process
dying). The latency benchmark runs its producer and consumer as separate processes by
re-executing this file (``bench_streaming.py _worker ...``); they exit when the parent
goes away (their stdin closes), and the parent kills any still running when it finishes.
What each benchmark measures and the results on the reference machine:
benchmarks/README.md, section "Streaming API (issue 3)".
"""

from __future__ import annotations

import cProfile
import datetime
import itertools
import json
import os
import random
import resource
import shutil
import signal
import statistics
import struct
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    Children,
    Ctx,
    Metric,
    clock,
    git_commit,
    parse_args,
    percentile,
    print_profile,
    progress,
    quiesced,
    report,
    run_benchmarks,
)

import logstore
from logstore.records import scan

KEY_SIZE = 16
VALUE_SIZE = 100
POOL = 10_000  # distinct (value, key) pairs, made before any timer starts
TOPIC = "t"
_SEND_TIME = struct.Struct(">q")  # the first 8 bytes of a latency record's value


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    producer_sends: int  # send() calls per producer trial
    consumer_records: int  # records in the partition the consumer reads
    latency_rate: int  # records/s the latency producer sends
    latency_seconds: float  # measured sending time per latency trial
    latency_warmup_seconds: float  # sent first at the same rate, not counted
    commit_records: int  # records each commit-pattern trial handles


FULL = Sizes(
    producer_sends=1_000_000,
    consumer_records=1_000_000,
    latency_rate=10_000,
    latency_seconds=10.0,
    latency_warmup_seconds=1.0,
    commit_records=200_000,
)
QUICK = Sizes(
    producer_sends=20_000,
    consumer_records=100_000,
    latency_rate=10_000,
    latency_seconds=0.8,
    latency_warmup_seconds=0.2,
    commit_records=20_000,
)


def make_pool(seed: int) -> list[tuple[bytes, bytes]]:
    """``POOL`` distinct ``(value, key)`` pairs of random bytes."""
    rng = random.Random(seed)
    return [(rng.randbytes(VALUE_SIZE), rng.randbytes(KEY_SIZE)) for _ in range(POOL)]


def count_batches(plog: logstore.PartitionLog) -> int:
    """How many record batches the partition holds (headers only, outside any timer)."""
    count, offset, end = 0, plog.log_start_offset, plog.log_end_offset
    while offset < end:
        headers = list(scan(plog.read(offset, 64 << 20).records, verify=False))
        count += len(headers)
        offset = headers[-1].next_offset
    return count


@contextmanager
def maybe_profiled(ctx: Ctx, name: str) -> Iterator[None]:
    if not ctx.profile:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        print_profile(prof, name)


# --------------------------------------------------------------------------- 1. producer


def bench_producer(ctx: Ctx) -> list[Metric]:
    """send() one record per call, then flush(): records/s, per partitions and linger."""
    total = ctx.sizes.producer_sends
    pool = make_pool(seed=1)
    cases = [(1, 5), (4, 5), (1, 0), (4, 0)]  # (partitions, linger_ms)
    metrics: dict[tuple[int, int], Metric] = {}
    for parts, linger in cases:
        what = "default linger_ms=5" if linger else "linger_ms=0 (a write per send)"
        metrics[parts, linger] = Metric(
            "producer", f"send() x{total:,} + flush(), {parts} partition"
            f"{'s' if parts > 1 else ''}, {what}", "records/s",
            target=400_000,
        )
    batches: dict[tuple[int, int], list[int]] = {case: [] for case in cases}
    for run in range(ctx.runs):
        order = cases if run % 2 == 0 else cases[::-1]
        for parts, linger in order:
            directory = ctx.dir(f"producer-{parts}-{linger}")
            with logstore.open(directory) as store:
                store.create_topic(TOPIC, parts, flush="interval")
                for p in range(parts):
                    store.partition(TOPIC, p)  # opened before the timer, as in a running app
                producer = store.producer(linger_ms=linger)
                send = producer.send
                work = itertools.islice(itertools.cycle(pool), total)
                future = None
                with quiesced(), maybe_profiled(ctx, f"producer {parts}p linger {linger}"):
                    start = clock()
                    for value, key in work:
                        future = send(TOPIC, value, key)
                    producer.flush()
                    elapsed = clock() - start
                assert future is not None
                last = future.result(timeout=0)
                producer.close()
                written = sum(store.partition(TOPIC, p).log_end_offset for p in range(parts))
                nbatches = sum(count_batches(store.partition(TOPIC, p)) for p in range(parts))
            batches[parts, linger].append(nbatches)
            if written != total or last.offset < 0:
                raise AssertionError(f"sent {total} records, the topic holds {written}")
            shutil.rmtree(directory)
            metrics[parts, linger].values.append(total / elapsed)
            progress(f"producer run {run + 1}: {parts} partition(s), linger_ms={linger}: "
                     f"{total / elapsed:,.0f} records/s in {nbatches:,} batches")
    ctx.notes.append("producer: record batches written per trial (median of the runs; "
                     "records per batch on average): " + "; ".join(
                         f"{p} partition{'s' if p > 1 else ''}, linger_ms={ln}: "
                         f"{statistics.median(b):,.0f} ({total / statistics.median(b):,.0f})"
                         for (p, ln), b in batches.items()))
    return list(metrics.values())


# --------------------------------------------------------------------------- 2. consumer


def bench_consumer(ctx: Ctx) -> list[Metric]:
    """Read a pre-filled partition to its end: poll(max_records=...) loops and iteration."""
    total = ctx.sizes.consumer_records
    pool = make_pool(seed=2)
    directory = ctx.dir("consumer")
    with logstore.open(directory) as store:
        store.create_topic(TOPIC, 1, flush="never")
        with store.producer() as producer:  # default linger and batch_bytes
            for value, key in itertools.islice(itertools.cycle(pool), total):
                producer.send(TOPIC, value, key)
    tp = (TOPIC, 0)
    poll_sizes = (500, 10_000)
    metrics: dict[str, Metric] = {
        f"poll {n}": Metric(
            "consumer", f"poll(max_records={n:,}) until empty, {total:,} records",
            "records/s", target=1_000_000,
        )
        for n in poll_sizes
    }
    metrics["iter"] = Metric(
        "consumer", f"for record in consumer (consumer_timeout_ms=10), {total:,} records, "
        "to the last record", "records/s", target=1_000_000,
    )
    metrics["log 500"] = Metric(
        "consumer", "baseline without the Consumer: PartitionLog.read_records(o, "
        "max_records=500) loop", "records/s",
    )
    metrics["log 1mib"] = Metric(
        "consumer", "baseline without the Consumer: PartitionLog.read_records(o) loop "
        "(1 MiB fetches)", "records/s",
    )
    metrics["iter tail"] = Metric(
        "consumer", "for record in consumer: loop end after the last record "
        "(consumer_timeout_ms=10)", "ms",
    )
    store = logstore.open(directory)
    try:
        plog = store.partition(*tp)
        end = plog.log_end_offset
        if end != total:
            raise AssertionError(f"filled {total} records, the partition holds {end}")
        batches = count_batches(plog)  # reads it all: the page cache is warm
        ctx.notes.append(
            f"consumer partition: {end:,} records in {batches:,} batches "
            f"(~{end // max(1, batches):,} records a batch, as the default producer wrote "
            f"them), {plog.size_bytes / 1e6:.0f} MB, page cache warm"
        )
        progress(ctx.notes[-1])

        def with_poll(max_records: int) -> Callable[[], tuple[int, float]]:
            def read_all() -> tuple[int, float]:
                consumer = store.consumer(auto_offset_reset="earliest")
                consumer.assign([tp])
                poll = consumer.poll
                count = 0
                start = clock()
                while records := poll(0, max_records):
                    count += len(records)
                elapsed = clock() - start
                if count != end or consumer.position(tp) != end:
                    raise AssertionError(f"polled {count} records of {end}")
                consumer.close()
                return count, elapsed
            return read_all

        def with_log(max_records: int | None) -> Callable[[], tuple[int, float]]:
            def read_all() -> tuple[int, float]:
                read_records = plog.read_records
                offset = count = 0
                start = clock()
                while records := read_records(offset, max_records):
                    count += len(records)
                    offset = records[-1].offset + 1
                elapsed = clock() - start
                if count != end or offset != end:
                    raise AssertionError(f"read {count} records of {end}")
                return count, elapsed
            return read_all

        tail: list[float] = []

        def with_iteration() -> tuple[int, float]:
            consumer = store.consumer(auto_offset_reset="earliest", consumer_timeout_ms=10)
            consumer.assign([tp])
            last_offset = end - 1
            t_last = 0.0
            start = clock()
            for record in consumer:
                if record.offset == last_offset:
                    t_last = clock()
            t_end = clock()
            if not t_last or consumer.position(tp) != end:
                raise AssertionError(f"iterated to {consumer.position(tp)} of {end}")
            consumer.close()
            tail.append((t_end - t_last) * 1e3)
            return end, t_last - start

        cases: list[tuple[str, Callable[[], tuple[int, float]]]] = [
            *((f"poll {n}", with_poll(n)) for n in poll_sizes), ("iter", with_iteration),
            ("log 500", with_log(500)), ("log 1mib", with_log(None)),
        ]
        for run in range(ctx.runs):
            for name, fn in cases if run % 2 == 0 else cases[::-1]:
                with quiesced(), maybe_profiled(ctx, f"consumer {name}"):
                    count, elapsed = fn()
                metrics[name].values.append(count / elapsed)
                if name == "iter":
                    metrics["iter tail"].values.append(tail[-1])
                progress(f"consumer run {run + 1}: {metrics[name].case}: "
                         f"{count / elapsed:,.0f} records/s"
                         + (f" (loop ended {tail[-1]:.0f} ms after the last record)"
                            if name == "iter" else ""))
    finally:
        store.close()
        shutil.rmtree(directory)
    return [metrics[k] for k in ("poll 500", "poll 10000", "iter", "iter tail", "log 500",
                                 "log 1mib")]


# --------------------------------------------------------------------------- commits


def bench_commit(ctx: Ctx) -> list[Metric]:
    """A group consumer iterating over records with each way of committing: what a commit
    per record costs against none, every 1,000 records, and auto-commit."""
    total = ctx.sizes.commit_records
    per_record = max(1, total // 50)  # committing every record is slow: fewer records
    pool = make_pool(seed=3)
    directory = ctx.dir("commit")
    with logstore.open(directory) as store:
        store.create_topic(TOPIC, 1, flush="never")
        with store.producer() as producer:
            for value, key in itertools.islice(itertools.cycle(pool), total):
                producer.send(TOPIC, value, key)
    names = {
        "none": f"for record in consumer, no commit ({total:,} records)",
        "auto": f"enable_auto_commit=True (every 5 s and on close), {total:,} records",
        "every 1000": f"commit() every 1,000 records, {total:,} records",
        "per poll": f"poll(max_records=500) then commit(), {total:,} records",
        "every record": f"commit() after every record ({per_record:,} records)",
    }
    metrics = {k: Metric("commit", v, "records/s") for k, v in names.items()}
    ratio = Metric("commit", "commit() after every record, slowdown against no commit", "x")
    store = logstore.open(directory)
    try:
        def trial(kind: str, group: str) -> tuple[int, float]:
            limit = per_record if kind == "every record" else total
            consumer = store.consumer(
                [TOPIC], group_id=group, auto_offset_reset="earliest",
                enable_auto_commit=kind == "auto", consumer_timeout_ms=10,
            )
            consumer.poll(0, 1)  # join and take the partition before the timer
            consumer.seek_to_beginning()
            count = 0
            start = clock()
            if kind == "per poll":
                while count < limit and (records := consumer.poll(0, 500)):
                    count += len(records)
                    consumer.commit()
            else:
                for _record in consumer:
                    count += 1
                    if kind == "every record" or (kind == "every 1000" and count % 1000 == 0):
                        consumer.commit()
                    if count == limit:
                        break
            consumer.close()
            elapsed = clock() - start
            if count != limit:
                raise AssertionError(f"{kind}: handled {count} of {limit} records")
            return count, elapsed

        cases = list(names)
        for run in range(ctx.runs):
            for kind in cases if run % 2 == 0 else cases[::-1]:
                with quiesced(), maybe_profiled(ctx, f"commit {kind}"):
                    count, elapsed = trial(kind, f"g-{kind}-{run}")
                metrics[kind].values.append(count / elapsed)
                progress(f"commit run {run + 1}: {names[kind]}: {count / elapsed:,.0f} "
                         "records/s")
            ratio.values.append(metrics["none"].values[-1] / metrics["every record"].values[-1])
    finally:
        store.close()
        shutil.rmtree(directory)
    return [*metrics.values(), ratio]


# --------------------------------------------------------------------------- 3. latency


def bench_latency(ctx: Ctx) -> list[Metric]:
    """A producer process at a fixed rate, a consumer process polling: per-record latency."""
    sizes = ctx.sizes
    rate = sizes.latency_rate
    warmup = round(sizes.latency_warmup_seconds * rate)
    measured = round(sizes.latency_seconds * rate)
    total = warmup + measured
    policies = ("always", "interval", "never")  # "always" is the default
    pcts: tuple[tuple[str, float | None, float | None], ...] = (
        ("p50", 50, 0.5), ("p99", 99, 3.0), ("p99.9", 99.9, None), ("max", None, None),
    )
    m: dict[tuple[str, str], Metric] = {}
    extra: dict[tuple[str, str], Metric] = {}
    for policy in policies:
        for label, _, target in pcts:
            default = " (the default)" if policy == "always" else ""
            m[policy, label] = Metric(
                "latency", f'{label}, flush="{policy}"{default}, linger_ms=0, '
                f"{rate:,} records/s", "ms", target=target, target_op="<=",
            )
        extra[policy, "rate"] = Metric(
            "latency", f'achieved send rate, flush="{policy}"', "records/s")
        extra[policy, "behind"] = Metric(
            "latency", f'producer: most behind its schedule, flush="{policy}"', "ms")
    for run in range(ctx.runs):
        order = policies if run % 2 == 0 else policies[::-1]
        for policy in order:
            directory = ctx.dir(f"latency-{policy}")
            data = directory / "data"
            with logstore.open(data) as store:
                store.create_topic(TOPIC, 1, flush=policy)
            lat_file = directory / "latencies.bin"
            prof = {name: directory / f"{name}.prof" if ctx.profile else "-"
                    for name in ("consumer", "producer")}
            load = os.getloadavg()[0]
            workers = Children(directory, __file__, "_worker", "worker")
            try:
                consumer = workers.start(
                    "consumer", ["consumer", *map(str, (data, total, lat_file, prof["consumer"]))],
                    timeout=30,
                )
                producer = workers.start(
                    "producer", ["producer", *map(str, (data, total, rate, prof["producer"]))],
                    timeout=30,
                )
                workers.go(consumer, producer)
                budget = total / rate + 60
                sent = workers.finish("producer", producer, budget)
                got = workers.finish("consumer", consumer, 60)
            finally:
                workers.close()
            lat = array("q")
            with lat_file.open("rb") as f:
                lat.frombytes(f.read())
            if len(lat) != total or got["records"] != total:
                raise AssertionError(f"consumer saw {len(lat)} records of {total}")
            values = sorted(lat[warmup:])
            for label, p, _ in pcts:
                v = values[-1] if p is None else percentile(values, p)
                m[policy, label].values.append(v / 1e6)
            extra[policy, "rate"].values.append(sent["rate"])
            extra[policy, "behind"].values.append(sent["max_behind_ms"])
            progress(
                f"latency run {run + 1}: flush={policy}: p50 {m[policy, 'p50'].values[-1]:.3f}"
                f" ms, p99 {m[policy, 'p99'].values[-1]:.3f} ms, p99.9 "
                f"{m[policy, 'p99.9'].values[-1]:.3f} ms, max {m[policy, 'max'].values[-1]:.2f}"
                f" ms; {sent['rate']:,.0f} records/s sent ({sent['late_1ms']} sends > 1 ms "
                f"behind schedule), consumer {got['polls']:,} non-empty polls; CPU s / "
                f"involuntary context switches: producer {sent['cpu_s']:.1f} / "
                f"{sent['involuntary_switches']:,}, consumer {got['cpu_s']:.1f} / "
                f"{got['involuntary_switches']:,}; load average before {load:.2f}"
            )
            if ctx.profile:
                for name in ("producer", "consumer"):
                    print_profile(str(prof[name]), f"latency {policy}: {name} process")
            shutil.rmtree(directory)
    out: list[Metric] = []
    for policy in policies:
        out += [m[policy, label] for label, _, _ in pcts]
        out += [extra[policy, "rate"], extra[policy, "behind"]]
    return out


# --------------------------------------------------------------------------- workers


def _watch_parent(go: threading.Event) -> None:
    """Set ``go`` on the parent's "go" line; exit at once when stdin closes (the parent
    finished, failed or was killed), so no worker outlives the benchmark."""
    while data := os.read(0, 4096):
        if b"go" in data:
            go.set()
    os._exit(3)


def _worker(argv: list[str]) -> int:
    name, args = argv[0], argv[1:]
    go = threading.Event()
    threading.Thread(target=_watch_parent, args=(go,), daemon=True).start()
    prof = cProfile.Profile() if args[-1] != "-" else None
    if name == "producer":
        result = _produce(args[0], int(args[1]), int(args[2]), go, prof)
    elif name == "consumer":
        result = _consume(args[0], int(args[1]), args[2], go, prof)
    else:
        raise SystemExit(f"unknown worker {name!r}")
    if prof is not None:
        prof.dump_stats(args[-1])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    result["involuntary_switches"] = usage.ru_nivcsw  # preempted: another process ran
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)  # not a normal exit: the stdin watcher thread is still blocked in read()


def _produce(
    directory: str, total: int, rate: int, go: threading.Event, prof: cProfile.Profile | None
) -> dict[str, Any]:
    """Send ``total`` records at ``rate``/s (linger_ms=0), each value starting with the
    CLOCK_MONOTONIC time (ns) taken just before its send()."""
    pad = random.Random(3).randbytes(VALUE_SIZE - _SEND_TIME.size)
    key = random.Random(4).randbytes(KEY_SIZE)
    pack = _SEND_TIME.pack
    now_ns = time.monotonic_ns
    with logstore.open(directory) as store, store.producer(linger_ms=0) as producer:
        store.partition(TOPIC, 0)
        send = producer.send
        print("ready", flush=True)
        if not go.wait(60):
            raise SystemExit("no go from the parent")
        interval = 1_000_000_000 / rate
        behind = late = 0
        if prof is not None:
            prof.enable()
        t0 = now_ns()
        for i in range(total):
            due = t0 + int(i * interval)
            now = now_ns()
            while now < due:  # pace: sleep when far ahead, spin for the last stretch
                if due - now > 1_500_000:
                    time.sleep((due - now - 1_000_000) / 1e9)
                else:
                    # lets go of the interpreter lock while it spins, as an application
                    # waiting for its next event (blocked reading a socket, a queue) does:
                    # the producer's sender thread writes meanwhile
                    time.sleep(0)
                now = now_ns()
            behind = max(behind, now - due)
            if now - due > 1_000_000:
                late += 1
            sent = now_ns()
            send(TOPIC, pack(sent) + pad, key, partition=0)
        producer.flush()
        elapsed = (now_ns() - t0) / 1e9
        if prof is not None:
            prof.disable()
    return {"sent": total, "rate": total / elapsed, "max_behind_ms": behind / 1e6,
            "late_1ms": late}


def _consume(
    directory: str, total: int, out_path: str, go: threading.Event,
    prof: cProfile.Profile | None,
) -> dict[str, Any]:
    """Poll (timeout 10 ms) until ``total`` records arrived; write each record's latency
    (receive time - send time, ns) in offset order to ``out_path``."""
    lat = array("q")
    unpack = _SEND_TIME.unpack_from
    now_ns = time.monotonic_ns
    polls = 0
    with logstore.open(directory) as store:
        consumer = store.consumer(auto_offset_reset="earliest")
        consumer.assign([(TOPIC, 0)])
        consumer.position((TOPIC, 0))
        poll = consumer.poll
        print("ready", flush=True)
        if not go.wait(60):
            raise SystemExit("no go from the parent")
        if prof is not None:
            prof.enable()
        deadline = time.monotonic() + 120 + total / 1000
        while len(lat) < total:
            records = poll(10)
            now = now_ns()
            if records:
                polls += 1
                lat.extend([now - unpack(r.value)[0] for r in records])  # type: ignore[arg-type]
            elif time.monotonic() > deadline:
                raise SystemExit(f"only {len(lat)} of {total} records arrived")
        if prof is not None:
            prof.disable()
        consumer.close()
    with open(out_path, "wb") as f:
        lat.tofile(f)
    return {"records": len(lat), "polls": polls}


# --------------------------------------------------------------------------- main

BENCHMARKS: dict[str, Callable[[Ctx], list[Metric]]] = {
    "producer": bench_producer,
    "consumer": bench_consumer,
    "latency": bench_latency,
    "commit": bench_commit,
}


LOGSTORE_DIR = Path(logstore.__file__).resolve().parent


def logstore_commit() -> str:
    """The commit of the imported logstore's work tree ("-dirty" if logstore/ has
    uncommitted changes), or "unknown" (e.g. logstore imported from an export)."""
    return git_commit(LOGSTORE_DIR.parent)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: workers killed, data removed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return _worker(argv[1:])
    args, names = parse_args(__doc__, BENCHMARKS, argv)
    signal.signal(signal.SIGTERM, _terminate)

    commit = logstore_commit()  # at the start: the code the timed regions run
    workdir = Path(args.workdir).resolve() / f"streaming-{os.getpid()}"
    sizes = QUICK if args.quick else FULL
    ctx = Ctx(args.runs, sizes, workdir, profile=args.profile)
    started = datetime.datetime.now().astimezone()
    command = " ".join([".venv/bin/python benchmarks/bench_streaming.py", *argv])
    metrics, elapsed = run_benchmarks(ctx, names, BENCHMARKS, command)

    info = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "commit": commit,
            "logstore": logstore.__version__, "logstore_path": str(LOGSTORE_DIR)}
    if logstore_commit() != commit:
        ctx.notes.append(
            f"WARNING: logstore changed during the run (commit {commit} at the start, "
            f"{logstore_commit()} at the end): worker processes started later may have run "
            "other code than the parent; run again on a quiet tree"
        )
    where = (f"at commit {commit}" if commit != "unknown" else
             f"with logstore from {LOGSTORE_DIR} (not a git work tree)")
    report("logstore streaming benchmarks", where, metrics, ctx, args, command, started,
           elapsed, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
