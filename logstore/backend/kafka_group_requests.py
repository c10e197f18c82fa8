"""The offsets and group requests of :class:`~logstore.backend.kafka.KafkaBackend`:
offsets through the admin client (and a member's librdkafka consumer), group listing,
description and deletion, the classic group requests that librdkafka speaks itself, and
the share-group requests a Kafka cluster does not serve through this backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from logstore.backend.kafka_groups import KafkaMembership
from logstore.backend.rdkafka import COORDINATOR_MOVING, confluent, kafka_error, unsupported
from logstore.errors import ClusterError, TopicNotFoundError, UnknownMemberIdError
from logstore.records.consumer_protocol import Assignment, encode_assignment
from logstore.types import (
    CommittedOffset,
    GroupInfo,
    GroupMember,
    JoinResult,
    MemberInfo,
    TopicPartition,
)

_T = TypeVar("_T")

if TYPE_CHECKING:
    pass

STATES = {
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "STABLE": "Stable",
    "EMPTY": "Empty",
    "DEAD": "Dead",
    "UNKNOWN": "Unknown",
}
"""librdkafka's ConsumerGroupState names, as Kafka's DescribeGroups spells them."""


class KafkaGroupRequests:
    """The offsets and group part of :class:`~logstore.backend.kafka.KafkaBackend`."""

    _lock: threading.Lock
    _admin: Any
    timeout_s: float
    _members: dict[str, KafkaMembership]

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

        def _wait(self, future: Any, what: str) -> Any: ...

        def _describe(self, topic: str) -> Any: ...

        def client_settings(self, **overrides: str) -> dict[str, str]: ...

    # ------------------------------------------------------------------ offsets

    def committed_offsets(
        self, group: str, tps: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        self._check_open()
        ck = confluent()
        asked = None if tps is None else [ck.TopicPartition(t.topic, t.partition) for t in tps]
        if asked == []:
            return {}
        request = ck.ConsumerGroupTopicPartitions(group, asked)

        def ask() -> Any:
            futures = self._admin.list_consumer_group_offsets(
                [request], require_stable=True, request_timeout=self.timeout_s)
            return self._wait(futures[group], f"the offsets of group {group!r}")

        answer = self._while_coordinator_moves(ask)
        ids: dict[str, str | None] = {}
        out = {}
        for found in answer.topic_partitions:
            if found.offset >= 0 and found.error is None:
                if found.topic not in ids:
                    ids[found.topic] = self._topic_id(found.topic)
                out[TopicPartition(found.topic, found.partition)] = CommittedOffset(
                    found.offset, found.metadata or "", -1, ids[found.topic]
                )
        return out

    def _topic_id(self, topic: str) -> str | None:
        """The id of ``topic`` as it is now (None: there is none). A Kafka group
        coordinator deletes a deleted topic's offsets, so the offsets it answers belong
        to the topic's current incarnation: they carry its id."""
        try:
            return str(self._describe(topic).topic_id)
        except TopicNotFoundError:
            return None

    def commit_offsets(
        self,
        group: str,
        offsets: Mapping[TopicPartition, tuple[int, str]],
        *,
        member: GroupMember | None = None,
    ) -> None:
        """Commit as ``member`` (through its librdkafka consumer: fenced by the broker's
        generation check) or, with none, as an administrator (Kafka refuses that while the
        group has live members: :class:`~logstore.errors.UnknownMemberIdError`)."""
        self._check_open()
        if not offsets:
            return
        if member is not None:
            with self._lock:
                owner = self._members.get(member.member_id)
            if owner is None:
                raise UnknownMemberIdError(
                    f"member {member.member_id!r} of group {group!r} is not one of this "
                    f"process's consumers (it left or was removed)"
                )
            owner.commit(offsets, member.generation)
            return
        ck = confluent()
        request = ck.ConsumerGroupTopicPartitions(group, [
            ck.TopicPartition(tp.topic, tp.partition, offset, metadata=metadata)
            for tp, (offset, metadata) in offsets.items()
        ])

        def commit() -> None:
            futures = self._admin.alter_consumer_group_offsets(
                [request], request_timeout=self.timeout_s)
            answer = self._wait(futures[group], f"committing offsets of group {group!r}")
            for tp in answer.topic_partitions:
                if tp.error is not None:
                    raise kafka_error(tp.error, f"committing {tp.topic}-{tp.partition} of "
                                                f"group {group!r}")

        self._while_coordinator_moves(commit)

    def _while_coordinator_moves(self, request: Callable[[], _T]) -> _T:
        """``request()``, asked again while the group's coordinator moves or loads
        (:data:`COORDINATOR_MOVING`), up to the request timeout."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return request()
            except ClusterError as err:
                if err.code not in COORDINATOR_MOVING or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def delete_offsets(self, group: str, tps: Iterable[TopicPartition]) -> NoReturn:
        unsupported("deleting a group's offsets of some partitions",
                     "delete the whole group, or reset its offsets")

    # ------------------------------------------------------------------ groups

    def managed_membership(self, group: str, member_id: str, **options: Any) -> KafkaMembership:
        """A member of ``group`` run by librdkafka's consumer (the clients use it instead
        of the classic group requests, which librdkafka speaks itself)."""
        self._check_open()
        return KafkaMembership(self, group, member_id, **options)

    def register_member(self, member_id: str, membership: KafkaMembership | None) -> None:
        """Route commits of ``member_id`` to ``membership`` (None: forget it)."""
        with self._lock:
            if membership is None:
                self._members.pop(member_id, None)
            else:
                self._members[member_id] = membership

    def join_group(self, *args: Any, **kwargs: Any) -> JoinResult | None:
        unsupported("the JoinGroup request", "consumers join through librdkafka")

    def sync_group(self, *args: Any, **kwargs: Any) -> bytes | None:
        unsupported("the SyncGroup request", "consumers join through librdkafka")

    def heartbeat(self, group: str, member_id: str, generation: int) -> None:
        unsupported("the Heartbeat request", "consumers join through librdkafka")

    def group_changed(self, group: str, member_id: str, generation: int) -> bool:
        return False

    def leave_group(self, group: str, member_id: str) -> None:
        unsupported("the LeaveGroup request", "consumers leave through librdkafka")

    def describe_group(self, group: str) -> GroupInfo:
        self._check_open()
        ck = confluent()
        futures = self._admin.describe_consumer_groups([group], request_timeout=self.timeout_s)
        try:
            found = futures[group].result(timeout=self.timeout_s)
        except ck.KafkaException as exc:
            if exc.args[0].code() == ck.KafkaError.GROUP_ID_NOT_FOUND:
                return GroupInfo(group, "Dead", "", "", -1, None, ())
            raise kafka_error(exc.args[0], f"describing group {group!r}") from None
        state = STATES.get(found.state.name, found.state.name.title())
        members = []
        for member in found.members:
            parts = member.assignment.topic_partitions if member.assignment else []
            members.append(MemberInfo(
                member.member_id,
                member.group_instance_id,
                b"",
                encode_assignment(Assignment(
                    sorted(TopicPartition(p.topic, p.partition) for p in parts)
                )),
            ))
        if state == "Dead" and not members:
            return GroupInfo(group, "Dead", "", "", -1, None, ())
        return GroupInfo(
            group, state, "consumer" if members or state != "Empty" else "",
            found.partition_assignor or "", -1, None, tuple(members),
        )

    def list_groups(self) -> list[str]:
        self._check_open()
        future = self._admin.list_consumer_groups(request_timeout=self.timeout_s)
        answer = self._wait(future, "listing groups")
        return sorted(g.group_id for g in answer.valid)

    def delete_group(self, group: str) -> None:
        self._check_open()
        ck = confluent()
        futures = self._admin.delete_consumer_groups([group], request_timeout=self.timeout_s)
        try:
            futures[group].result(timeout=self.timeout_s)
        except ck.KafkaException as exc:
            if exc.args[0].code() == ck.KafkaError.GROUP_ID_NOT_FOUND:
                return
            raise kafka_error(exc.args[0], f"deleting group {group!r}") from None

    # ---- share groups: not on a Kafka cluster through this backend

    def share_join(self, group: str, **kwargs: Any) -> dict[str, Any]:
        unsupported("a share group", "Kafka 4.1+'s KafkaShareConsumer serves them")

    def share_acquire(self, *args: Any, **kwargs: Any) -> NoReturn:
        unsupported("a share group", "Kafka 4.1+'s KafkaShareConsumer serves them")

    def share_acknowledge(self, *args: Any, **kwargs: Any) -> NoReturn:
        unsupported("a share group", "Kafka 4.1+'s KafkaShareConsumer serves them")

    def describe_share_group(self, group: str) -> dict[str, Any]:
        unsupported("a share group", "Kafka 4.1+'s KafkaShareConsumer serves them")

    def list_share_groups(self) -> list[str]:
        return []
