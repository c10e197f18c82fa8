"""A consumer's group membership: Kafka's consumer protocol over the backend's group calls.

:class:`Membership` joins a group through a :class:`~logstore.client.backend.Backend`
(JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and never touches files. Subscriptions and
assignments travel as Kafka's ConsumerProtocol bytes
(:mod:`logstore.records.consumer_protocol`), so embedded consumers and Kafka clients of
the wire server can share a group. The group's leader computes the assignment with the
assignor the group agreed on (:mod:`logstore.client.assignors`).

Rebalancing is **cooperative** (Kafka's KIP-429), so the callbacks keep the meaning they
always had:

* a member joins with the partitions it owns (Subscription v1 ``owned_partitions``);
* the leader computes the target assignment, then holds back every partition another
  member still owns: that one is revoked first, and moves in a second rebalance, which
  the revoking member asks for at once. So a partition never has two owners;
* ``on_revoke`` gets only the partitions that move away, ``on_assign`` only new ones;
  partitions that stay are read (and committed) throughout the rebalance.

Liveness is the coordinator's: a member that does not :meth:`Membership.poll` for
``max_poll_interval_ms`` (Kafka's ``max.poll.interval.ms``; the rebalance timeout sent
with every join) is removed, as is one whose process dies. When the coordinator says
this member was fenced (removed, or of an older generation) its partitions are *lost*:
``on_lost`` is called (no commit is possible any more), the typed error is raised once,
and the next poll rejoins, under a new member id if it was removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol

from logstore.client.assignors import ASSIGNORS
from logstore.client.backend import Backend
from logstore.errors import (
    FencedInstanceIdError,
    GroupError,
    IllegalGenerationError,
    InvalidConfigError,
    InvalidRecordError,
    RebalanceInProgressError,
    TopicNotFoundError,
    UnknownMemberIdError,
)
from logstore.records.consumer_protocol import (
    Assignment,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from logstore.types import GroupMember, JoinResult, TopicPartition

log = logging.getLogger(__name__)

PROTOCOL_TYPE = "consumer"
Callback = Callable[[list[TopicPartition]], object]
Phase = Literal["unjoined", "joining", "syncing", "stable", "fenced"]
FENCING_ERRORS = (IllegalGenerationError, UnknownMemberIdError, FencedInstanceIdError)


class GroupMembership(Protocol):
    """What a consumer needs of its group membership: :class:`Membership` (the classic
    protocol through the backend seam), or what a backend that runs membership itself
    offers through ``managed_membership`` (:class:`~logstore.backend.kafka_groups.
    KafkaMembership`: librdkafka's). The methods are :class:`Membership`'s."""

    group: str

    @property
    def member_id(self) -> str: ...
    @property
    def assignment(self) -> list[TopicPartition]: ...
    @property
    def generation(self) -> int: ...
    @property
    def member(self) -> GroupMember | None: ...
    @property
    def rebalancing(self) -> bool: ...
    def subscribe(self, topics: list[str]) -> None: ...
    def request_rejoin(self) -> None: ...
    def poll(
        self, *, on_revoke: Callback, on_assign: Callback, on_lost: Callback,
        wait_ms: int = 0,
    ) -> None: ...
    def leave(self, *, on_revoke: Callback) -> None: ...
    def catch_up(self) -> bool: ...
    def transient(self, error: GroupError) -> bool: ...
    def lose(self, error: GroupError, *, on_lost: Callback) -> None: ...


def membership_for(backend: Backend, group: str, member_id: str, **options: Any) -> GroupMembership:
    """The membership of a new member of ``group``: the backend's own if it runs group
    membership itself (it has ``managed_membership``: a Kafka cluster's librdkafka),
    else :class:`Membership` over the backend's group requests."""
    managed = getattr(backend, "managed_membership", None)
    if managed is not None:
        return managed(group, member_id, **options)  # type: ignore[no-any-return]
    return Membership(backend, group, member_id, **options)


def assign_cooperatively(
    assignor: str,
    subscriptions: Mapping[str, Subscription],
    partitions: Mapping[str, int],
) -> dict[str, list[TopicPartition]]:
    """The leader's assignment: ``assignor``'s target, minus every partition that another
    member still owns (it is revoked first and assigned in the follow-up rebalance), and
    minus partitions two members claim at once (both revoke them). Pure.

    Raises:
        InvalidConfigError: ``assignor`` is not one logstore knows.
    """
    if assignor not in ASSIGNORS:
        raise InvalidConfigError(
            f"unknown assignor {assignor!r} (use one of: {', '.join(ASSIGNORS)})"
        )
    owner: dict[TopicPartition, str] = {}
    contested: set[TopicPartition] = set()
    for member, sub in subscriptions.items():
        for tp in sub.owned_partitions:
            if owner.setdefault(tp, member) != member:
                contested.add(tp)
    wanted = {m: set(s.topics) for m, s in subscriptions.items()}
    counts = {t: n for t, n in partitions.items() if any(t in ts for ts in wanted.values())}
    previous = {m: list(s.owned_partitions) for m, s in subscriptions.items()}
    target = ASSIGNORS[assignor](wanted, counts, previous)
    return {
        member: sorted(
            tp for tp in target.get(member, [])
            if tp not in contested and owner.get(tp, member) == member
        )
        for member in subscriptions
    }


class Membership:
    """One consumer's membership of ``group``. Not thread-safe (like the consumer).

    Nothing happens until :meth:`poll`, which heartbeats, joins and syncs as needed and
    calls the callbacks; it never waits longer than its ``wait_ms`` (calls that cannot
    complete yet are repeated by the next poll), so several members may share a thread.

    Args:
        backend: where the group coordinator is.
        group: the group id.
        member_id: this member's id (a removed member continues as ``<id>-<n>``).
        assignor: the assignor this member proposes ("range", "roundrobin", "sticky").
        session_timeout_ms: sent with joins (a remote coordinator's liveness deadline).
        max_poll_interval_ms: a member that does not poll for this long leaves the group
            (the rebalance timeout sent with joins).
        heartbeat_interval_ms: how often polls heartbeat (at most a third of either
            timeout).
        group_instance_id: a static member's id (Kafka's ``group.instance.id``).
        monotonic_ms: the timer heartbeats are scheduled by (tests pass a fake one).
    """

    def __init__(
        self,
        backend: Backend,
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
        if assignor not in ASSIGNORS:
            raise InvalidConfigError(
                f"unknown assignor {assignor!r} (use one of: {', '.join(ASSIGNORS)})"
            )
        if min(session_timeout_ms, max_poll_interval_ms, heartbeat_interval_ms) < 1:
            raise InvalidConfigError(
                f"session_timeout_ms={session_timeout_ms}, max_poll_interval_ms="
                f"{max_poll_interval_ms} and heartbeat_interval_ms={heartbeat_interval_ms} "
                f"must be positive"
            )
        self._backend = backend
        self.group = group
        self._base_id = member_id
        self._member_id = member_id
        self._incarnation = 0
        self.assignor = assignor
        self.session_timeout_ms = session_timeout_ms
        self.max_poll_interval_ms = max_poll_interval_ms
        self.heartbeat_interval_ms = max(
            1, min(heartbeat_interval_ms, session_timeout_ms // 3, max_poll_interval_ms // 3)
        )
        self.group_instance_id = group_instance_id
        self._now_ms = monotonic_ms or (lambda: time.monotonic_ns() // 1_000_000)
        self._topics: list[str] = []
        self._owned: set[TopicPartition] = set()
        self._phase: Phase = "unjoined"
        self._generation = -1
        self._joined: JoinResult | None = None
        self._rejoin = False
        self._last_heartbeat = 0
        self._fatal: FencedInstanceIdError | None = None

    # ------------------------------------------------------------------ state

    @property
    def member_id(self) -> str:
        """This member's id now (it changes after the member was removed from the group)."""
        return self._member_id

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this member owns: it may fetch and commit them."""
        return sorted(self._owned)

    @property
    def generation(self) -> int:
        """The generation this member last joined (-1: none)."""
        return self._generation

    @property
    def member(self) -> GroupMember | None:
        """Who this member's fetches and commits are fenced as (None: not in a group)."""
        if self._generation < 0 or self._phase in ("unjoined", "fenced"):
            return None
        return GroupMember(self.group, self._member_id, self._generation)

    @property
    def rebalancing(self) -> bool:
        """Whether a rebalance is under way for this member (its partitions may change)."""
        return self._phase != "stable" or self._rejoin

    # ------------------------------------------------------------------ requests

    def subscribe(self, topics: Iterable[str]) -> None:
        """Share ``topics`` with the group; rejoins at the next poll if they changed
        (none: the next poll revokes everything and leaves the group)."""
        names = sorted(set(topics))
        if names != self._topics:
            self._topics = names
            self.request_rejoin()

    def request_rejoin(self) -> None:
        """Rebalance at the next poll (the consumer saw a subscribed topic grow or be
        created again)."""
        if self._phase == "stable":
            self._rejoin = True

    def poll(
        self,
        *,
        on_revoke: Callback,
        on_assign: Callback,
        on_lost: Callback,
        wait_ms: int = 0,
    ) -> None:
        """Heartbeat, join or sync as needed, calling the callbacks with the partitions
        that change owner (revoked before assigned).

        Raises:
            IllegalGenerationError, UnknownMemberIdError: this member was fenced; its
                partitions were lost (``on_lost`` was called). Raised once: the next
                poll rejoins.
            FencedInstanceIdError: a newer member took its ``group_instance_id``
                (raised again by every poll: two processes share one instance id).
        """
        if self._fatal is not None:
            raise self._fatal
        if not self._topics:
            if self._phase not in ("unjoined", "fenced"):
                self.leave(on_revoke=on_revoke)  # unsubscribed: hand everything back
            return
        try:
            self._step(on_revoke, on_assign, wait_ms)
        except FENCING_ERRORS as err:
            self.lose(err, on_lost=on_lost)
            raise

    def leave(self, *, on_revoke: Callback) -> None:
        """Hand the partitions back (``on_revoke`` first: commit there) and leave the
        group; a later poll joins again under a new member id."""
        if self._owned:
            on_revoke(self.assignment)
            self._owned.clear()
        if self._phase not in ("unjoined", "fenced"):
            self._backend.leave_group(self.group, self._member_id)
            self._next_member_id()
        self._phase, self._generation, self._joined, self._rejoin = "unjoined", -1, None, False

    def catch_up(self) -> bool:
        """While joining: learn the generation the rebalance completed with, if it did
        (no sync: no partition changes hands), so commits of the partitions this member
        still owns carry it. Returns whether the generation moved on."""
        if self._phase != "joining":
            return False
        before = self._generation
        self._join(0)
        return self._generation != before

    def transient(self, error: GroupError) -> bool:
        """Whether a fetch or commit refused with ``error`` only raced a rebalance this
        member takes part in (its generation completed a moment before it heard): the
        partitions it owns are still its own; retry after the next poll. If False,
        call :meth:`lose` (the member was fenced)."""
        return isinstance(error, IllegalGenerationError) and self._phase in (
            "joining", "syncing"
        )

    def lose(self, error: GroupError, *, on_lost: Callback) -> None:
        """This member was fenced (``error``): its partitions are lost (``on_lost``, no
        commit possible); the next poll rejoins, under a new id if it was removed."""
        owned, self._owned = self.assignment, set()
        self._generation, self._joined, self._rejoin = -1, None, False
        self._phase = "unjoined"
        if isinstance(error, FencedInstanceIdError):
            self._phase, self._fatal = "fenced", error
        elif isinstance(error, UnknownMemberIdError):
            self._next_member_id()
        if owned:
            on_lost(owned)

    # ------------------------------------------------------------------ the protocol

    def _next_member_id(self) -> None:
        self._incarnation += 1
        self._member_id = f"{self._base_id}-{self._incarnation}"

    def _step(self, on_revoke: Callback, on_assign: Callback, wait_ms: int) -> None:
        if self._phase == "stable":
            if self._rejoin:
                self._phase = "joining"
            elif (
                self._now_ms() - self._last_heartbeat >= self.heartbeat_interval_ms
                or self._backend.group_changed(self.group, self._member_id, self._generation)
            ):
                try:
                    self._backend.heartbeat(self.group, self._member_id, self._generation)
                    self._last_heartbeat = self._now_ms()
                except RebalanceInProgressError:
                    self._phase = "joining"
        if self._phase in ("unjoined", "joining"):
            self._rejoin = False
            if not self._join(wait_ms):
                return
        if self._phase == "syncing":
            self._sync(on_revoke, on_assign, wait_ms)
            synced: Phase = self._phase  # (_sync moves it on)
            if synced == "stable" and self._rejoin:
                # it revoked partitions: rejoin now, so the follow-up rebalance that
                # moves them completes as soon as their new owner joins
                self._phase, self._rejoin = "joining", False
                if self._join(wait_ms):
                    self._sync(on_revoke, on_assign, wait_ms)

    def _join(self, wait_ms: int) -> bool:
        """Join (or keep joining); True once the generation completed."""
        metadata = encode_subscription(Subscription(self._topics, None, self.assignment))
        try:
            result = self._backend.join_group(
                self.group,
                self._member_id,
                protocol_type=PROTOCOL_TYPE,
                protocols=[(self.assignor, metadata)],
                session_timeout_ms=self.session_timeout_ms,
                rebalance_timeout_ms=self.max_poll_interval_ms,
                group_instance_id=self.group_instance_id,
                wait_ms=wait_ms,
            )
        except UnknownMemberIdError:
            if self._owned:
                raise  # removed while it owned partitions: they are lost
            # removed while it owned nothing, or an id used before (a restarted
            # consumer): nothing is lost, join again under a new id
            self._next_member_id()
            self._phase, self._generation = "unjoined", -1
            return False
        self._phase = "joining"
        if result is None:
            return False
        self._joined, self._generation, self._phase = result, result.generation, "syncing"
        return True

    def _sync(self, on_revoke: Callback, on_assign: Callback, wait_ms: int) -> None:
        joined = self._joined
        if joined is None:  # only a completed join enters "syncing"
            self._phase = "joining"
            return
        assignments = self._assign(joined) if joined.leader == self._member_id else {}
        try:
            data = self._backend.sync_group(
                self.group, self._member_id, joined.generation, assignments, wait_ms=wait_ms
            )
        except RebalanceInProgressError:
            self._phase = "joining"
            return
        if data is None:
            return
        try:
            given = set(decode_assignment(data).partitions)
        except InvalidRecordError:
            log.warning("group %r: undecodable assignment for %r", self.group, self._member_id)
            given = set()
        self._phase, self._joined = "stable", None
        self._last_heartbeat = self._now_ms()
        revoked = sorted(self._owned - given)
        added = sorted(given - self._owned)
        if revoked:
            on_revoke(revoked)
            self._owned.difference_update(revoked)
            self._rejoin = True  # the follow-up rebalance moves them to their new owner
        if added:
            self._owned.update(added)
            on_assign(added)

    def _assign(self, joined: JoinResult) -> dict[str, bytes]:
        """The leader's job: every member's assignment bytes."""
        subscriptions: dict[str, Subscription] = {}
        for member_id, metadata in joined.members:
            try:
                subscriptions[member_id] = decode_subscription(metadata)
            except InvalidRecordError:
                log.warning("group %r: member %r sent undecodable metadata; it gets nothing",
                            self.group, member_id)
                subscriptions[member_id] = Subscription([])
        topics = sorted({t for s in subscriptions.values() for t in s.topics})
        assignment = assign_cooperatively(
            joined.protocol, subscriptions, {t: self._partitions(t) for t in topics}
        )
        return {m: encode_assignment(Assignment(tps)) for m, tps in assignment.items()}

    def _partitions(self, topic: str) -> int:
        try:
            return self._backend.topic_metadata(topic).partitions
        except TopicNotFoundError:
            return 0

