"""A topic's partitions through the client API (the backend seam): the same requests on a
data directory and on a Kafka cluster (Metadata, ListOffsets); reading them is
:func:`logstore.client.reading.read_partition`."""

from __future__ import annotations

from typing import NamedTuple

from logstore import PartitionNotFoundError, TopicPartition
from logstore.client.backend import Backend


class Span(NamedTuple):
    """One partition's offsets: ``[start, end)``, its log start and its log end (the high
    watermark)."""

    partition: int
    start: int
    end: int


def spans(backend: Backend, topic: str) -> list[Span]:
    """Every partition of ``topic`` with its offsets.

    Raises:
        TopicNotFoundError: there is no such topic.
    """
    count = backend.topic_metadata(topic).partitions
    return [Span(p, *backend.offset_range(TopicPartition(topic, p))) for p in range(count)]


def check_partition(backend: Backend, topic: str, partition: int) -> None:
    """Raises PartitionNotFoundError (TopicNotFoundError) unless ``topic`` has
    ``partition``, in the words of a data directory's store."""
    count = backend.topic_metadata(topic).partitions
    if not 0 <= partition < count:
        raise PartitionNotFoundError(
            f"topic {topic!r} has no partition {partition!r} (it has partitions "
            f"0..{count - 1})"
        )
