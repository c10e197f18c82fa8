"""Simulated power loss during transactions (issue 16): the crash-state explorer of
``test_power_loss.py`` (:mod:`tests.reliability.crashfs`) over the transaction
coordinator, its markers and the offsets it commits.

The workload (:func:`t1_transactions`) starts from a store built and closed with the real
file system (topics ``out``, 2 partitions in segments of 700 bytes so they roll and write
producer snapshots while transactions are open, and ``in``; the group ``g``'s offset of
``in-0`` at 1, committed by an earlier transaction, so ``__transactions/pending/g/``
exists), then runs under :class:`~tests.reliability.crashfs.RecordingFS`, with flush
"always" and no maintenance thread: plain appends between the transactions, and, through
the public :class:`~logstore.TransactionalProducer`, transactions over both partitions:
committed, aborted, two with ``send_offsets_to_transaction`` for ``g`` (one committed,
one aborted), one left open and ended by a second instance's ``init_transactions()``
(fencing), and one of a second transactional id left open at the end, holding offsets
of ``g``. The ledger records what each call was told and when: a transaction whose
``commit_transaction()`` returned is acknowledged committed; one whose
``abort_transaction()`` (or the fencing ``init_transactions()``) returned, aborted.
Two short workloads cover a store's first transaction (which makes ``__transactions/``)
and a group's first transactional offsets (which make ``pending/g/``): both found bugs
(below; fixed).

Every distinct crash state (a seeded sample past :data:`STATE_BUDGET`) is opened with the
real file system and checked:

* X1 the store opens;
* X2 a consumer's offset fetch of ``g`` first (``settle_group``, which finishes a decided
  transaction holding ``g``'s offsets) either answers ``UnstableOffsetCommitError``
  while an Ongoing transaction holds them, or the offsets ``g`` has once everything is
  settled (a decided commit it did not finish would let a consumer re-read input whose
  output is committed);
* X3 the LSO is never stuck: after the maintenance turn at the crash's time
  (``abort_expired()``, which finishes decided transactions) every transaction still open
  in a partition is one its coordinator holds Ongoing with that partition (so it ends at
  its timeout);
* then the coordinator settles (the clock past every timeout, and, by the state's
  digest, ``abort_expired()`` or a new instance's ``init_transactions()`` of each id):
  X4 the LSO is the log end in every partition;
* X5 a ``read_committed`` reader reads every record of each acknowledged-committed
  transaction, in the order sent; no record of an acknowledged-aborted one; a transaction
  acknowledged neither way all or nothing (and only if its commit was asked before the
  crash); nothing it reads is unknown or read twice; every acknowledged plain record is
  there (to ``read_uncommitted`` and ``read_committed`` readers), byte-identical, in order;
* X6 ``g``'s committed offset is the one of the last transaction X5 found committed that
  holds offsets of it (the setup's when none);
* X7 a new transaction of each id commits after recovery, and is read.

Planted bugs (the coordinator's state file not fsynced before its rename; the markers
written before the commit decision is stored) must be caught, in the short workload
:func:`t2_commit_abort`. Figures go to the ``reliability_report`` fixture.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import logstore
from logstore import TopicPartition, TransactionalProducer, UnstableOffsetCommitError
from logstore.backend.local import backend_for
from logstore.groups.txn_state import ONGOING, TxnState
from logstore.storage.files import temp_path
from logstore.storage.log import PartitionLog
from logstore.storage.statefile import encode_state
from logstore.transactions import STATE_KIND, TransactionCoordinator, transactions_for
from tests.conftest import FakeClock
from tests.reliability import test_power_loss as power_loss
from tests.reliability.crashfs import CrashModel, CrashState, RecordingFS, live_entries
from tests.reliability.limits import time_limit
from tests.reliability.test_power_loss import (
    NEVER,
    OPEN_TIMEOUT_S,
    T0,
    Outcome,
    quiet_logstore,
    summary,
)

CI = os.environ.get("CI") == "true"
STATE_BUDGET = 600
"""Distinct crash states checked (a seeded sample past it): about 20 s with CI=true."""
TOPIC = "out"
INPUT = TopicPartition("in", 0)
GROUP = "g"
SETUP_OFFSET = 1
"""``g``'s committed offset of ``in-0`` in the setup."""
TIMEOUT_MS = 60_000
"""Every transaction's ``transaction_timeout_ms``."""
LINGER_MS = 3_600_000
"""The producers write when flushed only (every run numbers the same I/O operations)."""


# --------------------------------------------------------------------------- ledger


def make_value(label: str, partition: int, n: int, size: int = 110) -> bytes:
    """A self-verifying payload naming its writer: header, seeded filler, sha256 (hex)."""
    body = b"%s|%d|%d|" % (label.encode(), partition, n)
    body += random.Random(body).randbytes(max(0, size - len(body) - 64))
    return body + hashlib.sha256(body).hexdigest().encode()


@dataclass
class Txn:
    """One transaction: what it sent, and the trace positions of what it was told."""

    name: str
    txn_id: str
    records: list[tuple[int, bytes]] = field(default_factory=list)  # (partition, value)
    offset: int | None = None  # of ``in-0`` for GROUP, sent with it
    commit_asked: int = NEVER  # the note before commit_transaction()
    committed: int = NEVER  # the ack after it returned
    aborted: int = NEVER  # the ack after abort_transaction() (or a fencing init) returned


@dataclass
class Plain:
    partition: int
    value: bytes
    attempt: int
    acked: int


@dataclass
class Ledger:
    txns: list[Txn] = field(default_factory=list)
    plains: list[Plain] = field(default_factory=list)
    txn_ids: list[str] = field(default_factory=list)
    end_ms: int = T0
    """The clock at the workload's end: no transaction had timed out yet."""


class Driver:
    """Runs the workload's steps, noting each in the trace before it starts and acking it
    when it returns."""

    def __init__(self, ledger: Ledger, clock: FakeClock, rec: RecordingFS) -> None:
        self.ledger = ledger
        self.clock = clock
        self.rec = rec

    def _mark(self, kind: str, label: str, info: object = None) -> int:
        position = self.rec.position
        getattr(self.rec, kind)(label, info)
        return position

    def producer(self, store: logstore.Store, txn_id: str, fences: Txn | None = None
                 ) -> TransactionalProducer:
        """A new instance of ``txn_id``, initialised (fencing older ones: the open
        transaction ``fences`` is acknowledged aborted when the init returns)."""
        if txn_id not in self.ledger.txn_ids:
            self.ledger.txn_ids.append(txn_id)
        producer = TransactionalProducer(
            store, txn_id, transaction_timeout_ms=TIMEOUT_MS, linger_ms=LINGER_MS
        )
        self._mark("note", "init", txn_id)
        producer.init_transactions()
        acked = self._mark("ack", "init", txn_id)
        if fences is not None:
            fences.aborted = acked
        return producer

    def plain(self, store: logstore.Store, partition: int) -> None:
        n = len(self.ledger.plains)
        value = make_value("plain", partition, n, 90)
        attempt = self._mark("note", "plain", (partition, n))
        store.append(TOPIC, value, key=b"p%d" % n, partition=partition,
                     timestamp=self.clock.now)
        acked = self._mark("ack", "plain", (partition, n))
        self.ledger.plains.append(Plain(partition, value, attempt, acked))

    def begin(self, producer: TransactionalProducer, name: str) -> Txn:
        self.clock.advance(50)
        txn = Txn(name, producer.transactional_id)
        self.ledger.txns.append(txn)
        producer.begin_transaction()
        return txn

    def send(self, producer: TransactionalProducer, txn: Txn, *partitions: int,
             flush: bool = False) -> None:
        for p in partitions:
            value = make_value(txn.name, p, len(txn.records))
            txn.records.append((p, value))
            producer.send(TOPIC, value, key=b"%s-%d" % (txn.name.encode(), len(txn.records)),
                          partition=p)
        if flush:
            self._mark("note", "flush", txn.name)
            producer.flush()
            self._mark("ack", "flush", txn.name)

    def offsets(self, producer: TransactionalProducer, txn: Txn, offset: int) -> None:
        txn.offset = offset
        self._mark("note", "offsets", (txn.name, offset))
        producer.send_offsets_to_transaction({INPUT: offset}, GROUP)
        self._mark("ack", "offsets", (txn.name, offset))

    def commit(self, producer: TransactionalProducer, txn: Txn) -> None:
        txn.commit_asked = self._mark("note", "commit", txn.name)
        producer.commit_transaction()
        txn.committed = self._mark("ack", "commit", txn.name)

    def abort(self, producer: TransactionalProducer, txn: Txn) -> None:
        self._mark("note", "abort", txn.name)
        producer.abort_transaction()
        txn.aborted = self._mark("ack", "abort", txn.name)


# --------------------------------------------------------------------------- workload


@dataclass
class Prepared:
    rec: RecordingFS
    ledger: Ledger


SETUPS = ("fresh", "coordinator", "used")
"""What the baseline store knows of transactions: none; the coordinator's directory
(an id initialised); a transaction with offsets of ``g`` committed (``pending/g`` made)."""


def setup(root: str, clock: FakeClock, kind: str) -> None:
    """The baseline (one of :data:`SETUPS`), built with the real file system and closed
    (so synced); ``g``'s offset of ``in-0`` is :data:`SETUP_OFFSET`."""
    with logstore.open(root, clock=clock, maintenance=False) as store:
        store.create_topic(TOPIC, 2, segment_bytes=700, index_interval_bytes=150,
                           flush="always")
        store.create_topic(INPUT.topic, 1, flush="always")
        for i in range(8):
            store.append(INPUT.topic, b"input %d" % i, partition=0, timestamp=clock.now)
        store.offsets.commit(GROUP, {INPUT: (SETUP_OFFSET - 1, "")})
        if kind == "fresh":
            store.offsets.commit(GROUP, {INPUT: (SETUP_OFFSET, "")})
            return
        with TransactionalProducer(store, "tx-setup", linger_ms=LINGER_MS) as producer:
            producer.init_transactions()
            if kind == "used":
                producer.begin_transaction()
                producer.send_offsets_to_transaction({INPUT: SETUP_OFFSET}, GROUP)
                producer.commit_transaction()
            else:
                store.offsets.commit(GROUP, {INPUT: (SETUP_OFFSET, "")})


def t1_transactions(root: str, clock: FakeClock) -> Prepared:
    """See the module docstring; the store is left as a power cut leaves it (no close)."""
    setup(root, clock, "used")
    ledger = Ledger()
    rec = RecordingFS(root)
    d = Driver(ledger, clock, rec)
    store = logstore.open(root, fs=rec, clock=clock, maintenance=False)
    a1 = d.producer(store, "tx-a")  # the store's first: makes __transactions/
    d.plain(store, 0)
    d.plain(store, 1)
    t = d.begin(a1, "c1")
    d.send(a1, t, 0, 0, 1)
    d.commit(a1, t)
    d.plain(store, 1)
    t = d.begin(a1, "a2")
    d.send(a1, t, 1, 0, flush=True)
    d.send(a1, t, 1)
    d.abort(a1, t)
    t = d.begin(a1, "c3")
    d.send(a1, t, 0, 1, 1)
    d.offsets(a1, t, 3)
    d.commit(a1, t)
    zombie = d.begin(a1, "f4")
    d.send(a1, zombie, 1, 0, 1, flush=True)
    d.plain(store, 0)
    a2 = d.producer(store, "tx-a", fences=zombie)  # fences a1, aborts f4
    t = d.begin(a2, "a5")
    d.send(a2, t, 0, 1)
    d.offsets(a2, t, 4)
    d.abort(a2, t)
    t = d.begin(a2, "c6")
    d.send(a2, t, 1, 0)
    d.offsets(a2, t, 5)
    d.commit(a2, t)
    b1 = d.producer(store, "tx-b")
    t = d.begin(b1, "o7")
    d.send(b1, t, 0, 1, flush=True)
    d.offsets(b1, t, 6)
    d.plain(store, 1)
    return cut_power(store, rec, ledger, clock, a1, a2, b1)


def cut_power(store: logstore.Store, rec: RecordingFS, ledger: Ledger, clock: FakeClock,
              *producers: TransactionalProducer) -> Prepared:
    """End as a power cut does: nothing more is written (the producers' threads stop
    without aborting, the logs are dropped unflushed)."""
    ledger.end_ms = clock.now
    for producer in producers:
        producer._txn_state = "ready"
        producer.close()
    for p in range(2):
        store.partition(TOPIC, p)._abandon()
    store.partition(INPUT.topic, 0)._abandon()
    store.offsets._log._abandon()
    store.close()
    return Prepared(rec, ledger)


def first_transaction(root: str, clock: FakeClock) -> Prepared:
    """The store's first transaction, left open: ``init_transactions()`` makes
    ``__transactions/``, the transaction writes to both partitions."""
    setup(root, clock, "fresh")
    ledger = Ledger()
    rec = RecordingFS(root)
    d = Driver(ledger, clock, rec)
    store = logstore.open(root, fs=rec, clock=clock, maintenance=False)
    a1 = d.producer(store, "tx-a")
    t = d.begin(a1, "o1")
    d.send(a1, t, 0, 1, flush=True)
    d.plain(store, 0)
    return cut_power(store, rec, ledger, clock, a1)


def first_group_offsets(root: str, clock: FakeClock) -> Prepared:
    """A transaction committing the first offsets of ``g`` any transaction sent (its
    ``pending/g`` directory is made), on a store whose coordinator directory exists."""
    setup(root, clock, "coordinator")
    ledger = Ledger()
    rec = RecordingFS(root)
    d = Driver(ledger, clock, rec)
    store = logstore.open(root, fs=rec, clock=clock, maintenance=False)
    a1 = d.producer(store, "tx-a")
    t = d.begin(a1, "c1")
    d.send(a1, t, 0)
    d.offsets(a1, t, 3)
    d.commit(a1, t)
    return cut_power(store, rec, ledger, clock, a1)


def t2_commit_abort(root: str, clock: FakeClock) -> Prepared:
    """A short one for the planted bugs: a transaction over both partitions with offsets
    of ``g`` committed, then one aborted."""
    setup(root, clock, "used")
    ledger = Ledger()
    rec = RecordingFS(root)
    d = Driver(ledger, clock, rec)
    store = logstore.open(root, fs=rec, clock=clock, maintenance=False)
    a1 = d.producer(store, "tx-a")
    t = d.begin(a1, "c1")
    d.send(a1, t, 0, 1)
    d.offsets(a1, t, 3)
    d.commit(a1, t)
    t = d.begin(a1, "a2")
    d.send(a1, t, 1, 0)
    d.abort(a1, t)
    return cut_power(store, rec, ledger, clock, a1)


WORKLOADS: dict[str, Callable[[str, FakeClock], Prepared]] = {
    "t1-transactions": t1_transactions,
    "t2-commit-abort": t2_commit_abort,
    "first-transaction": first_transaction,
    "first-group-offsets": first_group_offsets,
}


# --------------------------------------------------------------------------- checking


Rows = dict[int, list[tuple[int, bytes | None]]]
"""Per partition of ``out``: (offset, value) of every record read."""


def read_all(store: logstore.Store, *, committed: bool) -> Rows:
    out: Rows = {}
    for p in range(2):
        plog = store.partition(TOPIC, p)
        read = plog.read_committed if committed else plog.read_records
        end = plog.log_end_offset
        rows: list[tuple[int, bytes | None]] = []
        offset = plog.log_start_offset
        while offset < end:
            batch = read(offset)
            if not batch:
                break
            rows += [(r.offset, r.value) for r in batch]
            offset = batch[-1].offset + 1
        out[p] = rows
    return out


def group_offset(store: logstore.Store) -> int | None:
    """``g``'s committed offset of ``in-0`` as a consumer fetches it (settling first)."""
    found = backend_for(store).committed_offsets(GROUP, [INPUT]).get(INPUT)
    return None if found is None else found.offset


def open_transactions(store: logstore.Store) -> list[str]:
    """X3: the transactions open in a partition that no Ongoing coordinator state ends."""
    states = transactions_for(store).states()
    problems = []
    for p in range(2):
        plog = store.partition(TOPIC, p)
        if plog.last_stable_offset() == plog.log_end_offset:
            continue
        with plog._lock:
            ongoing = dict(plog._producer_view().ongoing)
        for pid, first in sorted(ongoing.items()):
            st = next((s for s in states if s.producer_id == pid), None)
            if st is None or st.state != ONGOING or not any(
                (t, q) == (TOPIC, p) for t, _, q in st.partitions
            ):
                problems.append(
                    f"X3 {TOPIC}-{p}: producer {pid}'s transaction is open from offset "
                    f"{first}, but its coordinator state is "
                    f"{'missing' if st is None else (st.state, st.partitions)}: the LSO "
                    f"stays there for good"
                )
    return problems


def check_rows(everything: Rows, visible: Rows, ledger: Ledger, state: CrashState,
               final_offset: int | None) -> list[str]:
    """X5 and X6 on what the settled store holds."""
    problems: list[str] = []
    known: dict[bytes | None, str] = {p.value: "plain" for p in ledger.plains}
    for t in ledger.txns:
        known.update((v, t.name) for _, v in t.records)
    for p, rows in everything.items():
        values = [v for _, v in rows]
        unknown = [o for o, v in rows if v not in known]
        if unknown:
            problems.append(f"X5 {TOPIC}-{p}: phantom records at offsets {unknown}")
        if len(set(values)) != len(values):
            problems.append(f"X5 {TOPIC}-{p}: a record is in the log twice")
        if not {v for _, v in visible[p]} <= set(values):
            problems.append(f"X5 {TOPIC}-{p}: read_committed reads what the log lacks")
    seen = {v: (p, o) for p, rows in visible.items() for o, v in rows}
    present = {v: (p, o) for p, rows in everything.items() for o, v in rows}
    for plain in ledger.plains:
        where = f"plain record {ledger.plains.index(plain)}"
        if plain.acked < state.last and (plain.value not in seen or
                                         plain.value not in present):
            problems.append(f"X5 {TOPIC}-{plain.partition}: acked {where} lost "
                            f"(read_committed: {plain.value in seen})")
    for p in range(2):
        order = [v for _, v in visible[p] if known.get(v) == "plain"]
        want = [x.value for x in ledger.plains if x.partition == p and x.value in seen]
        if order != want:
            problems.append(f"X5 {TOPIC}-{p}: plain records out of order")
    expected_offset: int | None = SETUP_OFFSET
    for t in ledger.txns:
        shown = [(p, v) for p, v in t.records if v in seen]
        if not shown:
            if t.committed < state.last:
                problems.append(f"X5 {t.name}: acked committed, none of its records read")
            continue
        if len(shown) != len(t.records):
            problems.append(
                f"X5 {t.name}: {len(shown)} of its {len(t.records)} records read "
                f"read_committed (all or nothing)"
            )
        if t.aborted < state.last:
            problems.append(f"X5 {t.name}: acked aborted, {len(shown)} records read")
        if t.commit_asked >= state.first:
            problems.append(f"X5 {t.name}: read, but its commit was not asked yet")
        for p in range(2):
            offsets = [seen[v][1] for q, v in shown if q == p]
            if offsets != sorted(offsets):
                problems.append(f"X5 {t.name}: {TOPIC}-{p} read out of the order sent")
        if t.offset is not None:
            expected_offset = t.offset
    if final_offset != expected_offset:
        problems.append(f"X6: {GROUP}'s offset is {final_offset}, the transactions read "
                        f"committed give {expected_offset}")
    return problems


def new_instances(store: logstore.Store, ledger: Ledger) -> list[TransactionalProducer]:
    """A new instance of each transactional id, initialised (fencing, settling)."""
    out = []
    for txn_id in ledger.txn_ids:
        producer = TransactionalProducer(store, txn_id, transaction_timeout_ms=TIMEOUT_MS,
                                         linger_ms=LINGER_MS)
        producer.init_transactions()
        out.append(producer)
    return out


def settle(store: logstore.Store, ledger: Ledger, clock: FakeClock, by_init: bool
           ) -> list[TransactionalProducer]:
    """Past every timeout: the maintenance turn, or a new instance of each id."""
    clock.advance(10 * TIMEOUT_MS)
    if by_init:
        return new_instances(store, ledger)
    transactions_for(store).abort_expired()
    return []


def after_recovery(store: logstore.Store, ledger: Ledger,
                   producers: list[TransactionalProducer]) -> list[str]:
    """X7: a new transaction of each id commits and is read."""
    problems = []
    producers = producers or new_instances(store, ledger)
    ends = [store.partition(TOPIC, p).log_end_offset for p in range(2)]
    sent = []
    for n, producer in enumerate(producers):
        producer.begin_transaction()
        for p in range(2):
            value = b"after %d %d" % (n, p)
            producer.send(TOPIC, value, partition=p)
            sent.append((p, value))
        producer.commit_transaction()
        producer.close()
    for p in range(2):
        plog = store.partition(TOPIC, p)
        got: list[bytes | None] = []
        offset = ends[p]
        while batch := plog.read_committed(offset):
            got += [r.value for r in batch]
            offset = batch[-1].offset + 1
        want = [v for q, v in sent if q == p]
        if got != want or plog.last_stable_offset() != plog.log_end_offset:
            problems.append(f"X7 {TOPIC}-{p}: a transaction after recovery reads {got}")
    return problems


def check_state(directory: str, ledger: Ledger, state: CrashState) -> list[str]:
    clock = FakeClock(ledger.end_ms)
    store = None
    try:
        with time_limit(OPEN_TIMEOUT_S):
            store = logstore.open(directory, clock=clock, maintenance=False)
    except Exception as err:
        return [f"X1: open failed: {type(err).__name__}: {err}"]
    problems: list[str] = []
    step = "X2: the offset fetch"
    try:
        with time_limit(2 * OPEN_TIMEOUT_S):
            try:
                early: int | None = group_offset(store)
                unstable = False
            except UnstableOffsetCommitError:
                early, unstable = None, True
            step = "X3: the maintenance turn"
            transactions_for(store).abort_expired()
            problems += open_transactions(store)
            if unstable and not any(
                s.state == ONGOING and GROUP in s.offsets
                for s in transactions_for(store).states()
            ):
                problems.append("X2: the offset fetch was unstable, no transaction holds it")
            step = "X4: settling"
            by_init = int(state.digest[:8], 16) % 2 == 1
            producers = settle(store, ledger, clock, by_init)
            for p in range(2):
                plog = store.partition(TOPIC, p)
                if plog.last_stable_offset() != plog.log_end_offset:
                    problems.append(
                        f"X4 {TOPIC}-{p}: LSO {plog.last_stable_offset()} < log end "
                        f"{plog.log_end_offset} after settling "
                        f"({'init_transactions' if by_init else 'abort_expired'})"
                    )
            step = "X5: reading"
            final = group_offset(store)
            problems += check_rows(read_all(store, committed=False),
                                   read_all(store, committed=True), ledger, state, final)
            if not unstable and early != final:
                problems.append(f"X2: the offset fetch answered {early} before the "
                                f"coordinator settled, {final} after")
            step = "X7: a transaction after recovery"
            problems += after_recovery(store, ledger, producers)
    except Exception as err:
        problems.append(f"{step}: {type(err).__name__}: {err}")
    finally:
        with contextlib.suppress(Exception):
            store.close()
    return problems


def explore(name: str, prepared: Prepared, scratch: str, *, budget: int = STATE_BUDGET,
            stop_at_first: bool = False) -> Outcome:
    """``test_power_loss``'s explorer with this file's checks (X1-X7)."""
    ledger: Any = prepared.ledger  # the explorer passes it on to ``check`` untouched
    return power_loss.explore(name, prepared.rec, ledger, scratch, budget=budget,
                              stop_at_first=stop_at_first, check=check_state)


def prepare(scratch: str, name: str = "t1-transactions") -> Prepared:
    root = os.path.join(scratch, f"{name}-live")
    with quiet_logstore():
        prepared = WORKLOADS[name](root, FakeClock(T0))
    model = CrashModel(prepared.rec.baseline, prepared.rec.trace)
    assert model.final() == live_entries(root), "RecordingFS missed an operation"
    return prepared


# --------------------------------------------------------------------------- tests


def test_power_loss_transactions(scratch: str, reliability_report: Callable[[str], None]
                                 ) -> None:
    prepared = prepare(scratch)
    outcome = explore("transactions t1", prepared, scratch)
    reliability_report(summary(outcome))
    assert not outcome.violations, "\n".join(outcome.violations[:10])


# --------------------------------------------------------------------------- planted bugs


def unsynced_state(mp: pytest.MonkeyPatch) -> None:
    """The coordinator's state file renamed into place without its fsync: a power cut
    may keep the new name with no content (the decision, or the whole id, is lost)."""

    def store_state(self: TransactionCoordinator, st: TxnState) -> None:
        st.updated_ms = self._now()
        path = self._path(st.transactional_id, ".state")
        with self._fs.open(temp_path(path), create=True) as handle:
            handle.truncate(0)
            handle.append(encode_state(STATE_KIND, st.to_json()))
        self._fs.rename(temp_path(path), path)
        self._fs.fsync_dir(os.path.dirname(path))

    mp.setattr(TransactionCoordinator, "_store_state", store_state)


def markers_first(mp: pytest.MonkeyPatch) -> None:
    """A commit's markers written before PrepareCommit is stored: a crash in between
    leaves an Ongoing transaction whose records are already visible, and settling
    aborts it (its offsets never commit)."""
    decide = TransactionCoordinator._decide

    def decide_after_markers(self: TransactionCoordinator, st: TxnState, *,
                             commit: bool) -> None:
        if commit:
            for topic, topic_id, partition in st.partitions:
                plog: PartitionLog | None = self._partition(topic, topic_id, partition)
                if plog is not None:
                    plog.append_marker(st.producer_id, st.epoch, commit=True)
        decide(self, st, commit=commit)

    mp.setattr(TransactionCoordinator, "_decide", decide_after_markers)


PLANTED: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "unsynced-state": unsynced_state,
    "markers-first": markers_first,
}


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_bug_in_the_coordinator_is_caught(
    bug: str, scratch: str, reliability_report: Callable[[str], None]
) -> None:
    """The coordinator made wrong (:data:`PLANTED`) while ``t2-commit-abort`` runs; the
    checks (with the real coordinator) must find a violation (the explorer stops at the
    first)."""
    with pytest.MonkeyPatch.context() as mp:
        PLANTED[bug](mp)
        prepared = prepare(scratch, "t2-commit-abort")
    outcome = explore(f"transactions planted {bug}", prepared, scratch, stop_at_first=True)
    reliability_report(summary(outcome) + " (planted bug: stops at the first)")
    assert outcome.violations, f"the explorer missed the planted bug {bug}"


# --------------------------------------------------------------------------- bugs found


# Found by this file (fixed): TransactionCoordinator._locked made __transactions/ without
# fsyncing the store directory: a power cut could lose it, every coordinator state with
# it, while an open transaction's records were durable: its partitions' LSO stuck for good.
def test_the_first_transaction_of_a_store_survives_power_loss(scratch: str) -> None:
    outcome = explore("transactions first", prepare(scratch, "first-transaction"), scratch,
                      budget=400, stop_at_first=True)
    assert not outcome.violations, outcome.violations[0]


# Found by this file (fixed): add_offsets made __transactions/pending/<group>/ and fsynced
# it, but never __transactions/pending/: a power cut could lose the group's pending entry
# while PrepareCommit was durable; settle_group then answered the old offsets before the
# decided commit moved them.
def test_a_groups_first_transactional_offsets_survive_power_loss(scratch: str) -> None:
    outcome = explore("transactions first group", prepare(scratch, "first-group-offsets"),
                      scratch, budget=400, stop_at_first=True)
    assert not outcome.violations, outcome.violations[0]
