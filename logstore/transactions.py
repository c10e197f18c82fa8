"""The transaction coordinator of an embedded store (Kafka's, KIP-98; kafka.md §5.2).

A transactional producer is known by its **transactional id**. The coordinator keeps,
per id, a :class:`TxnState` in ``<store>/__transactions/<id>.state`` (a checksummed state
file, replaced atomically and fsynced) and changes it under ``<id>.lock`` (an exclusive
``flock`` plus a thread mutex), so every process of the store takes turns, and a
process killed at any point leaves the last state it stored:

=================  ============================================================
state              meaning
=================  ============================================================
Empty              no transaction open (after :meth:`init_producer_id`)
Ongoing            partitions or offsets were added: a transaction is open
PrepareCommit      the commit is decided (durably): markers and offsets to write
PrepareAbort       the abort is decided: abort markers to write
CompleteCommit     the last transaction committed (then as Empty)
CompleteAbort      the last transaction aborted (then as Empty)
=================  ============================================================

* :meth:`init_producer_id` gives the id its producer id (random, 63 bits) and a new
  **epoch**, fencing every older instance: an open transaction of the id is aborted
  with the new epoch (its markers then refuse the old epoch in every partition it
  touched), a decided one is finished first.
* :meth:`add_partitions` records each partition *before* the producer writes to it,
  and :meth:`add_offsets` the consumer offsets the transaction commits (with the
  KIP-447 check that the consumer is still a member of its group's generation).
* :meth:`end_transaction` stores PrepareCommit/PrepareAbort, then writes a COMMIT/ABORT
  marker (:meth:`~logstore.storage.log.PartitionLog.append_marker`) into every partition
  of the transaction, commits its offsets (a commit), and stores CompleteCommit/Abort.
  A process killed after the Prepare state is stored leaves a decided transaction: the
  next call on its id, :meth:`settle_group` (before a group's offsets are read), or
  :meth:`abort_expired` (the maintenance thread) finishes it. Writing a marker or the
  offsets twice changes nothing a reader sees, so finishing is idempotent.
* A transaction open longer than its ``transaction_timeout_ms`` is aborted, with a new
  epoch (the producer is fenced), by :meth:`abort_expired`.
* **Offsets atomically with the output**: the offsets a transaction commits are kept in
  its state, not in the offsets log, until the commit is decided; while it is open, a
  group's offset fetch (:meth:`settle_group`) raises
  :class:`~logstore.errors.UnstableOffsetCommitError` for that group (Kafka's
  ``require_stable``), so a consumer taking over never reads an offset the open
  transaction is about to move. Pending entries ``__transactions/pending/<group>/<id>``
  tell which transactions hold a group's offsets.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from logstore.errors import (
    CorruptionError,
    InvalidConfigError,
    InvalidProducerIdMappingError,
    InvalidTxnStateError,
    ProducerFencedError,
    StorageError,
    TopicNotFoundError,
    UnstableOffsetCommitError,
)
from logstore.groups.files import group_dir_name, group_from_dir_name
from logstore.groups.txn_state import (
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    EMPTY,
    IDLE,
    ONGOING,
    PREPARE_ABORT,
    PREPARE_COMMIT,
    PREPARED,
    OffsetRow,
    TxnState,
)
from logstore.storage import statefile
from logstore.types import GroupMember, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

log = logging.getLogger(__name__)

TXN_DIR = "__transactions"
STATE_KIND = "txn-state"
MAX_TRANSACTION_TIMEOUT_MS = 900_000
"""Kafka's ``transaction.max.timeout.ms`` default: longer timeouts are refused."""
MAX_EPOCH = 32_766
"""Past this epoch the id gets a new producer id at epoch 0 (Kafka's rule: int16)."""

MemberCheck = Callable[[GroupMember], None]


class TransactionCoordinator:
    """The transaction coordinator of one open store (use :func:`transactions_for`).

    Args:
        store: the open, writable store.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._fs = store.fs
        self._dir = os.path.join(store.path, TXN_DIR)
        self._mutexes: dict[str, threading.RLock] = {}
        self._mutex = threading.Lock()
        self._txn_of: dict[int, str] = {}
        """Producer id -> transactional id, as last seen (refreshed on a miss)."""

    # ------------------------------------------------------------------ files

    def _path(self, txn_id: str, suffix: str) -> str:
        return os.path.join(self._dir, group_dir_name(txn_id) + suffix)

    def _pending_dir(self, group: str) -> str:
        return os.path.join(self._dir, "pending", group_dir_name(group))

    @contextmanager
    def _locked(self, txn_id: str) -> Iterator[TxnState | None]:
        """Hold ``txn_id``'s lock; yields its stored state (None: it has none)."""
        if not txn_id:
            raise InvalidConfigError("a transactional id must be a non-empty string")
        with self._mutex:
            mutex = self._mutexes.setdefault(txn_id, threading.RLock())
        with mutex:
            self._make_dir(self._dir)
            lock = self._fs.lock_file(self._path(txn_id, ".lock"))
            try:
                lock.acquire()
                yield self._read(txn_id)
            finally:
                lock.close()

    def _make_dir(self, path: str) -> None:
        """Create directory ``path`` if missing, durably: fsynced into its parent (else a
        power cut could drop it, and every state or entry in it)."""
        if not self._fs.dir_exists(path):
            self._fs.mkdir(path, exist_ok=True)
            self._fs.fsync_dir(os.path.dirname(path) or ".")

    def _read(self, txn_id: str) -> TxnState | None:
        path = self._path(txn_id, ".state")
        try:
            payload = statefile.read_state(self._fs, path, STATE_KIND)
        except FileNotFoundError:
            return None
        return TxnState.from_json(payload, path)

    def _store_state(self, st: TxnState) -> None:
        st.updated_ms = self._now()
        statefile.write_state(
            self._fs, self._path(st.transactional_id, ".state"), STATE_KIND, st.to_json()
        )

    def _now(self) -> int:
        return self._store.clock.now_ms()

    # ------------------------------------------------------------------ requests

    def init_producer_id(self, txn_id: str, timeout_ms: int) -> tuple[int, int]:
        """InitProducerId: ``(producer_id, epoch)`` for a new instance of ``txn_id``;
        older instances are fenced and their open transaction aborted."""
        if not 1 <= timeout_ms <= MAX_TRANSACTION_TIMEOUT_MS:
            raise InvalidConfigError(
                f"transaction_timeout_ms={timeout_ms} is not in 1..{MAX_TRANSACTION_TIMEOUT_MS}"
                f" (Kafka's transaction.max.timeout.ms)"
            )
        with self._locked(txn_id) as found:
            st = found
            if st is None:
                st = TxnState(txn_id, secrets.randbits(63), 0, timeout_ms)
            else:
                if st.state in PREPARED:
                    self._complete(st)
                if st.state == ONGOING:
                    st.epoch += 1  # (<= 32767) the abort's markers fence the old instance
                    self._decide(st, commit=False)
                    self._complete(st)
                self._bump(st)
                st.timeout_ms = timeout_ms
            st.state = EMPTY
            self._store_state(st)
            self._txn_of[st.producer_id] = txn_id
            return st.producer_id, st.epoch

    def add_partitions(
        self, txn_id: str, producer_id: int, epoch: int, tps: Sequence[TopicPartition]
    ) -> None:
        """AddPartitionsToTxn: the open transaction (opened now if none is) may write
        to ``tps``; durable before the producer writes there."""
        with self._locked(txn_id) as found:
            st = self._check(found, txn_id, producer_id, epoch)
            opened = self._open(st)
            known = {(t, p) for t, _, p in st.partitions}
            new = [tp for tp in tps if (tp.topic, tp.partition) not in known]
            if not new and not opened:
                return
            for tp in new:
                topic_id = self._store.topic(tp.topic).topic_id  # TopicNotFoundError
                st.partitions.append((tp.topic, topic_id, tp.partition))
            self._store_state(st)

    def add_offsets(
        self,
        txn_id: str,
        producer_id: int,
        epoch: int,
        group: str,
        offsets: Mapping[TopicPartition, tuple[int, str]],
        *,
        member: GroupMember | None = None,
        check_member: MemberCheck | None = None,
    ) -> None:
        """AddOffsetsToTxn + TxnOffsetCommit: commit ``offsets`` of ``group`` with the
        transaction. With ``member``, refused (IllegalGeneration/UnknownMemberId) if it
        is no longer a member of that generation (KIP-447: a zombie's offsets never
        commit)."""
        with self._locked(txn_id) as found:
            st = self._check(found, txn_id, producer_id, epoch)
            if member is not None and check_member is not None:
                check_member(member)
            self._open(st)
            pending = self._pending_dir(group)
            if not self._fs.dir_exists(pending):
                self._make_dir(os.path.dirname(pending))
                self._make_dir(pending)
            marker = os.path.join(pending, group_dir_name(txn_id))
            if not self._fs.exists(marker):
                with self._fs.open(marker, create=True):
                    pass
                self._fs.fsync_dir(pending)  # durable before the offsets it guards
            rows = {(t, p): (t, i, p, o, m) for t, i, p, o, m in st.offsets.get(group, [])}
            for tp, (offset, metadata) in offsets.items():
                topic_id = self._store.topic(tp.topic).topic_id
                row = (tp.topic, topic_id, tp.partition, offset, metadata)
                rows[(tp.topic, tp.partition)] = row
            st.offsets[group] = sorted(rows.values())
            self._store_state(st)

    def end_transaction(
        self, txn_id: str, producer_id: int, epoch: int, *, commit: bool
    ) -> list[TopicPartition]:
        """EndTxn: commit or abort the open transaction (a retry of the same end is
        answered again; ending no transaction is a no-op, as Kafka's empty commit).
        Returns the partitions the transaction's markers went to."""
        with self._locked(txn_id) as found:
            st = self._check(found, txn_id, producer_id, epoch)
            if st.state in IDLE:
                done = COMPLETE_COMMIT if commit else COMPLETE_ABORT
                if st.state not in (EMPTY, done):
                    # (a producer ends a transaction it added nothing to without asking)
                    raise self._wrong_state(st, "commit" if commit else "abort")
                return []  # a retried end, or nothing ever begun: answered again
            if st.state in PREPARED:
                if (st.state == PREPARE_COMMIT) != commit:
                    raise self._wrong_state(st, "commit" if commit else "abort")
            else:
                self._decide(st, commit=commit)
            self._complete(st)
            return [TopicPartition(t, p) for t, _, p in st.partitions]

    # ------------------------------------------------------------------ housekeeping

    def settle_group(self, group: str) -> None:
        """Before ``group``'s committed offsets are read: finish the decided transactions
        that hold offsets of it, abort the timed-out ones.

        Raises:
            UnstableOffsetCommitError: an open transaction holds offsets of ``group``.
        """
        pending = self._pending_dir(group)
        try:
            names = self._fs.listdir(pending)
        except (FileNotFoundError, StorageError):
            return
        for name in names:
            if name.startswith("~"):
                continue
            txn_id = group_from_dir_name(name)
            with self._locked(txn_id) as st:
                if st is not None and st.state == ONGOING and group in st.offsets:
                    if not self._expired(st):
                        raise UnstableOffsetCommitError(
                            f"transactional id {txn_id!r} has an open transaction holding "
                            f"offsets of group {group!r}: retry once it commits or aborts",
                            txn_id,
                        )
                    self._abort_expired_locked(st)
                elif st is not None and st.state in PREPARED:
                    self._complete(st)
                self._unlink(os.path.join(pending, name))

    def abort_expired(self) -> int:
        """Abort every transaction open past its timeout (fencing its producer) and
        finish the decided ones a killed process left; returns how many changed."""
        try:
            names = self._fs.listdir(self._dir)
        except (FileNotFoundError, StorageError):
            return 0
        changed = 0
        for st in self._each_state(names):
            if not (st.state in PREPARED or (
                st.state == ONGOING and self._expired(st)
            )):
                continue
            with self._locked(st.transactional_id) as fresh:
                if fresh is not None and fresh.state in PREPARED:
                    self._complete(fresh)
                    changed += 1
                elif fresh is not None and fresh.state == ONGOING and self._expired(fresh):
                    self._abort_expired_locked(fresh)
                    changed += 1
        return changed

    def verify_append(self, producer_id: int, epoch: int, tp: TopicPartition) -> None:
        """Before a transactional batch is appended to ``tp``: the producer's transaction
        must be open, at that epoch, with ``tp`` added (Kafka 4's KIP-890 verification).
        Without it a producer fenced or done with its transaction could open one in a
        partition that no coordinator would ever end (a "hanging" transaction holding
        the LSO back for good).

        Raises:
            ProducerFencedError, InvalidTxnStateError, InvalidProducerIdMappingError.
        """
        txn_id = self._txn_of.get(producer_id)
        st = self._read(txn_id) if txn_id is not None else None
        if st is None or st.producer_id != producer_id:
            self._txn_of = {s.producer_id: s.transactional_id for s in self.states()}
            txn_id = self._txn_of.get(producer_id)
            st = self._read(txn_id) if txn_id is not None else None
        if st is None or txn_id is None:
            raise InvalidProducerIdMappingError(
                f"transactional batch of producer id {producer_id} refused: no "
                f"transactional id has that producer id (call init_transactions() first)"
            )
        self._check(st, txn_id, producer_id, epoch)
        if st.state != ONGOING or not any(
            t == tp.topic and p == tp.partition for t, _, p in st.partitions
        ):
            raise InvalidTxnStateError(
                f"transactional batch of {txn_id!r} to {tp.topic}-{tp.partition} refused: "
                f"the partition is not in an open transaction of it (state {st.state}; add "
                f"it first: AddPartitionsToTxn)",
                txn_id,
            )

    def states(self) -> list[TxnState]:
        """Every transactional id's state (``logstore transactions list``)."""
        try:
            names = self._fs.listdir(self._dir)
        except (FileNotFoundError, StorageError):
            return []
        return list(self._each_state(sorted(names)))

    def _each_state(self, names: list[str]) -> Iterator[TxnState]:
        """The states of the state files among ``names``; a damaged one is skipped with
        an ERROR (one bad file must not stop timeouts or listings of the others)."""
        for name in names:
            if not name.endswith(".state") or name.startswith("~"):
                continue
            try:
                st = self._read(group_from_dir_name(name[: -len(".state")]))
            except CorruptionError as err:
                log.error("skipping a damaged transaction state: %s", err)
                continue
            if st is not None:
                yield st

    # ------------------------------------------------------------------ transitions

    def _check(
        self, st: TxnState | None, txn_id: str, producer_id: int, epoch: int
    ) -> TxnState:
        if st is None or st.producer_id != producer_id:
            raise InvalidProducerIdMappingError(
                f"producer id {producer_id} is not transactional id {txn_id!r}'s (call "
                f"init_transactions() first; another instance may have taken the id)",
                txn_id,
            )
        if epoch != st.epoch:
            raise ProducerFencedError(
                f"producer of transactional id {txn_id!r} (epoch {epoch}) was fenced: "
                f"epoch {st.epoch} took over (another instance called init_transactions(), "
                f"or its transaction timed out); close this producer",
                txn_id,
            )
        return st

    def _open(self, st: TxnState) -> bool:
        """Open a transaction unless one is (finishing a decided one first); returns
        whether it opened one (not stored yet)."""
        if st.state in PREPARED:
            self._complete(st)
        if st.state == ONGOING:
            return False
        st.state, st.partitions, st.offsets = ONGOING, [], {}
        st.started_ms = self._now()
        return True

    def _bump(self, st: TxnState) -> None:
        """A new epoch for a new instance (an open transaction's epochs are at most
        MAX_EPOCH, so the fencing abort's epoch + 1 still fits 16 bits)."""
        if st.epoch >= MAX_EPOCH:
            st.producer_id, st.epoch = secrets.randbits(63), 0
        else:
            st.epoch += 1

    def _expired(self, st: TxnState) -> bool:
        return self._now() - st.started_ms > st.timeout_ms

    def _abort_expired_locked(self, st: TxnState) -> None:
        st.epoch += 1  # the producer is fenced: its next request fails, its markers too
        self._decide(st, commit=False)
        self._complete(st)

    def _decide(self, st: TxnState, *, commit: bool) -> None:
        st.state = PREPARE_COMMIT if commit else PREPARE_ABORT
        self._store_state(st)

    def _complete(self, st: TxnState) -> None:
        """Write the decided transaction's markers and (a commit) its offsets, then store
        it complete. Idempotent: a process killed in here leaves it to the next call."""
        commit = st.state == PREPARE_COMMIT
        for topic, topic_id, partition in st.partitions:
            plog = self._partition(topic, topic_id, partition)
            if plog is not None:
                plog.append_marker(st.producer_id, st.epoch, commit=commit)
        if commit:
            for group, rows in st.offsets.items():
                self._commit_offsets(group, rows)
        for group in st.offsets:
            self._unlink(
                os.path.join(self._pending_dir(group), group_dir_name(st.transactional_id))
            )
        st.state = COMPLETE_COMMIT if commit else COMPLETE_ABORT
        st.offsets = {}
        self._store_state(st)

    def _partition(self, topic: str, topic_id: str | None, partition: int) -> Any:
        """The partition log to write a marker to (None: its topic was deleted since)."""
        try:
            t = self._store.topic(topic)
        except TopicNotFoundError:
            return None
        if topic_id is not None and t.topic_id != topic_id:
            return None
        return t.partition(partition)

    def _commit_offsets(self, group: str, rows: Sequence[OffsetRow]) -> None:
        offsets: dict[TopicPartition, tuple[int, str]] = {}
        ids: dict[str, str | None] = {}
        for topic, topic_id, partition, offset, metadata in rows:
            offsets[TopicPartition(topic, partition)] = (offset, metadata)
            ids[topic] = topic_id
        if offsets:
            self._store.offsets.commit(group, offsets, ids)

    def _unlink(self, path: str) -> None:
        self._fs.unlink(path, missing_ok=True)

    def _wrong_state(self, st: TxnState, what: str) -> InvalidTxnStateError:
        return InvalidTxnStateError(
            f"cannot {what} the transaction of {st.transactional_id!r}: it is {st.state} "
            f"(begin a new transaction)",
            st.transactional_id,
        )


_COORDINATORS: weakref.WeakKeyDictionary[Store, TransactionCoordinator] = (
    weakref.WeakKeyDictionary()
)
_COORDINATORS_LOCK = threading.Lock()


def transactions_for(store: Store) -> TransactionCoordinator:
    """The transaction coordinator of ``store`` (one per open store)."""
    with _COORDINATORS_LOCK:
        found = _COORDINATORS.get(store)
        if found is None:
            found = _COORDINATORS[store] = TransactionCoordinator(store)
        return found
