"""What an operator does to a Kafka cluster outside the backend seam, for tests."""

from __future__ import annotations

from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient

from logstore.types import TopicPartition


def kafka_delete_records(bootstrap: str, tp: TopicPartition, offset: int) -> int:
    """Kafka's DeleteRecords: move ``tp``'s log start to ``offset``; returns it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([KafkaTopicPartition(tp.topic, tp.partition, offset)])
    [future] = futures.values()
    return int(future.result(timeout=30).low_watermark)
