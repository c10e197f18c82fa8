"""Committed offsets belong to one incarnation of a topic (Kafka's topic id): deleting a
topic forgets every group's offsets for it, and an offset committed against a deleted topic
never applies to a new topic of the same name; ``describe_group`` shows it as stale
(issue 10, point 4)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import logstore
from logstore.metadata import TOPIC_ID_HEADER
from logstore.storage.files import FileSystem
from logstore.storage.statefile import read_state
from logstore.types import SystemClock, TopicPartition
from logstore_cli.main import cli
from tests.legacy_offsets import make_legacy

TP0 = TopicPartition("t", 0)


FS = FileSystem()  # reads the state files the store writes

def _consume_all(store: logstore.Store, group: str) -> list[int]:
    with store.consumer(["t"], group_id=group, auto_offset_reset="earliest") as consumer:
        return [r.offset for r in consumer.poll(timeout_ms=200)]


def test_topics_get_distinct_kafka_style_ids_kept_in_the_registry(tmp_path: Path) -> None:
    with logstore.open(tmp_path / "s") as store:
        first = store.create_topic("t", 1).topic_id
        store.alter_topic("t", retention_ms=1000)
        assert store.topic("t").topic_id == first
        store.add_partitions("t", 2)
        store.delete_topic("t")
        second = store.create_topic("t", 1).topic_id
    assert first is not None and second is not None and first != second
    assert len(first) == 22 and "=" not in first  # 16 bytes, unpadded base64url
    meta = json.loads(read_state(FS, str(tmp_path / "s" / "__topics" / "t"), "topic"))
    assert meta["id"] == second
    with logstore.open(tmp_path / "s") as again:
        assert again.topic("t").topic_id == second


def test_recreated_topic_is_read_from_the_start_not_from_the_old_offset(
    tmp_path: Path,
) -> None:
    with logstore.open(tmp_path / "s") as store:
        store.create_topic("t", 1)
        store.append_many("t", [(b"old", None, None, 0, None)] * 100)
        assert len(_consume_all(store, "g")) == 100
        assert store.offsets.committed("g", TP0).offset == 100  # type: ignore[union-attr]
        store.delete_topic("t")
        assert store.offsets.committed("g", TP0) is None  # deleting forgot the offsets
        store.create_topic("t", 1)
        store.append_many("t", [(b"new", None, None, 0, None)] * 5)
        assert _consume_all(store, "g") == [0, 1, 2, 3, 4]
        assert store.describe_group("g").partitions[0].committed == 5


def test_offset_committed_by_a_process_holding_the_deleted_topic_is_ignored(
    tmp_path: Path,
) -> None:
    """A second Store stands for another process: its consumer still reads the old
    incarnation and commits after the topic was deleted and created again."""
    with logstore.open(tmp_path / "s") as admin, logstore.open(tmp_path / "s") as other:
        admin.create_topic("t", 1)
        admin.append_many("t", [(b"old", None, None, 0, None)] * 100)
        late = other.consumer(["t"], group_id="g", auto_offset_reset="earliest",
                              enable_auto_commit=False)
        assert len(late.poll(timeout_ms=200)) == 100
        admin.delete_topic("t")
        admin.create_topic("t", 1)
        admin.append_many("t", [(b"new", None, None, 0, None)] * 5)
        late.commit()  # against the deleted incarnation
        late.close()  # leaves the group; commits nothing more (auto-commit is off)
        raw = admin.offsets.committed("g", TP0)
        assert raw is not None and raw.offset == 100
        row = admin.describe_group("g").partitions[0]
        assert (row.committed, row.stale_offset, row.lag) == (None, 100, None)
        code = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "s"), "groups",
                                        "describe", "g"])
        assert "100" in code.stdout and "deleted" in code.stdout, code.stdout
        assert _consume_all(admin, "g") == [0, 1, 2, 3, 4]


def test_topic_ids_survive_compaction_of_the_offsets_log(tmp_path: Path) -> None:
    with logstore.open(tmp_path / "s") as store:
        tid = store.create_topic("t", 1).topic_id
        store.offsets.commit("g", {TP0: (3, "m")})
        store.offsets.commit("g", {TopicPartition("t", 1): (4, "")})
        store.offsets._log.roll()
        assert store.offsets._log.compact(force=True) is not None
    with logstore.open(tmp_path / "s") as store:
        found = store.offsets.committed("g", TP0)
        assert found is not None and (found.offset, found.topic_id) == (3, tid)


def test_topic_ids_survive_the_migration_of_a_legacy_offsets_snapshot(tmp_path: Path) -> None:
    with logstore.open(tmp_path / "s") as store:
        tid = store.create_topic("t", 1).topic_id
        store.offsets.commit("g", {TP0: (3, "m")})
    make_legacy(tmp_path / "s", FileSystem(), SystemClock())  # the snapshot holds the id
    for _ in range(2):  # migrated into the log, then read from the log alone
        with logstore.open(tmp_path / "s") as store:
            found = store.offsets.committed("g", TP0)
            assert found is not None and (found.offset, found.topic_id) == (3, tid)


def test_commit_record_carries_the_topic_id_as_a_header_and_kafka_key_value(
    tmp_path: Path,
) -> None:
    with logstore.open(tmp_path / "s") as store:
        tid = store.create_topic("t", 1).topic_id
        assert tid is not None
        store.offsets.commit("g", {TP0: (3, "")})
        records = store.offsets._log.read_records(0)
    assert [dict(r.headers) for r in records] == [{TOPIC_ID_HEADER: tid.encode()}]
    assert records[0].key == b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x00"  # key v1
    assert records[0].value is not None and records[0].value[:2] == b"\x00\x03"  # value v3


def test_a_new_topic_never_adopts_a_deleted_topics_leftover_directory(
    tmp_path: Path,
) -> None:
    """A crash between a delete's commit point (registry file gone) and the removal of its
    directories, with another process keeping the store open (so no open cleans up): a
    topic created again under the same name starts empty."""
    with logstore.open(tmp_path / "s") as store, logstore.open(tmp_path / "s") as other:
        store.create_topic("t", 2)
        store.append_many("t", [(b"old", None, None, 0, None)] * 10)
        store.topic("t").close("as if the process died here")
        (tmp_path / "s" / "__topics" / "t").unlink()  # the delete's commit point, then a crash
        assert other.list_topics() == []
        other.create_topic("t", 2)
        assert other.partition("t", 0).log_end_offset == 0
        assert other.read("t", 0, 0) == []
