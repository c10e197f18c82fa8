"""What a producer keeps per batch and per topic, and the future ``send()`` returns.

:class:`ProducerBatch` is a :class:`~logstore.records.builder.BatchBuilder` (the
compiled one where it is built) that also holds what its records' futures share;
:class:`RecordFuture` is a ``(batch, index)`` pair; :class:`TopicState` is what
``send()`` needs of a topic between two metadata look-ups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from logstore.errors import LogstoreError
from logstore.partitioner import KeyHashPartitioner
from logstore.records.accel import codec
from logstore.records.builder import BatchBuilder
from logstore.types import RecordMetadata, TopicMetadata

if TYPE_CHECKING:
    from logstore.client.producer import Callback, Producer

log = logging.getLogger(__name__)

send_keyed = None if codec is None else codec.send_keyed
"""The compiled ``send()`` of a keyed record (``_codec.c``), or None."""


class RecordFuture(tuple[Any, int]):
    """The outcome of one ``send()``: its :class:`RecordMetadata`, once written.

    A pair ``(batch, index)``: made without a Python ``__init__`` call, the cheapest
    object ``send()`` can return (the batch holds what the records share: the event,
    the error, the base offset)."""

    __slots__ = ()

    def done(self) -> bool:
        return bool(self[0].event.is_set())

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Wait (flushing the batch if nobody else will soon) and return the metadata.

        Raises:
            LogstoreError: the append failed (the error it raised).
            TimeoutError: not written within ``timeout`` seconds.
        """
        batch, index = self
        if not batch.event.is_set():
            batch.producer._flush_batch_of(batch)
            if not batch.event.wait(timeout):
                raise TimeoutError(f"record not written within {timeout} s")
        if batch.error is not None:
            raise batch.error
        ts = batch.records[index][0]
        return RecordMetadata(batch.topic, batch.partition, batch.offset_of(index), ts)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            self.result(timeout)
        except LogstoreError as err:
            return err
        return None

    def add_callback(self, fn: Callback) -> None:
        """Call ``fn(metadata, error)`` once the record is written (now, if it is). An
        exception from ``fn`` is logged, not raised (as Kafka's producer does)."""
        batch, index = self
        with batch.producer._lock:
            batch.callbacks.append((index, fn))
        if batch.event.is_set():
            batch.run_callbacks()


new_future = tuple.__new__
"""``new_future(RecordFuture, (batch, index))``: a future with no ``__init__`` call."""


class ProducerBatch(BatchBuilder):  # type: ignore[misc]  # the compiled or the pure-Python one
    """A batch of one partition: its records (gathered by :class:`BatchBuilder`) and
    what its records' futures share."""

    __slots__ = (
        "base_offset",
        "callbacks",
        "created",
        "error",
        "event",
        "offsets",
        "partition",
        "producer",
        "topic",
        "topic_id",
    )

    def __init__(self, producer: Producer, topic: TopicMetadata, partition: int, limit: int):
        super().__init__(limit)
        self.producer = producer
        self.topic = topic.name
        self.topic_id = topic.topic_id  # the incarnation the records were sent to
        self.partition = partition
        self.created = time.monotonic()
        self.event = threading.Event()
        self.error: BaseException | None = None
        self.base_offset: int | None = None
        self.offsets: Sequence[int] | None = None  # when not contiguous (AppendResult's)
        self.callbacks: list[tuple[int, Callable[..., Any]]] = []

    def offset_of(self, index: int) -> int:
        """The offset the record at ``index`` was written at (once written)."""
        if self.offsets is not None:
            return self.offsets[index]
        assert self.base_offset is not None  # set with the event when there is no error
        return self.base_offset + index

    def run_callbacks(self) -> None:
        with self.producer._lock:
            callbacks, self.callbacks = self.callbacks, []
        for index, fn in callbacks:
            try:
                if self.error is not None:
                    fn(None, self.error)
                else:
                    offset, ts = self.offset_of(index), self.records[index][0]
                    fn(RecordMetadata(self.topic, self.partition, offset, ts), None)
            except Exception:
                log.exception("a producer callback for %s-%d raised", self.topic, self.partition)


class TopicState:
    """What ``send()`` needs of a topic, looked up at most every metadata_max_age_ms:
    its metadata, partitioner, batch limit and the open batch of each partition."""

    __slots__ = (
        "batches", "compiled", "expires", "limit", "meta", "murmur3", "partitioner",
        "partitions",
    )

    def __init__(
        self,
        meta: TopicMetadata,
        partitioner: KeyHashPartitioner,
        expires: float,
        limit: int,
        system_clock: bool,
    ) -> None:
        self.meta = meta
        self.partitions = meta.partitions
        self.partitioner = partitioner
        self.murmur3 = partitioner.algorithm == "murmur3"
        # send_keyed() does what send() does, for keyed records, where its hash and
        # clock are the ones this topic and producer use
        self.compiled = send_keyed is not None and self.murmur3 and system_clock
        self.expires = expires
        self.limit = limit
        self.batches: list[ProducerBatch | None] = [None] * meta.partitions
