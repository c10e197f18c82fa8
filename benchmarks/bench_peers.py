#!/usr/bin/env python3
"""Peer benchmark (issue 14): a real Apache Kafka broker, driven by confluent-kafka, on the
workloads of logstore's own streaming benchmarks (``bench_streaming.py``) and of run.py's
1 MiB appends, so that logstore's figures can be put beside a peer measured on the same
machine, in the same hour.

    .venv/bin/python benchmarks/bench_peers.py --runs 3     # the full run (~2 min)
    .venv/bin/python benchmarks/bench_peers.py --quick      # smoke run (~15 s)

Results and what they say: benchmarks/README.md, section "Peer: Apache Kafka through
confluent-kafka (issue 14)".

Options: as the other scripts (``--runs N``, default 3, the case order flipped every run;
``--quick``; ``--only producer,bulk,consumer,latency,append_1mib``; ``--json PATH``;
``--workdir DIR``; ``--profile`` is accepted and does nothing: the work is in the
client processes and the broker), plus ``--broker shared|private``. ``shared`` (the
default) uses the broker ``tests/kafka_broker.py`` records (``./dev kafka start``),
starts it when none is running and stops it at the end if this run started it, as
``bench_server.py`` does; a test session may then be using the same broker, or stop it
if it started it. ``private`` starts a broker of its own in the work dir (on ports no one
else knows; the cached jars are linked, not copied) and always stops it at the end.

The broker is Apache Kafka 4.4.0 (KRaft, broker and controller in one JVM, heap 256-512
MiB, Kafka's defaults otherwise: no fsync, the OS writes the page cache back). The client
is confluent-kafka (librdkafka) in a process of its own for every trial (this file
re-executed as ``bench_peers.py _client KIND JSON``; it exits when its stdin closes, so
none outlives the parent). Each client connects and fetches the topic's metadata before
its timer starts, and calls ``os.sync()`` then (the ``quiesced()`` of the other scripts).
Every topic is new and is deleted after its trial. Records as in bench_streaming: 16-byte
keys and 100-byte values from a pool of 10,000 random pairs made before the timer.

librdkafka 2.16's producer defaults, which the "defaults" rows keep (confluent-kafka
changes none of them): ``linger.ms=5``, ``acks=all`` (-1), ``enable.idempotence=false``
(unlike the Java client's, librdkafka's idempotence is off unless asked for),
``batch.size=1000000``, ``batch.num.messages=10000``, ``message.max.bytes=1000000``,
``compression.type=none``, partitioner ``consistent_random`` (CRC32 of the key). Every
producer here sets ``queue.buffering.max.messages=2000000`` (so ``produce()`` never
raises BufferError) and ``delivery.report.only.error=true`` with one ``on_delivery``
callback: no Python callback per record (as logstore's dropped futures), errors still
reported; the topic's end offsets are checked after every trial (ListOffsets).

Benchmarks and their JSON keys (each row's ``key`` in the ``--json`` file; the table's
case text may change, the keys do not):

* producer: ``produce(topic, value, key)`` x 1,000,000 then ``flush()``, records/s from
  the first ``produce()`` to ``flush()``'s return, ``poll(0)`` every 100,000 produces;
  topics of 1 and 4 partitions, librdkafka's defaults and ``linger.ms=0``.
  Keys ``kafka.producer.p1.default``, ``kafka.producer.p4.default``,
  ``kafka.producer.p1.linger0``, ``kafka.producer.p4.linger0`` (records/s).
* bulk: the same 1,000,000 records, 1 partition, with Kafka's best bulk settings:
  ``linger.ms=100``, ``batch.size=1048576``, ``batch.num.messages=1000000``,
  ``message.max.bytes=2097152`` (the request cap; batches stay within the topic's
  default ``max.message.bytes`` of 1 MiB + 12). Key ``kafka.bulk.p1`` (records/s).
* consumer: a 1-partition topic filled once (1,000,000 records, default producer), read
  from offset 0 by a new consumer each trial (``assign()``, ``fetch.queue.backoff.ms=10``
  as bench_server.py explains, no commits) with ``consume(num_messages=500)`` loops,
  ``consume(num_messages=10000)`` loops (never asking for more than is left) and
  one-message ``poll()`` calls (the iteration analogue); records/s from ``assign()`` to
  the last record. Keys ``kafka.consumer.consume500``, ``kafka.consumer.consume10000``,
  ``kafka.consumer.poll1`` (records/s).
* latency: a producer process at 10,000 records/s (``acks=all``, ``poll(0)`` after each
  produce) and a consumer process on ``poll(0.1)``, one new 1-partition topic per trial;
  the send time (CLOCK_MONOTONIC ns, taken just before ``produce()``) in the value's first
  8 bytes, the receive time taken as ``poll()`` returns; 1 s of warm-up, then 10 s
  measured (quick: 0.2 s + 0.8 s). Two producer settings: ``linger.ms=0`` (the asked-for
  case: librdkafka then sends about one ProduceRequest per record or two, which this
  broker cannot answer 10,000 times a second here, so the latency is the growing queue)
  and ``linger.ms=1``. The producer also times each record's acknowledgement (its
  delivery report, served by that ``poll(0)``): how much of the latency is the produce
  leg. Keys ``kafka.latency.CASE.p50``, ``.p99``, ``.p99_9``, ``.max`` (ms),
  ``.ack_p50``, ``.ack_p99`` (ms, produce to acknowledgement), ``.send_rate`` (records/s
  achieved), ``.max_behind`` (ms the producer fell behind its schedule at worst), CASE
  being ``linger0`` or ``linger1``.
* append_1mib: 512 records with 1 MiB values (no key; 32 in quick) produced with
  librdkafka's defaults (``linger.ms=5``, ``acks=all``) but ``message.max.bytes=2097152``,
  to a topic with ``max.message.bytes=2097152``, then ``flush()``; beside it, in the same
  process as run.py does it, a raw ``os.write`` of the same number of 1 MiB buffers to a
  file on the same file system (no fsync: Kafka does not fsync either). Each run takes
  the best of 2 interleaved rounds per side (1 in quick; run.py explains why).
  Keys ``kafka.append_1mib`` and ``raw.append_1mib`` (MiB/s), ``kafka.append_1mib.ratio``
  (Kafka / raw, per run).

The notes below the table give the record batches Kafka's log holds after each producer
case (read from the segment files' batch headers) and the broker used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
from array import array
from collections.abc import Callable
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
    progress,
    quiesced,
    report,
    run_benchmarks,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests import kafka_broker  # noqa: E402

KEY_SIZE = 16
VALUE_SIZE = 100
POOL = 10_000
MiB = 1 << 20
BIG_TOPIC_MAX = 2 * MiB  # max.message.bytes of the 1 MiB topics, message.max.bytes there
_SEND_TIME = struct.Struct(">q")
_BATCH_HEADER = struct.Struct(">qi")  # baseOffset, batchLength (then 49 bytes, then count)


@dataclass(frozen=True)
class Sizes:
    producer_records: int
    bulk_records: int
    consumer_records: int
    latency_rate: int
    latency_seconds: float
    latency_warmup_seconds: float
    big_records: int  # 1 MiB values per append_1mib trial
    big_rounds: int  # interleaved raw / Kafka rounds per run (best taken)


FULL = Sizes(1_000_000, 1_000_000, 1_000_000, 10_000, 10.0, 1.0, 512, 2)
QUICK = Sizes(20_000, 20_000, 100_000, 10_000, 0.8, 0.2, 32, 1)


@dataclass
class PeerMetric(Metric):
    """A row with a stable ``key`` for other scripts (written first in the JSON)."""

    key: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, **super().to_json()}


# --------------------------------------------------------------------------- the broker


class Broker:
    """The Kafka broker of this run: the shared one (started if none runs, stopped at the
    end only if started here) or a private one in ``workdir``."""

    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.home: Path | None = None
        self.started = False
        if mode == "private":
            libs = kafka_broker.ensure_jars()  # resolves them in the cache if need be
            self.home = workdir / "kafka-home"
            self.home.mkdir(parents=True)
            (self.home / "libs").symlink_to(libs, target_is_directory=True)
            shutil.copyfile(libs.parent / "libs.resolved", self.home / "libs.resolved")
            progress(f"starting a private Kafka broker in {self.home}")
            self.broker = kafka_broker.start(home=self.home)
            self.started = True
        else:
            found = kafka_broker.running()
            if found is None:
                progress("starting the Kafka broker (tests/kafka_broker.py)")
                found = kafka_broker.start()
                self.started = True
            else:
                progress(f"using the running Kafka broker {found.bootstrap} (pid {found.pid})")
            self.broker = found
        self.bootstrap = self.broker.bootstrap
        from confluent_kafka.admin import AdminClient

        self.admin: Any = AdminClient({"bootstrap.servers": self.bootstrap})

    def describe(self) -> str:
        how = ("a private broker started for this run" if self.mode == "private" else
               "the shared broker, started by this run" if self.started else
               "the shared broker, already running (other sessions may use it too)")
        return (f"Apache Kafka {kafka_broker.KAFKA_VERSION} at {self.bootstrap}: {how}; "
                f"log dir {self.broker.log_dir}")

    def create_topic(self, partitions: int, config: dict[str, str] | None = None) -> str:
        from confluent_kafka.admin import NewTopic

        topic = f"peer-{uuid.uuid4().hex[:10]}"
        new = NewTopic(topic, partitions, 1, config=config or {})
        for future in self.admin.create_topics([new], operation_timeout=30).values():
            future.result(60)
        return topic

    def delete_topic(self, topic: str) -> None:
        for future in self.admin.delete_topics([topic], operation_timeout=30).values():
            future.result(60)

    def end_offsets(self, topic: str, partitions: int) -> list[int]:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        asked = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
        got = self.admin.list_offsets(asked, request_timeout=30)
        return [got_p.result(60).offset for got_p in
                (got[tp] for tp in sorted(got, key=lambda tp: tp.partition))]

    def batches(self, topic: str, partitions: int) -> tuple[int, int]:
        """(batches, records) in the topic's segment files, from the batch headers."""
        nbatches = nrecords = 0
        for p in range(partitions):
            for segment in sorted((self.broker.log_dir / f"{topic}-{p}").glob("*.log")):
                with segment.open("rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    pos = 0
                    while pos + 61 <= size:
                        f.seek(pos)
                        head = f.read(61)
                        _, length = _BATCH_HEADER.unpack_from(head)
                        nbatches += 1
                        nrecords += struct.unpack_from(">i", head, 57)[0]
                        pos += 12 + length
        return nbatches, nrecords

    def close(self) -> None:
        self.admin = None  # destroyed now: it would log the broker's going away
        if self.started:
            progress("stopping the Kafka broker this run started")
            kafka_broker.stop(self.broker, home=self.home)


_RUN: dict[str, Broker] = {}


# --------------------------------------------------------------------------- clients


def _clients(directory: Path) -> Children:
    """Client processes (this file re-executed): each prints "ready" after its setup,
    starts on "go" and ends with a JSON line; all are killed at the end if still alive."""
    return Children(directory, __file__, "_client", "client")


def _start(
    clients: Children, name: str, kind: str, params: dict[str, Any]
) -> subprocess.Popen[str]:
    return clients.start(name, [kind, json.dumps(params)], timeout=60)


def _one(ctx: Ctx, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    clients = _clients(ctx.dir(f"client-{kind}"))
    try:
        proc = _start(clients, kind, kind, params)
        clients.go(proc)
        return clients.finish(kind, proc, 600)
    finally:
        clients.close()


# --------------------------------------------------------------------------- 1. producer


_PRODUCER_CASES: dict[str, dict[str, Any]] = {"default": {}, "linger0": {"linger.ms": 0}}


def bench_producer(ctx: Ctx) -> list[Metric]:
    broker = _RUN["broker"]
    total = ctx.sizes.producer_records
    cases = [(1, "default"), (4, "default"), (1, "linger0"), (4, "linger0")]
    metrics: dict[tuple[int, str], PeerMetric] = {}
    for parts, name in cases:
        what = ("librdkafka defaults (linger.ms=5, acks=all)" if name == "default" else
                "linger.ms=0 (acks=all)")
        metrics[parts, name] = PeerMetric(
            "producer", f"kafka: produce() x{total:,} + flush(), {parts} partition"
            f"{'s' if parts > 1 else ''}, {what}", "records/s",
            key=f"kafka.producer.p{parts}.{name}")
    batches: dict[tuple[int, str], list[int]] = {case: [] for case in cases}
    for run in range(ctx.runs):
        for parts, name in cases if run % 2 == 0 else cases[::-1]:
            topic = broker.create_topic(parts)
            try:
                got = _one(ctx, "produce", {
                    "bootstrap": broker.bootstrap, "topic": topic, "n": total,
                    "config": _PRODUCER_CASES[name], "seed": 1})
                ends = broker.end_offsets(topic, parts)
                nbatches, nrecords = broker.batches(topic, parts)
            finally:
                broker.delete_topic(topic)
            if sum(ends) != total or nrecords != total:
                raise AssertionError(f"produced {total} records; end offsets {ends}, "
                                     f"{nrecords} records in the log files")
            metrics[parts, name].values.append(got["rate"])
            batches[parts, name].append(nbatches)
            progress(f"producer run {run + 1}: {parts} partition(s), {name}: "
                     f"{got['rate']:,.0f} records/s, {nbatches:,} batches")
    ctx.notes.append("kafka producer: record batches in the log per trial (median of the "
                     "runs; records per batch on average): " + "; ".join(
                         f"{p} partition{'s' if p > 1 else ''}, {n}: "
                         f"{statistics.median(b):,.0f} ({total / statistics.median(b):,.0f})"
                         for (p, n), b in batches.items()))
    return list(metrics.values())


# --------------------------------------------------------------------------- 2. bulk


BULK_CONFIG: dict[str, Any] = {
    "linger.ms": 100, "batch.size": MiB, "batch.num.messages": 1_000_000,
    "message.max.bytes": 2 * MiB,
}


def bench_bulk(ctx: Ctx) -> list[Metric]:
    broker = _RUN["broker"]
    total = ctx.sizes.bulk_records
    metric = PeerMetric(
        "bulk", f"kafka: produce() x{total:,} + flush(), 1 partition, linger.ms=100, "
        "batch.size=1 MiB, batch.num.messages=1,000,000", "records/s", key="kafka.bulk.p1")
    nb: list[int] = []
    for run in range(ctx.runs):
        topic = broker.create_topic(1)
        try:
            got = _one(ctx, "produce", {"bootstrap": broker.bootstrap, "topic": topic,
                                        "n": total, "config": BULK_CONFIG, "seed": 1})
            ends = broker.end_offsets(topic, 1)
            nbatches, nrecords = broker.batches(topic, 1)
        finally:
            broker.delete_topic(topic)
        if ends != [total] or nrecords != total:
            raise AssertionError(f"produced {total} records; end offset {ends}, "
                                 f"{nrecords} in the log files")
        metric.values.append(got["rate"])
        nb.append(nbatches)
        progress(f"bulk run {run + 1}: {got['rate']:,.0f} records/s, {nbatches:,} batches")
    ctx.notes.append(f"kafka bulk: {statistics.median(nb):,.0f} batches per trial "
                     f"({total / statistics.median(nb):,.0f} records per batch on average)")
    return [metric]


# --------------------------------------------------------------------------- 3. consumer


def bench_consumer(ctx: Ctx) -> list[Metric]:
    broker = _RUN["broker"]
    total = ctx.sizes.consumer_records
    cases = [("consume500", 500), ("consume10000", 10_000), ("poll1", 1)]
    metrics = {
        name: PeerMetric(
            "consumer",
            f"kafka: consume(num_messages={n:,}) loop, {total:,} records" if n > 1 else
            f"kafka: poll() one record a call (the iteration analogue), {total:,} records",
            "records/s", key=f"kafka.consumer.{name}")
        for name, n in cases
    }
    topic = broker.create_topic(1)
    try:
        _one(ctx, "produce", {"bootstrap": broker.bootstrap, "topic": topic, "n": total,
                              "config": {}, "seed": 2})
        ends = broker.end_offsets(topic, 1)
        nbatches, nrecords = broker.batches(topic, 1)
        if ends != [total] or nrecords != total:
            raise AssertionError(f"filled {total} records; end offset {ends}")
        size = sum(s.stat().st_size for s in (broker.broker.log_dir / f"{topic}-0").glob("*.log"))
        ctx.notes.append(f"kafka consumer partition: {total:,} records in {nbatches:,} batches "
                         f"(librdkafka's default producer), {size / 1e6:.0f} MB, page cache warm")
        progress(ctx.notes[-1])
        for run in range(ctx.runs):
            for name, n in cases if run % 2 == 0 else cases[::-1]:
                got = _one(ctx, "consume", {"bootstrap": broker.bootstrap, "topic": topic,
                                            "n": total, "batch": n})
                metrics[name].values.append(got["rate"])
                progress(f"consumer run {run + 1}: {name}: {got['rate']:,.0f} records/s")
    finally:
        broker.delete_topic(topic)
    return list(metrics.values())


# --------------------------------------------------------------------------- 4. latency


_LATENCY_CASES = {"linger0": 0, "linger1": 1}  # name: the producer's linger.ms


def bench_latency(ctx: Ctx) -> list[Metric]:
    broker = _RUN["broker"]
    sizes = ctx.sizes
    rate = sizes.latency_rate
    warmup = round(sizes.latency_warmup_seconds * rate)
    measured = round(sizes.latency_seconds * rate)
    total = warmup + measured
    pcts = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9), ("max", None))
    cases = list(_LATENCY_CASES)
    m: dict[tuple[str, str], PeerMetric] = {}
    for case, linger in _LATENCY_CASES.items():
        for label, _ in pcts:
            m[case, label] = PeerMetric(
                "latency", f"kafka: {label}, linger.ms={linger}, acks=all, {rate:,} records/s,"
                f" {sizes.latency_seconds:g} s after {sizes.latency_warmup_seconds:g} s warm-up",
                "ms", key=f"kafka.latency.{case}.{label.replace('.', '_')}")
        m[case, "rate"] = PeerMetric("latency", f"kafka: achieved send rate, linger.ms={linger}",
                                     "records/s", key=f"kafka.latency.{case}.send_rate")
        for label in ("p50", "p99"):
            m[case, f"ack {label}"] = PeerMetric(
                "latency", f"kafka: produce() to acknowledgement (delivery report), {label}, "
                f"linger.ms={linger}", "ms", key=f"kafka.latency.{case}.ack_{label}")
        m[case, "behind"] = PeerMetric(
            "latency", f"kafka: producer most behind its schedule, linger.ms={linger}", "ms",
            key=f"kafka.latency.{case}.max_behind")
    batches: dict[str, list[int]] = {case: [] for case in cases}
    for run in range(ctx.runs):
        for case in cases if run % 2 == 0 else cases[::-1]:
            directory = ctx.dir(f"latency-{case}-{run}")
            topic = broker.create_topic(1)
            lat_file = directory / "latencies.bin"
            load = os.getloadavg()[0]
            clients = _clients(directory)
            try:
                consumer = _start(clients, "consumer", "latency_consumer", {
                    "bootstrap": broker.bootstrap, "topic": topic, "n": total,
                    "out": str(lat_file)})
                producer = _start(clients, "producer", "latency_producer", {
                    "bootstrap": broker.bootstrap, "topic": topic, "n": total, "rate": rate,
                    "linger": _LATENCY_CASES[case], "warmup": warmup})
                clients.go(consumer, producer)
                sent = clients.finish("producer", producer, total / rate + 120)
                got = clients.finish("consumer", consumer, 120)
                nbatches, _ = broker.batches(topic, 1)
            finally:
                clients.close()
                broker.delete_topic(topic)
            lat = array("q")
            lat.frombytes(lat_file.read_bytes())
            if len(lat) != total:
                raise AssertionError(f"the consumer saw {len(lat)} records of {total}")
            values = sorted(lat[warmup:])
            for label, p in pcts:
                v = values[-1] if p is None else percentile(values, p)
                m[case, label].values.append(v / 1e6)
            m[case, "rate"].values.append(sent["rate"])
            m[case, "ack p50"].values.append(sent["ack_p50_ms"])
            m[case, "ack p99"].values.append(sent["ack_p99_ms"])
            m[case, "behind"].values.append(sent["max_behind_ms"])
            batches[case].append(nbatches)
            progress(
                f"latency run {run + 1}, {case}: p50 {m[case, 'p50'].values[-1]:.3f} ms, p99 "
                f"{m[case, 'p99'].values[-1]:.3f} ms, p99.9 {m[case, 'p99.9'].values[-1]:.3f} "
                f"ms, max {m[case, 'max'].values[-1]:.2f} ms (acknowledged: p50 "
                f"{sent['ack_p50_ms']:.3f} ms, p99 {sent['ack_p99_ms']:.3f} ms, max "
                f"{sent['ack_max_ms']:.2f} ms); {sent['rate']:,.0f} records/s "
                f"sent ({sent['late_1ms']} sends > 1 ms late), {nbatches:,} batches; CPU s / "
                f"involuntary switches: producer {sent['cpu_s']:.1f} / "
                f"{sent['involuntary_switches']:,}, consumer {got['cpu_s']:.1f} / "
                f"{got['involuntary_switches']:,}; load average before {load:.2f}")
            shutil.rmtree(directory)
    ctx.notes.append(f"kafka latency: record batches in the log per trial of {total:,} "
                     "records (median): " + "; ".join(
                         f"linger.ms={_LATENCY_CASES[c]}: {statistics.median(b):,.0f}"
                         for c, b in batches.items()))
    return list(m.values())


# --------------------------------------------------------------------------- 5. 1 MiB


def bench_append_1mib(ctx: Ctx) -> list[Metric]:
    broker = _RUN["broker"]
    count, rounds = ctx.sizes.big_records, ctx.sizes.big_rounds
    kafka = PeerMetric(
        "append_1mib", f"kafka: produce() x{count} values of 1 MiB + flush(), librdkafka "
        f"defaults, best of {rounds}", "MiB/s", key="kafka.append_1mib")
    raw = PeerMetric("append_1mib", f"raw os.write 1 MiB x{count}, no fsync, best of {rounds}",
                     "MiB/s", key="raw.append_1mib")
    ratio = PeerMetric("append_1mib", "ratio kafka / raw os.write", "x",
                       key="kafka.append_1mib.ratio")
    directory = ctx.dir("append_1mib")
    buf = random.Random(5).randbytes(MiB)

    def run_raw() -> float:
        path = directory / "raw.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with quiesced():
                start = clock()
                for _ in range(count):
                    os.write(fd, buf)
                elapsed = clock() - start
        finally:
            os.close(fd)
        if path.stat().st_size != count * MiB:
            raise AssertionError("short raw write")
        path.unlink()
        return elapsed

    def run_kafka() -> float:
        topic = broker.create_topic(1, {"max.message.bytes": str(BIG_TOPIC_MAX)})
        try:
            got = _one(ctx, "produce_big", {"bootstrap": broker.bootstrap, "topic": topic,
                                            "n": count})
            ends = broker.end_offsets(topic, 1)
        finally:
            broker.delete_topic(topic)
        if ends != [count]:
            raise AssertionError(f"produced {count} 1 MiB records; end offset {ends}")
        return float(got["seconds"])

    try:
        for run in range(ctx.runs):
            t_raw: list[float] = []
            t_kafka: list[float] = []
            for rnd in range(rounds):
                first_raw = (run * rounds + rnd) % 2 == 0
                for side in ("raw", "kafka") if first_raw else ("kafka", "raw"):
                    (t_raw if side == "raw" else t_kafka).append(
                        run_raw() if side == "raw" else run_kafka())
                progress(f"append_1mib run {run + 1} round {rnd + 1}: raw "
                         f"{count / t_raw[-1]:,.0f} MiB/s, kafka {count / t_kafka[-1]:,.0f} "
                         "MiB/s")
            raw.values.append(count / min(t_raw))
            kafka.values.append(count / min(t_kafka))
            ratio.values.append(min(t_raw) / min(t_kafka))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return [kafka, raw, ratio]


BENCHMARKS: dict[str, Callable[[Ctx], list[Metric]]] = {
    "producer": bench_producer,
    "bulk": bench_bulk,
    "consumer": bench_consumer,
    "latency": bench_latency,
    "append_1mib": bench_append_1mib,
}


# --------------------------------------------------------------------------- client side


def _pool(seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return [(rng.randbytes(VALUE_SIZE), rng.randbytes(KEY_SIZE)) for _ in range(POOL)]


def _producer(bootstrap: str, config: dict[str, Any], failed: list[str]) -> Any:
    from confluent_kafka import Producer

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    return Producer({
        "bootstrap.servers": bootstrap,
        "queue.buffering.max.messages": 2_000_000,
        "delivery.report.only.error": True,
        "on_delivery": on_delivery,
        **config,
    })


def _connect(client: Any, topic: str) -> None:
    """Connect and fetch the topic's metadata before any timer (as logstore's benchmarks
    open their partitions first)."""
    meta = client.list_topics(topic, timeout=30)
    if meta.topics[topic].error is not None:
        raise SystemExit(f"topic {topic}: {meta.topics[topic].error}")


def _produce(p: dict[str, Any], go: threading.Event) -> dict[str, Any]:
    topic, n = p["topic"], int(p["n"])
    pool = _pool(int(p["seed"]))
    failed: list[str] = []
    producer = _producer(p["bootstrap"], p["config"], failed)
    _connect(producer, topic)
    work = [pool[i % POOL] for i in range(n)]
    produce, poll = producer.produce, producer.poll
    _ready(go)
    os.sync()
    start = clock()
    for i, (value, key) in enumerate(work):
        try:
            produce(topic, value, key)
        except BufferError:  # not expected with a 2,000,000-message queue
            poll(0.005)
            produce(topic, value, key)
        if i % 100_000 == 0:
            poll(0)
    left = producer.flush(300)
    elapsed = clock() - start
    if left or failed:
        raise SystemExit(f"{left} records undelivered, {len(failed)} failed: {failed[:3]}")
    return {"rate": n / elapsed, "seconds": elapsed}


def _produce_big(p: dict[str, Any], go: threading.Event) -> dict[str, Any]:
    topic, n = p["topic"], int(p["n"])
    failed: list[str] = []
    producer = _producer(p["bootstrap"], {"message.max.bytes": BIG_TOPIC_MAX}, failed)
    _connect(producer, topic)
    value = random.Random(6).randbytes(MiB)
    produce = producer.produce
    _ready(go)
    os.sync()
    start = clock()
    for _ in range(n):
        produce(topic, value)
    left = producer.flush(300)
    elapsed = clock() - start
    if left or failed:
        raise SystemExit(f"{left} records undelivered, {len(failed)} failed: {failed[:3]}")
    return {"rate": n / elapsed, "seconds": elapsed}


def _consumer(bootstrap: str, topic: str, config: dict[str, Any] | None = None) -> Any:
    from confluent_kafka import Consumer

    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"peer-{topic}",
        "enable.auto.commit": False,
        # see bench_server.py: the default 1 s pause whenever the client's queue is full
        # measures a timer, not the fetch path
        "fetch.queue.backoff.ms": 10,
        **(config or {}),
    })


def _consume(p: dict[str, Any], go: threading.Event) -> dict[str, Any]:
    from confluent_kafka import TopicPartition

    topic, n, batch = p["topic"], int(p["n"]), int(p["batch"])
    consumer = _consumer(p["bootstrap"], topic)
    _connect(consumer, topic)
    _ready(go)
    os.sync()
    got = 0
    last = -1
    deadline = time.monotonic() + 300
    start = clock()
    consumer.assign([TopicPartition(topic, 0, 0)])
    if batch > 1:
        consume = consumer.consume
        while got < n and time.monotonic() < deadline:
            # never ask for more than is left: consume() would wait out its timeout
            for msg in consume(min(batch, n - got), 1.0):
                if msg.error() is None:
                    got += 1
                    last = msg.offset()
    else:
        poll = consumer.poll
        while got < n and time.monotonic() < deadline:
            msg = poll(1.0)
            if msg is not None and msg.error() is None:
                got += 1
                last = msg.offset()
    elapsed = clock() - start
    consumer.close()
    if got != n or last != n - 1:
        raise SystemExit(f"read {got} of {n} records, the last at offset {last}")
    return {"rate": n / elapsed, "seconds": elapsed}


def _latency_producer(p: dict[str, Any], go: threading.Event) -> dict[str, Any]:
    """Produce at the rate; also time each record's acknowledgement (its delivery report,
    served by the ``poll(0)`` after every produce: ~0.1 ms resolution)."""
    topic, total, rate, warmup = p["topic"], int(p["n"]), int(p["rate"]), int(p["warmup"])
    failed: list[str] = []
    config = {"linger.ms": int(p["linger"]), "acks": "all", "delivery.report.only.error": False}
    producer = _producer(p["bootstrap"], config, failed)
    _connect(producer, topic)
    pad = random.Random(3).randbytes(VALUE_SIZE - _SEND_TIME.size)
    key = random.Random(4).randbytes(KEY_SIZE)
    pack, unpack, now_ns = _SEND_TIME.pack, _SEND_TIME.unpack_from, time.monotonic_ns
    acked = array("q")

    def on_ack(err: Any, msg: Any) -> None:
        if err is None:
            acked.append(now_ns() - unpack(msg.value())[0])
        else:
            failed.append(str(err))

    produce, poll = producer.produce, producer.poll
    _ready(go)
    interval = 1_000_000_000 / rate
    most_behind = late = 0
    t0 = now_ns()
    for i in range(total):
        due = t0 + int(i * interval)
        now = now_ns()
        while now < due:  # pace: sleep when far ahead, spin for the last stretch
            if due - now > 1_500_000:
                time.sleep((due - now - 1_000_000) / 1e9)
            now = now_ns()
        most_behind = max(most_behind, now - due)
        if now - due > 1_000_000:
            late += 1
        produce(topic, pack(now_ns()) + pad, key, partition=0, on_delivery=on_ack)
        poll(0)
    left = producer.flush(60)
    elapsed = (now_ns() - t0) / 1e9
    if left or failed or len(acked) != total:
        raise SystemExit(f"{left} records undelivered, {len(failed)} failed: {failed[:3]}; "
                         f"{len(acked)} acknowledged")
    ack = sorted(acked[warmup:])
    return {"sent": total, "rate": total / elapsed, "max_behind_ms": most_behind / 1e6,
            "late_1ms": late, "ack_p50_ms": percentile(ack, 50) / 1e6,
            "ack_p99_ms": percentile(ack, 99) / 1e6, "ack_max_ms": ack[-1] / 1e6}


def _latency_consumer(p: dict[str, Any], go: threading.Event) -> dict[str, Any]:
    from confluent_kafka import TopicPartition

    topic, total = p["topic"], int(p["n"])
    consumer = _consumer(p["bootstrap"], topic, p.get("config"))
    _connect(consumer, topic)
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumer.poll(0.5)  # the fetcher is started on the (empty) partition
    unpack, now_ns = _SEND_TIME.unpack_from, time.monotonic_ns
    lat = array("q")
    poll = consumer.poll
    _ready(go)
    deadline = time.monotonic() + 120 + total / 1000
    while len(lat) < total:
        msg = poll(0.1)
        if msg is not None and msg.error() is None:
            lat.append(now_ns() - unpack(msg.value())[0])
        elif time.monotonic() > deadline:
            raise SystemExit(f"only {len(lat)} of {total} records arrived")
    consumer.close()
    with open(p["out"], "wb") as f:
        lat.tofile(f)
    return {"records": len(lat)}


_CLIENTS: dict[str, Callable[[dict[str, Any], threading.Event], dict[str, Any]]] = {
    "produce": _produce,
    "produce_big": _produce_big,
    "consume": _consume,
    "latency_producer": _latency_producer,
    "latency_consumer": _latency_consumer,
}


def _ready(go: threading.Event) -> None:
    print("ready", flush=True)
    if not go.wait(120):
        raise SystemExit("no go from the parent")


def _watch_parent(go: threading.Event) -> None:
    """Set ``go`` on the parent's "go" line; exit at once when stdin closes (the parent
    finished, failed or was killed), so no client outlives the benchmark."""
    while data := os.read(0, 4096):
        if b"go" in data:
            go.set()
    os._exit(3)


def _client_main(argv: list[str]) -> int:
    kind, params = argv[0], json.loads(argv[1])
    go = threading.Event()
    threading.Thread(target=_watch_parent, args=(go,), daemon=True).start()
    result = _CLIENTS[kind](params, go)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    result["involuntary_switches"] = usage.ru_nivcsw
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)  # the stdin watcher thread is still blocked in read()


# --------------------------------------------------------------------------- main


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        return _client_main(argv[1:])
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--broker", choices=("shared", "private"), default="shared")
    known, rest = pre.parse_known_args(argv)
    args, names = parse_args(__doc__, BENCHMARKS, rest)
    signal.signal(signal.SIGTERM, _terminate)
    import confluent_kafka

    commit = git_commit(ROOT)
    workdir = Path(args.workdir).resolve() / f"peers-{os.getpid()}"
    ctx = Ctx(args.runs, QUICK if args.quick else FULL, workdir / "scratch", quick=args.quick)
    started = datetime.datetime.now().astimezone()
    command = " ".join([".venv/bin/python benchmarks/bench_peers.py", *argv])
    workdir.mkdir(parents=True, exist_ok=True)
    broker: Broker | None = None
    try:
        broker = _RUN["broker"] = Broker(known.broker, workdir)
        ctx.notes.append(broker.describe())
        metrics, elapsed = run_benchmarks(ctx, names, BENCHMARKS, command)
    finally:
        if broker is not None:
            broker.close()
        shutil.rmtree(workdir, ignore_errors=True)
    info = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "commit": commit,
            "kafka": kafka_broker.KAFKA_VERSION, "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0], "broker": known.broker}
    report("Apache Kafka through confluent-kafka (peer of logstore)",
           f"at commit {commit}", metrics, ctx, args, command, started, elapsed, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
