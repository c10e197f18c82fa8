"""The Kafka-cluster backend across real processes: the same workers as
``test_groups.py``, given a ``kafka://`` address instead of a data directory.

Each test uses topics and groups of its own (the broker is the session's).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest

import logstore
from logstore.cluster import KafkaStore
from tests.integration.workers import produce_all, rows, start
from tests.kafka_broker import KafkaBroker

pytestmark = pytest.mark.kafka


@pytest.fixture
def url(kafka_broker: KafkaBroker) -> str:
    return f"kafka://{kafka_broker.bootstrap}"


@pytest.fixture
def cluster(url: str) -> Iterator[KafkaStore]:
    store = logstore.open(url)
    assert isinstance(store, KafkaStore)
    with store:
        yield store


def _name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


def _rows(output: str) -> list[tuple[int, int, str]]:
    return rows(output, "rec", "ack")


def test_a_group_of_two_processes_shares_every_record_once(
    url: str, cluster: KafkaStore
) -> None:
    topic, group = _name("t"), _name("g")
    cluster.create_topic(topic, 4)
    acks = produce_all(url, topic, producers=2, count=500)
    consumers = [start("consume", url, topic, group, 5000, 10_000, 50) for _ in range(2)]
    outputs = []
    for consumer in consumers:
        out, err = consumer.communicate(timeout=120)
        assert consumer.returncode == 0, err
        outputs.append(out)
    got = [r for out in outputs for r in _rows(out)]
    assert Counter((p, o) for p, o, _ in got) == Counter((p, o) for p, o, _ in acks)
    assert len(got) == 1000  # exactly once: no loss, no duplicate
    described = cluster.describe_group(group)
    assert described.total_lag == 0
    ends = Counter(p for p, _, _ in acks)  # one topic of our own: offsets start at 0
    assert {p.partition: p.committed for p in described.partitions} == {
        partition: ends.get(partition, 0) for partition in range(4)
    }


def test_a_killed_member_s_partitions_move_and_nothing_is_lost(
    url: str, cluster: KafkaStore
) -> None:
    topic, group = _name("t"), _name("g")
    cluster.create_topic(topic, 4)
    acks = produce_all(url, topic, producers=2, count=1500)
    session_ms = 6000  # the broker's minimum (group.min.session.timeout.ms)
    survivor = start("consume", url, topic, group, 9000, session_ms, 20)
    victim = start("consume", url, topic, group, 9000, session_ms, 20)
    time.sleep(1.0)
    victim.send_signal(signal.SIGKILL)
    victim_out, _ = victim.communicate(timeout=60)
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err

    seen = Counter((p, o) for p, o, _ in _rows(victim_out) + _rows(out))
    assert set(seen) == {(p, o) for p, o, _ in acks}  # at-least-once: nothing lost
    committed: dict[int, int] = {}
    pending: dict[int, int] = defaultdict(lambda: -1)
    for line in victim_out.splitlines():
        parts = line.split()
        if parts[:1] == ["rec"]:
            pending[int(parts[1])] = max(pending[int(parts[1])], int(parts[2]))
        elif parts == ["commit"]:
            committed.update(pending)
    for (partition, offset), n in seen.items():
        if n > 1:  # duplicates only past the victim's last commit
            assert offset > committed.get(partition, -1), (partition, offset)


def test_seek_by_timestamp_and_resume_from_a_commit_across_processes(
    url: str, cluster: KafkaStore
) -> None:
    topic, group = _name("t"), _name("g")
    cluster.create_topic(topic, 1)
    with cluster.producer(linger_ms=0) as producer:
        for i in range(20):
            producer.send(topic, b"v%d" % i, timestamp=1_000_000 + i * 10)
    with cluster.consumer(group_id=group, enable_auto_commit=False) as consumer:
        tp = logstore.TopicPartition(topic, 0)
        consumer.assign([tp])
        [(found, meta)] = consumer.offsets_for_times({tp: 1_000_105}).items()
        assert (found, meta.offset if meta else None) == (tp, 11)
        consumer.seek(tp, 11)
        records = []
        deadline = time.monotonic() + 10
        while len(records) < 4 and time.monotonic() < deadline:
            records += consumer.poll(timeout_ms=200, max_records=4 - len(records))
        assert [r.offset for r in records] == [11, 12, 13, 14]
        consumer.commit()
    other = start("consume", url, topic, group, 6000, 10_000, 50)
    out, err = other.communicate(timeout=60)
    assert other.returncode == 0, err
    assert [o for _, o, _ in _rows(out)] == list(range(15, 20))
