"""Topic administration: create (with configs), describe (partitions, leader, replication
factor 1), describe configs, delete; and the errors a client reads when a topic exists
already or is missing. kcat only describes (``-L``): kafka-python creates and deletes
for it."""

from __future__ import annotations

import pytest

from tests.wire.clients import Can, WireClient, by_name
from tests.wire.clients.base import error_name
from tests.wire.differences import KAFKA_TOPIC_CONFIGS, LONG_MAX, expect
from tests.wire.helpers import PYTESTMARK, needs, unique
from tests.wire.model import PartitionInfo, Rec, wait_for
from tests.wire.targets import Target

pytestmark = PYTESTMARK

PARTITIONS = 3
CONFIGS = {"retention.ms": "123456789", "cleanup.policy": "delete", "segment.bytes": "2097152"}
KAFKA_ANSWERS = {
    "retention.ms": ("123456789", "DYNAMIC_TOPIC_CONFIG"),
    "cleanup.policy": ("delete", "DYNAMIC_TOPIC_CONFIG"),
    "segment.bytes": ("2097152", "DYNAMIC_TOPIC_CONFIG"),
    "retention.bytes": ("-1", "DEFAULT_CONFIG"),
    "max.message.bytes": ("1048588", "DEFAULT_CONFIG"),
    "segment.ms": ("604800000", "DEFAULT_CONFIG"),
    "compression.type": ("producer", "DEFAULT_CONFIG"),
    "message.timestamp.type": ("CreateTime", "DEFAULT_CONFIG"),
    "flush.messages": (LONG_MAX, "DEFAULT_CONFIG"),
    "flush.ms": (LONG_MAX, "DEFAULT_CONFIG"),
    "min.insync.replicas": ("1", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
    "min.cleanable.dirty.ratio": ("0.5", "DEFAULT_CONFIG"),
    "min.compaction.lag.ms": ("0", "DEFAULT_CONFIG"),
    "max.compaction.lag.ms": (LONG_MAX, "DEFAULT_CONFIG"),
    "delete.retention.ms": ("86400000", "DEFAULT_CONFIG"),
}
"""What Kafka 4.4 describes for such a topic (a config set at creation is a dynamic topic
config; the others are defaults)."""


@needs(Can.METADATA)
def test_topic_create_describe_delete(target: Target, client: WireClient) -> None:
    admin = client if client.can(Can.ADMIN) else by_name("kafka-python")
    topic = unique("admin")
    assert admin.create_topic(target.bootstrap, topic, PARTITIONS, CONFIGS) is None
    assert admin.create_topic(target.bootstrap, topic, 1, {}) == "TOPIC_ALREADY_EXISTS"

    wait_for(f"{topic} in the metadata", lambda: topic in client.list_topics(target.bootstrap),
             10)
    assert client.describe_topic(target.bootstrap, topic) == [
        PartitionInfo(p, 1, (1,), (1,)) for p in range(PARTITIONS)]

    if client.can(Can.ADMIN):
        configs = client.topic_configs(target.bootstrap, topic)
        expect(target.name, "DescribeConfigs(topic).names", frozenset(configs),
               KAFKA_TOPIC_CONFIGS)
        for name, kafka_answer in KAFKA_ANSWERS.items():
            expect(target.name, f"DescribeConfigs(topic).{name}", configs.get(name),
                   kafka_answer)

    assert admin.delete_topic(target.bootstrap, topic) is None
    wait_for(f"{topic} gone from the metadata",
             lambda: topic not in client.list_topics(target.bootstrap), 10)
    assert admin.delete_topic(target.bootstrap, topic) == "UNKNOWN_TOPIC_OR_PARTITION"


@needs(Can.PRODUCE, Can.CONSUME)
def test_producing_to_a_missing_topic_creates_it(target: Target, client: WireClient) -> None:
    """Both servers create topics on a client's request (Kafka's default
    auto.create.topics.enable=true), with one partition (num.partitions=1)."""
    topic = unique("auto")
    sent = [Rec(b"key", f"value-{i}".encode()) for i in range(3)]
    client.produce(target.bootstrap, topic, sent)
    assert by_name("kafka-python").describe_topic(target.bootstrap, topic) == [
        PartitionInfo(0, 1, (1,), (1,))]
    got = client.consume(target.bootstrap, topic, 1, len(sent))
    assert [(g.offset, g.value) for g in got] == [(i, r.value) for i, r in enumerate(sent)]


@needs(Can.PRODUCE_DETAILS)
def test_a_batch_over_max_message_bytes_is_refused(target: Target, client: WireClient) -> None:
    topic = unique("large")
    assert client.create_topic(target.bootstrap, topic, 1, {"max.message.bytes": "10000"}) is None
    with pytest.raises(Exception) as refused:  # each library raises its own type
        client.produce(target.bootstrap, topic, [Rec(b"key", b"x" * 20_000)])
    assert error_name(refused.value) == "MESSAGE_TOO_LARGE"
    client.produce(target.bootstrap, topic, [Rec(b"key", b"x" * 5_000)])  # under the limit
    assert [g.offset for g in client.consume(target.bootstrap, topic, 1, 1)] == [0]


@needs(Can.METADATA, Can.ADMIN)
def test_a_compacted_topic_is_created_and_described_like_kafkas(
    target: Target, client: WireClient
) -> None:
    topic = unique("compacted")
    configs = {"cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.1",
               "delete.retention.ms": "1000", "min.compaction.lag.ms": "5"}
    assert client.create_topic(target.bootstrap, topic, 1, configs) is None
    described = client.topic_configs(target.bootstrap, topic)
    for name, value in configs.items():
        assert described.get(name) == (value, "DYNAMIC_TOPIC_CONFIG"), name
    bad = client.create_topic(target.bootstrap, unique("bad"), 1,
                              {"min.cleanable.dirty.ratio": "2"})
    # refused as INVALID_CONFIG (error 40; each client words it its own way)
    assert bad is not None and ("INVALID_CONFIG" in bad or "40" in bad), bad
    assert client.delete_topic(target.bootstrap, topic) is None
