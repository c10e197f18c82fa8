"""The state of a :class:`~logstore.client.consumer.Consumer` and the parts every other
part of it uses: its options, the topics it watches (a deleted or re-created topic's
positions are dropped), assignment and the group, fencing, and commits.

:class:`ConsumerCore` is the bottom part of the consumer; the consumer itself
(:mod:`logstore.client.consumer`: positions, polling, iteration, close) builds on it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from logstore.client.backend import Backend, resolve_backend
from logstore.client.commits import commit_offsets
from logstore.client.fetcher import Fetcher
from logstore.client.handout import Handout
from logstore.client.membership import GroupMembership, membership_for
from logstore.client.positions import OFFSET_RESETS, StartingPoints
from logstore.client.producer import DEFAULT_METADATA_MAX_AGE_MS
from logstore.client.topics import Change, TopicView
from logstore.config import ISOLATION_LEVELS, READ_UNCOMMITTED
from logstore.errors import (
    CommitFailedError,
    FencedInstanceIdError,
    IllegalGenerationError,
    InvalidConfigError,
    PartitionNotFoundError,
    StoreClosedError,
    TopicNotFoundError,
    UnknownMemberIdError,
)
from logstore.types import GroupMember, TopicMetadata, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

log = logging.getLogger("logstore.client.consumer")

DEFAULT_MAX_POLL_INTERVAL_MS = 300_000  # Kafka's max.poll.interval.ms

Callback = Callable[[list[TopicPartition]], object]


class ConsumerCore:
    """A consumer's options and state, its assignment, metadata and commits (see
    :class:`~logstore.client.consumer.Consumer` for the options)."""

    def __init__(
        self,
        store: Store | Backend,
        topics: Iterable[str] | None = None,
        *,
        group_id: str | None = None,
        auto_offset_reset: str = "latest",
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        max_poll_records: int = 500,
        fetch_max_bytes: int = 1 << 20,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int | None = None,
        max_poll_interval_ms: int = DEFAULT_MAX_POLL_INTERVAL_MS,
        assignor: str = "range",
        on_assign: Callback | None = None,
        on_revoke: Callback | None = None,
        on_lost: Callback | None = None,
        consumer_timeout_ms: int | None = None,
        member_id: str | None = None,
        metadata_max_age_ms: int = DEFAULT_METADATA_MAX_AGE_MS,
        group_instance_id: str | None = None,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> None:
        if isolation_level not in ISOLATION_LEVELS:
            raise InvalidConfigError(
                f"isolation_level={isolation_level!r} is not one of {ISOLATION_LEVELS}"
            )
        if auto_offset_reset not in OFFSET_RESETS:
            raise InvalidConfigError(
                f"auto_offset_reset={auto_offset_reset!r} is not one of {OFFSET_RESETS}"
            )
        if metadata_max_age_ms < 0:
            raise InvalidConfigError(
                f"metadata_max_age_ms={metadata_max_age_ms} must be >= 0"
            )
        if (
            max_poll_records < 1
            or fetch_max_bytes < 1
            or session_timeout_ms < 1
            or max_poll_interval_ms < 1
        ):
            raise InvalidConfigError(
                f"max_poll_records={max_poll_records}, fetch_max_bytes={fetch_max_bytes}, "
                f"session_timeout_ms={session_timeout_ms} and max_poll_interval_ms="
                f"{max_poll_interval_ms} must be positive"
            )
        self._backend = resolve_backend(store)
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.enable_auto_commit = enable_auto_commit and group_id is not None
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self.max_poll_records = max_poll_records
        self.fetch_max_bytes = fetch_max_bytes
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms or max(1, session_timeout_ms // 3)
        self.max_poll_interval_ms = max_poll_interval_ms
        self.assignor = assignor
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.on_lost = on_lost
        self.consumer_timeout_ms = consumer_timeout_ms
        self._member_id = member_id or f"member-{secrets.token_hex(8)}"
        self.group_instance_id = group_instance_id
        # The offset after the last record handed to the application, per partition: what
        # commit() and auto-commit store. Never beyond what was handed out.
        self._positions: dict[TopicPartition, int] = {}
        self.handout = Handout(self._positions)
        """Which fetched records iteration hands out (shared with the asyncio twin)."""
        self.isolation_level = isolation_level
        self._fetcher = Fetcher(self._backend, fetch_max_bytes, isolation_level)
        self._assigned: list[TopicPartition] = []
        self._subscription: list[str] = []
        self._paused: set[TopicPartition] = set()
        self._closed = False
        self._last_commit = time.monotonic()
        self._membership: GroupMembership | None = None
        self.metadata_max_age_ms = metadata_max_age_ms
        self._topics = TopicView(self._backend, metadata_max_age_ms)
        self._starts = StartingPoints(
            self._backend, group_id, auto_offset_reset, self._topics, self._learn,
            isolation_level,
        )
        self._lock = threading.RLock()
        if topics is not None:
            self.subscribe(topics)

    @property
    def closed(self) -> bool:
        return self._closed

    def group_metadata(self) -> GroupMember:
        """Who this consumer is in its group now (Kafka's ``groupMetadata()``): pass it
        to :meth:`TransactionalProducer.send_offsets_to_transaction
        <logstore.client.transactions.TransactionalProducer.send_offsets_to_transaction>`
        so a consumer fenced by a rebalance cannot commit (KIP-447).

        Raises:
            InvalidConfigError: the consumer has no ``group_id``.
        """
        if self.group_id is None:
            raise InvalidConfigError("group_metadata() needs a consumer with a group_id")
        membership = self._membership
        member = None if membership is None else membership.member
        return member or GroupMember(self.group_id, self._member_id, -1)

    @property
    def member_id(self) -> str:
        """This member's id in its group (after it was removed from the group and
        rejoined, ``<id>-<n>``)."""
        return self._member_id if self._membership is None else self._membership.member_id

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("consumer is closed")

    def _check_assigned(self, tp: TopicPartition) -> None:
        if tp not in self._assigned:
            raise InvalidConfigError(
                f"{tp.topic}-{tp.partition} is not assigned to this consumer (assigned: "
                f"{', '.join(f'{t}-{p}' for t, p in self._assigned) or 'none'})"
            )

    # ------------------------------------------------------------------ assignment

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Read exactly these partitions (no group membership)."""
        self._check_open()
        if self._subscription:
            raise InvalidConfigError("this consumer subscribed to topics; it cannot also assign")
        tps = [TopicPartition(*tp) for tp in partitions]
        found = {name: self._backend.topic_metadata(name) for name in {tp.topic for tp in tps}}
        for tp in tps:
            _check_partition(found[tp.topic], tp.partition)
        for topic in found.values():
            self._on_change(topic.name, self._topics.note(topic))
        self.handout.end()
        self._assigned = tps
        for tp in [tp for tp in self._positions if tp not in tps]:
            del self._positions[tp]

    def subscribe(self, topics: Iterable[str]) -> None:
        """Join the group and share the partitions of ``topics`` with its other members."""
        self._check_open()
        if self.group_id is None:
            raise InvalidConfigError("subscribe needs a group_id (or use assign())")
        names = sorted(set(topics))
        for name in names:
            topic = self._backend.topic_metadata(name)  # validates
            self._on_change(name, self._topics.note(topic))
        self._subscription = names
        if self._membership is None:
            self._membership = membership_for(
                self._backend,
                self.group_id,
                self._member_id,
                assignor=self.assignor,
                session_timeout_ms=self.session_timeout_ms,
                max_poll_interval_ms=self.max_poll_interval_ms,
                heartbeat_interval_ms=self.heartbeat_interval_ms,
                group_instance_id=self.group_instance_id,
            )
        self._membership.subscribe(names)
        self._poll_group()

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads now."""
        return list(self._assigned)

    def rebalancing(self) -> bool:
        """Whether the group is moving partitions to or from this member (``poll()``
        takes part in the rebalance)."""
        return self._membership is not None and self._membership.rebalancing

    def _poll_group(self) -> None:
        """Take part in the group: heartbeat, rejoin, give up and take partitions.

        Raises:
            UnknownMemberIdError, IllegalGenerationError: this member was fenced (its
                partitions are dropped; the next call rejoins).
        """
        membership = self._membership
        if membership is None:
            return
        try:
            membership.poll(
                on_revoke=self._revoked, on_assign=self._gained, on_lost=self._lost
            )
        finally:
            self._sync_assignment()

    def _sync_assignment(self) -> None:
        """``assignment()`` as the membership says now (callbacks may seek and commit
        the partitions they are given)."""
        if self._membership is not None:
            self._assigned = [
                tp for tp in self._membership.assignment if self._topics.readable(tp)
            ]

    def _gained(self, tps: list[TopicPartition]) -> None:
        unknown = {tp.topic for tp in tps if not self._topics.readable(tp)}
        for name in unknown:  # another member saw the topic grow first: look now
            self._on_change(name, self._topics.look(name)[1])
        self._sync_assignment()
        if self.on_assign is not None:
            self.on_assign(list(tps))

    def _revoked(self, tps: list[TopicPartition]) -> None:
        """``tps`` move to other members: hand over exactly where this one is."""
        self.handout.end()
        self._sync_assignment()
        if self.on_revoke is not None:
            self.on_revoke(list(tps))
        if self.enable_auto_commit:
            self._auto_commit(tps)
        self._forget(tps)

    # ------------------------------------------------------------------ losing partitions

    def _forget(self, tps: Iterable[TopicPartition]) -> None:
        tps = list(tps)
        for tp in tps:
            self._positions.pop(tp, None)
        self._fetcher.forget(tps)

    def _lost(self, tps: list[TopicPartition]) -> None:
        """``tps`` were taken from this member when it was fenced: nothing to commit."""
        self.handout.end()
        if self.on_lost is not None:
            self.on_lost(list(tps))
        self._forget(tps)

    def _fenced(
        self, err: IllegalGenerationError | UnknownMemberIdError | FencedInstanceIdError
    ) -> None:
        """A fetch or commit was refused with ``err``: unless that only raced a rebalance
        this member takes part in, it was fenced: its partitions are lost, and ``err``
        is raised (the next poll rejoins)."""
        membership = self._membership
        if membership is None or not membership.transient(err):
            if membership is not None:
                membership.lose(err, on_lost=self._lost)
                self._assigned = []
            raise err

    # ------------------------------------------------------------------ metadata

    def _learn(self, name: str) -> None:
        self._on_change(name, self._topics.look(name)[1])

    def _on_change(self, name: str, change: Change) -> None:
        """Act on what changed in topic ``name``: positions in a deleted or re-created
        topic belong to another incarnation; a deleted topic's partitions start from
        their beginning once it exists again."""
        if change in (Change.RECREATED, Change.DELETED):
            tps = {tp for tp in [*self._assigned, *self._positions, *self._fetcher.buffered()]
                   if tp.topic == name}
            if tps:
                self.handout.end(*tps)
            self._forget(tps)
        if change is Change.DELETED:
            self._topics.from_start.update(tp for tp in self._assigned if tp.topic == name)

    def _refresh_metadata(self, *, force: bool = False) -> None:
        """Every ``metadata_max_age_ms`` (or now, if ``force``), look at the topics read;
        rejoin the group if a subscribed one changed.

        Raises:
            TopicNotFoundError: a topic read is deleted (and not created again).
        """
        if not force and not self._topics.due():
            return
        self._topics.looked()
        names = sorted({*self._subscription, *(tp.topic for tp in self._assigned)})
        gone, changed = [], False
        for name in names:
            topic, change = self._topics.look(name)
            self._on_change(name, change)
            if topic is None:
                gone.append(name)
            changed |= change is not Change.NONE and name in self._subscription
        if changed and self._membership is not None:
            self._membership.request_rejoin()
        if gone:
            raise TopicNotFoundError(
                f"topic {', '.join(map(repr, gone))} was deleted while this consumer read "
                f"it (it reads it again once created again)"
            )

    # ------------------------------------------------------------------ commits

    def commit(
        self,
        offsets: Mapping[TopicPartition, int | tuple[int, str]] | None = None,
        metadata: str = "",
    ) -> None:
        """Commit ``offsets`` (the next offsets to read), or every current position.

        Raises:
            CommitFailedError: a partition is not (any longer) this member's: it was
                reassigned in a rebalance, or this member was fenced.
        """
        self._check_open()
        if self.group_id is None:
            raise InvalidConfigError("commit needs a group_id")
        if offsets is None:
            self.handout.settle()
            chosen = {tp: (p, metadata) for tp, p in self._positions.items()}
        else:
            chosen = {
                TopicPartition(*tp): (v if isinstance(v, tuple) else (v, metadata))
                for tp, v in offsets.items()
            }
        if self._membership is not None:
            owned = set(self._membership.assignment)
            foreign = [tp for tp in chosen if tp not in owned]
            if foreign:
                raise CommitFailedError(
                    f"cannot commit {', '.join(f'{t}-{p}' for t, p in foreign)} for group "
                    f"{self.group_id!r}: this member does not own them in generation "
                    f"{self._membership.generation} (they were reassigned in a rebalance)",
                    self.group_id,
                )
        self._commit(chosen)
        self._last_commit = time.monotonic()

    def _commit(self, chosen: Mapping[TopicPartition, tuple[int, str]]) -> None:
        assert self.group_id is not None
        commit_offsets(self._backend, self.group_id, chosen, self._membership, self._fenced)

    def _commit_positions(self, tps: Iterable[TopicPartition]) -> None:
        if self.group_id is None:
            return
        self.handout.settle()
        chosen = {tp: (self._positions[tp], "") for tp in tps if tp in self._positions}
        if chosen:
            self._commit(chosen)

    def _auto_commit(self, tps: Iterable[TopicPartition]) -> None:
        """Commit the positions of ``tps`` as auto-commit does (on its interval, before a
        rebalance moves them, on close): a refused commit is logged, not raised, as
        Kafka's consumer logs a failed auto-commit. The records past the last commit
        are then delivered again (at-least-once), to this member or the partition's new
        owner; the member itself learns it was fenced from its next poll."""
        try:
            self._commit_positions(tps)
        except CommitFailedError as err:
            log.warning("auto-commit of group %r failed: %s", self.group_id, err)

    def _maybe_auto_commit(self) -> None:
        """The interval's auto-commit, unless this member is mid-rebalance: a commit then
        carries the generation it is leaving and would be refused (Kafka's consumer
        cannot commit while its JoinGroup is in flight either); it is made once the
        rebalance completes (partitions that move away are committed as they go)."""
        if (
            self.enable_auto_commit
            and (time.monotonic() - self._last_commit) * 1000 >= self.auto_commit_interval_ms
            and not (self._membership is not None and self._membership.rebalancing)
        ):
            self._auto_commit(list(self._assigned))
            self._last_commit = time.monotonic()

    def committed(self, tp: TopicPartition | tuple[str, int]) -> int | None:
        """The group's committed offset for ``tp`` (None if none, or if it was committed
        against a deleted topic of the same name)."""
        return self._starts.committed(TopicPartition(*tp))


def _check_partition(topic: TopicMetadata, partition: object) -> None:
    if (
        isinstance(partition, bool)
        or not isinstance(partition, int)
        or not 0 <= partition < topic.partitions
    ):
        raise PartitionNotFoundError(
            f"topic {topic.name!r} has no partition {partition!r} (it has partitions "
            f"0..{topic.partitions - 1})"
        )
