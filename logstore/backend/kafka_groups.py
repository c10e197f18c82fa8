"""A consumer group member on a Kafka cluster, run by librdkafka.

On a store, :mod:`logstore.client.membership` speaks the classic group protocol to the
backend (JoinGroup, SyncGroup, Heartbeat) and the group's leader computes the assignment
with logstore's assignors. confluent-kafka does not expose those requests: its consumer
runs the protocol itself. So on a Kafka cluster a member is :class:`KafkaMembership`: a
librdkafka consumer subscribed to the topics, **used for its membership only** (every
partition it is given is paused at once, so it fetches nothing; the records come through
the backend's fetch sessions, like an assigned consumer's), with the same interface as
:class:`~logstore.client.membership.Membership`, so the consumer above does not know the
difference.

What follows from librdkafka running it (README, "Kafka cluster backend"):

* assignors: "range" and "roundrobin" are librdkafka's own (the same results as
  logstore's), "sticky" is librdkafka's "cooperative-sticky"; a custom assignor of
  logstore's cannot be used. With range and roundrobin (eager), ``on_revoke`` is given
  every partition at each rebalance and ``on_assign`` every partition again, as Kafka's
  Java consumer does; cooperative-sticky gives only those that move.
* the broker enforces its own bounds on ``session_timeout_ms`` (6 s to 30 min by
  default), and a member is removed after ``max_poll_interval_ms`` without a poll by
  librdkafka (the next poll raises UnknownMemberIdError once, after ``on_lost``).
* generations: Kafka's are not exposed by librdkafka; :attr:`generation` counts this
  member's assignments instead (a commit carries it, so a commit prepared before a
  rebalance is refused), and the broker checks its real generation on every commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from logstore.backend.rdkafka import confluent, kafka_error
from logstore.errors import (
    FencedInstanceIdError,
    GroupError,
    IllegalGenerationError,
    InvalidConfigError,
    UnknownMemberIdError,
)
from logstore.types import GroupMember, TopicPartition


class MemberHost(Protocol):
    """What a member needs of its backend (:class:`~logstore.backend.kafka.KafkaBackend`):
    the settings of a new librdkafka client, and routing of its members' commits."""

    def client_settings(self, **overrides: str) -> dict[str, str]: ...

    def register_member(self, member_id: str, membership: KafkaMembership | None) -> None: ...

Callback = Callable[[list[TopicPartition]], object]

STRATEGIES = {"range": "range", "roundrobin": "roundrobin", "sticky": "cooperative-sticky"}
"""logstore's assignor names and the librdkafka strategy each becomes."""


_JOIN_SLICE_S = 0.05
"""How long a poll of a member that is joining and owns nothing waits for librdkafka to
complete the join (a store's coordinator answers a join at once; Kafka's takes a few
round trips): such a poll has no records to return anyway."""


def _nothing(tps: list[TopicPartition]) -> None:
    return None


class KafkaMembership:
    """One consumer's membership of ``group`` on a Kafka cluster (see the module
    documentation). Not thread-safe, like the consumer that owns it.

    Raises:
        InvalidConfigError: an assignor librdkafka does not have.
    """

    def __init__(
        self,
        backend: MemberHost,
        group: str,
        member_id: str,
        *,
        assignor: str,
        session_timeout_ms: int,
        max_poll_interval_ms: int,
        heartbeat_interval_ms: int,
        group_instance_id: str | None = None,
        monotonic_ms: Callable[[], int] | None = None,
    ) -> None:
        if assignor not in STRATEGIES:
            raise InvalidConfigError(
                f"unknown assignor {assignor!r} on a Kafka cluster (use one of: "
                f"{', '.join(STRATEGIES)})"
            )
        self._backend = backend
        self.group = group
        self.assignor = assignor
        self.session_timeout_ms = session_timeout_ms
        self.max_poll_interval_ms = max(max_poll_interval_ms, session_timeout_ms)
        self.heartbeat_interval_ms = max(
            1, min(heartbeat_interval_ms, session_timeout_ms // 3)
        )
        self.group_instance_id = group_instance_id
        self._base_id = member_id
        self._member_id = member_id
        self._incarnation = 0
        self._cooperative = STRATEGIES[assignor] == "cooperative-sticky"
        self._topics: list[str] = []
        self._subscribed: list[str] | None = None
        self._consumer: Any = None
        self._owned: set[TopicPartition] = set()
        self._generation = -1
        self._assignments = 0
        self._joined = False
        self._callbacks: tuple[Callback, Callback, Callback] = (_nothing, _nothing, _nothing)
        self._lost: GroupError | None = None
        self._fatal: FencedInstanceIdError | None = None
        self._closing = False

    # ------------------------------------------------------------------ state

    @property
    def member_id(self) -> str:
        """This member's id in this process (commits are routed by it); Kafka's own
        member id is :attr:`kafka_member_id`."""
        return self._member_id

    @property
    def kafka_member_id(self) -> str | None:
        """The id the group coordinator gave this member (None: not joined yet)."""
        return None if self._consumer is None else self._consumer.memberid()

    @property
    def assignment(self) -> list[TopicPartition]:
        return sorted(self._owned)

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def member(self) -> GroupMember | None:
        if self._generation < 0 or self._consumer is None:
            return None
        return GroupMember(self.group, self._member_id, self._generation)

    @property
    def rebalancing(self) -> bool:
        return bool(self._topics) and not self._joined

    # ------------------------------------------------------------------ requests

    def subscribe(self, topics: list[str] | Any) -> None:
        self._topics = sorted(set(topics))

    def request_rejoin(self) -> None:
        """A subscribed topic grew or was created again: subscribing again makes
        librdkafka refresh its metadata and rebalance."""
        self._subscribed = None

    def poll(
        self,
        *,
        on_revoke: Callback,
        on_assign: Callback,
        on_lost: Callback,
        wait_ms: int = 0,
    ) -> None:
        if self._fatal is not None:
            raise self._fatal
        if not self._topics:
            if self._consumer is not None:
                self.leave(on_revoke=on_revoke)
            return
        consumer = self._client()
        self._callbacks = (on_revoke, on_assign, on_lost)
        try:
            if self._subscribed != self._topics:
                consumer.subscribe(
                    list(self._topics), on_assign=self._on_assign,
                    on_revoke=self._on_revoke, on_lost=self._on_lost,
                )
                self._subscribed = list(self._topics)
            wait = max(0, wait_ms) / 1000
            if not self._joined and not self._owned:
                wait = max(wait, _JOIN_SLICE_S)  # nothing to read until it joins anyway
            msg = consumer.poll(wait)
            if msg is not None and msg.error() is not None:
                self._on_error(msg.error())
        finally:
            self._callbacks = (_nothing, _nothing, _nothing)
        if self._lost is not None:
            lost, self._lost = self._lost, None
            if isinstance(lost, FencedInstanceIdError):
                self._fatal = lost
            raise lost

    def leave(self, *, on_revoke: Callback) -> None:
        """Hand the partitions back (``on_revoke`` first: commit there) and leave."""
        if self._owned:
            on_revoke(self.assignment)
            self._owned.clear()
        self._close_client()
        self._next_member_id()

    def catch_up(self) -> bool:
        return False

    def transient(self, error: GroupError) -> bool:
        return False

    def lose(self, error: GroupError, *, on_lost: Callback) -> None:
        """A commit was refused as fenced: the partitions are lost; the member leaves
        and the next poll joins again as a new member."""
        owned, self._owned = self.assignment, set()
        if isinstance(error, FencedInstanceIdError):
            self._fatal = error
        self._close_client()
        self._next_member_id()
        if owned:
            on_lost(owned)

    def commit(self, offsets: Mapping[TopicPartition, tuple[int, str]], generation: int) -> None:
        """Commit ``offsets`` as this member (the broker checks its generation).

        Raises:
            IllegalGenerationError: prepared in an earlier assignment of this member, or
                refused by the broker; UnknownMemberIdError, RebalanceInProgressError.
        """

        if generation != self._generation or self._consumer is None:
            raise IllegalGenerationError(
                f"member {self._member_id!r} of group {self.group!r} was reassigned "
                f"(generation {generation} is not its current {self._generation})"
            )
        ck = confluent()
        request = [
            ck.TopicPartition(tp.topic, tp.partition, offset, metadata=metadata)
            for tp, (offset, metadata) in offsets.items()
        ]
        try:
            answer = self._consumer.commit(offsets=request, asynchronous=False)
        except ck.KafkaException as exc:
            raise kafka_error(exc.args[0], f"committing offsets of group {self.group!r}") \
                from None
        for tp in answer or ():
            if tp.error is not None:
                raise kafka_error(tp.error, f"committing {tp.topic}-{tp.partition} of "
                                            f"group {self.group!r}")

    def close(self) -> None:
        """The backend closes: drop the librdkafka consumer without callbacks."""
        self._owned.clear()
        self._close_client()

    # ------------------------------------------------------------------ librdkafka

    def _client(self) -> Any:

        if self._consumer is None:
            ck = confluent()
            settings = self._backend.client_settings(**{
                "group.id": self.group,
                "client.id": self._member_id,
                "enable.auto.commit": "false",
                "enable.auto.offset.store": "false",
                "enable.partition.eof": "false",
                "session.timeout.ms": str(self.session_timeout_ms),
                "heartbeat.interval.ms": str(self.heartbeat_interval_ms),
                "max.poll.interval.ms": str(self.max_poll_interval_ms),
                "partition.assignment.strategy": STRATEGIES[self.assignor],
                "queued.max.messages.kbytes": "64",
                "topic.metadata.refresh.interval.ms": "5000",
            })
            if self.group_instance_id is not None:
                settings["group.instance.id"] = self.group_instance_id
            try:
                self._consumer = ck.Consumer(settings)
            except ck.KafkaException as exc:
                raise InvalidConfigError(
                    f"Kafka consumer settings refused: {exc.args[0].str()}"
                ) from None
            self._subscribed = None
            self._joined = False
            self._backend.register_member(self._member_id, self)
        return self._consumer

    def _close_client(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._backend.register_member(self._member_id, None)
        self._generation, self._joined, self._subscribed = -1, False, None
        if consumer is not None:
            self._closing = True
            try:
                consumer.close()
            except RuntimeError:
                pass
            finally:
                self._closing = False

    def _next_member_id(self) -> None:
        self._incarnation += 1
        self._member_id = f"{self._base_id}-{self._incarnation}"

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        if partitions:
            consumer.pause(partitions)  # membership only: records come by fetch sessions
        if self._closing:
            return
        gained = [TopicPartition(p.topic, p.partition) for p in partitions]
        self._owned.update(gained)
        self._assignments += 1  # never reused: a commit of an earlier one is refused
        self._generation = self._assignments
        self._joined = True
        self._callbacks[1](sorted(gained))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        revoked = [TopicPartition(p.topic, p.partition) for p in partitions]
        mine = sorted(tp for tp in revoked if tp in self._owned)
        try:
            if mine and not self._closing:
                self._joined = False
                self._callbacks[0](mine)
        finally:
            self._owned.difference_update(revoked)
            if self._cooperative:
                consumer.incremental_unassign(partitions)
            else:
                consumer.unassign()

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        lost = sorted(TopicPartition(p.topic, p.partition) for p in partitions)
        mine = [tp for tp in lost if tp in self._owned]
        self._owned.difference_update(lost)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()
        if self._closing:
            return
        self._joined = False
        self._generation = -1
        self._lost = UnknownMemberIdError(
            f"member {self._member_id!r} was removed from group {self.group!r} (it did not "
            f"poll within max_poll_interval_ms={self.max_poll_interval_ms} or missed its "
            f"session_timeout_ms={self.session_timeout_ms}); its partitions "
            f"{', '.join(f'{tp.topic}-{tp.partition}' for tp in mine) or '(none)'} "
            f"were lost; the next poll rejoins"
        )
        if mine:
            self._callbacks[2](mine)

    def _on_error(self, err: Any) -> None:

        ck = confluent()
        code = err.code()
        if code == ck.KafkaError.FENCED_INSTANCE_ID:
            self._lost = FencedInstanceIdError(
                f"group {self.group!r}: another member took group_instance_id "
                f"{self.group_instance_id!r} ({err.str()})"
            )
        elif code == ck.KafkaError._MAX_POLL_EXCEEDED:
            if self._lost is None:
                self._lost = UnknownMemberIdError(
                    f"member {self._member_id!r} did not poll within max_poll_interval_ms="
                    f"{self.max_poll_interval_ms} and left group {self.group!r}; the next "
                    f"poll rejoins"
                )
        elif err.fatal():
            raise kafka_error(err, f"group {self.group!r}")
        # other errors (a broker going away, ...) are librdkafka's to retry

