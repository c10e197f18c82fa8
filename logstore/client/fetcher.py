"""The consumer's fetch buffer: records read ahead of its positions, per partition.

A fetch reads up to ``fetch_max_bytes`` of a partition (and decodes at most
:data:`FETCH_MAX_RECORDS`); what one poll does not return waits here for the next, as
Kafka's fetch buffer does. Partitions take turns: each fetch starts one partition further
on, so a busy partition cannot starve the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from logstore.client.backend import Backend
from logstore.client.handout import Run
from logstore.config import READ_UNCOMMITTED
from logstore.errors import LogstoreError, OffsetOutOfRangeError
from logstore.types import GroupMember, TopicPartition

FETCH_MAX_RECORDS = 10_000
"""Records one partition fetch decodes at most (beyond a poll's own limit). A fetch reads
up to ``fetch_max_bytes``, but a decoded record costs about 100 bytes more than it does
encoded, so a megabyte of tiny records would otherwise sit in the fetch buffer as tens of
megabytes for every partition."""


class Fetcher:
    """Fetches for one consumer and buffers what a poll does not take."""

    def __init__(
        self, backend: Backend, max_bytes: int, isolation_level: str = READ_UNCOMMITTED
    ) -> None:
        self._backend = backend
        self.max_bytes = max_bytes
        self.isolation_level = isolation_level
        # per partition: [records, index of the next one to hand out]
        self._buffers: dict[TopicPartition, list[Any]] = {}
        self._next = 0

    def buffered(self) -> list[TopicPartition]:
        """The partitions with records in the buffer."""
        return list(self._buffers)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Drop what was read ahead of ``tps`` (sought, revoked, another incarnation)."""
        for tp in tps:
            self._buffers.pop(tp, None)

    def fetch(
        self,
        tps: list[TopicPartition],
        limit: int,
        wait_ms: int,
        *,
        position: Callable[[TopicPartition], int],
        reset: Callable[[TopicPartition], None],
        member: GroupMember | None,
    ) -> list[Run]:
        """Up to ``limit`` records of ``tps`` from ``position(tp)`` on, a run per
        partition, taking partitions in turn (from the buffer, or fetching one with none
        buffered) until ``limit`` is reached; if none has a record, one fetch of them all
        waits up to ``wait_ms`` for the first. ``reset(tp)`` moves a position that fell
        out of the partition's range."""
        n = len(tps)
        if not n:
            return []
        first = self._next % n
        tps = tps[first:] + tps[:first]
        self._next = (first + 1) % n
        out = self._take(tps, limit, position, reset, member)
        if not out and wait_ms > 0:
            self._fill({tp: position(tp) for tp in tps}, limit, wait_ms, reset, member)
            out = self._take(tps, limit, position, reset, None, fetch=False)
        return out

    def _take(
        self,
        tps: list[TopicPartition],
        limit: int,
        position: Callable[[TopicPartition], int],
        reset: Callable[[TopicPartition], None],
        member: GroupMember | None,
        *,
        fetch: bool = True,
    ) -> list[Run]:
        out: list[Run] = []
        count = 0
        for tp in tps:
            if count >= limit:
                break
            at = position(tp)
            buffered = self._buffers.get(tp)
            if (
                buffered is None
                or buffered[1] >= len(buffered[0])
                or buffered[0][buffered[1]].offset != at  # after a seek or reset
            ):
                self._buffers.pop(tp, None)
                if not fetch:
                    continue
                self._fill({tp: at}, limit, 0, reset, member)
                buffered = self._buffers.get(tp)
                if buffered is None:
                    continue
            records, start = buffered
            taken = records[start : start + limit - count]
            buffered[1] = start + len(taken)
            out.append((tp, taken))
            count += len(taken)
        return out

    def _fill(
        self,
        wanted: dict[TopicPartition, int],
        limit: int,
        wait_ms: int,
        reset: Callable[[TopicPartition], None],
        member: GroupMember | None,
    ) -> None:
        answers = self._backend.fetch(
            wanted,
            max_records=max(limit, FETCH_MAX_RECORDS),
            max_bytes=self.max_bytes,
            max_wait_ms=wait_ms,
            member=member,
            isolation_level=self.isolation_level,
        )
        for tp, answer in answers.items():
            if isinstance(answer, OffsetOutOfRangeError):
                reset(tp)
            elif isinstance(answer, LogstoreError):
                raise answer
            elif answer:
                self._buffers[tp] = [answer, 0]
