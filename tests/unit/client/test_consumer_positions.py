"""A consumer's position is the offset after the last record handed to the application
(Kafka's rule), whether records come from ``poll()``, iteration or ``async for``: what
``commit()`` and auto-commit store never runs ahead of what the application was given,
however far a fetch read ahead (issue 10, point 1)."""

from __future__ import annotations

import asyncio

import pytest

import logstore
from logstore.client.aio import AsyncConsumer
from logstore.types import TopicPartition

T = "events"
TP0, TP1 = TopicPartition(T, 0), TopicPartition(T, 1)


@pytest.fixture
def store_with_records(store: logstore.Store) -> logstore.Store:
    store.create_topic(T, 2)
    store.append_many(T, [(b"p0-%d" % i, None, None, 0, None) for i in range(1200)])
    store.append_many(T, [(b"p1-%d" % i, None, None, 1, None) for i in range(1200)])
    return store


def _group(store: logstore.Store, **options: object) -> logstore.Consumer:
    options.setdefault("auto_offset_reset", "earliest")
    options.setdefault("enable_auto_commit", False)
    return store.consumer([T], group_id="g", **options)


def test_commit_in_loop_body_commits_only_up_to_the_handed_record(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    with _group(store) as consumer:
        for record in consumer:
            consumer.commit()
            tp = TopicPartition(record.topic, record.partition)
            assert consumer.committed(tp) == record.offset + 1
            assert consumer.position(tp) == record.offset + 1
            break
    committed = {tp: store.offsets.committed("g", tp) for tp in (TP0, TP1)}
    got = {tp: c.offset for tp, c in committed.items() if c is not None}
    assert got == {TopicPartition(record.topic, record.partition): 1}


def test_commit_per_record_never_runs_ahead_of_the_handled_records(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    handled: dict[TopicPartition, int] = {}
    with _group(store) as consumer:
        for record in consumer:
            handled[TopicPartition(record.topic, record.partition)] = record.offset + 1
            consumer.commit()
            committed = {tp: store.offsets.committed("g", tp) for tp in (TP0, TP1)}
            assert {tp: c.offset for tp, c in committed.items() if c is not None} == handled
            if sum(handled.values()) >= 520:
                break


def test_positions_follow_iteration_per_partition(store_with_records: logstore.Store) -> None:
    store = store_with_records
    with _group(store) as consumer:
        handed: dict[TopicPartition, int] = {}
        for n, record in enumerate(consumer, 1):
            tp = TopicPartition(record.topic, record.partition)
            handed[tp] = record.offset + 1
            for other, pos in handed.items():
                assert consumer.position(other) == pos
            if n == 700:  # across a fetch boundary and both partitions
                break
        consumer.commit()
        assert {tp: consumer.committed(tp) for tp in handed} == handed


def test_auto_commit_commits_only_handed_records_on_close(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    with _group(store, enable_auto_commit=True, auto_commit_interval_ms=60_000) as consumer:
        for n, record in enumerate(consumer, 1):
            tp = TopicPartition(record.topic, record.partition)
            if n == 5:
                break
    assert store.offsets.committed("g", tp).offset == 5  # type: ignore[union-attr]


def test_auto_commit_before_next_fetch_commits_what_iteration_handed_out(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    consumer = _group(store, enable_auto_commit=True, auto_commit_interval_ms=0)
    tps_seen: dict[TopicPartition, int] = {}
    for n, record in enumerate(consumer, 1):
        tps_seen[TopicPartition(record.topic, record.partition)] = record.offset + 1
        if n == 501:  # the first fetch (500) is done: the next fetch auto-committed them
            break
    first = next(iter(tps_seen))
    committed = store.offsets.committed("g", first)
    assert committed is not None and committed.offset <= tps_seen[first]
    consumer.close()
    assert {tp: store.offsets.committed("g", tp).offset for tp in tps_seen} == tps_seen  # type: ignore[union-attr]


def test_exception_in_loop_body_does_not_commit_the_failing_record(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    with pytest.raises(RuntimeError), \
            _group(store, enable_auto_commit=True) as consumer:
        for record in consumer:
            if record.offset == 7:
                failed = TopicPartition(record.topic, record.partition)
                raise RuntimeError("handler failed")
    assert store.offsets.committed("g", failed).offset == 7  # type: ignore[union-attr]


def test_break_then_close_commits_the_last_handled_record(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    with _group(store, enable_auto_commit=True) as consumer:
        for record in consumer:
            if record.offset == 7:
                tp = TopicPartition(record.topic, record.partition)
                break
    assert store.offsets.committed("g", tp).offset == 8  # type: ignore[union-attr]


def test_poll_hands_out_everything_it_returns(store_with_records: logstore.Store) -> None:
    store = store_with_records
    with _group(store) as consumer:
        records = consumer.poll(timeout_ms=100, max_records=10)
        consumer.commit()
        tp = TopicPartition(records[-1].topic, records[-1].partition)
        assert consumer.committed(tp) == records[-1].offset + 1 == 10


def test_seek_inside_the_loop_drops_what_was_fetched_ahead(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    with store.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        got = []
        for record in consumer:
            got.append(record.offset)
            if record.offset == 3:
                consumer.seek(TP0, 100)
            if len(got) == 6:
                break
        assert got == [0, 1, 2, 3, 100, 101]


def test_poll_after_a_broken_off_iteration_continues_from_the_handed_position(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    with store.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        for record in consumer:
            if record.offset == 9:
                break
        assert [r.offset for r in consumer.poll(max_records=3)] == [10, 11, 12]
        assert consumer.position(TP0) == 13
        assert next(iter(consumer)).offset == 13
        assert consumer.position(TP0) == 14


def test_async_iteration_commits_only_up_to_the_handed_record(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records

    async def run() -> TopicPartition:
        async with AsyncConsumer(
            store, [T], group_id="g", auto_offset_reset="earliest", enable_auto_commit=False
        ) as consumer:
            async for record in consumer:
                await consumer.commit()
                return TopicPartition(record.topic, record.partition)
        raise AssertionError("no record")

    tp = asyncio.run(run())
    assert store.offsets.committed("g", tp).offset == 1  # type: ignore[union-attr]


def test_async_exception_does_not_commit_the_failing_record(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records

    async def run() -> None:
        async with AsyncConsumer(
            store, [T], group_id="g", auto_offset_reset="earliest", enable_auto_commit=True
        ) as consumer:
            async for record in consumer:
                if record.offset == 4:
                    raise RuntimeError(f"{record.partition}")

    with pytest.raises(RuntimeError) as info:
        asyncio.run(run())
    tp = TopicPartition(T, int(str(info.value)))
    assert store.offsets.committed("g", tp).offset == 4  # type: ignore[union-attr]


def test_iteration_stops_handing_out_when_closed_in_the_loop_body(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    consumer = store.consumer(auto_offset_reset="earliest")
    consumer.assign([TP0])
    got = []
    for record in consumer:
        got.append(record.offset)
        if record.offset == 2:
            consumer.close()
    assert got == [0, 1, 2]


def test_pause_inside_the_loop_stops_that_partition_at_once(
    store_with_records: logstore.Store,
) -> None:
    store = store_with_records
    with store.consumer(auto_offset_reset="earliest", consumer_timeout_ms=200) as consumer:
        consumer.assign([TP0, TP1])
        got: list[tuple[int, int]] = []
        for record in consumer:
            got.append((record.partition, record.offset))
            if len(got) == 1:
                paused = TopicPartition(T, record.partition)
                consumer.pause(paused)
        assert [g for g in got if g[0] == paused.partition] == [got[0]]
        assert consumer.position(paused) == got[0][1] + 1
        assert consumer.paused() == [paused]
        consumer.resume(paused)
        assert consumer.paused() == []
        assert len(got) == 1 + 1200  # all of the other partition
