"""Request-reply (issue 16): requesters and responders in separate processes, timeouts,
error replies and late replies."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import logstore
from logstore.errors import InvalidConfigError, LogstoreError, StoreClosedError
from logstore.patterns.request_reply import (
    CORRELATION_ID,
    ERROR,
    ERROR_CLASS,
    REPLY_PARTITION,
    REPLY_TOPIC,
    RemoteHandlerError,
    Requester,
    RequestTimeoutError,
    Responder,
    header_text,
)
from logstore.types import ConsumerRecord
from tests.integration.workers import Worker

RR_WORKER = str(Path(__file__).with_name("rr_worker.py"))


def worker(*args: object) -> Worker:
    """Start ``rr_worker.py ARGS`` (a real process)."""
    return Worker([sys.executable, RR_WORKER, *map(str, args)])


@pytest.fixture
def data(tmp_path: Path) -> str:
    return str(tmp_path / "store")


def test_request_reply_1000_concurrent_requests_from_4_processes_reach_their_requesters(
    data: str, tmp_path: Path
) -> None:
    requesters, per_requester = 4, 250
    with logstore.open(data) as store:
        store.create_topic("rpc", partitions=4)
        store.create_topic("rpc.replies", partitions=requesters)
    stop = tmp_path / "stop"
    responders = []
    for _ in range(2):  # one after the other: each owns partitions once it is ready
        responders.append(worker("respond", data, "rpc", "svc", stop))
        responders[-1].wait_ready()
    clients = [
        worker("request", data, "rpc", "rpc.replies", n, f"req{n}", per_requester)
        for n in range(requesters)
    ]
    outputs = [c.communicate(timeout=60) for c in clients]
    stop.touch()
    handled = [r.communicate(timeout=30) for r in responders]

    responder_pids = {str(r.pid) for r in responders}
    answered_by: Counter[str] = Counter()
    for n, (out, err) in enumerate(outputs):
        assert clients[n].returncode == 0, err
        sent = {}
        replies = {}
        for line in out.splitlines():
            kind, *rest = line.split()
            if kind == "sent":
                sent[rest[0]] = rest[1]
            elif kind == "reply":
                assert rest[0] not in replies, f"two replies handed out for {rest[0]}"
                replies[rest[0]] = (int(rest[1]), rest[2])
        assert len(sent) == per_requester
        assert "error" not in out
        assert "dropped 0" in out  # nothing of another requester's was even read
        assert replies.keys() == sent.keys()  # every reply, none of another's
        for cid, (partition, value) in replies.items():
            request_value, pid = value.split("|")
            assert request_value == sent[cid]  # the reply to this very request
            assert partition == n
            assert pid in responder_pids
            answered_by[pid] += 1
    assert sum(answered_by.values()) == requesters * per_requester
    assert answered_by.keys() == responder_pids  # the two responders shared the requests
    counts = [int(out.split()[-1]) for out, _ in handled]
    assert sum(counts) >= requesters * per_requester  # at least once (a rebalance may repeat)


@pytest.fixture
def store(data: str) -> logstore.Store:
    with logstore.open(data) as s:
        s.create_topic("rpc", partitions=2)
        yield s


def echo(record: ConsumerRecord) -> tuple[bytes | None, list[tuple[str, bytes | None]]]:
    if record.value == b"boom":
        raise ValueError("cannot handle b'boom'")
    return (record.value or b"").upper(), [("handled-by", b"echo")]


def test_request_reply_round_trip_in_one_process(store: logstore.Store) -> None:
    with Responder(store, "rpc", "svc", echo).start(), Requester(store) as requester:
        reply = requester.request("rpc", b"hello", headers={"h": b"1"}, timeout_ms=10_000)

        assert reply.value == b"HELLO"
        assert header_text(reply, "handled-by") == "echo"
        assert reply.topic == requester.reply_topic
        futures = [requester.request_async("rpc", b"r%d" % i) for i in range(100)]
        assert [f.result(10).value for f in futures] == [b"R%d" % i for i in range(100)]
        assert {header_text(f.result(), CORRELATION_ID) for f in futures} == {
            f.correlation_id for f in futures
        }
        assert requester.pending() == 0
    assert requester.reply_topic not in store.list_topics()  # its private topic is gone


def test_request_reply_request_headers_name_the_reply_topic_and_partition(
    store: logstore.Store,
) -> None:
    store.create_topic("replies", partitions=3)
    seen: list[ConsumerRecord] = []

    def handler(record: ConsumerRecord) -> bytes:
        seen.append(record)
        return b"ok"

    with Responder(store, "rpc", "svc", handler).start(), Requester(
        store, reply_topic="replies", reply_partition=2
    ) as requester:
        reply = requester.request("rpc", b"x", timeout_ms=10_000)

    assert reply.partition == 2
    assert header_text(seen[0], REPLY_TOPIC) == "replies"
    assert header_text(seen[0], REPLY_PARTITION) == "2"
    assert header_text(seen[0], CORRELATION_ID) == header_text(reply, CORRELATION_ID)
    assert "replies" in store.list_topics()  # not the requester's to delete


def test_request_reply_timeout_raises_a_typed_error_naming_id_topic_and_timeout(
    store: logstore.Store,
) -> None:
    with Requester(store) as requester:  # no responder
        future = requester.request_async("rpc", b"x", timeout_ms=150)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError) as caught:
            future.result(10)
        waited = time.monotonic() - started

    err = caught.value
    assert isinstance(err, LogstoreError) and isinstance(err, TimeoutError)
    assert err.correlation_id == future.correlation_id and err.topic == "rpc"
    assert err.timeout_ms == 150
    assert future.correlation_id in str(err) and "'rpc'" in str(err) and "150 ms" in str(err)
    assert 0.1 <= waited < 2.0


def test_request_reply_error_reply_raises_remote_handler_error(store: logstore.Store) -> None:
    with Responder(store, "rpc", "svc", echo).start(), Requester(store) as requester:
        with pytest.raises(RemoteHandlerError) as caught:
            requester.request("rpc", b"boom", timeout_ms=10_000)
        assert requester.request("rpc", b"fine", timeout_ms=10_000).value == b"FINE"

    err = caught.value
    assert err.error_class == "ValueError"
    assert err.error_message == "cannot handle b'boom'"
    assert "ValueError: cannot handle b'boom'" in str(err)
    assert header_text(err.reply, ERROR_CLASS) == "ValueError"
    assert header_text(err.reply, ERROR) is not None and err.reply.value is None


def test_request_reply_late_reply_after_timeout_is_dropped(store: logstore.Store) -> None:
    release = threading.Event()

    def slow(record: ConsumerRecord) -> bytes:
        release.wait(10)
        return b"late:" + (record.value or b"")

    dropped: list[ConsumerRecord] = []
    late = threading.Event()

    def on_dropped(record: ConsumerRecord) -> None:
        dropped.append(record)
        late.set()

    with Requester(store, on_dropped=on_dropped) as requester, Responder(
        store, "rpc", "svc", slow
    ) as responder:
        future = requester.request_async("rpc", b"1", timeout_ms=100)
        responder.start()
        with pytest.raises(RequestTimeoutError):
            future.result(10)
        release.set()
        assert late.wait(10)  # the late reply was read by the requester's thread ...

        assert requester.dropped == 1 and dropped[0].value == b"late:1"  # ... and dropped
        assert future.exception() is not None  # the future still holds the timeout
        assert requester.request("rpc", b"2", timeout_ms=10_000).value == b"late:2"


def test_request_reply_unknown_correlation_ids_are_ignored(store: logstore.Store) -> None:
    dropped: list[ConsumerRecord] = []
    both = threading.Event()

    def on_dropped(record: ConsumerRecord) -> None:
        dropped.append(record)
        if len(dropped) == 2:
            both.set()

    with Requester(store, on_dropped=on_dropped) as requester, store.producer() as producer:
        waiting = requester.request_async("rpc", b"x", timeout_ms=60_000)
        producer.send(requester.reply_topic, b"stray", headers={CORRELATION_ID: b"f" * 32})
        producer.send(requester.reply_topic, b"no id")
        producer.flush()
        assert both.wait(10)

        assert [r.value for r in dropped] == [b"stray", b"no id"]
        assert requester.dropped == 2
        assert not waiting.done()  # neither was taken for the waiting request


def test_request_reply_closed_requester_refuses_and_fails_pending(store: logstore.Store) -> None:
    requester = Requester(store)
    future = requester.request_async("rpc", b"x", timeout_ms=60_000)
    requester.close()
    requester.close()  # idempotent

    with pytest.raises(StoreClosedError):
        future.result(1)
    with pytest.raises(StoreClosedError):
        requester.request_async("rpc", b"y")


def test_request_reply_bad_reply_partition_is_refused(store: logstore.Store) -> None:
    store.create_topic("replies", partitions=2)
    with pytest.raises(InvalidConfigError, match="reply_partition=5"):
        Requester(store, reply_topic="replies", reply_partition=5)


def test_request_reply_a_raising_on_dropped_does_not_stop_the_reply_reader(
    store: logstore.Store,
) -> None:
    called = threading.Event()

    def on_dropped(record: ConsumerRecord) -> None:
        called.set()
        raise RuntimeError("a bug in the application's callback")

    with Responder(store, "rpc", "svc", echo).start(), Requester(
        store, on_dropped=on_dropped
    ) as requester, store.producer() as producer:
        producer.send(requester.reply_topic, b"stray", headers={CORRELATION_ID: b"f" * 32})
        producer.flush()
        assert called.wait(10)
        reply = requester.request("rpc", b"still here", timeout_ms=10_000)
        assert reply.value == b"STILL HERE"
