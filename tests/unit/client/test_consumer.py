"""The consumer (logstore.client.consumer): assign and poll, offset resets, positions and
seeks, timestamps, commits, delivery recipes, auto-commit, group membership in one process
(rebalance callbacks, commit fencing) and iteration (kafka.md §4.2-4.4)."""

from __future__ import annotations

import time

import pytest

import logstore
from logstore.client.consumer import (
    CommitFailedError,
    Consumer,
    ConsumerRecord,
    NoOffsetError,
    OffsetAndTimestamp,
)
from logstore.errors import (
    IllegalGenerationError,
    InvalidConfigError,
    OffsetOutOfRangeError,
    StoreClosedError,
)
from logstore.types import TopicPartition

TP = TopicPartition

T = "events"
TP0, TP1 = TP(T, 0), TP(T, 1)


@pytest.fixture
def topic(store: logstore.Store) -> str:
    store.create_topic(T, 2)
    return T


def _fill(store: logstore.Store, partition: int, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        store.append(T, b"p%d-%d" % (partition, i), partition=partition, timestamp=1000 * (i + 1))


def _poll_all(consumer: Consumer, idle_polls: int = 3) -> list[ConsumerRecord]:
    """Poll until a few polls in a row come back empty."""
    out: list[ConsumerRecord] = []
    empty = 0
    while empty < idle_polls:
        records = consumer.poll()
        out += records
        empty = 0 if records else empty + 1
    return out


def _values(records: list[ConsumerRecord]) -> list[bytes | None]:
    return [r.value for r in records]


# ---------------------------------------------------------------------- assign and poll


def test_poll_returns_records_in_order_from_earliest(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 5)
    store.append(T, b"x", key=b"k", headers={"h": b"v"}, partition=0, timestamp=7)
    with store.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        records = _poll_all(consumer)
    assert [r.offset for r in records] == list(range(6))
    assert _values(records)[:5] == [b"p0-%d" % i for i in range(5)]
    assert records[5] == ConsumerRecord(T, 0, 5, 7, b"k", b"x", (("h", b"v"),))


def test_poll_from_latest_returns_only_new_records(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 3)
    with store.consumer(auto_offset_reset="latest") as consumer:
        consumer.assign([TP0])
        assert consumer.poll() == []
        assert consumer.position(TP0) == 3
        _fill(store, 0, 2, start=3)
        assert _values(_poll_all(consumer)) == [b"p0-3", b"p0-4"]


def test_poll_raises_no_offset_when_reset_none_and_nothing_committed(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 1)
    with store.consumer(group_id="g", auto_offset_reset="none") as consumer:
        consumer.assign([TP0])
        with pytest.raises(NoOffsetError):
            consumer.poll()
        consumer.seek(TP0, 0)
        assert _values(consumer.poll()) == [b"p0-0"]


def test_poll_with_reset_none_starts_from_committed_offset(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 4)
    store.offsets.commit("g", {TP0: (2, "")})
    with store.consumer(group_id="g", auto_offset_reset="none") as consumer:
        consumer.assign([TP0])
        assert [r.offset for r in _poll_all(consumer)] == [2, 3]


def test_poll_reads_every_assigned_partition(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 3)
    _fill(store, 1, 4)
    with store.consumer(auto_offset_reset="earliest", max_poll_records=2) as consumer:
        consumer.assign([TP0, (T, 1)])
        records = _poll_all(consumer)
    for p, n in ((0, 3), (1, 4)):
        assert [r.offset for r in records if r.partition == p] == list(range(n))


def test_poll_returns_at_most_max_records(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 10)
    with store.consumer(auto_offset_reset="earliest", max_poll_records=4) as consumer:
        consumer.assign([TP0])
        assert len(consumer.poll()) == 4
        assert len(consumer.poll(max_records=1)) == 1
        assert consumer.position(TP0) == 5


def test_poll_waits_up_to_timeout_when_no_records(store: logstore.Store, topic: str) -> None:
    with store.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        started = time.monotonic()
        assert consumer.poll(timeout_ms=50) == []
        assert time.monotonic() - started >= 0.05


def test_assign_rejects_unknown_partition(store: logstore.Store, topic: str) -> None:
    with store.consumer() as consumer, pytest.raises(KeyError):
        consumer.assign([TP(T, 5)])


def test_consumer_rejects_bad_auto_offset_reset(store: logstore.Store) -> None:
    with pytest.raises(InvalidConfigError):
        store.consumer(auto_offset_reset="smallest")


def test_poll_after_close_raises_store_closed(store: logstore.Store, topic: str) -> None:
    consumer = store.consumer()
    consumer.assign([TP0])
    consumer.close()
    consumer.close()
    with pytest.raises(StoreClosedError):
        consumer.poll()


# ---------------------------------------------------------------------- positions, seeks


def test_position_seek_and_replay(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 6)
    with store.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        assert consumer.position(TP0) == 0
        consumer.seek(TP0, 4)
        assert [r.offset for r in consumer.poll()] == [4, 5]
        assert consumer.position(TP0) == 6
        consumer.seek_to_beginning()
        assert consumer.position(TP0) == 0
        assert [r.offset for r in consumer.poll(max_records=2)] == [0, 1]
        consumer.seek_to_end(TP0)
        assert consumer.position(TP0) == 6
        assert consumer.poll() == []


def test_seek_to_beginning_goes_to_log_start_after_delete_records(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 6)
    store.partition(T, 0).delete_records(4)
    with store.consumer(auto_offset_reset="latest") as consumer:
        consumer.assign([TP0])
        consumer.seek_to_beginning(TP0)
        assert consumer.position(TP0) == 4


def test_seek_rejects_negative_offset(store: logstore.Store, topic: str) -> None:
    with store.consumer() as consumer:
        consumer.assign([TP0])
        with pytest.raises(OffsetOutOfRangeError):
            consumer.seek(TP0, -1)


def test_position_of_unassigned_partition_raises(store: logstore.Store, topic: str) -> None:
    with store.consumer() as consumer:
        consumer.assign([TP0])
        with pytest.raises(InvalidConfigError, match="not assigned"):
            consumer.position(TP1)
        with pytest.raises(InvalidConfigError):
            consumer.seek(TP1, 0)


def test_offsets_for_times_returns_first_offset_at_or_after_timestamp(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 5)  # timestamps 1000, 2000, ..., 5000
    with store.consumer() as consumer:
        found = consumer.offsets_for_times({TP0: 2500, TP1: 0})
        assert found == {TP0: OffsetAndTimestamp(2, 3000), TP1: None}
        assert consumer.offsets_for_times({TP0: 3000}) == {TP0: OffsetAndTimestamp(2, 3000)}
        assert consumer.offsets_for_times({TP0: 0}) == {TP0: OffsetAndTimestamp(0, 1000)}
        assert consumer.offsets_for_times({TP0: 5001}) == {TP0: None}


def test_seek_to_timestamp_moves_to_first_record_at_or_after_it(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 5)
    _fill(store, 1, 2)
    with store.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0, TP1])
        consumer.seek_to_timestamp(3500)
        assert consumer.position(TP0) == 3
        assert consumer.position(TP1) == 2  # nothing that late: the end
        assert [r.offset for r in _poll_all(consumer)] == [3, 4]
        consumer.seek_to_timestamp(0, TP0)
        assert consumer.position(TP0) == 0


# ---------------------------------------------------------------------- commits


def test_commit_then_committed_returns_position(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 3)
    with store.consumer(
        group_id="g", auto_offset_reset="earliest", enable_auto_commit=False
    ) as consumer:
        consumer.assign([TP0])
        assert consumer.committed(TP0) is None
        consumer.poll(max_records=2)
        consumer.commit()
        assert consumer.committed(TP0) == 2
        consumer.commit({TP0: 1})
        assert consumer.committed(TP0) == 1
        consumer.commit({(T, 0): (3, "note")})
    committed = store.offsets.committed("g", TP0)
    assert committed is not None
    assert (committed.offset, committed.metadata) == (3, "note")


def test_commit_without_group_raises(store: logstore.Store, topic: str) -> None:
    with store.consumer() as consumer:
        consumer.assign([TP0])
        with pytest.raises(InvalidConfigError, match="group_id"):
            consumer.commit()
        assert consumer.committed(TP0) is None


def test_new_consumer_in_group_starts_from_committed_offset(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 5)
    store.offsets.commit("g", {TP0: (3, "")})
    with store.consumer(group_id="g", auto_offset_reset="latest") as consumer:
        consumer.assign([TP0])
        assert [r.offset for r in _poll_all(consumer)] == [3, 4]
    with store.consumer(group_id="other", auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        assert consumer.position(TP0) == 0  # offsets are per group


def test_at_most_once_commit_after_poll_then_crash_loses_records(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 4)
    options = {"group_id": "g", "auto_offset_reset": "earliest", "enable_auto_commit": False}
    first = store.consumer([T], **options)
    records = first.poll(max_records=3)
    assert [r.offset for r in records] == [0, 1, 2]
    first.commit()  # at-most-once: commit before processing...
    first.close()  # ...then crash while processing: nothing else is committed
    with store.consumer([T], **options) as second:
        assert [r.offset for r in _poll_all(second)] == [3]  # 0..2 are not redelivered


def test_at_least_once_crash_before_commit_redelivers_records(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 4)
    options = {"group_id": "g", "auto_offset_reset": "earliest", "enable_auto_commit": False}
    first = store.consumer([T], **options)
    assert [r.offset for r in first.poll(max_records=2)] == [0, 1]
    first.commit()  # processed 0 and 1, committed
    assert [r.offset for r in first.poll(max_records=2)] == [2, 3]
    first.close()  # crash while processing 2 and 3: not committed
    with store.consumer([T], **options) as second:
        redelivered = _poll_all(second)
        assert [r.offset for r in redelivered] == [2, 3]
        second.commit()
    with store.consumer([T], **options) as third:
        assert _poll_all(third) == []


def test_auto_commit_commits_returned_positions_after_interval(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 3)
    with store.consumer(
        group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=5
    ) as consumer:
        consumer.assign([TP0])
        assert len(consumer.poll()) == 3
        assert consumer.committed(TP0) is None  # not yet: the interval has not passed
        time.sleep(0.02)
        consumer.poll()
        assert consumer.committed(TP0) == 3


def test_auto_commit_commits_on_close_when_subscribed(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 3)
    consumer = store.consumer(
        [T], group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=60_000
    )
    assert len(_poll_all(consumer)) == 3
    consumer.close()
    committed = store.offsets.committed("g", TP0)
    assert committed is not None
    assert committed.offset == 3


def test_auto_commit_commits_on_close_when_assigned(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 3)
    consumer = store.consumer(
        group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=60_000
    )
    consumer.assign([TP0])
    assert len(_poll_all(consumer)) == 3
    consumer.close()
    committed = store.offsets.committed("g", TP0)
    assert committed is not None
    assert committed.offset == 3


def _refuse_commits(consumer: Consumer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the group refuse this member's commits as stale (a rebalance moved on under
    it); returns the list that counts the refusals."""
    refused: list[int] = []

    def refuse(group: str, *args: object, **kwargs: object) -> None:
        refused.append(1)
        raise IllegalGenerationError(f"member of group {group!r} is in another generation")

    monkeypatch.setattr(consumer._backend, "commit_offsets", refuse)
    return refused


def test_refused_auto_commit_on_close_is_logged_and_the_consumer_closes(
    store: logstore.Store, topic: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _fill(store, 0, 3)
    consumer = store.consumer(
        [T], group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=60_000
    )
    assert len(_poll_all(consumer)) == 3
    refused = _refuse_commits(consumer, monkeypatch)
    with caplog.at_level("WARNING", logger="logstore.client.consumer"):
        consumer.close()  # Kafka's close logs a failed auto-commit; it does not raise
    assert refused
    assert "auto-commit of group 'g' failed" in caplog.text
    assert consumer.closed
    assert store.offsets.committed("g", TP0) is None  # nothing committed: delivered again


def test_refused_auto_commit_on_the_interval_does_not_raise_from_poll(
    store: logstore.Store, topic: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _fill(store, 0, 3)
    with store.consumer(
        group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=1
    ) as consumer:
        consumer.assign([TP0])
        assert len(consumer.poll()) == 3
        refused = _refuse_commits(consumer, monkeypatch)
        time.sleep(0.01)
        with caplog.at_level("WARNING", logger="logstore.client.consumer"):
            assert consumer.poll() == []
        assert refused
        assert "auto-commit of group 'g' failed" in caplog.text


def test_refused_explicit_commit_raises_commit_failed(
    store: logstore.Store, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(store, 0, 3)
    with store.consumer(
        group_id="g", auto_offset_reset="earliest", enable_auto_commit=False
    ) as consumer:
        consumer.assign([TP0])
        assert len(consumer.poll()) == 3
        _refuse_commits(consumer, monkeypatch)
        with pytest.raises(CommitFailedError):
            consumer.commit()


def test_disabled_auto_commit_commits_nothing(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 3)
    consumer = store.consumer(
        [T],
        group_id="g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        auto_commit_interval_ms=0,
    )
    _poll_all(consumer)
    consumer.close()
    assert store.offsets.group_offsets("g") == {}


# ---------------------------------------------------------------------- offset out of range


@pytest.mark.parametrize(
    ("reset", "position", "expected"),
    [("earliest", 4, [4, 5, 6]), ("latest", 6, [6])],
)
def test_poll_resets_per_auto_offset_reset_when_position_deleted(
    store: logstore.Store, topic: str, reset: str, position: int, expected: list[int]
) -> None:
    _fill(store, 0, 6)
    with store.consumer(auto_offset_reset=reset) as consumer:
        consumer.assign([TP0])
        consumer.seek(TP0, 1)
        store.partition(T, 0).delete_records(4)
        assert consumer.poll() == []  # the fetch is out of range: the position resets
        assert consumer.position(TP0) == position
        _fill(store, 0, 1, start=6)
        assert [r.offset for r in _poll_all(consumer)] == expected


def test_poll_raises_when_position_deleted_and_reset_none(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 6)
    with store.consumer(group_id="g", auto_offset_reset="none") as consumer:
        consumer.assign([TP0])
        consumer.seek(TP0, 1)
        store.partition(T, 0).delete_records(4)
        with pytest.raises(NoOffsetError):
            consumer.poll()


def test_poll_resets_when_position_past_log_end(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 3)
    with store.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        consumer.seek(TP0, 50)
        assert [r.offset for r in _poll_all(consumer)] == [0, 1, 2]


def test_committed_offset_below_log_start_starts_at_log_start_when_earliest(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 0, 6)
    store.offsets.commit("g", {TP0: (1, "")})
    store.partition(T, 0).delete_records(4)
    with store.consumer(group_id="g", auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        assert consumer.position(TP0) == 4


@pytest.mark.parametrize("reset", ["latest", "none"])
def test_committed_offset_below_log_start_resets_per_auto_offset_reset(
    store: logstore.Store, topic: str, reset: str
) -> None:
    _fill(store, 0, 6)
    store.offsets.commit("g", {TP0: (1, "")})
    store.partition(T, 0).delete_records(4)
    with store.consumer(group_id="g", auto_offset_reset=reset) as consumer:
        consumer.assign([TP0])
        if reset == "none":
            with pytest.raises(NoOffsetError):
                consumer.poll()
        else:
            assert consumer.position(TP0) == 6


# ---------------------------------------------------------------------- groups


def test_subscribe_without_group_id_raises(store: logstore.Store, topic: str) -> None:
    with pytest.raises(InvalidConfigError, match="group_id"):
        store.consumer([T])
    with store.consumer() as consumer, pytest.raises(InvalidConfigError):
        consumer.subscribe([T])


def test_subscribe_to_unknown_topic_raises(store: logstore.Store) -> None:
    with pytest.raises(KeyError):
        store.consumer(["missing"], group_id="g")


def test_assign_after_subscribe_raises(store: logstore.Store, topic: str) -> None:
    with store.consumer([T], group_id="g") as consumer, pytest.raises(InvalidConfigError):
        consumer.assign([TP0])


def test_single_member_gets_every_partition(store: logstore.Store, topic: str) -> None:
    assigned: list[list[TP]] = []
    with store.consumer([T], group_id="g", on_assign=assigned.append) as consumer:
        assert consumer.assignment() == [TP0, TP1]
    assert assigned == [[TP0, TP1]]


def test_rebalance_calls_on_revoke_and_on_assign_with_moved_partitions(
    store: logstore.Store, topic: str
) -> None:
    events: list[tuple[str, str, list[TP]]] = []

    def member(name: str) -> Consumer:
        return store.consumer(
            [T],
            group_id="g",
            member_id=name,
            enable_auto_commit=False,
            on_assign=lambda tps: events.append((name, "assign", tps)),
            on_revoke=lambda tps: events.append((name, "revoke", tps)),
        )

    a = member("a")
    assert events == [("a", "assign", [TP0, TP1])]
    b = member("b")  # range: a keeps t-0, b gets t-1 once a lets go of it
    assert b.assignment() == []
    assert events[1:] == []
    a.poll()
    assert events[1:] == [("a", "revoke", [TP1])]
    assert a.assignment() == [TP0]
    b.poll()
    assert events[2:] == [("b", "assign", [TP1])]
    assert b.assignment() == [TP1]
    b.close()  # leaving: b revokes its partition, a takes it back at its next poll
    assert events[3:] == [("b", "revoke", [TP1])]
    a.poll()
    assert events[4:] == [("a", "assign", [TP1])]
    assert a.assignment() == [TP0, TP1]
    a.close()
    assert events[5:] == [("a", "revoke", [TP0, TP1])]


def test_commit_of_partition_lost_in_rebalance_raises_commit_failed(
    store: logstore.Store, topic: str
) -> None:
    _fill(store, 1, 3)
    options = {"group_id": "g", "enable_auto_commit": False, "auto_offset_reset": "earliest"}
    a = store.consumer([T], member_id="a", **options)
    assert len(_poll_all(a)) == 3
    b = store.consumer([T], member_id="b", **options)
    a.poll()  # a notices the rebalance and gives up t-1
    with pytest.raises(CommitFailedError, match="events-1"):
        a.commit({TP1: 3})
    with pytest.raises(CommitFailedError):
        a.commit({TP0: 0, TP1: 3})
    assert store.offsets.group_offsets("g") == {}  # nothing of the failed commits
    a.commit({TP0: 0})  # still a's
    b.poll()
    b.commit({TP1: 1})
    assert {tp: c.offset for tp, c in store.offsets.group_offsets("g").items()} == {TP0: 0, TP1: 1}
    b.close()
    a.close()


def test_members_of_one_group_share_records_exactly_once(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 5)
    _fill(store, 1, 5)
    options = {"group_id": "g", "auto_offset_reset": "earliest"}
    a = store.consumer([T], member_id="a", assignor="roundrobin", **options)
    b = store.consumer([T], member_id="b", assignor="roundrobin", **options)
    got = a.poll(max_records=1)  # a gives up b's partition before reading from it
    got += _poll_all(a) + _poll_all(b)
    assert sorted((r.partition, r.offset) for r in got) == sorted(
        (p, o) for p in (0, 1) for o in range(5)
    )
    assert (a.assignment(), b.assignment()) == ([TP0], [TP1])
    a.close()
    b.close()


# ---------------------------------------------------------------------- iteration


def test_iteration_stops_after_consumer_timeout(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 3)
    with store.consumer(auto_offset_reset="earliest", consumer_timeout_ms=50) as consumer:
        consumer.assign([TP0])
        started = time.monotonic()
        records = list(consumer)
        assert time.monotonic() - started < 5
    assert [r.offset for r in records] == [0, 1, 2]


def test_iteration_stops_when_consumer_closed(store: logstore.Store, topic: str) -> None:
    _fill(store, 0, 2)
    consumer = store.consumer(auto_offset_reset="earliest")
    consumer.assign([TP0])
    seen = []
    for record in consumer:
        seen.append(record.offset)
        if record.offset == 1:
            consumer.close()
    assert seen == [0, 1]
