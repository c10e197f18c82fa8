"""Throughput of RetryingConsumer against a plain consumer loop that commits after each
poll of 100 records (the same at-least-once commit cadence): no-op handler, one partition.

    .venv/bin/python benchmarks/bench_retry.py [--runs 3] [--records 20000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

import logstore
from logstore.patterns.retry import RetryingConsumer
from logstore.patterns.retry_policy import RetryPolicy
from logstore.types import ConsumerRecord


def fill(store: logstore.Store, n: int) -> None:
    store.create_topic("t", partitions=1)
    with store.producer() as producer:
        for i in range(n):
            producer.send("t", b"x" * 100, key=b"k%d" % i)


def baseline(store: logstore.Store, n: int) -> float:
    start = time.perf_counter()
    seen = 0
    with store.consumer(["t"], group_id="base", auto_offset_reset="earliest",
                        enable_auto_commit=False, max_poll_records=100) as consumer:
        while seen < n:
            records = consumer.poll(timeout_ms=100)
            for _ in records:
                seen += 1
            consumer.commit()
    return n / (time.perf_counter() - start)


def retrying(store: logstore.Store, n: int, fail_every: int | None) -> float:
    def handle(record: ConsumerRecord) -> None:
        if fail_every and record.offset % fail_every == 0 and record.topic == "t":
            raise ValueError("poison")

    policy = RetryPolicy(max_attempts=2, delays_ms=(0,), max_poll_records=100)
    group = f"retry-{fail_every}"
    start = time.perf_counter()
    with RetryingConsumer(store, group, ["t"], handle, policy) as rc:
        stats = rc.run(max_records=n)
    elapsed = time.perf_counter() - start
    assert stats.finished >= n
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    results: dict[str, list[float]] = {}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp, logstore.open(tmp) as store:
            fill(store, args.records)
            results.setdefault("plain consumer, commit per poll of 100", []).append(
                baseline(store, args.records))
            results.setdefault("RetryingConsumer, all succeed", []).append(
                retrying(store, args.records, None))
            poison = "RetryingConsumer, 1% poison (retry topic 0 ms, then DLQ)"
            results.setdefault(poison, []).append(retrying(store, args.records, 100))
    base = statistics.median(results["plain consumer, commit per poll of 100"])
    print(f"| loop | records/s (median of {args.runs}) | vs baseline |")
    print("| --- | ---: | ---: |")
    for name, values in results.items():
        m = statistics.median(values)
        print(f"| {name} | {m:,.0f} | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
