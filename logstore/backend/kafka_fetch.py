"""The fetch sessions of :class:`~logstore.backend.kafka.KafkaBackend`: assign-mode
librdkafka consumers (no group) that serve the backend seam's ``fetch``.

A reader (a consumer's fetcher) asks for records of some partitions from some offsets;
a session that left off at those offsets goes on, so librdkafka's prefetched records are
used rather than thrown away; a partition new to a session is added to it
(``incremental_assign``), one at another offset moved alone. Partitions nobody asked for
in :data:`UNASKED_S` leave the session; a partition whose records pile up unread is
paused (:data:`BUFFERED_MAX`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from logstore.backend.rdkafka import confluent, kafka_error
from logstore.config import READ_COMMITTED
from logstore.errors import LogstoreError, OffsetOutOfRangeError, PartitionNotFoundError
from logstore.types import ConsumerRecord, TopicPartition

if TYPE_CHECKING:
    from logstore.backend.kafka import KafkaBackend

UNASKED_S = 30.0
"""A fetch session stops reading a partition nobody asked it for in this long."""
BUFFERED_MAX = 20_000
"""A fetch session pauses a partition with this many records read ahead and not asked
for (a reader paused it, or reads others first), resuming it at half."""
CATCH_UP_S = 1.0
"""How long a fetch that does not wait may still wait for records the partition has but
librdkafka has not fetched yet (its first fetch after an assign or a seek)."""


class FetchSession:
    """An assign-mode librdkafka consumer (no group) and where it left off, so that a
    reader asking for the next records keeps what librdkafka prefetched."""

    def __init__(self, backend: KafkaBackend, isolation: str) -> None:
        ck = confluent()
        self.isolation = isolation
        self.consumer = ck.Consumer(backend.client_settings(**{
            "group.id": f"logstore-fetch-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "false",
            "auto.offset.reset": "error",
            "isolation.level": "read_committed" if isolation == READ_COMMITTED
            else "read_uncommitted",
            "fetch.wait.max.ms": "50",
        }))
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.next: dict[TopicPartition, int] = {}
        self.buffered: dict[TopicPartition, deque[ConsumerRecord | _Failure]] = {}
        self.waited: dict[TopicPartition, tuple[int, int]] = {}
        self.asked: dict[TopicPartition, float] = {}
        self.paused: set[TopicPartition] = set()
        self.busy = False
        self.last_used = time.monotonic()

    def continues(self, positions: Mapping[TopicPartition, int]) -> bool:
        """Whether a fetch of ``positions`` goes on where this session left off: every
        partition asked for is assigned here at the offset it will deliver next (a
        reader may ask for fewer partitions than before: those it still has records of
        are left out; their prefetched records stay)."""
        return all(
            tp in self.assigned and self.next.get(tp) == offset
            for tp, offset in positions.items()
        )

    def release(self) -> None:
        self.last_used = time.monotonic()
        self.busy = False

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            self.consumer.close()

    def _aim(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read ``positions`` from the offsets given: partitions new to the session are
        added, those at another offset re-added there (their prefetched records
        dropped), the others left as they are; partitions nobody asked for in
        :data:`UNASKED_S` are removed."""
        ck = confluent()
        now = time.monotonic()
        stale = [tp for tp in self.assigned
                 if tp not in positions and now - self.asked.get(tp, 0) > UNASKED_S]
        moved = [tp for tp, offset in positions.items()
                 if tp in self.assigned and self.next.get(tp) != offset]
        for tp in stale + moved:
            self._forget(tp)
        add = [tp for tp in positions if tp not in self.assigned]
        if add:
            self.consumer.incremental_assign(
                [ck.TopicPartition(tp.topic, tp.partition, positions[tp]) for tp in add]
            )
        self.assigned = self.assigned | frozenset(add)
        for tp in add:
            self.next[tp] = positions[tp]

    def fetch(
        self,
        positions: Mapping[TopicPartition, int],
        max_records: int,
        max_bytes: int,
        max_wait_ms: int,
        backend: KafkaBackend,
    ) -> dict[TopicPartition, list[ConsumerRecord] | LogstoreError]:
        for tp in positions:
            if tp.partition < 0:
                raise PartitionNotFoundError(f"{tp.topic} has no partition {tp.partition}")
        now = time.monotonic()
        for tp in positions:
            self.asked[tp] = now
        if not self.continues(positions):
            self._aim(positions)
        out: dict[TopicPartition, list[ConsumerRecord] | LogstoreError] = {}
        wanted = max_records * len(positions)
        if any(len(self.buffered.get(tp, ())) < max_records for tp in positions):
            self._take(self.consumer.consume(wanted, 0))  # what librdkafka has queued
        self._drain(out, max_records, max_bytes, backend, positions)
        deadline = time.monotonic() + max(0, max_wait_ms) / 1000
        while not out:
            self._bound()  # (a partition paused for its read-ahead, drained now, resumes)
            wait = max(0.0, deadline - time.monotonic())
            if wait == 0 and self._behind(positions, backend, out):
                wait = CATCH_UP_S  # records exist: librdkafka is fetching them
                deadline = time.monotonic() + wait
            if out:  # a position out of range, answered at once
                break
            first = self.consumer.poll(wait)
            if first is not None:
                self._take([first, *self.consumer.consume(wanted, 0)])
                self._drain(out, max_records, max_bytes, backend, positions)
            elif time.monotonic() >= deadline:
                break
        self._bound()
        return out

    def _behind(
        self,
        positions: Mapping[TopicPartition, int],
        backend: KafkaBackend,
        out: dict[TopicPartition, list[ConsumerRecord] | LogstoreError],
    ) -> bool:
        """Whether some partition has records at or after the offset asked for, by the
        high watermark librdkafka last heard (asked once after an assign): an answer
        without records would then only mean librdkafka has not fetched them yet (a
        store answers a fetch that does not wait with the records it has). Waited for
        in vain once (the offsets up to the high watermark hold no record for the
        reader: transaction markers, an aborted transaction), the same position and
        high watermark are not waited for again. A position outside the partition's
        offsets (asked of the broker again, not from what librdkafka last heard) is
        answered OffsetOutOfRangeError in ``out`` at once, as a store answers it (not
        when librdkafka's fetch of it comes back)."""
        ck = confluent()
        for tp, offset in positions.items():
            key = ck.TopicPartition(tp.topic, tp.partition)
            try:
                low, high = self.consumer.get_watermark_offsets(key, cached=True)
                if high < 0 or not low <= offset <= high:
                    low, high = self.consumer.get_watermark_offsets(
                        key, timeout=backend.timeout_s, cached=False
                    )
            except ck.KafkaException:
                continue
            if not low <= offset <= high:
                out[tp] = OffsetOutOfRangeError(offset, low, high)
                self._forget(tp)
                return False
            if offset < high and self.waited.get(tp) != (offset, high):
                self.waited[tp] = (offset, high)
                return True
        return False

    def _take(self, messages: list[Any]) -> None:
        """Queue librdkafka's ``messages`` per partition as records (the hot loop of a
        fetch: one tuple per message, no per-message lookups beyond the partition's)."""
        missing = confluent().TIMESTAMP_NOT_AVAILABLE
        buffered, assigned = self.buffered, self.assigned
        new = tuple.__new__
        queues: dict[tuple[str, int], deque[ConsumerRecord | _Failure] | None] = {}
        for msg in messages:
            key = (msg.topic(), msg.partition())
            if key in queues:
                queue = queues[key]
            else:
                tp = TopicPartition(*key)
                queue = queues[key] = (
                    buffered.setdefault(tp, deque()) if tp in assigned else None
                )
            if queue is None:
                continue
            err = msg.error()
            if err is not None:
                queue.append(_Failure(err))
                continue
            kind, ts = msg.timestamp()
            queue.append(new(ConsumerRecord, (
                key[0], key[1], msg.offset(), -1 if kind == missing else ts,
                msg.key(), msg.value(), msg.headers() or (),
            )))

    def _drain(
        self,
        out: dict[TopicPartition, list[ConsumerRecord] | LogstoreError],
        max_records: int,
        max_bytes: int,
        backend: KafkaBackend,
        asked: Iterable[TopicPartition],
    ) -> None:
        for tp in asked:
            queue = self.buffered.get(tp)
            if not queue:
                continue
            taken: list[ConsumerRecord] = []
            size = 0
            while queue and len(taken) < max_records:
                head = queue[0]
                if isinstance(head, _Failure):
                    if not taken:
                        queue.popleft()
                        out[tp] = head.error(tp, self.next.get(tp, -1), backend)
                        self._forget(tp)
                    break
                record_size = len(head.key or b"") + len(head.value or b"") + 64
                if taken and size + record_size > max_bytes:
                    break
                queue.popleft()
                taken.append(head)
                size += record_size
            if taken:
                out[tp] = taken
                self.next[tp] = taken[-1].offset + 1
                self.waited.pop(tp, None)

    def _forget(self, tp: TopicPartition) -> None:
        """After an error (or when ``tp`` is removed or moved) the position in ``tp`` is
        unknown here: the next fetch of it re-adds it at the offset asked for."""
        self.next.pop(tp, None)
        self.buffered.pop(tp, None)
        self.waited.pop(tp, None)
        self.paused.discard(tp)  # (a partition unassigned is not paused any more)
        if tp in self.assigned:
            self.assigned = self.assigned - {tp}
            self.consumer.incremental_unassign(
                [confluent().TopicPartition(tp.topic, tp.partition)]
            )

    def _bound(self) -> None:
        """Pause the partitions whose records pile up unread here (a reader that stopped
        asking for one, say: paused it), resume those drained to half the bound."""
        ck = confluent()
        full = [tp for tp, q in self.buffered.items()
                if tp not in self.paused and len(q) > BUFFERED_MAX]
        drained = [tp for tp in self.paused
                   if len(self.buffered.get(tp, ())) <= BUFFERED_MAX // 2]
        if full:
            self.consumer.pause([ck.TopicPartition(tp.topic, tp.partition) for tp in full])
            self.paused.update(full)
        if drained:
            self.consumer.resume([ck.TopicPartition(tp.topic, tp.partition) for tp in drained])
            self.paused.difference_update(drained)


class _Failure:
    """An error librdkafka reported for one partition, in the order of its records."""

    def __init__(self, err: Any) -> None:
        self.err = err

    def error(self, tp: TopicPartition, offset: int, backend: KafkaBackend) -> LogstoreError:
        ck = confluent()
        code = self.err.code()
        if code in (ck.KafkaError._AUTO_OFFSET_RESET, ck.KafkaError.OFFSET_OUT_OF_RANGE):
            try:
                start, end = backend.offset_range(tp)
            except LogstoreError as err:
                return err
            return OffsetOutOfRangeError(offset, start, end)
        return kafka_error(self.err, f"reading {tp.topic}-{tp.partition}")

