"""One segment: naming, sparse indexing, lookups, reads and recovery
(logstore.storage.segment; kafka.md §1.1, §1.5-1.7).

Index files are decoded here with structs written from the Kafka spec.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.config import TopicConfig
from logstore.records.batch import encode_batch, scan
from logstore.storage.files import FileSystem
from logstore.storage.segment import Segment, parse_segment_name, segment_path
from logstore.types import BatchHeader

SPEC_OFFSET_ENTRY = struct.Struct(">ii")
SPEC_TIME_ENTRY = struct.Struct(">qi")
FS = FileSystem()
T0 = 1_700_000_000_000
SETTINGS = settings(deadline=None, max_examples=40)

Rec = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]


def _rec(ts: int, value: bytes = b"v" * 20, key: bytes | None = None) -> Rec:
    return (ts, key, value, ())


def _new(directory: str | Path, config: TopicConfig, base: int = 0) -> Segment:
    return Segment.create(FS, str(directory), base, config, now_ms=T0)


def _append(seg: Segment, records: list[Rec]) -> BatchHeader:
    """Append one batch holding ``records``; return its header with its file position."""
    data = encode_batch(records, base_offset=seg.next_offset)
    headers = list(scan(data))
    position = seg.append(data, headers)
    return headers[0]._replace(position=position)


def _index_entries(seg: Segment) -> list[tuple[int, int]]:
    with open(seg.index_path, "rb") as f:
        return list(SPEC_OFFSET_ENTRY.iter_unpack(f.read()))


def _time_entries(seg: Segment) -> list[tuple[int, int]]:
    with open(seg.time_index_path, "rb") as f:
        return list(SPEC_TIME_ENTRY.iter_unpack(f.read()))


# ---------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("base", "suffix", "name"),
    [
        (0, ".log", "00000000000000000000.log"),
        (12345, ".index", "00000000000000012345.index"),
        (2**63 - 1, ".timeindex", "09223372036854775807.timeindex"),
    ],
)
def test_segment_path_zero_pads_base_offset_to_20_digits(base: int, suffix: str, name: str) -> None:
    assert segment_path("/d", base, suffix) == os.path.join("/d", name)
    assert parse_segment_name(name) == (base, suffix)


@pytest.mark.parametrize(
    "name",
    [
        "0.log",
        "0000000000000000000.log",  # 19 digits
        "000000000000000000000.log",  # 21 digits
        "0000000000000000000a.log",
        "-0000000000000000001.log",
        "+0000000000000000001.log",
        " 0000000000000000001.log",
        "00000000000000000000.txt",
        "00000000000000000000",
        "00000000000000000000.",
        "00000000000000000000.log.tmp",
        "00000000000000000000.log.deleted",
        "00000000000000000000.index.swap",
        "00000000000000000000.snapshot",
        ".log",
        "checkpoint",
        "",
    ],
)
def test_parse_segment_name_returns_none_for_other_names(name: str) -> None:
    assert parse_segment_name(name) is None


@pytest.mark.parametrize(
    "digit", ["\u00b2", "\uff10", "\u0660"], ids=["superscript-2", "fullwidth-0", "arabic-0"]
)
def test_parse_segment_name_returns_none_when_digits_are_not_ascii(digit: str) -> None:
    assert parse_segment_name(digit * 20 + ".log") is None


# ---------------------------------------------------------------------------- lifecycle


def test_segment_create_makes_three_empty_files(tmp_path: Path) -> None:
    seg = _new(tmp_path, TopicConfig(), base=42)
    assert sorted(os.listdir(tmp_path)) == [
        "00000000000000000042.index",
        "00000000000000000042.log",
        "00000000000000000042.timeindex",
    ]
    assert seg.size == 0
    assert seg.next_offset == 42
    seg.close_files()


def test_segment_opens_no_file_until_used(tmp_path: Path) -> None:
    seg = _new(tmp_path, TopicConfig())
    _append(seg, [_rec(T0)])
    seg.close_files()

    lazy = Segment(FS, str(tmp_path), 0, TopicConfig())
    assert not lazy.is_open
    assert lazy.size == os.path.getsize(seg.log_path)  # a stat, not an open
    assert not lazy.is_open


def test_segment_size_is_unchanged_by_close_files(tmp_path: Path) -> None:
    seg = _new(tmp_path, TopicConfig())
    _append(seg, [_rec(T0)])
    size = seg.size
    assert size == os.path.getsize(seg.log_path) > 0

    seg.close_files()

    assert seg.size == size


# ---------------------------------------------------------------------------- sparse index


def test_segment_append_adds_index_entry_only_when_more_than_interval_bytes_appended(
    tmp_path: Path,
) -> None:
    batch_size = len(encode_batch([_rec(T0), _rec(T0)]))
    # Exactly two batches' worth is not *more* than the interval: the third batch gets no
    # entry, the fourth does (Kafka's bytesSinceLastIndexEntry > indexIntervalBytes).
    seg = _new(tmp_path, TopicConfig(index_interval_bytes=2 * batch_size))
    for k in range(10):
        _append(seg, [_rec(T0 + 2 * k), _rec(T0 + 2 * k + 1)])  # offsets 2k, 2k+1

    # entry = (last offset of the batch, position where that batch starts)
    assert _index_entries(seg) == [
        (7, 3 * batch_size),
        (13, 6 * batch_size),
        (19, 9 * batch_size),
    ]
    # time entry = (max timestamp so far, offset of the batch that holds it)
    assert _time_entries(seg) == [(T0 + 7, 7), (T0 + 13, 13), (T0 + 19, 19)]
    seg.close_files()


def test_segment_append_indexes_every_batch_after_the_first_when_interval_zero(
    tmp_path: Path,
) -> None:
    seg = _new(tmp_path, TopicConfig(index_interval_bytes=0))
    positions = [_append(seg, [_rec(T0 + k)]).position for k in range(4)]
    assert _index_entries(seg) == [(k, positions[k]) for k in (1, 2, 3)]
    seg.close_files()


def test_segment_append_uses_offsets_relative_to_base_in_index_files(tmp_path: Path) -> None:
    seg = _new(tmp_path, TopicConfig(index_interval_bytes=0), base=1_000_000)
    _append(seg, [_rec(T0)])
    second = _append(seg, [_rec(T0 + 1), _rec(T0 + 2)])
    assert _index_entries(seg) == [(2, second.position)]
    assert _time_entries(seg) == [(T0 + 2, 2)]
    seg.close_files()


@st.composite
def _batches(draw: st.DrawFn) -> list[list[Rec]]:
    out = []
    ts = T0
    for _ in range(draw(st.integers(1, 25))):
        size = draw(st.integers(1, 4))
        batch = []
        for _ in range(size):
            ts += draw(st.integers(-50, 100))
            batch.append(_rec(ts, b"x" * draw(st.integers(0, 300))))
        out.append(batch)
    return out


@SETTINGS
@given(batches=_batches(), interval=st.integers(0, 1500))
def test_segment_append_index_entries_match_kafka_rule(
    batches: list[list[Rec]], interval: int
) -> None:
    expected_index: list[tuple[int, int]] = []
    expected_time: list[tuple[int, int]] = []
    since = 0
    position = 0
    offset = 0
    max_ts, offset_of_max = -1, 0
    for batch in batches:
        size = len(encode_batch(batch))
        last = offset + len(batch) - 1
        batch_max = max(r[0] for r in batch)
        if batch_max > max_ts:
            max_ts, offset_of_max = batch_max, last
        if since > interval:
            expected_index.append((last, position))
            if not expected_time or max_ts > expected_time[-1][0]:
                expected_time.append((max_ts, offset_of_max))
            since = 0
        since += size
        position += size
        offset = last + 1

    with tempfile.TemporaryDirectory() as tmp:
        seg = _new(tmp, TopicConfig(index_interval_bytes=interval))
        for batch in batches:
            _append(seg, batch)
        assert _index_entries(seg) == expected_index
        assert _time_entries(seg) == expected_time
        assert seg.next_offset == offset
        assert seg.max_timestamp == max_ts
        seg.close_files()


def test_segment_seal_appends_final_time_index_entry_with_max_timestamp(
    tmp_path: Path,
) -> None:
    seg = _new(tmp_path, TopicConfig())  # 4096-byte interval: no entries while appending
    _append(seg, [_rec(T0 + 5), _rec(T0 + 9), _rec(T0 + 1)])
    _append(seg, [_rec(T0 + 3)])
    assert _time_entries(seg) == []

    seg.seal()

    assert _time_entries(seg) == [(T0 + 9, 2)]  # offset of the batch holding the max
    seg.close_files()


# ---------------------------------------------------------------------------- lookups / reads


def _segment_of_batches(tmp_path: Path, interval: int = 100) -> tuple[Segment, list[BatchHeader]]:
    seg = _new(tmp_path, TopicConfig(index_interval_bytes=interval), base=10)
    headers = [
        _append(seg, [_rec(T0 + 3 * k + j, b"%d-%d" % (k, j) * 10) for j in range(3)])
        for k in range(8)
    ]  # batch k holds offsets 10+3k .. 12+3k
    return seg, headers


def test_segment_find_batch_returns_batch_holding_offset(tmp_path: Path) -> None:
    seg, headers = _segment_of_batches(tmp_path)
    for k, header in enumerate(headers):
        for offset in range(10 + 3 * k, 13 + 3 * k):
            found = seg.find_batch(offset)
            assert found is not None
            assert (found.position, found.base_offset) == (header.position, 10 + 3 * k)
    seg.close_files()


def test_segment_find_batch_returns_first_batch_when_offset_below_base(tmp_path: Path) -> None:
    seg, _ = _segment_of_batches(tmp_path)
    found = seg.find_batch(0)
    assert found is not None and found.position == 0
    seg.close_files()


def test_segment_find_batch_returns_none_when_offset_past_end(tmp_path: Path) -> None:
    seg, _ = _segment_of_batches(tmp_path)
    assert seg.find_batch(seg.next_offset) is None
    assert seg.find_batch(10**15) is None
    seg.close_files()


def _whole_batches(data: bytes) -> list[int]:
    """Base offsets of the batches in ``data``, asserting nothing is left over."""
    headers = list(scan(data))
    assert headers, "expected at least one batch"
    assert headers[-1].position + headers[-1].size == len(data)
    return [h.base_offset for h in headers]


def test_segment_read_from_returns_whole_batches_within_max_bytes(tmp_path: Path) -> None:
    seg, headers = _segment_of_batches(tmp_path)
    size = headers[1].position  # every batch has the same size here
    start = headers[2].position

    data = seg.read_from(start, max_bytes=int(2.5 * size))

    assert _whole_batches(data) == [16, 19]
    assert len(data) == 2 * size
    seg.close_files()


@pytest.mark.parametrize("max_bytes", [0, 1, 61, 62])
def test_segment_read_from_returns_one_whole_batch_when_max_bytes_smaller(
    tmp_path: Path, max_bytes: int
) -> None:
    seg, headers = _segment_of_batches(tmp_path)
    data = seg.read_from(headers[3].position, max_bytes=max_bytes)
    assert _whole_batches(data) == [19]
    seg.close_files()


def test_segment_read_from_returns_rest_of_segment_when_max_bytes_large(tmp_path: Path) -> None:
    seg, headers = _segment_of_batches(tmp_path)
    data = seg.read_from(headers[5].position, max_bytes=1 << 20)
    assert _whole_batches(data) == [25, 28, 31]
    assert seg.read_from(seg.size, max_bytes=1 << 20) == b""
    seg.close_files()


def test_segment_find_offset_by_timestamp_returns_first_record_at_or_after(
    tmp_path: Path,
) -> None:
    seg = _new(tmp_path, TopicConfig(index_interval_bytes=0))
    _append(seg, [_rec(100), _rec(300), _rec(200)])  # offsets 0-2, out of order
    _append(seg, [_rec(250), _rec(400)])  # offsets 3-4
    _append(seg, [_rec(400), _rec(500)])  # offsets 5-6

    assert seg.find_offset_by_timestamp(50, 0) == 0
    assert seg.find_offset_by_timestamp(100, 0) == 0
    assert seg.find_offset_by_timestamp(101, 0) == 1  # 300 at offset 1 comes first
    assert seg.find_offset_by_timestamp(301, 0) == 4
    assert seg.find_offset_by_timestamp(400, 0) == 4
    assert seg.find_offset_by_timestamp(450, 0) == 6
    assert seg.find_offset_by_timestamp(501, 0) is None
    seg.close_files()


def test_segment_find_offset_by_timestamp_skips_records_below_start_offset(
    tmp_path: Path,
) -> None:
    seg = _new(tmp_path, TopicConfig())
    _append(seg, [_rec(100), _rec(300), _rec(200), _rec(300)])
    assert seg.find_offset_by_timestamp(250, 0) == 1
    assert seg.find_offset_by_timestamp(250, 2) == 3
    assert seg.find_offset_by_timestamp(250, 4) is None
    seg.close_files()


# ---------------------------------------------------------------------------- load / recover


def _recover(seg: Segment) -> int:
    """What an open's recovery plan does with a rescanned segment alone: cut at the first
    bad batch; the bytes dropped."""
    scan = seg.scan()
    return 0 if scan.stop is None else seg.cut(scan.end, scan.stop.message)


def test_segment_recover_rebuilds_same_index_as_appends(tmp_path: Path) -> None:
    seg, _ = _segment_of_batches(tmp_path)
    index, time_index = _index_entries(seg), _time_entries(seg)
    assert len(index) > 2
    seg.close_files()

    again = Segment(FS, str(tmp_path), 10, TopicConfig(index_interval_bytes=100))
    assert _recover(again) == 0
    assert _index_entries(again) == index
    # Kafka's recover() also indexes the largest timestamp, like a sealed segment.
    assert _time_entries(again)[: len(time_index)] == time_index
    assert _time_entries(again)[-1] == (T0 + 23, 33 - 10)  # relative to base 10
    assert again.next_offset == 34
    again.close_files()


def test_segment_recover_truncates_torn_tail(tmp_path: Path) -> None:
    seg, _ = _segment_of_batches(tmp_path)
    size = seg.size
    seg.close_files()
    with open(segment_path(str(tmp_path), 10, ".log"), "ab") as f:
        f.write(encode_batch([_rec(T0)], base_offset=34)[:40])

    again = Segment(FS, str(tmp_path), 10, TopicConfig(index_interval_bytes=100))
    assert _recover(again) == 40
    assert again.size == size
    assert os.path.getsize(again.log_path) == size
    assert again.next_offset == 34
    again.close_files()


def test_segment_recover_truncates_at_first_batch_failing_crc(tmp_path: Path) -> None:
    seg, headers = _segment_of_batches(tmp_path)
    size = seg.size
    seg.close_files()
    damaged = headers[5].position + 70  # inside batch 5's records
    with open(segment_path(str(tmp_path), 10, ".log"), "r+b") as f:
        f.seek(damaged)
        byte = f.read(1)
        f.seek(damaged)
        f.write(bytes([byte[0] ^ 0xFF]))

    again = Segment(FS, str(tmp_path), 10, TopicConfig(index_interval_bytes=100))
    assert _recover(again) == size - headers[5].position
    assert again.next_offset == 25
    assert all(position < headers[5].position for _, position in _index_entries(again))
    again.close_files()


def test_segment_load_active_restores_tail_state_after_clean_close(tmp_path: Path) -> None:
    seg = _new(tmp_path, TopicConfig(index_interval_bytes=0))
    _append(seg, [_rec(T0 + 50)])
    _append(seg, [_rec(T0 + 10), _rec(T0 + 90)])
    _append(seg, [_rec(T0 + 70)])
    seg.close_files()

    again = Segment(FS, str(tmp_path), 0, TopicConfig(index_interval_bytes=0))
    again.load_active()
    assert again.next_offset == 4
    assert again.max_timestamp == T0 + 90
    assert again.offset_of_max_timestamp == 2
    # the roll-by-time rule measures from the segment's *first* batch (kafka.md §1.6)
    assert again.first_batch_timestamp == T0 + 50
    again.close_files()


def test_segment_load_sealed_rebuilds_index_when_corrupt(tmp_path: Path) -> None:
    seg, headers = _segment_of_batches(tmp_path)
    seg.seal()
    next_offset = seg.next_offset
    good = _index_entries(seg)
    seg.close_files()
    with open(segment_path(str(tmp_path), 10, ".index"), "ab") as f:
        f.write(b"\x00\x00\x00")  # not a multiple of 8

    again = Segment(FS, str(tmp_path), 10, TopicConfig(index_interval_bytes=100))
    again.next_offset = next_offset
    again.load_sealed()
    assert _index_entries(again) == good
    found = again.find_batch(20)
    assert found is not None and found.position == headers[3].position
    assert again.largest_timestamp() == T0 + 23
    again.close_files()
