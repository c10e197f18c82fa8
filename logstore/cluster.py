"""A Kafka cluster with logstore's clients: what ``logstore.open("kafka://...")`` returns.

    import logstore
    with logstore.open("kafka://localhost:9092") as cluster:
        cluster.create_topic("events", partitions=3, exist_ok=True)
        with cluster.producer() as producer:
            producer.send("events", b"hello", key=b"user-1")
        with cluster.consumer(["events"], group_id="app") as consumer:
            records = consumer.poll(timeout_ms=5000)

:class:`KafkaStore` offers what a program uses of an embedded
:class:`~logstore.embedded.Store` through the clients: producers, consumers, topics and
group administration, all through :class:`~logstore.backend.kafka.KafkaBackend`. What
reads a data directory's files (segments, indexes, ``verify``, ``inspect``, compaction
and retention runs, repairs) is local-only: the cluster's brokers do that themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from logstore.backend.kafka import KafkaBackend, parse_kafka_url
from logstore.client import admin
from logstore.client.consumer import Consumer
from logstore.client.producer import Producer
from logstore.config import TopicConfig
from logstore.errors import StoreClosedError, TopicExistsError
from logstore.types import (
    Clock,
    ConsumerRecord,
    HeadersArg,
    RecordMetadata,
    TopicMetadata,
    TopicPartition,
)


class KafkaStore:
    """A Kafka cluster, used like a store: the same producers, consumers and group admin.

    Args:
        url: ``kafka://host:port[,host:port...][?librdkafka.setting=value&...]``
            (:func:`~logstore.backend.kafka.parse_kafka_url`).
        clock: the source of default record timestamps.

    Raises:
        InvalidConfigError: a malformed address or a setting librdkafka refuses.
    """

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        bootstrap, settings = parse_kafka_url(url)
        self.url = url
        self.backend = KafkaBackend(bootstrap, settings, clock=clock)
        self._closed = False
        self._producer: Producer | None = None

    def __repr__(self) -> str:
        return f"KafkaStore({self.backend.bootstrap_servers!r})"

    # ------------------------------------------------------------------ clients

    def producer(self, **options: Any) -> Producer:
        """A :class:`~logstore.client.producer.Producer` on the cluster."""
        self._check_open()
        return Producer(self.backend, **options)

    def consumer(self, topics: Iterable[str] | None = None, **options: Any) -> Consumer:
        """A :class:`~logstore.client.consumer.Consumer` on the cluster: subscribed to
        ``topics`` with a ``group_id`` (librdkafka runs its membership), or assigned
        partitions later."""
        self._check_open()
        return Consumer(self.backend, topics, **options)

    def append(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """Send one record and wait until the cluster has it (a shared producer)."""
        self._check_open()
        if self._producer is None:
            self._producer = Producer(self.backend, linger_ms=0)
        return self._producer.send(
            topic, value, key=key, headers=headers, partition=partition, timestamp=timestamp
        ).result()

    def read(
        self, topic: str, partition: int, offset: int, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Records of one partition from ``offset`` on (one fetch's worth)."""
        self._check_open()
        answer = self.backend.fetch(
            {TopicPartition(topic, partition): offset},
            max_records=max_records or 500, max_bytes=1 << 20, max_wait_ms=1000,
        )
        found = answer.get(TopicPartition(topic, partition), [])
        if isinstance(found, Exception):
            raise found
        return found

    # ------------------------------------------------------------------ topics

    def create_topic(
        self, name: str, partitions: int | None = None, *, exist_ok: bool = False,
        **config: Any,
    ) -> TopicMetadata:
        """Create topic ``name`` (``config``: :class:`~logstore.config.TopicConfig`
        fields, set as Kafka's topic configs).

        Raises:
            TopicExistsError (unless ``exist_ok``), InvalidTopicError, InvalidConfigError.
        """
        self._check_open()
        try:
            return self.backend.create_topic(name, partitions or 1, **config)
        except TopicExistsError:
            if not exist_ok:
                raise
            return self.backend.topic_metadata(name)

    def delete_topic(self, name: str) -> None:
        self._check_open()
        self.backend.delete_topic(name)

    def add_partitions(self, name: str, total: int) -> TopicMetadata:
        self._check_open()
        return self.backend.add_partitions(name, total)

    def list_topics(self) -> list[str]:
        """The cluster's topics (not its internal ones)."""
        self._check_open()
        return self.backend.list_topics()

    def has_topic(self, name: str) -> bool:
        return name in self.list_topics()

    def topic_metadata(self, name: str) -> TopicMetadata:
        self._check_open()
        return self.backend.topic_metadata(name)

    def topic_config(self, name: str) -> TopicConfig:
        self._check_open()
        return self.backend.topic_config(name)

    def alter_topic(self, name: str, **changes: Any) -> TopicConfig:
        """Set ``changes`` (:class:`~logstore.config.TopicConfig` fields) on topic
        ``name``, as Kafka's topic configs; returns its configuration."""
        self._check_open()
        return self.backend.alter_topic(name, **changes)

    # ------------------------------------------------------------------ groups

    def list_groups(self) -> list[str]:
        return admin.list_groups(self.backend)

    def describe_group(self, group: str) -> admin.GroupDescription:
        return admin.describe_group(self.backend, group)

    def reset_offsets(self, group: str, **options: Any) -> dict[TopicPartition, int]:
        """New offsets for an inactive group (as :meth:`logstore.embedded.Store.
        reset_offsets`; Kafka refuses it while the group has members)."""
        return admin.reset_offsets(self.backend, group, **options)

    def delete_group(self, group: str) -> None:
        admin.delete_group(self.backend, group)

    # ------------------------------------------------------------------ life

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self!r} is closed")

    def close(self) -> None:
        """Flush the shared producer and close every client the backend made."""
        if self._closed:
            return
        self._closed = True
        if self._producer is not None:
            self._producer.close()
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
