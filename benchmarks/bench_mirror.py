#!/usr/bin/env python3
"""Mirror throughput (issue 17): ``Mirror.run()`` copying a store's topic to another
store (and to a Kafka broker, with ``--kafka``), against baselines measured in the same
run on the same data:

* *copy loop*: the same reads and appends through the backend seam
  (``fetch`` -> ``append``, one batch per partition per round), nothing else: no
  checkpoint, no offset map, no group translation. The mirror's floor.
* *consumer -> producer*: what one would write by hand with the clients (MirrorMaker 1's
  way): a ``Consumer`` assigned every partition polls, a ``Producer`` sends each record to
  the same partition with its key, headers and timestamp, and ``flush()``es after every
  poll. No resume after a crash.

    .venv/bin/python benchmarks/bench_mirror.py --runs 5
    .venv/bin/python benchmarks/bench_mirror.py --runs 3 --kafka 127.0.0.1:9092
    .venv/bin/python benchmarks/bench_mirror.py --quick --runs 1        # smoke run

Options::

    --runs N       repeat every case N times (default 3); the table shows the median, min
                   and max, and the median's ratio to the copy loop's
    --records N    records in the source (default 200,000; --quick 20,000), 8 partitions,
                   16-byte keys, 100-byte values, one 8-byte header, topic defaults (so
                   the destination appends are fsynced: flush=always)
    --kafka HOST:PORT   also mirror to this broker (``./dev kafka start``) and back from
                   it, and run the copy loop both ways
    --workdir DIR  where the stores go (default: a temporary directory)

Each run fills a fresh source store, consumes half of it as a group (so the mirror has a
group to translate), then runs every case into a fresh destination, in the same order.
The time is wall clock from the start of the case to its end (the mirror's discovery,
topic creation, checkpoints and group translation included); every case checks that the
destination holds as many records as the source. The checkpoint's cost is measured apart:
one ``commit_offsets`` of 8 partitions' checkpoints to the destination store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import logstore
from logstore.backend import backend_for
from logstore.client.backend import Backend
from logstore.patterns.mirror import DEFAULT_BATCH_RECORDS, Mirror
from logstore.types import TopicPartition

PARTITIONS = 8
COPY_LOOP = "baseline: copy loop (fetch -> append, no checkpoints)"


def fill(path: Path, topic: str, records: int) -> None:
    with logstore.open(path) as store:
        store.create_topic(topic, partitions=PARTITIONS)
        with store.producer() as producer:
            for i in range(records):
                producer.send(topic, os.urandom(50).hex().encode(), key=b"key-%012d" % i,
                              headers=[("trace", b"%08d" % (i % 10**8))])
        seen = 0
        with store.consumer([topic], group_id="readers", auto_offset_reset="earliest",
                            enable_auto_commit=False) as consumer:
            while seen < records // 2:
                seen += len(consumer.poll(timeout_ms=200, max_records=2000))
            consumer.commit()


def count(backend: Backend, topic: str) -> int:
    return sum(backend.offset_range(TopicPartition(topic, p))[1] for p in range(PARTITIONS))


def copy_loop(src: Backend, dst: Backend, topic: str, batch: int, into: str = "") -> int:
    """The floor: fetch -> append, one batch per partition per round, nothing else
    (into topic ``into``, default the same name)."""
    into = into or topic
    meta = dst.create_topic(into, PARTITIONS)
    positions = {TopicPartition(topic, p): 0 for p in range(PARTITIONS)}
    ends = {tp: src.offset_range(tp)[1] for tp in positions}
    copied = 0
    while any(positions[tp] < ends[tp] for tp in positions):
        answer = src.fetch({tp: o for tp, o in positions.items() if o < ends[tp]},
                           max_records=batch, max_bytes=1 << 20)
        for tp, got in answer.items():
            if not isinstance(got, list) or not got:
                continue
            dst.append(TopicPartition(into, tp.partition),
                       [(r.timestamp, r.key, r.value, r.headers) for r in got],
                       topic_id=meta.topic_id)
            positions[tp] = got[-1].offset + 1
            copied += len(got)
    return copied


def consumer_producer(
    src_store: logstore.Store, dst: logstore.Store, topic: str, batch: int
) -> int:
    """By hand with the clients: poll, send each record, flush per poll."""
    dst.create_topic(topic, partitions=PARTITIONS)
    total = count(backend_for(src_store), topic)
    copied = 0
    with src_store.consumer(None, max_poll_records=batch) as consumer, \
            dst.producer() as producer:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        while copied < total:
            records = consumer.poll(timeout_ms=100)
            for r in records:
                producer.send(topic, r.value, key=r.key, headers=list(r.headers),
                              partition=r.partition, timestamp=r.timestamp)
            producer.flush()
            copied += len(records)
    return copied


def commit_cost(dst: logstore.Store, repeats: int = 200) -> float:
    """Milliseconds per checkpoint: one commit of 8 partitions' offsets and metadata."""
    backend = backend_for(dst)
    meta = '{"v":1,"dst":123456,"first":[0,0],"run":[0,0,123456],"src_id":"abcdefghijklmnopqrstuv"}'
    offsets = {TopicPartition("t", p): (123456, meta) for p in range(PARTITIONS)}
    start = time.perf_counter()
    for _ in range(repeats):
        backend.commit_offsets("bench-checkpoints", offsets)
    return (time.perf_counter() - start) / repeats * 1000


def one_run(src: logstore.Store, topic: str, records: int, root: Path,
            kafka: Backend | None) -> dict[str, float]:
    """Every case once, on source topic ``topic``: records/s by case."""
    source = backend_for(src)
    out: dict[str, float] = {}

    def timed(name: str, case: Callable[[], int], copied_to: Callable[[], int]) -> None:
        start = time.perf_counter()
        copied = case()
        elapsed = time.perf_counter() - start
        assert copied == records and copied_to() == records, (name, copied)
        out[name] = records / elapsed
        print(f"  {name}: {out[name]:,.0f} records/s", file=sys.stderr)

    def local(name: str, case: Callable[[logstore.Store], int]) -> None:
        where = root / f"dst-{len(out)}"
        with logstore.open(where) as dst:
            timed(name, lambda: case(dst), lambda: count(backend_for(dst), topic))
        shutil.rmtree(where, ignore_errors=True)

    local(COPY_LOOP, lambda dst: copy_loop(source, backend_for(dst), topic,
                                          DEFAULT_BATCH_RECORDS))
    local("baseline: consumer -> producer, flush per poll",
          lambda dst: consumer_producer(src, dst, topic, DEFAULT_BATCH_RECORDS))
    for batch in (DEFAULT_BATCH_RECORDS, 500):
        local(f"Mirror.run(), local -> local, batch_records={batch}",
              lambda dst, b=batch: Mirror(  # type: ignore[misc]
                  source, backend_for(dst), name="bench", from_beginning=True,
                  batch_records=b).run().copied)
    if kafka is not None:
        into = f"{topic}-loop"
        timed("baseline: copy loop, local -> Kafka",
              lambda: copy_loop(source, kafka, topic, DEFAULT_BATCH_RECORDS, into),
              lambda: count(kafka, into))
        timed("Mirror.run(), local -> Kafka",
              lambda: Mirror(source, kafka, name=topic, topics=topic,
                             from_beginning=True).run().copied,
              lambda: count(kafka, topic))
        local("baseline: copy loop, Kafka -> local",
              lambda dst: copy_loop(kafka, backend_for(dst), topic, DEFAULT_BATCH_RECORDS))
        local("Mirror.run(), Kafka -> local",
              lambda dst: Mirror(kafka, backend_for(dst), name="back", topics=topic,
                                 from_beginning=True).run().copied)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--kafka")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    records = args.records or (20_000 if args.quick else 200_000)
    results: dict[str, list[float]] = {}
    commits: list[float] = []
    cluster: Any = logstore.open("kafka://" + args.kafka) if args.kafka else None
    root = Path(tempfile.mkdtemp(prefix="bench-mirror-", dir=args.workdir))
    try:
        for run in range(args.runs):
            print(f"run {run + 1} of {args.runs}", file=sys.stderr)
            src_path = root / "src"
            topic = f"bench-{uuid.uuid4().hex[:8]}"  # a broker outlives runs: new names
            fill(src_path, topic, records)
            with logstore.open(src_path, maintenance=False) as src:
                found = one_run(src, topic, records, root,
                                None if cluster is None else cluster.backend)
            for name, value in found.items():
                results.setdefault(name, []).append(value)
            with logstore.open(root / "commits") as dst:
                dst.create_topic("t", partitions=PARTITIONS)
                commits.append(commit_cost(dst))
            shutil.rmtree(src_path, ignore_errors=True)
            shutil.rmtree(root / "commits", ignore_errors=True)
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(results[COPY_LOOP])
    print(f"{records:,} records, {PARTITIONS} partitions, medians of {args.runs} run(s)\n")
    print("| case | records/s (median) | min | max | vs copy loop |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in results.items():
        m = statistics.median(values)
        print(f"| {name} | {m:,.0f} | {min(values):,.0f} | {max(values):,.0f} "
              f"| {m / base:.2f}x |")
    print(f"\ncheckpoint (commit of 8 partitions to the destination store): "
          f"{statistics.median(commits):.2f} ms (median of {args.runs} x 200)")


if __name__ == "__main__":
    main()
