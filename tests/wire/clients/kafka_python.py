"""kafka-python 3 (pure Python; idempotent producer by default, murmur2 partitioner)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from tests.wire.clients.base import (
    CALL_TIMEOUT_S,
    FETCH_WAIT_MS,
    HEARTBEAT_MS,
    MAX_POLL_INTERVAL_MS,
    MAX_POLL_RECORDS,
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

with warnings.catch_warnings():
    # ``import kafka`` trips a DeprecationWarning that filterwarnings=error would raise
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import (
        ConfigResource,
        ConfigResourceType,
        KafkaAdminClient,
        NewTopic,
    )
    from kafka.structs import OffsetAndMetadata


MEMBER_POLL_MS = 1000
"""A group member's poll timeout. kafka-python 3.0.12 loses a rebalance that completes
after a poll timed out during it (``join_group_async`` sees its join task done and sends
a new JoinGroup instead of taking the assignment), and the group can keep rebalancing:
a poll long enough for a whole JoinGroup/SyncGroup round keeps clear of that (it
returns as soon as records come, so it costs only the last poll before a stop)."""


def _got(r: Any) -> Got:
    headers = tuple((k, None if v is None else bytes(v)) for k, v in (r.headers or ()))
    epoch = -1 if r.leader_epoch is None else r.leader_epoch
    return Got(r.partition, r.offset, r.key, r.value, headers, r.timestamp, epoch)


def _consumer(bootstrap: str, **options: Any) -> Any:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="wire-kafka-python",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT_MS,
        request_timeout_ms=15_000,
        **options,
    )


def _admin(bootstrap: str) -> Any:
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="wire-kafka-python-admin",
                            request_timeout_ms=15_000)


class KafkaPythonClient(WireClient):
    name = "kafka-python"
    capabilities = frozenset(Can)
    default_idempotent = True

    def produce(
        self,
        bootstrap: str,
        topic: str,
        records: Sequence[Rec],
        *,
        compression: str | None = None,
        idempotent: bool | None = None,
    ) -> list[tuple[int, int]]:
        options: dict[str, Any] = {}
        if idempotent is not None:
            options["enable_idempotence"] = idempotent
        producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="wire-kafka-python",
                                 compression_type=compression, linger_ms=5, **options)
        try:
            futures = [
                producer.send(topic, value=r.value, key=r.key, headers=list(r.headers),
                              partition=r.partition, timestamp_ms=r.timestamp)
                for r in records
            ]
            producer.flush(timeout=CALL_TIMEOUT_S)
            metas = [f.get(timeout=CALL_TIMEOUT_S) for f in futures]
        finally:
            producer.close(timeout=5)
        return [(m.partition, m.offset) for m in metas]

    def consume(self, bootstrap: str, topic: str, partitions: int, count: int) -> list[Got]:
        consumer = _consumer(bootstrap)
        got: list[Got] = []
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            deadline = time.monotonic() + CALL_TIMEOUT_S
            extra_until = None
            while time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=100).values():
                    got += [_got(r) for r in batch]
                if len(got) >= count:
                    extra_until = extra_until or time.monotonic() + 0.3
                    if time.monotonic() >= extra_until:
                        break
        finally:
            consumer.close()
        return got

    def run_member(self, bootstrap: str, topic: str, group: str, ctl: MemberControl) -> None:
        consumer = _consumer(
            bootstrap, group_id=group, session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_MS, max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            max_poll_records=MAX_POLL_RECORDS,
        )
        try:
            consumer.subscribe([topic])
            while ctl.running():
                polled = consumer.poll(timeout_ms=MEMBER_POLL_MS)
                ctl.assigned = frozenset(tp.partition for tp in consumer.assignment())
                taken = ctl.add(_got(r) for batch in polled.values() for r in batch)
                if taken:  # as consumer.commit() would: with the records' leader epoch
                    consumer.commit({
                        TopicPartition(topic, p): OffsetAndMetadata(o, "", epoch)
                        for p, (o, epoch) in commit_epochs(taken).items()
                    })
        finally:
            consumer.close(autocommit=False)

    def offsets_for_times(
        self, bootstrap: str, topic: str, query: Mapping[int, int]
    ) -> dict[int, OffsetTime | None]:
        consumer = _consumer(bootstrap)
        try:
            found = consumer.offsets_for_times(
                {TopicPartition(topic, p): ts for p, ts in query.items()}
            )
        finally:
            consumer.close()
        return {
            tp.partition: None if ot is None else OffsetTime(ot.offset, ot.timestamp)
            for tp, ot in found.items()
        }

    def read_at_time(self, bootstrap: str, topic: str, partition: int, timestamp: int) -> Got:
        consumer = _consumer(bootstrap)
        tp = TopicPartition(topic, partition)
        try:
            consumer.assign([tp])
            found = consumer.offsets_for_times({tp: timestamp})[tp]
            assert found is not None, f"no offset for timestamp {timestamp}"
            consumer.seek(tp, found.offset)
            deadline = time.monotonic() + CALL_TIMEOUT_S
            while time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=100, max_records=1).values():
                    return _got(batch[0])
        finally:
            consumer.close()
        raise AssertionError(f"no record read after seeking to timestamp {timestamp}")

    # -- topics -------------------------------------------------------------------------

    def create_topic(
        self, bootstrap: str, name: str, partitions: int, configs: Mapping[str, str]
    ) -> str | None:
        admin = _admin(bootstrap)
        try:
            admin.create_topics([NewTopic(name, partitions, 1, topic_configs=dict(configs))])
        except Exception as exc:
            return error_name(exc)
        finally:
            admin.close()
        return None

    def describe_topic(self, bootstrap: str, name: str) -> list[PartitionInfo]:
        admin = _admin(bootstrap)
        try:
            (topic,) = admin.describe_topics([name])
        finally:
            admin.close()
        assert topic["error_code"] == 0, topic
        return sorted(
            PartitionInfo(p["partition_index"], p["leader_id"], tuple(p["replica_nodes"]),
                          tuple(p["isr_nodes"]))
            for p in topic["partitions"]
        )

    def topic_configs(self, bootstrap: str, name: str) -> dict[str, tuple[str, str]]:
        admin = _admin(bootstrap)
        try:
            found = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all"
            )
        finally:
            admin.close()
        entries = found["topic"][name]
        return {
            key: (e["value"], _source_name(e["config_source"])) for key, e in entries.items()
        }

    def delete_topic(self, bootstrap: str, name: str) -> str | None:
        admin = _admin(bootstrap)
        try:
            admin.delete_topics([name])
        except Exception as exc:
            return error_name(exc)
        finally:
            admin.close()
        return None

    def list_topics(self, bootstrap: str) -> set[str]:
        admin = _admin(bootstrap)
        try:
            return set(admin.list_topics())
        finally:
            admin.close()

    # -- groups -------------------------------------------------------------------------

    def list_groups(self, bootstrap: str) -> dict[str, str | None]:
        admin = _admin(bootstrap)
        try:
            return {g["group_id"]: g.get("group_state") for g in admin.list_groups()}
        finally:
            admin.close()

    def describe_group(self, bootstrap: str, group: str, topic: str) -> GroupInfo:
        admin = _admin(bootstrap)
        try:
            found = admin.describe_groups([group])[group]
        finally:
            admin.close()
        members = tuple(
            MemberInfo(
                m["member_id"], m["client_id"], m["client_host"],
                _assigned(m["member_assignment"], topic),
            )
            for m in found["members"]
        )
        operations = found.get("authorized_operations")
        error = found["error"]
        return GroupInfo(found["group_state"], found["protocol_type"], found["protocol_data"],
                         members, None if operations is None else frozenset(operations),
                         None if error is None else error_name(Exception(error)))

    def committed(
        self, bootstrap: str, group: str, topic: str, partitions: int
    ) -> dict[int, int]:
        found = self.committed_epochs(bootstrap, group, topic)
        return {p: offset for p, (offset, _) in found.items()}

    def committed_epochs(self, bootstrap: str, group: str, topic: str
                         ) -> dict[int, tuple[int, int]]:
        """OffsetFetch's (committed offset, committed leader epoch) per partition."""
        admin = _admin(bootstrap)
        try:
            found = admin.list_group_offsets({group: None})[group]
        finally:
            admin.close()
        return {tp.partition: (om.offset, om.leader_epoch) for tp, om in found.items()
                if tp.topic == topic and om.offset >= 0}


def _source_name(source: Any) -> str:
    return str(getattr(source, "name", source))


def _assigned(assignment: Any, topic: str) -> frozenset[int]:
    if not assignment:
        return frozenset()
    data = assignment if isinstance(assignment, dict) else assignment.to_dict()
    out: set[int] = set()
    for t in data["assigned_partitions"]:
        if t["topic"] == topic:
            out.update(t["partitions"])
    return frozenset(out)
