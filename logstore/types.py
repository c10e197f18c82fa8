"""Plain value types shared by every layer. No I/O happens here.

``Record`` and ``RecordMetadata`` are ``NamedTuple``s rather than frozen dataclasses: the
decoder builds one per record on the hot read path, and ``tuple.__new__`` is several
times cheaper than a frozen dataclass's ``__init__`` (measured in benchmarks/).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

Header = tuple[str, "bytes | None"]
"""One record header: a UTF-8 key and a value that may be null."""


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
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.upper()]
        except KeyError:
            names = ", ".join(c.name.lower() for c in cls)
            raise ValueError(f"unknown compression {value!r} (use one of: {names})") from None


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


class FetchResult(NamedTuple):
    """Whole batches read from a partition log, as stored, plus the log's bounds."""

    records: bytes
    high_watermark: int
    log_start_offset: int


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
