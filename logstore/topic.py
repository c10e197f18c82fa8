"""A topic: its name, config, partitioner and one :class:`PartitionLog` per partition.

Partition logs open lazily, on first use, so a store with many topics opens fast.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable
from typing import NamedTuple

from logstore.config import TopicConfig
from logstore.errors import (
    InvalidTopicError,
    PartitionNotFoundError,
    StoreClosedError,
    TopicNotFoundError,
)
from logstore.partitioner import KeyHashPartitioner
from logstore.records import RecordInput
from logstore.records.inputs import check_bytes, check_timestamp, normalize_headers
from logstore.storage.compaction import CompactionState
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.types import Clock, Compression, HeadersArg, RecordMetadata

log = logging.getLogger(__name__)

TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
"""Kafka's rule for topic names; ``.`` and ``..`` are refused too."""
INTERNAL_PREFIX = "__"


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a legal topic name.

    Raises:
        InvalidTopicError: naming the value and the rule.
    """
    if not isinstance(name, str) or not TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidTopicError(
            f"invalid topic name {name!r}: use 1 to 249 characters from [a-zA-Z0-9._-], "
            f"not '.' or '..'"
        )
    if name.startswith(INTERNAL_PREFIX):
        raise InvalidTopicError(
            f"invalid topic name {name!r}: names starting with '__' are reserved for "
            f"logstore's internal topics"
        )
    return name


def new_topic_id() -> str:
    """A fresh topic id, written as Kafka writes its ``Uuid``: 16 random bytes in
    unpadded base64url (22 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


def partition_dir(root: str, topic: str, partition: int) -> str:
    """``<root>/<topic>-<partition>``, Kafka's partition directory name."""
    return os.path.join(root, f"{topic}-{partition}")


class PartitionInfo(NamedTuple):
    """One partition as ``describe_topic`` reports it."""

    partition: int
    log_start_offset: int
    log_end_offset: int
    size_bytes: int
    segments: int
    compaction: CompactionState | None = None
    """The cleaner's view (compacted topics only): dirty ratio, last cleaned offset,
    bytes reclaimed."""


class TopicDescription(NamedTuple):
    name: str
    config: TopicConfig
    partitions: tuple[PartitionInfo, ...]


class Topic:
    """The partitions of one topic. Thread-safe."""

    def __init__(
        self,
        root: str,
        name: str,
        config: TopicConfig,
        *,
        fs: FileSystem,
        clock: Clock,
        topic_id: str | None = None,
    ) -> None:
        self.root = root
        self.name = name
        self.config = config
        self.topic_id = topic_id
        """This incarnation's id (Kafka's topic id: 16 random bytes, base64url), made
        when the topic is created; None for a topic created before ids existed."""
        self._fs = fs
        self._clock = clock
        self._logs: dict[int, PartitionLog] = {}
        self._lock = threading.Lock()
        self._partitioner = KeyHashPartitioner(config.partitioner)
        self._closed_because: str | None = None
        self._deleted = False

    @property
    def num_partitions(self) -> int:
        return self.config.partitions

    def partition(self, partition: int) -> PartitionLog:
        """The log of ``partition`` (opened, and recovered if needed, on first use)."""
        if (
            isinstance(partition, bool)
            or not isinstance(partition, int)
            or not 0 <= partition < self.config.partitions
        ):
            raise PartitionNotFoundError(
                f"topic {self.name!r} has no partition {partition!r} (it has partitions "
                f"0..{self.config.partitions - 1})"
            )
        with self._lock:
            if self._closed_because is not None:
                if self._deleted:
                    raise TopicNotFoundError(
                        f"topic {self.name!r} cannot be used: {self._closed_because} "
                        f"(look it up again for a topic created since)"
                    )
                raise StoreClosedError(
                    f"topic {self.name!r} cannot be used: {self._closed_because}"
                )
            plog = self._logs.get(partition)
            if plog is not None and plog.failed:
                # A failed write or fsync fails the log object; a new one recovers the
                # partition (cutting off the failed append) and takes writes again.
                log.warning("reopening %s after a failed write", plog.directory)
                plog.close()
                plog = None
            if plog is None:
                directory = partition_dir(self.root, self.name, partition)
                if not self._fs.is_dir(directory):
                    # Creating a topic makes every partition directory before the topic
                    # is registered: one gone means the topic went (opening the log would
                    # make an orphan directory and take writes into it for nothing).
                    raise TopicNotFoundError(
                        f"topic {self.name!r} was deleted (by another process or Store), "
                        f"or the directory of its partition {partition} removed: "
                        f"{directory} is gone"
                    )
                plog = PartitionLog(directory, self.config, fs=self._fs, clock=self._clock)
                self._logs[partition] = plog
            return plog

    def deleted(self, err: TopicNotFoundError) -> TopicNotFoundError:
        """The error to raise when a partition log found its directory deleted (``err``):
        this topic was deleted while in use."""
        deleted = TopicNotFoundError(
            f"topic {self.name!r} was deleted while it was being written to (by another "
            f"process or Store)"
        )
        deleted.__cause__ = err
        return deleted

    def choose_partition(self, key: bytes | None) -> int:
        return self._partitioner.partition(key, self.config.partitions)

    def append(
        self,
        value: bytes | None,
        key: bytes | None = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """Append one record; see :meth:`Store.append`."""
        return self.append_many([(value, key, headers, partition, timestamp)])[0]

    def append_many(
        self,
        records: Iterable[
            tuple[bytes | None, bytes | None, HeadersArg, int | None, int | None]
        ],
        *,
        compression: Compression = Compression.NONE,
    ) -> list[RecordMetadata]:
        """Append ``(value, key, headers, partition, timestamp)`` tuples, one batch per
        partition, and return each record's metadata in input order."""
        now = self._clock.now_ms()
        by_partition: dict[int, list[tuple[int, RecordInput]]] = {}
        for i, (value, key, headers, partition, timestamp) in enumerate(records):
            kb = check_bytes("key", key)
            vb = check_bytes("value", value)
            if timestamp is not None:
                check_timestamp(timestamp)
            p = self.choose_partition(kb) if partition is None else partition
            self.partition(p)  # validates the partition number
            ts = now if timestamp is None else timestamp
            by_partition.setdefault(p, []).append((i, (ts, kb, vb, normalize_headers(headers))))
        out: list[RecordMetadata | None] = [None] * sum(len(v) for v in by_partition.values())
        for p, items in by_partition.items():
            try:
                result = self.partition(p).append_records(
                    [r for _, r in items], compression=compression
                )
            except TopicNotFoundError as err:
                raise self.deleted(err) from err
            for j, (i, rec) in enumerate(items):
                out[i] = RecordMetadata(self.name, p, result.base_offset + j, rec[0])
        return [m for m in out if m is not None]

    def describe(self) -> TopicDescription:
        infos = []
        for p in range(self.config.partitions):
            plog = self.partition(p)
            infos.append(
                PartitionInfo(
                    p,
                    plog.log_start_offset,
                    plog.log_end_offset,
                    plog.size_bytes,
                    len(plog.segments),
                    plog.compaction_state() if self.config.compact else None,
                )
            )
        return TopicDescription(self.name, self.config, tuple(infos))

    def reconfigure(self, config: TopicConfig) -> None:
        """Apply a new config to the open partition logs (partitions may only grow)."""
        with self._lock:
            self.config = config
            for plog in self._logs.values():
                plog.reconfigure(config)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran (the store closed, or this incarnation deleted)."""
        return self._closed_because is not None

    def close(
        self, reason: str = "its store is closed (open the store again)", *, deleted: bool = False
    ) -> None:
        """Close every open partition; later use raises StoreClosedError with ``reason``
        (TopicNotFoundError if ``deleted``: this incarnation of the topic is gone)."""
        with self._lock:
            self._closed_because = reason
            self._deleted = deleted
            logs, self._logs = list(self._logs.values()), {}
        errors: list[BaseException] = []
        for plog in logs:
            try:
                plog.close()
            except Exception as err:  # close every partition, then report the first
                errors.append(err)
        if errors:
            raise errors[0]
