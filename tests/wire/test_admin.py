"""Topic administration: create (with configs), describe (partitions, leader, replication
factor 1), describe configs, delete; and the errors a client reads when a topic exists
already or is missing. kcat only describes (``-L``): kafka-python creates and deletes
for it."""

from __future__ import annotations

from tests.wire.clients import Can, WireClient, by_name
from tests.wire.differences import KAFKA_TOPIC_CONFIGS, LONG_MAX, expect
from tests.wire.helpers import PYTESTMARK, needs, unique
from tests.wire.model import PartitionInfo, wait_for
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
