"""Where a consumer starts reading a partition it has no position in yet."""

from __future__ import annotations

import time
from collections.abc import Callable

from logstore.client.backend import Backend
from logstore.client.topics import TopicView
from logstore.config import READ_UNCOMMITTED
from logstore.errors import NoOffsetError, UnstableOffsetCommitError
from logstore.types import CommittedOffset, TopicPartition

OFFSET_RESETS = ("earliest", "latest", "none")
UNSTABLE_WAIT_S = 120.0
"""How long a consumer waits for an open transaction holding its group's offsets (its
timeout aborts it sooner, unless it is longer than this)."""

class StartingPoints:
    """The group's committed offset, if it is in range and belongs to the topic's
    current incarnation; else the beginning, for a partition added or re-created since
    the consumer first saw its topic (all its records are new to the consumer); else
    ``auto_offset_reset`` (Kafka resets a committed offset out of range that way too).

    ``learn(topic)`` makes the consumer look at a topic it does not know yet.
    """

    def __init__(
        self,
        backend: Backend,
        group_id: str | None,
        auto_offset_reset: str,
        topics: TopicView,
        learn: Callable[[str], None],
        isolation_level: str = READ_UNCOMMITTED,
    ) -> None:
        self._backend = backend
        self.isolation_level = isolation_level
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self._topics = topics
        self._learn = learn

    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp`` (None if none, or if it was committed
        against a deleted topic of the same name)."""
        if self.group_id is None:
            return None
        found = self._stable_committed(tp)
        if tp.topic not in self._topics.incarnations:
            self._learn(tp.topic)
        if found is None or found.topic_id != self._topics.incarnations.get(tp.topic):
            return None
        return found.offset

    def _stable_committed(self, tp: TopicPartition) -> CommittedOffset | None:
        """The committed offset once no open transaction holds the group's offsets
        (KIP-447: a transaction that may still move it is waited for, up to
        :data:`UNSTABLE_WAIT_S`)."""
        assert self.group_id is not None
        deadline = time.monotonic() + UNSTABLE_WAIT_S
        pause = 0.01
        while True:
            try:
                return self._backend.committed_offsets(self.group_id, [tp]).get(tp)
            except UnstableOffsetCommitError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def end(self, tp: TopicPartition) -> tuple[int, int]:
        """``(start, end)`` of ``tp`` for this consumer's isolation level (the end is
        the last stable offset for ``read_committed``)."""
        return self._backend.offset_range(tp, self.isolation_level)

    def start(self, tp: TopicPartition) -> int:
        committed = self.committed(tp)
        start, end = self.end(tp)
        if committed is not None and start <= committed <= end:
            self._topics.from_start.discard(tp)
            return committed
        if tp in self._topics.from_start:
            self._topics.from_start.discard(tp)
            return start
        return self.reset(tp, start, end)

    def reset(self, tp: TopicPartition, start: int, end: int) -> int:
        """Where ``auto_offset_reset`` says to go in ``tp`` (range ``start``..``end``).

        Raises:
            NoOffsetError: it is "none".
        """
        if self.auto_offset_reset == "earliest":
            return start
        if self.auto_offset_reset == "latest":
            return end
        raise NoOffsetError(
            f"{tp.topic}-{tp.partition} has no committed offset for group {self.group_id!r} "
            f"and auto_offset_reset is 'none' (seek() first)"
        )
