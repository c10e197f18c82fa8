#!/usr/bin/env python3
"""Transactions benchmark (issue 16): what exactly-once costs in a consume-transform-produce
loop, against the same loop at-least-once, measured in the same run.

    .venv/bin/python benchmarks/bench_transactions.py --runs 3
    .venv/bin/python benchmarks/bench_transactions.py --quick     # smoke run

Each run fills a fresh store (``flush="always"``, the default: every append and commit
fsynced) with ``--records`` records of 100 bytes over 2 partitions, then, each loop with
its own consumer group and output topic:

* **at-least-once** (the baseline): ``poll(max_records=B)``, send every record
  transformed with an idempotent ``Producer``, ``flush()``, ``commit()``;
* **exactly-once**: ``poll(max_records=B)`` (``read_committed``), ``begin_transaction()``,
  send, ``send_offsets_to_transaction()``, ``commit_transaction()``.

for poll sizes B of 100 and 1,000 (one transaction per poll), and the **read** of each
output topic from its start by a ``read_committed`` and a ``read_uncommitted`` consumer.
Records/s are input records handled per second; the table shows medians of the runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import logstore
from logstore import Consumer, Producer, TopicPartition, TransactionalProducer

PARTITIONS = 2


def _fill(store: logstore.Store, records: int) -> None:
    store.create_topic("in", partitions=PARTITIONS)
    with Producer(store, linger_ms=20) as producer:
        value = b"v" * 100
        for i in range(records):
            producer.send("in", value, key=b"k%d" % (i % 1000))


def _loop(store: logstore.Store, records: int, batch: int, *, exactly_once: bool) -> float:
    tag = f"{'eos' if exactly_once else 'alo'}-{batch}"
    store.create_topic(f"out-{tag}", partitions=PARTITIONS)
    consumer = Consumer(
        store, ["in"], group_id=tag, enable_auto_commit=False, auto_offset_reset="earliest",
        max_poll_records=batch,
        isolation_level="read_committed" if exactly_once else "read_uncommitted",
    )
    producer: Producer
    if exactly_once:
        txn = TransactionalProducer(store, f"bench-{tag}", linger_ms=0)
        txn.init_transactions()
        producer = txn
    else:
        producer = Producer(store, linger_ms=0)
    done = 0
    started = time.perf_counter()
    while done < records:
        got = consumer.poll(timeout_ms=500)
        if not got:
            continue
        if exactly_once:
            txn.begin_transaction()
        for r in got:
            producer.send(f"out-{tag}", r.value, key=r.key, partition=r.partition)
        if exactly_once:
            txn.send_offsets_to_transaction(
                {TopicPartition(r.topic, r.partition): r.offset + 1 for r in got}, tag
            )
            txn.commit_transaction()
        else:
            producer.flush()
            consumer.commit()
        done += len(got)
    elapsed = time.perf_counter() - started
    producer.close()
    consumer.close()
    return records / elapsed


def _read(store: logstore.Store, topic: str, records: int, isolation: str) -> float:
    consumer = Consumer(store, auto_offset_reset="earliest", isolation_level=isolation)
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    got = 0
    started = time.perf_counter()
    while got < records:
        got += len(consumer.poll(timeout_ms=500, max_records=10_000))
    elapsed = time.perf_counter() - started
    consumer.close()
    return records / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="2,000 records, 1 run")
    args = parser.parse_args()
    runs, records = (1, 2_000) if args.quick else (args.runs, args.records)
    results: dict[str, list[float]] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="logstore-txn-bench-") as tmp, logstore.open(
            Path(tmp) / "data", maintenance=False
        ) as store:
            _fill(store, records)
            for batch in (100, 1000):
                for eos in (False, True):
                    name = f"{'exactly-once' if eos else 'at-least-once'}, poll of {batch}"
                    results.setdefault(name, []).append(
                        _loop(store, records, batch, exactly_once=eos)
                    )
            for isolation in ("read_uncommitted", "read_committed"):
                name = f"read the exactly-once output, {isolation}"
                results.setdefault(name, []).append(
                    _read(store, "out-eos-1000", records, isolation)
                )
    print(f"| loop ({records:,} records, {PARTITIONS} partitions) | records/s "
          f"(median of {runs}) | vs at-least-once |")
    print("| --- | ---: | ---: |")
    for name, values in results.items():
        value = statistics.median(values)
        base_name = name.replace("exactly-once", "at-least-once")
        ratio = ""
        if name.startswith("exactly-once") and base_name in results:
            ratio = f"{value / statistics.median(results[base_name]):.2f}x"
        elif "read_committed" in name:
            other = name.replace("read_committed", "read_uncommitted")
            ratio = f"{value / statistics.median(results[other]):.2f}x of read_uncommitted"
        print(f"| {name} | {value:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
