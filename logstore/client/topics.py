"""What a consumer knows of the topics it reads, and what changed since it last looked.

A consumer looks at each topic it reads at most every ``metadata_max_age_ms`` (and at
once on an unknown partition or a deleted topic). A topic that grew has new partitions,
which are read from their beginning when the group has no committed offset for them (the
consumer knew the topic before they existed, so all their records are new to it). A topic
deleted and created again is a new incarnation (a new topic id): positions in the old one
mean nothing in the new one, and each of its partitions starts again from the group's
committed offset in the new one, else from its beginning.
"""

from __future__ import annotations

import enum
import time

from logstore.client.backend import Backend
from logstore.errors import TopicNotFoundError
from logstore.types import TopicMetadata, TopicPartition


class Change(enum.Enum):
    NONE = "none"
    GREW = "grew"
    RECREATED = "recreated"  # a new incarnation (deleted and created again)
    DELETED = "deleted"


class TopicView:
    """The incarnation and partition count of each topic a consumer reads."""

    def __init__(self, backend: Backend, max_age_ms: int) -> None:
        self._backend = backend
        self.max_age_ms = max_age_ms
        self.incarnations: dict[str, str | None] = {}
        self.counts: dict[str, int] = {}
        self.from_start: set[TopicPartition] = set()
        """Partitions to start at their beginning without a committed offset: added, or
        re-created, since the consumer first saw their topic."""
        self._looked_at = time.monotonic()

    def due(self) -> bool:
        """Whether ``max_age_ms`` passed since the last :meth:`looked`."""
        return (time.monotonic() - self._looked_at) * 1000 >= self.max_age_ms

    def looked(self) -> None:
        self._looked_at = time.monotonic()

    def note(self, topic: TopicMetadata) -> Change:
        """Take ``topic`` as it is now; say what changed since this view last saw it."""
        name = topic.name
        change = Change.NONE
        if name in self.incarnations and self.incarnations[name] != topic.topic_id:
            change = Change.RECREATED
            self.from_start.update(TopicPartition(name, p) for p in range(topic.partitions))
        elif name in self.counts and topic.partitions > self.counts[name]:
            change = Change.GREW
            self.from_start.update(
                TopicPartition(name, p) for p in range(self.counts[name], topic.partitions)
            )
        self.incarnations[name] = topic.topic_id
        self.counts[name] = topic.partitions
        return change

    def look(self, name: str) -> tuple[TopicMetadata | None, Change]:
        """Topic ``name`` as the backend says now (None if it is deleted), and the change."""
        try:
            topic = self._backend.topic_metadata(name)
        except TopicNotFoundError:
            known = name in self.incarnations
            self.incarnations.pop(name, None)
            self.counts[name] = 0
            return None, Change.DELETED if known else Change.NONE
        return topic, self.note(topic)

    def readable(self, tp: TopicPartition) -> bool:
        """Whether ``tp`` exists as far as this view knows (a re-created topic may have
        fewer partitions than an ``assign()`` named)."""
        return tp.partition < self.counts.get(tp.topic, 0)
