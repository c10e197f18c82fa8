"""A topic's partitions through the client API (the backend seam): the same requests on a
data directory and on a Kafka cluster (Metadata, ListOffsets, Fetch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from logstore import ConsumerRecord, PartitionNotFoundError, TopicPartition
from logstore.client.backend import Backend

FETCH_BYTES = 1 << 20


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


def read_range(
    backend: Backend, topic: str, partition: int, start: int, stop: int, chunk: int = 2000
) -> Iterator[ConsumerRecord]:
    """The records of one partition with offsets in ``[start, stop)``, ``chunk`` at a
    time; it ends early where the partition holds no more records below ``stop``
    (transaction markers, say).

    Raises:
        OffsetOutOfRangeError: retention deleted the records meanwhile.
    """
    tp = TopicPartition(topic, partition)
    offset = start
    while offset < stop:
        answer = backend.fetch({tp: offset}, max_records=min(chunk, stop - offset),
                               max_bytes=FETCH_BYTES)
        found = answer.get(tp, [])
        if isinstance(found, Exception):
            raise found
        if not found:
            return
        for record in found:
            if record.offset >= stop:
                return
            yield record
        offset = found[-1].offset + 1


