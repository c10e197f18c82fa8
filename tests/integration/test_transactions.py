"""Transactions through the Python API (issue 16): a transactional producer's records
are seen by read_committed consumers only once committed, never when aborted; offsets sent
to the transaction commit with it; a new instance fences the old one and aborts its open
transaction; a timed-out transaction is aborted; a consumer taking over waits for an open
transaction holding its group's offsets (KIP-447); the state survives a reopen.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import logstore
from logstore import (
    Consumer,
    InvalidTxnStateError,
    Producer,
    ProducerFencedError,
    TopicPartition,
    TransactionalProducer,
    UnstableOffsetCommitError,
)
from logstore.backend.local import backend_for
from logstore.maintenance import maintain_once
from logstore.transactions import transactions_for
from tests.conftest import FakeClock

T0 = 1_700_000_000_000


def _values(store: logstore.Store, topic: str, *, committed: bool = True) -> list[bytes]:
    consumer = Consumer(
        store, auto_offset_reset="earliest",
        isolation_level="read_committed" if committed else "read_uncommitted",
    )
    parts = store.topic(topic).config.partitions
    consumer.assign([TopicPartition(topic, p) for p in range(parts)])
    out: list[bytes] = []
    while True:
        got = consumer.poll(timeout_ms=50)
        if not got:
            break
        out += [r.value for r in got if r.value is not None]
    consumer.close()
    return out


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with logstore.open(tmp_path / "data", maintenance=False) as s:
        s.create_topic("out", partitions=2)
        s.create_topic("in", partitions=1)
        yield s


def test_committed_records_are_seen_aborted_ones_never(store: logstore.Store) -> None:
    p = TransactionalProducer(store, "t1")
    p.init_transactions()
    p.begin_transaction()
    for i in range(5):
        p.send("out", b"a%d" % i, key=b"k%d" % i)
    p.flush()
    assert _values(store, "out") == []  # open: nothing stable yet
    assert sorted(_values(store, "out", committed=False)) == [b"a%d" % i for i in range(5)]
    p.commit_transaction()
    p.begin_transaction()
    p.send("out", b"aborted", key=b"k0")
    p.abort_transaction()
    p.begin_transaction()
    p.send("out", b"b", key=b"k0")
    p.commit_transaction()
    p.close()
    assert sorted(_values(store, "out")) == sorted([b"a%d" % i for i in range(5)] + [b"b"])
    assert b"aborted" in _values(store, "out", committed=False)


def test_offsets_commit_with_the_transaction_only(store: logstore.Store) -> None:
    backend = backend_for(store)
    p = TransactionalProducer(store, "t2")
    p.init_transactions()
    p.begin_transaction()
    p.send("out", b"x", key=b"k")
    p.send_offsets_to_transaction({TopicPartition("in", 0): 7}, "g")
    with pytest.raises(UnstableOffsetCommitError):
        backend.committed_offsets("g")
    p.abort_transaction()
    assert backend.committed_offsets("g") == {}
    p.begin_transaction()
    p.send_offsets_to_transaction({TopicPartition("in", 0): 9}, "g")
    p.commit_transaction()
    assert backend.committed_offsets("g")[TopicPartition("in", 0)].offset == 9
    p.close()


def test_a_new_instance_fences_the_old_and_aborts_its_transaction(
    store: logstore.Store,
) -> None:
    old = TransactionalProducer(store, "t3")
    old.init_transactions()
    old.begin_transaction()
    old.send("out", b"zombie", partition=0)
    old.flush()
    new = TransactionalProducer(store, "t3")
    new.init_transactions()  # aborts the zombie's transaction
    assert _values(store, "out") == []
    old.send("out", b"late", partition=0)
    with pytest.raises(ProducerFencedError):
        old.commit_transaction()
    with pytest.raises(ProducerFencedError):
        old.begin_transaction()
    new.begin_transaction()
    new.send("out", b"fresh", partition=1)
    new.commit_transaction()
    assert _values(store, "out") == [b"fresh"]
    new.close()
    old._txn_state = "ready"  # (so close() does not try to abort)
    old.close()


def test_send_outside_a_transaction_is_refused(store: logstore.Store) -> None:
    p = TransactionalProducer(store, "t4")
    with pytest.raises(InvalidTxnStateError, match="init_transactions"):
        p.begin_transaction()
    p.init_transactions()
    with pytest.raises(InvalidTxnStateError, match="begin_transaction"):
        p.send("out", b"x")
    p.close()


def test_a_timed_out_transaction_is_aborted_and_its_producer_fenced(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    with logstore.open(tmp_path / "d", clock=clock, maintenance=False) as store:
        store.create_topic("out")
        p = TransactionalProducer(store, "t5", transaction_timeout_ms=1000)
        p.init_transactions()
        p.begin_transaction()
        p.send("out", b"slow")
        p.flush()
        assert transactions_for(store).abort_expired() == 0
        clock.advance(1001)
        assert maintain_once(store).transactions_ended == 1  # the maintenance thread's turn
        assert _values(store, "out") == []
        plain = Producer(store)
        plain.send("out", b"after")
        plain.close()
        assert _values(store, "out") == [b"after"]  # the LSO moved on
        with pytest.raises(ProducerFencedError):
            p.commit_transaction()


def test_plain_records_after_an_open_transaction_wait_for_it(store: logstore.Store) -> None:
    p = TransactionalProducer(store, "t6")
    p.init_transactions()
    p.begin_transaction()
    p.send("out", b"t", partition=0)
    p.flush()
    plain = Producer(store)
    plain.send("out", b"plain", partition=0)
    plain.close()
    assert _values(store, "out") == []  # behind the LSO, as in Kafka
    p.commit_transaction()
    assert _values(store, "out") == [b"t", b"plain"]
    p.close()


def test_the_transaction_state_survives_a_reopen(tmp_path: Path) -> None:
    with logstore.open(tmp_path / "d", maintenance=False) as store:
        store.create_topic("out")
        p = TransactionalProducer(store, "t7")
        p.init_transactions()
        p.begin_transaction()
        p.send("out", b"open")
        p.send_offsets_to_transaction({TopicPartition("out", 0): 1}, "g")
        p.flush()
        producer_id = p.producer_id
    with logstore.open(tmp_path / "d", maintenance=False) as store:
        assert _values(store, "out") == []
        with pytest.raises(UnstableOffsetCommitError):
            backend_for(store).committed_offsets("g")
        again = TransactionalProducer(store, "t7")
        again.init_transactions()
        # epoch 1 aborted the open transaction (fencing epoch 0); the new instance has 2
        assert again.producer_id == producer_id and again._producer_epoch == 2
        assert backend_for(store).committed_offsets("g") == {}
        again.begin_transaction()
        again.send("out", b"next")
        again.commit_transaction()
        assert _values(store, "out") == [b"next"]
        again.close()


def test_a_transactional_append_outside_an_open_transaction_is_refused(
    store: logstore.Store,
) -> None:
    backend = backend_for(store)
    producer_id, epoch = backend.init_producer_id("t8")
    tp = TopicPartition("out", 0)
    record = [(T0, b"k", b"v", ())]
    topic_id = store.topic("out").topic_id
    with pytest.raises(InvalidTxnStateError, match="not in an open transaction"):
        backend.append(tp, record, topic_id=topic_id, producer_id=producer_id,
                       producer_epoch=epoch, base_sequence=0, transactional=True)
    backend.add_partitions_to_txn("t8", producer_id, epoch, [tp])
    with pytest.raises(ProducerFencedError):
        backend.append(tp, record, topic_id=topic_id, producer_id=producer_id,
                       producer_epoch=epoch - 1, base_sequence=0, transactional=True)
    backend.append(tp, record, topic_id=topic_id, producer_id=producer_id,
                   producer_epoch=epoch, base_sequence=0, transactional=True)
    assert store.topic("out").partition(0).last_stable_offset() == 0  # open
    backend.end_txn("t8", producer_id, epoch, commit=False)
    assert _values(store, "out") == []


def test_ends_that_contradict_the_last_outcome_are_refused(store: logstore.Store) -> None:
    backend = backend_for(store)
    p = TransactionalProducer(store, "t9")
    p.init_transactions()
    p.begin_transaction()
    p.send("out", b"x", partition=0)
    p.commit_transaction()
    p.begin_transaction()  # nothing added: the producer ends it without asking
    p.abort_transaction()
    backend.end_txn("t9", p.producer_id, p._producer_epoch, commit=True)  # a retry: fine
    with pytest.raises(InvalidTxnStateError, match="CompleteCommit"):
        backend.end_txn("t9", p.producer_id, p._producer_epoch, commit=False)
    p.close()


def test_a_damaged_state_file_does_not_stop_the_others(store: logstore.Store) -> None:
    good = TransactionalProducer(store, "good", transaction_timeout_ms=1)
    good.init_transactions()
    good.begin_transaction()
    good.send("out", b"x", partition=0)
    good.flush()
    damaged = TransactionalProducer(store, "damaged")
    damaged.init_transactions()
    state = Path(store.path) / "__transactions" / "damaged.state"
    state.write_bytes(b"garbage")
    import time

    time.sleep(0.01)
    coordinator = transactions_for(store)
    assert coordinator.abort_expired() == 1  # "good" timed out; "damaged" skipped
    assert [st.transactional_id for st in coordinator.states()] == ["good"]
    good._txn_state = "ready"
    good.close()
    damaged.close()
