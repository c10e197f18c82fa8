"""logstore.patterns.dlq, the library under 'logstore dlq' and the console's dead-letter
view: re-driving every pending letter a chunk at a time, below a preview's offsets."""

from __future__ import annotations

from pathlib import Path

import pytest

import logstore
from logstore import headers as h
from logstore.backend import backend_for
from logstore.patterns.dlq import (
    REDRIVE_GROUP,
    NotDeadLettersError,
    letters_of,
    preview_redrive_all,
    redrive_all,
    redrive_state,
)
from logstore.types import TopicPartition


def letter(i: int) -> dict[str, bytes]:
    return {h.DLQ_ORIGINAL_TOPIC: b"orders", h.DLQ_ORIGINAL_PARTITION: str(i % 2).encode()}


@pytest.fixture
def store(tmp_path: Path) -> logstore.Store:
    with logstore.open(tmp_path / "data") as store:
        store.create_topic("orders", partitions=2)
        store.create_topic("orders.dlq", partitions=2)
        with store.producer() as producer:
            for i in range(9):
                producer.send("orders.dlq", f"v{i}".encode(), headers=letter(i),
                              partition=i % 2)
        yield store


def values(store: logstore.Store, topic: str) -> list[bytes]:
    return sorted(r.value or b"" for p in range(2) for r in store.read(topic, p, 0))


def test_redrive_all_goes_a_chunk_at_a_time_and_once(store: logstore.Store) -> None:
    backend = backend_for(store)
    preview = preview_redrive_all(backend, "orders.dlq")
    assert (preview.count, preview.counts, preview.through) == (9, {"orders": 9}, {0: 5, 1: 4})
    done = redrive_all(backend, "orders.dlq", chunk=2)
    assert done.count == 9
    assert values(store, "orders") == sorted(f"v{i}".encode() for i in range(9))
    committed = backend.committed_offsets(REDRIVE_GROUP)
    assert {tp.partition: c.offset for tp, c in committed.items()} == {0: 5, 1: 4}
    assert all(c.metadata == "" for c in committed.values())
    assert redrive_all(backend, "orders.dlq").count == 0  # nothing twice
    assert len(values(store, "orders")) == 9


def test_redrive_all_stops_at_the_preview(store: logstore.Store) -> None:
    backend = backend_for(store)
    preview = preview_redrive_all(backend, "orders.dlq")
    store.append("orders.dlq", b"late", partition=0, headers=letter(0))
    redrive_all(backend, "orders.dlq", through=preview.through)
    assert b"late" not in values(store, "orders")
    state = redrive_state(backend, "orders.dlq")
    late = [x for x in letters_of(backend, "orders.dlq") if x.record.value == b"late"]
    assert not state.is_redriven(late[0])


def test_a_record_that_is_no_letter_stops_it_before_anything_is_sent(
    store: logstore.Store
) -> None:
    store.append("orders.dlq", b"plain", partition=1)
    backend = backend_for(store)
    with pytest.raises(NotDeadLettersError, match=r"1 record\(s\) of 'orders.dlq' \(1:4\)"):
        redrive_all(backend, "orders.dlq", chunk=2)
    assert values(store, "orders") == []
    assert backend.committed_offsets(REDRIVE_GROUP) == {}
    assert redrive_all(backend, "orders.dlq", target="orders").count == 10  # --to TOPIC
    assert TopicPartition("orders.dlq", 1) in backend.committed_offsets(REDRIVE_GROUP)
