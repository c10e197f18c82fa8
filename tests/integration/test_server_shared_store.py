"""One store, one truth: a store served by ``logstore serve`` and opened by embedded
clients in another process at the same time. Topics created either way are seen both
ways; groups and committed offsets are the same; an embedded producer's records wake a
Kafka client's waiting fetch within milliseconds (the server hears of another process's
appends from the kernel, not by polling)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

import logstore
from logstore.server.protocol.apis import APIS
from tests.server_process import RawClient, served

with warnings.catch_warnings():
    # ``import kafka`` trips a DeprecationWarning (importlib.resources.read_text) that
    # pytest's filterwarnings=error would turn into a collection error.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

pytestmark = pytest.mark.slow


def test_topics_created_either_way_are_seen_both_ways(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with served(data) as s, logstore.open(data) as store:
        store.create_topic("embedded-made", partitions=3)
        admin = KafkaAdminClient(bootstrap_servers=s.bootstrap)
        try:
            assert "embedded-made" in admin.list_topics()
            admin.create_topics([NewTopic("wire-made", 2, 1)])
        finally:
            admin.close()
        assert "wire-made" in store.list_topics()
        assert store.describe_topic("wire-made").config.partitions == 2


def test_offsets_committed_embedded_resume_over_the_wire_and_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with served(data) as s, logstore.open(data) as store:
        store.create_topic("orders", partitions=2)
        with store.producer() as producer:
            for i in range(40):
                producer.send("orders", b"%d" % i, key=b"k%d" % (i % 4))
        # an embedded consumer handles 20 records and commits
        with store.consumer(["orders"], group_id="billing",
                            auto_offset_reset="earliest") as consumer:
            handled = []
            while len(handled) < 20:
                handled += consumer.poll(timeout_ms=1000, max_records=20 - len(handled))
            consumer.commit()
        # a Kafka client in the same group goes on from there
        wire = KafkaConsumer("orders", bootstrap_servers=s.bootstrap, group_id="billing",
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
        rest = [m for m in wire]
        wire.commit()
        wire.close()
        assert sorted([int(r.value) for r in handled] + [int(m.value) for m in rest]) == list(
            range(40)
        )
        # and the embedded view of the group is what the wire client committed
        described = store.describe_group("billing")
        assert described.total_lag == 0
        assert "billing" in store.list_groups()


def test_an_embedded_append_wakes_a_waiting_wire_fetch(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with served(data) as s, logstore.open(data) as store:
        store.create_topic("events", partitions=1)
        with RawClient(s.host, s.port, timeout=20) as c:
            fetch = {"replica_id": -1, "max_wait_ms": 10_000, "min_bytes": 1,
                     "max_bytes": 1 << 20, "isolation_level": 0,
                     "topics": [{"topic": "events", "partitions": [
                         {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]}]}
            c.send(1, 4, fetch)  # waits: nothing to read yet
            time.sleep(0.3)  # the server now watches the partition
            started = time.monotonic()
            store.append("events", b"hello", key=b"k")
            answer = c.receive()
            waited = time.monotonic() - started
        assert answer is not None
        part = APIS[1].response.decode(answer, 4, 4)["responses"][0]["partitions"][0]
        assert part["high_watermark"] == 1 and part["records"]
        assert waited < 1.0, f"the fetch was answered {waited:.3f} s after the append"


def test_wire_producer_records_are_read_by_an_embedded_consumer_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with served(data) as s, logstore.open(data) as store:
        store.create_topic("mixed", partitions=1)
        producer = KafkaProducer(bootstrap_servers=s.bootstrap)
        producer.send("mixed", b"over the wire", key=b"w", headers=[("h", b"1")])
        producer.flush(30)
        producer.close()
        records = store.read("mixed", 0, 0)
        assert [(r.key, r.value, list(r.headers)) for r in records] == [
            (b"w", b"over the wire", [("h", b"1")])
        ]
