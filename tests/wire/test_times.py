"""Seek by timestamp: ListOffsets by time answers the first offset whose timestamp is at
or after the one asked (with that record's timestamp, where the client returns it), no
offset past the last record; a consumer seeking there reads that record first."""

from __future__ import annotations

import time

from tests.wire.clients import Can, WireClient, by_name
from tests.wire.helpers import PYTESTMARK, create_topic, needs, unique
from tests.wire.model import OffsetTime, Rec
from tests.wire.targets import Target

pytestmark = PYTESTMARK

PARTITIONS = 2
RECORDS = 20
STEP_MS = 1000


@needs(Can.TIMES)
def test_offsets_for_times_and_seek(target: Target, client: WireClient) -> None:
    topic = unique("times")
    create_topic(target, topic, PARTITIONS)
    base = int(time.time() * 1000) - 600_000
    # record i: partition i % 2, offset i // 2, timestamp base + i s
    sent = [Rec(f"key-{i}".encode(), f"value-{i}".encode(), (), base + i * STEP_MS, i % 2)
            for i in range(RECORDS)]
    by_name("kafka-python").produce(target.bootstrap, topic, sent)

    def answer(i: int) -> OffsetTime:
        librdkafka = client.name in ("confluent-kafka", "kcat")  # it gives the offset only
        stamp = None if librdkafka else sent[i].timestamp
        return OffsetTime(i // 2, stamp)

    at = base + 9 * STEP_MS + 500  # between records 9 (p1) and 10 (p0)
    found = client.offsets_for_times(target.bootstrap, topic, {0: at, 1: at})
    assert found == {0: answer(10), 1: answer(11)}
    exact = client.offsets_for_times(target.bootstrap, topic, {0: base + 4 * STEP_MS, 1: 0})
    assert exact == {0: answer(4), 1: answer(1)}
    late = client.offsets_for_times(target.bootstrap, topic, {0: base + RECORDS * STEP_MS})
    assert late == {0: None}

    first = client.read_at_time(target.bootstrap, topic, 1, at)
    assert (first.partition, first.offset, first.value, first.timestamp) == (
        1, 5, b"value-11", sent[11].timestamp)
