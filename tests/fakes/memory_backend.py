"""An in-memory :class:`~logstore.client.backend.Backend`: the proof that the seam is
complete.

Written from the Protocol's docstrings and Kafka's semantics alone: it imports nothing of
logstore's storage, topics, metadata, store, groups or backends, only the value types,
the errors and the RecordBatch codec (to size batches and to read ``append_batch``'s
bytes). If a client works on :class:`LocalBackend` and on this, it needs nothing but the
seam.

What it models:

* topics with ids (a topic deleted and created again is a new incarnation), partitions
  as lists of batches with offsets and timestamps, a log start offset
  (:meth:`MemoryBackend.delete_records`);
* idempotent appends: a batch whose ``(producer_id, producer_epoch, base_sequence)`` is
  among a producer's last five batches on the partition is answered, not written again;
* fetch budgets (records, bytes with at least one batch) and ``max_wait_ms`` long
  polling on a condition that appends wake;
* committed offsets with the topic id they were committed against, fenced by ``member``;
* Kafka's classic group coordinator: Empty, PreparingRebalance, CompletingRebalance,
  Stable; generations; a rebalance completes once every member rejoined or the slowest
  member's rebalance timeout passed (the silent ones are removed); a member silent for
  its session timeout is removed; static members (``group_instance_id``) fence their
  predecessor. Join and sync never block longer than ``wait_ms``.

Time: ``clock`` gives record timestamps (``now_ms``); ``monotonic`` (seconds) drives the
session and rebalance timeouts, so tests can move either by hand.

What it does not model: transactions (a transactional request raises
InvalidConfigError; ``read_committed`` reads are the same as ``read_uncommitted``, as
on a store no transactional producer wrote to) and share groups.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from logstore.client.backend import PartitionFetch, RecordTuple
from logstore.config import TopicConfig
from logstore.errors import (
    FencedInstanceIdError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InvalidConfigError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    RebalanceInProgressError,
    RecordTooLargeError,
    StoreClosedError,
    TopicExistsError,
    TopicNotFoundError,
    UnknownMemberIdError,
)
from logstore.records import decode_batch_records, encode_batch, scan
from logstore.types import (
    AppendResult,
    Clock,
    CommittedOffset,
    Compression,
    ConsumerRecord,
    FetchResult,
    GroupInfo,
    GroupMember,
    JoinResult,
    MemberInfo,
    OffsetAndTimestamp,
    SystemClock,
    TimestampType,
    TopicMetadata,
    TopicPartition,
)

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024 + 12  # Kafka's max.message.bytes
_PRODUCER_BATCHES_KEPT = 5  # Kafka remembers a producer's last five batches per partition


# --------------------------------------------------------------------------- records


@dataclass
class _Batch:
    base_offset: int
    records: list[ConsumerRecord]
    size: int  # its encoded size: what counts against a fetch's max_bytes

    @property
    def next_offset(self) -> int:
        return self.base_offset + len(self.records)


@dataclass
class _Partition:
    batches: list[_Batch] = field(default_factory=list)
    log_start_offset: int = 0
    log_end_offset: int = 0
    # producer id -> [(epoch, base_sequence, result)], its last batches, oldest first
    producers: dict[int, list[tuple[int, int, AppendResult]]] = field(default_factory=dict)

    def duplicate(self, producer_id: int, epoch: int, sequence: int) -> AppendResult | None:
        for seen_epoch, seen_sequence, result in self.producers.get(producer_id, []):
            if (seen_epoch, seen_sequence) == (epoch, sequence):
                return result
        return None

    def remember(self, producer_id: int, epoch: int, sequence: int, result: AppendResult) -> None:
        kept = self.producers.setdefault(producer_id, [])
        kept.append((epoch, sequence, result))
        del kept[:-_PRODUCER_BATCHES_KEPT]

    def records_from(self, offset: int) -> Iterable[tuple[_Batch, list[ConsumerRecord]]]:
        """Each batch holding records at or after ``offset``, with those records."""
        for batch in self.batches:
            if batch.next_offset > max(offset, self.log_start_offset):
                start = max(offset, self.log_start_offset) - batch.base_offset
                yield batch, batch.records[max(0, start) :]


@dataclass
class _Topic:
    name: str
    topic_id: str
    partitions: list[_Partition]
    config: TopicConfig

    @property
    def max_message_bytes(self) -> int:
        return self.config.max_message_bytes

    def metadata(self) -> TopicMetadata:
        return TopicMetadata(
            self.name, self.topic_id, len(self.partitions), self.config.partitioner,
            self.config.max_message_bytes,
        )


# --------------------------------------------------------------------------- groups


@dataclass
class _Member:
    member_id: str
    group_instance_id: str | None
    protocols: list[tuple[str, bytes]]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    last_seen: float
    generation: int = -1  # the generation it joined last (its JoinResult's)
    assignment: bytes = b""

    def metadata(self, protocol: str) -> bytes:
        return dict(self.protocols).get(protocol, b"")


@dataclass
class _Group:
    name: str
    state: str = "Empty"
    generation: int = 0
    protocol_type: str = ""
    protocol: str = ""
    leader: str | None = None
    members: dict[str, _Member] = field(default_factory=dict)  # in join order
    rejoined: set[str] = field(default_factory=set)  # during PreparingRebalance
    rebalance_deadline: float = 0.0
    instances: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    fenced: set[str] = field(default_factory=set)  # member ids a static successor fenced


class MemoryBackend:
    """The :class:`~logstore.client.backend.Backend` Protocol over Python lists and
    dicts. Thread-safe (one condition guards everything; appends and group changes wake
    the waiters).

    Args:
        clock: record timestamps and commit times (``now_ms``).
        monotonic: seconds for session and rebalance timeouts (``time.monotonic``).
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock or SystemClock()
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._topics: dict[str, _Topic] = {}
        self._offsets: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        self._groups: dict[str, _Group] = {}
        self._next_producer_id = 1000
        self._listeners: list[Callable[[TopicPartition], None]] = []
        self._closed = False

    def now_ms(self) -> int:
        return self._clock.now_ms()

    # ------------------------------------------------------------------ test helpers

    def create_topic(self, name: str, partitions: int = 1, **config: Any) -> TopicMetadata:
        """Create topic ``name`` (a new incarnation: a new topic id)."""
        if partitions < 1:
            raise InvalidConfigError(f"partitions={partitions} must be >= 1")
        cfg = TopicConfig(max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES).replace(
            **config, partitions=partitions
        )
        with self._cond:
            if name in self._topics:
                raise TopicExistsError(f"topic {name!r} already exists")
            topic = _Topic(
                name, uuid.uuid4().hex, [_Partition() for _ in range(partitions)], cfg
            )
            self._topics[name] = topic
            return topic.metadata()

    def delete_topic(self, name: str) -> None:
        """Delete topic ``name`` with its records (committed offsets stay, naming its id)."""
        with self._cond:
            self._topic(name)
            del self._topics[name]
            self._cond.notify_all()

    def add_partitions(self, name: str, total: int) -> TopicMetadata:
        """Grow topic ``name`` to ``total`` partitions."""
        with self._cond:
            topic = self._topic(name)
            if total <= len(topic.partitions):
                raise InvalidConfigError(
                    f"topic {name!r} has {len(topic.partitions)} partitions: {total} is not more"
                )
            topic.partitions += [_Partition() for _ in range(total - len(topic.partitions))]
            topic.config = topic.config.replace(partitions=total)
            return topic.metadata()

    def topic_config(self, name: str) -> TopicConfig:
        with self._cond:
            return self._topic(name).config

    def delete_records(self, tp: TopicPartition, before_offset: int) -> None:
        """Move ``tp``'s log start offset up to ``before_offset`` (Kafka's DeleteRecords)."""
        with self._cond:
            part = self._partition(tp)
            start = min(before_offset, part.log_end_offset)
            part.log_start_offset = max(part.log_start_offset, start)
            part.batches = [b for b in part.batches if b.next_offset > part.log_start_offset]

    # ------------------------------------------------------------------ metadata

    def _topic(self, name: str) -> _Topic:
        if self._closed:
            raise StoreClosedError("the memory backend is closed")
        topic = self._topics.get(name)
        if topic is None:
            raise TopicNotFoundError(f"topic {name!r} does not exist")
        return topic

    def _partition(self, tp: TopicPartition) -> _Partition:
        topic = self._topic(tp.topic)
        if not 0 <= tp.partition < len(topic.partitions):
            raise PartitionNotFoundError(
                f"topic {tp.topic!r} has no partition {tp.partition} (it has partitions "
                f"0..{len(topic.partitions) - 1})"
            )
        return topic.partitions[tp.partition]

    def topic_metadata(self, topic: str) -> TopicMetadata:
        with self._cond:
            return self._topic(topic).metadata()

    def list_topics(self) -> list[str]:
        with self._cond:
            return sorted(name for name in self._topics if not name.startswith("__"))

    # ------------------------------------------------------------------ produce

    def init_producer_id(
        self, transactional_id: str | None = None, transaction_timeout_ms: int = 60_000
    ) -> tuple[int, int]:
        if transactional_id is not None:
            self._no_transactions()
        with self._cond:
            self._next_producer_id += 1
            return self._next_producer_id, 0

    def append(
        self,
        tp: TopicPartition,
        records: Sequence[RecordTuple],
        *,
        topic_id: str | None,
        compression: Compression = Compression.NONE,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
        transactional: bool = False,
    ) -> AppendResult:
        if transactional:
            self._no_transactions()
        if not records:
            raise InvalidRecordError("an append needs at least one record")
        encoded = encode_batch(
            [(ts, key, value, tuple(headers)) for ts, key, value, headers in records],
            compression=compression, producer_id=producer_id,
            producer_epoch=producer_epoch, base_sequence=base_sequence,
        )
        with self._cond:
            topic = self._topic(tp.topic)
            if topic.topic_id != topic_id:
                raise TopicNotFoundError(
                    f"topic {tp.topic!r} was deleted (and maybe created again) since the "
                    f"records were sent to it (send them again)"
                )
            part = self._partition(tp)
            if len(encoded) > topic.max_message_bytes:
                raise RecordTooLargeError(len(encoded), topic.max_message_bytes)
            rows = [(ts, key, value, tuple(headers)) for ts, key, value, headers in records]
            return self._write(tp, part, rows, len(encoded),
                               producer_id, producer_epoch, base_sequence)

    def _write(
        self,
        tp: TopicPartition,
        part: _Partition,
        rows: Sequence[RecordTuple],
        size: int,
        producer_id: int,
        producer_epoch: int,
        base_sequence: int,
    ) -> AppendResult:
        """Append one batch of ``rows`` unless it is a retried duplicate (lock held)."""
        idempotent = producer_id >= 0 and base_sequence >= 0
        if idempotent:
            seen = part.duplicate(producer_id, producer_epoch, base_sequence)
            if seen is not None:
                return seen
        base = part.log_end_offset
        batch = _Batch(base, [
            ConsumerRecord(tp.topic, tp.partition, base + i, ts, key, value, headers)
            for i, (ts, key, value, headers) in enumerate(rows)
        ], size)
        part.batches.append(batch)
        part.log_end_offset = batch.next_offset
        # log_append_time: when it was appended, as LocalBackend answers (Kafka's
        # Produce answers -1 unless the topic uses LogAppendTime)
        result = AppendResult(base, batch.next_offset - 1, self.now_ms(), len(rows))
        if idempotent:
            part.remember(producer_id, producer_epoch, base_sequence, result)
        self._cond.notify_all()
        for listener in self._listeners:
            listener(tp)
        return result

    def append_batch(self, tp: TopicPartition, batch: bytes) -> AppendResult:
        headers = list(scan(batch, verify=True))  # CRC and header checks
        if not headers or headers[-1].position + headers[-1].size != len(batch):
            raise InvalidRecordError(f"{len(batch)} bytes are not whole RecordBatch v2 batches")
        with self._cond:
            topic = self._topic(tp.topic)
            part = self._partition(tp)
            first: AppendResult | None = None
            last: AppendResult | None = None
            for header in headers:
                if header.size > topic.max_message_bytes:
                    raise RecordTooLargeError(header.size, topic.max_message_bytes)
                decoded = decode_batch_records(batch, header, verify=False)
                if header.timestamp_type is TimestampType.LOG_APPEND_TIME:
                    decoded = [r._replace(timestamp=header.max_timestamp) for r in decoded]
                rows = [(r.timestamp, r.key, r.value, r.headers) for r in decoded]
                last = self._write(tp, part, rows, header.size, header.producer_id,
                                   header.producer_epoch, header.base_sequence)
                first = first or last
            assert first is not None and last is not None
            count = last.last_offset - first.base_offset + 1
            return AppendResult(first.base_offset, last.last_offset, last.log_append_time, count)

    def _no_transactions(self) -> NoReturn:
        raise InvalidConfigError("MemoryBackend models no transactions")

    def add_partitions_to_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int,
        tps: Sequence[TopicPartition],
    ) -> None:
        self._no_transactions()

    def txn_offset_commit(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group: str,
        offsets: Mapping[TopicPartition, tuple[int, str]], *, member: GroupMember | None = None,
    ) -> None:
        self._no_transactions()

    def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, *, commit: bool
    ) -> None:
        self._no_transactions()

    # ------------------------------------------------------------------ fetch

    def fetch(
        self,
        positions: Mapping[TopicPartition, int],
        *,
        max_records: int,
        max_bytes: int,
        max_wait_ms: int = 0,
        member: GroupMember | None = None,
        isolation_level: str = "read_uncommitted",
    ) -> dict[TopicPartition, PartitionFetch]:
        # no transactions: every record is committed, the LSO is the high watermark
        deadline = self._monotonic() + max_wait_ms / 1000
        with self._cond:
            while True:
                if member is not None:
                    self._check_member(member)
                out = self._fetch_once(positions, max_records, max_bytes)
                left = deadline - self._monotonic()
                if out or left <= 0:
                    return out
                self._cond.wait(left)

    def _fetch_once(
        self, positions: Mapping[TopicPartition, int], max_records: int, max_bytes: int
    ) -> dict[TopicPartition, PartitionFetch]:
        """Partitions with records (or an error) from their positions (lock held)."""
        out: dict[TopicPartition, PartitionFetch] = {}
        for tp, offset in positions.items():
            part = self._partition(tp)
            if not part.log_start_offset <= offset <= part.log_end_offset:
                out[tp] = OffsetOutOfRangeError(
                    offset, part.log_start_offset, part.log_end_offset
                )
                continue
            found: list[ConsumerRecord] = []
            size = 0
            for batch, records in part.records_from(offset):
                if found and (size + batch.size > max_bytes or len(found) >= max_records):
                    break
                found += records[: max_records - len(found)]
                size += batch.size
            if found:
                out[tp] = found
        return out

    def fetch_batches(
        self, tp: TopicPartition, offset: int, max_bytes: int,
        isolation_level: str = "read_uncommitted",
    ) -> FetchResult:
        with self._cond:
            part = self._partition(tp)
            if not part.log_start_offset <= offset <= part.log_end_offset:
                raise OffsetOutOfRangeError(offset, part.log_start_offset, part.log_end_offset)
            chunks: list[bytes] = []
            size = 0
            for batch, _ in part.records_from(offset):
                rows = [(r.timestamp, r.key, r.value, tuple(r.headers)) for r in batch.records]
                data = encode_batch(rows, base_offset=batch.base_offset)
                if chunks and size + len(data) > max_bytes:
                    chunks.append(data[: max_bytes - size])  # a cut batch, as Kafka sends
                    break
                chunks.append(data)
                size += len(data)
            return FetchResult(b"".join(chunks), part.log_end_offset, part.log_start_offset)

    def add_append_listener(self, listener: Callable[[TopicPartition], None]) -> bool:
        with self._cond:
            self._listeners.append(listener)
        return True

    def watch_appends(self, tps: Iterable[TopicPartition]) -> None:
        """Nothing to do: every append goes through this object."""

    def offset_range(
        self, tp: TopicPartition, isolation_level: str = "read_uncommitted"
    ) -> tuple[int, int]:
        with self._cond:
            part = self._partition(tp)
            return part.log_start_offset, part.log_end_offset

    def offset_for_timestamp(
        self, tp: TopicPartition, timestamp: int
    ) -> OffsetAndTimestamp | None:
        with self._cond:
            part = self._partition(tp)
            for _, records in part.records_from(part.log_start_offset):
                for record in records:
                    if record.timestamp >= timestamp:
                        return OffsetAndTimestamp(record.offset, record.timestamp)
            return None

    # ------------------------------------------------------------------ offsets

    def committed_offsets(
        self, group: str, tps: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        with self._cond:
            offsets = self._offsets.get(group, {})
            if tps is None:
                return dict(offsets)
            return {tp: offsets[tp] for tp in tps if tp in offsets}

    def commit_offsets(
        self,
        group: str,
        offsets: Mapping[TopicPartition, tuple[int, str]],
        *,
        member: GroupMember | None = None,
    ) -> None:
        with self._cond:
            if member is not None:
                self._check_member(member)
            ids = {tp.topic: self._topic(tp.topic).topic_id for tp in offsets}
            now = self.now_ms()
            stored = self._offsets.setdefault(group, {})
            for tp, (offset, metadata) in offsets.items():
                stored[tp] = CommittedOffset(offset, metadata, now, ids[tp.topic])

    def delete_offsets(self, group: str, tps: Iterable[TopicPartition]) -> None:
        with self._cond:
            stored = self._offsets.get(group, {})
            for tp in tps:
                stored.pop(tp, None)

    # ------------------------------------------------------------------ groups

    def _group(self, name: str) -> _Group:
        """Group ``name`` after removing the members whose deadlines passed (lock held)."""
        group = self._groups.setdefault(name, _Group(name))
        now = self._monotonic()
        expired = [
            m.member_id for m in group.members.values()
            if now - m.last_seen > m.session_timeout_ms / 1000
            and not (group.state == "PreparingRebalance" and m.member_id in group.rejoined)
        ]
        for member_id in expired:
            self._remove(group, member_id)
        self._try_complete(group)
        return group

    def _remove(self, group: _Group, member_id: str) -> None:
        member = group.members.pop(member_id)
        group.rejoined.discard(member_id)
        if member.group_instance_id is not None:
            group.instances.pop(member.group_instance_id, None)
        if group.leader == member_id:
            group.leader = None
        self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Start a rebalance (or carry on with the one running)."""
        if group.state != "PreparingRebalance":
            group.state = "PreparingRebalance"
            group.rejoined = set()
            timeout = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
            group.rebalance_deadline = self._monotonic() + timeout / 1000
        self._cond.notify_all()

    def _try_complete(self, group: _Group) -> None:
        """Complete the rebalance once every member rejoined or its time is up."""
        if group.state != "PreparingRebalance":
            return
        if set(group.members) - group.rejoined:
            if self._monotonic() < group.rebalance_deadline:
                return
            for member_id in set(group.members) - group.rejoined:  # silent: removed
                member = group.members.pop(member_id)
                if member.group_instance_id is not None:
                    group.instances.pop(member.group_instance_id, None)
        group.generation += 1
        group.rejoined = set()
        if not group.members:
            group.state, group.protocol, group.leader = "Empty", "", None
            self._cond.notify_all()
            return
        group.protocol = _vote(list(group.members.values()))
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        for member in group.members.values():
            member.generation = group.generation
            member.assignment = b""
        group.state = "CompletingRebalance"
        self._cond.notify_all()

    def _known(self, group: _Group, member_id: str) -> _Member:
        if member_id in group.fenced:
            raise FencedInstanceIdError(
                f"member {member_id!r} of group {group.name!r} was replaced by a new member "
                f"with its group_instance_id", group.name,
            )
        member = group.members.get(member_id)
        if member is None:
            raise UnknownMemberIdError(
                f"member {member_id!r} is not in group {group.name!r} (it left or was "
                f"removed; rejoin)", group.name,
            )
        return member

    def _check_generation(self, group: _Group, generation: int) -> None:
        if generation != group.generation:
            raise IllegalGenerationError(
                f"generation {generation} of group {group.name!r} is over (it is in "
                f"generation {group.generation}; rejoin)", group.name,
            )

    def _check_member(self, member: GroupMember) -> None:
        group = self._group(member.group)
        self._known(group, member.member_id)
        self._check_generation(group, member.generation)

    def join_group(
        self,
        group: str,
        member_id: str,
        *,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        group_instance_id: str | None = None,
        wait_ms: int = 0,
    ) -> JoinResult | None:
        deadline = self._monotonic() + wait_ms / 1000
        with self._cond:
            g = self._group(group)
            member = self._join(g, member_id, protocol_type, list(protocols),
                                session_timeout_ms, rebalance_timeout_ms, group_instance_id)
            while True:
                self._try_complete(g)
                if g.state != "PreparingRebalance" and member.generation == g.generation:
                    if member.member_id not in g.members:
                        raise UnknownMemberIdError(
                            f"member {member_id!r} was removed from group {group!r}", group
                        )
                    leader = g.leader == member.member_id
                    return JoinResult(
                        g.generation, g.protocol, g.leader or "", member.member_id,
                        [(m.member_id, m.metadata(g.protocol)) for m in g.members.values()]
                        if leader else [],
                    )
                left = deadline - self._monotonic()
                if left <= 0:
                    return None
                if g.state == "PreparingRebalance":  # wake when its time is up, too
                    left = min(left, max(0.001, g.rebalance_deadline - self._monotonic()))
                self._cond.wait(left)
                member.last_seen = self._monotonic()

    def _join(
        self,
        g: _Group,
        member_id: str,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        group_instance_id: str | None,
    ) -> _Member:
        """Add or update the member; start a rebalance unless nothing changed."""
        if member_id in g.fenced:
            self._known(g, member_id)  # raises FencedInstanceIdError
        if g.members and protocol_type != g.protocol_type:
            raise InvalidConfigError(
                f"group {g.name!r} uses protocol type {g.protocol_type!r}, not "
                f"{protocol_type!r}"
            )
        others = [m for m in g.members.values() if m.member_id != member_id]
        names = {name for name, _ in protocols}
        if not protocols or any(not names & {n for n, _ in m.protocols} for m in others):
            raise InvalidConfigError(
                f"member {member_id!r} shares no protocol with the members of group "
                f"{g.name!r} (it offers {sorted(names)})"
            )
        member_id = member_id or f"{group_instance_id or 'member'}-{uuid.uuid4().hex}"
        if group_instance_id is not None:
            predecessor = g.instances.get(group_instance_id)
            if predecessor is not None and predecessor != member_id:
                g.fenced.add(predecessor)
                self._remove(g, predecessor)
            g.instances[group_instance_id] = member_id
        g.protocol_type = protocol_type
        member = g.members.get(member_id)
        now = self._monotonic()
        if member is not None and member.protocols == protocols and g.state != "Stable":
            member.last_seen = now
            if g.state == "PreparingRebalance":
                g.rejoined.add(member_id)
            return member  # rejoining, or not synced yet: the current generation
        # a new member, new protocols, or a member that synced and rejoins (it wants a
        # rebalance: a topic grew, or it revoked partitions): rebalance
        if member is None:
            member = g.members[member_id] = _Member(
                member_id, group_instance_id, protocols, session_timeout_ms,
                rebalance_timeout_ms, now,
            )
        member.protocols = protocols
        member.session_timeout_ms = session_timeout_ms
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.last_seen = now
        self._rebalance(g)
        g.rejoined.add(member_id)
        return member

    def sync_group(
        self,
        group: str,
        member_id: str,
        generation: int,
        assignments: Mapping[str, bytes],
        *,
        wait_ms: int = 0,
    ) -> bytes | None:
        deadline = self._monotonic() + wait_ms / 1000
        with self._cond:
            g = self._group(group)
            while True:
                member = self._known(g, member_id)
                if g.state == "PreparingRebalance":
                    raise RebalanceInProgressError(
                        f"group {group!r} is rebalancing (rejoin)", group
                    )
                self._check_generation(g, generation)
                member.last_seen = self._monotonic()
                if g.state == "CompletingRebalance" and g.leader == member_id and assignments:
                    for other in g.members.values():
                        other.assignment = assignments.get(other.member_id, b"")
                    g.state = "Stable"
                    self._cond.notify_all()
                if g.state == "Stable":
                    return member.assignment
                left = deadline - self._monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
                g = self._group(group)

    def heartbeat(self, group: str, member_id: str, generation: int) -> None:
        with self._cond:
            g = self._group(group)
            member = self._known(g, member_id)
            member.last_seen = self._monotonic()
            if g.state == "PreparingRebalance":
                raise RebalanceInProgressError(f"group {group!r} is rebalancing (rejoin)", group)
            self._check_generation(g, generation)

    def group_changed(self, group: str, member_id: str, generation: int) -> bool:
        with self._cond:
            g = self._groups.get(group)
            return (
                g is None
                or g.state != "Stable"
                or g.generation != generation
                or member_id not in g.members
            )

    def leave_group(self, group: str, member_id: str) -> None:
        with self._cond:
            g = self._group(group)
            if member_id in g.members:
                self._remove(g, member_id)
                self._try_complete(g)

    def describe_group(self, group: str) -> GroupInfo:
        with self._cond:
            if group not in self._groups and group not in self._offsets:
                return GroupInfo(group, "Dead", "", "", 0, None, [])
            g = self._group(group)
            members = [
                MemberInfo(m.member_id, m.group_instance_id,
                           m.metadata(g.protocol) if g.protocol else m.protocols[0][1],
                           m.assignment)
                for m in g.members.values()
            ]
            return GroupInfo(group, g.state, g.protocol_type, g.protocol, g.generation,
                             g.leader, members)

    def list_groups(self) -> list[str]:
        with self._cond:
            names = set(self._groups) | set(self._offsets)
            return sorted(
                n for n in names if self._offsets.get(n) or self._group(n).members
            )

    def delete_group(self, group: str) -> None:
        with self._cond:
            if group in self._groups and self._group(group).members:
                raise GroupNotEmptyError(
                    f"group {group!r} has live members; stop them before deleting it", group
                )
            self._groups.pop(group, None)
            self._offsets.pop(group, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _vote(members: list[_Member]) -> str:
    """The protocol every member supports that most members prefer (Kafka's vote)."""
    common = set.intersection(*({n for n, _ in m.protocols} for m in members))
    votes: dict[str, int] = {}
    for m in members:
        choice = next(n for n, _ in m.protocols if n in common)
        votes[choice] = votes.get(choice, 0) + 1
    return max(votes, key=lambda n: votes[n])
