"""The consumer: reads partitions from a position, alone or as a member of a group.

* ``assign([...])`` reads the given partitions, with no group coordination.
* ``subscribe([...])`` (with a ``group_id``) joins the group: its live members divide
  the topics' partitions (see :mod:`logstore.client.membership`), every group gets every
  record (pub-sub across groups, a work queue within one).

Positions start from the group's committed offset, else ``auto_offset_reset``
("earliest" or "latest"). A partition's *position* is the offset after the last record
**handed to the application** (Kafka's rule): everything one ``poll()`` returns, or, when
iterating, each record as it is yielded, never the rest of what a fetch read ahead.
``commit()`` with no arguments stores the positions in the group's committed offsets;
with ``enable_auto_commit`` they are committed every ``auto_commit_interval_ms`` (before
the next fetch), before a partition is given up in a rebalance, and on close, which gives
at-least-once delivery. Leaving a ``with`` block (or an iteration) by an exception does
not count the record being handled when the exception was raised as consumed.

Fencing: a member that stopped polling for longer than ``max_poll_interval_ms`` (a
process paused by SIGSTOP, a loop stuck in the application) is removed from its group,
and its partitions move to the others. When it polls again, ``poll()`` raises
:class:`~logstore.errors.UnknownMemberIdError` (or IllegalGenerationError) once, after
dropping those partitions (``on_lost``, not ``on_revoke``: they are another member's
now), and its ``commit()`` raises :class:`~logstore.errors.CommitFailedError`: it can
neither go on reading them unknowingly nor commit over their new owner. The next
``poll()`` rejoins.

Metadata: see :mod:`logstore.client.topics`. While a topic is deleted and not created
again, ``poll()`` raises TopicNotFoundError.

Delivery recipes:

* at-most-once: ``commit()`` right after ``poll()``, then process.
* at-least-once: process, then ``commit()`` (a crash re-delivers what was not committed).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Self

from logstore.client.backend import Backend, resolve_backend
from logstore.client.commits import FENCING_ERRORS, commit_offsets
from logstore.client.fetcher import Fetcher
from logstore.client.handout import Handout, Run
from logstore.client.membership import Membership
from logstore.client.positions import OFFSET_RESETS, StartingPoints
from logstore.client.producer import DEFAULT_METADATA_MAX_AGE_MS
from logstore.client.topics import Change, TopicView
from logstore.errors import (
    CommitFailedError,
    FencedInstanceIdError,
    IllegalGenerationError,
    InvalidConfigError,
    NoOffsetError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    StoreClosedError,
    TopicNotFoundError,
    UnknownMemberIdError,
)
from logstore.types import ConsumerRecord, OffsetAndTimestamp, TopicMetadata, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

__all__ = [  # the names this module always offered, wherever they live now
    "CommitFailedError",
    "Consumer",
    "ConsumerRecord",
    "NoOffsetError",
    "OffsetAndTimestamp",
]

DEFAULT_MAX_POLL_INTERVAL_MS = 300_000  # Kafka's max.poll.interval.ms
_FENCED = FENCING_ERRORS
_WAIT_SLICE_MS = 50  # a waiting poll looks at its group at least this often

Callback = Callable[[list[TopicPartition]], object]


class Consumer:
    """Reads records. Not thread-safe (like Kafka's consumer): use one per thread.

    Args:
        store: the open store (or another :class:`~logstore.client.backend.Backend`).
        topics: topics to subscribe to (needs ``group_id``), or None to ``assign`` later.
        group_id: the consumer group; committed offsets are kept per group.
        auto_offset_reset: where to start without a committed offset: "earliest",
            "latest" (Kafka's default) or "none" (raise :class:`NoOffsetError`).
        enable_auto_commit: commit returned positions every ``auto_commit_interval_ms``.
        max_poll_records: the most records one ``poll()`` returns.
        fetch_max_bytes: bytes read from one partition per fetch.
        session_timeout_ms: a member whose process died is noticed at once (its lock
            is free); one reached over the network would be dropped after this long.
        heartbeat_interval_ms: how often a member tells the group it is alive (default
            a third of the session timeout).
        max_poll_interval_ms: a member that does not poll for longer than this leaves
            the group, and its partitions move to the others (Kafka's rule; default 5
            minutes). Its next poll raises UnknownMemberIdError, then it rejoins.
        assignor: "range", "roundrobin" or "sticky".
        on_assign, on_revoke: called with the partitions gained or about to be lost in a
            rebalance (commit in ``on_revoke`` to hand over exactly where you are).
        on_lost: called with the partitions lost when this member was fenced (they are
            another member's already: a commit would be refused).
        consumer_timeout_ms: iteration stops after this long without records (None:
            iterate until closed).
        metadata_max_age_ms: look at each topic read at most this often (and at once on
            an unknown partition or a deleted topic): a grown topic is rebalanced, a
            re-created one read in its new incarnation, within it.
        group_instance_id: a static member's id (Kafka's ``group.instance.id``): a new
            member with the same id takes its place.
    """

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
    ) -> None:
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
        self._fetcher = Fetcher(self._backend, fetch_max_bytes)
        self._assigned: list[TopicPartition] = []
        self._subscription: list[str] = []
        self._paused: set[TopicPartition] = set()
        self._closed = False
        self._last_commit = time.monotonic()
        self._membership: Membership | None = None
        self.metadata_max_age_ms = metadata_max_age_ms
        self._topics = TopicView(self._backend, metadata_max_age_ms)
        self._starts = StartingPoints(
            self._backend, group_id, auto_offset_reset, self._topics, self._learn
        )
        self._lock = threading.RLock()
        if topics is not None:
            self.subscribe(topics)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def member_id(self) -> str:
        """This member's id in its group (after it was removed from the group and
        rejoined, ``<id>-<n>``)."""
        return self._member_id if self._membership is None else self._membership.member_id

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
            self._membership = Membership(
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
            self._commit_positions(tps)
        self._forget(tps)

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

    def _forget(self, tps: Iterable[TopicPartition]) -> None:
        tps = list(tps)
        for tp in tps:
            self._positions.pop(tp, None)
        self._fetcher.forget(tps)

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

    # ------------------------------------------------------------------ positions

    def position(self, tp: TopicPartition | tuple[str, int]) -> int:
        """The offset of the next record ``poll()`` returns from ``tp``."""
        tp = TopicPartition(*tp)
        self._check_assigned(tp)
        self.handout.settle()
        if tp not in self._positions:
            self._positions[tp] = self._starts.start(tp)
        return self._positions[tp]

    def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        """Read ``tp`` from ``offset`` next (replay or skip)."""
        tp = TopicPartition(*tp)
        self._check_assigned(tp)
        if offset < 0:
            raise OffsetOutOfRangeError(offset, 0, 0)
        self.handout.end(tp)
        self._positions[tp] = offset
        self._topics.from_start.discard(tp)

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps or tuple(self._assigned):
            self.seek(tp, self._backend.offset_range(TopicPartition(*tp))[0])

    def seek_to_end(self, *tps: TopicPartition) -> None:
        for tp in tps or tuple(self._assigned):
            self.seek(tp, self._backend.offset_range(TopicPartition(*tp))[1])

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """For each partition, the first offset with a timestamp >= the given one (Kafka's
        ListOffsets), or None if there is none."""
        return {
            TopicPartition(*tp): self._backend.offset_for_timestamp(TopicPartition(*tp), ts)
            for tp, ts in timestamps.items()
        }

    def seek_to_timestamp(self, timestamp: int, *tps: TopicPartition) -> None:
        """Replay from ``timestamp`` (ms): every partition (or ``tps``) continues at its
        first record with a timestamp >= it, or at its end if there is none."""
        targets = list(tps or self._assigned)
        found = self.offsets_for_times({tp: timestamp for tp in targets})
        for tp in targets:
            hit = found[tp]
            if hit is None:
                self.seek_to_end(tp)
            else:
                self.seek(tp, hit.offset)

    def _check_assigned(self, tp: TopicPartition) -> None:
        if tp not in self._assigned:
            raise InvalidConfigError(
                f"{tp.topic}-{tp.partition} is not assigned to this consumer (assigned: "
                f"{', '.join(f'{t}-{p}' for t, p in self._assigned) or 'none'})"
            )

    # ------------------------------------------------------------------ polling

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records from the assigned partitions, waiting up to ``timeout_ms`` for some.

        Every record returned counts as handed to the application: the positions move
        past them (and the next ``commit()`` or auto-commit stores that).

        Raises:
            UnknownMemberIdError, IllegalGenerationError: this member was fenced (see
                the module's docstring); the next poll rejoins.
            TopicNotFoundError: a topic read was deleted.
        """
        out: list[ConsumerRecord] = []
        for tp, run in self.poll_runs(timeout_ms, max_records):
            self._positions[tp] = run[-1].offset + 1
            out += run
        return out

    def poll_runs(self, timeout_ms: int, max_records: int | None) -> list[Run]:
        """Fetch up to ``max_records`` (one run of records per partition), waiting up to
        ``timeout_ms`` for some; the positions do not move (the caller moves them, as
        :meth:`poll` does at once and iteration does record by record)."""
        self._check_open()
        self.handout.end()  # records an iteration fetched before are not handed out now
        limit = max_records or self.max_poll_records
        deadline = time.monotonic() + timeout_ms / 1000
        pause = 0.0001
        while True:
            self._refresh_metadata()
            self._poll_group()
            self._maybe_auto_commit()
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                runs = self._fetch(limit, min(left_ms, _WAIT_SLICE_MS))
            except (TopicNotFoundError, PartitionNotFoundError):
                # deleted, re-created or grown since the last look: look now (raises
                # TopicNotFoundError if a topic read is gone), then fetch again
                self._refresh_metadata(force=True)
                runs = self._fetch(limit, 0)
            except _FENCED as err:
                self._fenced(err)  # raises unless it only raced this member's rebalance
                runs = []
            if runs or time.monotonic() >= deadline:
                return runs
            if not self._fetchable_partitions():  # nothing to wait on in a fetch
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 0.002)

    def _fetchable_partitions(self) -> list[TopicPartition]:
        return [
            tp for tp in self._assigned if tp not in self._paused and self._topics.readable(tp)
        ]

    def _fetch(self, limit: int, wait_ms: int) -> list[Run]:
        membership = self._membership
        return self._fetcher.fetch(
            self._fetchable_partitions(),
            limit,
            wait_ms,
            position=self.position,
            reset=self._reset_out_of_range,
            member=None if membership is None else membership.member,
        )

    def _reset_out_of_range(self, tp: TopicPartition) -> None:
        start, end = self._backend.offset_range(tp)
        self._positions[tp] = self._starts.reset(tp, start, end)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records one at a time. Each record counts as handed out when it is yielded, so
        ``commit()`` in the loop body commits up to and including it, never the records a
        fetch read ahead. If the loop body raises, its record stays in flight, and leaving
        a ``with`` block by that exception does not count it as consumed."""
        limit = self.consumer_timeout_ms
        idle_since = time.monotonic()
        handout = self.handout
        while not self._closed:
            wait_ms = 100
            if limit is not None:
                left = limit - (time.monotonic() - idle_since) * 1000
                if left <= 0:
                    return
                wait_ms = min(wait_ms, max(1, int(left)))
            runs = self.poll_runs(wait_ms, None)
            handout.allow(runs)
            for tp, run in runs:
                if not self.may_hand_out(tp):
                    continue
                it = handout.start(tp, run)
                yield from it
                handout.finish(it)
            if runs:
                idle_since = time.monotonic()  # idle time counts from the last hand-out

    def may_hand_out(self, tp: TopicPartition) -> bool:
        """Whether records fetched for iteration from ``tp`` may still be handed out: not
        once it was sought, paused or revoked, or the consumer polled or closed."""
        return (
            not self._closed
            and tp in self.handout.fetchable
            and tp not in self._paused
            and tp in self._assigned
        )

    def pause(self, *tps: TopicPartition) -> None:
        paused = [TopicPartition(*tp) for tp in tps]
        self.handout.end(*paused)
        self._paused.update(paused)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(TopicPartition(*tp) for tp in tps)

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

    def _maybe_auto_commit(self) -> None:
        if (
            self.enable_auto_commit
            and (time.monotonic() - self._last_commit) * 1000 >= self.auto_commit_interval_ms
        ):
            self._commit_positions(list(self._assigned))
            self._last_commit = time.monotonic()

    def committed(self, tp: TopicPartition | tuple[str, int]) -> int | None:
        """The group's committed offset for ``tp`` (None if none, or if it was committed
        against a deleted topic of the same name)."""
        return self._starts.committed(TopicPartition(*tp))

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("consumer is closed")

    def close(self) -> None:
        """Commit (with auto-commit), leave the group and release partitions. Idempotent."""
        self.close_after(failed=False)

    def close_after(self, *, failed: bool) -> None:
        """Close; ``failed``: an exception escaped while the application handled the
        record in flight, so it was not consumed (neither auto-commit nor the next member
        may skip it)."""
        if self._closed:
            return
        found = self.handout.in_flight()
        self.handout.end()  # an iteration in progress hands out nothing more
        if failed and found is not None:
            self._positions[found[0]] = found[1].offset
        try:
            if self._membership is None:
                if self.enable_auto_commit:
                    self._commit_positions(list(self._assigned))
            else:
                self._membership.leave(on_revoke=self._revoked)
        finally:
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close_after(failed=exc_type is not None)


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
