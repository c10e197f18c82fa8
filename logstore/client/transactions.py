"""The transactional producer: records to several partitions and a consumer group's
offsets, committed or aborted as one (Kafka's transactions, KIP-98 and KIP-447).

Consume-transform-produce exactly once::

    producer = TransactionalProducer(store, "orders-enricher-0")
    producer.init_transactions()          # fences older instances of this id
    consumer = Consumer(store, ["orders"], group_id="enricher",
                        enable_auto_commit=False, isolation_level="read_committed")
    while True:
        records = consumer.poll(timeout_ms=500)
        if not records:
            continue
        producer.begin_transaction()
        for r in records:
            producer.send("enriched", enrich(r.value), key=r.key)
        producer.send_offsets_to_transaction(
            {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records},
            consumer.group_metadata())
        producer.commit_transaction()     # output and input offsets, all or nothing

A process killed anywhere in there leaves either the whole transaction (its records
visible to ``read_committed`` readers, its offsets committed) or none of it: the next
instance's ``init_transactions()`` aborts what was open (or finishes what was decided),
and a consumer taking over the partitions waits for an open transaction that holds
their offsets. Records of an aborted transaction stay in the log (offsets are never
reused) but ``read_committed`` consumers skip them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from logstore.client.backend import Backend
from logstore.client.batches import RecordFuture
from logstore.client.producer import Producer
from logstore.config import DEFAULT_TRANSACTION_TIMEOUT_MS
from logstore.errors import (
    InvalidConfigError,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    LogstoreError,
    ProducerFencedError,
    TransactionAbortableError,
)
from logstore.types import GroupMember, HeadersArg, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

_UNINITIALIZED = "uninitialized"
_READY = "ready"
_IN_TRANSACTION = "in transaction"
_ENDING = "ending its transaction"
_FENCED = "fenced"


class TransactionalProducer(Producer):
    """A :class:`~logstore.client.producer.Producer` whose records are sent in
    transactions (Kafka's producer with ``transactional.id``). Thread-safe for
    ``send``; begin/commit/abort from one thread.

    Args:
        store: the open store (or another backend).
        transactional_id: who this producer is across restarts: a new instance with the
            same id fences the old one and aborts its open transaction. One id per
            producer instance that must not run twice (e.g. per input partition, or
            per application instance with a stable name).
        transaction_timeout_ms: a transaction open longer is aborted by the store's
            maintenance (and this producer fenced).
        **options: the :class:`Producer` options (``linger_ms``, ``compression``, ...).
    """

    def __init__(
        self,
        store: Store | Backend,
        transactional_id: str,
        *,
        transaction_timeout_ms: int = DEFAULT_TRANSACTION_TIMEOUT_MS,
        **options: Any,
    ) -> None:
        if not isinstance(transactional_id, str) or not transactional_id:
            raise InvalidConfigError(
                f"transactional_id {transactional_id!r} must be a non-empty string"
            )
        if options.pop("idempotent", True) is not True:
            raise InvalidConfigError("a transactional producer is always idempotent")
        super().__init__(store, idempotent=False, **options)
        self.transactional_id = transactional_id
        self.transaction_timeout_ms = transaction_timeout_ms
        self._transactional = True
        self._txn_state = _UNINITIALIZED
        self._txn_partitions: set[tuple[str, int]] = set()
        self._txn_error: BaseException | None = None
        self._offsets_sent = False
        self._txn_lock = threading.Lock()

    # ------------------------------------------------------------------ the API

    def init_transactions(self) -> None:
        """Take over the transactional id (Kafka's ``initTransactions()``): older
        instances are fenced, an open transaction of theirs is aborted. Call once,
        before the first transaction."""
        if self._txn_state == _IN_TRANSACTION:
            raise InvalidTxnStateError(
                "init_transactions() inside a transaction: commit or abort it first",
                self.transactional_id,
            )
        producer_id, epoch = self._backend.init_producer_id(
            self.transactional_id, self.transaction_timeout_ms
        )
        with self._lock:
            self.producer_id, self._producer_epoch = producer_id, epoch
            self._sequences.clear()
        self._txn_state = _READY

    def begin_transaction(self) -> None:
        """Start a transaction: the records sent until it ends belong to it."""
        self._require(_READY, "begin_transaction()")
        with self._txn_lock:
            self._txn_partitions.clear()
            self._txn_error = None
            self._offsets_sent = False
        self._txn_state = _IN_TRANSACTION

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """:meth:`Producer.send` inside the open transaction.

        Raises:
            InvalidTxnStateError: no transaction is open.
        """
        if self._txn_state != _IN_TRANSACTION:
            self._require(_IN_TRANSACTION, "send()")
        return super().send(topic, value, key, headers, partition, timestamp)

    def send_offsets_to_transaction(
        self,
        offsets: Mapping[TopicPartition, int] | Iterable[tuple[TopicPartition, int]],
        group_metadata: GroupMember | str,
    ) -> None:
        """Commit a consumer group's offsets (the next offset to read, per partition)
        with the transaction: they become the group's committed offsets if, and when, it
        commits. Pass the consumer's :meth:`~logstore.client.consumer.Consumer.
        group_metadata` so a consumer fenced by a rebalance cannot commit (KIP-447).

        Raises:
            IllegalGenerationError, UnknownMemberIdError: the consumer was fenced.
            ProducerFencedError, InvalidTxnStateError.
        """
        self._require(_IN_TRANSACTION, "send_offsets_to_transaction()")
        pairs = offsets.items() if isinstance(offsets, Mapping) else offsets
        chosen = {TopicPartition(*tp): (int(offset), "") for tp, offset in pairs}
        if isinstance(group_metadata, str):
            group, member = group_metadata, None
        else:
            group = group_metadata.group
            member = group_metadata if group_metadata.generation >= 0 else None
        with self._txn_lock:
            self._offsets_sent = True  # (even if refused: the end request then tells)
        self._call(
            self._backend.txn_offset_commit,
            self.transactional_id, self.producer_id, self._producer_epoch, group, chosen,
            member=member,
        )

    def commit_transaction(self) -> None:
        """Write what is queued, then commit: every record of the transaction becomes
        visible to ``read_committed`` readers and its offsets are committed, at once.

        Raises:
            TransactionAbortableError: a record of the transaction could not be written:
                call :meth:`abort_transaction` (then try again in a new transaction).
            ProducerFencedError: another instance took the transactional id (or the
                transaction timed out): close this producer.
        """
        if self._txn_state == _ENDING:  # a commit that failed in its end request: again
            self._txn_state = _IN_TRANSACTION
        self._require(_IN_TRANSACTION, "commit_transaction()")
        self._txn_state = _ENDING  # from here on send() refuses (its batch would miss)
        try:
            self.flush()
        except BaseException:
            self._txn_state = _IN_TRANSACTION
            raise
        error = self._txn_error
        if error is not None:
            self._txn_state = _IN_TRANSACTION  # abort it
        if isinstance(error, InvalidProducerEpochError | ProducerFencedError):
            self._txn_state = _FENCED
            if isinstance(error, ProducerFencedError):
                raise error
            raise ProducerFencedError(
                f"producer of transactional id {self.transactional_id!r} was fenced: "
                f"{error}", self.transactional_id,
            ) from error
        if error is not None:
            raise TransactionAbortableError(
                f"transaction of {self.transactional_id!r} cannot commit: a record of it "
                f"could not be written ({error}); call abort_transaction()",
                self.transactional_id,
            ) from error
        self._end(commit=True)

    def abort_transaction(self) -> None:
        """Abort the transaction: its records stay in the log, never seen by
        ``read_committed`` readers; its offsets are not committed."""
        if self._txn_state == _ENDING:  # a commit that failed in its end request
            self._txn_state = _IN_TRANSACTION
        self._require(_IN_TRANSACTION, "abort_transaction()")
        self._txn_state = _ENDING
        self.flush()
        self._end(commit=False)
        if self._txn_error is not None:
            # a write of unknown outcome broke the sequences: start a new epoch
            self.init_transactions()

    def close(self) -> None:
        """Abort an open transaction (best effort), then :meth:`Producer.close`."""
        if self._txn_state == _IN_TRANSACTION:
            # if this fails, the coordinator aborts it at its timeout, or the next instance
            with contextlib.suppress(LogstoreError):
                self.abort_transaction()
        super().close()

    # ------------------------------------------------------------------ internals

    def _require(self, state: str, what: str) -> None:
        if self._txn_state == _FENCED:
            raise ProducerFencedError(
                f"{what}: the producer of transactional id {self.transactional_id!r} was "
                f"fenced by a newer instance; close it", self.transactional_id,
            )
        if self._txn_state != state:
            hint = {
                _UNINITIALIZED: "call init_transactions() first",
                _READY: "call begin_transaction() first",
                _IN_TRANSACTION: "commit or abort the open transaction first",
                _ENDING: "the transaction is being committed or aborted",
            }[self._txn_state]
            raise InvalidTxnStateError(
                f"{what} is not allowed now: the producer is {self._txn_state} ({hint})",
                self.transactional_id,
            )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ProducerFencedError:
            self._txn_state = _FENCED
            raise

    def _end(self, *, commit: bool) -> None:
        with self._txn_lock:
            added = bool(self._txn_partitions) or self._offsets_sent
        if added:  # (a transaction nothing was added to is the producer's alone: Kafka's
            # producers send no EndTxn for it either)
            self._call(
                self._backend.end_txn,
                self.transactional_id, self.producer_id, self._producer_epoch, commit=commit,
            )
        self._txn_state = _READY

    def _before_write(self, tp: tuple[str, int]) -> None:
        """Add ``tp`` to the transaction before its first batch goes there."""
        with self._txn_lock:
            if tp in self._txn_partitions:
                return
        self._call(
            self._backend.add_partitions_to_txn,
            self.transactional_id, self.producer_id, self._producer_epoch,
            [TopicPartition(*tp)],
        )
        with self._txn_lock:
            self._txn_partitions.add(tp)

    def _write(self, batch: Any) -> None:
        super()._write(batch)
        if batch.error is not None:
            with self._txn_lock:
                if self._txn_error is None:
                    self._txn_error = batch.error

    def _new_producer_id(self) -> None:
        """A write of unknown outcome: the transaction can only abort (the abort starts
        a new epoch, so no later batch can reuse a sequence the failed one may hold)."""
