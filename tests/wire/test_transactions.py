"""Kafka transactions over the wire (issue 16), on the real broker and on ``logstore
serve`` alike: confluent-kafka's transactional producer in a consume-transform-produce
loop (``send_offsets_to_transaction`` with its consumer's group metadata, a commit, an
abort, a transaction left open), read_committed and read_uncommitted consumers, the last
stable offset ListOffsets answers, a zombie instance fenced by a new one, and a control
batch a client may not write. Records go to explicit partitions, so both servers hold
them at the same offsets (a transaction marker takes one offset on both).

Logstore-only: the coordinator's answers as a raw client reads them (the fenced-producer
code by version, OffsetFetch while a transaction holds the group's offsets).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from logstore.records.control import encode_marker
from tests.server_process import RawClient
from tests.wire.clients.base import CALL_TIMEOUT_S, FETCH_WAIT_MS, SESSION_TIMEOUT_MS
from tests.wire.differences import expect
from tests.wire.helpers import PYTESTMARK, create_topic, unique
from tests.wire.targets import LogstoreTarget, Target

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KpTopicPartition

pytestmark = PYTESTMARK

TXN_TIMEOUT_MS = 30_000


def _producer(target: Target, txn_id: str) -> Any:
    producer = Producer({
        "bootstrap.servers": target.bootstrap, "client.id": "wire-txn",
        "transactional.id": txn_id, "transaction.timeout.ms": TXN_TIMEOUT_MS, "linger.ms": 1,
    })
    producer.init_transactions(CALL_TIMEOUT_S)
    return producer


def _consumer(target: Target, group: str, isolation: str = "read_committed") -> Any:
    return Consumer({
        "bootstrap.servers": target.bootstrap, "client.id": "wire-txn", "group.id": group,
        "isolation.level": isolation, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "fetch.wait.max.ms": FETCH_WAIT_MS,
        "session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 300,
    })


@contextmanager
def _closing(consumer: Any) -> Iterator[Any]:
    try:
        yield consumer
    finally:
        consumer.close()


def _poll(consumer: Any, count: int) -> list[Any]:
    """``count`` records (errors raised), polled within the call timeout."""
    got: list[Any] = []
    deadline = time.monotonic() + CALL_TIMEOUT_S
    while len(got) < count and time.monotonic() < deadline:
        for m in consumer.consume(count - len(got), 0.1):
            if m.error() is not None:
                raise KafkaException(m.error())
            got.append(m)
    assert len(got) == count, f"{len(got)} of {count} records in {CALL_TIMEOUT_S:g} s"
    return got


def _read_all(target: Target, topic: str, partitions: int, isolation: str,
              ends: dict[int, int]) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record a reader with ``isolation`` gets,
    reading each partition until its position reaches ``ends[p]`` (past the markers)."""
    out: list[tuple[int, int, bytes]] = []
    with _closing(_consumer(target, unique("txn-reader"), isolation)) as reader:
        reader.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while time.monotonic() < deadline:
            for m in reader.consume(100, 0.1):
                if m.error() is not None:
                    raise KafkaException(m.error())
                out.append((m.partition(), m.offset(), m.value()))
            at = {tp.partition: tp.offset for tp in reader.position(
                [TopicPartition(topic, p) for p in range(partitions)])}
            if all(at[p] >= end for p, end in ends.items()):
                break
    return sorted(out)


def test_consume_transform_produce(target: Target) -> None:
    source, output, group = unique("txn-in"), unique("txn-out"), unique("txn-group")
    create_topic(target, source, 1)
    create_topic(target, output, 2)
    plain = Producer({"bootstrap.servers": target.bootstrap, "client.id": "wire-txn"})
    for i in range(6):
        plain.produce(source, value=b"in%d" % i, partition=0)
    assert plain.flush(CALL_TIMEOUT_S) == 0
    producer = _producer(target, unique("txn-id"))
    with _closing(_consumer(target, group)) as consumer:
        consumer.subscribe([source])

        def transaction(prefix: bytes, *, commit: bool) -> None:
            records = _poll(consumer, 3)
            producer.begin_transaction()
            for n, m in enumerate(records):
                producer.produce(output, value=prefix + m.value(), partition=n % 2)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(),
                CALL_TIMEOUT_S)
            # written before the end (an abort purges what librdkafka has not sent yet)
            assert producer.flush(CALL_TIMEOUT_S) == 0
            if commit:
                producer.commit_transaction(CALL_TIMEOUT_S)
            else:
                producer.abort_transaction(CALL_TIMEOUT_S)

        transaction(b"out-", commit=True)  # p0: 0 out-in0, 1 out-in2, 2 COMMIT; p1: 0, 1 COMMIT
        transaction(b"aborted-", commit=False)  # p0: 3, 4, 5 ABORT; p1: 2, 3 ABORT
        (committed,) = consumer.committed([TopicPartition(source, 0)], CALL_TIMEOUT_S)
        assert committed.error is None
        expect(target.name, "TxnOffsetCommit(committed, then aborted).offset",
               committed.offset, 3)

    producer.begin_transaction()  # left open while the readers look: p0: 6
    producer.produce(output, value=b"open", partition=0)
    assert producer.flush(CALL_TIMEOUT_S) == 0
    marks = {}
    for isolation in ("read_committed", "read_uncommitted"):
        with _closing(_consumer(target, unique("txn-marks"), isolation)) as c:
            marks[isolation] = [c.get_watermark_offsets(TopicPartition(output, p),
                                                        CALL_TIMEOUT_S, cached=False)[1]
                                for p in range(2)]
    expect(target.name, "ListOffsets(latest, open transaction)", marks,
           {"read_committed": [6, 4], "read_uncommitted": [7, 4]})
    producer.commit_transaction(CALL_TIMEOUT_S)  # p0: 7 COMMIT

    ends = {0: 8, 1: 4}
    expect(target.name, "Fetch(read_committed)",
           _read_all(target, output, 2, "read_committed", ends),
           [(0, 0, b"out-in0"), (0, 1, b"out-in2"), (0, 6, b"open"), (1, 0, b"out-in1")])
    expect(target.name, "Fetch(read_uncommitted)",
           _read_all(target, output, 2, "read_uncommitted", ends),
           [(0, 0, b"out-in0"), (0, 1, b"out-in2"), (0, 3, b"aborted-in3"),
            (0, 4, b"aborted-in5"), (0, 6, b"open"), (1, 0, b"out-in1"),
            (1, 2, b"aborted-in4")])


def test_zombie_instance_is_fenced(target: Target) -> None:
    topic, txn_id = unique("txn-zombie"), unique("txn-id")
    create_topic(target, topic, 1)
    zombie = _producer(target, txn_id)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie", partition=0)
    assert zombie.flush(CALL_TIMEOUT_S) == 0
    successor = _producer(target, txn_id)  # fences the zombie, aborts its transaction
    with pytest.raises(KafkaException) as raised:
        zombie.produce(topic, value=b"zombie-2", partition=0)
        zombie.commit_transaction(CALL_TIMEOUT_S)
    error = raised.value.args[0]
    expect(target.name, "Produce(fenced epoch) in librdkafka", (error.name(), error.fatal()),
           ("_FENCED", True))
    successor.begin_transaction()
    successor.produce(topic, value=b"successor", partition=0)
    successor.commit_transaction(CALL_TIMEOUT_S)
    # 0 zombie, 1 ABORT (written by the fencing), 2 successor, 3 COMMIT
    got = _read_all(target, topic, 1, "read_committed", {0: 4})
    expect(target.name, "Fetch(read_committed) after fencing", got, [(0, 2, b"successor")])


# --------------------------------------------------------------------------- raw requests

PRODUCE, OFFSET_FETCH, FIND_COORDINATOR, INIT_PRODUCER_ID = 0, 9, 10, 22
ADD_PARTITIONS, ADD_OFFSETS, END_TXN, TXN_OFFSET_COMMIT = 24, 25, 26, 28
RETRIABLE = {6, 14, 15, 16, 51}
"""NOT_LEADER_OR_FOLLOWER (Kafka's answer to a transactional Produce while it verifies
the partition with its coordinator), the coordinator loading, not available, not this
node, and CONCURRENT_TRANSACTIONS."""


def _retried(raw: RawClient, api: int, version: int, body: dict[str, Any],
             code: Any = lambda a: a["error_code"]) -> dict[str, Any]:
    """A coordinator request, asked again while Kafka answers a retriable code (its
    transaction coordinator loads its state topic at first use)."""
    deadline = time.monotonic() + CALL_TIMEOUT_S
    while True:
        answer: dict[str, Any] = raw.request(api, version, body)
        if code(answer) not in RETRIABLE or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def _raw(target: Target) -> RawClient:
    host, port = target.bootstrap.rsplit(":", 1)
    return RawClient(host, int(port), client_id="wire-txn-raw")


def _init(raw: RawClient, txn_id: str) -> tuple[int, int]:
    found = _retried(raw, FIND_COORDINATOR, 1, {"key": txn_id, "key_type": 1})
    assert found["error_code"] == 0, found
    init = _retried(raw, INIT_PRODUCER_ID, 1,
                    {"transactional_id": txn_id, "transaction_timeout_ms": TXN_TIMEOUT_MS})
    assert init["error_code"] == 0, init
    return init["producer_id"], init["producer_epoch"]


def test_control_batch_from_a_client_is_refused(target: Target) -> None:
    topic, txn_id = unique("txn-control"), unique("txn-id")
    create_topic(target, topic, 1)
    with _raw(target) as raw:
        pid, epoch = _init(raw, txn_id)
        added = _retried(raw, ADD_PARTITIONS, 2, {
            "v3_and_below_transactional_id": txn_id, "v3_and_below_producer_id": pid,
            "v3_and_below_producer_epoch": epoch,
            "v3_and_below_topics": [{"name": topic, "partitions": [0]}],
        }, lambda a: a["results_by_topic_v3_and_below"][0]["results_by_partition"][0][
            "partition_error_code"])
        assert added["results_by_topic_v3_and_below"][0]["results_by_partition"] == [
            {"partition_index": 0, "partition_error_code": 0}]
        marker = encode_marker(pid, epoch, commit=True, timestamp=int(time.time() * 1000))
        answer = _retried(raw, PRODUCE, 7, {
            "transactional_id": txn_id, "acks": -1, "timeout_ms": 10_000,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": marker}]}],
        }, lambda a: a["responses"][0]["partition_responses"][0]["error_code"])
        (part,) = answer["responses"][0]["partition_responses"]
        expect(target.name, "Produce(control batch).error_code", part["error_code"], 87)
        ended = _retried(raw, END_TXN, 2, {"transactional_id": txn_id, "producer_id": pid,
                                           "producer_epoch": epoch, "committed": False})
        assert ended["error_code"] == 0, ended


def test_coordinator_answers_on_logstore(logstore_target: LogstoreTarget) -> None:
    """What Kafka's broker answers too, but checked here field by field: the fenced code
    each version understands, OffsetFetch while a transaction holds the group's offsets,
    and the offsets once it commits."""
    topic, group, txn_id = unique("txn-raw"), unique("txn-group"), unique("txn-id")
    create_topic(logstore_target, topic, 1)
    with _raw(logstore_target) as raw:
        assert raw.request(FIND_COORDINATOR, 2, {"key": txn_id, "key_type": 1})[
            "node_id"] == 1
        assert raw.request(FIND_COORDINATOR, 2, {"key": txn_id, "key_type": 7})[
            "error_code"] == 42  # INVALID_REQUEST
        pid, epoch = _init(raw, txn_id)
        ids = {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch}
        assert raw.request(ADD_OFFSETS, 2, {**ids, "group_id": group})["error_code"] == 0
        commit = raw.request(TXN_OFFSET_COMMIT, 2, {**ids, "group_id": group, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "committed_offset": 42,
                                            "committed_metadata": "m"}]}]})
        assert commit["topics"][0]["partitions"] == [{"partition_index": 0, "error_code": 0}]

        def offset_fetch(version: int, topics: Any) -> dict[str, Any]:
            answer: dict[str, Any] = raw.request(
                OFFSET_FETCH, version, {"group_id": group, "topics": topics})
            return answer

        wanted = [{"name": topic, "partition_indexes": [0]}]
        for version in (1, 5):
            answer = offset_fetch(version, wanted)
            assert answer["topics"][0]["partitions"][0]["error_code"] == 88, answer
        assert offset_fetch(5, None)["error_code"] == 88  # UNSTABLE_OFFSET_COMMIT

        # a new instance fences this one: its open transaction (offset 42) is aborted
        stale = ids
        pid, epoch = _init(raw, txn_id)
        ids = {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch}
        (part,) = offset_fetch(5, wanted)["topics"][0]["partitions"]
        assert (part["error_code"], part["committed_offset"]) == (0, -1)
        for version, code in ((1, 47), (2, 90)):  # INVALID_PRODUCER_EPOCH, PRODUCER_FENCED
            answer = raw.request(END_TXN, version, {**stale, "committed": True})
            assert answer["error_code"] == code, (version, answer)
        assert raw.request(END_TXN, 2, {**ids, "producer_id": pid + 1, "committed": True})[
            "error_code"] == 49  # INVALID_PRODUCER_ID_MAPPING
        assert raw.request(INIT_PRODUCER_ID, 1, {
            "transactional_id": txn_id, "transaction_timeout_ms": 10**9})["error_code"] == 50

        raw.request(ADD_OFFSETS, 2, {**ids, "group_id": group})
        raw.request(TXN_OFFSET_COMMIT, 2, {**ids, "group_id": group, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "committed_offset": 7,
                                            "committed_metadata": None}]}]})
        assert raw.request(END_TXN, 2, {**ids, "committed": True})["error_code"] == 0
        (part,) = offset_fetch(5, wanted)["topics"][0]["partitions"]
        assert (part["error_code"], part["committed_offset"]) == (0, 7)


# --------------------------------------------------------------------------- kafka-python


def test_kafka_python_transactional_producer(target: Target) -> None:
    source, output, group = unique("kp-txn-in"), unique("kp-txn-out"), unique("kp-group")
    create_topic(target, source, 1)
    create_topic(target, output, 1)
    producer = KafkaProducer(bootstrap_servers=target.bootstrap, client_id="wire-kp-txn",
                             transactional_id=unique("kp-txn-id"))
    try:
        producer.init_transactions()
        for value, commit in ((b"kept", True), (b"dropped", False)):
            producer.begin_transaction()
            producer.send(output, value=value, partition=0)
            producer.send_offsets_to_transaction(
                {KpTopicPartition(source, 0): _offset(1 if commit else 2)}, group)
            producer.flush(CALL_TIMEOUT_S)  # in the log before the end, aborted or not
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
    finally:
        producer.close(timeout=CALL_TIMEOUT_S)
    consumer = KafkaConsumer(bootstrap_servers=target.bootstrap, client_id="wire-kp-txn",
                             isolation_level="read_committed", auto_offset_reset="earliest",
                             group_id=group, enable_auto_commit=False,
                             fetch_max_wait_ms=FETCH_WAIT_MS)
    got: list[tuple[int, bytes]] = []
    try:
        tp = KpTopicPartition(output, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        deadline = time.monotonic() + CALL_TIMEOUT_S
        # 0 kept, 1 COMMIT, 2 dropped, 3 ABORT: read until the position passes them all
        while consumer.position(tp) < 4 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100).values():
                got += [(m.offset, m.value) for m in records]
        committed = consumer.committed(KpTopicPartition(source, 0))
    finally:
        consumer.close()
    expect(target.name, "kafka-python read_committed", got, [(0, b"kept")])
    expect(target.name, "kafka-python TxnOffsetCommit", committed, 1)


def _offset(offset: int) -> Any:
    from kafka.structs import OffsetAndMetadata

    return OffsetAndMetadata(offset, "", -1)
