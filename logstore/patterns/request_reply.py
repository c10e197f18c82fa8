"""Request-reply over topics: a :class:`Requester` sends a request and waits for its reply;
a :class:`Responder` (a group member, any number of processes) answers each request.

The shape is Spring Kafka's ``ReplyingKafkaTemplate``: every request carries a unique
correlation id (``kafka_correlationId`` there, :data:`CORRELATION_ID` here), the topic to
reply to (``kafka_replyTopic``, :data:`REPLY_TOPIC`) and, when the requester reads only
one partition of it, that partition (``kafka_replyPartition``, :data:`REPLY_PARTITION`).
The responder copies the correlation id onto its reply and sends it there.

* A requester reads its replies in one background thread and resolves the future of the
  request whose correlation id a reply carries. Replies for ids it does not wait for (any
  more) are dropped: another requester's (on a shared reply topic without a partition of
  its own), a late reply to a request that timed out, a second reply to a request a
  responder answered twice (it crashed between reply and commit).
* By default a requester makes a private reply topic (one partition) and deletes it on
  ``close()``. Several requesters may share one reply topic instead, each reading its own
  partition (``reply_partition=``): none ever reads another's replies.
* A handler that raises sends an error reply (:data:`ERROR` and :data:`ERROR_CLASS`
  headers, a null value); ``request()`` raises it as :class:`RemoteHandlerError`.
* Delivery: the responder commits after the replies of a poll are written, so a request is
  answered at least once; a requester hands each correlation id's first reply out, once.

The header names and the errors live in :mod:`logstore.patterns.replies` (re-exported
here). Only the clients are used: this works on any backend.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TYPE_CHECKING, NamedTuple, Self

from logstore.client.backend import Backend, resolve_backend
from logstore.client.batches import RecordFuture
from logstore.client.consumer import Consumer
from logstore.client.producer import Producer
from logstore.errors import (
    CommitFailedError,
    InvalidConfigError,
    LogFailedError,
    LogstoreError,
    StorageError,
    StoreClosedError,
)
from logstore.patterns.replies import (
    CORRELATION_ID,
    ERROR,
    ERROR_CLASS,
    REPLY_PARTITION,
    REPLY_TOPIC,
    REQUEST_REPLY_HEADERS,
    RemoteHandlerError,
    RequestReplyError,
    RequestTimeoutError,
    header_text,
)
from logstore.types import ConsumerRecord, Header, HeadersArg, RecordMetadata, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

__all__ = [
    "CORRELATION_ID", "ERROR", "ERROR_CLASS", "REPLY_PARTITION", "REPLY_TOPIC",
    "REQUEST_REPLY_HEADERS", "RemoteHandlerError", "ReplyFuture", "RequestReplyError",
    "RequestTimeoutError", "Requester", "Responder", "header_text",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 30_000
_POLL_SLICE_MS = 50  # the reply reader looks at its deadlines at least this often
_BACKSTOP_S = 5.0  # request() stops waiting this long after its deadline, whatever happens

Handler = Callable[[ConsumerRecord], "bytes | tuple[bytes | None, HeadersArg] | None"]
"""A responder's handler: the reply's value, or ``(value, headers)``."""


def _header_list(headers: HeadersArg) -> list[Header]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, v) for k, v in items]  # the producer checks the types


class ReplyFuture(Future[ConsumerRecord]):
    """The future reply of one request, with its ``correlation_id`` and ``topic``."""

    def __init__(self, correlation_id: str, topic: str) -> None:
        super().__init__()
        self.correlation_id = correlation_id
        self.topic = topic


class _Pending(NamedTuple):
    future: ReplyFuture
    topic: str
    timeout_ms: int


class Requester:
    """Sends requests and hands out their replies. Thread-safe; use as a context manager.

    Args:
        store: the open store (or another backend).
        reply_topic: where replies come; None makes a private one-partition topic
            (deleted on close). It must exist if given.
        reply_partition: read only this partition of ``reply_topic`` (and ask for replies
            there): give each requester sharing a reply topic its own. None: read every
            partition of a given ``reply_topic``, dropping other requesters' replies.
        timeout_ms: the default time a request waits for its reply.
        linger_ms: the request producer's ``linger_ms`` (0: send at once).
        on_dropped: called (in the reader thread) with each reply read for no waiting
            request: late, a duplicate, another requester's, or without an id.
    """

    def __init__(
        self,
        store: Store | Backend,
        *,
        reply_topic: str | None = None,
        reply_partition: int | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        linger_ms: int = 0,
        on_dropped: Callable[[ConsumerRecord], object] | None = None,
    ) -> None:
        if timeout_ms <= 0:
            raise InvalidConfigError(f"timeout_ms={timeout_ms} must be > 0")
        self._backend = resolve_backend(store)
        self._owns_topic = reply_topic is None
        if reply_topic is None:
            reply_topic = f"replies-{uuid.uuid4().hex}"
            self._backend.create_topic(reply_topic, 1)
            reply_partition = 0
        partitions = self._backend.topic_metadata(reply_topic).partitions
        if reply_partition is not None and not 0 <= reply_partition < partitions:
            raise InvalidConfigError(
                f"reply_partition={reply_partition} is not a partition of {reply_topic!r} "
                f"(it has {partitions}): pick one in 0..{partitions - 1}"
            )
        self.reply_topic = reply_topic
        self.reply_partition = reply_partition
        self.timeout_ms = timeout_ms
        self.dropped = 0
        """Replies read for no waiting request (late, duplicate, or another's)."""
        self.on_dropped = on_dropped
        self._reply_headers: list[Header] = [(REPLY_TOPIC, reply_topic.encode())]
        if reply_partition is not None:
            self._reply_headers.append((REPLY_PARTITION, str(reply_partition).encode()))
        self._consumer = Consumer(self._backend, enable_auto_commit=False)
        tps = [
            TopicPartition(reply_topic, p)
            for p in ([reply_partition] if reply_partition is not None else range(partitions))
        ]
        self._consumer.assign(tps)
        self._consumer.seek_to_end(*tps)  # before any request: every reply comes after
        self._producer = Producer(self._backend, linger_ms=linger_ms)
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(
            target=self._read_replies, name=f"requester-{reply_topic}", daemon=True
        )
        self._reader.start()

    # ------------------------------------------------------------------ requests

    def request(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersArg = None,
        timeout_ms: int | None = None,
    ) -> ConsumerRecord:
        """Send a request to ``topic`` and wait for its reply.

        Raises:
            RequestTimeoutError: no reply within ``timeout_ms``.
            RemoteHandlerError: the responder's handler raised.
            TopicNotFoundError, InvalidRecordError: the request could not be sent.
        """
        timeout_ms = self.timeout_ms if timeout_ms is None else timeout_ms
        future = self.request_async(
            topic, value, key=key, headers=headers, timeout_ms=timeout_ms
        )
        try:  # the reader thread times requests out; this is only a backstop
            return future.result(timeout_ms / 1000 + _BACKSTOP_S)
        except FutureTimeoutError:
            if self._finish(future.correlation_id, error=RequestTimeoutError(
                future.correlation_id, topic, timeout_ms
            )):
                log.error("requester %s: the reply reader did not time out request %s; "
                          "timed out by the caller", self.reply_topic, future.correlation_id)
            return future.result(0)

    def request_async(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersArg = None,
        timeout_ms: int | None = None,
    ) -> ReplyFuture:
        """Send a request to ``topic``; return at once a future of its reply (which
        raises as :meth:`request` does). Any number may be in flight."""
        if self._closed.is_set():
            raise StoreClosedError("request on a closed Requester: make a new one")
        timeout_ms = self.timeout_ms if timeout_ms is None else timeout_ms
        if timeout_ms <= 0:
            raise InvalidConfigError(f"timeout_ms={timeout_ms} must be > 0")
        cid = uuid.uuid4().hex
        future = ReplyFuture(cid, topic)
        future.set_running_or_notify_cancel()
        with self._lock:
            self._pending[cid] = _Pending(future, topic, timeout_ms)
            heapq.heappush(self._deadlines, (time.monotonic() + timeout_ms / 1000, cid))
        all_headers = [
            *_header_list(headers), (CORRELATION_ID, cid.encode()), *self._reply_headers
        ]
        try:
            sent = self._producer.send(topic, value, key=key, headers=all_headers)
        except BaseException:
            with self._lock:
                self._pending.pop(cid, None)
            raise

        def failed(_meta: RecordMetadata | None, error: BaseException | None) -> None:
            if error is not None:
                self._finish(cid, error=error)

        sent.add_callback(failed)
        return future

    def pending(self) -> int:
        """How many requests wait for their reply."""
        with self._lock:
            return len(self._pending)

    def _finish(
        self,
        cid: str,
        *,
        reply: ConsumerRecord | None = None,
        error: BaseException | None = None,
    ) -> bool:
        with self._lock:
            waiting = self._pending.pop(cid, None)
        if waiting is None:
            return False
        if reply is not None and header_text(reply, ERROR) is not None:
            error = RemoteHandlerError(waiting.topic, reply)
        with contextlib.suppress(InvalidStateError):  # cancelled by its caller
            if error is not None:
                waiting.future.set_exception(error)
            elif reply is not None:
                waiting.future.set_result(reply)
        return True

    # ------------------------------------------------------------------ the reply reader

    def _read_replies(self) -> None:
        while not self._closed.is_set():
            try:
                records = self._consumer.poll(timeout_ms=self._wait_ms())
            except LogstoreError as err:
                log.warning("requester %s: reading replies failed: %s", self.reply_topic, err)
                self._fail_all(err)
                self._closed.wait(0.1)
                continue
            except Exception:  # never let the reader die: requests would wait forever
                log.exception("requester %s: reading replies failed", self.reply_topic)
                self._closed.wait(0.1)
                self._expire()
                continue
            for record in records:
                cid = header_text(record, CORRELATION_ID)
                if cid is None or not self._finish(cid, reply=record):
                    self.dropped += 1
                    if self.on_dropped is not None:
                        try:
                            self.on_dropped(record)
                        except Exception:
                            log.exception("requester %s: on_dropped raised", self.reply_topic)
            self._expire()

    def _wait_ms(self) -> int:
        with self._lock:
            first = self._deadlines[0][0] if self._deadlines else None
        if first is None:
            return _POLL_SLICE_MS
        return max(0, min(_POLL_SLICE_MS, int((first - time.monotonic()) * 1000) + 1))

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = []
            while self._deadlines and self._deadlines[0][0] <= now:
                cid = heapq.heappop(self._deadlines)[1]
                if cid in self._pending:
                    due.append((cid, self._pending[cid]))
            if not self._pending:
                self._deadlines.clear()
        for cid, waiting in due:  # unless its reply won the race
            self._finish(cid, error=RequestTimeoutError(cid, waiting.topic, waiting.timeout_ms))

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            cids = list(self._pending)
        for cid in cids:
            self._finish(cid, error=error)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop reading replies (requests still waiting fail with StoreClosedError),
        close the clients and delete the private reply topic. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._reader.join()
        self._fail_all(StoreClosedError(f"the Requester on {self.reply_topic!r} was closed"))
        try:
            self._producer.close()
            self._consumer.close()
        finally:
            if self._owns_topic:
                try:
                    self._backend.delete_topic(self.reply_topic)
                except LogstoreError as err:
                    log.warning("could not delete reply topic %s: %s", self.reply_topic, err)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Responder:
    """Answers requests on ``topic`` as a member of consumer group ``group``: the group's
    members (threads or processes) share the requests. Run it with :meth:`start` (a
    background thread), :meth:`serve` or :meth:`poll_once`.

    ``handler(record)`` returns the reply's value, or ``(value, headers)``; if it raises,
    an error reply carries the exception's class and text. Requests without a
    :data:`CORRELATION_ID` or :data:`REPLY_TOPIC` are skipped (counted in ``.skipped``).
    The offsets are committed after each poll's replies are written (at least once).
    """

    def __init__(
        self,
        store: Store | Backend,
        topic: str,
        group: str,
        handler: Handler,
        *,
        linger_ms: int = 0,
        max_poll_records: int = 500,
    ) -> None:
        self.topic = topic
        self.group = group
        self.handler = handler
        self.handled = 0
        self.skipped = 0
        backend = resolve_backend(store)
        self._consumer = Consumer(
            backend,
            [topic],
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=max_poll_records,
        )
        self._producer = Producer(backend, linger_ms=linger_ms)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def poll_once(self, timeout_ms: int = 100) -> int:
        """Answer the requests one poll returns (waiting up to ``timeout_ms``), then
        commit; returns how many were answered."""
        records = self._consumer.poll(timeout_ms=timeout_ms)
        sent: list[tuple[ConsumerRecord, RecordFuture]] = []  # the replies in flight
        for record in records:
            cid = header_text(record, CORRELATION_ID)
            reply_topic = header_text(record, REPLY_TOPIC)
            if cid is None or reply_topic is None:
                self.skipped += 1
                log.warning(
                    "responder %s: %s-%d@%d has no %s or %s header: skipped", self.group,
                    record.topic, record.partition, record.offset, CORRELATION_ID, REPLY_TOPIC,
                )
                continue
            partition = header_text(record, REPLY_PARTITION)
            value, headers = self._answer(record)
            headers.append((CORRELATION_ID, cid.encode()))
            try:
                sent.append((record, self._producer.send(
                    reply_topic, value, key=cid.encode(), headers=headers,
                    partition=None if partition is None else int(partition),
                )))
            except (LogstoreError, ValueError) as err:  # e.g. the requester is gone
                log.warning("responder %s: reply to %s failed: %s", self.group, reply_topic, err)
        # A reply that failed to be written for a reason that may pass (a failed write)
        # is answered again: its request is read again, nothing from it on is committed.
        # One that cannot be written (its requester's topic is gone) is dropped.
        again: dict[TopicPartition, int] = {}
        answered = 0
        for record, future in sent:
            error = future.exception()
            if error is None:
                answered += 1
                continue
            log.warning("responder %s: a reply was not written: %s", self.group, error)
            tp = TopicPartition(record.topic, record.partition)
            if isinstance(error, StorageError | LogFailedError) and tp not in again:
                again[tp] = record.offset
        if records:
            for tp, offset in again.items():
                self._consumer.seek(tp, offset)
            try:
                self._consumer.commit()
            except CommitFailedError as err:  # moved in a rebalance: the new owner repeats
                log.info("responder %s: commit refused: %s", self.group, err)
        self.handled += answered
        return answered

    def _answer(self, record: ConsumerRecord) -> tuple[bytes | None, list[Header]]:
        try:
            result = self.handler(record)
        except Exception as err:  # the requester gets it as RemoteHandlerError
            return None, [
                (ERROR_CLASS, type(err).__name__.encode()),
                (ERROR, str(err).encode("utf-8", "replace")),
            ]
        if isinstance(result, tuple):
            value, headers = result
            return value, _header_list(headers)
        return result, []

    def assignment(self) -> list[TopicPartition]:
        """The request partitions this member answers now."""
        return self._consumer.assignment()

    def serve(self, stop: threading.Event | None = None) -> None:
        """Answer requests until ``stop`` (or :meth:`close`) is set."""
        while not self._stop.is_set() and not (stop is not None and stop.is_set()):
            try:
                self.poll_once(100)
            except LogstoreError as err:  # fenced (the next poll rejoins), topic deleted
                log.warning("responder %s: %s", self.group, err)
                self._stop.wait(0.1)

    def start(self) -> Self:
        """Serve in a background thread (until :meth:`close`)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve, name=f"responder-{self.group}", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and leave the group (each poll's replies were committed).
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._producer.close()
        finally:
            self._consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

