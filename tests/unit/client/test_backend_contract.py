"""The clients' core cases on every backend: the proof that the backend seam is complete.

Every test runs twice, on :class:`~logstore.backend.LocalBackend` (an embedded store on
``tmp_path``) and on :class:`~tests.fakes.MemoryBackend` (Python lists and dicts, written
from the Protocol's docstrings). The tests use the clients' public API on a backend
(``Producer(backend)``, ``Consumer(backend, ...)``, the asyncio twins,
``logstore.client.admin.*(backend, ...)``) and nothing else, apart from :class:`Env`, a
few lines per backend to create, delete and trim topics (what an operator does, not a
client).

The cases mirror the core of ``test_producer.py``, ``test_consumer.py``,
``test_consumer_positions.py`` and ``tests/integration/test_groups.py``: produce, consume
with ``assign``, seek, timestamps, commits, groups, group administration. The cases that
need a group coordinator (consumers with ``group_id`` + ``subscribe``, and the admin
calls, which describe the group) are marked ``groups``: ``-m groups`` selects them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore.backend import backend_for
from logstore.backend.kafka import KafkaBackend
from logstore.client import admin
from logstore.client.aio import AsyncConsumer, AsyncProducer
from logstore.client.backend import Backend
from logstore.client.consumer import Consumer
from logstore.client.producer import Producer
from logstore.errors import (
    CommitFailedError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InvalidConfigError,
    NoOffsetError,
    PartitionNotFoundError,
    RecordTooLargeError,
    StorageError,
    TopicExistsError,
    TopicNotFoundError,
    UnknownMemberIdError,
)
from logstore.partitioner import KeyHashPartitioner
from logstore.types import (
    AppendResult,
    ConsumerRecord,
    OffsetAndTimestamp,
    RecordMetadata,
    TopicPartition,
)
from tests.conftest import FakeClock
from tests.fakes import MemoryBackend
from tests.kafka_admin import kafka_delete_records

TP = TopicPartition
T = "events"
TP0, TP1 = TP(T, 0), TP(T, 1)
FOREVER_MS = 10**9


@dataclass
class Env:
    """A backend and the operator's side of it (topics), per backend kind."""

    kind: str
    backend: Backend
    clock: FakeClock
    create_topic: Callable[..., object]
    delete_topic: Callable[[str], None]
    delete_records: Callable[[TopicPartition, int], object]
    add_partitions: Callable[[str, int], object]


def _local(tmp_path: Path, clock: FakeClock) -> Iterator[Env]:
    with logstore.open(str(tmp_path / "store"), clock=clock) as store:
        yield Env(
            "local",
            backend_for(store),  # type: ignore[arg-type]  # the group part comes at merge
            clock,
            lambda name, partitions=1, **config: store.create_topic(name, partitions, **config),
            store.delete_topic,
            lambda tp, offset: store.partition(tp.topic, tp.partition).delete_records(offset),
            store.add_partitions,
        )


def _memory(clock: FakeClock) -> Iterator[Env]:
    backend = MemoryBackend(clock)
    yield Env(
        "memory",
        backend,
        clock,
        backend.create_topic,
        backend.delete_topic,
        backend.delete_records,
        backend.add_partitions,
    )
    backend.close()


def _kafka(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Env]:
    """A real Kafka broker (the session's), emptied of this test's topics and groups
    afterwards, so every test starts from a cluster without ``events`` or ``g``."""
    broker = request.getfixturevalue("kafka_broker")
    _empty_cluster(broker.bootstrap)
    backend = KafkaBackend(broker.bootstrap, clock=clock)

    def create(name: str, partitions: int = 1, **config: Any) -> object:
        deadline = time.monotonic() + 30
        while True:  # a topic deleted a moment ago may still be "marked for deletion"
            try:
                return backend.create_topic(name, partitions, **config)
            except TopicExistsError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def delete_records(tp: TopicPartition, offset: int) -> object:
        return kafka_delete_records(broker.bootstrap, tp, offset)

    try:
        yield Env("kafka", backend, clock, create, backend.delete_topic, delete_records,
                  backend.add_partitions)
    finally:
        backend.close()
        _empty_cluster(broker.bootstrap)


def _empty_cluster(bootstrap: str) -> None:
    """Delete every group and topic (tests of the Kafka backend share one broker)."""
    with KafkaBackend(bootstrap) as cleaner:
        for group in cleaner.list_groups():
            deadline = time.monotonic() + 30
            while True:  # a member that just left may still be leaving
                try:
                    cleaner.delete_group(group)
                    break
                except GroupNotEmptyError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        for name in cleaner.list_topics():
            cleaner.delete_topic(name)


@pytest.fixture(params=["local", "memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def env(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Env]:
    if request.param == "local":
        yield from _local(tmp_path, clock)
    elif request.param == "kafka":
        yield from _kafka(request, clock)
    else:
        yield from _memory(clock)


@pytest.fixture
def topic(env: Env) -> str:
    env.create_topic(T, 2)
    return T


def _fill(env: Env, partition: int, n: int, start: int = 0) -> None:
    """``n`` records ``p<partition>-<i>`` with timestamps ``1000 * (i + 1)``."""
    with Producer(env.backend, linger_ms=0) as producer:
        for i in range(start, start + n):
            producer.send(T, b"p%d-%d" % (partition, i), partition=partition,
                          timestamp=1000 * (i + 1))


def _poll_all(consumer: Consumer, idle_polls: int = 3) -> list[ConsumerRecord]:
    """Poll until a few polls in a row come back empty."""
    out: list[ConsumerRecord] = []
    empty = 0
    while empty < idle_polls:
        records = consumer.poll()
        out += records
        empty = 0 if records else empty + 1
    return out


def _read(env: Env, tp: TopicPartition) -> list[ConsumerRecord]:
    with Consumer(env.backend, auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        return _poll_all(consumer)


def _values(records: list[ConsumerRecord]) -> list[bytes | None]:
    return [r.value for r in records]


def _committed(env: Env, group: str) -> dict[TopicPartition, int]:
    return {tp: c.offset for tp, c in env.backend.committed_offsets(group).items()}


# ====================================================================== produce


def test_send_returns_futures_resolving_to_contiguous_offsets(env: Env, topic: str) -> None:
    with Producer(env.backend, linger_ms=0) as producer:
        futures = [producer.send(topic, b"v%d" % i, partition=1) for i in range(5)]
        metas = [f.result(timeout=5) for f in futures]
    assert metas == [RecordMetadata(topic, 1, i, env.clock.now) for i in range(5)]
    assert _values(_read(env, TP1)) == [b"v%d" % i for i in range(5)]


def test_send_keeps_key_headers_and_timestamp(env: Env, topic: str) -> None:
    with Producer(env.backend, linger_ms=0) as producer:
        meta = producer.send(topic, b"v", key=b"k", headers={"h": b"1", "n": None},
                             partition=0, timestamp=1234).result()
    assert meta == RecordMetadata(topic, 0, 0, 1234)
    [record] = _read(env, TP0)
    assert (record.offset, record.timestamp, record.key, record.value) == (0, 1234, b"k", b"v")
    assert list(record.headers) == [("h", b"1"), ("n", None)]


def test_same_key_goes_to_the_partition_the_topics_partitioner_chooses(env: Env) -> None:
    env.create_topic(T, 3)
    partitioner = KeyHashPartitioner(env.backend.topic_metadata(T).partitioner)
    keys = [b"user-%d" % i for i in range(20)]
    with Producer(env.backend, linger_ms=0) as producer:
        metas = [producer.send(T, b"v", key=k).result() for k in keys]
        again = [producer.send(T, b"v", key=k).result() for k in keys]
    assert [m.partition for m in metas] == [partitioner.partition(k, 3) for k in keys]
    assert [m.partition for m in again] == [m.partition for m in metas]
    assert len({m.partition for m in metas}) > 1


def test_send_explicit_partition_wins_over_key(env: Env, topic: str) -> None:
    with Producer(env.backend, linger_ms=0) as producer:
        metas = [producer.send(topic, b"v", key=b"k", partition=p).result() for p in (0, 1)]
    assert [m.partition for m in metas] == [0, 1]


def test_send_to_unknown_topic_or_partition_raises(env: Env, topic: str) -> None:
    with Producer(env.backend, linger_ms=0) as producer:
        with pytest.raises(TopicNotFoundError):
            producer.send("nope", b"v")
        with pytest.raises(PartitionNotFoundError):
            producer.send(topic, b"v", partition=2)


def test_send_sees_partitions_added_since(env: Env, topic: str) -> None:
    with Producer(env.backend, linger_ms=0, metadata_max_age_ms=0) as producer:
        env.add_partitions(topic, 3)
        assert producer.send(topic, b"v", partition=2).result().partition == 2


def test_lingering_records_are_written_by_flush_and_resolve_callbacks(
    env: Env, topic: str
) -> None:
    seen: list[tuple[RecordMetadata | None, BaseException | None]] = []
    with Producer(env.backend, linger_ms=FOREVER_MS) as producer:
        futures = [producer.send(topic, b"%d" % i, partition=0) for i in range(3)]
        futures[0].add_callback(lambda m, e: seen.append((m, e)))
        assert not any(f.done() for f in futures)
        assert _read(env, TP0) == []
        producer.flush()
        assert all(f.done() for f in futures)
        futures[1].add_callback(lambda m, e: seen.append((m, e)))  # already written: now
    assert seen == [(RecordMetadata(topic, 0, 0, env.clock.now), None),
                    (RecordMetadata(topic, 0, 1, env.clock.now), None)]
    assert _values(_read(env, TP0)) == [b"0", b"1", b"2"]


def test_result_flushes_a_lingering_batch(env: Env, topic: str) -> None:
    with Producer(env.backend, linger_ms=FOREVER_MS) as producer:
        producer.send(topic, b"a", partition=0)
        second = producer.send(topic, b"b", partition=0)
        assert second.result(timeout=5).offset == 1


def test_linger_thread_writes_without_flush(env: Env, topic: str) -> None:
    with Producer(env.backend, linger_ms=20) as producer:
        future = producer.send(topic, b"later", partition=0)
        deadline = time.monotonic() + 5
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert future.done()
    assert _values(_read(env, TP0)) == [b"later"]


def test_close_writes_what_is_queued(env: Env, topic: str) -> None:
    producer = Producer(env.backend, linger_ms=FOREVER_MS)
    futures = [producer.send(topic, b"%d" % i, partition=1) for i in range(3)]
    producer.close()
    producer.close()
    assert [f.result(timeout=0).offset for f in futures] == [0, 1, 2]


def test_a_too_large_record_fails_its_future_and_callback(env: Env) -> None:
    env.create_topic(T, 1, max_message_bytes=200)
    errors: list[BaseException | None] = []
    with Producer(env.backend, linger_ms=0) as producer:
        future = producer.send(T, b"x" * 500)
        future.add_callback(lambda m, e: errors.append(e))
        with pytest.raises(RecordTooLargeError):
            future.result()
        assert producer.send(T, b"small").result().offset == 0
    assert len(errors) == 1 and isinstance(errors[0], RecordTooLargeError)


def test_a_send_to_a_deleted_topic_fails_and_is_not_written_into_its_successor(
    env: Env, topic: str
) -> None:
    with Producer(env.backend, linger_ms=FOREVER_MS) as producer:
        future = producer.send(topic, b"old", partition=0)
        env.delete_topic(topic)
        env.create_topic(topic, 2)
        producer.flush()
        with pytest.raises(TopicNotFoundError):
            future.result()
        assert producer.send(topic, b"new", partition=0).result().offset == 0
    assert _values(_read(env, TP0)) == [b"new"]


class FlakyBackend:
    """A backend whose first append writes the batch and then reports a failed write
    (an fsync error after the bytes landed): the producer must retry, and the retry must
    not write the batch twice (idempotence)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.appends = 0

    def append(self, *args: Any, **kwargs: Any) -> AppendResult:
        self.appends += 1
        result = self.inner.append(*args, **kwargs)
        if self.appends == 1:
            raise StorageError("fsync failed (injected after the write)")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_retried_batch_is_written_once(env: Env, topic: str) -> None:
    flaky = FlakyBackend(env.backend)
    with Producer(flaky, linger_ms=0, retry_backoff_ms=0) as producer:
        first = producer.send(topic, b"a", partition=0).result()
        second = producer.send(topic, b"b", partition=0).result()
    assert flaky.appends == 3
    assert (first.offset, second.offset) == (0, 1)
    assert _values(_read(env, TP0)) == [b"a", b"b"]


def test_a_non_idempotent_retry_is_written_twice(env: Env, topic: str) -> None:
    flaky = FlakyBackend(env.backend)
    with Producer(flaky, linger_ms=0, retry_backoff_ms=0, idempotent=False) as producer:
        assert producer.send(topic, b"a", partition=0).result().offset == 1
    assert _values(_read(env, TP0)) == [b"a", b"a"]  # why idempotence is the default


def test_async_producer_sends_and_flushes(env: Env, topic: str) -> None:
    async def run() -> list[RecordMetadata]:
        async with AsyncProducer(env.backend, linger_ms=5) as producer:
            pending = [await producer.send_nowait(topic, b"%d" % i, partition=1)
                       for i in range(3)]
            await producer.flush()
            return [await p for p in pending] + [await producer.send(topic, b"x", partition=1)]

    metas = asyncio.run(run())
    assert [m.offset for m in metas] == [0, 1, 2, 3]
    assert _values(_read(env, TP1)) == [b"0", b"1", b"2", b"x"]


# ====================================================================== consume (assign)


def test_poll_returns_records_in_order_from_earliest(env: Env, topic: str) -> None:
    _fill(env, 0, 5)
    with Consumer(env.backend, auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        records = _poll_all(consumer)
    assert [(r.topic, r.partition, r.offset, r.timestamp) for r in records] == [
        (T, 0, i, 1000 * (i + 1)) for i in range(5)
    ]


def test_poll_from_latest_returns_only_new_records(env: Env, topic: str) -> None:
    _fill(env, 0, 3)
    with Consumer(env.backend) as consumer:
        consumer.assign([TP0])
        assert consumer.position(TP0) == 3
        assert consumer.poll() == []
        _fill(env, 0, 2, start=3)
        assert _values(_poll_all(consumer)) == [b"p0-3", b"p0-4"]


def test_poll_reads_every_assigned_partition_within_max_records(env: Env, topic: str) -> None:
    _fill(env, 0, 4)
    _fill(env, 1, 4)
    with Consumer(env.backend, auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0, TP1])
        assert len(consumer.poll(max_records=3)) == 3
        rest = _poll_all(consumer)
    assert len(rest) == 5


def test_poll_waits_for_a_record_appended_meanwhile(env: Env, topic: str) -> None:
    with Consumer(env.backend, auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        assert consumer.poll() == []
        timer = threading.Timer(0.05, _fill, (env, 0, 1))
        timer.start()
        started = time.monotonic()
        records = consumer.poll(timeout_ms=5000)
        timer.join()
    assert _values(records) == [b"p0-0"]
    assert time.monotonic() - started < 4


def test_poll_waits_up_to_timeout_when_no_records(env: Env, topic: str) -> None:
    with Consumer(env.backend, auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        started = time.monotonic()
        assert consumer.poll(timeout_ms=100) == []
        assert time.monotonic() - started >= 0.09


def test_fetch_max_bytes_returns_at_least_one_batch(env: Env, topic: str) -> None:
    with Producer(env.backend, linger_ms=FOREVER_MS) as producer:
        for _ in range(3):
            producer.send(topic, b"x" * 300, partition=0)
            producer.flush()
    with Consumer(env.backend, auto_offset_reset="earliest", fetch_max_bytes=1) as consumer:
        consumer.assign([TP0])
        assert [r.offset for r in consumer.poll()] == [0]
        assert [r.offset for r in _poll_all(consumer)] == [1, 2]


def test_iteration_hands_out_every_record_and_stops_after_consumer_timeout(
    env: Env, topic: str
) -> None:
    _fill(env, 0, 3)
    with Consumer(env.backend, auto_offset_reset="earliest", consumer_timeout_ms=50) as c:
        c.assign([TP0])
        assert [r.offset for r in c] == [0, 1, 2]
        assert c.position(TP0) == 3


def test_assign_rejects_unknown_partition_and_topic(env: Env, topic: str) -> None:
    with Consumer(env.backend) as consumer:
        with pytest.raises(PartitionNotFoundError):
            consumer.assign([TP(T, 2)])
        with pytest.raises(TopicNotFoundError):
            consumer.assign([TP("nope", 0)])


def test_position_seek_and_replay(env: Env, topic: str) -> None:
    _fill(env, 0, 6)
    with Consumer(env.backend, auto_offset_reset="earliest") as consumer:
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


def test_seek_to_beginning_goes_to_log_start_after_delete_records(env: Env, topic: str) -> None:
    _fill(env, 0, 6)
    env.delete_records(TP0, 4)
    with Consumer(env.backend) as consumer:
        consumer.assign([TP0])
        consumer.seek_to_beginning(TP0)
        assert consumer.position(TP0) == 4
        assert [r.offset for r in _poll_all(consumer)] == [4, 5]


@pytest.mark.parametrize(("reset", "expected"), [("earliest", 4), ("latest", 6)])
def test_poll_resets_per_auto_offset_reset_when_position_deleted(
    env: Env, topic: str, reset: str, expected: int
) -> None:
    _fill(env, 0, 6)
    with Consumer(env.backend, auto_offset_reset=reset) as consumer:
        consumer.assign([TP0])
        consumer.seek(TP0, 1)
        env.delete_records(TP0, 4)
        records = _poll_all(consumer)
        assert consumer.position(TP0) == 6
    assert [r.offset for r in records] == list(range(expected, 6))


def test_poll_resets_when_position_past_log_end(env: Env, topic: str) -> None:
    _fill(env, 0, 2)
    with Consumer(env.backend, auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        consumer.seek(TP0, 50)
        assert [r.offset for r in _poll_all(consumer)] == [0, 1]


def test_offsets_for_times_returns_first_offset_at_or_after_timestamp(
    env: Env, topic: str
) -> None:
    _fill(env, 0, 5)  # timestamps 1000, 2000, ..., 5000
    with Consumer(env.backend) as consumer:
        assert consumer.offsets_for_times({TP0: 2500, TP1: 0}) == {
            TP0: OffsetAndTimestamp(2, 3000), TP1: None,
        }
        assert consumer.offsets_for_times({TP0: 3000}) == {TP0: OffsetAndTimestamp(2, 3000)}
        assert consumer.offsets_for_times({TP0: 0}) == {TP0: OffsetAndTimestamp(0, 1000)}
        assert consumer.offsets_for_times({TP0: 5001}) == {TP0: None}


def test_seek_to_timestamp_moves_to_first_record_at_or_after_it(env: Env, topic: str) -> None:
    _fill(env, 0, 5)
    _fill(env, 1, 2)
    with Consumer(env.backend, auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0, TP1])
        consumer.seek_to_timestamp(3500)
        assert consumer.position(TP0) == 3
        assert consumer.position(TP1) == 2  # nothing that late: the end
        assert [r.offset for r in _poll_all(consumer)] == [3, 4]
        consumer.seek_to_timestamp(0, TP0)
        assert consumer.position(TP0) == 0


def test_pause_stops_a_partition_and_resume_continues_it(env: Env, topic: str) -> None:
    _fill(env, 0, 2)
    _fill(env, 1, 2)
    with Consumer(env.backend, auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0, TP1])
        consumer.pause(TP0)
        assert {r.partition for r in _poll_all(consumer)} == {1}
        consumer.resume(TP0)
        assert [r.offset for r in _poll_all(consumer)] == [0, 1]
        assert (consumer.position(TP0), consumer.position(TP1)) == (2, 2)


def test_a_recreated_topic_is_read_from_its_beginning(env: Env, topic: str) -> None:
    _fill(env, 0, 3)
    with Consumer(env.backend, auto_offset_reset="latest", metadata_max_age_ms=0) as consumer:
        consumer.assign([TP0])
        assert consumer.position(TP0) == 3
        env.delete_topic(T)
        env.create_topic(T, 2)
        _fill(env, 0, 1)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 5
        while not records and time.monotonic() < deadline:
            try:
                records = consumer.poll(timeout_ms=10)
            except TopicNotFoundError:  # seen between the delete and the create
                continue
    assert [(r.offset, r.value) for r in records] == [(0, b"p0-0")]


def test_async_consumer_polls_and_iterates(env: Env, topic: str) -> None:
    _fill(env, 0, 3)

    async def run() -> list[int]:
        async with AsyncConsumer(
            env.backend, auto_offset_reset="earliest", consumer_timeout_ms=50
        ) as consumer:
            consumer.consumer.assign([TP0])
            first = await consumer.poll(max_records=1)
            return [r.offset for r in first] + [r.offset async for r in consumer]

    assert asyncio.run(run()) == [0, 1, 2]


# ====================================================================== commits


def test_commit_then_committed_returns_position(env: Env, topic: str) -> None:
    _fill(env, 0, 3)
    options = {"group_id": "g", "auto_offset_reset": "earliest", "enable_auto_commit": False}
    with Consumer(env.backend, **options) as consumer:  # type: ignore[arg-type]
        consumer.assign([TP0])
        assert consumer.committed(TP0) is None
        consumer.poll(max_records=2)
        consumer.commit()
        assert consumer.committed(TP0) == 2
        consumer.commit({TP0: 1})
        assert consumer.committed(TP0) == 1
        consumer.commit({(T, 0): (3, "note")})  # type: ignore[dict-item]
    committed = env.backend.committed_offsets("g", [TP0])[TP0]
    assert (committed.offset, committed.metadata) == (3, "note")
    assert committed.topic_id == env.backend.topic_metadata(T).topic_id


def test_a_new_consumer_resumes_from_the_committed_offset(env: Env, topic: str) -> None:
    _fill(env, 0, 5)
    options = {"group_id": "g", "auto_offset_reset": "earliest"}
    with Consumer(env.backend, enable_auto_commit=False, **options) as first:  # type: ignore[arg-type]
        first.assign([TP0])
        first.poll(max_records=2)
        first.commit()
    with Consumer(env.backend, auto_offset_reset="none", group_id="g") as second:
        second.assign([TP0])
        assert [r.offset for r in _poll_all(second)] == [2, 3, 4]


def test_auto_commit_commits_returned_positions_on_close(env: Env, topic: str) -> None:
    _fill(env, 0, 4)
    with Consumer(env.backend, group_id="g", auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        consumer.poll(max_records=3)
    assert _committed(env, "g") == {TP0: 3}


def test_disabled_auto_commit_commits_nothing(env: Env, topic: str) -> None:
    _fill(env, 0, 4)
    with Consumer(env.backend, group_id="g", auto_offset_reset="earliest",
                  enable_auto_commit=False) as consumer:
        consumer.assign([TP0])
        _poll_all(consumer)
    assert _committed(env, "g") == {}


def test_commit_in_the_loop_body_commits_only_up_to_the_handed_record(
    env: Env, topic: str
) -> None:
    _fill(env, 0, 10)
    with Consumer(env.backend, group_id="g", auto_offset_reset="earliest",
                  enable_auto_commit=False) as consumer:
        consumer.assign([TP0])
        for record in consumer:
            consumer.commit()
            if record.offset == 3:
                break
    assert _committed(env, "g") == {TP0: 4}


def test_reset_none_raises_without_a_committed_offset(env: Env, topic: str) -> None:
    with Consumer(env.backend, group_id="g", auto_offset_reset="none") as consumer:
        consumer.assign([TP0])
        with pytest.raises(NoOffsetError):
            consumer.poll()


def test_an_offset_committed_against_a_deleted_topic_is_not_used(env: Env, topic: str) -> None:
    _fill(env, 0, 3)
    with Consumer(env.backend, group_id="g", enable_auto_commit=False) as consumer:
        consumer.assign([TP0])
        consumer.commit({TP0: 2})
    env.delete_topic(T)
    env.create_topic(T, 2)
    _fill(env, 0, 3)
    with Consumer(env.backend, group_id="g", auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        assert consumer.committed(TP0) is None
        assert [r.offset for r in _poll_all(consumer)] == [0, 1, 2]


def test_async_consumer_commits_only_up_to_the_handed_record(env: Env, topic: str) -> None:
    _fill(env, 0, 5)

    async def run() -> None:
        async with AsyncConsumer(env.backend, group_id="g", auto_offset_reset="earliest",
                                 enable_auto_commit=False) as consumer:
            consumer.consumer.assign([TP0])
            async for record in consumer:
                await consumer.commit()
                if record.offset == 1:
                    return

    asyncio.run(run())
    assert _committed(env, "g") == {TP0: 2}


# ====================================================================== groups


def _member(env: Env, name: str, **options: Any) -> Consumer:
    options.setdefault("auto_offset_reset", "earliest")
    options.setdefault("enable_auto_commit", False)
    return Consumer(env.backend, [T], group_id="g", member_id=name, **options)


def _settle(*consumers: Consumer, timeout_s: float = 30) -> None:
    """Poll every consumer in turn until the group is stable: no member rebalancing, and
    their assignments divide the topic's partitions (each partition has one owner).

    (On Kafka a member that owns partitions learns of a rebalance at its next heartbeat,
    seconds later, not at once: README "Kafka cluster backend", so this waits by time.)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for consumer in consumers:
            consumer.poll(timeout_ms=5)
        owned = [tp for c in consumers for tp in c.assignment()]
        if not any(c.rebalancing() for c in consumers) and sorted(owned) == [TP0, TP1]:
            return
    raise AssertionError(f"no stable assignment: {[c.assignment() for c in consumers]}")


def _name(env: Env, member_id: str) -> str:
    """The member id a consumer was given: on Kafka the coordinator's id for it is that
    id, a dash and a UUID (README "Kafka cluster backend")."""
    if env.kind == "kafka":
        return member_id.rsplit("-", 5)[0]
    return member_id


def _on_a_store_only(env: Env, why: str) -> None:
    """Skip a case the README's table of Kafka differences lists as one."""
    if env.kind == "kafka":
        pytest.skip(f"Kafka cluster backend: {why} (README, 'Kafka cluster backend')")


@pytest.mark.groups
def test_group_single_member_gets_every_partition(env: Env, topic: str) -> None:
    assigned: list[list[TopicPartition]] = []
    with _member(env, "a", on_assign=assigned.append) as consumer:
        _settle(consumer)
        assert sorted(consumer.assignment()) == [TP0, TP1]
    assert sorted(tp for tps in assigned for tp in tps) == [TP0, TP1]


@pytest.mark.groups
def test_group_two_members_in_one_thread_share_partitions_and_callbacks_agree(
    env: Env, topic: str
) -> None:
    events: list[tuple[str, str, TopicPartition]] = []

    def member(name: str) -> Consumer:
        return _member(
            env, name,
            on_assign=lambda tps: events.extend((name, "assign", tp) for tp in tps),
            on_revoke=lambda tps: events.extend((name, "revoke", tp) for tp in tps),
        )

    a = member("a")
    _settle(a)
    b = member("b")
    _settle(a, b)
    assert len(a.assignment()) == len(b.assignment()) == 1
    owner: dict[TopicPartition, str] = {}
    for name, what, tp in events:  # a partition is never assigned to two at once
        if what == "assign":
            assert tp not in owner, (tp, owner, events)
            owner[tp] = name
        else:
            assert owner.pop(tp) == name
    assert owner == {tp: "a" for tp in a.assignment()} | {tp: "b" for tp in b.assignment()}
    b.close()  # leaving: b revokes its partition, a takes it at its next polls
    assert events[-1][:2] == ("b", "revoke")
    _settle(a)
    assert sorted(a.assignment()) == [TP0, TP1]
    a.close()


@pytest.mark.groups
def test_group_members_share_records_exactly_once(env: Env, topic: str) -> None:
    _fill(env, 0, 5)
    _fill(env, 1, 5)
    a = _member(env, "a", enable_auto_commit=True)
    b = _member(env, "b", enable_auto_commit=True)
    got: list[ConsumerRecord] = []
    for _ in range(200):
        got += a.poll() + b.poll()
        if len(got) >= 10 and not a.rebalancing() and not b.rebalancing():
            break
    got += _poll_all(a) + _poll_all(b)
    assert sorted((r.partition, r.offset) for r in got) == [
        (p, o) for p in (0, 1) for o in range(5)
    ]
    a.close()
    b.close()
    assert _committed(env, "g") == {TP0: 5, TP1: 5}


@pytest.mark.groups
def test_group_commit_of_a_partition_moved_away_raises_commit_failed(
    env: Env, topic: str
) -> None:
    a = _member(env, "a")
    _settle(a)
    b = _member(env, "b")
    _settle(a, b)
    [lost] = b.assignment()
    with pytest.raises(CommitFailedError):
        a.commit({lost: 3})
    assert _committed(env, "g") == {}
    [kept] = a.assignment()
    a.commit({kept: 0})
    b.commit({lost: 1})
    assert _committed(env, "g") == {kept: 0, lost: 1}
    b.close()
    a.close()


@pytest.mark.groups
def test_group_a_silent_member_is_removed_and_fenced(env: Env, topic: str) -> None:
    _on_a_store_only(env, "a broker takes session timeouts of 6 s and more "
                          "(group.min.session.timeout.ms)")
    _fill(env, 0, 3)
    _fill(env, 1, 3)
    # long enough that b, polling every 10 ms, never misses it on a loaded machine (at
    # 150 ms, b itself was removed once in a full run beside a Kafka broker's JVM)
    timeouts = {"session_timeout_ms": 400, "max_poll_interval_ms": 400}
    a = _member(env, "a", **timeouts)
    b = _member(env, "b", **timeouts)
    _settle(a, b)
    silent_until = time.monotonic() + 1.0  # a stops polling (a stuck loop, a SIGSTOP)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < silent_until or sorted(b.assignment()) != [TP0, TP1]
    ) and time.monotonic() < deadline:
        b.poll(timeout_ms=10)  # b goes on
    assert sorted(b.assignment()) == [TP0, TP1]
    b.commit({TP0: 2, TP1: 2})
    with pytest.raises(CommitFailedError):  # a's generation is over: refused
        a.commit({TP0: 3})
    assert _committed(env, "g") == {TP0: 2, TP1: 2}
    assert a.assignment() == []  # the refused commit dropped them (on_lost), no hand-over
    a.close()
    b.close()


@pytest.mark.groups
def test_group_a_silent_member_gets_a_fencing_error_from_its_next_poll(
    env: Env, topic: str
) -> None:
    _on_a_store_only(env, "a broker takes session timeouts of 6 s and more "
                          "(group.min.session.timeout.ms)")
    _fill(env, 0, 3)
    _fill(env, 1, 3)
    # long enough that b, polling every 10 ms, never misses it on a loaded machine (at
    # 150 ms, b itself was removed once in a full run beside a Kafka broker's JVM)
    timeouts = {"session_timeout_ms": 400, "max_poll_interval_ms": 400}
    lost: list[list[TopicPartition]] = []
    a = _member(env, "a", on_lost=lost.append, **timeouts)
    b = _member(env, "b", **timeouts)
    _settle(a, b)
    owned = a.assignment()
    silent_until = time.monotonic() + 1.0
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < silent_until or sorted(b.assignment()) != [TP0, TP1]
    ) and time.monotonic() < deadline:
        b.poll(timeout_ms=10)
    with pytest.raises((UnknownMemberIdError, IllegalGenerationError)):
        a.poll()
    assert a.assignment() == [] and lost == [owned]
    _settle(a, b)  # the next polls rejoin: the partitions are shared again
    a.close()
    b.close()


@pytest.mark.groups
def test_group_subscribe_needs_a_group_and_excludes_assign(env: Env, topic: str) -> None:
    with Consumer(env.backend) as consumer, pytest.raises(InvalidConfigError):
        consumer.subscribe([T])
    with _member(env, "a") as consumer, pytest.raises(InvalidConfigError):
        consumer.assign([TP0])


@pytest.mark.groups
def test_group_async_consumer_iterates_as_a_member(env: Env, topic: str) -> None:
    _fill(env, 0, 2)
    _fill(env, 1, 2)

    async def run() -> list[tuple[int, int]]:
        async with AsyncConsumer(env.backend, [T], group_id="g", auto_offset_reset="earliest",
                                 consumer_timeout_ms=200) as consumer:
            return sorted([(r.partition, r.offset) async for r in consumer])

    assert asyncio.run(run()) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert _committed(env, "g") == {TP0: 2, TP1: 2}


# ====================================================================== group admin


def _commit_offsets(env: Env, group: str, offsets: dict[TopicPartition, int]) -> None:
    with Consumer(env.backend, group_id=group, enable_auto_commit=False) as consumer:
        consumer.assign(list(offsets))
        consumer.commit(dict(offsets))


@pytest.mark.groups
def test_admin_lists_and_describes_a_group_with_offsets_only(env: Env, topic: str) -> None:
    _fill(env, 0, 5)
    _fill(env, 1, 2)
    _commit_offsets(env, "g", {TP0: 3, TP1: 2})
    assert "g" in admin.list_groups(env.backend)
    described = admin.describe_group(env.backend, "g")
    assert (described.group, described.state, described.members) == ("g", "Empty", {})
    assert [(p.partition, p.committed, p.log_end_offset, p.lag) for p in described.partitions] == [
        (0, 3, 5, 2), (1, 2, 2, 0),
    ]
    assert described.total_lag == 2


@pytest.mark.groups
def test_admin_describes_live_members_and_their_partitions(env: Env, topic: str) -> None:
    a = _member(env, "a")
    _settle(a)
    described = admin.describe_group(env.backend, "g")
    assert described.state == "Stable"
    members = {_name(env, m): sorted(tps) for m, tps in described.members.items()}
    assert members == {"a": [TP0, TP1]}
    assert {_name(env, p.owner) for p in described.partitions if p.owner} == {"a"}
    assert "g" in admin.list_groups(env.backend)
    with pytest.raises(GroupNotEmptyError):
        admin.reset_offsets(env.backend, "g", to_earliest=True, execute=True)
    with pytest.raises(GroupNotEmptyError):
        admin.delete_group(env.backend, "g")
    a.close()
    admin.delete_group(env.backend, "g")


@pytest.mark.groups
def test_admin_reset_offsets_each_way(env: Env, topic: str) -> None:
    _fill(env, 0, 5)  # timestamps 1000..5000
    _commit_offsets(env, "g", {TP0: 3})
    g = "g"
    assert admin.reset_offsets(env.backend, g, to_earliest=True) == {TP0: 0}
    assert _committed(env, g) == {TP0: 3}  # a dry run
    assert admin.reset_offsets(env.backend, g, to_latest=True) == {TP0: 5}
    assert admin.reset_offsets(env.backend, g, to_offset=99) == {TP0: 5}  # clamped
    assert admin.reset_offsets(env.backend, g, shift_by=-2) == {TP0: 1}
    when = dt.datetime.fromtimestamp(2.5, tz=dt.UTC)
    assert admin.reset_offsets(env.backend, g, to_datetime=when) == {TP0: 2}
    assert admin.reset_offsets(env.backend, g, topics=[T], to_earliest=True) == {TP0: 0, TP1: 0}
    admin.reset_offsets(env.backend, g, to_offset=1, execute=True)
    assert _committed(env, g) == {TP0: 1}
    with pytest.raises(InvalidConfigError):
        admin.reset_offsets(env.backend, g, to_earliest=True, to_latest=True)


@pytest.mark.groups
def test_admin_delete_group_forgets_its_offsets(env: Env, topic: str) -> None:
    _fill(env, 0, 1)
    _commit_offsets(env, "g", {TP0: 1})
    _commit_offsets(env, "other", {TP0: 0})
    admin.delete_group(env.backend, "g")
    assert _committed(env, "g") == {}
    assert "g" not in admin.list_groups(env.backend)
    assert "other" in admin.list_groups(env.backend)
    assert admin.describe_group(env.backend, "g").partitions == []


@pytest.mark.groups
def test_group_a_static_member_replaced_by_its_successor_can_no_longer_commit(
    env: Env, topic: str
) -> None:
    old = _member(env, "old", group_instance_id="worker-1")
    _settle(old)
    new = _member(env, "new", group_instance_id="worker-1")  # takes worker-1's place
    _settle(new)
    with pytest.raises(CommitFailedError):
        old.commit({TP0: 1})
    assert _committed(env, "g") == {}
    old.close()
    new.close()
