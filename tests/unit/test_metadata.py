"""Committed group offsets (logstore.metadata): Kafka's ``__consumer_offsets`` record schema,
commits and tombstones, limits, the compaction that bounds the log, stores written before
it (a snapshot, migrated into the log), and sharing between processes (kafka.md §4.1,
§4.4). The bound itself, over a million commits: ``test_offsets_compaction.py``."""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore import metadata
from logstore.config import DEFAULT_DELETE_RETENTION_MS
from logstore.errors import CorruptionError, InvalidRecordError, StoreClosedError
from logstore.metadata import (
    MAX_METADATA_BYTES,
    OFFSETS_TOPIC,
    SNAPSHOT_NAME,
    TOPIC_ID_HEADER,
    CommittedOffset,
    OffsetStore,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from logstore.records import scan
from logstore.records.offsets_schema import OffsetKey
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.storage.readonly import ReadOnlyFileSystem
from logstore.types import Record, TopicPartition
from tests.conftest import FakeClock
from tests.legacy_offsets import (
    append_legacy_records,
    make_legacy,
    offsets_dir,
    snapshot_path,
    write_snapshot,
)

TP = TopicPartition


def _offsets_dir(store: logstore.Store) -> str:
    return os.path.join(store.path, f"{OFFSETS_TOPIC}-0")


def _offsets_log_records(store: logstore.Store) -> tuple[int, int, list[Record]]:
    """(log start, log end, records) of the offsets log, read through a second handle on
    the partition, as another process would."""
    return _offsets_log_records_at(store.path)


def _offsets_log_records_at(path: str) -> tuple[int, int, list[Record]]:
    plog = PartitionLog(offsets_dir(path))
    try:
        out: list[Record] = []
        offset = plog.log_start_offset
        while offset < plog.log_end_offset:
            batch = plog.read_records(offset)
            out += batch
            offset = batch[-1].offset + 1
        return plog.log_start_offset, plog.log_end_offset, out
    finally:
        plog.close()


def _segment_bases(store: logstore.Store) -> list[int]:
    return sorted(
        int(name[: -len(".log")])
        for name in os.listdir(_offsets_dir(store))
        if name.endswith(".log")
    )


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return os.path.join(tmp_path, "store")


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Offsets-log segments of 400 bytes (a few commits each), so it rolls constantly."""
    monkeypatch.setattr(metadata, "OFFSETS_SEGMENT_BYTES", 400)
    yield 400


FS = FileSystem()
LEGACY_START, LEGACY_END = 5, 7
"""The offsets log of ``_legacy_store``: 5 records snapshotted (and deleted), 2 past."""


# ---------------------------------------------------------------------- record schema


def test_encode_key_is_kafka_offset_commit_key_v1() -> None:
    assert encode_key("grp", "topic", 7) == (
        b"\x00\x01"  # int16 key version 1
        b"\x00\x03grp"  # int16-length group
        b"\x00\x05topic"  # int16-length topic
        b"\x00\x00\x00\x07"  # int32 partition
    )


def test_encode_value_is_kafka_offset_commit_value_v3() -> None:
    assert encode_value(0x0102030405, "md", 1_700_000_000_000) == (
        b"\x00\x03"  # int16 value version 3
        b"\x00\x00\x00\x01\x02\x03\x04\x05"  # int64 offset
        b"\xff\xff\xff\xff"  # int32 leader epoch -1
        b"\x00\x02md"  # int16-length metadata
        + struct.pack(">q", 1_700_000_000_000)  # int64 commit timestamp
    )


def test_encode_key_counts_utf8_bytes_when_names_are_not_ascii() -> None:
    assert encode_key("gé", "t", 0) == b"\x00\x01\x00\x03g\xc3\xa9\x00\x01t\x00\x00\x00\x00"


def test_decode_key_and_value_invert_encode() -> None:
    assert decode_key(encode_key("g", "t", 2_147_483_647)) == ("g", "t", 2_147_483_647)
    assert decode_value(encode_value(5, "é" * 3, 9)) == CommittedOffset(5, "é" * 3, 9)


def test_decode_key_accepts_kafka_key_version_0() -> None:
    assert decode_key(b"\x00\x00\x00\x01g\x00\x01t\x00\x00\x00\x01") == ("g", "t", 1)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x02\x00\x01g",  # version 2: a group metadata key, not an offset key
        b"\x00\x01\x00\x09g\x00\x01t\x00\x00\x00\x01",  # group length overruns
        b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x01\x00",  # a trailing byte
    ],
)
def test_decode_key_rejects_other_records(data: bytes) -> None:
    with pytest.raises((ValueError, struct.error)):
        decode_key(data)


def test_decode_value_rejects_other_versions() -> None:
    data = b"\x00\x01" + encode_value(1, "", 0)[2:]
    with pytest.raises(ValueError, match="version 1"):
        decode_value(data)


def test_commit_writes_kafka_schema_records_to_the_offsets_log(
    store: logstore.Store, clock: FakeClock
) -> None:
    store.offsets.commit("g", {TP("t", 3): (42, "meta")})
    store.offsets.delete("g", [TP("t", 3)])
    _, end, records = _offsets_log_records(store)
    assert end == 2
    assert [(r.key, r.value, r.timestamp) for r in records] == [
        (encode_key("g", "t", 3), encode_value(42, "meta", clock.now), clock.now),
        (encode_key("g", "t", 3), None, clock.now),  # a tombstone
    ]


# ---------------------------------------------------------------------- commits


def test_commit_then_committed_returns_offset_metadata_and_clock_time(
    store: logstore.Store, clock: FakeClock
) -> None:
    store.offsets.commit("g", {TP("t", 0): (10, "hello"), TP("t", 1): (0, "")})
    assert store.offsets.committed("g", TP("t", 0)) == CommittedOffset(10, "hello", clock.now)
    assert store.offsets.committed("g", TP("t", 1)) == CommittedOffset(0, "", clock.now)


def test_committed_returns_none_when_nothing_committed(store: logstore.Store) -> None:
    store.offsets.commit("g", {TP("t", 0): (1, "")})
    assert store.offsets.committed("g", TP("t", 1)) is None
    assert store.offsets.committed("other", TP("t", 0)) is None


def test_commit_replaces_previous_offset_when_committed_again(
    store: logstore.Store, clock: FakeClock
) -> None:
    store.offsets.commit("g", {TP("t", 0): (10, "a")})
    clock.advance(5)
    store.offsets.commit("g", {TP("t", 0): (4, "b")})  # going backwards is allowed
    assert store.offsets.committed("g", TP("t", 0)) == CommittedOffset(4, "b", clock.now)


def test_group_offsets_returns_only_that_groups_partitions(store: logstore.Store) -> None:
    store.offsets.commit("g1", {TP("t", 0): (1, ""), TP("u", 2): (2, "")})
    store.offsets.commit("g2", {TP("t", 0): (3, "")})
    assert {tp: c.offset for tp, c in store.offsets.group_offsets("g1").items()} == {
        TP("t", 0): 1,
        TP("u", 2): 2,
    }
    assert store.offsets.group_offsets("nobody") == {}


def test_groups_lists_groups_with_live_offsets_sorted(store: logstore.Store) -> None:
    assert store.offsets.groups() == []
    store.offsets.commit("zeta", {TP("t", 0): (1, "")})
    store.offsets.commit("alpha", {TP("t", 0): (1, "")})
    store.offsets.commit("ünïcode group", {TP("t", 0): (1, "")})
    assert store.offsets.groups() == ["alpha", "zeta", "ünïcode group"]


def test_delete_forgets_offsets_with_tombstones(store: logstore.Store) -> None:
    store.offsets.commit("g", {TP("t", 0): (1, ""), TP("t", 1): (2, "")})
    store.offsets.commit("h", {TP("t", 0): (3, "")})
    store.offsets.delete("g", [TP("t", 0)])
    assert store.offsets.committed("g", TP("t", 0)) is None
    assert store.offsets.committed("g", TP("t", 1)) is not None
    assert store.offsets.committed("h", TP("t", 0)) is not None
    store.offsets.delete("g", [TP("t", 1)])
    assert store.offsets.groups() == ["h"]


def test_delete_of_unknown_offsets_is_harmless(store: logstore.Store) -> None:
    store.offsets.delete("g", [TP("t", 9)])
    store.offsets.delete("g", [])
    assert store.offsets.groups() == []


def test_commit_and_delete_survive_reopen(store_path: str, clock: FakeClock) -> None:
    with logstore.open(store_path, clock=clock) as s:
        s.offsets.commit("g", {TP("t", 0): (7, "x"), TP("t", 1): (8, "y")})
        s.offsets.delete("g", [TP("t", 1)])
    with logstore.open(store_path, clock=clock) as s:
        assert s.offsets.group_offsets("g") == {TP("t", 0): CommittedOffset(7, "x", clock.now)}


def test_commit_accepts_metadata_of_exactly_max_bytes(store: logstore.Store) -> None:
    text = "x" * MAX_METADATA_BYTES
    store.offsets.commit("g", {TP("t", 0): (1, text)})
    committed = store.offsets.committed("g", TP("t", 0))
    assert committed is not None
    assert committed.metadata == text


@pytest.mark.parametrize(
    "text",
    ["x" * (MAX_METADATA_BYTES + 1), "é" * (MAX_METADATA_BYTES // 2 + 1)],
    ids=["ascii", "multibyte-under-4096-characters"],
)
def test_commit_rejects_metadata_over_4096_bytes(store: logstore.Store, text: str) -> None:
    with pytest.raises(InvalidRecordError, match="4096"):
        store.offsets.commit("g", {TP("t", 0): (1, text)})
    assert store.offsets.committed("g", TP("t", 0)) is None


def test_commit_rejects_negative_offset(store: logstore.Store) -> None:
    with pytest.raises(InvalidRecordError, match="-1"):
        store.offsets.commit("g", {TP("t", 0): (-1, "")})


def test_commit_writes_nothing_when_one_offset_is_invalid(store: logstore.Store) -> None:
    with pytest.raises(InvalidRecordError):
        store.offsets.commit("g", {TP("t", 0): (5, ""), TP("t", 1): (-3, "")})
    assert store.offsets.group_offsets("g") == {}
    assert _offsets_log_records(store)[1] == 0


def test_offsets_skip_records_that_are_not_offset_commits(store: logstore.Store) -> None:
    store.offsets.commit("g", {TP("t", 0): (1, "")})
    other = PartitionLog(_offsets_dir(store))
    try:
        other.append_records(
            [
                (0, b"\x00\x02\x00\x01g", b"group metadata", ()),  # key version 2
                (0, None, b"no key", ()),
                (0, encode_key("g", "t", 1), b"\x00\x09garbage", ()),  # unknown value
            ]
        )
    finally:
        other.close()
    store.offsets.commit("g", {TP("t", 2): (3, "")})
    assert sorted(store.offsets.group_offsets("g")) == [TP("t", 0), TP("t", 2)]


def test_offsets_raise_store_closed_when_store_closed(store: logstore.Store) -> None:
    store.close()
    with pytest.raises(StoreClosedError):
        _ = store.offsets


# ---------------------------------------------------------------------- compaction


def _records_below(store: logstore.Store, end: int) -> list[Record]:
    return [r for r in _offsets_log_records(store)[2] if r.offset < end]


def test_offsets_log_is_compacted_after_a_roll_and_writes_no_snapshot(
    store: logstore.Store, small_segments: int
) -> None:
    config = store.offsets._log.config
    assert (config.cleanup_policy, config.flush, config.delete_retention_ms) == (
        "compact", "always", DEFAULT_DELETE_RETENTION_MS
    )
    assert config.segment_bytes == small_segments
    for i in range(60):
        store.offsets.commit("g", {TP("t", i % 3): (i, "")})
    state = store.offsets._log.compaction_state()
    assert state.runs > 0 and state.bytes_reclaimed > 0
    active = store.offsets._log.active_segment.base_offset
    assert state.first_dirty_offset == active  # the cleaner ran at the last roll
    cleaned = [decode_key(r.key) for r in _records_below(store, active) if r.key]
    assert sorted(cleaned) == sorted(set(cleaned))  # at most one record per key
    start, end, _ = _offsets_log_records(store)
    assert (start, end) == (0, 60)  # offsets kept: the log start never moves
    assert not os.path.exists(os.path.join(_offsets_dir(store), SNAPSHOT_NAME))
    assert {tp.partition: c.offset for tp, c in store.offsets.group_offsets("g").items()} == {
        0: 57, 1: 58, 2: 59
    }


def test_the_cleaner_is_asked_once_per_roll(
    store: logstore.Store, small_segments: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = PartitionLog.compact

    def spy(self: PartitionLog, *, force: bool = False) -> object:
        calls.append(self.active_segment.base_offset)
        return real(self, force=force)

    monkeypatch.setattr(PartitionLog, "compact", spy)
    bases = set()
    for i in range(40):
        store.offsets.commit("g", {TP("t", 0): (i, ""), TP("t", 1): (i, "")})
        bases.add(store.offsets._log.active_segment.base_offset)
    assert len(bases) > 3
    assert sorted(calls) == sorted(bases - {0})  # one check per new active segment


def test_reopen_after_compaction_reads_the_same_offsets_and_deletes_stay_deleted(
    store_path: str, clock: FakeClock, small_segments: int
) -> None:
    """Tombstones are dropped once a day old: the offsets they deleted stay deleted, as
    the cleaner drops the older commits first."""
    with logstore.open(store_path, clock=clock) as s:
        for i in range(40):
            s.offsets.commit(f"g{i % 3}", {TP("t", i % 4): (i, f"m{i}")})
            clock.advance(1)
        s.offsets.delete("g0", [TP("t", 0)])
        clock.advance(DEFAULT_DELETE_RETENTION_MS + 1)
        for i in range(40):
            s.offsets.commit("g1", {TP("t", 9): (i, "")})
        assert s.offsets._log.compact(force=True) is not None
        state = s.offsets._log.compaction_state()
        assert state.runs > 1
        before = {g: s.offsets.group_offsets(g) for g in s.offsets.groups()}
        assert TP("t", 0) not in before["g0"]
    tombstones = [r for r in _offsets_log_records_at(store_path)[2] if r.value is None]
    assert tombstones == []  # a day old: dropped
    with logstore.open(store_path, clock=clock) as s:
        assert {g: s.offsets.group_offsets(g) for g in s.offsets.groups()} == before
        s.offsets.commit("g1", {TP("t", 9): (1, "")})
        assert s.offsets.committed("g1", TP("t", 9)) is not None


def test_close_writes_no_snapshot_and_reopen_replays_the_log(
    store_path: str, clock: FakeClock
) -> None:
    with logstore.open(store_path, clock=clock) as s:
        s.offsets.commit("g", {TP("t", 0): (1, "")})
        s.offsets.commit("g", {TP("t", 0): (2, "")})
    assert not os.path.exists(os.path.join(store_path, f"{OFFSETS_TOPIC}-0", SNAPSHOT_NAME))
    with logstore.open(store_path, clock=clock) as s:
        start, end, _ = _offsets_log_records(s)
        assert (start, end) == (0, 2)
        committed = s.offsets.committed("g", TP("t", 0))
        assert committed is not None
        assert committed.offset == 2


def test_a_second_cleaner_run_with_nothing_new_changes_nothing(
    store: logstore.Store, small_segments: int
) -> None:
    for i in range(30):
        store.offsets.commit("g", {TP("t", i % 2): (i, "")})
    store.offsets._log.roll()
    assert store.offsets._log.compact(force=True) is not None
    files = {
        n: Path(_offsets_dir(store), n).read_bytes()
        for n in os.listdir(_offsets_dir(store)) if n.endswith(".log")
    }
    before = store.offsets.group_offsets("g")
    assert store.offsets._log.compact() is None  # not due: nothing dirty
    again = store.offsets._log.compact(force=True)
    assert again is None or again.bytes_out == again.bytes_in
    assert {
        n: Path(_offsets_dir(store), n).read_bytes()
        for n in os.listdir(_offsets_dir(store)) if n.endswith(".log")
    } == files
    assert store.offsets.group_offsets("g") == before


# ---------------------------------------------------------------------- two processes


def test_two_stores_on_one_root_see_each_others_commits(store_path: str, clock: FakeClock) -> None:
    with logstore.open(store_path, clock=clock) as a, logstore.open(store_path, clock=clock) as b:
        a.offsets.commit("g", {TP("t", 0): (1, "from a")})
        assert b.offsets.committed("g", TP("t", 0)) == CommittedOffset(1, "from a", clock.now)
        b.offsets.commit("g", {TP("t", 1): (2, "from b")})
        b.offsets.delete("g", [TP("t", 0)])
        assert a.offsets.group_offsets("g") == {TP("t", 1): CommittedOffset(2, "from b", clock.now)}


def test_store_catches_up_when_another_store_compacted_past_it(
    store_path: str, clock: FakeClock, small_segments: int
) -> None:
    """b applied offset 0 only; a then commits, deletes, rolls and compacts away records
    b never read (commits replaced, tombstones a day old): b reads what a reads."""
    with logstore.open(store_path, clock=clock) as a, logstore.open(store_path, clock=clock) as b:
        a.offsets.commit("g", {TP("t", 0): (1, "")})
        assert b.offsets.committed("g", TP("t", 0)) is not None  # b applied offset 0
        for i in range(30):
            a.offsets.commit("g", {TP("t", i % 5 + 1): (i, "")})
        a.offsets.delete("g", [TP("t", 0), TP("t", 1)])
        clock.advance(DEFAULT_DELETE_RETENTION_MS + 1)
        for i in range(30):
            a.offsets.commit("g", {TP("t", 9): (i, "")})
        a.offsets._log.roll()
        assert a.offsets._log.compact(force=True) is not None
        assert [r for r in _offsets_log_records(a)[2] if r.value is None] == []
        assert len(_offsets_log_records(a)[2]) < 20  # most records b never read are gone
        assert b.offsets.group_offsets("g") == a.offsets.group_offsets("g")
        assert sorted(tp.partition for tp in b.offsets.group_offsets("g")) == [2, 3, 4, 5, 9]
        b.offsets.commit("g", {TP("t", 0): (50, "")})
        committed = a.offsets.committed("g", TP("t", 0))
        assert committed is not None
        assert committed.offset == 50


# ---------------------------------------------------------------------- stores written
# before compaction (tests/legacy_offsets.py builds them)


def _legacy_store(store_path: str, clock: FakeClock) -> dict[OffsetKey, CommittedOffset]:
    """A legacy store: commits, deletes and a topic id, folded into a snapshot (the log
    below it deleted), then commits and a tombstone past it."""
    with logstore.open(store_path, clock=clock) as s:
        tid = s.create_topic("t", 3).topic_id
        s.offsets.commit("g", {TP("t", 0): (5, "five"), TP("t", 1): (6, "")})
        s.offsets.commit("h", {TP("t", 2): (7, "")})
        s.offsets.commit("gone", {TP("t", 0): (1, "")})
        s.offsets.delete("gone", [TP("t", 0)])
        clock.advance(10)
    snapshotted = make_legacy(store_path, FS, clock)
    assert snapshotted[("g", "t", 0)] == CommittedOffset(5, "five", clock.now - 10, tid)
    append_legacy_records(store_path, FS, clock, [
        (("g", "t", 1), CommittedOffset(60, "tail", clock.now, tid)),
        (("h", "t", 2), None),
    ])
    assert _offsets_log_records_at(store_path)[:2] == (LEGACY_START, LEGACY_END)
    expected = dict(snapshotted)
    expected[("g", "t", 1)] = CommittedOffset(60, "tail", clock.now, tid)
    del expected[("h", "t", 2)]
    return expected


def _read_all(s: logstore.Store) -> dict[OffsetKey, CommittedOffset]:
    return {
        (g, tp.topic, tp.partition): c
        for g in s.offsets.groups()
        for tp, c in s.offsets.group_offsets(g).items()
    }


def test_a_legacy_store_is_migrated_on_its_first_open_and_its_snapshot_deleted(
    store_path: str, clock: FakeClock
) -> None:
    expected = _legacy_store(store_path, clock)
    snapshot = Path(snapshot_path(store_path))
    assert snapshot.exists()
    start, end = LEGACY_START, LEGACY_END
    clock.advance(5)
    with logstore.open(store_path, clock=clock) as s:
        assert _read_all(s) == expected
        assert not snapshot.exists()
        log_start, log_end, records = _offsets_log_records(s)
        assert (log_start, log_end) == (start, end + len(expected))
        migrated = records[end - start :]
        assert [decode_key(r.key) for r in migrated if r.key] == sorted(expected)
        for r in migrated:
            assert r.key is not None and r.value is not None and r.timestamp == clock.now
            c = expected[decode_key(r.key)]
            assert decode_value(r.value) == c._replace(topic_id=None)
            assert dict(r.headers) == {TOPIC_ID_HEADER: (c.topic_id or "").encode()}
    with logstore.open(store_path, clock=clock) as s:  # the log alone holds them all
        assert _read_all(s) == expected
        s.offsets.commit("g", {TP("t", 2): (9, "")})
    assert not snapshot.exists()


def test_a_migrated_store_deletes_stay_deleted_after_its_tombstones_go(
    store_path: str, clock: FakeClock, small_segments: int
) -> None:
    """The reason for the migration's order: the tombstone past the snapshot (``h``'s)
    goes once a day old; the snapshot is gone by then, so nothing brings ``h`` back."""
    expected = _legacy_store(store_path, clock)
    with logstore.open(store_path, clock=clock) as s:
        clock.advance(DEFAULT_DELETE_RETENTION_MS + 1)
        for i in range(40):
            s.offsets.commit("g", {TP("t", 0): (i, "five")})
        s.offsets._log.roll()
        assert s.offsets._log.compact(force=True) is not None
        expected[("g", "t", 0)] = CommittedOffset(39, "five", clock.now, expected[
            ("g", "t", 0)].topic_id)
        assert [r for r in _offsets_log_records(s)[2] if r.value is None] == []
    with logstore.open(store_path, clock=clock) as s:
        assert _read_all(s) == expected
        assert s.offsets.group_offsets("h") == {}


def test_a_migration_interrupted_before_the_unlink_runs_again(
    store_path: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the append and the unlink leaves both: the next open migrates
    again (its records repeat what the log says) and reads the same offsets."""
    expected = _legacy_store(store_path, clock)
    real = FileSystem.unlink

    def crash(self: FileSystem, path: str, *, missing_ok: bool = False) -> None:
        if path.endswith(SNAPSHOT_NAME):
            raise KeyboardInterrupt("killed")  # nothing after this runs
        real(self, path, missing_ok=missing_ok)

    monkeypatch.setattr(FileSystem, "unlink", crash)
    with logstore.open(store_path, clock=clock) as s, pytest.raises(KeyboardInterrupt):
        _ = s.offsets
    monkeypatch.setattr(FileSystem, "unlink", real)
    assert Path(snapshot_path(store_path)).exists()
    end_after_first = PartitionLog(offsets_dir(store_path), fs=FS)
    first_end = end_after_first.log_end_offset
    end_after_first.close()
    assert first_end == LEGACY_END + len(expected)
    with logstore.open(store_path, clock=clock) as s:
        assert _read_all(s) == expected
        assert _offsets_log_records(s)[1] == first_end + len(expected)  # appended again
    assert not Path(snapshot_path(store_path)).exists()
    with logstore.open(store_path, clock=clock) as s:
        assert _read_all(s) == expected


def test_a_migration_of_many_offsets_appends_batches_under_max_message_bytes(
    store_path: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metadata, "MIGRATION_BATCH_BYTES", 4096)
    with logstore.open(store_path, clock=clock) as s:
        s.offsets.commit("g", {TP("t", p): (p, "x" * 20) for p in range(500)})
    expected = make_legacy(store_path, FS, clock)
    with logstore.open(store_path, clock=clock) as s:
        assert _read_all(s) == expected
        plog = s.offsets._log
        batches = 0
        offset = plog.log_start_offset
        while offset < plog.log_end_offset:
            data = plog.read(offset, 1).records
            header = next(scan(data))
            assert header.size <= 4096 + 200
            batches += 1
            offset = header.last_offset + 1
        assert batches > 10


def test_a_legacy_store_opened_read_only_reads_its_snapshot_and_stays_as_it_was(
    store_path: str, clock: FakeClock
) -> None:
    expected = _legacy_store(store_path, clock)
    root = Path(store_path)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    offsets = OffsetStore(store_path, fs=ReadOnlyFileSystem(FS, store_path), clock=clock)
    try:
        assert {
            (g, tp.topic, tp.partition): c
            for g in offsets.groups() for tp, c in offsets.group_offsets(g).items()
        } == expected
    finally:
        offsets.close()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_another_process_migrating_first_leaves_this_one_nothing_to_do(
    store_path: str, clock: FakeClock
) -> None:
    """This open read the snapshot, then waited for the snapshot lock while another
    process migrated (here: by hand, holding the lock) and committed: it finds no snapshot
    and reads the log on, the other process's records included."""
    expected = _legacy_store(store_path, clock)
    lock = FS.lock_file(os.path.join(offsets_dir(store_path), ".snapshot.lock"))
    lock.acquire()
    opened: list[OffsetStore] = []
    thread = threading.Thread(
        target=lambda: opened.append(OffsetStore(store_path, fs=FS, clock=clock))
    )
    try:
        thread.start()
        time.sleep(0.3)  # let it load the snapshot and block on the lock
        append_legacy_records(store_path, FS, clock, list(expected.items()))
        later = CommittedOffset(99, "after", clock.now, None)
        append_legacy_records(store_path, FS, clock, [(("g", "t", 0), later)])
        os.unlink(snapshot_path(store_path))
    finally:
        lock.release()
        thread.join(10)
        lock.close()
    [offsets] = opened
    try:
        assert {
            (g, tp.topic, tp.partition): c
            for g in offsets.groups() for tp, c in offsets.group_offsets(g).items()
        } == {**expected, ("g", "t", 0): later}
        # the hand-made migration and the commit after it; no second migration
        assert offsets._log.log_end_offset == LEGACY_END + len(expected) + 1
    finally:
        offsets.close()


def test_a_legacy_snapshot_deleted_before_the_migration_goes_unnoticed(
    store_path: str, clock: FakeClock
) -> None:
    """The documented cost: a missing snapshot with a log starting past 0 is what a
    migrated store looks like, so only the records past the lost snapshot are read."""
    _legacy_store(store_path, clock)
    os.unlink(snapshot_path(store_path))
    with logstore.open(store_path, clock=clock) as s:
        assert set(_read_all(s)) == {("g", "t", 1)}


# ---------------------------------------------------------------------- damage


@pytest.mark.parametrize(
    "damage",
    [
        b"{not json",
        b'{"version": 1, "next_offset": 3, "offs',  # cut short
        b"[]",
        b'{"version": 1, "offsets": []}',  # no next_offset
        b'{"version": 1, "next_offset": 1, "offsets": [["g", "t", 0]]}',
        b'{"version": 1, "next_offset": "x", "offsets": []}',
        b"\xff\xfe\x00",
    ],
)
def test_damaged_legacy_snapshot_raises_corruption_error_and_is_not_migrated(
    store_path: str, clock: FakeClock, damage: bytes
) -> None:
    _legacy_store(store_path, clock)
    snapshot = snapshot_path(store_path)
    Path(snapshot).write_bytes(damage)
    end = _offsets_log_records_at(store_path)[1]
    with logstore.open(store_path, clock=clock) as s:
        with pytest.raises(CorruptionError, match="snapshot") as info:
            _ = s.offsets
        assert info.value.path == snapshot
    assert Path(snapshot).read_bytes() == damage  # kept, for the user to restore
    assert _offsets_log_records_at(store_path)[1] == end  # nothing appended


def test_a_legacy_snapshot_past_the_log_end_raises_corruption_error(
    store_path: str, clock: FakeClock
) -> None:
    expected = _legacy_store(store_path, clock)
    write_snapshot(FS, store_path, 100, expected)  # covers offsets the log never had
    with logstore.open(store_path, clock=clock) as s, pytest.raises(
        CorruptionError, match="no offsets snapshot covers"
    ):
        _ = s.offsets
    assert Path(snapshot_path(store_path)).exists()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_damaged_snapshot_leaks_no_file_descriptors(store_path: str, clock: FakeClock) -> None:
    _legacy_store(store_path, clock)
    Path(snapshot_path(store_path)).write_bytes(b"{not json")
    before = _open_fds()
    with logstore.open(store_path, clock=clock) as s:
        for _ in range(3):
            with pytest.raises(CorruptionError):
                _ = s.offsets
    assert _open_fds() == before
