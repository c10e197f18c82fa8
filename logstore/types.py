"""Plain value types shared by every layer. No I/O happens here.

``Record`` and ``RecordMetadata`` are ``NamedTuple``s rather than frozen dataclasses: the
decoder builds one per record on the hot read path, and ``tuple.__new__`` is several
times cheaper than a frozen dataclass's ``__init__`` (measured in benchmarks/).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from logstore.errors import InvalidConfigError

Header = tuple[str, "bytes | None"]
"""One record header: a UTF-8 key and a value that may be null."""

HeadersArg = Mapping[str, "bytes | None"] | Sequence[Header] | None
"""Headers as callers pass them: a mapping, ``(key, value)`` pairs, or None."""


class Compression(enum.IntEnum):
    """The compression codec of a record batch (attribute bits 0-2)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def parse(cls, value: str | int | Compression) -> Compression:
        """Return the codec named by ``value`` ("gzip", 1, Compression.GZIP ...)."""
        if isinstance(value, Compression):
            return value
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return cls(value)
            if isinstance(value, str):
                return cls[value.upper()]
        except (KeyError, ValueError):
            pass
        names = ", ".join(c.name.lower() for c in cls)
        raise InvalidConfigError(f"unknown compression {value!r} (use one of: {names})")


class TimestampType(enum.IntEnum):
    """Whose clock a record's timestamp comes from (attribute bit 3)."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class Record(NamedTuple):
    """One decoded record, as stored: its offset, timestamp (ms), key, value and headers."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header] = ()


class BatchHeader(NamedTuple):
    """The 61-byte header of a RecordBatch v2, plus where the batch starts in its buffer."""

    position: int
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Total bytes of the batch, header included."""
        return self.batch_length + 12

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> Compression:
        return Compression(self.attributes & 0x07)

    @property
    def timestamp_type(self) -> TimestampType:
        return TimestampType((self.attributes >> 3) & 1)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & 0x10)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & 0x20)


class RecordMetadata(NamedTuple):
    """Where an appended record landed."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class AppendResult(NamedTuple):
    """What one append to a partition log did: the offsets it assigned and when."""

    base_offset: int
    last_offset: int
    log_append_time: int
    records_count: int
    log_start_offset: int = -1
    """The partition's log start offset as the append left it (-1: not known), which
    Kafka's Produce answer carries."""
    offsets: Sequence[int] | None = None
    """Each record's offset when they are not ``base_offset, base_offset + 1, ...``
    (a Kafka cluster's producer may send one append in several requests, between other
    producers' records); None: contiguous."""


class FetchResult(NamedTuple):
    """Whole batches read from a partition log, as stored, plus the log's bounds."""

    records: bytes
    high_watermark: int
    log_start_offset: int
    last_stable_offset: int = -1
    """For a ``read_committed`` read: the last stable offset (else -1: not asked)."""
    aborted: Sequence[tuple[int, int]] = ()
    """For a ``read_committed`` read: ``(producer_id, first_offset)`` of the aborted
    transactions whose batches ``records`` holds (Fetch's AbortedTransactions)."""


class Clock(Protocol):
    """Where the store gets the time (a seam: tests pass a fake clock)."""

    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock milliseconds since the epoch."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class TopicPartition(NamedTuple):
    """A partition of a topic."""

    topic: str
    partition: int


class ConsumerRecord(NamedTuple):
    """A record as a consumer receives it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header]


class OffsetAndTimestamp(NamedTuple):
    """The first record at or after a timestamp (Kafka's ListOffsets answer)."""

    offset: int
    timestamp: int


class CommittedOffset(NamedTuple):
    """A consumer group's committed offset for one partition."""

    offset: int
    metadata: str
    commit_timestamp: int
    topic_id: str | None = None
    """The topic incarnation it was committed against (None: before topic ids)."""


class TopicMetadata(NamedTuple):
    """What clients know of a topic: its incarnation, partition count and config."""

    name: str
    topic_id: str | None
    """The incarnation (Kafka's topic id); a topic deleted and created again has a new
    one. None for a topic created before ids existed."""
    partitions: int
    partitioner: str
    """How keys map to partitions: ``"murmur3"`` (logstore's default) or ``"murmur2"``
    (Kafka's Java client's)."""
    max_message_bytes: int
    """The largest record batch the topic accepts."""
    keyed_only: bool = False
    """Records need a key (a compacted topic)."""


class GroupMember(NamedTuple):
    """Who sends a fetch or commit on behalf of a group: the coordinator refuses it when
    ``generation`` is not the group's current one or the member is gone (fencing)."""

    group: str
    member_id: str
    generation: int


class JoinResult(NamedTuple):
    """A completed join (Kafka's JoinGroup response): the new generation, the protocol
    chosen among those every member supports, and, for the leader only, every member's
    metadata to compute the assignment from."""

    generation: int
    protocol: str
    leader: str
    member_id: str
    members: Sequence[tuple[str, bytes]]
    """``(member_id, metadata)`` of every member, in join order, for the leader; empty
    for the others."""


class MemberInfo(NamedTuple):
    member_id: str
    group_instance_id: str | None
    metadata: bytes
    assignment: bytes


class GroupInfo(NamedTuple):
    """A group as its coordinator sees it (Kafka's DescribeGroups)."""

    group: str
    state: str
    """Kafka's names: "Empty", "PreparingRebalance", "CompletingRebalance", "Stable" or
    "Dead" (no such group)."""
    protocol_type: str
    protocol: str
    generation: int
    leader: str | None
    members: Sequence[MemberInfo]
