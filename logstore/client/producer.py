"""The producer: batches records per partition and appends them, idempotently.

``send()`` returns at once with a :class:`RecordFuture`; records wait in a per-partition
batch until it holds ``batch_bytes`` (the sending thread then writes it), until
``linger_ms`` passes (the sender thread writes it), or until ``flush()``/``close()``.
Each batch is one RecordBatch v2 append, so the topic's ``flush`` policy (fsync) is paid
once per batch, not per record. With ``linger_ms=0`` the sender thread writes a batch as
soon as it has a record, and the records sent while that write (and its fsync) is in
flight make the next batch, as Kafka's sender thread does.

``send()`` does per record only what cannot wait for the batch: a partition, a
timestamp, one append to the partition's :class:`~logstore.records.builder.BatchBuilder`
(atomic without a lock where the compiled codec is built) and a two-item future;
encoding happens once per batch, in the thread that writes it.

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
from time import monotonic as _monotonic
from time import time_ns as _time_ns
from typing import TYPE_CHECKING, Any, Self

import mmh3

from logstore.client.backend import Backend, resolve_backend
from logstore.client.batches import (
    ProducerBatch,
    RecordFuture,
    TopicState,
    new_future,
    send_keyed,
)
from logstore.errors import (
    InvalidConfigError,
    InvalidRecordError,
    LogFailedError,
    LogstoreError,
    PartitionNotFoundError,
    StorageError,
    StoreClosedError,
    TopicNotFoundError,
)
from logstore.partitioner import KeyHashPartitioner
from logstore.records.inputs import check_bytes, check_timestamp, normalize_headers
from logstore.types import Compression, HeadersArg, RecordMetadata, TopicPartition

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
_murmur3 = mmh3.hash  # (key, seed, signed): the default partitioner's hash, inline


class Producer:
    """Sends records to a store's topics. Thread-safe; use as a context manager.

    Args:
        store: the open store (or another :class:`~logstore.client.backend.Backend`).
        linger_ms: how long a record may wait for more to share its batch (Kafka's
            ``linger.ms``); 0 writes at once, and the records sent while a write to their
            partition is in flight share the next write.
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
        self._topics: dict[str, TopicState] = {}
        # the open batch of each partition (also in its topic state's list)
        self._batches: dict[tuple[str, int], ProducerBatch] = {}
        # batches taken out of _batches wait here, per partition, in the order they were
        # sealed; whoever writes drains a partition's queue under its lock, so a
        # producer's batches reach each partition in send order
        self._sealed: dict[tuple[str, int], collections.deque[ProducerBatch]] = {}
        self._write_locks: dict[tuple[str, int], threading.Lock] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._sender: threading.Thread | None = None
        self._transactional = False  # a TransactionalProducer's batches are in its transaction
        self._clock_ms = self._backend.now_ms
        # the wall clock read inline (no call through the backend) when it is the clock
        self._system_clock = bool(getattr(self._backend, "uses_system_clock", False))

    # ------------------------------------------------------------------ sending

    def _topic(self, name: str, *, refresh: bool = False) -> TopicState:
        """Topic ``name``'s state, looked up again if ``refresh`` or if the last look-up
        is older than ``metadata_max_age_ms``. A topic deleted and created again, or
        grown, gets a new state; the old state's open batches are sealed (a deleted
        incarnation's fail when written)."""
        now = time.monotonic()
        cached = self._topics.get(name)
        if cached is not None and not refresh and now < cached.expires:
            return cached
        try:
            topic = self._backend.topic_metadata(name)
        except TopicNotFoundError:
            self._topics.pop(name, None)
            raise
        expires = now + self.metadata_max_age_ms / 1000
        with self._lock:
            cached = self._topics.get(name)
            if cached is not None and cached.meta == topic:
                cached.expires = expires
                return cached
            if cached is None or cached.partitioner.algorithm != topic.partitioner:
                partitioner = KeyHashPartitioner(topic.partitioner)
            else:
                partitioner = cached.partitioner  # the null-key round robin goes on
            limit = min(self.batch_bytes, topic.max_message_bytes - _BATCH_OVERHEAD)
            state = TopicState(topic, partitioner, expires, limit, self._system_clock)
            if cached is not None and cached.meta.topic_id == topic.topic_id:
                # grown, or a new limit: the open batches carry on
                for p, batch in enumerate(cached.batches[: state.partitions]):
                    state.batches[p] = batch
            elif cached is not None:
                for batch in cached.batches:
                    if batch is not None:
                        self._seal(batch)
            self._topics[name] = state
        return state

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
        t = self._topics.get(topic)
        if (
            t is not None and t.compiled  # the common case in one C call
            and headers is None and partition is None and timestamp is None
        ):
            compiled: RecordFuture | None = send_keyed(  # type: ignore[misc]
                t.batches, t.expires, key, value, RecordFuture
            )
            if compiled is not None:
                return compiled
        if t is None or _monotonic() >= t.expires:
            t = self._topic(topic)
        if key is not None and key.__class__ is not bytes:
            key = check_bytes("key", key)
        elif key is None and t.meta.keyed_only:
            raise InvalidRecordError(
                f"topic {topic!r} is compacted (cleanup_policy compact): its records need a "
                f"key (send with key=...)"
            )
        if value is not None and value.__class__ is not bytes:
            value = check_bytes("value", value)
        if partition is None:
            if key is not None and t.murmur3:
                partition = _murmur3(key, 0, False) % t.partitions
            else:
                partition = t.partitioner.partition(key, t.partitions)
        elif partition.__class__ is not int or not 0 <= partition < t.partitions:
            t = self._topic(topic, refresh=True)  # added by another process since?
            if type(partition) is not int or not 0 <= partition < t.partitions:
                raise PartitionNotFoundError(
                    f"topic {topic!r} has no partition {partition!r} (it has partitions "
                    f"0..{t.partitions - 1})"
                )
        if timestamp is None:
            timestamp = _time_ns() // 1_000_000 if self._system_clock else self._clock_ms()
        elif timestamp.__class__ is not int or timestamp < 0:
            check_timestamp(timestamp)  # raises, naming the value
        size = _RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
        if headers:
            hdrs = normalize_headers(headers)
            size += sum(12 + len(k.encode()) + (len(v) if v else 0) for k, v in hdrs)
        else:
            hdrs = ()
        batch = t.batches[partition]
        if batch is None or (index := batch.append(timestamp, key, value, hdrs, size)) < 0:
            return self._append_to_new_batch(t, partition, (timestamp, key, value, hdrs, size))
        return new_future(RecordFuture, (batch, index))

    def _append_to_new_batch(
        self, t: TopicState, partition: int, record: tuple[Any, ...]
    ) -> RecordFuture:
        """Start a batch for ``record`` (none is open, or the open one is full or being
        written) and tell the sender thread of it. A full batch is written by this
        thread (a producer sending faster than its batches are written slows down to
        their pace)."""
        tp = (t.meta.name, partition)
        with self._lock:
            if self._closed:
                raise StoreClosedError("producer is closed")
            full = self._batches.get(tp)
            if full is not None:
                self._seal(full)
            batch = ProducerBatch(self, t.meta, partition, t.limit)
            self._batches[tp] = batch
            if partition < len(t.batches):
                t.batches[partition] = batch
            index = batch.append(*record)
            alone = batch.size >= t.limit  # as large as a batch may be: it goes at once
            if alone:
                self._seal(batch)
            else:
                self._ensure_sender()
        if full is not None or alone:
            self._drain(tp)
        return new_future(RecordFuture, (batch, index))

    def send_many(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None]] | Iterable[bytes | None],
        *,
        partition: int | None = None,
    ) -> list[RecordFuture]:
        """Queue many records for bulk loads: ``(value, key)`` pairs or bare values."""
        send = self.send
        out = []
        for item in records:
            if isinstance(item, tuple):
                value, key = item
            else:
                value, key = item, None
            out.append(send(topic, value, key, None, partition))
        return out

    def _seal(self, batch: ProducerBatch) -> None:
        """Move ``batch`` from filling to waiting (the producer lock is held)."""
        batch.close()
        tp = (batch.topic, batch.partition)
        if self._batches.get(tp) is batch:
            del self._batches[tp]
        state = self._topics.get(batch.topic)
        slots = state.batches if state is not None else ()
        if batch.partition < len(slots) and slots[batch.partition] is batch:
            state.batches[batch.partition] = None  # type: ignore[union-attr]
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

    def _write(self, batch: ProducerBatch) -> None:
        """Append one batch (its partition's write lock is held)."""
        tp = (batch.topic, batch.partition)
        count = len(batch)
        sequence = 0
        try:
            with self._lock:
                sequence = self._sequences.get(tp, 0)
                self._sequences[tp] = (sequence + count) % (2**31)
                producer_id, epoch = self.producer_id, self._producer_epoch
            self._before_write(tp)
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
                        transactional=self._transactional,
                    )
                    break
                except (StorageError, LogFailedError):
                    if attempt == self.retries:
                        raise
                    log.warning(
                        "retrying a batch of %d records to %s-%d after a failed write",
                        count, batch.topic, batch.partition,
                    )
                    time.sleep(self.retry_backoff_ms / 1000)
            batch.base_offset, batch.offsets = result.base_offset, result.offsets
        except TopicNotFoundError as err:
            with self._lock:  # the next send() looks the topic up again
                cached = self._topics.get(batch.topic)
                if cached is not None and cached.meta.topic_id == batch.topic_id:
                    cached.expires = 0.0
            batch.error = err
        except (StorageError, LogFailedError) as err:
            batch.error = err
            self._new_producer_id()
        except LogstoreError as err:
            batch.error = err
        finally:
            unknown_outcome = isinstance(batch.error, StorageError | LogFailedError)
            if batch.error is not None and not unknown_outcome:
                self._give_back(tp, sequence, count)
            batch.event.set()
            if batch.callbacks:
                batch.run_callbacks()

    def _before_write(self, tp: tuple[str, int]) -> None:
        """What must happen before a batch goes to ``tp`` (nothing, for a producer
        outside transactions; a transactional one adds the partition to its
        transaction)."""

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

    def _flush_batch_of(self, batch: ProducerBatch) -> None:
        tp = (batch.topic, batch.partition)
        with self._lock:
            if self._batches.get(tp) is batch:
                self._seal(batch)
        if tp in self._write_locks:
            self._drain(tp)

    def flush(self) -> None:
        """Write every queued record now."""
        with self._lock:
            for batch in list(self._batches.values()):
                self._seal(batch)
            partitions = list(self._sealed)
        for tp in partitions:
            self._drain(tp)

    # ------------------------------------------------------------------ the sender

    def _ensure_sender(self) -> None:
        if self._sender is None:
            self._sender = threading.Thread(
                target=self._send_loop, name="logstore-producer-sender", daemon=True
            )
            self._sender.start()
        self._wake.notify()

    def _send_loop(self) -> None:
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
        if self._sender is not None:
            self._sender.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
