"""The store: data directory, lock, topic registry and lifecycle (logstore.store)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import logstore
from logstore.errors import (
    InvalidConfigError,
    InvalidTopicError,
    LogstoreError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    TopicExistsError,
    TopicNotFoundError,
)
from logstore.storage.files import FileSystem
from logstore.storage.head import WRITER_LOCK_NAME
from logstore.storage.statefile import read_state
from logstore.store import Store
from logstore.topic import PartitionInfo


class Clock:
    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


FS = FileSystem()  # reads the state files the store writes

def _open(path: Path, clock: Clock | None = None) -> Store:
    return logstore.open(path, clock=clock or Clock())


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every directory (None) and file (its bytes) below ``root``, by relative path."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _values(store: Store, topic: str, partition: int) -> list[bytes | None]:
    return [r.value for r in store.read(topic, partition, 0)]


def _all_values(store: Store, topic: str, partition: int) -> list[bytes | None]:
    """Every value of a partition, fetch after fetch (one fetch reads one segment)."""
    log = store.partition(topic, partition)
    out: list[bytes | None] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        records = store.read(topic, partition, offset)
        out += [r.value for r in records]
        offset = records[-1].offset + 1
    return out


# ---------------------------------------------------------------------------- open / lock


def test_store_open_creates_store_json_lock_and_topic_registry(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        assert store.path == str(tmp_path / "data")
        assert sorted(os.listdir(tmp_path / "data")) == [
            ".lock", ".opening.lock", "__topics", "store.json"
        ]
        meta = json.loads(read_state(FS, str(tmp_path / "data" / "store.json"), "store"))
        assert meta == {"format": "logstore", "version": 1}
        assert store.list_topics() == []


def test_store_open_raises_store_locked_when_exclusive_store_open(tmp_path: Path) -> None:
    first = logstore.open(tmp_path / "data", exclusive=True)
    with pytest.raises(StoreLockedError) as info:
        _open(tmp_path / "data")
    assert str(tmp_path / "data") in str(info.value)
    assert first.list_topics() == []  # the first store is unharmed
    first.close()

    second = _open(tmp_path / "data")
    assert not second.closed
    with pytest.raises(StoreLockedError, match="without exclusive"):
        logstore.open(tmp_path / "data", exclusive=True)
    second.close()


def test_store_open_shares_directory_between_stores(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as first, _open(tmp_path / "data") as second:
        first.create_topic("t", 1)
        first.append("t", b"one")
        assert second.list_topics() == ["t"]  # made by the other store
        second.append("t", b"two")
        assert [r.value for r in first.read("t", 0, 0)] == [b"one", b"two"]


def test_store_open_raises_storage_error_when_missing_and_create_false(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        logstore.open(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_store_open_raises_storage_error_when_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a store")
    with pytest.raises(StorageError):
        _open(tmp_path / "file")


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"format": "other", "version": 1}', b'{"format": "logstore", "version": 2}'],
    ids=["not-json", "foreign", "newer-version"],
)
def test_store_open_raises_storage_error_when_store_json_not_ours(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "store.json").write_bytes(content)
    with pytest.raises(StorageError):
        _open(tmp_path / "data")
    _open(tmp_path / "other").close()  # the failed open left no lock held anywhere
    (tmp_path / "data" / "store.json").write_bytes(b'{"format": "logstore", "version": 1}')
    _open(tmp_path / "data").close()


# ---------------------------------------------------------------------------- topics


def test_store_create_topic_makes_partition_dirs_and_registry_file(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        topic = store.create_topic("events", 3, retention_ms=60_000)
        assert topic.name == "events" and topic.num_partitions == 3
        assert store.list_topics() == ["events"]
        assert store.has_topic("events") and not store.has_topic("other")
        for p in range(3):
            assert (tmp_path / "data" / f"events-{p}").is_dir()
        meta = json.loads(read_state(FS, str(tmp_path / "data" / "__topics" / "events"), "topic"))
        assert meta["name"] == "events"
        assert meta["config"]["partitions"] == 3
        assert meta["config"]["retention_ms"] == 60_000


def test_store_create_topic_raises_topic_exists_unless_exist_ok(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        first = store.create_topic("t", 2)
        with pytest.raises(TopicExistsError, match="exist_ok"):
            store.create_topic("t", 2)
        assert store.create_topic("t", 2, exist_ok=True) is first
        assert store.topic("t").num_partitions == 2


@pytest.mark.parametrize(
    "config",
    [{"partitions": 0}, {"segment_bytes": 1}, {"flush": "sometimes"}, {"colour": "red"}],
    ids=["partitions", "segment-bytes", "flush", "unknown-key"],
)
def test_store_create_topic_raises_invalid_config_and_creates_nothing(
    tmp_path: Path, config: dict[str, object]
) -> None:
    with _open(tmp_path / "data") as store:
        before = _tree(tmp_path)
        with pytest.raises(InvalidConfigError):
            store.create_topic("t", **config)  # type: ignore[arg-type]
        assert _tree(tmp_path) == before
        assert store.list_topics() == []


def test_store_list_topics_is_sorted(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        for name in ["b", "a", "C", "a.b"]:
            store.create_topic(name)
        assert store.list_topics() == ["C", "a", "a.b", "b"]


def test_store_describe_topic_reports_each_partition(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        store.create_topic("t", 2)
        store.append("t", b"a", partition=1)
        store.append("t", b"b", partition=1)

        description = store.describe_topic("t")

        assert description.name == "t"
        assert description.config.partitions == 2
        assert [p.partition for p in description.partitions] == [0, 1]
        p0, p1 = description.partitions
        assert p0 == PartitionInfo(0, 0, 0, 0, 1)
        assert (p1.log_start_offset, p1.log_end_offset, p1.segments) == (0, 2, 1)
        assert p1.size_bytes > 0


def test_store_topic_raises_topic_not_found_naming_existing_topics(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        store.create_topic("real")
        with pytest.raises(TopicNotFoundError) as info:
            store.topic("typo")
        assert isinstance(info.value, KeyError)
        assert "typo" in str(info.value) and "real" in str(info.value)
        for call in (
            lambda: store.describe_topic("typo"),
            lambda: store.delete_topic("typo"),
            lambda: store.alter_topic("typo", retention_ms=1),
            lambda: store.add_partitions("typo", 3),
            lambda: store.append("typo", b"v"),
            lambda: store.read("typo", 0, 0),
            lambda: store.partition("typo", 0),
        ):
            with pytest.raises(TopicNotFoundError):
                call()


def test_store_alter_topic_changes_config_persistently(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        store.create_topic("t", 2)
        log = store.partition("t", 0)
        cfg = store.alter_topic("t", retention_ms=5000, flush="never")
        assert (cfg.retention_ms, cfg.flush, cfg.partitions) == (5000, "never", 2)
        assert store.topic("t").config == cfg
        assert log.config == cfg  # open partition logs follow the change
    with _open(tmp_path / "data") as store:
        assert store.topic("t").config.retention_ms == 5000


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"partitions": 5}, InvalidConfigError),
        ({"partitioner": "murmur2"}, InvalidConfigError),
        ({"retention_ms": -7}, InvalidConfigError),
        ({"colour": "red"}, InvalidConfigError),
    ],
    ids=["partitions", "partitioner", "bad-value", "unknown-key"],
)
def test_store_alter_topic_raises_invalid_config_and_keeps_config(
    tmp_path: Path, changes: dict[str, object], error: type[Exception]
) -> None:
    with _open(tmp_path / "data") as store:
        before = store.create_topic("t", 2).config
        with pytest.raises(error):
            store.alter_topic("t", **changes)
        assert store.topic("t").config == before
    with _open(tmp_path / "data") as store:
        assert store.topic("t").config == before


def test_store_add_partitions_grows_topic_persistently(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        store.create_topic("t", 2)
        cfg = store.add_partitions("t", 4)
        assert cfg.partitions == 4
        assert store.topic("t").num_partitions == 4
        assert (tmp_path / "data" / "t-3").is_dir()
        assert store.append("t", b"new", partition=3).offset == 0
    with _open(tmp_path / "data") as store:
        assert store.topic("t").num_partitions == 4
        assert _values(store, "t", 3) == [b"new"]


@pytest.mark.parametrize("total", [1, 2, True, 2.5, "4"], ids=repr)
def test_store_add_partitions_raises_invalid_config_unless_total_grows(
    tmp_path: Path, total: object
) -> None:
    with _open(tmp_path / "data") as store:
        store.create_topic("t", 2)
        with pytest.raises(InvalidConfigError, match="2 partitions"):
            store.add_partitions("t", total)  # type: ignore[arg-type]
        assert store.topic("t").num_partitions == 2


def test_store_delete_topic_removes_its_directories_and_registry_file(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        store.create_topic("gone", 3)
        store.create_topic("kept", 1)
        store.append("gone", b"v", partition=2)
        store.append("kept", b"v")

        store.delete_topic("gone")

        assert store.list_topics() == ["kept"]
        assert sorted(os.listdir(tmp_path / "data")) == [
            ".lock",
            ".opening.lock",
            "__topics",
            "kept-0",
            "store.json",
        ]
        assert [n for n in os.listdir(tmp_path / "data" / "__topics") if n[0] != "."] == ["kept"]
        with pytest.raises(TopicNotFoundError):
            store.topic("gone")
        again = store.create_topic("gone", 3)  # the name is free again, and empty
        assert again.describe().partitions[2].log_end_offset == 0
        assert _values(store, "kept", 0) == [b"v"]


def test_store_append_raises_topic_not_found_when_another_store_deleted_the_topic(
    tmp_path: Path,
) -> None:
    """Two Stores act as two processes. The writer has partition 0 open (and partition 1
    not yet) when the other deletes the topic: its appends, through ``append`` and a
    producer, are refused, not acknowledged into unlinked files or an orphan directory
    (the producer's send, once the writer's store has seen the topic gone, raises at once
    like any send to an unknown topic)."""
    data = tmp_path / "data"
    with _open(data) as writer, _open(data) as other:
        writer.create_topic("t", 2)
        writer.append("t", b"before", partition=0)
        producer = writer.producer(linger_ms=0)
        future = producer.send("t", b"before", partition=0)
        assert future.result().offset == 1
        other.delete_topic("t")
        future = producer.send("t", b"after", partition=0)  # its cached topic
        with pytest.raises(TopicNotFoundError, match="'t' was deleted"):
            future.result()
        for partition in (0, 1):
            with pytest.raises(TopicNotFoundError, match=r"'t' was deleted|unknown topic 't'"):
                writer.append("t", b"after", partition=partition)
            with pytest.raises(TopicNotFoundError, match="unknown topic 't'"):
                producer.send("t", b"after", partition=partition)
        producer.close()
    assert not [n for n in os.listdir(data) if n.startswith("t-")]


def test_store_close_leaves_a_recreated_topic_alone_when_its_old_log_was_open(
    tmp_path: Path,
) -> None:
    """The old writer's close must not sync, or mark clean, the directory of a new topic
    of the same name (it would write the old log's recovery point into its checkpoint)."""
    data = tmp_path / "data"
    old = _open(data)
    old.create_topic("t", 1)
    for i in range(5):
        old.append("t", b"old-%d" % i)
    with _open(data) as other:
        other.delete_topic("t")
        other.create_topic("t", 1)
        other.append("t", b"new")
        old.close()
    with _open(data) as store:
        assert _values(store, "t", 0) == [b"new"]
    assert logstore.verify_store(data).all_findings == []


def test_store_topic_data_persists_across_reopen(tmp_path: Path) -> None:
    clock = Clock()
    with _open(tmp_path / "data", clock) as store:
        store.create_topic("a", 2, flush="never", segment_bytes=200)
        store.create_topic("b")
        for i in range(10):
            store.append("a", b"a%d" % i, partition=i % 2, key=b"k")
        store.append("b", b"b0", headers={"h": b"x"}, timestamp=42)

    with _open(tmp_path / "data", clock) as store:
        assert store.list_topics() == ["a", "b"]
        assert store.topic("a").config.segment_bytes == 200
        assert store.topic("a").config.flush == "never"
        assert len(store.partition("a", 0).segments) > 1
        for p in range(2):
            assert _all_values(store, "a", p) == [b"a%d" % i for i in range(p, 10, 2)]
        (record,) = store.read("b", 0, 0)
        assert (record.value, record.timestamp, tuple(record.headers)) == (
            b"b0",
            42,
            (("h", b"x"),),
        )
        assert store.partition("a", 0).was_clean


# ---------------------------------------------------------------------------- topic names


BAD_NAMES = [
    "../x",
    "../../escaped",
    "a/b",
    "/abs",
    "a\\b",
    "x\x00y",
    "\x00",
    ".",
    "..",
    "x" * 250,
    "",
    "__internal",
    "__",
    "a b",
    "caf\u00e9",
    "tab\t",
    "new\nline",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_store_create_topic_raises_invalid_topic_and_writes_nothing_when_name_illegal(
    tmp_path: Path, name: str
) -> None:
    with _open(tmp_path / "data") as store:
        before = _tree(tmp_path)
        with pytest.raises(InvalidTopicError) as info:
            store.create_topic(name)
        assert isinstance(info.value, ValueError)
        assert repr(name)[:40] in str(info.value) or name in str(info.value)
        assert _tree(tmp_path) == before
        assert store.list_topics() == []


def test_store_create_topic_writes_nothing_outside_data_dir_when_name_is_absolute_path(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    with _open(tmp_path / "data") as store:
        before = _tree(tmp_path)
        for name in (str(outside), str(outside) + "/t", "../outside", "../outside-0"):
            with pytest.raises(InvalidTopicError):
                store.create_topic(name)
            for call in (
                lambda n=name: store.append(n, b"v"),
                lambda n=name: store.delete_topic(n),
                lambda n=name: store.describe_topic(n),
                lambda n=name: store.partition(n, 0),
            ):
                with pytest.raises(LogstoreError):
                    call()
        assert _tree(tmp_path) == before
    assert not outside.exists()
    assert not (tmp_path / "outside-0").exists()


# ids: repr, but not an object's address (pytest-xdist's workers must collect the same ids)
@pytest.mark.parametrize("name", [object(), None, b"bytes", 5],
                         ids=lambda v: "object()" if type(v) is object else repr(v))
def test_store_create_topic_raises_invalid_topic_when_name_not_str(
    tmp_path: Path, name: object
) -> None:
    with _open(tmp_path / "data") as store, pytest.raises(InvalidTopicError):
        store.create_topic(name)  # type: ignore[arg-type]


def test_store_create_topic_accepts_249_character_name(tmp_path: Path) -> None:
    name = "x" * 249
    with _open(tmp_path / "data") as store:
        store.create_topic(name)
        assert store.append(name, b"v").offset == 0
        assert _values(store, name, 0) == [b"v"]
        store.delete_topic(name)
        assert store.list_topics() == []


# ---------------------------------------------------------------------------- close


def _public_calls(store: Store) -> list[Callable[[], object]]:
    return [
        lambda: store.create_topic("new"),
        lambda: store.create_topic("t", exist_ok=True),
        lambda: store.topic("t"),
        store.list_topics,
        lambda: store.has_topic("t"),
        lambda: store.describe_topic("t"),
        lambda: store.alter_topic("t", retention_ms=1),
        lambda: store.add_partitions("t", 5),
        lambda: store.partition("t", 0),
        lambda: store.append("t", b"v"),
        lambda: store.append_many("t", [(b"v", None, None, None, None)]),
        lambda: store.read("t", 0, 0),
        store.apply_retention,
        lambda: store.delete_topic("t"),
    ]


def test_store_every_public_method_raises_store_closed_after_close(tmp_path: Path) -> None:
    store = _open(tmp_path / "data")
    store.create_topic("t", 2)
    store.append("t", b"v")
    store.close()
    assert store.closed
    for call in _public_calls(store):
        with pytest.raises(StoreClosedError, match="closed"):
            call()


def test_store_close_is_idempotent_and_releases_lock(tmp_path: Path) -> None:
    store = _open(tmp_path / "data")
    store.create_topic("t")
    log = store.partition("t", 0)
    store.close()
    store.close()
    assert log.closed  # partition logs handed out are closed with the store
    with pytest.raises(StoreClosedError):
        log.read(0)
    with _open(tmp_path / "data") as again:
        assert again.list_topics() == ["t"]


def test_store_context_manager_closes_store(tmp_path: Path) -> None:
    with _open(tmp_path / "data") as store:
        pass
    assert store.closed
    _open(tmp_path / "data").close()


# ---------------------------------------------------------------------------- orphans


def test_store_open_removes_orphan_partition_dirs_and_leaves_other_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _open(data) as store:
        store.create_topic("t", 2)
        store.append("t", b"keep", partition=1)
    # what a crash in create_topic / delete_topic / add_partitions can leave behind
    (data / "x-0").mkdir()
    (data / "x-0" / "00000000000000000000.log").write_bytes(b"")
    (data / "t-2").mkdir()  # beyond t's partition count
    (data / "~deleted-0123abcd").mkdir()  # a half-finished delete
    (data / "~deleted-0123abcd" / "00000000000000000000.log").write_bytes(b"")
    # a user's directory that merely looks like a partition directory
    (data / "photos-2024").mkdir()
    (data / "photos-2024" / "beach.jpg").write_bytes(b"jpeg")
    # files and directories that are not partition directories
    (data / "notes.txt").write_bytes(b"mine")
    (data / "y-0").write_bytes(b"a file, not a directory")
    (data / "backup").mkdir()
    (data / "backup" / "x-0").mkdir()

    with _open(data) as store:
        assert store.list_topics() == ["t"]
        assert _values(store, "t", 1) == [b"keep"]

    assert sorted(os.listdir(data)) == [
        ".lock",
        ".opening.lock",
        "__topics",
        "backup",
        "notes.txt",
        "photos-2024",
        "store.json",
        "t-0",
        "t-1",
        "y-0",
    ]
    assert (data / "notes.txt").read_bytes() == b"mine"
    assert (data / "backup" / "x-0").is_dir()


def test_store_apply_retention_applies_every_topic(tmp_path: Path) -> None:
    clock = Clock()
    with _open(tmp_path / "data", clock) as store:
        store.create_topic("a", 2, retention_ms=1000, flush="never")
        store.create_topic("b", 1, flush="never")  # unlimited
        for p in range(2):
            store.append("a", b"old", partition=p)
        store.append("b", b"old")
        clock.now += 1001
        assert store.apply_retention() == 2
        for p in range(2):
            assert store.partition("a", p).log_start_offset == 1
        assert store.partition("b", 0).log_start_offset == 0


def test_delete_waits_for_an_append_in_progress_in_another_process(tmp_path: Path) -> None:
    """An append holds its partition's writer lock from its deleted-check to its head
    write; the delete takes that lock before it renames the directory, so no append
    is acknowledged after it checked but with its bytes in the renamed directory."""
    with logstore.open(tmp_path) as store:
        store.create_topic("t", 1)
        writer = store.fs.lock_file(os.path.join(tmp_path, "t-0", WRITER_LOCK_NAME))
        writer.acquire()  # as an append in progress in another process holds it
        deleting = threading.Thread(target=store.delete_topic, args=("t",))
        deleting.start()
        time.sleep(0.2)
        assert os.path.isdir(tmp_path / "t-0")  # not renamed under the append
        writer.release()
        deleting.join(10)
        writer.close()
        assert not deleting.is_alive()
        assert not os.path.exists(tmp_path / "t-0")
