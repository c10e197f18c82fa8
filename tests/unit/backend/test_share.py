"""The share-group coordinator (logstore.backend.share) and the share consumer on one
store, with a hand-moved clock: locks, expiry, the in-flight window, dead letters, bad
acknowledgements, settings, and restarts (a second store on the same directory stands for
another process: its own descriptors, flocks and view of the state log)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

import logstore
from logstore import headers as h
from logstore.backend import share
from logstore.backend.share import ShareCoordinator
from logstore.client.share import (
    AcknowledgeType,
    ShareConsumer,
    ShareConsumerStateError,
)
from logstore.errors import (
    LockExpiredError,
    RecordNotHeldError,
    ShareGroupConfigError,
    UnknownShareRecordError,
)
from logstore.storage.log import PartitionLog
from logstore.types import TopicPartition
from tests.conftest import FakeClock

TP = TopicPartition("jobs", 0)
ACCEPT, RELEASE, REJECT = 1, 2, 3


@pytest.fixture
def jobs(store: logstore.Store) -> logstore.Store:
    store.create_topic("jobs", 1)
    for i in range(10):
        store.append("jobs", f"v{i}".encode(), key=f"k{i}".encode(), headers={"h": b"x"})
    return store


@pytest.fixture
def coord(jobs: logstore.Store, clock: FakeClock) -> Iterator[ShareCoordinator]:
    c = ShareCoordinator(jobs, clock)
    c.join("g", lock_timeout_ms=1000, max_delivery_attempts=3)
    yield c
    c.close()


def acquire(
    c: ShareCoordinator, group: str, member: str, topics: list[str], max_records: int
) -> list[tuple[logstore.ConsumerRecord, int]]:
    records, errors = c.acquire(group, member, topics, max_records=max_records)
    assert errors == []
    return records


def offsets(got: list[tuple[logstore.ConsumerRecord, int]]) -> list[tuple[int, int]]:
    return [(r.offset, count) for r, count in got]


def test_share_acquire_locks_each_record_for_one_member(coord: ShareCoordinator) -> None:
    assert offsets(acquire(coord, "g", "m1", ["jobs"], 3)) == [(0, 1), (1, 1), (2, 1)]
    assert offsets(acquire(coord, "g", "m2", ["jobs"], 3)) == [(3, 1), (4, 1), (5, 1)]
    p = coord.describe("g")["partitions"][0]
    assert (p["start_offset"], p["end_offset"], p["acquired"]) == (0, 6, 6)


def test_share_lock_expiry_redelivers_to_another_member(
    coord: ShareCoordinator, clock: FakeClock
) -> None:
    acquire(coord, "g", "m1", ["jobs"], 2)
    clock.advance(999)
    assert offsets(acquire(coord, "g", "m2", ["jobs"], 2)) == [(2, 1), (3, 1)]
    clock.advance(1)  # m1's locks expire now
    assert offsets(acquire(coord, "g", "m2", ["jobs"], 2)) == [(0, 2), (1, 2)]
    errors = coord.acknowledge("g", "m1", [(TP, 0, 1, ACCEPT, None, None)])
    assert [type(e) for e in errors] == [LockExpiredError]


def test_share_ack_after_deadline_is_lock_expired_even_before_redelivery(
    coord: ShareCoordinator, clock: FakeClock
) -> None:
    acquire(coord, "g", "m1", ["jobs"], 1)
    clock.advance(1000)
    errors = coord.acknowledge("g", "m1", [(TP, 0, 1, ACCEPT, None, None)])
    assert [type(e) for e in errors] == [LockExpiredError]
    assert coord.describe("g")["partitions"][0]["available"] == 1


def test_share_window_is_bounded_by_max_record_locks(
    jobs: logstore.Store, clock: FakeClock
) -> None:
    with closing(ShareCoordinator(jobs, clock)) as c:
        c.join("w", max_record_locks=4)
        assert len(acquire(c, "w", "m1", ["jobs"], 10)) == 4
        assert acquire(c, "w", "m2", ["jobs"], 10) == []
        assert c.acknowledge("w", "m1", [(TP, 1, 1, ACCEPT, None, None)]) == []
        assert acquire(c, "w", "m2", ["jobs"], 10) == []  # offset 0 pins SPSO
        assert c.acknowledge("w", "m1", [(TP, 0, 1, ACCEPT, None, None)]) == []
        assert offsets(acquire(c, "w", "m2", ["jobs"], 10)) == [(4, 1), (5, 1)]
        assert c.describe("w")["partitions"][0]["start_offset"] == 2


def test_share_bad_acks_get_typed_errors_and_the_good_ones_apply(
    coord: ShareCoordinator,
) -> None:
    acquire(coord, "g", "m1", ["jobs"], 2)
    acquire(coord, "g", "m2", ["jobs"], 1)
    errors = coord.acknowledge("g", "m1", [
        (TP, 0, 1, ACCEPT, None, None),  # fine
        (TP, 2, 1, ACCEPT, None, None),  # m2's
        (TP, 7, 1, ACCEPT, None, None),  # never handed out
        (TP, 1, 5, ACCEPT, None, None),  # not delivered a 5th time
    ])
    assert [(type(e), e.offset) for e in errors] == [  # type: ignore[attr-defined]
        (RecordNotHeldError, 2), (UnknownShareRecordError, 7), (RecordNotHeldError, 1),
    ]
    assert "m2" in str(errors[0]) and "offset 2" in str(errors[0])
    again = coord.acknowledge("g", "m1", [(TP, 0, 1, ACCEPT, None, None)])
    assert [type(e) for e in again] == [RecordNotHeldError]  # finished already
    unknown = coord.acknowledge("g", "m1", [(TopicPartition("jobs", 3), 0, 1, 1, None, None)])
    assert [type(e) for e in unknown] == [UnknownShareRecordError]
    assert coord.describe("g")["partitions"][0]["start_offset"] == 1


def test_share_release_redelivers_and_the_limit_dead_letters_with_every_header(
    coord: ShareCoordinator, jobs: logstore.Store
) -> None:
    for attempt in (1, 2, 3):
        got = acquire(coord, "g", "m1", ["jobs"], 1)
        assert offsets(got) == [(0, attempt)]
        error = ("ValueError", f"bad {attempt}") if attempt < 3 else None
        assert coord.acknowledge("g", "m1", [(TP, 0, attempt, RELEASE, *error)]
                                 if error else [(TP, 0, attempt, RELEASE, None, None)]) == []
    assert offsets(acquire(coord, "g", "m1", ["jobs"], 1)) == [(1, 1)]
    (dead,) = jobs.read("jobs.dlq", 0, 0)
    original = jobs.read("jobs", 0, 0, 1)[0]
    assert (dead.key, dead.value) == (b"k0", b"v0")
    got = dict(dead.headers)
    assert got["h"] == b"x"
    assert {k: got[k].decode() for k in h.DLQ_HEADERS} == {
        h.DLQ_ORIGINAL_TOPIC: "jobs", h.DLQ_ORIGINAL_PARTITION: "0",
        h.DLQ_ORIGINAL_OFFSET: "0", h.DLQ_ORIGINAL_TIMESTAMP: str(original.timestamp),
        h.DLQ_ERROR_CLASS: "ValueError", h.DLQ_ERROR_MESSAGE: "bad 2", h.DLQ_ATTEMPTS: "3",
    }
    assert coord.describe("g")["partitions"][0]["start_offset"] == 1


def test_share_reject_dead_letters_at_once_and_expiry_says_lock_timeout(
    coord: ShareCoordinator, jobs: logstore.Store, clock: FakeClock
) -> None:
    acquire(coord, "g", "m1", ["jobs"], 1)
    assert coord.acknowledge("g", "m1", [(TP, 0, 1, REJECT, "KeyError", "no")]) == []
    for _ in range(3):
        assert offsets(acquire(coord, "g", "m1", ["jobs"], 1))[0][0] == 1
        clock.advance(1000)
    acquire(coord, "g", "m1", ["jobs"], 1)
    dead = jobs.read("jobs.dlq", 0, 0)
    assert [(dict(d.headers)[h.DLQ_ERROR_CLASS], dict(d.headers)[h.DLQ_ATTEMPTS]) for d in dead] \
        == [(b"KeyError", b"1"), (b"LockTimeout", b"3")]
    assert dict(dead[1].headers)[h.DLQ_ERROR_MESSAGE] == b"lock timeout"


def test_share_settings_are_the_groups_and_survive_a_restart(
    coord: ShareCoordinator, jobs: logstore.Store, clock: FakeClock
) -> None:
    with pytest.raises(ShareGroupConfigError, match="lock_timeout_ms=1000, not 5000"):
        coord.join("g", lock_timeout_ms=5000)
    assert coord.join("g").lock_timeout_ms == 1000
    with closing(ShareCoordinator(jobs, clock)) as other:
        assert other.join("g", max_delivery_attempts=3).max_delivery_attempts == 3
        assert other.list_groups() == ["g"]


def test_share_state_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    path = os.path.join(tmp_path, "s")
    with logstore.open(path, clock=clock) as s:
        s.create_topic("jobs", 1)
        for i in range(6):
            s.append("jobs", f"v{i}".encode())
        with closing(ShareCoordinator(s, clock)) as c:
            c.join("g", lock_timeout_ms=1000)
            acquire(c, "g", "m1", ["jobs"], 4)
            c.acknowledge("g", "m1", [(TP, 0, 1, ACCEPT, None, None),
                                      (TP, 2, 1, ACCEPT, None, None)])
    with logstore.open(path, clock=clock) as s, closing(ShareCoordinator(s, clock)) as c:
        clock.advance(500)
        assert offsets(acquire(c, "g", "m2", ["jobs"], 9)) == [(4, 1), (5, 1)]
        clock.advance(500)  # m1's locks on 1 and 3 expire: delivered again, 0 and 2 never
        assert offsets(acquire(c, "g", "m2", ["jobs"], 9)) == [(1, 2), (3, 2)]


def test_share_two_processes_never_hand_out_a_record_twice(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = os.path.join(tmp_path, "s")
    with logstore.open(path, clock=clock) as a, logstore.open(path, clock=clock) as b:
        a.create_topic("jobs", 2)
        for i in range(40):
            a.append("jobs", b"v", partition=i % 2)
        ca, cb = ShareCoordinator(a, clock), ShareCoordinator(b, clock)
        seen: list[tuple[int, int]] = []
        for turn in range(12):
            c, m = (ca, "ma") if turn % 2 else (cb, "mb")
            got = acquire(c, "g", m, ["jobs"], 3)
            seen += [(r.partition, r.offset) for r, _ in got]
            c.acknowledge("g", m, [(TopicPartition("jobs", r.partition), r.offset, n, 1, None,
                                    None) for r, n in got])
        assert len(seen) == 36 and len(set(seen)) == 36
        ca.close()
        cb.close()


def test_share_acquire_carries_acknowledgements_in_the_same_change(
    coord: ShareCoordinator,
) -> None:
    acquire(coord, "g", "m1", ["jobs"], 2)
    got, errors = coord.acquire("g", "m1", ["jobs"], max_records=1, acks=[
        (TP, 0, 1, ACCEPT, None, None), (TP, 1, 1, RELEASE, None, None),
        (TP, 5, 1, ACCEPT, None, None),
    ])
    assert offsets(got) == [(1, 2)]  # released by this very request
    assert [(type(e), e.offset) for e in errors] == [  # type: ignore[attr-defined]
        (UnknownShareRecordError, 5)
    ]
    assert coord.describe("g")["partitions"][0]["start_offset"] == 1
    acquire(coord, "g", "m1", ["jobs"], 20)  # every record is held now
    got, errors = coord.acquire("g", "m1", ["jobs"], max_records=1, wait_ms=30, acks=[
        (TP, 99, 1, ACCEPT, None, None),
    ])  # waited in vain: the refusal still comes back
    assert got == [] and [type(e) for e in errors] == [UnknownShareRecordError]


# ---------------------------------------------------------------------------- ShareConsumer


def test_share_consumer_implicit_mode_accepts_at_next_poll(jobs: logstore.Store) -> None:
    with ShareConsumer(jobs, "c", ["jobs"], max_records=4) as c:
        first = c.poll()
        assert [(r.offset, r.delivery_count) for r in first] == [(i, 1) for i in range(4)]
        c.acknowledge(first[1], AcknowledgeType.RELEASE, error=ValueError("later"))
        second = c.poll()
        assert [r.offset for r in second] == [1, 4, 5, 6]
        assert second[0].delivery_count == 2
    with ShareConsumer(jobs, "c", ["jobs"]) as c:  # the last poll was accepted at close
        assert [r.offset for r in c.poll()] == [7, 8, 9]


def test_share_consumer_explicit_mode_needs_every_ack_and_close_releases(
    jobs: logstore.Store,
) -> None:
    c = ShareConsumer(jobs, "e", ["jobs"], max_records=2, acknowledgement_mode="explicit")
    a, _ = c.poll()
    c.acknowledge(a)
    with pytest.raises(ShareConsumerStateError, match="not acknowledged"):
        c.poll()
    with pytest.raises(ShareConsumerStateError):
        c.acknowledge(a)
    assert c.commit() == []
    c.close()
    with ShareConsumer(jobs, "e", ["jobs"], max_records=2) as d:
        assert [(r.offset, r.delivery_count) for r in d.poll()] == [(1, 2), (2, 1)]


def test_share_consumer_exception_in_with_block_releases(jobs: logstore.Store) -> None:
    with pytest.raises(RuntimeError), ShareConsumer(jobs, "x", ["jobs"], max_records=1) as c:
        c.poll()
        raise RuntimeError("crash")
    with ShareConsumer(jobs, "x", ["jobs"], max_records=1) as c:
        assert [(r.offset, r.delivery_count) for r in c.poll()] == [(0, 2)]


def test_share_consumer_refuses_other_settings(jobs: logstore.Store) -> None:
    ShareConsumer(jobs, "s", ["jobs"], max_delivery_attempts=2).close()
    with pytest.raises(logstore.InvalidConfigError, match="max_delivery_attempts=2, not 4"):
        ShareConsumer(jobs, "s", ["jobs"], max_delivery_attempts=4)


def test_share_state_log_is_compacted_and_reads_the_same_after(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(share, "SHARE_STATE_SEGMENT_BYTES", 1024)  # rolls every few writes
    path = os.path.join(tmp_path, "s")
    with logstore.open(path, clock=clock) as s:
        s.create_topic("jobs", 1)
        s.append_many("jobs", [(b"v", None, None, None, None)] * 300)
        with closing(ShareCoordinator(s, clock)) as c:
            c.join("g")
            for _ in range(150):
                got = acquire(c, "g", "m1", ["jobs"], 2)
                assert c.acknowledge("g", "m1", [(TP, r.offset, n, ACCEPT, None, None)
                                                 for r, n in got]) == []
            before = c.describe("g")
    assert before["partitions"][0]["start_offset"] == 300
    state_dir = os.path.join(path, f"{share.SHARE_STATE_TOPIC}-0")
    with PartitionLog(state_dir, share.share_state_log_config()) as state_log:
        kept, offset = 0, 0
        while batch := state_log.read_records(offset):
            kept, offset = kept + len(batch), batch[-1].offset + 1
        assert state_log.log_end_offset > 300  # 301 changes written ...
        assert kept < 60  # ... the cleaner kept the last of each key (and the tail)
    with logstore.open(path, clock=clock) as s, closing(ShareCoordinator(s, clock)) as c:
        assert c.describe("g") == before
        assert acquire(c, "g", "m2", ["jobs"], 5) == []


def test_share_a_dead_letter_that_cannot_be_written_does_not_stop_the_group(
    coord: ShareCoordinator, jobs: logstore.Store, caplog: pytest.LogCaptureFixture
) -> None:
    jobs.create_topic("jobs.dlq", 1, max_message_bytes=64)  # too small for the letter
    acquire(coord, "g", "m1", ["jobs"], 1)
    with caplog.at_level("ERROR", logger="logstore.backend.share"):
        assert coord.acknowledge("g", "m1", [(TP, 0, 1, REJECT, "KeyError", "no")]) == []
    assert "cannot dead-letter jobs-0 offset 0" in caplog.text
    assert offsets(acquire(coord, "g", "m1", ["jobs"], 2)) == [(1, 1), (2, 1)]  # goes on
    assert coord.describe("g")["partitions"][0]["start_offset"] == 1  # 0 is archived


def test_share_a_partition_ending_in_transaction_markers_is_passed_over(
    store: logstore.Store, clock: FakeClock
) -> None:
    store.create_topic("tx", 1)
    producer = logstore.TransactionalProducer(store, "share-tx")
    producer.init_transactions()
    for commit in (True, False):
        producer.begin_transaction()
        producer.send("tx", b"v", key=b"k")
        producer.commit_transaction() if commit else producer.abort_transaction()
    producer.close()
    assert store.topic("tx").partition(0).log_end_offset == 4  # 2 records, 2 markers
    with closing(ShareCoordinator(store, clock)) as c:
        got, _ = c.acquire("g", "m", ["tx"], max_records=10)
        tp = TopicPartition("tx", 0)
        acks = [(tp, r.offset, n, ACCEPT, None, None) for r, n in got]
        assert c.acknowledge("g", "m", acks) == []
        c.acquire("g", "m", ["tx"], max_records=10)
        p = c.describe("g")["partitions"][0]
        assert (p["start_offset"], p["end_offset"]) == (4, 4)  # past the trailing marker
        assert not c._may_acquire("g", [tp])  # idle: no change to make
