"""An idempotent producer's retries, as the server sees them: the same batch sent again
(the answer to the first was lost) is acknowledged with the first one's offset and not
stored twice; a batch that skips sequence numbers is refused, and so is a batch of an
epoch the producer has moved past. Sent raw (a client library
retries only when it lost an answer, which a test cannot arrange), with batches built by
kafka-python's own batch builder and a producer id from InitProducerId."""

from __future__ import annotations

import time
import warnings
from typing import Any

from tests.server_process import RawClient
from tests.wire.clients import by_name
from tests.wire.differences import expect
from tests.wire.helpers import PYTESTMARK, create_topic, unique
from tests.wire.targets import Target

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatchBuilder

pytestmark = PYTESTMARK

PRODUCE, LIST_OFFSETS, INIT_PRODUCER_ID = 0, 2, 22
NONE, OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH = 0, 45, 47
RETRIABLE = {14, 15}  # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE


def _batch(producer_id: int, epoch: int, sequence: int, values: list[bytes]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=producer_id,
        producer_epoch=epoch, base_sequence=sequence, batch_size=1 << 20)
    now = int(time.time() * 1000)
    for offset, value in enumerate(values):
        assert builder.append(offset, now, b"key", value, []) is not None
    return bytes(builder.build())


def _init_producer_id(raw: RawClient) -> dict[str, Any]:
    """InitProducerId, retried as clients do while the broker has no block of producer
    ids yet (Kafka answers COORDINATOR_LOAD_IN_PROGRESS / NOT_AVAILABLE then)."""
    deadline = time.monotonic() + 15
    while True:
        init: dict[str, Any] = raw.request(
            INIT_PRODUCER_ID, 1, {"transactional_id": None, "transaction_timeout_ms": 60_000})
        if init["error_code"] not in RETRIABLE or time.monotonic() > deadline:
            assert init["error_code"] == NONE and init["producer_id"] >= 0, init
            return init
        time.sleep(0.1)


def _produce(raw: RawClient, topic: str, batch: bytes) -> tuple[int, int]:
    answer: dict[str, Any] = raw.request(PRODUCE, 7, {
        "transactional_id": None, "acks": -1, "timeout_ms": 10_000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    })
    (part,) = answer["responses"][0]["partition_responses"]
    return part["error_code"], part["base_offset"]


def test_retried_batches_are_stored_once(target: Target) -> None:
    topic = unique("idempotent")
    create_topic(target, topic, 1)
    host, port = target.bootstrap.rsplit(":", 1)
    with RawClient(host, int(port), client_id="wire-raw") as raw:
        init = _init_producer_id(raw)
        pid, epoch = init["producer_id"], init["producer_epoch"]
        first = _batch(pid, epoch, 0, [b"a", b"b", b"c"])
        second = _batch(pid, epoch, 3, [b"d", b"e"])
        steps = [
            ("first batch", first, (NONE, 0)),
            ("the first batch again (a retry)", first, (NONE, 0)),
            ("the next batch", second, (NONE, 3)),
            ("the next batch again", second, (NONE, 3)),
            ("the first batch once more (an older retry)", first, (NONE, 0)),
            ("a batch skipping sequence numbers", _batch(pid, epoch, 9, [b"x"]),
             (OUT_OF_ORDER_SEQUENCE_NUMBER, -1)),
            ("a batch of the next producer epoch", _batch(pid, epoch + 1, 0, [b"f"]),
             (NONE, 5)),
            ("a batch of the fenced epoch", _batch(pid, epoch, 5, [b"y"]),
             (INVALID_PRODUCER_EPOCH, -1)),
        ]
        for what, batch, kafka_answer in steps:
            expect(target.name, f"Produce({what}).error_code,base_offset",
                   _produce(raw, topic, batch), kafka_answer)
    got = by_name("kafka-python").consume(target.bootstrap, topic, 1, 6)
    assert [(g.offset, g.value) for g in got] == list(enumerate(
        [b"a", b"b", b"c", b"d", b"e", b"f"]))
