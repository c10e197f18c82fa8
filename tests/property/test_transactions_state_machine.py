"""Transactions against a model (issue 16): transactional producers (two transactional
ids, new instances fencing old ones), plain producers, commits, aborts, zombies, timeouts,
a commit whose process dies after its decision, and reopens of the store.

The model is every record appended (its partition, offset and value) and, per record,
the transaction it belongs to (None for a plain one) with that transaction's fate:
open, committed or aborted. After every step, for each partition:

* a ``read_committed`` read from the log start gives exactly the model's records below
  the partition's last stable offset that are plain or belong to a committed
  transaction, in offset order (nothing aborted or open, nothing lost, no phantom);
* the last stable offset is the first offset of the oldest open transaction there, or
  the log end;
* a ``read_uncommitted`` read gives every record appended.

And the group offsets a transaction sent are committed exactly when it commits.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import logstore
from logstore import ProducerFencedError, TopicPartition, TransactionalProducer
from logstore.backend.local import backend_for
from logstore.errors import InvalidTxnStateError, TransactionError
from logstore.transactions import TransactionCoordinator, transactions_for
from tests.conftest import FakeClock

PARTITIONS = 2
IDS = ("a", "b")
TIMEOUT_MS = 10_000


@dataclass
class Txn:
    """One transaction of the model."""

    fate: str = "open"  # open, committed, aborted
    registered: bool = False  # the coordinator knows it (a partition or offsets added)
    partitions: set[int] = field(default_factory=set)
    offsets: dict[int, int] = field(default_factory=dict)  # input partition -> offset sent


@dataclass
class Instance:
    producer: TransactionalProducer
    txn: Txn | None = None  # the open transaction, if any


class TransactionsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="logstore-txn-model-")
        self.root = Path(self.tmp) / "data"
        self.clock = FakeClock()
        self.store = logstore.open(self.root, clock=self.clock, maintenance=False)
        self.store.create_topic("t", partitions=PARTITIONS)
        self.store.create_topic("in", partitions=PARTITIONS)
        self.records: list[list[tuple[int, bytes, Txn | None]]] = [[] for _ in range(PARTITIONS)]
        self.instances: dict[str, Instance] = {}
        self.zombies: list[TransactionalProducer] = []
        self.open_txns: dict[str, Txn] = {}  # per transactional id, the one still open
        self.committed_offsets: dict[int, int] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.store.close()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def _value(self) -> bytes:
        self.counter += 1
        return b"v%d" % self.counter

    def _end(self, tid: str, fate: str) -> None:
        txn = self.open_txns.pop(tid, None)
        if txn is not None:
            txn.fate = fate
            if fate == "committed":
                self.committed_offsets.update(txn.offsets)
        inst = self.instances.get(tid)
        if inst is not None and inst.txn is txn:
            inst.txn = None

    def _fence(self, tid: str) -> None:
        inst = self.instances.pop(tid, None)
        if inst is not None:
            self.zombies.append(inst.producer)

    # ------------------------------------------------------------------ rules

    @rule(tid=st.sampled_from(IDS))
    def init(self, tid: str) -> None:
        self._fence(tid)
        producer = TransactionalProducer(
            self.store, tid, linger_ms=0, transaction_timeout_ms=TIMEOUT_MS
        )
        producer.init_transactions()
        self._end(tid, "aborted")  # an open transaction of the id is aborted
        self.instances[tid] = Instance(producer)

    def _idle(self) -> list[str]:
        return sorted(t for t, i in self.instances.items() if i.txn is None)

    def _busy(self) -> list[str]:
        return sorted(t for t, i in self.instances.items() if i.txn is not None)

    @precondition(lambda self: self._idle())
    @rule(data=st.data())
    def begin(self, data: st.DataObject) -> None:
        tid = data.draw(st.sampled_from(self._idle()))
        inst = self.instances[tid]
        inst.producer.begin_transaction()
        inst.txn = self.open_txns[tid] = Txn()

    @precondition(lambda self: self._busy())
    @rule(data=st.data(), partition=st.integers(0, PARTITIONS - 1), count=st.integers(1, 3))
    def send(self, data: st.DataObject, partition: int, count: int) -> None:
        inst = self.instances[data.draw(st.sampled_from(self._busy()))]
        assert inst.txn is not None
        futures = []
        values = []
        for _ in range(count):
            values.append(self._value())
            futures.append(inst.producer.send("t", values[-1], key=b"k", partition=partition))
        inst.producer.flush()
        inst.txn.registered = True
        inst.txn.partitions.add(partition)
        for value, future in zip(values, futures, strict=True):
            self.records[partition].append((future.result().offset, value, inst.txn))

    @precondition(lambda self: self._busy())
    @rule(data=st.data(), partition=st.integers(0, PARTITIONS - 1),
          offset=st.integers(0, 1000))
    def send_offsets(self, data: st.DataObject, partition: int, offset: int) -> None:
        inst = self.instances[data.draw(st.sampled_from(self._busy()))]
        assert inst.txn is not None
        inst.producer.send_offsets_to_transaction({TopicPartition("in", partition): offset}, "g")
        inst.txn.offsets[partition] = offset
        inst.txn.registered = True

    @rule(partition=st.integers(0, PARTITIONS - 1))
    def plain_send(self, partition: int) -> None:
        value = self._value()
        meta = self.store.append("t", value, key=b"p", partition=partition)
        self.records[partition].append((meta.offset, value, None))

    @precondition(lambda self: self._busy())
    @rule(data=st.data(), commit=st.booleans())
    def end(self, data: st.DataObject, commit: bool) -> None:
        tid = data.draw(st.sampled_from(self._busy()))
        inst = self.instances[tid]
        if commit:
            inst.producer.commit_transaction()
        else:
            inst.producer.abort_transaction()
        self._end(tid, "committed" if commit else "aborted")

    def _written(self) -> list[str]:
        return sorted(t for t, i in self.instances.items() if i.txn and i.txn.partitions)

    @precondition(lambda self: self._written())
    @rule(data=st.data())
    def die_after_the_commit_decision(self, data: st.DataObject) -> None:
        """The committing process dies after PrepareCommit, before its last marker; the
        maintenance turn (or the next instance) finishes the commit."""
        tid = data.draw(st.sampled_from(self._written()))
        inst = self.instances[tid]
        assert inst.txn is not None
        markers = data.draw(st.integers(0, len(inst.txn.partitions) - 1))
        written = set(inst.txn.partitions)
        coordinator = transactions_for(self.store)
        calls = {"n": 0}
        original = TransactionCoordinator._partition

        def dying(self_: TransactionCoordinator, *args: object) -> object:
            if calls["n"] >= markers:
                raise OSError("killed")
            calls["n"] += 1
            return original(self_, *args)  # type: ignore[arg-type]

        coordinator._partition = dying.__get__(coordinator)  # type: ignore[method-assign]
        try:
            with pytest.raises(OSError):
                inst.producer.commit_transaction()
        finally:
            del coordinator._partition
        assert coordinator.abort_expired() == 1  # finishes the decided commit
        self._end(tid, "committed")
        if data.draw(st.booleans()):
            # it was only paused: it resumes and writes on in the transaction it thinks
            # is still open, to a partition it added (so without adding it again), as a
            # client that does not check its own state would (logstore's producer refuses
            # sends while it ends a transaction; the store must refuse them anyway)
            tp = TopicPartition("t", min(written))
            stale = inst.producer
            with pytest.raises(TransactionError):
                backend_for(self.store).append(
                    tp, [(0, b"k", b"stale", ())], topic_id=self.store.topic("t").topic_id,
                    producer_id=stale.producer_id, producer_epoch=stale._producer_epoch,
                    base_sequence=1000, transactional=True,
                )
        self.instances.pop(tid)  # gone (its object is never used again)

    @precondition(lambda self: self.zombies)
    @rule(data=st.data())
    def zombie_writes(self, data: st.DataObject) -> None:
        zombie = data.draw(st.sampled_from(self.zombies))
        try:
            with contextlib.suppress(InvalidTxnStateError):  # (it may be in a transaction)
                zombie.begin_transaction()
            zombie.send("t", b"zombie", partition=0)
            zombie.commit_transaction()
        except ProducerFencedError:
            pass
        else:
            raise AssertionError("a fenced producer committed")

    def _registered(self) -> list[str]:
        return sorted(t for t, txn in self.open_txns.items() if txn.registered)

    @precondition(lambda self: self._registered())
    @rule()
    def time_out(self) -> None:
        """The clock passes every open transaction's timeout: the maintenance turn aborts
        those the coordinator knows of (a transaction only its producer knows of, begun
        with nothing added, has nothing to time out) and fences their producers."""
        expired = self._registered()
        self.clock.advance(TIMEOUT_MS + 1)
        assert transactions_for(self.store).abort_expired() == len(expired)
        for tid in expired:
            self._end(tid, "aborted")
            self._fence(tid)

    @rule()
    def reopen(self) -> None:
        """Every process dies (open transactions stay open) and the store reopens."""
        for tid in list(self.instances):
            self._fence(tid)
        self.zombies.clear()  # their objects belonged to the closed store
        self.store.close()
        self.store = logstore.open(self.root, clock=self.clock, maintenance=False)

    # ------------------------------------------------------------------ checks

    @invariant()
    def reads_match_the_model(self) -> None:
        for p in range(PARTITIONS):
            plog = self.store.topic("t").partition(p)
            model = sorted(self.records[p], key=lambda r: r[0])
            open_offsets = [o for o, _, t in model if t is not None and t.fate == "open"]
            lso = plog.last_stable_offset()
            expected_lso = min(open_offsets) if open_offsets else plog.log_end_offset
            assert lso == expected_lso, (p, lso, expected_lso)
            expected = [v for o, v, t in model
                        if o < lso and (t is None or t.fate == "committed")]
            assert _read(plog, committed=True) == expected
            assert _read(plog, committed=False) == [  # nothing of a zombie, either
                v for _, v, _ in model
            ]

    @invariant()
    def offsets_commit_with_their_transaction(self) -> None:
        backend = backend_for(self.store)
        if any(t.offsets for t in self.open_txns.values()):
            return  # an open transaction holds them: the fetch would say unstable
        got = {tp.partition: c.offset for tp, c in backend.committed_offsets("g").items()}
        assert got == self.committed_offsets


def _read(plog: object, *, committed: bool) -> list[bytes]:
    out: list[bytes] = []
    offset = plog.log_start_offset  # type: ignore[attr-defined]
    read = plog.read_committed if committed else plog.read_records  # type: ignore[attr-defined]
    while True:
        got = read(offset, max_bytes=256)
        if not got:
            return out
        out += [r.value for r in got]
        offset = got[-1].offset + 1


CI = os.environ.get("CI") == "true"


@pytest.mark.slow
def test_transactions_against_the_model() -> None:
    run_state_machine_as_test(
        TransactionsMachine,
        settings=settings(
            max_examples=40 if CI else 25,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
