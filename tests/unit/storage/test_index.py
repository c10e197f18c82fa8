"""Sparse offset and time indexes (logstore.storage.index; kafka.md §1.5).

The on-disk layout is checked against structs written here from the Kafka spec, not the
module's own ``OFFSET_ENTRY``/``TIME_ENTRY``: 8-byte big-endian ``(relative offset int32,
position int32)`` entries in ``.index`` and 12-byte big-endian ``(timestamp int64,
relative offset int32)`` entries in ``.timeindex``.
"""

from __future__ import annotations

import itertools
import os
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.errors import CorruptIndexError
from logstore.storage.files import FileSystem
from logstore.storage.index import OffsetIndex, TimeIndex

SPEC_OFFSET_ENTRY = struct.Struct(">ii")  # relativeOffset int32, position int32
SPEC_TIME_ENTRY = struct.Struct(">qi")  # timestamp int64, relativeOffset int32
FS = FileSystem()
SETTINGS = settings(deadline=None, max_examples=60)


def _offset_index(path: Path, base: int = 0, max_entries: int = 1000) -> OffsetIndex:
    return OffsetIndex(FS, str(path), base, max_entries)


def _time_index(path: Path, base: int = 0, max_entries: int = 1000) -> TimeIndex:
    return TimeIndex(FS, str(path), base, max_entries)


# ---------------------------------------------------------------------------- on-disk format


def test_offset_index_append_writes_big_endian_8_byte_entries_relative_to_base(
    tmp_path: Path,
) -> None:
    path = tmp_path / "00000000000000000100.index"
    index = _offset_index(path, base=100)
    index.append(105, 0)
    index.append(100 + 0x01020304, 0x0A0B0C0D)
    index.close()

    data = path.read_bytes()
    assert data == (bytes.fromhex("0000000500000000") + bytes.fromhex("010203040a0b0c0d"))
    assert list(SPEC_OFFSET_ENTRY.iter_unpack(data)) == [(5, 0), (0x01020304, 0x0A0B0C0D)]


def test_time_index_append_writes_big_endian_12_byte_entries_relative_to_base(
    tmp_path: Path,
) -> None:
    path = tmp_path / "00000000000000000100.timeindex"
    index = _time_index(path, base=100)
    index.append(1_700_000_000_000, 103)
    index.append(0x0102030405060708, 100 + 0x0A0B0C0D)
    index.close()

    data = path.read_bytes()
    assert len(data) == 24
    assert data[12:] == bytes.fromhex("01020304050607080a0b0c0d")
    assert list(SPEC_TIME_ENTRY.iter_unpack(data)) == [
        (1_700_000_000_000, 3),
        (0x0102030405060708, 0x0A0B0C0D),
    ]


def test_offset_index_entry_size_is_8_and_time_index_entry_size_is_12() -> None:
    assert OffsetIndex.entry_size == 8
    assert TimeIndex.entry_size == 12


# ---------------------------------------------------------------------------- offset index


def test_offset_index_lookup_returns_greatest_entry_at_or_below_target(tmp_path: Path) -> None:
    index = _offset_index(tmp_path / "i.index", base=50)
    for offset, position in [(52, 100), (55, 400), (60, 900)]:
        index.append(offset, position)

    assert index.lookup(52) == (52, 100)
    assert index.lookup(54) == (52, 100)
    assert index.lookup(55) == (55, 400)
    assert index.lookup(59) == (55, 400)
    assert index.lookup(10**12) == (60, 900)
    index.close()


def test_offset_index_lookup_returns_base_and_position_zero_when_target_precedes_entries(
    tmp_path: Path,
) -> None:
    index = _offset_index(tmp_path / "i.index", base=50)
    assert index.lookup(50) == (50, 0)
    index.append(55, 400)
    assert index.lookup(54) == (50, 0)
    assert index.lookup(0) == (50, 0)
    index.close()


def test_offset_index_append_ignores_offset_not_larger_than_last(tmp_path: Path) -> None:
    path = tmp_path / "i.index"
    index = _offset_index(path)
    index.append(5, 100)
    index.append(5, 200)
    index.append(3, 300)
    index.close()
    assert list(SPEC_OFFSET_ENTRY.iter_unpack(path.read_bytes())) == [(5, 100)]


def test_offset_index_is_full_when_max_entries_reached(tmp_path: Path) -> None:
    index = _offset_index(tmp_path / "i.index", max_entries=2)
    index.append(1, 10)
    assert not index.is_full
    index.append(2, 20)
    assert index.is_full
    assert index.last_offset == 2
    index.close()


@st.composite
def _offset_entries(draw: st.DrawFn) -> list[tuple[int, int]]:
    offsets = sorted(draw(st.sets(st.integers(0, 10_000), max_size=40)))
    gaps = draw(st.lists(st.integers(1, 5_000), min_size=len(offsets), max_size=len(offsets)))
    positions = []
    position = draw(st.integers(0, 100))
    for gap in gaps:
        positions.append(position)
        position += gap
    return list(zip(offsets, positions, strict=True))


@SETTINGS
@given(
    base=st.integers(0, 2**40),
    entries=_offset_entries(),
    targets=st.lists(st.integers(-10, 10_010), min_size=1, max_size=30),
)
def test_offset_index_lookup_agrees_with_linear_scan(
    base: int, entries: list[tuple[int, int]], targets: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        index = OffsetIndex(FS, os.path.join(tmp, "i.index"), base, 1000)
        for rel, position in entries:
            index.append(base + rel, position)
        for rel in targets:
            target = base + rel
            expected = (base, 0)
            for e_rel, e_pos in entries:  # linear scan: the last entry <= target
                if base + e_rel <= target:
                    expected = (base + e_rel, e_pos)
            assert index.lookup(target) == expected
        index.close()


def test_offset_index_truncate_to_position_drops_entries_at_or_past_position(
    tmp_path: Path,
) -> None:
    path = tmp_path / "i.index"
    index = _offset_index(path)
    for offset, position in [(1, 100), (2, 200), (3, 300)]:
        index.append(offset, position)

    index.truncate_to_position(200)

    assert list(index.offsets) == [1]
    assert len(index) == 1
    assert path.stat().st_size == 8
    index.append(7, 250)  # appends continue after the cut
    index.close()
    assert list(SPEC_OFFSET_ENTRY.iter_unpack(path.read_bytes())) == [(1, 100), (7, 250)]


def test_offset_index_truncate_to_position_keeps_all_when_position_past_last(
    tmp_path: Path,
) -> None:
    path = tmp_path / "i.index"
    index = _offset_index(path)
    index.append(1, 100)
    index.truncate_to_position(101)
    assert len(index) == 1
    index.close()
    assert path.stat().st_size == 8


def test_offset_index_reset_empties_memory_and_file(tmp_path: Path) -> None:
    path = tmp_path / "i.index"
    index = _offset_index(path)
    index.append(1, 100)
    index.reset()
    assert len(index) == 0
    assert index.last_offset is None
    index.close()
    assert path.stat().st_size == 0


# ---------------------------------------------------------------------------- time index


def test_time_index_append_ignores_timestamp_not_larger_than_last(tmp_path: Path) -> None:
    """Kafka's rule: a time-index entry is only added when the timestamp grows."""
    path = tmp_path / "t.timeindex"
    index = _time_index(path)
    index.append(1000, 1)
    index.append(1000, 2)  # equal: ignored
    index.append(999, 3)  # smaller: ignored
    index.append(1001, 4)
    index.close()
    assert list(SPEC_TIME_ENTRY.iter_unpack(path.read_bytes())) == [(1000, 1), (1001, 4)]


def test_time_index_lookup_returns_offset_of_greatest_entry_at_or_below_timestamp(
    tmp_path: Path,
) -> None:
    index = _time_index(tmp_path / "t.timeindex", base=10)
    for ts, offset in [(100, 12), (200, 15), (300, 20)]:
        index.append(ts, offset)
    assert index.lookup(99) == 10  # nothing <= 99: the base offset
    assert index.lookup(100) == 12
    assert index.lookup(250) == 15
    assert index.lookup(10**15) == 20
    assert index.last_entry == (300, 20)
    index.close()


@SETTINGS
@given(
    base=st.integers(0, 2**40),
    appends=st.lists(st.tuples(st.integers(-5, 10_000), st.integers(0, 1_000)), max_size=40),
    targets=st.lists(st.integers(-10, 10_010), min_size=1, max_size=30),
)
def test_time_index_only_grows_and_lookup_agrees_with_linear_scan(
    base: int, appends: list[tuple[int, int]], targets: list[int]
) -> None:
    # Model of Kafka's rule: keep an entry only if its timestamp is larger than the last
    # kept one (and its offset not smaller).
    kept: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.timeindex")
        index = TimeIndex(FS, path, base, 1000)
        for ts, rel in appends:
            index.append(ts, base + rel)
            if not kept or (ts > kept[-1][0] and rel >= kept[-1][1]):
                kept.append((ts, rel))
        stamps = list(index.timestamps)
        assert all(a < b for a, b in itertools.pairwise(stamps))
        assert list(zip(stamps, index.offsets, strict=True)) == kept
        for target in targets:
            expected = base
            for ts, rel in kept:
                if ts <= target:
                    expected = base + rel
            assert index.lookup(target) == expected
        index.close()
        with open(path, "rb") as f:
            assert list(SPEC_TIME_ENTRY.iter_unpack(f.read())) == kept


def test_time_index_truncate_to_offset_drops_entries_naming_offset_or_beyond(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.timeindex"
    index = _time_index(path, base=100)
    for ts, offset in [(10, 101), (20, 103), (30, 105)]:
        index.append(ts, offset)

    index.truncate_to_offset(103)

    assert index.last_entry == (10, 101)
    index.close()
    assert path.stat().st_size == 12


def test_time_index_reset_empties_memory_and_file(tmp_path: Path) -> None:
    path = tmp_path / "t.timeindex"
    index = _time_index(path)
    index.append(10, 1)
    index.reset()
    assert index.last_entry is None
    assert len(index) == 0
    index.close()
    assert path.stat().st_size == 0


def test_time_index_is_full_when_max_entries_reached(tmp_path: Path) -> None:
    index = _time_index(tmp_path / "t.timeindex", max_entries=1)
    assert not index.is_full
    index.append(10, 1)
    assert index.is_full
    index.close()


# ---------------------------------------------------------------------------- load


def test_offset_index_load_round_trips_appended_entries(tmp_path: Path) -> None:
    path = tmp_path / "i.index"
    index = _offset_index(path, base=7)
    for offset, position in [(8, 0), (12, 300), (20, 700)]:
        index.append(offset, position)
    index.close()

    loaded = _offset_index(path, base=7)
    loaded.load(800)
    assert list(loaded.offsets) == [1, 5, 13]
    assert list(loaded.positions) == [0, 300, 700]
    assert loaded.lookup(15) == (12, 300)
    loaded.close()


def test_time_index_load_round_trips_appended_entries(tmp_path: Path) -> None:
    path = tmp_path / "t.timeindex"
    index = _time_index(path, base=7)
    for ts, offset in [(100, 8), (200, 12)]:
        index.append(ts, offset)
    index.close()

    loaded = _time_index(path, base=7)
    loaded.load(13)
    assert loaded.last_entry == (200, 12)
    assert loaded.lookup(150) == 8
    loaded.close()


def _load_offset_index(path: Path, data: bytes, log_size: int, base: int = 0) -> None:
    path.write_bytes(data)
    index = _offset_index(path, base=base)
    try:
        index.load(log_size)
    finally:
        index.close()


def _load_time_index(path: Path, data: bytes, next_offset: int, base: int = 0) -> None:
    path.write_bytes(data)
    index = _time_index(path, base=base)
    try:
        index.load(next_offset)
    finally:
        index.close()


def _entries(struct_: struct.Struct, *entries: tuple[int, int]) -> bytes:
    return b"".join(struct_.pack(*e) for e in entries)


@pytest.mark.parametrize("extra", [1, 4, 7])
def test_offset_index_load_raises_corrupt_index_when_size_not_multiple_of_8(
    tmp_path: Path, extra: int
) -> None:
    path = tmp_path / "i.index"
    data = _entries(SPEC_OFFSET_ENTRY, (1, 0)) + b"\x00" * extra
    with pytest.raises(CorruptIndexError) as info:
        _load_offset_index(path, data, log_size=1000)
    assert info.value.path == str(path)
    assert str(len(data)) in str(info.value)


@pytest.mark.parametrize(
    "entries",
    [
        [(2, 0), (2, 100)],  # offsets repeat
        [(3, 0), (2, 100)],  # offsets go back
        [(1, 100), (2, 100)],  # positions repeat
        [(1, 100), (2, 50)],  # positions go back
    ],
    ids=["offset-repeats", "offset-decreases", "position-repeats", "position-decreases"],
)
def test_offset_index_load_raises_corrupt_index_when_entries_not_increasing(
    tmp_path: Path, entries: list[tuple[int, int]]
) -> None:
    with pytest.raises(CorruptIndexError):
        _load_offset_index(tmp_path / "i.index", _entries(SPEC_OFFSET_ENTRY, *entries), 1000)


def test_offset_index_load_raises_corrupt_index_when_position_at_or_past_log_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "i.index"
    data = _entries(SPEC_OFFSET_ENTRY, (1, 0), (2, 500))
    _load_offset_index(path, data, log_size=501)  # last byte of the log: fine
    with pytest.raises(CorruptIndexError, match="500"):
        _load_offset_index(path, data, log_size=500)


def test_offset_index_load_raises_corrupt_index_when_first_entry_negative(
    tmp_path: Path,
) -> None:
    with pytest.raises(CorruptIndexError):
        _load_offset_index(tmp_path / "i.index", _entries(SPEC_OFFSET_ENTRY, (-1, 0)), 1000)
    with pytest.raises(CorruptIndexError):
        _load_offset_index(tmp_path / "i.index", _entries(SPEC_OFFSET_ENTRY, (1, -8)), 1000)


def test_offset_index_stays_unusable_until_reset_when_file_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "i.index"
    path.write_bytes(b"\x00" * 9)
    index = _offset_index(path)
    with pytest.raises(CorruptIndexError):
        index.load(1000)
    with pytest.raises(CorruptIndexError):  # stays unusable until rebuilt
        index.lookup(5)
    index.reset()
    assert len(index) == 0
    assert index.lookup(5) == (0, 0)
    index.close()


@pytest.mark.parametrize("extra", [1, 8, 11])
def test_time_index_load_raises_corrupt_index_when_size_not_multiple_of_12(
    tmp_path: Path, extra: int
) -> None:
    path = tmp_path / "t.timeindex"
    data = _entries(SPEC_TIME_ENTRY, (100, 1)) + b"\x00" * extra
    with pytest.raises(CorruptIndexError) as info:
        _load_time_index(path, data, next_offset=10)
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    "entries",
    [
        [(100, 1), (100, 2)],  # timestamps repeat
        [(100, 1), (50, 2)],  # timestamps go back
        [(100, 3), (200, 2)],  # offsets go back
    ],
    ids=["timestamp-repeats", "timestamp-decreases", "offset-decreases"],
)
def test_time_index_load_raises_corrupt_index_when_entries_not_increasing(
    tmp_path: Path, entries: list[tuple[int, int]]
) -> None:
    with pytest.raises(CorruptIndexError):
        _load_time_index(tmp_path / "t.timeindex", _entries(SPEC_TIME_ENTRY, *entries), 10)


def test_time_index_load_raises_corrupt_index_when_offset_at_or_past_next_offset(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.timeindex"
    data = _entries(SPEC_TIME_ENTRY, (100, 1), (200, 4))
    _load_time_index(path, data, next_offset=105, base=100)  # names 104 < 105: fine
    with pytest.raises(CorruptIndexError, match="104"):
        _load_time_index(path, data, next_offset=104, base=100)


@pytest.mark.parametrize(
    "base",
    [100, 0],
)
def test_time_index_load_raises_corrupt_index_when_segment_empty_but_index_has_entry(
    tmp_path: Path, base: int
) -> None:
    data = _entries(SPEC_TIME_ENTRY, (100, 0))  # names the base offset itself
    with pytest.raises(CorruptIndexError):
        _load_time_index(tmp_path / "t.timeindex", data, next_offset=base, base=base)


def test_time_index_load_accepts_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "t.timeindex"
    _load_time_index(path, b"", next_offset=0)
    _load_offset_index(tmp_path / "i.index", b"", log_size=0)
