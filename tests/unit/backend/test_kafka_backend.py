"""The Kafka-cluster backend's parts that need no broker: addresses, errors, configs.

(The backend itself runs the clients' contract suite against a real broker:
``tests/unit/client/test_backend_contract.py``, ``[kafka]`` cases.)
"""

from __future__ import annotations

import uuid
from typing import Any

import confluent_kafka
import pytest

import logstore
from logstore.backend.kafka import KafkaBackend, is_kafka_url, parse_kafka_url
from logstore.backend.rdkafka import kafka_error
from logstore.cluster import KafkaStore
from logstore.errors import (
    ClusterError,
    FencedInstanceIdError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InvalidConfigError,
    InvalidRecordError,
    InvalidTopicError,
    PartitionNotFoundError,
    RebalanceInProgressError,
    RecordTooLargeError,
    StoreClosedError,
    TopicExistsError,
    TopicNotFoundError,
    UnknownMemberIdError,
    UnsupportedOperationError,
)
from logstore.kafka_configs import to_kafka, to_topic_config
from logstore.types import TopicPartition

K = confluent_kafka.KafkaError


@pytest.mark.parametrize(
    ("url", "bootstrap", "settings"),
    [
        ("kafka://localhost:9092", "localhost:9092", {}),
        ("kafka://a:1,b:2/", "a:1,b:2", {}),
        ("kafka://[::1]:9092", "[::1]:9092", {}),
        (
            "kafka://h:9093?security.protocol=SASL_SSL&sasl.mechanism=PLAIN",
            "h:9093",
            {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"},
        ),
        ("kafka://h:1?logstore.partitioner=murmur3", "h:1", {"logstore.partitioner": "murmur3"}),
    ],
)
def test_kafka_urls_parse_into_brokers_and_settings(
    url: str, bootstrap: str, settings: dict[str, str]
) -> None:
    assert parse_kafka_url(url) == (bootstrap, settings)
    assert is_kafka_url(url)


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("data/kafka", "not a Kafka address"),
        ("kafka://", "names no broker"),
        ("kafka://localhost", "is not host:port"),
        ("kafka://localhost:http", "is not host:port"),
        ("kafka://localhost:70000", "is not host:port"),
        ("kafka://h:1?novalue", "not name=value pairs"),
        ("kafka://h:1?bootstrap.servers=x:2", "sets bootstrap.servers twice"),
    ],
)
def test_bad_kafka_urls_are_refused_with_what_is_wrong(url: str, names: str) -> None:
    with pytest.raises(InvalidConfigError, match=names):
        parse_kafka_url(url)


def test_bad_logstore_settings_are_refused_before_any_connection() -> None:
    with pytest.raises(InvalidConfigError, match="murmur2 or murmur3"):
        KafkaBackend("h:1", {"logstore.partitioner": "crc"})
    with pytest.raises(InvalidConfigError, match=r"unknown setting 'logstore\.nope'"):
        KafkaBackend("h:1", {"logstore.nope": "1"})
    with pytest.raises(InvalidConfigError, match="not a positive integer"):
        KafkaBackend("h:1", {"logstore.request.timeout.ms": "soon"})
    with pytest.raises(InvalidConfigError, match="Kafka settings refused"):
        KafkaBackend("h:1", {"no.such.librdkafka.setting": "1"})


def test_open_with_a_kafka_address_gives_a_kafka_store_without_connecting() -> None:
    store = logstore.open("kafka://127.0.0.1:1?logstore.request.timeout.ms=200")
    assert isinstance(store, KafkaStore)
    store.close()
    with pytest.raises(StoreClosedError):
        store.producer()


def test_a_cluster_that_does_not_answer_is_a_cluster_error_naming_it() -> None:
    with (
        KafkaBackend("127.0.0.1:1", {"logstore.request.timeout.ms": "300"}) as backend,
        pytest.raises(ClusterError, match=r"topic 'events'"),
    ):
        backend.topic_metadata("events")


def test_what_a_cluster_cannot_do_says_so() -> None:
    with KafkaBackend("127.0.0.1:1") as backend:
        with pytest.raises(UnsupportedOperationError, match="transactional"):
            backend.init_producer_id("tx-1")
        with pytest.raises(UnsupportedOperationError, match="share group"):
            backend.share_join("workers")
        with pytest.raises(UnsupportedOperationError, match="stored batches"):
            backend.fetch_batches(TopicPartition("t", 0), 0, 100)
        with pytest.raises(UnsupportedOperationError, match="JoinGroup"):
            backend.join_group("g", "m")
        assert backend.init_producer_id() != backend.init_producer_id()  # own ids


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (K.UNKNOWN_TOPIC_OR_PART, TopicNotFoundError),
        (K._UNKNOWN_TOPIC, TopicNotFoundError),
        (K.UNKNOWN_TOPIC_ID, TopicNotFoundError),
        (K._UNKNOWN_PARTITION, PartitionNotFoundError),
        (K.TOPIC_ALREADY_EXISTS, TopicExistsError),
        (K.TOPIC_EXCEPTION, InvalidTopicError),
        (K.INVALID_CONFIG, InvalidConfigError),
        (K.INVALID_PARTITIONS, InvalidConfigError),
        (K.INVALID_REPLICATION_FACTOR, InvalidConfigError),
        (K.POLICY_VIOLATION, InvalidConfigError),
        (K.MSG_SIZE_TOO_LARGE, RecordTooLargeError),
        (K.RECORD_LIST_TOO_LARGE, RecordTooLargeError),
        (K.INVALID_RECORD, InvalidRecordError),
        (K.INVALID_MSG, InvalidRecordError),
        (K.NON_EMPTY_GROUP, GroupNotEmptyError),
        (K.ILLEGAL_GENERATION, IllegalGenerationError),
        (K.UNKNOWN_MEMBER_ID, UnknownMemberIdError),
        (K.REBALANCE_IN_PROGRESS, RebalanceInProgressError),
        (K.FENCED_INSTANCE_ID, FencedInstanceIdError),
        (K._TRANSPORT, ClusterError),
        (K.NOT_LEADER_FOR_PARTITION, ClusterError),
    ],
)
def test_kafka_errors_become_logstore_errors_naming_what_failed(
    code: int, error: type[Exception]
) -> None:
    found = kafka_error(K(code), "doing it")
    assert type(found) is error
    assert "doing it" in str(found)
    if isinstance(found, ClusterError):
        assert found.code == K(code).name()


def test_topic_configs_map_to_kafka_names_and_back() -> None:
    fields = {"retention_ms": 60_000, "cleanup_policy": "compact", "flush": "always",
              "max_message_bytes": 2048, "min_cleanable_dirty_ratio": 0.3}
    kafka = to_kafka(fields)
    assert kafka == {
        "retention.ms": "60000", "cleanup.policy": "compact", "flush.messages": "1",
        "flush.ms": str(2**63 - 1), "max.message.bytes": "2048",
        "min.cleanable.dirty.ratio": "0.3",
    }
    assert to_topic_config(kafka) == fields
    assert to_kafka({"partitioner": "murmur2", "partitions": 3}) == {}
    with pytest.raises(InvalidConfigError, match="retention_ms"):
        to_kafka({"retention_ms": "long"})


@pytest.mark.kafka
def test_readers_of_one_partition_at_different_offsets_each_get_their_records(
    kafka_broker: Any,
) -> None:
    """Fetch sessions are shared by the backend's readers: two consumers taking turns on
    one partition, far apart, and a third reading two partitions one at a time, each
    get exactly the records from their own position on."""
    topic = f"readers-{uuid.uuid4().hex[:8]}"
    with KafkaStore(f"kafka://{kafka_broker.bootstrap}") as cluster:
        cluster.create_topic(topic, 2)
        try:
            with cluster.producer(linger_ms=5) as producer:
                for i in range(3000):
                    producer.send(topic, b"%d" % i, partition=i % 2)
            tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
            early = cluster.consumer(max_poll_records=100)
            late = cluster.consumer(max_poll_records=100)
            early.assign([tp0])
            late.assign([tp0])
            early.seek(tp0, 0)
            late.seek(tp0, 1000)
            got: dict[str, list[int]] = {"early": [], "late": []}
            while len(got["early"]) < 500 or len(got["late"]) < 500:
                got["early"] += [r.offset for r in early.poll(timeout_ms=1000)]
                got["late"] += [r.offset for r in late.poll(timeout_ms=1000)]
            assert got["early"][:500] == list(range(500))
            assert got["late"][:500] == list(range(1000, 1500))
            both = cluster.consumer(max_poll_records=50, auto_offset_reset="earliest")
            both.assign([tp0, tp1])
            seen: list[tuple[int, int]] = []
            while len(seen) < 3000:
                seen += [(r.partition, r.offset) for r in both.poll(timeout_ms=1000)]
            assert sorted(seen) == [(p, o) for p in (0, 1) for o in range(1500)]
            for consumer in (early, late, both):
                consumer.close()
        finally:
            cluster.delete_topic(topic)


@pytest.mark.kafka
def test_a_new_topic_answers_offsets_at_once_and_can_be_altered(kafka_broker: Any) -> None:
    """create_topic returns once every partition's leader answers (right after a
    create, ListOffsets fails with NOT_LEADER_FOR_PARTITION for tens of ms)."""
    with KafkaStore(f"kafka://{kafka_broker.bootstrap}") as cluster:
        names = [f"fresh-{uuid.uuid4().hex[:8]}" for _ in range(5)]
        try:
            for name in names:
                cluster.create_topic(name, 3)
                assert [cluster.backend.offset_range(TopicPartition(name, p))
                        for p in range(3)] == [(0, 0)] * 3
            config = cluster.alter_topic(names[0], retention_ms=123_456)
            assert config.retention_ms == 123_456
            assert cluster.topic_config(names[0]).retention_ms == 123_456
            with pytest.raises(InvalidConfigError, match="add_partitions"):
                cluster.alter_topic(names[0], partitions=5)
            with pytest.raises(TopicNotFoundError, match="create it first"):
                cluster.alter_topic("no-such-topic-here", retention_ms=1)
        finally:
            for name in names:
                cluster.delete_topic(name)


@pytest.mark.kafka
def test_a_large_fetch_reads_to_the_end_and_answers_are_full(kafka_broker: Any) -> None:
    """Regressions: a partition paused because more than the read-ahead bound was
    buffered stayed paused once drained (the next fetch waited in vain); and an answer
    cut at ``max_records`` left one record for an answer of its own (2000, 1, 2000, 1)."""
    topic = f"large-{uuid.uuid4().hex[:8]}"
    with KafkaStore(f"kafka://{kafka_broker.bootstrap}") as cluster:
        cluster.create_topic(topic, 1)
        try:
            with cluster.producer(linger_ms=5) as producer:
                for _ in range(30_000):
                    producer.send(topic, b"x" * 100, partition=0)
            tp = TopicPartition(topic, 0)
            for max_records, full in ((50_000, None), (2_000, 2_000)):
                sizes, position = [], 0
                while position < 30_000:
                    got = cluster.backend.fetch({tp: position}, max_records=max_records,
                                                max_bytes=64 << 20, max_wait_ms=2000)
                    records = got.get(tp, [])
                    assert isinstance(records, list) and records, (max_records, position)
                    sizes.append(len(records))
                    position = records[-1].offset + 1
                if full is not None:  # 15 full answers, give or take a few cut short
                    assert len(sizes) <= 20, sizes  # (the bug took 30: 2000, 1, 2000, 1...)
        finally:
            cluster.delete_topic(topic)
