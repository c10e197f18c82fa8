"""aiokafka 0.14 (asyncio; every helper runs its own loop with ``asyncio.run``). Its
producer is not idempotent unless ``enable_idempotence=True`` (which implies acks=all)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

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
    acl_operations,
    commit_points,
)

_SOURCES = {1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG",
            3: "DYNAMIC_DEFAULT_BROKER_CONFIG", 4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG"}
_ERRORS = {36: "TOPIC_ALREADY_EXISTS", 3: "UNKNOWN_TOPIC_OR_PARTITION", 69: "GROUP_ID_NOT_FOUND",
           14: "COORDINATOR_LOAD_IN_PROGRESS", 15: "COORDINATOR_NOT_AVAILABLE",
           16: "NOT_COORDINATOR"}


def _got(r: Any) -> Got:
    headers = tuple((k, None if v is None else bytes(v)) for k, v in (r.headers or ()))
    return Got(r.partition, r.offset, r.key, r.value, headers, r.timestamp)


def _consumer(bootstrap: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="wire-aiokafka",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT_MS,
        request_timeout_ms=15_000,
        **options,
    )


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="wire-aiokafka-admin",
                                request_timeout_ms=15_000)
    await admin.start()
    return admin


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, CALL_TIMEOUT_S * 2))


class AioKafkaClient(WireClient):
    name = "aiokafka"
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
        async def main() -> list[tuple[int, int]]:
            options: dict[str, Any] = {}
            if idempotent is not None:
                options["enable_idempotence"] = idempotent
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="wire-aiokafka",
                                        compression_type=compression, linger_ms=5, **options)
            await producer.start()
            try:
                futures = [
                    await producer.send(topic, value=r.value, key=r.key,
                                        headers=list(r.headers), partition=r.partition,
                                        timestamp_ms=r.timestamp)
                    for r in records
                ]
                metas = [await f for f in futures]
            finally:
                await producer.stop()
            return [(m.partition, m.offset) for m in metas]

        return _run(main())  # type: ignore[no-any-return]

    def consume(self, bootstrap: str, topic: str, partitions: int, count: int) -> list[Got]:
        async def main() -> list[Got]:
            consumer = _consumer(bootstrap)
            await consumer.start()
            got: list[Got] = []
            try:
                consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
                await consumer.seek_to_beginning()
                deadline = time.monotonic() + CALL_TIMEOUT_S
                extra_until = None
                while time.monotonic() < deadline:
                    for batch in (await consumer.getmany(timeout_ms=100)).values():
                        got.extend(_got(r) for r in batch)
                    if len(got) >= count:
                        extra_until = extra_until or time.monotonic() + 0.3
                        if time.monotonic() >= extra_until:
                            break
            finally:
                await consumer.stop()
            return got

        return _run(main())  # type: ignore[no-any-return]

    def run_member(self, bootstrap: str, topic: str, group: str, ctl: MemberControl) -> None:
        async def main() -> None:
            consumer = _consumer(
                bootstrap, group_id=group, session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=HEARTBEAT_MS, max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
                rebalance_timeout_ms=MAX_POLL_INTERVAL_MS,
            )
            consumer.subscribe([topic])
            await consumer.start()
            try:
                while ctl.running():
                    polled = await consumer.getmany(timeout_ms=100, max_records=MAX_POLL_RECORDS)
                    ctl.assigned = frozenset(tp.partition for tp in consumer.assignment())
                    taken = ctl.add(_got(r) for batch in polled.values() for r in batch)
                    if taken:
                        await consumer.commit({
                            TopicPartition(topic, p): o for p, o in commit_points(taken).items()
                        })
            finally:
                await consumer.stop()

        asyncio.run(main())

    def offsets_for_times(
        self, bootstrap: str, topic: str, query: Mapping[int, int]
    ) -> dict[int, OffsetTime | None]:
        async def main() -> dict[int, OffsetTime | None]:
            consumer = _consumer(bootstrap)
            await consumer.start()
            try:
                found = await consumer.offsets_for_times(
                    {TopicPartition(topic, p): ts for p, ts in query.items()}
                )
            finally:
                await consumer.stop()
            return {
                tp.partition: None if ot is None else OffsetTime(ot.offset, ot.timestamp)
                for tp, ot in found.items()
            }

        return _run(main())  # type: ignore[no-any-return]

    def read_at_time(self, bootstrap: str, topic: str, partition: int, timestamp: int) -> Got:
        async def main() -> Got:
            consumer = _consumer(bootstrap)
            tp = TopicPartition(topic, partition)
            await consumer.start()
            try:
                consumer.assign([tp])
                found = (await consumer.offsets_for_times({tp: timestamp}))[tp]
                assert found is not None, f"no offset for timestamp {timestamp}"
                consumer.seek(tp, found.offset)
                return _got(await consumer.getone())
            finally:
                await consumer.stop()

        return _run(main())  # type: ignore[no-any-return]

    # -- topics -------------------------------------------------------------------------

    def create_topic(
        self, bootstrap: str, name: str, partitions: int, configs: Mapping[str, str]
    ) -> str | None:
        async def main() -> str | None:
            admin = await _admin(bootstrap)
            try:
                response = await admin.create_topics(
                    [NewTopic(name, partitions, 1, topic_configs=dict(configs))]
                )
            except Exception as exc:
                return error_name(exc)
            finally:
                await admin.close()
            (topic,) = response.topic_errors
            return _ERRORS.get(topic[1], str(topic)) if topic[1] else None

        return _run(main())  # type: ignore[no-any-return]

    def describe_topic(self, bootstrap: str, name: str) -> list[PartitionInfo]:
        async def main() -> list[Any]:
            admin = await _admin(bootstrap)
            try:
                return await admin.describe_topics([name])
            finally:
                await admin.close()

        (topic,) = _run(main())
        assert topic["error_code"] == 0, topic
        return sorted(
            PartitionInfo(p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
            for p in topic["partitions"]
        )

    def topic_configs(self, bootstrap: str, name: str) -> dict[str, tuple[str, str]]:
        async def main() -> list[Any]:
            admin = await _admin(bootstrap)
            try:
                return await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name)]
                )
            finally:
                await admin.close()

        (response,) = _run(main())
        (resource,) = response.to_object()["resources"]
        assert resource["error_code"] == 0, resource
        return {
            e["config_names"]: (e["config_value"], _SOURCES.get(e["config_source"], "?"))
            for e in resource["config_entries"]
        }

    def delete_topic(self, bootstrap: str, name: str) -> str | None:
        async def main() -> str | None:
            admin = await _admin(bootstrap)
            try:
                response = await admin.delete_topics([name])
            except Exception as exc:
                return error_name(exc)
            finally:
                await admin.close()
            (topic,) = response.topic_error_codes
            return _ERRORS.get(topic[1], str(topic)) if topic[1] else None

        return _run(main())  # type: ignore[no-any-return]

    def list_topics(self, bootstrap: str) -> set[str]:
        async def main() -> list[str]:
            admin = await _admin(bootstrap)
            try:
                return await admin.list_topics()
            finally:
                await admin.close()

        return set(_run(main()))

    # -- groups -------------------------------------------------------------------------

    def list_groups(self, bootstrap: str) -> dict[str, str | None]:
        async def main() -> list[Any]:
            admin = await _admin(bootstrap)
            try:
                return await admin.list_consumer_groups()
            finally:
                await admin.close()

        return {g[0]: None for g in _run(main())}  # (group, protocol type): no state

    def describe_group(self, bootstrap: str, group: str, topic: str) -> GroupInfo:
        async def main() -> list[Any]:
            admin = await _admin(bootstrap)
            try:
                return await admin.describe_consumer_groups(
                    [group], include_authorized_operations=True)
            finally:
                await admin.close()

        (response,) = _run(main())
        (found,) = response.to_object()["groups"]
        members = tuple(
            MemberInfo(m["member_id"], m["client_id"], m["client_host"],
                       _assigned(m["member_assignment"], topic))
            for m in found["members"]
        )
        return GroupInfo(found["state"], found["protocol_type"], found["protocol"], members,
                         acl_operations(found.get("authorized_operations", -(2**31))),
                         _ERRORS.get(found["error_code"], str(found["error_code"]))
                         if found["error_code"] else None)

    def committed(
        self, bootstrap: str, group: str, topic: str, partitions: int
    ) -> dict[int, int]:
        async def main() -> dict[Any, Any]:
            admin = await _admin(bootstrap)
            try:
                return await admin.list_consumer_group_offsets(group)
            finally:
                await admin.close()

        return {tp.partition: om.offset for tp, om in _run(main()).items()
                if tp.topic == topic and om.offset >= 0}


def _assigned(data: bytes, topic: str) -> frozenset[int]:
    if not data:
        return frozenset()
    assignment = ConsumerProtocolMemberAssignment.decode(data)
    return frozenset(p for t, parts in assignment.assignment if t == topic for p in parts)
