"""confluent-kafka 2 (librdkafka, bundled with the wheel). librdkafka's producer is not
idempotent by default (``enable.idempotence=false``) and partitions keys with CRC32
(``consistent_random``), not Java's murmur2; its consumer reads ``read_committed``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from tests.wire.clients.base import (
    CALL_TIMEOUT_S,
    FETCH_WAIT_MS,
    HEARTBEAT_MS,
    MAX_POLL_INTERVAL_MS,
    MAX_POLL_RECORDS,
    POLL_S,
    SESSION_TIMEOUT_MS,
    Can,
    WireClient,
    error_name,
)
from tests.wire.model import (
    Got,
    GroupInfo,
    MemberControl,
    MemberInfo,
    OffsetTime,
    PartitionInfo,
    Rec,
    commit_epochs,
)


def _got(m: Any) -> Got:
    if m.error() is not None:
        raise KafkaException(m.error())
    headers = tuple((k, None if v is None else bytes(v)) for k, v in (m.headers() or ()))
    epoch = m.leader_epoch()
    return Got(m.partition(), m.offset(), m.key(), m.value(), headers, m.timestamp()[1],
               -1 if epoch is None else epoch)


def _consumer(bootstrap: str, group: str | None = None, **options: Any) -> Any:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "client.id": "wire-confluent",
        "group.id": group or f"wire-unused-{uuid.uuid4().hex[:8]}",  # required, unused
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": FETCH_WAIT_MS,
        **options,
    })


def _admin(bootstrap: str) -> Any:
    return AdminClient({"bootstrap.servers": bootstrap, "client.id": "wire-confluent-admin"})


def _error(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else None
    return error_name(KafkaException(err.name()) if isinstance(err, KafkaError) else exc)


class ConfluentClient(WireClient):
    name = "confluent-kafka"
    capabilities = frozenset(Can)
    default_idempotent = False
    null_header_values = True

    def produce(
        self,
        bootstrap: str,
        topic: str,
        records: Sequence[Rec],
        *,
        compression: str | None = None,
        idempotent: bool | None = None,
    ) -> list[tuple[int, int]]:
        config: dict[str, Any] = {"bootstrap.servers": bootstrap, "client.id": "wire-confluent",
                                  "linger.ms": 5}
        if compression is not None:
            config["compression.type"] = compression
        if idempotent is not None:
            config["enable.idempotence"] = idempotent
        producer = Producer(config)
        delivered: dict[int, tuple[int, int]] = {}
        errors: list[Any] = []

        def report(i: int) -> Any:
            def cb(err: Any, msg: Any) -> None:
                if err is not None:
                    errors.append(err)
                else:
                    delivered[i] = (msg.partition(), msg.offset())
            return cb

        for i, r in enumerate(records):
            extra: dict[str, Any] = {}
            if r.partition is not None:
                extra["partition"] = r.partition
            if r.timestamp is not None:
                extra["timestamp"] = r.timestamp
            producer.produce(topic, value=r.value, key=r.key, headers=list(r.headers),
                             on_delivery=report(i), **extra)
        left = producer.flush(CALL_TIMEOUT_S)
        if errors:
            raise KafkaException(errors[0])
        assert left == 0, f"{left} record(s) not delivered in {CALL_TIMEOUT_S:g} s"
        return [delivered[i] for i in range(len(records))]

    def consume(self, bootstrap: str, topic: str, partitions: int, count: int) -> list[Got]:
        consumer = _consumer(bootstrap)
        got: list[Got] = []
        try:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
            deadline = time.monotonic() + CALL_TIMEOUT_S
            extra_until = None
            while time.monotonic() < deadline:
                got += [_got(m) for m in consumer.consume(100, POLL_S)]
                if len(got) >= count:
                    extra_until = extra_until or time.monotonic() + 0.3
                    if time.monotonic() >= extra_until:
                        break
        finally:
            consumer.close()
        return got

    def run_member(self, bootstrap: str, topic: str, group: str, ctl: MemberControl) -> None:
        consumer = _consumer(
            bootstrap, group, **{
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": HEARTBEAT_MS,
                "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
            },
        )
        try:
            consumer.subscribe([topic])
            while ctl.running():
                polled = consumer.consume(MAX_POLL_RECORDS, POLL_S)
                ctl.assigned = frozenset(tp.partition for tp in consumer.assignment())
                taken = ctl.add(_got(m) for m in polled)
                if taken:  # as consumer.commit() would: with the records' leader epoch
                    consumer.commit(
                        offsets=[TopicPartition(topic, p, o, leader_epoch=epoch)
                                 for p, (o, epoch) in commit_epochs(taken).items()],
                        asynchronous=False,
                    )
        finally:
            consumer.close()

    def offsets_for_times(
        self, bootstrap: str, topic: str, query: Mapping[int, int]
    ) -> dict[int, OffsetTime | None]:
        consumer = _consumer(bootstrap)
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, p, ts) for p, ts in query.items()], CALL_TIMEOUT_S
            )
        finally:
            consumer.close()
        for tp in found:
            if tp.error is not None:
                raise KafkaException(tp.error)
        # librdkafka answers offset -1 (OFFSET_END) when no record is that late
        return {tp.partition: None if tp.offset < 0 else OffsetTime(tp.offset, None)
                for tp in found}

    def read_at_time(self, bootstrap: str, topic: str, partition: int, timestamp: int) -> Got:
        consumer = _consumer(bootstrap)
        try:
            (tp,) = consumer.offsets_for_times([TopicPartition(topic, partition, timestamp)],
                                               CALL_TIMEOUT_S)
            assert tp.offset >= 0, f"no offset for timestamp {timestamp}: {tp}"
            consumer.assign([tp])
            deadline = time.monotonic() + CALL_TIMEOUT_S
            while time.monotonic() < deadline:
                for m in consumer.consume(1, POLL_S):
                    return _got(m)
        finally:
            consumer.close()
        raise AssertionError(f"no record read after seeking to timestamp {timestamp}")

    # -- topics -------------------------------------------------------------------------

    def create_topic(
        self, bootstrap: str, name: str, partitions: int, configs: Mapping[str, str]
    ) -> str | None:
        admin = _admin(bootstrap)  # referenced until the answer: a dropped one cancels
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1,
                      config=dict(configs))],
            request_timeout=CALL_TIMEOUT_S,
        )
        try:
            futures[name].result(CALL_TIMEOUT_S)
        except KafkaException as exc:
            return _error(exc)
        return None

    def describe_topic(self, bootstrap: str, name: str) -> list[PartitionInfo]:
        admin = _admin(bootstrap)
        meta = admin.list_topics(topic=name, timeout=CALL_TIMEOUT_S)
        topic = meta.topics[name]
        assert topic.error is None, topic.error
        return sorted(
            PartitionInfo(p.id, p.leader, tuple(p.replicas), tuple(p.isrs))
            for p in topic.partitions.values()
        )

    def topic_configs(self, bootstrap: str, name: str) -> dict[str, tuple[str, str]]:
        resource = ConfigResource(ResourceType.TOPIC, name)
        admin = _admin(bootstrap)
        found = admin.describe_configs([resource])[resource].result(CALL_TIMEOUT_S)
        return {
            key: (e.value, _source(e.source)) for key, e in found.items()
        }

    def delete_topic(self, bootstrap: str, name: str) -> str | None:
        admin = _admin(bootstrap)
        futures = admin.delete_topics([name], request_timeout=CALL_TIMEOUT_S)
        try:
            futures[name].result(CALL_TIMEOUT_S)
        except KafkaException as exc:
            return _error(exc)
        return None

    def list_topics(self, bootstrap: str) -> set[str]:
        admin = _admin(bootstrap)
        return set(admin.list_topics(timeout=CALL_TIMEOUT_S).topics)

    # -- groups -------------------------------------------------------------------------

    def list_groups(self, bootstrap: str) -> dict[str, str | None]:
        admin = _admin(bootstrap)
        result = admin.list_consumer_groups(
            request_timeout=CALL_TIMEOUT_S).result(CALL_TIMEOUT_S)
        assert not result.errors, result.errors
        return {g.group_id: _state(g.state) for g in result.valid}

    def describe_group(self, bootstrap: str, group: str, topic: str) -> GroupInfo:
        admin = _admin(bootstrap)
        try:
            found = admin.describe_consumer_groups(
                [group], request_timeout=CALL_TIMEOUT_S, include_authorized_operations=True,
            )[group].result(CALL_TIMEOUT_S)
        except KafkaException as exc:  # the group's answer carried an error
            return GroupInfo("", "", "", (), None, _error(exc))
        members = tuple(
            MemberInfo(
                m.member_id, m.client_id, m.host,
                frozenset(tp.partition for tp in m.assignment.topic_partitions
                          if tp.topic == topic),
            )
            for m in found.members
        )
        operations = found.authorized_operations
        return GroupInfo(
            _state(found.state) or "Unknown",
            "" if found.is_simple_consumer_group else "consumer", found.partition_assignor,
            members,
            None if operations is None else frozenset(op.name for op in operations),
        )

    def committed(
        self, bootstrap: str, group: str, topic: str, partitions: int
    ) -> dict[int, int]:
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in range(partitions)]
        )
        admin = _admin(bootstrap)
        found = admin.list_consumer_group_offsets(
            [request], request_timeout=CALL_TIMEOUT_S)[group].result(CALL_TIMEOUT_S)
        return {tp.partition: tp.offset for tp in found.topic_partitions if tp.offset >= 0}


def _source(source: Any) -> str:
    """librdkafka's config source (an int, Kafka's ConfigSource id) as Kafka's name."""
    return str(ConfigSource(int(source)).name)


def _state(state: Any) -> str | None:
    """librdkafka's ConsumerGroupState (STABLE, EMPTY, ...) as Kafka's wire names (None
    for UNKNOWN: the broker did not say)."""
    name = getattr(state, "name", str(state))
    return {"STABLE": "Stable", "EMPTY": "Empty", "DEAD": "Dead", "UNKNOWN": None,
            "PREPARING_REBALANCING": "PreparingRebalance",
            "COMPLETING_REBALANCING": "CompletingRebalance"}.get(name, name)
