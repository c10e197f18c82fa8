"""The store's maintenance (``logstore/maintenance.py``): the thread ``logstore.open``
starts, one turn's compaction and retention, the rule that one process cleans a
partition at a time, and ``Store.compact``."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore.errors import InvalidConfigError, ReadOnlyStoreError
from logstore.maintenance import Maintenance, maintain_once
from logstore.storage.listing import CLEANER_LOCK_NAME
from logstore.storage.log import PartitionLog
from tests.conftest import FakeClock

T0 = 1_700_000_000_000
COMPACTED = {"cleanup_policy": "compact", "segment_bytes": 300}


def fill(store: logstore.Store, topic: str, writes: int, keys: int) -> None:
    for i in range(writes):
        store.append(topic, f"v{i}".encode(), key=b"k%d" % (i % keys))


def maintenance_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("logstore-maintenance")]


def values(store: logstore.Store, topic: str) -> dict[bytes | None, bytes | None]:
    plog = store.partition(topic, 0)
    out: dict[bytes | None, bytes | None] = {}
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        records = plog.read_records(offset)
        if not records:
            break
        out.update((r.key, r.value) for r in records)
        offset = records[-1].offset + 1
    return out


def test_open_starts_one_thread_per_writable_store_and_close_stops_it(tmp_path: Path):
    before = len(maintenance_threads())
    store = logstore.open(tmp_path / "d")
    assert len(maintenance_threads()) == before + 1
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 2
    assert len(maintenance_threads()) == before
    with logstore.open(tmp_path / "d", maintenance=False):
        assert len(maintenance_threads()) == before
    with logstore.open(tmp_path / "d", read_only=True):
        assert len(maintenance_threads()) == before


def test_the_thread_compacts_what_is_due(tmp_path: Path):
    store = logstore.open(tmp_path / "d", maintenance=False)
    store.create_topic("users", 1, **COMPACTED)
    fill(store, "users", 100, 4)
    expected = values(store, "users")
    size = store.partition("users", 0).size_bytes
    maintenance = Maintenance(store, interval_ms=20).start()
    deadline = time.monotonic() + 10
    while store.partition("users", 0).compaction_state().runs == 0:
        assert time.monotonic() < deadline, "the thread never compacted"
        time.sleep(0.02)
    maintenance.stop()
    assert store.partition("users", 0).size_bytes < size
    assert values(store, "users") == expected
    store.close()


def test_a_turn_compacts_and_applies_retention_by_policy(tmp_path: Path):
    clock = FakeClock(T0)
    store = logstore.open(tmp_path / "d", maintenance=False, clock=clock)
    store.create_topic("users", 1, **COMPACTED)
    store.create_topic("events", 1, segment_bytes=300, retention_ms=1000)
    store.create_topic("plain", 1, segment_bytes=300)
    for topic in ("users", "events", "plain"):
        fill(store, topic, 60, 3)
    clock.advance(5000)
    report = maintain_once(store)
    assert list(report.compacted) == [("users", 0)]
    assert report.segments_deleted > 0 and report.failures == 0
    assert store.partition("plain", 0).log_start_offset == 0
    assert store.partition("events", 0).log_start_offset > 0
    assert store.partition("users", 0).log_start_offset == 0  # compact only: no retention
    assert maintain_once(store).compacted == {}  # nothing due any more
    store.close()


def test_a_partition_another_process_is_cleaning_is_skipped(tmp_path: Path):
    store = logstore.open(tmp_path / "d", maintenance=False)
    store.create_topic("users", 1, **COMPACTED)
    fill(store, "users", 60, 3)
    lock = store.fs.lock_file(os.path.join(str(tmp_path / "d"), "users-0", CLEANER_LOCK_NAME))
    assert lock.acquire(blocking=False)
    assert maintain_once(store).compacted == {}
    lock.close()
    assert list(maintain_once(store).compacted) == [("users", 0)]
    store.close()


def test_a_failing_partition_is_logged_counted_and_the_rest_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    store = logstore.open(tmp_path / "d", maintenance=False)
    store.create_topic("a", 1, **COMPACTED)
    store.create_topic("b", 1, **COMPACTED)
    fill(store, "a", 60, 3)
    fill(store, "b", 60, 3)
    real = PartitionLog.compact

    def failing(self: PartitionLog, *, force: bool = False):  # type: ignore[no-untyped-def]
        if self.directory.endswith("a-0"):
            raise logstore.StorageError("disk on fire", self.directory)
        return real(self, force=force)

    monkeypatch.setattr(PartitionLog, "compact", failing)
    with caplog.at_level(logging.WARNING):
        report = maintain_once(store)
    assert report.failures == 1 and list(report.compacted) == [("b", 0)]
    assert "a-0 failed" in caplog.text and "disk on fire" in caplog.text
    store.close()


def test_store_compact_runs_now_and_refuses_topics_that_are_not_compacted(tmp_path: Path):
    store = logstore.open(tmp_path / "d", maintenance=False)
    store.create_topic("users", 2, **COMPACTED)
    store.create_topic("plain", 1)
    for i in range(40):
        store.append("users", b"v%d" % i, key=b"k%d" % (i % 2), partition=i % 2)
    runs = store.compact("users", roll=True)
    assert set(runs) == {0, 1}
    assert all(r is not None and r.records_out == 1 for r in runs.values())  # one key each
    with pytest.raises(InvalidConfigError, match="cleanup_policy"):
        store.compact("plain")
    store.close()
    with logstore.open(tmp_path / "d", read_only=True) as ro, pytest.raises(ReadOnlyStoreError):
        ro.compact("users")


def test_a_producer_refuses_a_keyless_send_to_a_compacted_topic_at_once(tmp_path: Path):
    with logstore.open(tmp_path / "d", maintenance=False) as store:
        store.create_topic("users", 1, **COMPACTED)
        with store.producer() as producer:
            with pytest.raises(logstore.InvalidRecordError, match="need a key"):
                producer.send("users", b"v")
            producer.send("users", b"v", key=b"k").result(5)  # keyed (compiled path) fine
            producer.send("users", None, key=b"k", headers=[("h", b"1")]).result(5)
        assert store.partition("users", 0).log_end_offset == 2
