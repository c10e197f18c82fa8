"""Topics: name rule, record placement, input checking (logstore.topic; kafka.md §7.1)."""

from __future__ import annotations

import collections
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import mmh3
import pytest

import logstore
from logstore.errors import (
    InvalidRecordError,
    InvalidTopicError,
    PartitionNotFoundError,
    StoreClosedError,
)
from logstore.partitioner import murmur2
from logstore.store import Store
from logstore.topic import normalize_headers, partition_dir, validate_topic_name

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.partitioner.default import murmur2 as kafka_python_murmur2

NOW = 1_700_000_000_000
KEYS = [b"user-%d" % i for i in range(60)] + [b"", b"\x00", "clé".encode()]


class Clock:
    def __init__(self, now_ms: int = NOW) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


@pytest.fixture
def data_store(tmp_path: Path) -> Iterator[Store]:
    with logstore.open(tmp_path / "data", clock=Clock()) as store:
        yield store


def _counts(store: Store, topic: str) -> list[int]:
    partitions = store.topic(topic).num_partitions
    return [store.partition(topic, p).log_end_offset for p in range(partitions)]


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name", ["a", "A", "0", "a.b", "a_b", "a-b", "...", "x" * 249, "a__b", "_x", "-", "Ab.9_-"]
)
def test_validate_topic_name_accepts_kafka_legal_names(name: str) -> None:
    assert validate_topic_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "x" * 250, "a/b", "../x", "/abs", "x\x00", "a b", "a:b", "a*b", "__x", "__"],
    ids=repr,
)
def test_validate_topic_name_raises_invalid_topic_naming_value(name: str) -> None:
    with pytest.raises(InvalidTopicError) as info:
        validate_topic_name(name)
    assert isinstance(info.value, ValueError)
    assert repr(name)[:30] in str(info.value)


def test_partition_dir_is_topic_dash_partition_under_root() -> None:
    assert partition_dir("/root", "events", 12) == os.path.join("/root", "events-12")


# ---------------------------------------------------------------------------- placement


def test_topic_append_places_keys_by_murmur3_by_default(data_store: Store) -> None:
    data_store.create_topic("t", 5)
    for key in KEYS:
        meta = data_store.append("t", b"v", key=key)
        assert meta.partition == mmh3.hash(key, signed=False) % 5, key


def test_topic_append_places_keys_like_kafka_when_murmur2(data_store: Store) -> None:
    data_store.create_topic("t", 7, partitioner="murmur2")
    for key in KEYS:
        meta = data_store.append("t", b"v", key=key)
        assert meta.partition == (kafka_python_murmur2(key) & 0x7FFFFFFF) % 7, key
        assert meta.partition == (murmur2(key) & 0x7FFFFFFF) % 7


def test_topic_append_places_same_key_on_same_partition_across_reopen(tmp_path: Path) -> None:
    with logstore.open(tmp_path / "data", clock=Clock()) as store:
        store.create_topic("t", 8)
        first = {key: store.append("t", b"v", key=key).partition for key in KEYS}
        assert len(set(first.values())) > 1
    with logstore.open(tmp_path / "data", clock=Clock()) as store:
        for key in KEYS:
            assert store.append("t", b"v", key=key).partition == first[key]


def test_topic_append_spreads_null_keys_evenly(data_store: Store) -> None:
    data_store.create_topic("t", 4)
    placed = [data_store.append("t", b"v").partition for _ in range(12)]
    assert collections.Counter(placed) == {0: 3, 1: 3, 2: 3, 3: 3}
    assert _counts(data_store, "t") == [3, 3, 3, 3]


def test_topic_append_uses_explicit_partition_over_key(data_store: Store) -> None:
    data_store.create_topic("t", 4)
    key = b"user-1"
    natural = mmh3.hash(key, signed=False) % 4
    other = (natural + 1) % 4

    meta = data_store.append("t", b"v", key=key, partition=other)

    assert meta.partition == other
    (record,) = data_store.read("t", other, 0)
    assert (record.key, record.value) == (key, b"v")
    assert data_store.partition("t", natural).log_end_offset == 0


@pytest.mark.parametrize("partition", [-1, 3, 100, True, False, "0", 1.0], ids=repr)
def test_topic_append_raises_partition_not_found_and_appends_nothing(
    data_store: Store, partition: object
) -> None:
    data_store.create_topic("t", 3)
    with pytest.raises(PartitionNotFoundError) as info:
        data_store.append("t", b"v", partition=partition)  # type: ignore[arg-type]
    assert isinstance(info.value, KeyError)
    assert repr(partition) in str(info.value) and "'t'" in str(info.value)
    assert _counts(data_store, "t") == [0, 0, 0]
    with pytest.raises(PartitionNotFoundError):
        data_store.partition("t", partition)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"value": "text"}, ["value", "'text'", "bytes"]),
        ({"value": 42}, ["value", "42", "bytes"]),
        ({"value": [1, 2]}, ["value", "bytes"]),
        ({"value": b"v", "key": "user-1"}, ["key", "'user-1'", "bytes"]),
        ({"value": b"v", "key": 7}, ["key", "7", "bytes"]),
        ({"value": b"v", "headers": {"h": "text"}}, ["header", "'text'", "bytes"]),
        ({"value": b"v", "headers": {1: b"x"}}, ["header", "1", "str"]),
        ({"value": b"v", "headers": [("only-key",)]}, ["header", "pair"]),
        ({"value": b"v", "timestamp": -5}, ["timestamp", "-5"]),
        ({"value": b"v", "timestamp": 1.5}, ["timestamp", "1.5"]),
        ({"value": b"v", "timestamp": True}, ["timestamp", "True"]),
        ({"value": b"v", "timestamp": "now"}, ["timestamp", "'now'"]),
    ],
    ids=[
        "str-value", "int-value", "list-value", "str-key", "int-key", "str-header-value",
        "int-header-key", "header-not-pair", "negative-timestamp", "float-timestamp",
        "bool-timestamp", "str-timestamp",
    ],
)  # fmt: skip
def test_topic_append_raises_invalid_record_with_clear_message_and_appends_nothing(
    data_store: Store, kwargs: dict[str, object], words: list[str]
) -> None:
    data_store.create_topic("t", 2)
    value = kwargs.pop("value")
    with pytest.raises(InvalidRecordError) as info:
        data_store.append("t", value, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)
    assert _counts(data_store, "t") == [0, 0]


def test_topic_append_many_appends_nothing_when_any_record_invalid(data_store: Store) -> None:
    data_store.create_topic("t", 2)
    with pytest.raises(InvalidRecordError):
        data_store.append_many(
            "t",
            [
                (b"ok", None, None, 0, None),
                (b"ok", None, None, 1, None),
                ("bad", None, None, 0, None),  # type: ignore[list-item]
            ],
        )
    assert _counts(data_store, "t") == [0, 0]


def test_topic_append_accepts_bytes_like_values_and_null_value(data_store: Store) -> None:
    data_store.create_topic("t")
    data_store.append("t", bytearray(b"ba"), key=memoryview(b"mv"))  # type: ignore[arg-type]
    data_store.append("t", None, key=b"tombstone")
    records = data_store.read("t", 0, 0)
    assert [(r.key, r.value) for r in records] == [(b"mv", b"ba"), (b"tombstone", None)]


def test_topic_append_many_returns_metadata_in_input_order(data_store: Store) -> None:
    data_store.create_topic("t", 3)
    metas = data_store.append_many(
        "t",
        [
            (b"a", None, None, 2, None),
            (b"b", None, None, 0, 7),
            (b"c", None, None, 2, None),
            (b"d", None, None, 2, None),
        ],
    )
    assert [(m.topic, m.partition, m.offset) for m in metas] == [
        ("t", 2, 0),
        ("t", 0, 0),
        ("t", 2, 1),
        ("t", 2, 2),
    ]
    assert [m.timestamp for m in metas] == [NOW, 7, NOW, NOW]
    assert [r.value for r in data_store.read("t", 2, 0)] == [b"a", b"c", b"d"]


def test_topic_append_defaults_timestamp_to_store_clock(data_store: Store) -> None:
    data_store.create_topic("t")
    assert data_store.append("t", b"v").timestamp == NOW
    assert data_store.append("t", b"v", timestamp=0).timestamp == 0
    assert [r.timestamp for r in data_store.read("t", 0, 0)] == [NOW, 0]


def test_normalize_headers_accepts_mapping_or_pairs() -> None:
    assert normalize_headers(None) == ()
    assert normalize_headers({}) == ()
    assert normalize_headers({"a": b"1", "b": None}) == (("a", b"1"), ("b", None))
    assert normalize_headers([("a", bytearray(b"1")), ("a", b"2")]) == (("a", b"1"), ("a", b"2"))


# ---------------------------------------------------------------------------- lifecycle


def test_topic_append_raises_store_closed_when_store_closed(tmp_path: Path) -> None:
    store = logstore.open(tmp_path / "data", clock=Clock())
    topic = store.create_topic("t")
    store.close()
    try:
        with pytest.raises(StoreClosedError):
            topic.append(b"written after close")
    finally:
        topic.close()
    with logstore.open(tmp_path / "data", clock=Clock()) as again:
        assert again.partition("t", 0).log_end_offset == 0
