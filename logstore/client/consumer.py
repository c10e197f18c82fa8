"""The consumer: reads partitions from a position, alone or as a member of a group.

* ``assign([...])`` reads the given partitions, with no group coordination.
* ``subscribe([...])`` (with a ``group_id``) joins the group: its live members divide
  the topics' partitions (see :mod:`logstore.client.group`), every group gets every record
  (pub-sub across groups, a work queue within one).

Positions start from the group's committed offset, else ``auto_offset_reset``
("earliest" or "latest"). A partition's *position* is the offset after the last record
**handed to the application** (Kafka's rule): everything one ``poll()`` returns, or, when
iterating, each record as it is yielded, never the rest of what a fetch read ahead.
``commit()`` with no arguments stores the positions in the store's offsets log; with
``enable_auto_commit`` they are committed every ``auto_commit_interval_ms`` (before the
next fetch), before a partition is given up in a rebalance, and on close, which gives
at-least-once delivery. Leaving a ``with`` block (or an iteration) by an exception does
not count the record being handled when the exception was raised as consumed.

Metadata: a consumer re-reads the registry file of each topic it reads at most every
``metadata_max_age_ms`` (and at once on an unknown partition or a deleted topic). A topic
that grew is rebalanced by the group at once (or, with ``assign()``, its new partitions
are readable); partitions added while the consumer ran are read from their beginning
when the group has no committed offset for them (the consumer knew the topic before they
existed, so all their records are new to it). A topic deleted and created again is a new
incarnation: positions in the old one are dropped and each partition starts again from
the group's committed offset in the new one, else from its beginning. While a topic is
deleted and not created again, ``poll()`` raises TopicNotFoundError.

Delivery recipes:

* at-most-once: ``commit()`` right after ``poll()``, then process.
* at-least-once: process, then ``commit()`` (a crash re-delivers what was not committed).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Self

from logstore.client.group import GroupFiles, Ownership
from logstore.client.producer import DEFAULT_METADATA_MAX_AGE_MS
from logstore.errors import (
    CommitFailedError,
    InvalidConfigError,
    LogstoreError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    StoreClosedError,
    TopicNotFoundError,
)
from logstore.storage.files import LockFile
from logstore.types import ConsumerRecord, OffsetAndTimestamp, TopicPartition

if TYPE_CHECKING:
    from logstore.metadata import OffsetStore
    from logstore.store import Store
    from logstore.topic import Topic

OFFSET_RESETS = ("earliest", "latest", "none")


class NoOffsetError(LogstoreError):
    """No committed offset and ``auto_offset_reset="none"``: seek first."""


FETCH_MAX_RECORDS = 10_000
"""Records one partition fetch decodes at most (beyond a poll's own limit). A fetch reads
up to ``fetch_max_bytes``, but a decoded record costs about 100 bytes more than it does
encoded, so a megabyte of tiny records would otherwise sit in the fetch buffer as tens of
megabytes for every partition."""


Run = tuple[TopicPartition, list[ConsumerRecord]]
"""Records of one partition from one fetch, in offset order."""


Callback = Callable[[list[TopicPartition]], object]


class Consumer:
    """Reads records. Not thread-safe (like Kafka's consumer): use one per thread.

    Args:
        store: the open store.
        topics: topics to subscribe to (needs ``group_id``), or None to ``assign`` later.
        group_id: the consumer group; committed offsets are kept per group.
        auto_offset_reset: where to start without a committed offset: "earliest",
            "latest" (Kafka's default) or "none" (raise :class:`NoOffsetError`).
        enable_auto_commit: commit returned positions every ``auto_commit_interval_ms``.
        max_poll_records: the most records one ``poll()`` returns.
        fetch_max_bytes: bytes read from one partition per fetch.
        session_timeout_ms: a dead member's partitions move within this time.
        heartbeat_interval_ms: how often membership is checked (default a third of the
            session timeout).
        assignor: "range", "roundrobin" or "sticky".
        on_assign, on_revoke: called with the partitions gained or about to be lost in a
            rebalance (commit in ``on_revoke`` to hand over exactly where you are).
        consumer_timeout_ms: iteration stops after this long without records (None:
            iterate until closed).
        metadata_max_age_ms: re-read the registry file of each topic read at most this
            often (and at once on an unknown partition or a deleted topic): a grown
            topic is rebalanced, a re-created one read in its new incarnation, within it.
    """

    def __init__(
        self,
        store: Store,
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
        assignor: str = "range",
        on_assign: Callback | None = None,
        on_revoke: Callback | None = None,
        consumer_timeout_ms: int | None = None,
        member_id: str | None = None,
        metadata_max_age_ms: int = DEFAULT_METADATA_MAX_AGE_MS,
    ) -> None:
        if auto_offset_reset not in OFFSET_RESETS:
            raise InvalidConfigError(
                f"auto_offset_reset={auto_offset_reset!r} is not one of {OFFSET_RESETS}"
            )
        if metadata_max_age_ms < 0:
            raise InvalidConfigError(
                f"metadata_max_age_ms={metadata_max_age_ms} must be >= 0"
            )
        if max_poll_records < 1 or fetch_max_bytes < 1 or session_timeout_ms < 1:
            raise InvalidConfigError(
                f"max_poll_records={max_poll_records}, fetch_max_bytes={fetch_max_bytes} and "
                f"session_timeout_ms={session_timeout_ms} must be positive"
            )
        self._store = store
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.enable_auto_commit = enable_auto_commit and group_id is not None
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self.max_poll_records = max_poll_records
        self.fetch_max_bytes = fetch_max_bytes
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms or max(1, session_timeout_ms // 3)
        self.assignor = assignor
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.consumer_timeout_ms = consumer_timeout_ms
        self.member_id = member_id or f"member-{secrets.token_hex(8)}"
        # The offset after the last record handed to the application, per partition: what
        # commit() and auto-commit store. Never beyond what was handed out.
        self._positions: dict[TopicPartition, int] = {}
        # Iteration: the partitions whose records fetched for iteration may still be
        # handed out (a seek, pause, poll or rebalance since the fetch drops them), the
        # run of records being handed out (partition, records, the iterator over them),
        # and the asyncio twin's last record handed out. Their positions are written into
        # _positions lazily (_settle), so handing out a record costs nothing extra.
        self._fetchable: set[TopicPartition] = set()
        self._run: tuple[TopicPartition, list[ConsumerRecord], Any] | None = None  # list_iterator
        self._async_in_flight: ConsumerRecord | None = None
        # A fetch decodes up to fetch_max_bytes; what one poll does not return waits here
        # (records, index of the next) for the next poll, as Kafka's fetch buffer does.
        self._buffers: dict[TopicPartition, list[Any]] = {}
        self._assigned: list[TopicPartition] = []
        self._subscription: list[str] = []
        self._paused: set[TopicPartition] = set()
        self._closed = False
        self._next_partition = 0
        self._last_commit = time.monotonic()
        self._offsets: OffsetStore | None = store.offsets if group_id is not None else None
        self._files: GroupFiles | None = None
        self._ownership: Ownership | None = None
        self._member_lock: LockFile | None = None
        self._generation = -1
        self._state_version = -1
        self._last_heartbeat = 0.0
        self._wanted: list[TopicPartition] = []
        # What this consumer knows of each topic it reads: the incarnation (topic id) and
        # partition count, as of _metadata_at; and the partitions to start at their
        # beginning when the group has no committed offset (added, or re-created, since
        # the consumer first saw their topic).
        self.metadata_max_age_ms = metadata_max_age_ms
        self._incarnations: dict[str, str | None] = {}
        self._counts: dict[str, int] = {}
        self._from_start: set[TopicPartition] = set()
        self._metadata_at = time.monotonic()
        self._lock = threading.RLock()
        if topics is not None:
            self.subscribe(topics)

    # ------------------------------------------------------------------ assignment

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Read exactly these partitions (no group membership)."""
        self._check_open()
        if self._subscription:
            raise InvalidConfigError("this consumer subscribed to topics; it cannot also assign")
        tps = [TopicPartition(*tp) for tp in partitions]
        topics = {name: self._store.refresh_topic(name) for name in {tp.topic for tp in tps}}
        for tp in tps:
            topics[tp.topic].partition(tp.partition)  # validates
        for topic in topics.values():
            self._know(topic)
        self._end_run()
        self._assigned = tps
        self._positions = {tp: p for tp, p in self._positions.items() if tp in tps}

    def subscribe(self, topics: Iterable[str]) -> None:
        """Join the group and share the partitions of ``topics`` with its other members."""
        self._check_open()
        if self.group_id is None:
            raise InvalidConfigError("subscribe needs a group_id (or use assign())")
        names = sorted(set(topics))
        for name in names:
            self._know(self._store.refresh_topic(name))  # validates
        self._subscription = names
        if self._files is None:
            self._files = GroupFiles(self._store.path, self.group_id, self._store.fs)
            self._ownership = Ownership(self._files)
            member_lock = self._store.fs.lock_file(self._files.member_lock_path(self.member_id))
            member_lock.acquire()
            self._member_lock = member_lock
        self._rejoin(add=True)

    def _partition_counts(self) -> dict[str, int]:
        """The subscribed topics' partition counts as their registry files say now (0 for
        a deleted topic)."""
        counts = {}
        for name in self._subscription:
            topic = self._refresh_topic(name)
            counts[name] = 0 if topic is None else topic.num_partitions
        return counts

    # ------------------------------------------------------------------ metadata

    def _know(self, topic: Topic) -> None:
        """Note ``topic``'s incarnation and partition count, and act on a change since
        this consumer last looked: a new incarnation drops its positions; partitions
        added are read from their beginning (without a committed offset)."""
        name = topic.name
        if name in self._incarnations and self._incarnations[name] != topic.topic_id:
            self._restart_topic(name)
            self._from_start.update(
                TopicPartition(name, p) for p in range(topic.num_partitions)
            )
        elif name in self._counts and topic.num_partitions > self._counts[name]:
            self._from_start.update(
                TopicPartition(name, p)
                for p in range(self._counts[name], topic.num_partitions)
            )
        self._incarnations[name] = topic.topic_id
        self._counts[name] = topic.num_partitions

    def _restart_topic(self, name: str) -> None:
        """Forget positions and fetched records of topic ``name`` (deleted, or deleted and
        created again: they belong to another incarnation)."""
        tps = {tp for tp in [*self._assigned, *self._positions, *self._buffers]
               if tp.topic == name}
        if tps:
            self._end_run(*tps)
        for tp in tps:
            self._positions.pop(tp, None)
            self._buffers.pop(tp, None)

    def _refresh_topic(self, name: str) -> Topic | None:
        """Topic ``name`` as its registry file says now (None if it is deleted)."""
        try:
            topic = self._store.refresh_topic(name)
        except TopicNotFoundError:
            if name in self._incarnations:
                self._restart_topic(name)
                self._from_start.update(tp for tp in self._assigned if tp.topic == name)
                del self._incarnations[name]
            self._counts[name] = 0
            return None
        self._know(topic)
        return topic

    def _refresh_metadata(self, *, force: bool = False) -> None:
        """Every ``metadata_max_age_ms`` (or now, if ``force``), re-read the registry
        files of the topics read; rebalance the group if a subscribed one changed.

        Raises:
            TopicNotFoundError: a topic read is deleted (and not created again).
        """
        now = time.monotonic()
        if not force and (now - self._metadata_at) * 1000 < self.metadata_max_age_ms:
            return
        self._metadata_at = now
        names = sorted({*self._subscription, *(tp.topic for tp in self._assigned)})
        before = {name: (self._incarnations.get(name), self._counts.get(name)) for name in names}
        gone = [name for name in names if self._refresh_topic(name) is None]
        changed = any(
            (self._incarnations.get(name), self._counts.get(name)) != before[name]
            for name in self._subscription
        )
        if changed and self._files is not None:
            self._rejoin(add=True)
        if gone:
            raise TopicNotFoundError(
                f"topic {', '.join(map(repr, gone))} was deleted while this consumer read "
                f"it (it reads it again once created again)"
            )

    def _rejoin(self, *, add: bool) -> None:
        assert self._files is not None
        state = self._files.change(
            add=(self.member_id, self._subscription) if add else None,
            assignor=self.assignor,
            partitions=self._partition_counts,
        )
        self._state_version = self._files.state_version()
        self._last_heartbeat = time.monotonic()
        self._apply_state(state.generation, state.assignment.get(self.member_id, []))

    def _apply_state(self, generation: int, wanted: list[TopicPartition]) -> None:
        """Give up partitions no longer ours, then take the new ones once free."""
        assert self._ownership is not None
        unknown = {tp.topic for tp in wanted if tp.partition >= self._counts.get(tp.topic, 0)}
        for name in unknown:  # another member saw the topic grow first: look now
            self._refresh_topic(name)
        wanted = [tp for tp in wanted if tp.partition < self._counts.get(tp.topic, 0)]
        self._generation = generation
        self._wanted = sorted(wanted)
        revoked = sorted(self._ownership.owned - set(wanted))
        self._end_run()
        if revoked:
            if self.on_revoke is not None:
                self.on_revoke(revoked)
            if self.enable_auto_commit:
                self._commit_positions(revoked)
            for tp in revoked:
                self._ownership.give_up(tp)
                self._positions.pop(tp, None)
                self._buffers.pop(tp, None)
        self._take_free_partitions()

    def _take_free_partitions(self) -> None:
        assert self._ownership is not None
        gained = [
            tp for tp in self._wanted if tp not in self._ownership and self._ownership.try_take(tp)
        ]
        if gained:
            self._assigned = [tp for tp in self._wanted if tp in self._ownership]
            if self.on_assign is not None:
                self.on_assign(gained)
        else:
            self._assigned = [tp for tp in self._wanted if tp in self._ownership]

    def _heartbeat(self) -> None:
        """Notice membership changes (cheap: a stat), and every heartbeat interval look
        for dead members; take partitions whose previous owner has let go."""
        if self._files is None:
            return
        now = time.monotonic()
        version = self._files.state_version()
        if now - self._last_heartbeat >= self.heartbeat_interval_ms / 1000:
            self._rejoin(add=self.member_id not in self._files.read_state().members)
            return
        if version != self._state_version:
            self._state_version = version
            state = self._files.read_state()
            if self.member_id not in state.members:  # removed as dead by mistake: rejoin
                self._rejoin(add=True)
                return
            self._apply_state(state.generation, state.assignment.get(self.member_id, []))
        elif len(self._assigned) < len(self._wanted):
            self._take_free_partitions()

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads now."""
        return list(self._assigned)

    def rebalancing(self) -> bool:
        """Whether the group gave this member partitions it does not read yet (their
        previous owner has not handed them over); ``poll()`` takes them once it has."""
        return len(self._assigned) < len(self._wanted)

    # ------------------------------------------------------------------ positions

    def _committed_or_reset(self, tp: TopicPartition) -> int:
        topic = self._store.topic(tp.topic)
        plog = topic.partition(tp.partition)
        if self._offsets is not None and self.group_id is not None:
            committed = self._offsets.committed(self.group_id, tp)
            if committed is not None and committed.topic_id != topic.topic_id:
                committed = None  # committed against a deleted topic of the same name
            if committed is not None:
                plog.refresh()
                if plog.log_start_offset <= committed.offset <= plog.log_end_offset:
                    self._from_start.discard(tp)
                    return committed.offset
                # Kafka: a committed offset out of range resets per auto_offset_reset
        if tp in self._from_start:
            # added or re-created since this consumer first saw the topic: every record
            # in it is new to the consumer
            self._from_start.discard(tp)
            plog.refresh()
            return plog.log_start_offset
        return self._reset(tp)

    def _reset(self, tp: TopicPartition) -> int:
        plog = self._store.topic(tp.topic).partition(tp.partition)
        plog.refresh()
        if self.auto_offset_reset == "earliest":
            return plog.log_start_offset
        if self.auto_offset_reset == "latest":
            return plog.log_end_offset
        raise NoOffsetError(
            f"{tp.topic}-{tp.partition} has no committed offset for group {self.group_id!r} "
            f"and auto_offset_reset is 'none' (seek() first)"
        )

    def position(self, tp: TopicPartition | tuple[str, int]) -> int:
        """The offset of the next record ``poll()`` returns from ``tp``."""
        tp = TopicPartition(*tp)
        self._check_assigned(tp)
        self._settle()
        if tp not in self._positions:
            self._positions[tp] = self._committed_or_reset(tp)
        return self._positions[tp]

    def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        """Read ``tp`` from ``offset`` next (replay or skip)."""
        tp = TopicPartition(*tp)
        self._check_assigned(tp)
        if offset < 0:
            raise OffsetOutOfRangeError(offset, 0, 0)
        self._end_run(tp)
        self._positions[tp] = offset
        self._from_start.discard(tp)

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps or tuple(self._assigned):
            plog = self._store.topic(tp.topic).partition(tp.partition)
            plog.refresh()
            self.seek(tp, plog.log_start_offset)

    def seek_to_end(self, *tps: TopicPartition) -> None:
        for tp in tps or tuple(self._assigned):
            plog = self._store.topic(tp.topic).partition(tp.partition)
            plog.refresh()
            self.seek(tp, plog.log_end_offset)

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """For each partition, the first offset with a timestamp >= the given one (Kafka's
        ListOffsets), or None if there is none."""
        out: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for given, ts in timestamps.items():
            tp = TopicPartition(*given)
            plog = self._store.topic(tp.topic).partition(tp.partition)
            offset = plog.offset_for_timestamp(ts)
            if offset is None:
                out[tp] = None
            else:
                record = plog.read_records(offset, max_records=1)[0]
                out[tp] = OffsetAndTimestamp(offset, record.timestamp)
        return out

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
        """
        out: list[ConsumerRecord] = []
        for tp, run in self._poll_runs(timeout_ms, max_records):
            self._positions[tp] = run[-1].offset + 1
            out += run
        return out

    def _poll_runs(self, timeout_ms: int, max_records: int | None) -> list[Run]:
        """Fetch up to ``max_records`` (one run of records per partition), waiting up to
        ``timeout_ms`` for some; the positions do not move (the caller moves them)."""
        self._check_open()
        self._end_run()  # records an iteration fetched before are not handed out now
        limit = max_records or self.max_poll_records
        deadline = time.monotonic() + timeout_ms / 1000
        pause = 0.0001
        while True:
            self._refresh_metadata()
            self._heartbeat()
            self._maybe_auto_commit()
            try:
                runs = self._fetch(limit)
            except (TopicNotFoundError, PartitionNotFoundError):
                # deleted, re-created or grown since the last look: look now (raises
                # TopicNotFoundError if a topic read is gone), then fetch again
                self._refresh_metadata(force=True)
                runs = self._fetch(limit)
            if runs or time.monotonic() >= deadline:
                return runs
            time.sleep(pause)
            pause = min(pause * 2, 0.002)

    def _fetch(self, limit: int) -> list[Run]:
        """Up to ``limit`` records from the positions on, a run per partition."""
        out: list[Run] = []
        count = 0
        tps = [
            tp for tp in self._assigned
            if tp not in self._paused and tp.partition < self._counts.get(tp.topic, 0)
        ]  # a re-created topic may have fewer partitions than an assign() named
        n = len(tps)
        for i in range(n):
            if count >= limit:
                break
            tp = tps[(self._next_partition + i) % n]
            position = self.position(tp)
            buffered = self._buffers.get(tp)
            if (
                buffered is None
                or buffered[1] >= len(buffered[0])
                or buffered[0][buffered[1]].offset != position  # after a seek or reset
            ):
                plog = self._store.topic(tp.topic).partition(tp.partition)
                try:
                    records = plog.read_records(
                        position,
                        max(limit - count, FETCH_MAX_RECORDS),
                        self.fetch_max_bytes,
                        record_type=ConsumerRecord,
                        topic_partition=tp,
                    )
                except OffsetOutOfRangeError:
                    self._positions[tp] = self._reset(tp)
                    continue
                if not records:
                    self._buffers.pop(tp, None)
                    continue
                buffered = self._buffers[tp] = [records, 0]
            records, start = buffered
            taken = records[start : start + limit - count]
            buffered[1] = start + len(taken)
            out.append((tp, taken))
            count += len(taken)
        if n:
            self._next_partition = (self._next_partition + 1) % n
        return out

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records one at a time. Each record counts as handed out when it is yielded, so
        ``commit()`` in the loop body commits up to and including it, never the records a
        fetch read ahead. If the loop body raises, its record stays in flight, and leaving
        a ``with`` block by that exception does not count it as consumed."""
        limit = self.consumer_timeout_ms
        idle_since = time.monotonic()
        while not self._closed:
            wait_ms = 100
            if limit is not None:
                left = limit - (time.monotonic() - idle_since) * 1000
                if left <= 0:
                    return
                wait_ms = min(wait_ms, max(1, int(left)))
            runs = self._poll_runs(wait_ms, None)
            self._fetchable.update(tp for tp, _ in runs)
            for tp, run in runs:
                if not self._may_hand_out(tp):
                    continue
                # The records are handed out by a list iterator (at C speed); how far it
                # has got says which records the application has (see _in_flight),
                # and _end_run stops it when a seek, pause, poll or close comes between.
                it = iter(run)
                self._run = (tp, run, it)
                yield from it
                if self._run is not None and self._run[2] is it:
                    # the loop body came back after the run's last record: handled
                    self._positions[tp] = run[-1].offset + 1
                    self._run = None
            if runs:
                idle_since = time.monotonic()  # idle time counts from the last hand-out

    def _may_hand_out(self, tp: TopicPartition) -> bool:
        """Whether records fetched for iteration from ``tp`` may still be handed out: not
        once it was sought, paused or revoked, or the consumer polled or closed."""
        return (
            not self._closed
            and tp in self._fetchable
            and tp not in self._paused
            and tp in self._assigned
        )

    def _in_flight(self) -> tuple[TopicPartition, ConsumerRecord] | None:
        """The last record handed out by iteration, if the application has not come back
        for the next one yet (it may be handling it still)."""
        if self._run is not None:
            tp, run, it = self._run
            index = len(run) - it.__length_hint__() - 1
            return (tp, run[index]) if index >= 0 else None
        if self._async_in_flight is not None:
            record = self._async_in_flight
            return TopicPartition(record.topic, record.partition), record
        return None

    def _settle(self) -> None:
        """Write the position after the last record handed out into ``_positions``."""
        found = self._in_flight()
        if found is not None:
            self._positions[found[0]] = found[1].offset + 1

    def _end_run(self, *tps: TopicPartition) -> None:
        """Settle the position, and hand out nothing more of the records iteration
        fetched from ``tps`` (every partition if none are named)."""
        self._settle()
        if tps:
            self._fetchable.difference_update(tps)
        else:
            self._fetchable.clear()
        if self._run is not None and (not tps or self._run[0] in tps):
            _, run, it = self._run
            it.__setstate__(len(run))  # exhausted: ``yield from`` ends at the next step
            self._run = None
        record = self._async_in_flight
        if record is not None and (
            not tps or TopicPartition(record.topic, record.partition) in tps
        ):
            self._async_in_flight = None

    def _hand_out(self, record: ConsumerRecord) -> bool:
        """For the asyncio twin, one record at a time: whether ``record`` (fetched by
        :meth:`_poll_runs`) may be handed out; if so it becomes the record in flight."""
        tp = TopicPartition(record.topic, record.partition)
        if not self._may_hand_out(tp):
            return False
        self._settle()
        self._positions[tp] = record.offset + 1
        self._async_in_flight = record
        return True

    def pause(self, *tps: TopicPartition) -> None:
        paused = [TopicPartition(*tp) for tp in tps]
        self._end_run(*paused)
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
            CommitFailedError: a partition is not (any longer) this member's.
        """
        self._check_open()
        if self._offsets is None or self.group_id is None:
            raise InvalidConfigError("commit needs a group_id")
        if offsets is None:
            self._settle()
            chosen = {tp: (p, metadata) for tp, p in self._positions.items()}
        else:
            chosen = {
                TopicPartition(*tp): (v if isinstance(v, tuple) else (v, metadata))
                for tp, v in offsets.items()
            }
        if self._ownership is not None:
            foreign = [tp for tp in chosen if tp not in self._ownership]
            if foreign:
                raise CommitFailedError(
                    f"cannot commit {', '.join(f'{t}-{p}' for t, p in foreign)} for group "
                    f"{self.group_id!r}: this member does not own them in generation "
                    f"{self._generation} (they were reassigned in a rebalance)"
                )
        self._offsets.commit(self.group_id, chosen, self._topic_ids(chosen))
        self._last_commit = time.monotonic()

    def _topic_ids(self, tps: Iterable[TopicPartition]) -> dict[str, str | None]:
        return {t: self._store.topic(t).topic_id for t in {tp.topic for tp in tps}}

    def _commit_positions(self, tps: Iterable[TopicPartition]) -> None:
        if self._offsets is None or self.group_id is None:
            return
        self._settle()
        chosen = {tp: (self._positions[tp], "") for tp in tps if tp in self._positions}
        if chosen:
            self._offsets.commit(self.group_id, chosen, self._topic_ids(chosen))

    def _maybe_auto_commit(self) -> None:
        if (
            self.enable_auto_commit
            and (time.monotonic() - self._last_commit) * 1000 >= self.auto_commit_interval_ms
        ):
            self._commit_positions(list(self._assigned))
            self._last_commit = time.monotonic()

    def committed(self, tp: TopicPartition | tuple[str, int]) -> int | None:
        """The group's committed offset for ``tp`` (None if none)."""
        if self._offsets is None or self.group_id is None:
            return None
        tp = TopicPartition(*tp)
        found = self._offsets.committed(self.group_id, tp)
        if found is None or found.topic_id != self._store.topic(tp.topic).topic_id:
            return None
        return found.offset

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("consumer is closed")

    def close(self) -> None:
        """Commit (with auto-commit), leave the group and release partitions. Idempotent."""
        self._close()

    def _close(self, *, failed: bool = False) -> None:
        if self._closed:
            return
        found = self._in_flight()
        if failed and found is not None:
            # an exception escaped while the application handled this record: it was not
            # consumed, so neither auto-commit nor the next member may skip it
            self._end_run()
            self._positions[found[0]] = found[1].offset
        else:
            self._end_run()  # an iteration in progress hands out nothing more
        try:
            if self._files is None and self.enable_auto_commit:
                self._commit_positions(list(self._assigned))  # assign(): no group files
            if self._files is not None and self._ownership is not None:
                owned = sorted(self._ownership.owned)
                if owned and self.on_revoke is not None:
                    self.on_revoke(owned)
                if self.enable_auto_commit:
                    self._commit_positions(owned)
                self._ownership.give_up_all()
                self._files.change(
                    remove=self.member_id,
                    assignor=self.assignor,
                    partitions=self._partition_counts,
                )
        finally:
            self._closed = True
            if self._member_lock is not None:
                self._member_lock.close()
            if self._files is not None:
                self._files.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._close(failed=exc_type is not None)
