"""The producer: batches records per partition and appends them, idempotently.

``send()`` returns at once with a :class:`RecordFuture`; records wait in a per-partition
batch until it holds ``batch_bytes``, until ``linger_ms`` passes (a background thread
flushes it), or until ``flush()``/``close()``. Each batch is one RecordBatch v2 append,
so the topic's ``flush`` policy (fsync) is paid once per batch, not per record.

Metadata: the producer looks a topic up again (re-reads its registry file) at most every
``metadata_max_age_ms``, and at once after an unknown partition or a deleted topic, so a
grown topic's new partitions take keys within that time, and a topic deleted and created
again is written in its new incarnation. A batch sent before the producer noticed a
deletion fails with TopicNotFoundError (it is never written into deleted files, nor moved
to the new incarnation, whose partition count may differ).

Idempotence: every producer has a random 63-bit producer id; each partition's batches
carry consecutive base sequences. A batch retried after an error that may or may not have
written it is recognised by the partition log and not written twice.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Self

from logstore.client.backend import Backend, resolve_backend
from logstore.errors import (
    InvalidConfigError,
    LogFailedError,
    LogstoreError,
    PartitionNotFoundError,
    StorageError,
    StoreClosedError,
    TopicNotFoundError,
)
from logstore.partitioner import KeyHashPartitioner
from logstore.records.inputs import check_bytes, check_timestamp, normalize_headers
from logstore.types import Compression, HeadersArg, RecordMetadata, TopicMetadata, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

log = logging.getLogger(__name__)

Callback = Callable[[RecordMetadata | None, BaseException | None], Any]
DEFAULT_LINGER_MS = 5
DEFAULT_BATCH_BYTES = 256 * 1024
DEFAULT_METADATA_MAX_AGE_MS = 1000
"""How often producers and consumers re-read a topic's registry file (Kafka's
``metadata.max.age.ms`` is 300000, for a network round trip to a broker; here it is one
small local file read)."""
_RECORD_OVERHEAD = 36  # most bytes a record adds beyond key, value and headers (varints)
_BATCH_OVERHEAD = 61  # the RecordBatch v2 header


class RecordFuture:
    """The outcome of one ``send()``: its :class:`RecordMetadata`, once written."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: _Batch, index: int) -> None:
        self._batch = batch
        self._index = index

    def done(self) -> bool:
        return self._batch.event.is_set()

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Wait (flushing the batch if nobody else will soon) and return the metadata.

        Raises:
            LogstoreError: the append failed (the error it raised).
            TimeoutError: not written within ``timeout`` seconds.
        """
        batch = self._batch
        if not batch.event.is_set():
            batch.producer._flush_batch_of(batch)
            if not batch.event.wait(timeout):
                raise TimeoutError(f"record not written within {timeout} s")
        if batch.error is not None:
            raise batch.error
        assert batch.base_offset is not None  # set with event when no error
        ts = batch.timestamps[self._index]
        return RecordMetadata(batch.topic, batch.partition, batch.base_offset + self._index, ts)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            self.result(timeout)
        except LogstoreError as err:
            return err
        return None

    def add_callback(self, fn: Callback) -> None:
        """Call ``fn(metadata, error)`` once the record is written (now, if it is). An
        exception from ``fn`` is logged, not raised (as Kafka's producer does)."""
        with self._batch.producer._lock:
            self._batch.callbacks.append((self._index, fn))
        if self._batch.event.is_set():
            self._batch.run_callbacks()


class _Batch:
    __slots__ = (
        "base_offset",
        "callbacks",
        "created",
        "error",
        "event",
        "partition",
        "producer",
        "records",
        "size",
        "timestamps",
        "topic",
        "topic_id",
    )

    def __init__(self, producer: Producer, topic: TopicMetadata, partition: int) -> None:
        self.producer = producer
        self.topic = topic.name
        self.topic_id = topic.topic_id  # the incarnation the records were sent to
        self.partition = partition
        self.records: list[tuple[int, bytes | None, bytes | None, Any]] = []
        self.timestamps: list[int] = []
        self.size = 0
        self.created = time.monotonic()
        self.event = threading.Event()
        self.error: BaseException | None = None
        self.base_offset: int | None = None
        self.callbacks: list[tuple[int, Callable[..., Any]]] = []

    def run_callbacks(self) -> None:
        with self.producer._lock:
            callbacks, self.callbacks = self.callbacks, []
        for index, fn in callbacks:
            try:
                if self.error is not None:
                    fn(None, self.error)
                else:
                    assert self.base_offset is not None
                    offset, ts = self.base_offset + index, self.timestamps[index]
                    fn(RecordMetadata(self.topic, self.partition, offset, ts), None)
            except Exception:
                log.exception("a producer callback for %s-%d raised", self.topic, self.partition)


class Producer:
    """Sends records to a store's topics. Thread-safe; use as a context manager.

    Args:
        store: the open store (or another :class:`~logstore.client.backend.Backend`).
        linger_ms: how long a record may wait for more to share its batch (Kafka's
            ``linger.ms``); 0 writes each ``send()`` at once.
        batch_bytes: a batch is written once its records reach about this size.
        compression: codec for every batch ("none", "gzip", "snappy", "lz4", "zstd").
        idempotent: tag batches with a producer id and sequences so a retried batch is
            never written twice.
        retries: how often a batch whose write failed (a failed write or fsync, e.g. a
            full disk) is tried again, with the same sequence, before its records fail.
            A failed append is never committed (the next writer cuts it off), so a retry
            writes the batch exactly once.
        retry_backoff_ms: the wait before each retry.
        metadata_max_age_ms: re-read a topic's registry file at most this often (and at
            once after an unknown partition or a deleted topic): partitions added by
            another process take keys, and a re-created topic is written, within it.
    """

    def __init__(
        self,
        store: Store | Backend,
        *,
        linger_ms: int = DEFAULT_LINGER_MS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        compression: Compression | str = Compression.NONE,
        idempotent: bool = True,
        retries: int = 3,
        retry_backoff_ms: int = 20,
        metadata_max_age_ms: int = DEFAULT_METADATA_MAX_AGE_MS,
    ) -> None:
        if linger_ms < 0 or batch_bytes < 1 or metadata_max_age_ms < 0:
            raise InvalidConfigError(
                f"linger_ms={linger_ms}, batch_bytes={batch_bytes} and metadata_max_age_ms="
                f"{metadata_max_age_ms} must be >= 0, >= 1 and >= 0"
            )
        self.metadata_max_age_ms = metadata_max_age_ms
        self._backend = resolve_backend(store)
        self.linger_ms = linger_ms
        self.batch_bytes = batch_bytes
        self.compression = Compression.parse(compression)
        self.producer_id, self._producer_epoch = (
            self._backend.init_producer_id() if idempotent else (-1, -1)
        )
        self.retries = retries
        self.retry_backoff_ms = retry_backoff_ms
        self._sequences: dict[tuple[str, int], int] = {}
        # per topic: what it is, its partitioner (the null-key round robin), when looked up
        self._topics: dict[str, tuple[TopicMetadata, KeyHashPartitioner, float]] = {}
        self._batches: dict[tuple[str, int], _Batch] = {}
        # batches taken out of _batches wait here, per partition, in the order they were
        # sealed; whoever writes drains a partition's queue under its lock, so a
        # producer's batches reach each partition in send order
        self._sealed: dict[tuple[str, int], collections.deque[_Batch]] = {}
        self._write_locks: dict[tuple[str, int], threading.Lock] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._lingerer: threading.Thread | None = None
        self._clock_ms = self._backend.now_ms

    # ------------------------------------------------------------------ sending

    def _topic(
        self, name: str, *, refresh: bool = False
    ) -> tuple[TopicMetadata, KeyHashPartitioner, float]:
        """Topic ``name`` and its partitioner, looked up again if ``refresh`` or if the
        last look-up is older than ``metadata_max_age_ms``."""
        now = time.monotonic()
        cached = self._topics.get(name)
        if cached is None or refresh or (now - cached[2]) * 1000 >= self.metadata_max_age_ms:
            try:
                topic = self._backend.topic_metadata(name)
            except TopicNotFoundError:
                self._topics.pop(name, None)
                raise
            if cached is None or cached[1].algorithm != topic.partitioner:
                partitioner = KeyHashPartitioner(topic.partitioner)
            else:
                partitioner = cached[1]  # the null-key round robin goes on
            self._topics[name] = cached = (topic, partitioner, now)
        return cached

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """Queue one record; returns a future that resolves to its metadata.

        Raises:
            InvalidRecordError: key, value, headers or timestamp of the wrong type.
            TopicNotFoundError, PartitionNotFoundError, StoreClosedError.
        """
        t, partitioner, _ = self._topic(topic)
        if key is not None and type(key) is not bytes:
            key = check_bytes("key", key)
        if value is not None and type(value) is not bytes:
            value = check_bytes("value", value)
        if partition is None:
            partition = partitioner.partition(key, t.partitions)
        elif type(partition) is not int or not 0 <= partition < t.partitions:
            t, _, _ = self._topic(topic, refresh=True)  # added by another process since?
            if type(partition) is not int or not 0 <= partition < t.partitions:
                raise PartitionNotFoundError(
                    f"topic {topic!r} has no partition {partition!r} (it has partitions "
                    f"0..{t.partitions - 1})"
                )
        if timestamp is None:
            timestamp = self._clock_ms()
        elif type(timestamp) is not int or timestamp < 0:
            check_timestamp(timestamp)  # raises, naming the value
        hdrs = normalize_headers(headers) if headers else ()
        size = _RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
        if hdrs:
            size += sum(12 + len(k.encode()) + (len(v) if v else 0) for k, v in hdrs)
        # a batch never grows past what the topic accepts (Kafka caps it at
        # max.request.size); a record too large alone fails alone
        limit = min(self.batch_bytes, t.max_message_bytes - _BATCH_OVERHEAD)
        with self._lock:
            if self._closed:
                raise StoreClosedError("producer is closed")
            tp = (topic, partition)
            batch = self._batches.get(tp)
            sealed_early = None
            if batch is not None and (batch.size + size > limit or batch.topic_id != t.topic_id):
                self._seal(batch)
                sealed_early, batch = batch, None
            if batch is None:
                batch = self._batches[tp] = _Batch(self, t, partition)
                if self.linger_ms:
                    self._ensure_lingerer()
            index = len(batch.records)
            batch.records.append((timestamp, key, value, hdrs))
            batch.timestamps.append(timestamp)
            batch.size += size
            full = batch.size >= limit or not self.linger_ms
            if full:
                self._seal(batch)
        future = RecordFuture(batch, index)
        if full or sealed_early is not None:
            self._drain(tp)
        return future

    def send_many(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None]] | Iterable[bytes | None],
        *,
        partition: int | None = None,
    ) -> list[RecordFuture]:
        """Queue many records for bulk loads: ``(value, key)`` pairs or bare values."""
        out = []
        for item in records:
            if isinstance(item, tuple):
                value, key = item
            else:
                value, key = item, None
            out.append(self.send(topic, value, key=key, partition=partition))
        return out

    def _seal(self, batch: _Batch) -> None:
        """Move ``batch`` from filling to waiting (the producer lock is held)."""
        tp = (batch.topic, batch.partition)
        del self._batches[tp]
        queue = self._sealed.get(tp)
        if queue is None:
            queue = self._sealed[tp] = collections.deque()
            self._write_locks[tp] = threading.Lock()
        queue.append(batch)

    def _drain(self, tp: tuple[str, int]) -> None:
        """Write the partition's sealed batches, oldest first (no producer lock held)."""
        with self._write_locks[tp]:
            queue = self._sealed[tp]
            while True:
                with self._lock:
                    if not queue:
                        return
                    batch = queue.popleft()
                self._write(batch)

    def _write(self, batch: _Batch) -> None:
        """Append one batch (its partition's write lock is held)."""
        tp = (batch.topic, batch.partition)
        sequence = 0
        try:
            with self._lock:
                sequence = self._sequences.get(tp, 0)
                self._sequences[tp] = (sequence + len(batch.records)) % (2**31)
                producer_id, epoch = self.producer_id, self._producer_epoch
            for attempt in range(self.retries + 1):
                try:
                    result = self._backend.append(
                        TopicPartition(*tp),
                        batch.records,
                        topic_id=batch.topic_id,
                        compression=self.compression,
                        producer_id=producer_id,
                        producer_epoch=epoch,
                        base_sequence=sequence if producer_id >= 0 else -1,
                    )
                    break
                except (StorageError, LogFailedError):
                    if attempt == self.retries:
                        raise
                    log.warning(
                        "retrying a batch of %d records to %s-%d after a failed write",
                        len(batch.records), batch.topic, batch.partition,
                    )
                    time.sleep(self.retry_backoff_ms / 1000)
            batch.base_offset = result.base_offset
        except TopicNotFoundError as err:
            with self._lock:  # the next send() looks the topic up again
                cached = self._topics.get(batch.topic)
                if cached is not None and cached[0].topic_id == batch.topic_id:
                    del self._topics[batch.topic]
            batch.error = err
        except (StorageError, LogFailedError) as err:
            batch.error = err
            self._new_producer_id()
        except LogstoreError as err:
            batch.error = err
        finally:
            unknown_outcome = isinstance(batch.error, StorageError | LogFailedError)
            if batch.error is not None and not unknown_outcome:
                self._give_back(tp, sequence, len(batch.records))
            batch.event.set()
            if batch.callbacks:
                batch.run_callbacks()

    def _give_back(self, tp: tuple[str, int], sequence: int, count: int) -> None:
        """A batch refused before anything was written (too large, a deleted topic, ...):
        its sequence numbers go to the next batch, which must follow the last batch the
        partition has (Kafka's producer adjusts its sequences after such a batch too).
        Sequences are taken at write time, under the partition's write lock, so no later
        batch has taken any yet."""
        with self._lock:
            if self._sequences.get(tp) == (sequence + count) % (2**31):
                self._sequences[tp] = sequence

    def _new_producer_id(self) -> None:
        """After a write whose outcome is unknown (it failed, retries included, but may
        have reached the log): start again as a new idempotent producer, so no later batch
        can reuse a sequence the failed one may hold (Kafka's producer bumps its epoch)."""
        if self.producer_id < 0:
            return
        fresh = self._backend.init_producer_id()
        with self._lock:
            self.producer_id, self._producer_epoch = fresh
            self._sequences.clear()

    def _flush_batch_of(self, batch: _Batch) -> None:
        tp = (batch.topic, batch.partition)
        with self._lock:
            if self._batches.get(tp) is batch:
                self._seal(batch)
        self._drain(tp)

    def flush(self) -> None:
        """Write every queued record now."""
        with self._lock:
            for batch in list(self._batches.values()):
                self._seal(batch)
            partitions = list(self._sealed)
        for tp in partitions:
            self._drain(tp)

    # ------------------------------------------------------------------ linger

    def _ensure_lingerer(self) -> None:
        if self._lingerer is None:
            self._lingerer = threading.Thread(
                target=self._linger_loop, name="logstore-producer-linger", daemon=True
            )
            self._lingerer.start()
        self._wake.notify()

    def _linger_loop(self) -> None:
        linger = self.linger_ms / 1000
        while True:
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                due = [b for b in self._batches.values() if now - b.created >= linger]
                for b in due:
                    self._seal(b)
                if not due:
                    oldest = min((b.created for b in self._batches.values()), default=None)
                    wait = None if oldest is None else max(0.0, oldest + linger - now)
                    self._wake.wait(wait)
                    continue
            for b in due:
                self._drain((b.topic, b.partition))

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Write what is queued and stop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # from here on send() refuses; flush() writes the rest
            self._wake.notify_all()
        self.flush()
        if self._lingerer is not None:
            self._lingerer.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
