"""Consumer groups across real processes: sharing, pub-sub, SIGKILL and late joiners."""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import logstore
from logstore.types import TopicPartition
from tests.integration.workers import produce_all, rows, start


def _rows(output: str) -> list[tuple[int, int, str]]:
    return rows(output, "rec", "ack")


def _read_all(plog: logstore.PartitionLog) -> list[logstore.Record]:
    out: list[logstore.Record] = []
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        batch = plog.read_records(offset)
        out += batch
        offset = batch[-1].offset + 1
    return out


def _check_key_order(rows: list[tuple[int, int, str]]) -> None:
    """Within each partition, a producer's records arrive in send order."""
    last: dict[tuple[int, str], int] = {}
    for partition, _, value in rows:
        producer, seq = value.split(":")
        key = (partition, producer)
        assert int(seq) > last.get(key, -1), (partition, value)
        last[key] = int(seq)


def test_group_of_three_processes_consumes_every_record_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 4, flush="interval")
    consumers = [start("consume", data, "t", "g", 3000) for _ in range(3)]
    acks = produce_all(data, "t", producers=3, count=800)
    outputs = [c.communicate(timeout=120)[0] for c in consumers]
    rows = [r for out in outputs for r in _rows(out)]
    assert Counter((p, o) for p, o, _ in rows) == Counter((p, o) for p, o, _ in acks)
    assert len(rows) == 2400  # exactly once: no loss, no duplicate
    for out in outputs:
        _check_key_order(_rows(out))
    assert sum(1 for out in outputs if _rows(out)) >= 2  # the work was shared


def test_two_groups_each_receive_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 4, flush="never")
    acks = produce_all(data, "t", producers=1, count=500)
    a = start("consume", data, "t", "group-a", 800)
    b = start("consume", data, "t", "group-b", 800)
    got_a = _rows(a.communicate(timeout=120)[0])
    got_b = _rows(b.communicate(timeout=120)[0])
    expected = sorted((p, o) for p, o, _ in acks)
    assert sorted((p, o) for p, o, _ in got_a) == expected
    assert sorted((p, o) for p, o, _ in got_b) == expected


def test_killed_member_partitions_move_and_nothing_is_lost(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 4, flush="never")
    acks = produce_all(data, "t", producers=2, count=1500)
    session_ms = 1500
    survivor = start("consume", data, "t", "g", 4000, session_ms, 20)
    victim = start("consume", data, "t", "g", 4000, session_ms, 20)
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim_out, _ = victim.communicate(timeout=60)
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err

    victim_rows = _rows(victim_out)
    survivor_rows = _rows(out)
    seen = Counter((p, o) for p, o, _ in victim_rows + survivor_rows)
    assert set(seen) == {(p, o) for p, o, _ in acks}  # at-least-once: nothing lost
    # duplicates only past the victim's last commit, in partitions it owned
    committed: dict[int, int] = {}
    pending: dict[int, int] = defaultdict(lambda: -1)
    for line in victim_out.splitlines():
        parts = line.split()
        if parts[:1] == ["rec"]:
            pending[int(parts[1])] = max(pending[int(parts[1])], int(parts[2]))
        elif parts == ["commit"]:
            committed.update({p: o for p, o in pending.items()})
    for (partition, offset), n in seen.items():
        if n > 1:
            assert offset > committed.get(partition, -1), (partition, offset)
    assert time.monotonic() - killed_at < 60


def test_late_joiner_gets_partitions_while_the_first_keeps_reading(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 4, flush="never")
        first = store.consumer(
            ["t"], group_id="g", auto_offset_reset="earliest", session_timeout_ms=3000
        )
        assert len(first.assignment()) == 4
        second = start("consume", data, "t", "g", 1500)
        deadline = time.monotonic() + 10
        while len(first.assignment()) == 4 and time.monotonic() < deadline:
            first.poll(timeout_ms=50)
        assert len(first.assignment()) == 2  # range: two each
        second.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while len(first.assignment()) < 4 and time.monotonic() < deadline:
            first.poll(timeout_ms=50)
        assert sorted(first.assignment()) == [TopicPartition("t", p) for p in range(4)]
        first.close()


def test_replay_from_timestamp_returns_exactly_records_at_or_after_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 3, flush="never", segment_bytes=2048)
        with store.producer(linger_ms=0) as producer:
            for i in range(300):
                producer.send("t", b"v%d" % i, key=b"k%d" % (i % 7), timestamp=1_000_000 + i * 10)
        cutoff = 1_000_000 + 1_234
        consumer = store.consumer()
        consumer.assign([("t", p) for p in range(3)])
        consumer.seek_to_timestamp(cutoff)
        got = []
        while batch := consumer.poll(timeout_ms=50):
            got += batch
        expected = [
            (p, r.offset)
            for p in range(3)
            for r in _read_all(store.partition("t", p))
            if r.timestamp >= cutoff
        ]
        assert sorted((r.partition, r.offset) for r in got) == sorted(expected)
        assert all(r.timestamp >= cutoff for r in got)
        assert len(got) == 300 - 124  # timestamps 1_000_000 + 10 * i >= cutoff for i >= 124
        consumer.close()


def test_dead_member_partitions_move_within_the_session_timeout(tmp_path: Path) -> None:
    data = tmp_path / "data"
    session_ms = 1200
    with logstore.open(data) as store:
        store.create_topic("t", 4, flush="never")
        survivor = store.consumer(
            ["t"], group_id="g", auto_offset_reset="earliest", session_timeout_ms=session_ms
        )
        victim = start("consume", data, "t", "g", 60_000, session_ms)
        deadline = time.monotonic() + 10
        while len(survivor.assignment()) != 2 and time.monotonic() < deadline:
            survivor.poll(timeout_ms=20)
        assert len(survivor.assignment()) == 2  # the victim holds the other two
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
        killed = time.monotonic()
        while len(survivor.assignment()) < 4 and time.monotonic() - killed < 10:
            survivor.poll(timeout_ms=20)
        moved_after = time.monotonic() - killed
        assert len(survivor.assignment()) == 4
        assert moved_after <= session_ms / 1000 + 0.5, moved_after
        survivor.close()
