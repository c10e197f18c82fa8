"""Retries, delayed retry topics and dead letters for a consumer group (issue 16).

:class:`RetryingConsumer` runs a handler over the records of some topics as a member of
a consumer group. When the handler raises, the record is

1. tried again in place (``inline_attempts``, exponential backoff with jitter), then
2. published to a **delayed retry topic** (``<topic>.retry.1``, ``.retry.2``, ... one
   per delay of :class:`~logstore.patterns.retry_policy.RetryPolicy`) with its key, value
   and headers plus retry headers (due time, attempts, original coordinates), so its
   source partition goes on at once: a record waiting for its retry never holds up new
   records; and, after ``max_attempts`` deliveries in all, or at once for a
   ``not_retriable`` error,
3. published to the **dead-letter topic** (``<topic>.dlq``) with the ``DLQ_*`` headers of
   :mod:`logstore.headers`, its key, value and headers kept.

The group reads the retry topics too (they are subscribed beside the sources). A retry
topic's partition whose head record is not due yet is paused (and sought back to it)
until then: no busy loop, and a poll never waits past the earliest due time of any
paused partition, so a record due soon in one retry topic is never held up by one due
later in another. Records of one retry topic are due in about the order they were
written (one delay per topic), so pausing at the head delays no record by more than
the clock skew between the processes that wrote them.

Delivery is **at-least-once**: a partition's offset is committed only after its records
were handled or handed to a retry or dead-letter topic and the producer flushed them
(each commit covers one poll's records). A crash (even SIGKILL) repeats at most the
records of one poll: a record may be handled twice, or reach a retry topic twice, but
none is lost. Make handlers idempotent.

Several processes may run a ``RetryingConsumer`` in the same group: the partitions of
the sources and of the retry topics are divided among them like any group's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from logstore.client.backend import Backend, resolve_backend
from logstore.client.batches import RecordFuture
from logstore.client.consumer import Consumer
from logstore.client.producer import Producer
from logstore.errors import (
    CommitFailedError,
    InvalidConfigError,
    LogstoreError,
    StoreClosedError,
    TopicExistsError,
)
from logstore.headers import dead_letter_topic
from logstore.patterns.retry_policy import (
    Envelope,
    RetryConfigError,
    RetryPolicy,
    retry_topic,
)
from logstore.types import Clock, ConsumerRecord, SystemClock, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

__all__ = ["RetryConfigError", "RetryPolicy", "RetryStats", "RetryingConsumer"]

log = logging.getLogger(__name__)

Handler = Callable[[ConsumerRecord], object]
_MAX_WAIT_MS = 100  # a waiting poll returns at least this often (run() checks its stop)


@dataclass
class RetryStats:
    """What a run did, in records (a record retried twice counts twice in ``retried``)."""

    handled: int = 0
    """Records the handler took without raising."""
    retried: int = 0
    """Records published to a retry topic."""
    dead_lettered: int = 0
    """Records published to a dead-letter topic."""
    failures: int = 0
    """Handler calls that raised."""
    skipped: int = 0
    """Retry records of another group (groups sharing a source share its retry topics)."""

    @property
    def finished(self) -> int:
        """Records this run is done with: handled, retried or dead-lettered."""
        return self.handled + self.retried + self.dead_lettered

    def add(self, other: RetryStats) -> None:
        self.handled += other.handled
        self.retried += other.retried
        self.dead_lettered += other.dead_lettered
        self.failures += other.failures
        self.skipped += other.skipped


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a topic read by the consumer sits: its source and its stage (0: source)."""

    source: str
    stage: int


class RetryingConsumer:
    """Runs ``handler`` over ``topics`` for ``group``, with retries and dead letters.

    Not thread-safe: one per thread (run more in other threads or processes, in the same
    group, to share the work). Creates the retry and dead-letter topics it needs (with
    the source's partition count) when they are missing.

    Args:
        store: the open store (or another :class:`~logstore.client.backend.Backend`).
        group: the consumer group (committed offsets, partitions shared by members).
        topics: the source topics.
        handler: called with each record (as read from its source, whatever retry topic
            it came through); a return is success, an exception a failure.
        policy: attempts, delays, backoff, non-retriable errors, dead-letter topic.
        clock: the time retries are due by (default: the wall clock).
        auto_offset_reset: where a group without committed offsets starts in a source
            ("earliest" by default; retry topics always start at their beginning).
        consumer_options: more :class:`~logstore.client.consumer.Consumer` options.

    Raises:
        TopicNotFoundError: a source topic does not exist.
    """

    def __init__(
        self,
        store: Store | Backend,
        group: str,
        topics: Iterable[str],
        handler: Handler,
        policy: RetryPolicy | None = None,
        *,
        clock: Clock | None = None,
        auto_offset_reset: str = "earliest",
        consumer_options: dict[str, object] | None = None,
    ) -> None:
        self.group = group
        self.handler = handler
        self.policy = policy or RetryPolicy()
        self.clock = clock or SystemClock()
        self.current_attempt = 0
        """The delivery the handler is in (1 for the first): read it in the handler."""
        self._backend = resolve_backend(store)
        sources = list(dict.fromkeys(topics))
        if not sources:
            raise InvalidConfigError("RetryingConsumer needs at least one source topic")
        self._routes: dict[str, _Route] = {}
        self._dead_letter: dict[str, str] = {}
        for source in sources:
            partitions = self._backend.topic_metadata(source).partitions
            self._routes[source] = _Route(source, 0)
            for stage in range(1, len(self.policy.delays_ms) + 1):
                name = retry_topic(source, stage)
                self._ensure_topic(name, partitions)
                self._routes[name] = _Route(source, stage)
            self._dead_letter[source] = self.policy.dead_letter_topic or dead_letter_topic(source)
            self._ensure_topic(self._dead_letter[source], partitions)
        self._partitions: dict[str, int] = {}
        self._paused: dict[TopicPartition, int] = {}  # retry partition -> due (ms)
        self._futures: list[RecordFuture] = []
        self._producer = Producer(self._backend)
        options: dict[str, object] = dict(consumer_options or {})
        options.update(
            group_id=group,
            auto_offset_reset=auto_offset_reset,
            enable_auto_commit=False,
            max_poll_records=self.policy.max_poll_records,
            on_assign=self._assigned,
            on_revoke=self._forget,
            on_lost=self._forget,
        )
        self._consumer = Consumer(self._backend, None, **options)  # type: ignore[arg-type]
        self._consumer.subscribe(list(self._routes))
        self._closed = False

    def _ensure_topic(self, name: str, partitions: int) -> None:
        with contextlib.suppress(TopicExistsError):
            self._backend.create_topic(name, partitions)

    # ------------------------------------------------------------------ running

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        max_records: int | None = None,
        idle_ms: int | None = None,
    ) -> RetryStats:
        """Poll and handle until ``stop`` is set, ``max_records`` records are finished
        (handled, retried or dead-lettered), or ``idle_ms`` passed without a record
        while no retry of this member is waiting; with none of them, until closed."""
        total = RetryStats()
        idle_since = time.monotonic()
        while not self._closed and not (stop is not None and stop.is_set()):
            left = None if max_records is None else max_records - total.finished
            if left is not None and left <= 0:
                break
            stats = self.poll_once(_MAX_WAIT_MS, max_records=left)
            total.add(stats)
            if stats.finished or stats.skipped or self._paused:
                idle_since = time.monotonic()
            elif idle_ms is not None and (time.monotonic() - idle_since) * 1000 >= idle_ms:
                break
        return total

    def poll_once(self, timeout_ms: int = 0, max_records: int | None = None) -> RetryStats:
        """One poll: wait up to ``timeout_ms`` (less if a paused retry falls due sooner)
        for records, handle them, flush what went to retry and dead-letter topics, then
        commit."""
        self._check_open()
        stats = RetryStats()
        wait_ms = self._resume_due(timeout_ms)
        limit = self.policy.max_poll_records
        if max_records is not None:
            limit = min(limit, max_records)
        records = self._consumer.poll(timeout_ms=wait_ms, max_records=limit)
        done: dict[TopicPartition, int] = {}
        try:
            self._handle(records, done, stats)
            self._commit(done)
        except BaseException:
            # read again what was not finished (or not flushed) if the caller goes on
            firsts: dict[TopicPartition, int] = {}
            for record in records:
                firsts.setdefault(TopicPartition(record.topic, record.partition), record.offset)
            for tp, offset in firsts.items():
                # a paused partition too: its head was sought to a record not due yet, but
                # an earlier record of this poll may have failed to reach its retry topic
                # (it stays paused, so that record waits for the head's due time at most)
                with contextlib.suppress(LogstoreError):
                    self._consumer.seek(tp, offset)
            raise
        return stats

    def _handle(
        self, records: list[ConsumerRecord], done: dict[TopicPartition, int],
        stats: RetryStats,
    ) -> None:
        waiting: set[TopicPartition] = set()
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp in waiting:
                continue
            route = self._routes[record.topic]
            envelope = None  # a first delivery (its envelope is made if it fails)
            if route.stage:
                envelope = Envelope.read(record)
                if envelope.group not in (None, self.group):
                    stats.skipped += 1
                    done[tp] = record.offset + 1
                    continue
                if envelope.due_ms > self.clock.now_ms():
                    self._consumer.seek(tp, record.offset)  # read it again when due
                    self._consumer.pause(tp)
                    self._paused[tp] = envelope.due_ms
                    waiting.add(tp)
                    continue
            self._deliver(record, envelope, route, stats)
            done[tp] = record.offset + 1

    def _resume_due(self, timeout_ms: int) -> int:
        """Resume the paused partitions whose head is due; how long the next poll may
        wait (not past the next due time)."""
        if not self._paused:
            return timeout_ms
        now = self.clock.now_ms()
        due = [tp for tp, at in self._paused.items() if at <= now]
        for tp in due:
            del self._paused[tp]
        if due:
            self._consumer.resume(*due)
            return 0
        return max(0, min(timeout_ms, min(self._paused.values()) - now))

    def _assigned(self, tps: list[TopicPartition]) -> None:
        """Retry partitions the group has no offset in start at their beginning, whatever
        ``auto_offset_reset`` says: a retry written before this member (or the group's
        first commit in that partition) must not be skipped."""
        if self._consumer.auto_offset_reset == "earliest":
            return
        fresh = [tp for tp in tps
                 if self._routes[tp.topic].stage and self._consumer.committed(tp) is None]
        if fresh:
            self._consumer.seek_to_beginning(*fresh)

    def _forget(self, tps: list[TopicPartition]) -> None:
        """Partitions leaving this member: no more pauses of ours on them."""
        gone = [tp for tp in tps if tp in self._paused]
        for tp in gone:
            del self._paused[tp]
        if gone:
            self._consumer.resume(*gone)

    # ------------------------------------------------------------------ one record

    def _deliver(
        self, record: ConsumerRecord, envelope: Envelope | None, route: _Route,
        stats: RetryStats,
    ) -> None:
        """Call the handler (again in place up to the stage's attempts), then, if it
        failed, send the record on to its next retry topic or the dead-letter topic."""
        policy = self.policy
        original = record if envelope is None else envelope.original(record)
        attempts = 0 if envelope is None else envelope.attempts
        for inline in range(1, policy.stage_attempts() + 1):
            attempts += 1
            self.current_attempt = attempts
            try:
                self.handler(original)
            except Exception as err:  # the handler's failure, whatever it is
                stats.failures += 1
                envelope = envelope or Envelope.first(record)
                if isinstance(err, policy.not_retriable) or attempts >= policy.max_attempts:
                    self._dead_letter_record(record, envelope, attempts, err, route)
                    stats.dead_lettered += 1
                    return
                if inline == policy.stage_attempts():
                    self._retry_record(record, envelope, attempts, err, route)
                    stats.retried += 1
                    return
                log.debug("retrying %s-%d@%d in place after %r", envelope.topic,
                          envelope.partition, envelope.offset, err)
                time.sleep(policy.backoff_s(inline))
            else:
                stats.handled += 1
                return

    def _retry_record(
        self, record: ConsumerRecord, envelope: Envelope, attempts: int,
        err: BaseException, route: _Route,
    ) -> None:
        stage = self.policy.next_stage(route.stage)
        topic = retry_topic(route.source, stage)
        due = self.clock.now_ms() + self.policy.delay_ms(stage)
        headers = envelope.retry_headers(attempts=attempts, due_ms=due, group=self.group,
                                         err=err)
        self._send(topic, record, headers, envelope.partition)

    def _dead_letter_record(
        self, record: ConsumerRecord, envelope: Envelope, attempts: int,
        err: BaseException, route: _Route,
    ) -> None:
        log.warning("dead-lettering %s-%d@%d after %d delivery(ies): %r", envelope.topic,
                    envelope.partition, envelope.offset, attempts, err)
        headers = envelope.dead_letter_headers(attempts=attempts, err=err)
        self._send(self._dead_letter[route.source], record, headers, envelope.partition)

    def _send(
        self, topic: str, record: ConsumerRecord, headers: list[tuple[str, bytes | None]],
        partition: int,
    ) -> None:
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = self._backend.topic_metadata(topic).partitions
        self._futures.append(self._producer.send(
            topic, record.value, record.key, headers, partition=partition % count
        ))

    def _commit(self, done: dict[TopicPartition, int]) -> None:
        """Flush what went to retry and dead-letter topics (raising if any send failed:
        nothing is committed then), then commit ``done``."""
        if self._futures:
            self._producer.flush()
            futures, self._futures = self._futures, []
            for future in futures:
                future.result()
        if not done:
            return
        try:
            self._consumer.commit(done)
        except CommitFailedError as err:
            # the partitions moved to another member, which reads them again from the
            # last commit: repeated, never lost
            log.info("commit refused after a rebalance (records will be repeated): %s", err)

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this RetryingConsumer is closed: make a new one")

    def close(self) -> None:
        """Flush, leave the group and release the clients. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._producer.close()
        finally:
            self._consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
