"""The producer (logstore.client.producer): futures, batching by linger and size, flush and
close, validation, partition choice, ordering across threads, idempotent sequences,
callbacks and compression."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore.client.producer import Producer
from logstore.errors import (
    InvalidRecordError,
    PartitionNotFoundError,
    RecordTooLargeError,
    StorageError,
    StoreClosedError,
    TopicNotFoundError,
)
from logstore.records import scan
from logstore.storage.files import FileHandle, FileSystem
from logstore.types import BatchHeader, Compression, RecordMetadata
from tests.conftest import FakeClock

FOREVER_MS = 600_000  # a linger no test waits out: batches go only when forced


def _batches(store: logstore.Store, topic: str, partition: int) -> list[BatchHeader]:
    return list(scan(store.partition(topic, partition).read(0).records))


def _values(store: logstore.Store, topic: str, partition: int) -> list[bytes | None]:
    return [r.value for r in store.read(topic, partition, 0)]


def _wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.001)
    return condition()


@pytest.fixture
def topic(store: logstore.Store) -> str:
    store.create_topic("events", 3)
    return "events"


# ---------------------------------------------------------------------- futures


def test_send_returns_futures_resolving_to_contiguous_offsets(
    store: logstore.Store, topic: str, clock: FakeClock
) -> None:
    with store.producer(linger_ms=0) as producer:
        futures = [producer.send(topic, b"v%d" % i, partition=1) for i in range(5)]
        metas = [f.result(timeout=5) for f in futures]
    assert metas == [RecordMetadata(topic, 1, i, clock.now) for i in range(5)]
    assert _values(store, topic, 1) == [b"v%d" % i for i in range(5)]


def test_send_uses_given_timestamp_and_headers(store: logstore.Store, topic: str) -> None:
    with store.producer(linger_ms=0) as producer:
        meta = producer.send(
            topic, b"v", key=b"k", headers={"h": b"1"}, partition=0, timestamp=1234
        ).result()
    assert meta.timestamp == 1234
    [record] = store.read(topic, 0, 0)
    assert (record.timestamp, record.key, record.value, list(record.headers)) == (
        1234,
        b"k",
        b"v",
        [("h", b"1")],
    )


def _wait_done(*futures: Any, timeout: float = 10) -> None:
    """Wait for the sender thread to write (without ``result()``, which flushes)."""
    deadline = time.monotonic() + timeout
    while not all(f.done() for f in futures):
        assert time.monotonic() < deadline, "not written by the sender thread"
        time.sleep(0.001)


def test_send_with_linger_zero_writes_at_once(store: logstore.Store, topic: str) -> None:
    producer = store.producer(linger_ms=0)
    future = producer.send(topic, b"now", partition=2)
    _wait_done(future, timeout=2)  # no flush(): the sender thread writes it
    assert _values(store, topic, 2) == [b"now"]
    producer.close()


def test_linger_zero_batches_what_is_sent_while_a_write_is_in_flight(
    tmp_path: Path,
) -> None:
    """Kafka's linger.ms=0: the sender writes the first record at once; the records sent
    while that write is held up share the next batch (not one write each)."""
    gate, entered = threading.Event(), threading.Event()

    class SlowFS(FileSystem):
        def _pwritev(self, handle: FileHandle, parts: Any, position: int) -> int:
            if handle.path.endswith(".log") and not gate.is_set():
                entered.set()
                gate.wait(10)
            return super()._pwritev(handle, parts, position)

    with logstore.open(tmp_path / "s", fs=SlowFS()) as store:
        store.create_topic("t", 1, flush="never")
        with store.producer(linger_ms=0) as producer:
            first = producer.send("t", b"first")
            assert entered.wait(10)  # its write is in flight
            rest = [producer.send("t", b"%d" % i) for i in range(50)]
            assert not any(f.done() for f in rest)
            gate.set()
            _wait_done(first, *rest)
            assert [f.result().offset for f in rest] == list(range(1, 51))
        assert [b.records_count for b in _batches(store, "t", 0)] == [1, 50]


def test_send_with_linger_waits_then_background_thread_writes(
    store: logstore.Store, topic: str
) -> None:
    with store.producer(linger_ms=300) as producer:
        future = producer.send(topic, b"later", partition=0)
        assert not future.done()
        assert _values(store, topic, 0) == []
        assert _wait_until(future.done)  # nobody flushes: the linger thread does
        assert _values(store, topic, 0) == [b"later"]


def test_records_sent_within_linger_share_one_batch(store: logstore.Store, topic: str) -> None:
    with store.producer(linger_ms=FOREVER_MS) as producer:
        futures = [producer.send(topic, b"%d" % i, partition=0) for i in range(4)]
    assert all(f.done() for f in futures)
    [batch] = _batches(store, topic, 0)
    assert batch.records_count == 4


def test_result_forces_flush_when_lingering(store: logstore.Store, topic: str) -> None:
    with store.producer(linger_ms=FOREVER_MS) as producer:
        first = producer.send(topic, b"a", partition=0)
        second = producer.send(topic, b"b", partition=0)
        other = producer.send(topic, b"c", partition=1)
        started = time.monotonic()
        assert second.result(timeout=5).offset == 1
        assert time.monotonic() - started < 5
        assert first.done()  # the whole batch went
        assert not other.done()  # another partition's batch did not


def test_batch_bytes_reached_writes_batch_without_waiting(
    store: logstore.Store, topic: str
) -> None:
    # as Kafka's batch.size: a record that would take the batch past batch_bytes starts
    # the next one, and the full batch is written at once
    with store.producer(linger_ms=FOREVER_MS, batch_bytes=160) as producer:
        first = producer.send(topic, b"x" * 40, partition=0)
        second = producer.send(topic, b"x" * 40, partition=0)
        assert not first.done() and not second.done()
        third = producer.send(topic, b"x" * 40, partition=0)
        assert first.done() and second.done() and not third.done()
        assert [b.records_count for b in _batches(store, topic, 0)] == [2]
        fourth = producer.send(topic, b"x" * 200, partition=0)  # bigger than a batch alone
        assert third.done() and fourth.done()
        assert [b.records_count for b in _batches(store, topic, 0)] == [2, 1, 1]


def test_flush_writes_every_queued_record(store: logstore.Store, topic: str) -> None:
    producer = store.producer(linger_ms=FOREVER_MS)
    futures = [producer.send(topic, b"%d" % i, partition=i % 3) for i in range(9)]
    assert not any(f.done() for f in futures)
    producer.flush()
    assert all(f.done() for f in futures)
    assert [len(_values(store, topic, p)) for p in range(3)] == [3, 3, 3]
    producer.close()


def test_close_writes_every_queued_record(store: logstore.Store, topic: str) -> None:
    producer = store.producer(linger_ms=FOREVER_MS)
    futures = producer.send_many(topic, [b"a", (b"b", b"key"), None], partition=2)
    producer.close()
    assert [f.result(timeout=0).offset for f in futures] == [0, 1, 2]
    assert [(r.key, r.value) for r in store.read(topic, 2, 0)] == [
        (None, b"a"),
        (b"key", b"b"),
        (None, None),
    ]


def test_close_is_idempotent(store: logstore.Store, topic: str) -> None:
    producer = store.producer()
    producer.close()
    producer.close()


def test_send_after_close_raises_store_closed(store: logstore.Store, topic: str) -> None:
    producer = store.producer()
    producer.close()
    with pytest.raises(StoreClosedError):
        producer.send(topic, b"v")


def test_result_raises_append_error_when_batch_too_large(store: logstore.Store) -> None:
    store.create_topic("small", 1, max_message_bytes=200)
    with store.producer(linger_ms=0) as producer:
        future = producer.send("small", b"x" * 500)
        with pytest.raises(RecordTooLargeError):
            future.result()
        assert isinstance(future.exception(), RecordTooLargeError)
        assert producer.send("small", b"ok").result().offset == 0


def test_store_producer_rejects_bad_options(store: logstore.Store) -> None:
    with pytest.raises(ValueError):
        store.producer(linger_ms=-1)
    with pytest.raises(ValueError):
        store.producer(batch_bytes=0)
    with pytest.raises(ValueError):
        store.producer(compression="brotli")


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("field", "bad"),
    [("value", "text"), ("value", 5), ("key", "text"), ("key", 1.5), ("key", [b"a"])],
)
def test_send_rejects_key_or_value_that_is_not_bytes(
    store: logstore.Store, topic: str, field: str, bad: object
) -> None:
    with store.producer(linger_ms=0) as producer:
        kwargs: dict[str, object] = {"value": b"v", "key": None, field: bad}
        with pytest.raises(InvalidRecordError, match=field):
            producer.send(topic, **kwargs)  # type: ignore[arg-type]
    assert all(_values(store, topic, p) == [] for p in range(3))


def test_send_accepts_bytearray_and_memoryview(store: logstore.Store, topic: str) -> None:
    with store.producer(linger_ms=0) as producer:
        producer.send(topic, memoryview(b"val"), key=bytearray(b"key"), partition=0)
    [record] = store.read(topic, 0, 0)
    assert (record.key, record.value) == (b"key", b"val")


@pytest.mark.parametrize("timestamp", [-1, 1.5, "1", True])
def test_send_rejects_bad_timestamp(store: logstore.Store, topic: str, timestamp: object) -> None:
    with store.producer(linger_ms=0) as producer, pytest.raises(InvalidRecordError):
        producer.send(topic, b"v", timestamp=timestamp)  # type: ignore[arg-type]


def test_send_rejects_bad_headers(store: logstore.Store, topic: str) -> None:
    with store.producer(linger_ms=0) as producer, pytest.raises(InvalidRecordError):
        producer.send(topic, b"v", headers={"h": "not bytes"})  # type: ignore[dict-item]


def test_send_to_unknown_topic_raises_topic_not_found(store: logstore.Store) -> None:
    with store.producer() as producer, pytest.raises(TopicNotFoundError):
        producer.send("missing", b"v")


# ---------------------------------------------------------------------- partitions


def test_send_explicit_partition_wins_over_key(store: logstore.Store, topic: str) -> None:
    with store.producer(linger_ms=0) as producer:
        keyed = producer.send(topic, b"v", key=b"user-1").result()
        other = (keyed.partition + 1) % 3
        forced = producer.send(topic, b"v", key=b"user-1", partition=other).result()
    assert forced.partition == other


def test_send_same_key_goes_to_same_partition(store: logstore.Store, topic: str) -> None:
    with store.producer(linger_ms=0) as producer:
        parts = {producer.send(topic, b"%d" % i, key=b"k").result().partition for i in range(5)}
    assert parts == {store.topic(topic).choose_partition(b"k")}


@pytest.mark.parametrize("partition", [3, -1, 100, True, 1.0])
def test_send_bad_partition_raises_partition_not_found(
    store: logstore.Store, topic: str, partition: object
) -> None:
    with store.producer(linger_ms=0) as producer, pytest.raises(PartitionNotFoundError):
        producer.send(topic, b"v", partition=partition)  # type: ignore[arg-type]


def test_send_str_partition_raises_partition_not_found(store: logstore.Store, topic: str) -> None:
    with store.producer(linger_ms=0) as producer, pytest.raises(PartitionNotFoundError):
        producer.send(topic, b"v", partition="0")  # type: ignore[arg-type]


def test_concurrent_sends_keep_each_threads_order_per_partition(
    store: logstore.Store, topic: str
) -> None:
    threads_n, per_thread = 6, 300
    producer = store.producer(linger_ms=1, batch_bytes=2_000)
    start = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                producer.send(topic, b"%d:%d" % (t, i), partition=i % 2)
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    producer.close()
    assert errors == []
    for partition in (0, 1):
        records = store.read(topic, partition, 0)
        assert [r.offset for r in records] == list(range(threads_n * per_thread // 2))
        seen: dict[int, list[int]] = {}
        for record in records:
            assert record.value is not None
            t, i = map(int, record.value.split(b":"))
            seen.setdefault(t, []).append(i)
        for t in range(threads_n):
            assert seen[t] == list(range(partition, per_thread, 2)), (partition, t)


# ---------------------------------------------------------------------- idempotence


def test_append_records_twice_with_same_producer_sequence_writes_once(
    store: logstore.Store, topic: str
) -> None:
    plog = store.partition(topic, 0)
    plog.append_records([(1, None, b"before", ())])
    batch = [(2, b"k", b"a", ()), (3, b"k", b"b", ())]
    first = plog.append_records(batch, producer_id=77, producer_epoch=0, base_sequence=0)
    retry = plog.append_records(batch, producer_id=77, producer_epoch=0, base_sequence=0)
    assert (
        (retry.base_offset, retry.last_offset) == (first.base_offset, first.last_offset) == (1, 2)
    )
    assert plog.log_end_offset == 3
    assert _values(store, topic, 0) == [b"before", b"a", b"b"]
    following = plog.append_records(
        [(4, None, b"c", ())], producer_id=77, producer_epoch=0, base_sequence=2
    )
    assert following.base_offset == 3


def test_append_records_same_sequence_of_other_producer_is_written(
    store: logstore.Store, topic: str
) -> None:
    plog = store.partition(topic, 0)
    plog.append_records([(1, None, b"a", ())], producer_id=1, producer_epoch=0, base_sequence=0)
    plog.append_records([(1, None, b"a", ())], producer_id=2, producer_epoch=0, base_sequence=0)
    plog.append_records([(1, None, b"a", ())])  # not idempotent: never deduplicated
    plog.append_records([(1, None, b"a", ())])
    assert plog.log_end_offset == 4


def test_producer_batches_carry_producer_id_and_consecutive_sequences(
    store: logstore.Store, topic: str
) -> None:
    with store.producer(linger_ms=FOREVER_MS) as producer:
        for i in range(3):
            producer.send(topic, b"%d" % i, partition=0)
        producer.flush()
        producer.send(topic, b"3", partition=0)
        producer.send(topic, b"x", partition=1)
        producer.flush()
        pid = producer.producer_id
    assert pid >= 0
    p0 = _batches(store, topic, 0)
    assert [(b.producer_id, b.producer_epoch, b.base_sequence) for b in p0] == [
        (pid, 0, 0),
        (pid, 0, 3),
    ]
    [p1] = _batches(store, topic, 1)
    assert (p1.producer_id, p1.base_sequence) == (pid, 0)


def test_non_idempotent_producer_writes_no_producer_id(store: logstore.Store, topic: str) -> None:
    with store.producer(linger_ms=0, idempotent=False) as producer:
        producer.send(topic, b"v", partition=0).result(timeout=10)
        producer.send(topic, b"v", partition=0).result(timeout=10)
    assert [(b.producer_id, b.base_sequence) for b in _batches(store, topic, 0)] == [
        (-1, -1),
        (-1, -1),
    ]


# ---------------------------------------------------------------------- callbacks


def test_add_callback_fires_with_metadata_when_written(
    store: logstore.Store, topic: str, clock: FakeClock
) -> None:
    calls: list[tuple[RecordMetadata | None, BaseException | None]] = []
    with store.producer(linger_ms=FOREVER_MS) as producer:
        futures = [producer.send(topic, b"%d" % i, partition=2) for i in range(3)]
        for f in futures:
            f.add_callback(lambda meta, err: calls.append((meta, err)))
        assert calls == []
        producer.flush()
    assert calls == [(RecordMetadata(topic, 2, i, clock.now), None) for i in range(3)]


def test_add_callback_fires_at_once_when_already_written(store: logstore.Store, topic: str) -> None:
    calls: list[RecordMetadata | None] = []
    with store.producer(linger_ms=0) as producer:
        future = producer.send(topic, b"v", partition=0)
        future.add_callback(lambda meta, err: calls.append(meta))
    assert [m.offset for m in calls if m is not None] == [0]


def test_add_callback_receives_error_when_append_fails(store: logstore.Store) -> None:
    store.create_topic("small", 1, max_message_bytes=200)
    calls: list[tuple[RecordMetadata | None, BaseException | None]] = []
    with store.producer(linger_ms=FOREVER_MS) as producer:
        producer.send("small", b"x" * 500).add_callback(lambda m, e: calls.append((m, e)))
    [(meta, err)] = calls
    assert meta is None
    assert isinstance(err, RecordTooLargeError)


def test_raising_callback_does_not_stop_other_callbacks_or_flush(
    store: logstore.Store, topic: str
) -> None:
    calls: list[int] = []

    def boom(meta: RecordMetadata | None, err: BaseException | None) -> None:
        raise RuntimeError("user callback failed")

    with store.producer(linger_ms=FOREVER_MS) as producer:
        first = producer.send(topic, b"a", partition=0)
        second = producer.send(topic, b"b", partition=0)
        first.add_callback(boom)
        second.add_callback(lambda meta, err: calls.append(meta.offset if meta else -1))
        producer.flush()  # raises RuntimeError today
    assert calls == [1]


# ---------------------------------------------------------------------- compression


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_option_writes_compressed_batches(
    store: logstore.Store, topic: str, codec: str
) -> None:
    values = [b"record %d " % i * 20 for i in range(50)]
    with store.producer(linger_ms=FOREVER_MS, compression=codec) as producer:
        for v in values:
            producer.send(topic, v, partition=0)
    batches = _batches(store, topic, 0)
    assert [b.compression for b in batches] == [Compression.parse(codec)]
    assert batches[0].size < sum(map(len, values))
    assert _values(store, topic, 0) == values


def test_producer_default_writes_uncompressed_batches(store: logstore.Store, topic: str) -> None:
    producer = Producer(store, linger_ms=0)
    producer.send(topic, b"v", partition=0)
    producer.close()
    assert [b.compression for b in _batches(store, topic, 0)] == [Compression.NONE]


class _FsyncFailsOnce(FileSystem):
    """The first fsync of a ``.log`` file fails with EIO (the write itself succeeded)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def _fsync(self, handle: FileHandle) -> None:
        if not self.failed and handle.path.endswith(".log"):
            self.failed = True
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super()._fsync(handle)


def test_producer_retries_a_failed_fsync_and_writes_the_batch_exactly_once(
    tmp_path: Path,
) -> None:
    fs = _FsyncFailsOnce()
    with logstore.open(tmp_path / "data", fs=fs) as store:
        store.create_topic("t", 1, flush="always")
        with store.producer(linger_ms=0, retry_backoff_ms=1) as producer:
            meta = producer.send("t", b"once").result()
            second = producer.send("t", b"twice").result()
        assert fs.failed
        assert (meta.offset, second.offset) == (0, 1)
        assert [r.value for r in store.read("t", 0, 0)] == [b"once", b"twice"]


@pytest.mark.parametrize("headers", [None, {"h": b"x" * 50}])
def test_batches_stay_within_the_topics_max_message_bytes(
    store: logstore.Store, headers: dict[str, bytes] | None
) -> None:
    # Regression: with batch_bytes above max_message_bytes, a batch of small records grew
    # past what the topic accepts and every record in it failed with RecordTooLargeError.
    store.create_topic("capped", max_message_bytes=10_000)
    errors: list[BaseException] = []
    with store.producer(batch_bytes=1 << 20, linger_ms=60_000) as producer:
        for i in range(2000):
            producer.send("capped", b"%05d" % i + b"v" * 95, headers=headers).add_callback(
                lambda meta, err: errors.append(err) if err else None
            )
    assert errors == []
    plog = store.partition("capped", 0)
    assert plog.log_end_offset == 2000
    assert [r.value[:5] for r in plog.read_records(0, max_records=2000, max_bytes=1 << 30)] \
        == [b"%05d" % i for i in range(2000)]
    # a record too large on its own fails alone; its neighbours are written
    with store.producer(linger_ms=60_000) as producer:
        before = producer.send("capped", b"a")
        big = producer.send("capped", b"x" * 20_000)
        after = producer.send("capped", b"b")
    assert before.result().offset == 2000 and after.result().offset == 2001
    with pytest.raises(logstore.RecordTooLargeError):
        big.result()


class _FsyncFailsOnceCountingWrites(_FsyncFailsOnce):
    def __init__(self, marker: bytes) -> None:
        super().__init__()
        self.marker = marker
        self.writes_of_marker = 0

    def _pwritev(self, handle: FileHandle, parts: Any, position: int) -> int:
        if handle.path.endswith(".log") and self.marker in b"".join(bytes(p) for p in parts):
            self.writes_of_marker += 1
        return super()._pwritev(handle, parts, position)


def test_a_batch_whose_fsync_failed_is_written_again_not_found_and_synced(
    tmp_path: Path,
) -> None:
    # Regression (PostgreSQL's fsyncgate): after fsync fails, Linux may drop the dirty
    # pages or mark them clean, so a later fsync succeeds without writing them. The retry
    # used to find the batch still in the page cache, fsync again and acknowledge it.
    # Now the bytes past the committed end are cut when the fsync fails, and the retry
    # writes them afresh.
    fs = _FsyncFailsOnceCountingWrites(b"precious")
    with logstore.open(tmp_path / "data", fs=fs) as store:
        store.create_topic("t", 1, flush="always")
        with store.producer(linger_ms=0, retry_backoff_ms=1) as producer:
            meta = producer.send("t", b"precious").result()
        assert fs.failed and meta.offset == 0
        assert fs.writes_of_marker == 2
        assert [r.value for r in store.read("t", 0, 0)] == [b"precious"]


def test_a_batch_refused_before_it_was_written_gives_its_sequences_back(
    store: logstore.Store,
) -> None:
    store.create_topic("small", 1, max_message_bytes=200)
    with store.producer(linger_ms=0) as producer:
        with pytest.raises(RecordTooLargeError):
            producer.send("small", b"x" * 500).result()
        after = [producer.send("small", b"ok %d" % i).result() for i in range(3)]
    assert [m.offset for m in after] == [0, 1, 2]
    # the next batch took the refused one's sequence: the partition saw no gap
    assert [h.base_sequence for h in _batches(store, "small", 0)] == [0, 1, 2]


def test_a_write_that_failed_past_its_retries_starts_a_new_producer_id(tmp_path: Path) -> None:
    fs = _FsyncFailsOnce()
    with logstore.open(tmp_path / "data", fs=fs) as store:
        store.create_topic("t", 1, flush="always")
        with store.producer(linger_ms=0, retries=0) as producer:
            first_id = producer.producer_id
            with pytest.raises(StorageError):
                producer.send("t", b"maybe written").result()
            # its outcome is unknown: a later batch must not reuse its sequence
            assert producer.producer_id != first_id
            meta = producer.send("t", b"next").result()
        headers = _batches(store, "t", 0)
        assert headers[-1].producer_id == producer.producer_id
        assert headers[-1].base_sequence == 0
        assert store.read("t", 0, meta.offset)[0].value == b"next"
