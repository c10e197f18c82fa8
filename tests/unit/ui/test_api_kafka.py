"""The web console on a Kafka cluster (``logstore --bootstrap-server H:P ui``): the same
JSON API through the backend seam, against a real Apache Kafka broker (issue 18); what
only a data directory has (segment files, sizes, the cleaner's state) is null."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

import logstore
from logstore.patterns.retry import RetryingConsumer
from logstore.patterns.retry_policy import RetryPolicy
from logstore.types import ConsumerRecord, TopicPartition
from logstore.ui.app import create_app
from logstore.ui.console import Console
from logstore.ui.sampler import Sampler
from tests.kafka_broker import KafkaBroker

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def env(kafka_broker: KafkaBroker) -> Iterator[tuple[TestClient, str, Sampler]]:
    tag = uuid.uuid4().hex[:8]
    orders, group = f"ui-orders-{tag}", f"ui-billing-{tag}"
    store = logstore.KafkaStore(f"kafka://{kafka_broker.bootstrap}?log_level=0")
    try:
        store.create_topic(orders, partitions=2)
        with store.producer() as producer:
            for i in range(20):
                producer.send(orders, json.dumps({"id": i}).encode(), key=f"k{i}".encode(),
                              partition=i % 2)
        store.backend.commit_offsets(group, {TopicPartition(orders, 0): (4, "")})

        def handle(record: ConsumerRecord) -> None:
            if record.offset == 3:
                raise ValueError("bad")

        policy = RetryPolicy(max_attempts=1, delays_ms=())
        with RetryingConsumer(store.backend, f"ui-shipper-{tag}", [orders], handle, policy) as rc:
            assert rc.run(idle_ms=1500).dead_lettered == 2
        console = Console(store.backend, kind="kafka", target=kafka_broker.bootstrap)
        sampler = Sampler(console, interval=0.2)
        sampler.sample_now()
        app = create_app(console, sampler, allow_writes=True)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            yield client, tag, sampler
        for name in (orders, orders + ".dlq"):
            store.delete_topic(name)
    finally:
        store.close()


def test_topics_records_groups_and_dead_letters_on_kafka(
    env: tuple[TestClient, str, Sampler]
) -> None:
    client, tag, sampler = env
    orders, group = f"ui-orders-{tag}", f"ui-billing-{tag}"
    assert client.get("/api/store").json()["kind"] == "kafka"
    topics = {t["name"]: t for t in client.get("/api/topics").json()["topics"]}
    assert topics[orders]["records"] == 20 and topics[orders]["size_bytes"] is None
    detail = client.get(f"/api/topics/{orders}").json()
    assert [p["end_offset"] for p in detail["partitions"]] == [10, 10]
    assert detail["partitions"][0]["segments"] is None
    page = client.get(f"/api/topics/{orders}/records", params={"limit": 3}).json()
    assert [r["value"]["json"]["id"] for r in page["records"]] == [0, 2, 4]
    assert page["next_offset"] == 3
    found = client.get(f"/api/topics/{orders}/records",
                       params={"partition": 1, "key": "k7"}).json()["records"]
    assert [r["offset"] for r in found] == [3]
    assert client.get(f"/api/topics/{orders}/records",
                      params={"offset": 11}).json()["error"] == "offset_out_of_range"
    assert client.get("/api/topics/nope-" + tag).status_code == 404
    billing = client.get(f"/api/groups/{group}").json()
    assert [(p["partition"], p["committed"], p["lag"]) for p in billing["partitions"]] == [
        (0, 4, 6)]
    sampler.sample_now()
    assert client.get(f"/api/groups/{group}/lag").json()["total"][-1] == 6
    letters = client.get(f"/api/topics/{orders}.dlq/dead-letters").json()["letters"]
    assert sorted(x["original"]["partition"] for x in letters) == [0, 1]
    done = client.post(f"/api/topics/{orders}.dlq/dead-letters/redrive",
                       json={"letters": [letters[0]["id"]], "confirm": True}).json()
    assert done == {"done": True, "count": 1, "routes": {orders: 1}, "skipped": []}
    assert client.get(f"/api/topics/{orders}").json()["records"] == 21
    assert [t for t in client.get("/api/dead-letters").json()["topics"]
            if t["name"] == orders + ".dlq"] == [
        {"name": orders + ".dlq", "records": 2, "redriven": 1, "pending": 1}]
