"""Where a consumer starts reading a partition it has no position in yet."""

from __future__ import annotations

from collections.abc import Callable

from logstore.client.backend import Backend
from logstore.client.topics import TopicView
from logstore.errors import NoOffsetError
from logstore.types import TopicPartition

OFFSET_RESETS = ("earliest", "latest", "none")


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
    ) -> None:
        self._backend = backend
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self._topics = topics
        self._learn = learn

    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp`` (None if none, or if it was committed
        against a deleted topic of the same name)."""
        if self.group_id is None:
            return None
        found = self._backend.committed_offsets(self.group_id, [tp]).get(tp)
        if tp.topic not in self._topics.incarnations:
            self._learn(tp.topic)
        if found is None or found.topic_id != self._topics.incarnations.get(tp.topic):
            return None
        return found.offset

    def start(self, tp: TopicPartition) -> int:
        committed = self.committed(tp)
        start, end = self._backend.offset_range(tp)
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
