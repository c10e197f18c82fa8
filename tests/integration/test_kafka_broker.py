"""The Kafka harness (tests/kafka_broker.py) gives a broker that works, with kafka-python."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import pytest

from tests import kafka_fixture
from tests.kafka_broker import KafkaBroker, api_versions_ok, running, start

if not kafka_fixture.registered():  # before `pytest.mark.kafka`, unknown to --strict-markers
    pytest.skip(
        'the kafka_broker fixture is not registered: add pytest_plugins = ["tests.kafka_fixture"]'
        " to tests/conftest.py (or run pytest -p tests.kafka_fixture)",
        allow_module_level=True,
    )

with warnings.catch_warnings():
    # ``import kafka`` trips a DeprecationWarning (importlib.resources.read_text) that
    # pytest's filterwarnings=error would turn into a collection error.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3
RECORDS = 100


def test_produce_and_consume_100_keyed_records(kafka_broker: KafkaBroker) -> None:
    topic = f"harness-{uuid.uuid4().hex[:12]}"  # unique: the broker may outlive the session
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap, client_id="harness")
    try:
        admin.create_topics(
            [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
            timeout_ms=30_000,
        )
        assert topic in admin.list_topics()
    finally:
        admin.close()

    records = [(f"key-{i % 10}".encode(), f"value-{i}".encode()) for i in range(RECORDS)]
    sent: dict[tuple[int, int], tuple[bytes, bytes]] = {}  # (partition, offset) -> record
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush(timeout=30)
        for record, future in zip(records, futures, strict=True):
            meta = future.get(timeout=30)
            sent[(meta.partition, meta.offset)] = record
    finally:
        producer.close(timeout=10)
    assert len(sent) == RECORDS

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=f"harness-group-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    got: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    try:
        deadline = time.monotonic() + 60
        while len(got) < RECORDS and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    got[(record.partition, record.offset)] = (record.key, record.value)
    finally:
        consumer.close()

    assert got == sent  # every key, value, partition and offset, as the producer was told
    for partition in range(PARTITIONS):
        offsets = sorted(o for p, o in got if p == partition)
        assert offsets == list(range(len(offsets)))  # dense, from 0
    partitions_of_key: dict[bytes, set[int]] = {}
    for (partition, _), (key, _) in got.items():
        partitions_of_key.setdefault(key, set()).add(partition)
    assert len(partitions_of_key) == 10
    assert all(len(parts) == 1 for parts in partitions_of_key.values())
    for key in partitions_of_key:  # per-key order: values in offset order
        numbers = [int(v.split(b"-")[1]) for (_, _), (k, v) in sorted(got.items()) if k == key]
        assert numbers == sorted(numbers)


def test_start_twice_returns_the_same_broker(kafka_broker: KafkaBroker) -> None:
    first = start()
    second = start()
    assert first == second == kafka_broker
    assert running() == kafka_broker
    assert api_versions_ok(kafka_broker.host, kafka_broker.port)


def test_status_command_reports_the_bootstrap_address(kafka_broker: KafkaBroker) -> None:
    done = subprocess.run(
        [sys.executable, "tests/kafka_broker.py", "status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"bootstrap {kafka_broker.bootstrap}" in done.stdout
