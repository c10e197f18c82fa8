"""RetryingConsumer (logstore/patterns/retry.py): in-place retries, delayed retry topics,
dead letters, commits (issue 16). Real stores in tmp_path, wall-clock delays of a few
hundred ms; the crash test with real processes is tests/integration/test_retry_processes.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore import headers as h
from logstore.patterns.retry import RetryingConsumer
from logstore.patterns.retry_policy import (
    RETRY_ATTEMPTS,
    RETRY_DUE,
    RETRY_PREFIX,
    RetryConfigError,
    RetryPolicy,
)
from logstore.types import ConsumerRecord


@pytest.fixture
def store(tmp_path: Path) -> Iterator[logstore.Store]:
    with logstore.open(tmp_path / "store") as s:
        s.create_topic("orders", partitions=1)
        yield s


def send(store: logstore.Store, *values: bytes, headers: dict[str, bytes] | None = None) -> None:
    with store.producer() as producer:
        for value in values:
            producer.send("orders", value, key=b"k-" + value, headers=headers)


def read_topic(store: logstore.Store, topic: str) -> list[logstore.Record]:
    out: list[logstore.Record] = []
    partitions = len(store.describe_topic(topic).partitions)
    for p in range(partitions):
        out += store.read(topic, p, 0)
    return out


class Calls:
    """A handler that fails as told and records every call (value, attempt, time)."""

    def __init__(self, fail: dict[bytes, int] | None = None,
                 error: type[Exception] = ValueError) -> None:
        self.fail = fail or {}  # value -> how many calls fail (a large number: always)
        self.error = error
        self.calls: list[tuple[bytes, float, ConsumerRecord]] = []
        self.handled: list[bytes] = []
        self.consumer: RetryingConsumer | None = None
        self.attempts: list[int] = []

    def __call__(self, record: ConsumerRecord) -> None:
        assert record.value is not None
        self.calls.append((record.value, time.monotonic(), record))
        if self.consumer is not None:
            self.attempts.append(self.consumer.current_attempt)
        if sum(1 for v, _, _ in self.calls if v == record.value) <= self.fail.get(record.value, 0):
            raise self.error(f"cannot handle {record.value!r}")
        self.handled.append(record.value)

    def count(self, value: bytes) -> int:
        return sum(1 for v, _, _ in self.calls if v == value)

    def times(self, value: bytes) -> list[float]:
        return [t for v, t, _ in self.calls if v == value]


def test_retry_always_failing_record_is_dead_lettered_after_max_attempts(
    store: logstore.Store,
) -> None:
    send(store, b"poison", headers={"trace": b"t-1"})
    handler = Calls({b"poison": 99})
    policy = RetryPolicy(max_attempts=3, delays_ms=(50, 80))
    with RetryingConsumer(store, "billing", ["orders"], handler, policy) as rc:
        handler.consumer = rc
        stats = rc.run(idle_ms=300)
    assert handler.count(b"poison") == 3
    assert handler.attempts == [1, 2, 3]
    assert (stats.handled, stats.retried, stats.dead_lettered) == (0, 2, 1)
    # the handler always sees the record as it came from its source
    for _, _, rec in handler.calls:
        assert (rec.topic, rec.partition, rec.offset) == ("orders", 0, 0)
        assert list(rec.headers) == [("trace", b"t-1")]
    original = store.read("orders", 0, 0)[0]
    [dead] = read_topic(store, "orders.dlq")
    assert (dead.key, dead.value) == (b"k-poison", b"poison")
    found = dict(dead.headers)
    assert found["trace"] == b"t-1"
    assert found[h.DLQ_ORIGINAL_TOPIC] == b"orders"
    assert found[h.DLQ_ORIGINAL_PARTITION] == b"0"
    assert found[h.DLQ_ORIGINAL_OFFSET] == b"0"
    assert found[h.DLQ_ORIGINAL_TIMESTAMP] == str(original.timestamp).encode()
    assert found[h.DLQ_ERROR_CLASS] == b"ValueError"
    assert found[h.DLQ_ERROR_MESSAGE] == b"cannot handle b'poison'"
    assert found[h.DLQ_ATTEMPTS] == b"3"
    assert not [k for k in found if k.startswith(RETRY_PREFIX)]
    assert set(found) == {"trace", *h.DLQ_HEADERS}
    # it went through both retry topics, once each, before the DLQ
    assert len(read_topic(store, "orders.retry.1")) == 1
    assert len(read_topic(store, "orders.retry.2")) == 1


def test_retry_record_failing_twice_then_succeeding_is_handled_once(
    store: logstore.Store,
) -> None:
    send(store, b"a", b"flaky", b"b")
    handler = Calls({b"flaky": 2})
    # one retry in place (backoff), then a retry topic
    policy = RetryPolicy(max_attempts=4, delays_ms=(50,), inline_attempts=2, backoff_ms=20)
    with RetryingConsumer(store, "billing", ["orders"], handler, policy) as rc:
        stats = rc.run(idle_ms=300)
    assert handler.handled.count(b"flaky") == 1
    assert handler.count(b"flaky") == 3
    assert sorted(handler.handled) == [b"a", b"b", b"flaky"]
    assert stats.dead_lettered == 0 and stats.retried == 1
    assert read_topic(store, "orders.dlq") == []
    [retry] = read_topic(store, "orders.retry.1")
    assert dict(retry.headers)[RETRY_ATTEMPTS] == b"2"  # two deliveries in place
    # everything is committed: a new member of the group gets nothing again
    again = Calls()
    with RetryingConsumer(store, "billing", ["orders"], again, policy) as rc:
        rc.run(idle_ms=200)
    assert again.calls == []


def test_retry_poison_record_does_not_hold_up_its_partition(store: logstore.Store) -> None:
    good = [f"good-{i}".encode() for i in range(30)]
    send(store, b"poison", *good)
    handler = Calls({b"poison": 99})
    delay_s = 1.5
    policy = RetryPolicy(max_attempts=2, delays_ms=(int(delay_s * 1000),))
    with RetryingConsumer(store, "billing", ["orders"], handler, policy) as rc:
        rc.run(max_records=1 + len(good))  # the poison record retried, the rest handled
    assert handler.handled == good
    failed_at = handler.times(b"poison")[0]
    last_good = max(t for v, t, _ in handler.calls if v != b"poison")
    assert last_good - failed_at < delay_s  # not waiting for the retry
    assert handler.count(b"poison") == 1


def test_retry_is_not_delivered_before_it_is_due(store: logstore.Store) -> None:
    send(store, b"slow")
    handler = Calls({b"slow": 2})
    policy = RetryPolicy(max_attempts=3, delays_ms=(300, 500))
    with RetryingConsumer(store, "billing", ["orders"], handler, policy) as rc:
        rc.run(idle_ms=200)
    first, second, third = handler.times(b"slow")
    assert second - first >= 0.3 - 0.002  # the due time is kept to the ms
    assert third - second >= 0.5 - 0.002
    assert handler.handled == [b"slow"]


def test_retry_due_later_does_not_hold_up_one_due_sooner_in_another_retry_topic(
    store: logstore.Store,
) -> None:
    # A goes to retry.2 (due in 3 s); then B fails once and goes to retry.1 (due in 0.1
    # s): B's retry must be delivered long before A's is due
    done = threading.Event()
    handler = Calls({b"A": 99, b"B": 1})
    a_failed_twice = threading.Event()

    def handle(record: ConsumerRecord) -> None:
        if record.value == b"B" and handler.count(b"B") == 1:
            done.set()
        try:
            handler(record)
        finally:
            if record.value == b"A" and handler.count(b"A") == 2 and not a_failed_twice.is_set():
                a_failed_twice.set()
                send(store, b"B")

    send(store, b"A")
    policy = RetryPolicy(max_attempts=5, delays_ms=(100, 3000))
    with RetryingConsumer(store, "billing", ["orders"], handle, policy) as rc:
        rc.run(stop=done)
        rc.poll_once()
    a_second = handler.times(b"A")[1]
    b_second = handler.times(b"B")[1]
    assert b_second - a_second < 3.0 - 0.5
    assert handler.count(b"A") == 2  # its next delivery is not due yet
    [waiting] = read_topic(store, "orders.retry.2")
    assert int(dict(waiting.headers)[RETRY_DUE]) > time.time() * 1000


def test_retry_not_retriable_error_goes_to_the_dead_letter_topic_at_once(
    store: logstore.Store,
) -> None:
    send(store, b"bad")
    handler = Calls({b"bad": 99}, error=KeyError)
    policy = RetryPolicy(max_attempts=5, delays_ms=(50,), inline_attempts=3,
                         not_retriable=(KeyError,), dead_letter_topic="orders-dead")
    with RetryingConsumer(store, "billing", ["orders"], handler, policy) as rc:
        rc.run(idle_ms=200)
    assert handler.count(b"bad") == 1
    [dead] = read_topic(store, "orders-dead")
    assert dict(dead.headers)[h.DLQ_ATTEMPTS] == b"1"
    assert dict(dead.headers)[h.DLQ_ERROR_CLASS] == b"KeyError"
    assert read_topic(store, "orders.retry.1") == []


def test_retry_records_of_another_group_are_skipped(store: logstore.Store) -> None:
    send(store, b"x")
    first = Calls({b"x": 1})
    policy = RetryPolicy(max_attempts=3, delays_ms=(50,))
    with RetryingConsumer(store, "one", ["orders"], first, policy) as rc:
        rc.run(idle_ms=200)
    other = Calls()
    with RetryingConsumer(store, "two", ["orders"], other, policy) as rc:
        stats = rc.run(idle_ms=200)
    assert first.count(b"x") == 2
    assert other.count(b"x") == 1  # from the source, not "one"'s retry
    assert stats.skipped == 1


def test_retry_escaping_exception_leaves_the_record_to_be_read_again(
    store: logstore.Store,
) -> None:
    class Stop(BaseException):
        pass

    send(store, b"r1", b"r2")
    seen: list[bytes] = []

    def handle(record: ConsumerRecord) -> None:
        assert record.value is not None
        seen.append(record.value)
        if len(seen) == 2:
            raise Stop

    with RetryingConsumer(store, "billing", ["orders"], handle, RetryPolicy()) as rc:
        with pytest.raises(Stop):
            rc.run(idle_ms=200)
        rc.run(idle_ms=200)
    assert seen == [b"r1", b"r2", b"r1", b"r2"]


def test_retry_policy_refuses_bad_values() -> None:
    with pytest.raises(RetryConfigError, match="max_attempts=0"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(RetryConfigError, match="delays_ms"):
        RetryPolicy(delays_ms=(-1,))
    with pytest.raises(RetryConfigError, match="not_retriable"):
        RetryPolicy(not_retriable=("KeyError",))  # type: ignore[arg-type]


def test_retry_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(backoff_ms=100, backoff_max_ms=300)
    for retry, cap in [(1, 0.1), (2, 0.2), (3, 0.3), (10, 0.3)]:
        waits = [policy.backoff_s(retry) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= cap
        assert max(waits) > cap / 2  # spread over the range, not fixed


def test_retry_topics_start_at_their_beginning_even_when_sources_start_at_the_end(
    store: logstore.Store,
) -> None:
    handler = Calls({b"late": 1})
    policy = RetryPolicy(max_attempts=3, delays_ms=(50,))
    with RetryingConsumer(store, "billing", ["orders"], handler, policy,
                          auto_offset_reset="latest") as rc:
        rc.poll_once(100)  # joined: the source is read from its end
        send(store, b"late")
        deadline = time.monotonic() + 10
        while rc.poll_once(50).retried == 0 and time.monotonic() < deadline:
            pass
    # gone before its retry was read (as after a crash): a new member must find it
    with RetryingConsumer(store, "billing", ["orders"], handler, policy,
                          auto_offset_reset="latest") as rc:
        rc.run(idle_ms=300)
    assert handler.count(b"late") == 2
    assert handler.handled == [b"late"]
