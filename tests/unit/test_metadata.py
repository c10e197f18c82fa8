"""Committed group offsets (logstore.metadata): Kafka's ``__consumer_offsets`` record schema,
commits and tombstones, limits, snapshots that bound the log, and sharing between processes
(kafka.md §4.1, §4.4)."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore import metadata
from logstore.errors import CorruptionError, InvalidRecordError, StoreClosedError
from logstore.metadata import (
    MAX_METADATA_BYTES,
    OFFSETS_TOPIC,
    SNAPSHOT_KIND,
    SNAPSHOT_NAME,
    CommittedOffset,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.storage.statefile import read_state
from logstore.types import Record, TopicPartition
from tests.conftest import FakeClock

TP = TopicPartition


def _offsets_dir(store: logstore.Store) -> str:
    return os.path.join(store.path, f"{OFFSETS_TOPIC}-0")


def _offsets_log_records(store: logstore.Store) -> tuple[int, int, list[Record]]:
    """(log start, log end, records) of the offsets log, read through a second handle on
    the partition, as another process would."""
    plog = PartitionLog(_offsets_dir(store))
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
def small_snapshots(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(metadata, "SNAPSHOT_EVERY", 5)
    yield 5


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


# ---------------------------------------------------------------------- snapshots


def test_snapshot_written_and_log_start_moved_after_snapshot_every_records(
    store: logstore.Store, small_snapshots: int
) -> None:
    snapshot = os.path.join(_offsets_dir(store), SNAPSHOT_NAME)
    for i in range(small_snapshots - 1):
        store.offsets.commit("g", {TP("t", i % 2): (i, "")})
    assert not os.path.exists(snapshot)
    store.offsets.commit("g", {TP("t", 0): (100, "last")})
    assert os.path.exists(snapshot)
    start, end, records = _offsets_log_records(store)
    assert start == end == small_snapshots
    assert records == []
    assert 0 not in _segment_bases(store)  # the segment holding offsets 0..4 is deleted
    data = json.loads(read_state(FileSystem(), snapshot, SNAPSHOT_KIND))
    assert data["next_offset"] == small_snapshots
    assert sorted((g, t, p, o, m) for g, t, p, o, m, *_ in data["offsets"]) == [
        ("g", "t", 0, 100, "last"),
        ("g", "t", 1, 3, ""),
    ]


def test_snapshot_counts_records_not_commit_calls(
    store: logstore.Store, small_snapshots: int
) -> None:
    store.offsets.commit("g", {TP("t", p): (p, "") for p in range(small_snapshots)})
    assert _offsets_log_records(store)[0] == small_snapshots


def test_reopen_after_snapshot_reads_same_offsets(
    store_path: str, clock: FakeClock, small_snapshots: int
) -> None:
    with logstore.open(store_path, clock=clock) as s:
        for i in range(2 * small_snapshots + 2):  # two snapshots and a tail of 2
            s.offsets.commit(f"g{i % 3}", {TP("t", i % 4): (i, f"m{i}")})
            clock.advance(1)
        s.offsets.delete("g0", [TP("t", 0)])
        before = {g: s.offsets.group_offsets(g) for g in s.offsets.groups()}
        assert _offsets_log_records(s)[0] > 0
    with logstore.open(store_path, clock=clock) as s:
        assert {g: s.offsets.group_offsets(g) for g in s.offsets.groups()} == before
        s.offsets.commit("g1", {TP("t", 9): (1, "")})
        assert s.offsets.committed("g1", TP("t", 9)) is not None


def test_close_snapshots_so_reopen_has_no_tail(store_path: str, clock: FakeClock) -> None:
    with logstore.open(store_path, clock=clock) as s:
        s.offsets.commit("g", {TP("t", 0): (1, "")})
        s.offsets.commit("g", {TP("t", 0): (2, "")})
    with logstore.open(store_path, clock=clock) as s:
        start, end, _ = _offsets_log_records(s)
        assert start == end == 2
        committed = s.offsets.committed("g", TP("t", 0))
        assert committed is not None
        assert committed.offset == 2


def test_snapshot_is_a_no_op_when_nothing_new(store: logstore.Store) -> None:
    store.offsets.snapshot()  # nothing committed yet
    store.offsets.commit("g", {TP("t", 0): (1, "")})
    store.offsets.snapshot()
    path = os.path.join(_offsets_dir(store), SNAPSHOT_NAME)
    first = Path(path).read_bytes()
    store.offsets.snapshot()
    assert Path(path).read_bytes() == first
    assert _offsets_log_records(store)[0] == 1


# ---------------------------------------------------------------------- two processes


def test_two_stores_on_one_root_see_each_others_commits(store_path: str, clock: FakeClock) -> None:
    with logstore.open(store_path, clock=clock) as a, logstore.open(store_path, clock=clock) as b:
        a.offsets.commit("g", {TP("t", 0): (1, "from a")})
        assert b.offsets.committed("g", TP("t", 0)) == CommittedOffset(1, "from a", clock.now)
        b.offsets.commit("g", {TP("t", 1): (2, "from b")})
        b.offsets.delete("g", [TP("t", 0)])
        assert a.offsets.group_offsets("g") == {TP("t", 1): CommittedOffset(2, "from b", clock.now)}


def test_store_catches_up_when_another_store_snapshotted_past_it(
    store_path: str, clock: FakeClock, small_snapshots: int
) -> None:
    with logstore.open(store_path, clock=clock) as a, logstore.open(store_path, clock=clock) as b:
        a.offsets.commit("g", {TP("t", 0): (1, "")})
        assert b.offsets.committed("g", TP("t", 0)) is not None  # b applied offset 0
        for i in range(small_snapshots):  # a snapshots; the log b had not read is gone
            a.offsets.commit("g", {TP("t", i + 1): (i, "")})
        assert _offsets_log_records(a)[0] > 1
        assert b.offsets.group_offsets("g") == a.offsets.group_offsets("g")
        assert len(b.offsets.group_offsets("g")) == small_snapshots + 1
        b.offsets.commit("g", {TP("t", 0): (50, "")})
        b.offsets.snapshot()
        committed = a.offsets.committed("g", TP("t", 0))
        assert committed is not None
        assert committed.offset == 50


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
def test_damaged_snapshot_raises_corruption_error(
    store_path: str, clock: FakeClock, damage: bytes
) -> None:
    with logstore.open(store_path, clock=clock) as s:
        s.offsets.commit("g", {TP("t", 0): (1, "")})
    snapshot = os.path.join(store_path, f"{OFFSETS_TOPIC}-0", SNAPSHOT_NAME)
    assert os.path.exists(snapshot)
    Path(snapshot).write_bytes(damage)
    with logstore.open(store_path, clock=clock) as s:
        with pytest.raises(CorruptionError, match="snapshot") as info:
            _ = s.offsets
        assert info.value.path == snapshot


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_damaged_snapshot_leaks_no_file_descriptors(store_path: str, clock: FakeClock) -> None:
    with logstore.open(store_path, clock=clock) as s:
        s.offsets.commit("g", {TP("t", 0): (1, "")})
    Path(store_path, f"{OFFSETS_TOPIC}-0", SNAPSHOT_NAME).write_bytes(b"{not json")
    before = _open_fds()
    with logstore.open(store_path, clock=clock) as s:
        for _ in range(3):
            with pytest.raises(CorruptionError):
                _ = s.offsets
    assert _open_fds() == before
