"""Topic configuration: defaults, validation and (de)serialisation. No I/O happens here.

Names and meanings follow Kafka's topic configs (``segment.bytes`` -> ``segment_bytes``).
Where a default differs from Kafka's, the reason is given next to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from logstore.errors import InvalidConfigError

FlushPolicy = Literal["always", "interval", "never"]
FLUSH_POLICIES: tuple[str, ...] = ("always", "interval", "never")

DEFAULT_PARTITIONS = 1
MAX_PARTITIONS = 100_000
"""No topic config holds more partitions than this."""
DEFAULT_MAX_PARTITIONS = 10_000
"""A store refuses a topic with more partitions than its ``max_partitions`` (this by
default; up to :data:`MAX_PARTITIONS`): every partition is a directory of five files, and a
mistyped count would otherwise fill the disk with them."""
DEFAULT_SEGMENT_BYTES = 1 << 30  # Kafka's segment.bytes
DEFAULT_SEGMENT_MS = 7 * 24 * 3600 * 1000  # Kafka's segment.ms
# Kafka deletes after 7 days; an embedded store's log is often the user's only copy of
# history (replay is a first-class use), so logstore keeps everything unless asked.
DEFAULT_RETENTION_MS = -1
DEFAULT_RETENTION_BYTES = -1
# Kafka leaves fsync to the OS and relies on replication; a single-node store has no
# replicas, so the default is an fsync before every append returns (SQLite's FULL).
DEFAULT_FLUSH: FlushPolicy = "always"
DEFAULT_FLUSH_MS = 1000
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's max.message.bytes (1 MiB + 12)
DEFAULT_INDEX_INTERVAL_BYTES = 4096
DEFAULT_SEGMENT_INDEX_BYTES = 10 * 1024 * 1024
MIN_SEGMENT_BYTES = 14  # Kafka's lower bound: one batch header's worth of log overhead
INT32_MAX = 2**31 - 1

CLEANUP_POLICIES = ("delete", "compact", "compact,delete")
"""Kafka's ``cleanup.policy`` values (a list in Kafka: ``delete,compact`` is accepted and
stored as ``compact,delete``)."""
DEFAULT_MIN_CLEANABLE_DIRTY_RATIO = 0.5  # Kafka's min.cleanable.dirty.ratio
DEFAULT_DELETE_RETENTION_MS = 24 * 3600 * 1000  # Kafka's delete.retention.ms (1 day)
MAX_COMPACTION_LAG_NONE = 2**63 - 1  # Kafka's max.compaction.lag.ms default (Long.MAX_VALUE)
PARTITIONERS = ("murmur3", "murmur2")
READ_UNCOMMITTED = "read_uncommitted"
READ_COMMITTED = "read_committed"
ISOLATION_LEVELS = (READ_UNCOMMITTED, READ_COMMITTED)
"""A consumer's ``isolation_level`` (Kafka's ``isolation.level``): ``read_committed``
reads stop at the last stable offset and skip aborted transactions' records."""
DEFAULT_TRANSACTION_TIMEOUT_MS = 60_000
"""The Java producer's ``transaction.timeout.ms`` default."""


@dataclasses.dataclass(frozen=True, slots=True)
class TopicConfig:
    """Per-topic settings. Every field has Kafka's meaning; see the README's config table.

    Attributes:
        partitions: number of partitions (only ever grows, via ``add_partitions``).
        segment_bytes: roll to a new segment before one would grow past this size.
        segment_ms: roll once the active segment's first record is this old.
        retention_ms: delete whole old segments whose newest record is older; -1 keeps all.
        retention_bytes: delete oldest segments while a partition is larger; -1 = no limit.
        flush: "always" (fsync before an append returns: survives power loss), "interval"
            (fsync at most every ``flush_ms``: survives a process crash) or "never".
        flush_ms: the interval of the "interval" policy.
        max_message_bytes: the largest record batch an append accepts.
        index_interval_bytes: bytes of log between two sparse index entries.
        segment_index_bytes: an index file may hold this many bytes; a full index rolls.
        cleanup_policy: "delete" (retention by time and size), "compact" (keep the latest
            record per key: :mod:`logstore.storage.compaction`) or "compact,delete" (both).
        min_cleanable_dirty_ratio: compact once the uncleaned share of the cleanable
            bytes exceeds this (0..1).
        min_compaction_lag_ms: a record stays uncompacted at least this long (a segment is
            cleaned only once its newest record is this old).
        max_compaction_lag_ms: a record stays uncompacted at most about this long: a log
            whose oldest uncleaned segment is older is compacted whatever its dirty ratio.
        delete_retention_ms: how long a tombstone (null value) is kept once it is
            old enough to be cleaned, so readers that are behind still see the delete.
        partitioner: how keys map to partitions: "murmur3" (mmh3) or "murmur2" (Kafka's
            Java client, for the same placement as a Kafka cluster). Part of the topic so
            every writing process agrees on where a key goes.
    """

    partitions: int = DEFAULT_PARTITIONS
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    segment_ms: int = DEFAULT_SEGMENT_MS
    retention_ms: int = DEFAULT_RETENTION_MS
    retention_bytes: int = DEFAULT_RETENTION_BYTES
    flush: FlushPolicy = DEFAULT_FLUSH
    flush_ms: int = DEFAULT_FLUSH_MS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    index_interval_bytes: int = DEFAULT_INDEX_INTERVAL_BYTES
    segment_index_bytes: int = DEFAULT_SEGMENT_INDEX_BYTES
    cleanup_policy: str = "delete"
    partitioner: str = "murmur3"
    min_cleanable_dirty_ratio: float = DEFAULT_MIN_CLEANABLE_DIRTY_RATIO
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = MAX_COMPACTION_LAG_NONE
    delete_retention_ms: int = DEFAULT_DELETE_RETENTION_MS

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            expected: type = (
                str if field.name in ("flush", "cleanup_policy", "partitioner")
                else float if field.name == "min_cleanable_dirty_ratio" else int
            )
            if expected is float and type(value) is int:
                object.__setattr__(self, field.name, float(value))
                continue
            if type(value) is not expected:  # bool is an int subclass: refuse it too
                raise InvalidConfigError(
                    f"topic config {field.name}={value!r} must be {expected.__name__}"
                )
        _check_range("partitions", self.partitions, 1, MAX_PARTITIONS)
        _check_range("segment_bytes", self.segment_bytes, MIN_SEGMENT_BYTES, INT32_MAX)
        _check_range("segment_ms", self.segment_ms, 1, 2**63 - 1)
        _check_unlimited("retention_ms", self.retention_ms)
        _check_unlimited("retention_bytes", self.retention_bytes)
        if self.flush not in FLUSH_POLICIES:
            raise InvalidConfigError(
                f"topic config flush={self.flush!r} is not a flush policy "
                f"(use one of: {', '.join(FLUSH_POLICIES)})"
            )
        _check_range("flush_ms", self.flush_ms, 0, 2**63 - 1)
        _check_range("max_message_bytes", self.max_message_bytes, 61, INT32_MAX)
        _check_range("index_interval_bytes", self.index_interval_bytes, 0, INT32_MAX)
        _check_range("segment_index_bytes", self.segment_index_bytes, 12, INT32_MAX)
        if self.partitioner not in PARTITIONERS:
            raise InvalidConfigError(
                f"topic config partitioner={self.partitioner!r} is unknown "
                f"(use one of: {', '.join(PARTITIONERS)})"
            )
        policy = ",".join(sorted(p.strip() for p in self.cleanup_policy.split(",")))
        if policy not in CLEANUP_POLICIES:
            raise InvalidConfigError(
                f"topic config cleanup_policy={self.cleanup_policy!r} is not a cleanup "
                f"policy (use one of: {', '.join(CLEANUP_POLICIES)})"
            )
        object.__setattr__(self, "cleanup_policy", policy)
        ratio = self.min_cleanable_dirty_ratio
        if not 0.0 <= ratio <= 1.0:  # NaN fails this too
            raise InvalidConfigError(
                f"topic config min_cleanable_dirty_ratio={ratio} is out of range (use a "
                f"value in [0, 1])"
            )
        _check_range("min_compaction_lag_ms", self.min_compaction_lag_ms, 0, 2**63 - 1)
        _check_range("max_compaction_lag_ms", self.max_compaction_lag_ms, 1, 2**63 - 1)
        _check_range("delete_retention_ms", self.delete_retention_ms, 0, 2**63 - 1)

    @property
    def compact(self) -> bool:
        """Whether the log cleaner compacts the topic ("compact" or "compact,delete")."""
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        """Whether retention deletes old segments ("delete" or "compact,delete")."""
        return "delete" in self.cleanup_policy

    @property
    def max_index_entries(self) -> int:
        """How many 8-byte offset-index entries fit in ``segment_index_bytes``."""
        return self.segment_index_bytes // 8

    @property
    def max_time_index_entries(self) -> int:
        return self.segment_index_bytes // 12

    def replace(self, **changes: Any) -> TopicConfig:
        """A copy with ``changes`` applied and validated."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InvalidConfigError(
                f"unknown topic config {', '.join(sorted(unknown))} "
                f"(known: {', '.join(f.name for f in dataclasses.fields(self))})"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopicConfig:
        """Build a config from ``data``; unknown keys raise :class:`InvalidConfigError`."""
        return cls().replace(**dict(data))


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidConfigError(
            f"topic config {name}={value} is out of range (use a value in [{low}, {high}])"
        )


def _check_unlimited(name: str, value: int) -> None:
    if value != -1 and value < 0:
        raise InvalidConfigError(
            f"topic config {name}={value} is out of range (use -1 for unlimited, or >= 0)"
        )
