"""Exactly-once consume-transform-produce under kill -9 (issue 16's acceptance).

A worker process reads ``in`` (read_committed, offsets of group ``eos``), and for each
poll opens a transaction, sends every record transformed to ``out`` (same partition,
value ``T:<value>``), sends the poll's offsets to the transaction and commits. The test
starts a worker, kills it with SIGKILL after a random delay (so at random points of the
loop: in ``init_transactions``, mid-transaction, mid-commit while markers are being
written, between transactions), 200 times, then lets a last worker finish. The output,
read ``read_committed``, must equal the transformed input, partition by partition, in
order: no duplicate, no loss. The figures (kills, transactions aborted by the next
instance, records written but aborted) go to the reliability report.

Workers are forked from one process that has imported logstore (no store open in it),
so a cycle costs milliseconds, not an interpreter start.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import logstore
from logstore import Consumer, TopicPartition, TransactionalProducer
from logstore.records import scan
from logstore.records.control import ControlType, control_type
from logstore.verify import verify_store

PARTITIONS = 2
CYCLES = 200
MAX_POLL = 10
TOP_UP = 200
"""Input records added before a cycle whenever fewer than this many are left to
process: every kill lands in a loop that still has work."""


def _worker(root: str) -> None:
    """The consume-transform-produce loop, until the input is all consumed."""
    with logstore.open(root, maintenance=False) as store:
        producer = TransactionalProducer(store, "eos-worker", linger_ms=0)
        producer.init_transactions()
        consumer = Consumer(
            store, group_id="eos", enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed", max_poll_records=MAX_POLL,
        )
        tps = [TopicPartition("in", p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = {tp: store.topic("in").partition(tp.partition).log_end_offset for tp in tps}
        # (input added after this worker started is the next worker's)
        while True:
            records = consumer.poll(timeout_ms=20)
            if not records:
                if all(consumer.position(tp) >= ends[tp] for tp in tps):
                    break
                continue
            producer.begin_transaction()
            offsets: dict[TopicPartition, int] = {}
            for r in records:
                producer.send("out", b"T:" + (r.value or b""), key=r.key, partition=r.partition)
                offsets[TopicPartition(r.topic, r.partition)] = r.offset + 1
            producer.send_offsets_to_transaction(offsets, "eos")
            producer.commit_transaction()
        producer.close()
        consumer.close()


def _fork(root: str) -> int:
    pid = os.fork()
    if pid == 0:  # the child: run the loop, never return into pytest
        code = 0
        try:
            _worker(root)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def _top_up(root: str, sent: int) -> int:
    """Add input when little is left (by the group's committed offsets, read from the
    offsets log directly: an open transaction of a killed worker may hold them)."""
    with logstore.open(root, maintenance=False) as store:
        offsets = store.offsets
        done = sum(
            (c.offset if (c := offsets.committed("eos", TopicPartition("in", p))) else 0)
            for p in range(PARTITIONS)
        )
        if sent - done >= TOP_UP:
            return sent
        with logstore.Producer(store) as producer:
            for i in range(sent, sent + TOP_UP):
                producer.send("in", b"%d" % i, key=b"k%d" % (i % 50), partition=i % PARTITIONS)
    return sent + TOP_UP


def _read_committed(root: str) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    with logstore.open(root, maintenance=False) as store:
        consumer = Consumer(store, auto_offset_reset="earliest", isolation_level="read_committed")
        consumer.assign([TopicPartition("out", p) for p in range(PARTITIONS)])
        while True:
            got = consumer.poll(timeout_ms=50, max_records=10_000)
            if not got:
                break
            for r in got:
                out.setdefault(r.partition, []).append(r.value or b"")
        consumer.close()
    return out


def _markers(root: str) -> tuple[int, int, int]:
    """``(commit markers, abort markers, records in out)`` (aborted ones included)."""
    commits = aborts = records = 0
    with logstore.open(root, maintenance=False) as store:
        for p in range(PARTITIONS):
            plog = store.topic("out").partition(p)
            offset = plog.log_start_offset
            while offset < plog.log_end_offset:
                data = plog.read(offset, 1 << 20).records
                for h in scan(data):
                    if h.is_control:
                        kind = control_type(data, h)
                        commits += kind == ControlType.COMMIT
                        aborts += kind == ControlType.ABORT
                    else:
                        records += h.records_count
                    offset = h.next_offset
    return commits, aborts, records


@pytest.mark.slow
def test_kill9_at_random_points_of_a_transactional_loop_never_duplicates_or_loses(
    tmp_path: Path, reliability_report: Callable[[str], None]
) -> None:
    root = str(tmp_path / "data")
    rng = random.Random(int(os.environ.get("LOGSTORE_EOS_SEED", "16")))
    with logstore.open(root, maintenance=False) as store:
        store.create_topic("in", partitions=PARTITIONS)
        store.create_topic("out", partitions=PARTITIONS)
    sent = 0
    started = time.monotonic()
    finished_early = 0
    for _ in range(CYCLES):
        sent = _top_up(root, sent)
        pid = _fork(root)
        time.sleep(rng.uniform(0.0, 0.04))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0, "a worker failed (its traceback is above)"
            finished_early += 1
    pid = _fork(root)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    elapsed = time.monotonic() - started

    expected = {p: [b"T:%d" % i for i in range(p, sent, PARTITIONS)] for p in range(PARTITIONS)}
    got = _read_committed(root)
    for p in range(PARTITIONS):
        values = got.get(p, [])
        duplicates = len(values) - len(set(values))
        lost = len(set(expected[p]) - set(values))
        assert duplicates == 0 and lost == 0, (p, duplicates, lost)
        assert values == expected[p]
    commits, aborts, written = _markers(root)
    assert written >= sent
    report = verify_store(root)
    assert not report.corrupt, report.corrupt
    reliability_report(
        f"exactly-once: {CYCLES} kill -9 cycles ({finished_early} workers done before the "
        f"kill) in {elapsed:.1f} s: {sent} inputs -> {sent} outputs read_committed, "
        f"0 duplicated, 0 lost; {commits} commit and {aborts} abort markers, "
        f"{written - sent} records written by aborted transactions"
    )
