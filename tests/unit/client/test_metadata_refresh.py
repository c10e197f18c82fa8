"""Producers and consumers notice a topic deleted, re-created or grown by another Store
(two Stores on one directory act as two processes) within ``metadata_max_age_ms``, and at
once on an unknown partition or a deleted topic (issue 11, points 1 and 2)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import logstore
from logstore.errors import InvalidConfigError, TopicNotFoundError
from logstore.types import TopicPartition


def _values(store: logstore.Store, topic: str) -> set[bytes]:
    out = set()
    for p in range(store.topic(topic).num_partitions):
        out |= {r.value or b"" for r in store.read(topic, p, 0)}
    return out


def test_producer_writes_a_recreated_topic_in_its_new_incarnation(tmp_path: Path) -> None:
    with logstore.open(tmp_path) as mine, logstore.open(tmp_path) as other:
        mine.create_topic("t", 2)
        with mine.producer(linger_ms=0, metadata_max_age_ms=60_000) as producer:
            producer.send("t", b"old", partition=0).result()
            other.delete_topic("t")
            other.create_topic("t", 2)
            # the cached incarnation is refused (never written into deleted files) ...
            with pytest.raises(TopicNotFoundError, match="'t' was deleted"):
                producer.send("t", b"lost", partition=0).result()
            # ... and the next send looks the topic up again, at once
            meta = producer.send("t", b"new", partition=0).result()
        assert (meta.partition, meta.offset) == (0, 0)
        assert _values(other, "t") == {b"new"}


def test_producer_refuses_a_deleted_topic_with_topic_not_found(tmp_path: Path) -> None:
    with logstore.open(tmp_path) as mine, logstore.open(tmp_path) as other:
        mine.create_topic("t", 1)
        with mine.producer(linger_ms=0, metadata_max_age_ms=0) as producer:
            producer.send("t", b"v").result()
            other.delete_topic("t")
            with pytest.raises(TopicNotFoundError, match="unknown topic 't'"):
                producer.send("t", b"v")


def test_producer_takes_added_partitions_within_max_age_and_at_once_by_number(
    tmp_path: Path,
) -> None:
    with logstore.open(tmp_path) as mine, logstore.open(tmp_path) as other:
        mine.create_topic("t", 1)
        with mine.producer(linger_ms=0, metadata_max_age_ms=100) as producer:
            producer.send("t", b"k", key=b"k").result()
            other.add_partitions("t", 8)
            # an unknown partition number looks the topic up at once
            assert producer.send("t", b"v", partition=7).result().partition == 7
            time.sleep(0.15)
            spread = {producer.send("t", b"v", key=b"k%d" % i).result().partition
                      for i in range(64)}
        assert len(spread) > 1  # keys now hash over 8 partitions


def test_assigned_consumer_moves_to_a_recreated_topic_and_raises_while_it_is_gone(
    tmp_path: Path,
) -> None:
    with logstore.open(tmp_path) as mine, logstore.open(tmp_path) as other:
        mine.create_topic("t", 1)
        mine.append_many("t", [(b"old-%d" % i, None, None, 0, None) for i in range(5)])
        consumer = mine.consumer(auto_offset_reset="earliest", metadata_max_age_ms=0)
        consumer.assign([TopicPartition("t", 0)])
        assert len(consumer.poll(timeout_ms=100)) == 5
        other.delete_topic("t")
        with pytest.raises(TopicNotFoundError, match="'t' was deleted"):
            consumer.poll(timeout_ms=10)
        other.create_topic("t", 1)
        other.append("t", b"new")  # offset 0, below the old position 5
        got = consumer.poll(timeout_ms=100)
        assert [(r.offset, r.value) for r in got] == [(0, b"new")]
        consumer.close()


def test_group_rebalances_when_another_store_adds_partitions(tmp_path: Path) -> None:
    with logstore.open(tmp_path) as mine, logstore.open(tmp_path) as other:
        mine.create_topic("t", 2)
        consumer = mine.consumer(
            ["t"], group_id="g", auto_offset_reset="latest", metadata_max_age_ms=100
        )
        assert len(consumer.assignment()) == 2
        other.add_partitions("t", 4)
        other.append("t", b"in-new", partition=3)  # before the group took partition 3
        deadline = time.monotonic() + 5
        got = []
        while len(consumer.assignment()) < 4 and time.monotonic() < deadline:
            got += consumer.poll(timeout_ms=20)
        assert len(consumer.assignment()) == 4
        got += consumer.poll(timeout_ms=100)
        # a partition added while the consumer ran is read from its beginning, even
        # with auto_offset_reset="latest": every record in it is new to the consumer
        assert [r.value for r in got] == [b"in-new"]
        consumer.close()


def test_metadata_max_age_ms_must_not_be_negative(tmp_path: Path) -> None:
    with logstore.open(tmp_path) as store:
        store.create_topic("t", 1)
        with pytest.raises(InvalidConfigError, match="metadata_max_age_ms"):
            store.consumer(metadata_max_age_ms=-1)
        with pytest.raises(ValueError, match="metadata_max_age_ms"):
            store.producer(metadata_max_age_ms=-1)
