#!/usr/bin/env python3
"""The Kafka-cluster backend (issue 17): logstore's clients on a real Kafka broker,
against confluent-kafka's own clients on the same broker in the same run.

    .venv/bin/python benchmarks/bench_kafka_backend.py --runs 5
    .venv/bin/python benchmarks/bench_kafka_backend.py --quick     # smoke run

Uses the broker ``./dev kafka start`` runs (or starts one with tests/kafka_broker.py and
stops it after). Each run, on a fresh topic of 4 partitions, ``--records`` records of 100
bytes with keys:

* **produce**: logstore's ``Producer`` (``linger_ms=5``) through ``KafkaBackend``, every
  record acknowledged (``close()``), against the baseline: a confluent-kafka ``Producer``
  (idempotent, ``linger.ms=5``) producing the same records then ``flush()``;
* **consume**: logstore's ``Consumer`` (``assign`` of the 4 partitions, from the
  earliest offset) reading every record, against a confluent-kafka ``Consumer``
  (``assign``, ``consume(500)`` in a loop) reading the same records.

Records/s, medians of the runs, and the ratio to the baseline of the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import Producer as RawProducer
from confluent_kafka import TopicPartition as RawTopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import logstore
from logstore import TopicPartition
from logstore.cluster import KafkaStore
from tests import kafka_broker

PARTITIONS = 4
VALUE = b"v" * 100


def _produce_logstore(cluster: KafkaStore, topic: str, n: int) -> float:
    started = time.perf_counter()
    with cluster.producer(linger_ms=5) as producer:
        for i in range(n):
            producer.send(topic, VALUE, key=b"k%d" % (i % 1000))
    return n / (time.perf_counter() - started)


def _produce_raw(bootstrap: str, topic: str, n: int) -> float:
    producer = RawProducer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                            "linger.ms": 5})
    started = time.perf_counter()
    for i in range(n):
        while True:
            try:
                producer.produce(topic, VALUE, b"k%d" % (i % 1000))
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush()
    return n / (time.perf_counter() - started)


def _consume_logstore(cluster: KafkaStore, topic: str, n: int) -> float:
    got = 0
    started = time.perf_counter()
    with cluster.consumer(auto_offset_reset="earliest", max_poll_records=5000) as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        while got < n:
            got += len(consumer.poll(timeout_ms=1000))
    return got / (time.perf_counter() - started)


def _consume_raw(bootstrap: str, topic: str, n: int) -> float:
    consumer = RawConsumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                            "enable.auto.commit": False})
    consumer.assign([RawTopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = 0
    started = time.perf_counter()
    while got < n:
        got += sum(1 for m in consumer.consume(500, 1.0) if m.error() is None)
    rate = got / (time.perf_counter() - started)
    consumer.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 5_000 if args.quick else args.records
    broker = kafka_broker.running()
    started_here = broker is None
    if broker is None:
        broker = kafka_broker.start()
    results: dict[str, list[float]] = {}
    try:
        cluster = logstore.open(f"kafka://{broker.bootstrap}")
        assert isinstance(cluster, KafkaStore)
        with cluster:
            for run in range(args.runs):
                ours = f"bench-ls-{uuid.uuid4().hex[:8]}"
                theirs = f"bench-ck-{uuid.uuid4().hex[:8]}"
                for name in (ours, theirs):
                    cluster.create_topic(name, PARTITIONS)
                try:
                    rates = {
                        "produce, logstore Producer": _produce_logstore(cluster, ours, n),
                        "produce, confluent-kafka Producer": _produce_raw(
                            broker.bootstrap, theirs, n),
                        "consume, logstore Consumer": _consume_logstore(cluster, ours, n),
                        "consume, confluent-kafka Consumer": _consume_raw(
                            broker.bootstrap, theirs, n),
                    }
                finally:
                    for name in (ours, theirs):
                        cluster.delete_topic(name)
                for key, value in rates.items():
                    results.setdefault(key, []).append(value)
                print(f"run {run + 1}: " + ", ".join(f"{k}: {v:,.0f}/s" for k, v in
                      rates.items()), file=sys.stderr)
    finally:
        if started_here:
            kafka_broker.stop(broker)
    medians = {k: statistics.median(v) for k, v in results.items()}
    print(f"| {n:,} records of 100 bytes, 4 partitions | records/s (median of {args.runs}) "
          f"| vs confluent-kafka |")
    print("| --- | ---: | ---: |")
    baselines = {"produce": medians["produce, confluent-kafka Producer"],
                 "consume": medians["consume, confluent-kafka Consumer"]}
    for what, base in baselines.items():
        for key, value in medians.items():
            if key.startswith(what):
                ratio = "" if "confluent" in key else f"{value / base:.2f}x"
                print(f"| {key} | {value:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
