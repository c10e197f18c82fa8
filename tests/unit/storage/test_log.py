"""Partition logs: offsets, reads, rolls, retention, recovery, flushing and checkpoints
(logstore.storage.log; kafka.md §1.5-1.7, §2, §3).

Time comes from a fake clock and from record timestamps; I/O is observed and broken through
``FileSystem`` subclasses that override its underscored primitives.
"""

from __future__ import annotations

import errno
import os
import struct
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.config import TopicConfig
from logstore.errors import (
    CorruptRecordError,
    InvalidRecordError,
    LogFailedError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
    StoreClosedError,
)
from logstore.records.batch import encode_batch, scan
from logstore.records.decode import decode_batches
from logstore.storage.checkpoint import CHECKPOINT_NAME, Checkpoint, read_checkpoint
from logstore.storage.files import Buffer, FileHandle, FileSystem
from logstore.storage.log import PartitionLog
from logstore.storage.segment import Segment, segment_path

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record._crc32c import crc as kafka_python_crc32c

T0 = 1_700_000_000_000
SPEC_BASE_OFFSET = struct.Struct(">q")
SPEC_BATCH_LENGTH = struct.Struct(">i")
SPEC_CRC = struct.Struct(">I")
SPEC_RECORDS_COUNT = struct.Struct(">i")

Rec = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]


def _rec(ts: int = T0, value: bytes = b"v" * 20, key: bytes | None = None) -> Rec:
    return (ts, key, value, ())


S = len(encode_batch([_rec()]))
"""Bytes of a one-record batch made by ``_rec`` (the same for every timestamp)."""


class Clock:
    def __init__(self, now_ms: int = T0) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class RecordingFS(FileSystem):
    """Records opens, reads, writes, fsyncs and renames, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.preads: list[tuple[str, int, int]] = []

    def _open(self, path: str, flags: int) -> int:
        self.events.append(("open", path))
        return super()._open(path, flags)

    def _pread(self, handle: FileHandle, size: int, position: int) -> bytes:
        data = super()._pread(handle, size, position)
        self.preads.append((handle.path, position, len(data)))
        return data

    def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
        self.events.append(("write", handle.path))
        return super()._pwritev(handle, parts, position)

    def _fsync(self, handle: FileHandle) -> None:
        self.events.append(("fsync", handle.path))
        super()._fsync(handle)

    def _rename(self, src: str, dst: str) -> None:
        self.events.append(("rename", dst))
        super()._rename(src, dst)

    def _fsync_dir(self, path: str) -> None:
        self.events.append(("fsync_dir", path))
        super()._fsync_dir(path)

    def count(self, kind: str, suffix: str) -> int:
        return sum(1 for k, p in self.events if k == kind and p.endswith(suffix))

    def opened(self) -> set[str]:
        return {p for k, p in self.events if k == "open"}


class FailingFsyncFS(RecordingFS):
    """fsync of ``.log`` files fails with EIO while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def _fsync(self, handle: FileHandle) -> None:
        if self.failing and handle.path.endswith(".log"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super()._fsync(handle)


def _config(**changes: object) -> TopicConfig:
    return TopicConfig(flush="never").replace(**changes)


def _log(
    directory: Path, clock: Clock | None = None, fs: FileSystem | None = None, **changes: object
) -> PartitionLog:
    return PartitionLog(
        str(directory), _config(**changes), fs=fs or FileSystem(), clock=clock or Clock()
    )


def _offsets(data: bytes) -> list[int]:
    return [r.offset for r in decode_batches(data)]


def _batch_bases(data: bytes) -> list[int]:
    headers = list(scan(data))
    assert not headers or headers[-1].position + headers[-1].size == len(data)
    return [h.base_offset for h in headers]


def _fill(log: PartitionLog, timestamps: list[int], value: bytes = b"v" * 20) -> None:
    for ts in timestamps:
        log.append_records([_rec(ts, value)])


def _files(directory: Path, suffix: str = ".log") -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(suffix))


# ---------------------------------------------------------------------------- append


def test_partition_log_new_log_is_empty(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (0, 0, 0)
    assert log.read(0).records == b""
    assert _files(tmp_path / "p") == ["00000000000000000000.log"]
    log.close()


def test_partition_log_append_records_assigns_contiguous_offsets(tmp_path: Path) -> None:
    clock = Clock()
    log = _log(tmp_path / "p", clock)

    first = log.append_records([_rec(T0, b"a"), _rec(T0, b"b"), _rec(T0, b"c")])
    clock.advance(5)
    second = log.append_records([_rec(T0, b"d"), _rec(T0, b"e")])

    assert (first.base_offset, first.last_offset, first.records_count) == (0, 2, 3)
    assert (second.base_offset, second.last_offset, second.records_count) == (3, 4, 2)
    assert second.log_append_time == T0 + 5
    assert log.log_end_offset == log.high_watermark == 5
    records = log.read_records(0)
    assert [(r.offset, r.value) for r in records] == list(enumerate([b"a", b"b", b"c", b"d", b"e"]))
    log.close()


def test_partition_log_append_batches_rewrites_base_offset_in_place_and_crc_stays_valid(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p")
    log.append_records([_rec()])  # offset 0
    batches = [
        encode_batch([_rec(T0 + 1, b"a"), _rec(T0 + 2, b"b")], base_offset=777),
        encode_batch([_rec(T0 + 3, b"c")], base_offset=0),
        encode_batch([_rec(T0 + 4, b"d"), _rec(T0 + 5, b"e"), _rec(T0 + 6)], base_offset=12345),
    ]

    result = log.append_batches(b"".join(batches))

    assert (result.base_offset, result.last_offset, result.records_count) == (1, 6, 6)
    assert log.log_end_offset == 7
    log.close()
    data = (tmp_path / "p" / "00000000000000000000.log").read_bytes()
    position = S  # after the first append
    for original, expected_base in zip(batches, [1, 3, 4], strict=True):
        size = SPEC_BATCH_LENGTH.unpack_from(data, position + 8)[0] + 12
        stored = data[position : position + size]
        assert size == len(original)
        assert SPEC_BASE_OFFSET.unpack_from(stored)[0] == expected_base
        assert stored[8:] == original[8:]  # nothing but baseOffset changed
        assert SPEC_CRC.unpack_from(stored, 17)[0] == kafka_python_crc32c(stored[21:])
        position += size
    assert position == len(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        encode_batch([_rec()])[:-1],
        encode_batch([_rec()]) + b"\x00" * 5,
        encode_batch([_rec()]) + encode_batch([_rec()])[:70],
    ],
    ids=["empty", "truncated", "trailing-bytes", "trailing-partial-batch"],
)
def test_partition_log_append_batches_raises_invalid_record_when_not_whole_batches(
    tmp_path: Path, data: bytes
) -> None:
    log = _log(tmp_path / "p")
    log.append_records([_rec()])
    with pytest.raises(InvalidRecordError):
        log.append_batches(data)
    assert log.log_end_offset == 1
    assert log.size_bytes == S
    log.close()


def test_partition_log_append_batches_raises_corrupt_record_when_crc_wrong(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p")
    data = bytearray(encode_batch([_rec()]))
    data[-1] ^= 0x01
    with pytest.raises(CorruptRecordError):
        log.append_batches(bytes(data))
    assert log.log_end_offset == 0
    assert log.size_bytes == 0
    log.close()


def test_partition_log_append_batches_trusted_checks_headers_not_the_crc(
    tmp_path: Path,
) -> None:
    """validate=False (batches this process encoded): no CRC pass over the bytes, but a
    wrong magic is still refused."""
    fs = RecordingFS()
    log = _log(tmp_path / "p", fs=fs)
    good = encode_batch([_rec()])
    log.append_batches(good, validate=False)
    bad_magic = bytearray(good)
    bad_magic[16] = 1
    with pytest.raises(CorruptRecordError, match="magic"):
        log.append_batches(bytes(bad_magic), validate=False)
    assert log.log_end_offset == 1
    log.close()


def test_partition_log_append_batches_raises_invalid_record_when_count_disagrees_with_delta(
    tmp_path: Path,
) -> None:
    data = bytearray(encode_batch([_rec(), _rec()]))
    SPEC_RECORDS_COUNT.pack_into(data, 57, 5)
    SPEC_CRC.pack_into(data, 17, kafka_python_crc32c(bytes(data[21:])))  # a valid CRC
    log = _log(tmp_path / "p")
    with pytest.raises(InvalidRecordError, match="5 records"):
        log.append_batches(bytes(data))
    assert log.log_end_offset == 0
    log.close()


@pytest.mark.parametrize(
    "record",
    [(T0, None, "text", ()), (T0, 42, b"v", ()), (T0, None, b"v", (("k", "text"),))],
    ids=["str-value", "int-key", "str-header-value"],
)
def test_partition_log_append_records_raises_invalid_record_when_types_wrong(
    tmp_path: Path, record: tuple[object, ...]
) -> None:
    log = _log(tmp_path / "p")
    with pytest.raises(InvalidRecordError):
        log.append_records([record])  # type: ignore[list-item]
    with pytest.raises(InvalidRecordError):
        log.append_records([])
    assert log.log_end_offset == 0
    assert log.size_bytes == 0
    log.close()


# ---------------------------------------------------------------------------- max_message_bytes


def test_partition_log_append_accepts_batch_of_exactly_max_message_bytes(tmp_path: Path) -> None:
    limit = len(encode_batch([_rec(value=b"x" * 100)]))
    assert len(encode_batch([_rec(value=b"x" * 101)])) == limit + 1
    log = _log(tmp_path / "p", max_message_bytes=limit)

    log.append_records([_rec(value=b"x" * 100)])
    log.append_batches(encode_batch([_rec(value=b"y" * 100)]))

    assert log.log_end_offset == 2
    log.close()


def test_partition_log_append_raises_record_too_large_when_one_byte_over(tmp_path: Path) -> None:
    limit = len(encode_batch([_rec(value=b"x" * 100)]))
    log = _log(tmp_path / "p", max_message_bytes=limit)

    with pytest.raises(RecordTooLargeError) as info:
        log.append_records([_rec(value=b"x" * 101)])
    assert (info.value.size, info.value.limit) == (limit + 1, limit)
    assert str(limit + 1) in str(info.value) and str(limit) in str(info.value)
    with pytest.raises(RecordTooLargeError):
        log.append_batches(encode_batch([_rec(value=b"x" * 101)]))

    assert log.log_end_offset == 0
    assert log.size_bytes == 0
    log.close()


# ---------------------------------------------------------------------------- read


def _three_record_batches(log: PartitionLog, count: int) -> None:
    for k in range(count):
        log.append_records([_rec(T0 + k, b"%d" % (3 * k + j)) for j in range(3)])


def test_partition_log_read_returns_whole_batches_from_batch_holding_offset(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p")
    _three_record_batches(log, 4)  # batches at offsets 0, 3, 6, 9

    for offset, first_base in [(0, 0), (3, 3), (4, 3), (5, 3), (11, 9)]:
        result = log.read(offset)
        bases = _batch_bases(result.records)
        assert bases[0] == first_base
        assert bases == list(range(first_base, 12, 3))
        assert (result.high_watermark, result.log_start_offset) == (12, 0)
    log.close()


@pytest.mark.parametrize("max_bytes", [0, 1, 100])
def test_partition_log_read_returns_one_whole_batch_when_max_bytes_smaller(
    tmp_path: Path, max_bytes: int
) -> None:
    log = _log(tmp_path / "p")
    _three_record_batches(log, 4)
    data = log.read(4, max_bytes=max_bytes).records
    assert _batch_bases(data) == [3]
    assert _offsets(data) == [3, 4, 5]
    log.close()


def test_partition_log_read_with_partial_tail_fills_max_bytes_as_kafka_does(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p")
    _three_record_batches(log, 4)
    whole = log.read(0).records
    batch = len(whole) // 4
    for max_bytes in (batch + 1, batch + batch // 2, 3 * batch - 1):
        data = log.read(0, max_bytes=max_bytes, partial_tail=True).records
        assert len(data) == max_bytes  # filled: whole batches, then the start of the next
        assert data == whole[:max_bytes]
        # (scan stops at the cut batch, as a Kafka client's reader does)
        assert [h.base_offset for h in scan(data)] == list(range(0, 3 * (max_bytes // batch), 3))
    # a first batch larger than max_bytes still comes whole
    assert log.read(0, max_bytes=10, partial_tail=True).records == whole[:batch]
    assert log.read(0, max_bytes=1 << 20, partial_tail=True).records == whole
    log.close()


def test_partition_log_read_returns_no_bytes_at_log_end_offset(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    _three_record_batches(log, 2)
    assert log.read(6).records == b""
    log.roll()  # and with an empty active segment after a roll
    assert log.read(6).records == b""
    assert log.read_records(6) == []
    log.close()


@pytest.mark.parametrize("offset", [-1, 7, 10**12])
def test_partition_log_read_raises_offset_out_of_range_when_outside_log(
    tmp_path: Path, offset: int
) -> None:
    log = _log(tmp_path / "p")
    _three_record_batches(log, 2)
    with pytest.raises(OffsetOutOfRangeError) as info:
        log.read(offset)
    assert (info.value.offset, info.value.log_start_offset, info.value.log_end_offset) == (
        offset,
        0,
        6,
    )
    with pytest.raises(OffsetOutOfRangeError):
        log.read_records(offset)
    log.close()


def test_partition_log_read_walks_every_offset_once_across_segments(tmp_path: Path) -> None:
    log = _log(tmp_path / "p", segment_bytes=3 * S)
    _fill(log, [T0 + i for i in range(20)])
    assert len(log.segments) == 7

    seen: list[int] = []
    offset = 0
    while offset < log.log_end_offset:
        data = log.read(offset, max_bytes=2 * S).records
        assert data, f"no progress at offset {offset}"
        seen += [o for o in _offsets(data) if o >= offset]
        offset = seen[-1] + 1
    assert seen == list(range(20))
    log.close()


# ---------------------------------------------------------------------------- roll


def test_partition_log_rolls_when_next_batch_would_exceed_segment_bytes(tmp_path: Path) -> None:
    log = _log(tmp_path / "p", segment_bytes=2 * S + S // 2)
    _fill(log, [T0] * 7)

    assert [s.base_offset for s in log.segments] == [0, 2, 4, 6]
    assert all(s.size <= 2 * S + S // 2 for s in log.segments)
    assert _files(tmp_path / "p") == [
        "00000000000000000000.log",
        "00000000000000000002.log",
        "00000000000000000004.log",
        "00000000000000000006.log",
    ]
    assert log.log_end_offset == 7
    log.close()


def test_partition_log_does_not_roll_when_segment_exactly_fills_segment_bytes(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_bytes=2 * S)
    _fill(log, [T0] * 2)
    assert len(log.segments) == 1
    assert log.active_segment.size == 2 * S
    _fill(log, [T0])
    assert [s.base_offset for s in log.segments] == [0, 2]
    log.close()


def test_partition_log_rolls_when_record_timestamps_span_segment_ms(tmp_path: Path) -> None:
    clock = Clock()
    log = _log(tmp_path / "p", clock, segment_ms=1000)
    _fill(log, [T0, T0 + 999])
    clock.advance(50_000)  # wall-clock time does not count when records carry timestamps
    _fill(log, [T0 + 500])
    assert len(log.segments) == 1

    _fill(log, [T0 + 1000])  # 1000 ms after the segment's first batch

    assert [s.base_offset for s in log.segments] == [0, 3]
    _fill(log, [T0 + 1999])
    assert len(log.segments) == 2
    log.close()


def test_partition_log_rolls_by_clock_when_records_have_no_timestamp(tmp_path: Path) -> None:
    clock = Clock()
    log = _log(tmp_path / "p", clock, segment_ms=1000)
    _fill(log, [-1])
    clock.advance(999)
    _fill(log, [-1])
    assert len(log.segments) == 1

    clock.advance(1)
    _fill(log, [-1])

    assert [s.base_offset for s in log.segments] == [0, 2]
    log.close()


def test_partition_log_rolls_by_clock_after_reopen_when_records_have_no_timestamp(
    tmp_path: Path,
) -> None:
    clock = Clock()
    log = _log(tmp_path / "p", clock, segment_ms=1000)
    _fill(log, [-1])
    log.close()

    again = _log(tmp_path / "p", clock, segment_ms=1000)
    for _ in range(3):
        clock.advance(10_000)  # Kafka measures from the segment's (re)load at the latest
        _fill(again, [-1])

    assert len(again.segments) > 1
    again.close()


def test_partition_log_rolls_when_index_full(tmp_path: Path) -> None:
    # 24 bytes: 3 offset entries, 2 time entries. With index_interval_bytes=0 every batch
    # after a segment's first gets an entry, so a segment fills after 3 batches.
    log = _log(tmp_path / "p", segment_index_bytes=24, index_interval_bytes=0)
    _fill(log, [T0 + i for i in range(10)])

    assert [s.base_offset for s in log.segments] == [0, 3, 6, 9]
    log.close()
    for name in _files(tmp_path / "p", ".index") + _files(tmp_path / "p", ".timeindex"):
        assert (tmp_path / "p" / name).stat().st_size <= 24, name


def test_partition_log_index_stays_within_segment_index_bytes_when_many_batches_appended_at_once(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_index_bytes=24, index_interval_bytes=0)
    log.append_batches(b"".join(encode_batch([_rec(T0 + i)]) for i in range(10)))
    log.close()
    for name in _files(tmp_path / "p", ".index") + _files(tmp_path / "p", ".timeindex"):
        assert (tmp_path / "p" / name).stat().st_size <= 24, name


def test_partition_log_roll_is_noop_when_active_segment_empty(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    log.roll()
    assert len(log.segments) == 1
    _fill(log, [T0])
    log.roll()
    log.roll()
    assert [s.base_offset for s in log.segments] == [0, 1]
    log.close()


def test_partition_log_roll_fsyncs_sealed_segment_and_indexes_its_max_timestamp(
    tmp_path: Path,
) -> None:
    fs = RecordingFS()
    log = _log(tmp_path / "p", fs=fs, flush="interval")
    _fill(log, [T0 + 5, T0 + 9, T0 + 1])
    fs.events.clear()

    log.roll()

    first = str(tmp_path / "p" / "00000000000000000000")
    assert ("fsync", first + ".log") in fs.events
    assert ("fsync", first + ".timeindex") in fs.events
    assert log.recovery_point == 3
    log.close()
    data = (tmp_path / "p" / "00000000000000000000.timeindex").read_bytes()
    assert struct.unpack(">qi", data[-12:]) == (T0 + 9, 1)


def test_partition_log_roll_syncs_only_the_directory_when_flush_never(tmp_path: Path) -> None:
    fs = RecordingFS()
    log = _log(tmp_path / "p", fs=fs, flush="never")
    _fill(log, [T0 + 5, T0 + 9, T0 + 1])
    fs.events.clear()

    log.roll()
    _fill(log, [T0 + 10])

    first = str(tmp_path / "p" / "00000000000000000000")
    assert [e for e in fs.events if e[0] in ("fsync", "fsync_dir")] == [
        ("fsync_dir", str(tmp_path / "p"))
    ]
    assert log.recovery_point == 0
    log.flush()
    assert ("fsync", first + ".log") in fs.events
    assert log.recovery_point == 4
    log.close()


# ---------------------------------------------------------------------------- retention


def _segments_with_timestamps(
    tmp_path: Path, clock: Clock, groups: list[list[int]], **changes: object
) -> PartitionLog:
    """A log whose segments hold one-record batches with these timestamps, one group each."""
    log = _log(tmp_path / "p", clock, **changes)
    for group in groups:
        _fill(log, group)
        log.roll()
    return log


def test_partition_log_apply_retention_deletes_segments_past_retention_ms(
    tmp_path: Path,
) -> None:
    clock = Clock(T0 + 10_000)
    log = _segments_with_timestamps(
        tmp_path, clock, [[T0, T0 + 1000], [T0 + 5000, T0 + 6000], [T0 + 9000]],
        retention_ms=4000,
    )  # fmt: skip
    _fill(log, [T0 + 9500])  # active segment

    assert log.apply_retention() == 1  # 10_000 - 1000 > 4000; 10_000 - 6000 is not

    assert log.log_start_offset == 2
    assert [s.base_offset for s in log.segments] == [2, 4, 5]
    assert "00000000000000000000.log" not in _files(tmp_path / "p")
    assert not any(p.name.startswith("00000000000000000000") for p in (tmp_path / "p").iterdir())
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1)
    assert _offsets(log.read(2).records)[0] == 2
    log.close()


def test_partition_log_apply_retention_keeps_segment_exactly_retention_ms_old(
    tmp_path: Path,
) -> None:
    clock = Clock(T0 + 4000)
    log = _segments_with_timestamps(tmp_path, clock, [[T0], [T0 + 3000]], retention_ms=4000)

    assert log.apply_retention() == 0  # now - largest == retention_ms: not past it
    clock.advance(1)
    assert log.apply_retention() == 1
    assert log.log_start_offset == 1
    log.close()


def test_partition_log_apply_retention_stops_at_first_unexpired_segment(tmp_path: Path) -> None:
    clock = Clock(T0 + 100_000)
    log = _segments_with_timestamps(tmp_path, clock, [[T0 + 99_000], [T0], [T0]], retention_ms=4000)
    assert log.apply_retention() == 0
    assert log.log_start_offset == 0
    assert len(log.segments) == 4
    log.close()


def test_partition_log_apply_retention_never_deletes_unexpired_data(tmp_path: Path) -> None:
    clock = Clock(T0)
    log = _segments_with_timestamps(
        tmp_path, clock, [[T0 - 3000], [T0 - 2000], [T0 - 1000]], retention_ms=5000
    )
    _fill(log, [T0])
    for _ in range(3):
        assert log.apply_retention() == 0
        clock.advance(1000)
    assert log.log_start_offset == 0
    assert _offsets(log.read(0, max_bytes=1 << 20).records) == [0]
    assert len(log.read_records(0)) == 1 and log.log_end_offset == 4
    log.close()


def test_partition_log_apply_retention_rolls_when_active_segment_expired(tmp_path: Path) -> None:
    clock = Clock(T0)
    log = _log(tmp_path / "p", clock, retention_ms=1000)
    _fill(log, [T0, T0, T0])
    clock.advance(1001)

    assert log.apply_retention() == 1

    assert log.log_start_offset == log.log_end_offset == 3
    assert [s.base_offset for s in log.segments] == [3]
    assert _files(tmp_path / "p") == ["00000000000000000003.log"]
    assert log.read(3).records == b""
    assert log.append_records([_rec(clock.now)]).base_offset == 3
    log.close()


def test_partition_log_apply_retention_deletes_oldest_segments_beyond_retention_bytes(
    tmp_path: Path,
) -> None:
    clock = Clock()
    log = _segments_with_timestamps(tmp_path, clock, [[T0, T0]] * 4, retention_bytes=4 * S)
    _fill(log, [T0])  # total 9 S: drop 2 S (7 S >= 4 S), 2 S (5 S >= 4 S), then 3 S < 4 S
    assert log.size_bytes == 9 * S

    assert log.apply_retention() == 2

    assert log.log_start_offset == 4
    assert log.size_bytes == 5 * S
    assert log.apply_retention() == 0
    log.close()


def test_partition_log_apply_retention_deletes_segment_when_rest_is_exactly_retention_bytes(
    tmp_path: Path,
) -> None:
    clock = Clock()
    log = _segments_with_timestamps(tmp_path, clock, [[T0, T0]] * 3, retention_bytes=5 * S)
    _fill(log, [T0])  # total 7 S: 7 S - 2 S = 5 S is still >= 5 S (Kafka: diff - size >= 0)

    assert log.apply_retention() == 1

    assert log.size_bytes == 5 * S
    assert log.log_start_offset == 2
    log.close()


def test_partition_log_apply_retention_deletes_nothing_when_unlimited(tmp_path: Path) -> None:
    clock = Clock()
    log = _segments_with_timestamps(tmp_path, clock, [[0], [1], [2]])
    clock.advance(10**12)
    assert log.apply_retention() == 0
    assert len(log.segments) == 4
    log.close()


def test_partition_log_apply_retention_uses_file_mtime_when_records_have_no_timestamp(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)
    log = _segments_with_timestamps(tmp_path, clock, [[-1], [-1]], retention_ms=60_000)
    first, second = (tmp_path / "p" / name for name in _files(tmp_path / "p")[:2])
    os.utime(first, ns=(0, (T0 - 120_000) * 1_000_000))
    os.utime(second, ns=(0, (T0 - 1_000) * 1_000_000))

    assert log.apply_retention() == 1
    assert log.log_start_offset == 1
    log.close()


def test_partition_log_apply_retention_deletes_expired_segments_when_many_rolled(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)
    log = _log(tmp_path / "p", clock, segment_bytes=S, retention_ms=1000)
    _fill(log, [T0] * 20)
    assert len(log.segments) == 20
    on_disk = sum(os.path.getsize(tmp_path / "p" / n) for n in _files(tmp_path / "p"))
    assert log.size_bytes == on_disk
    clock.advance(1001)

    assert log.apply_retention() == 20
    assert log.log_start_offset == 20
    log.close()


def test_partition_log_apply_retention_keeps_unexpired_data_after_recovery_and_reopen(
    tmp_path: Path,
) -> None:
    """Recovery rebuilds the indexes of every segment past the recovery point; the largest
    timestamp must survive that (Kafka's recover() indexes it), or retention deletes data
    that has not expired once the log is reopened."""
    clock = Clock(T0 + 12_000)
    # segments of 4 batches; with this interval only the third batch is indexed, so the
    # fourth batch's newer timestamp is known from the final time-index entry only
    changes = {"segment_bytes": 4 * S, "index_interval_bytes": S + 1, "retention_ms": 5000}
    directory = tmp_path / "p"
    log = _log(directory, clock, **changes)
    _fill(log, [T0, T0, T0, T0 + 10_000] * 2 + [T0 + 11_000])
    log.close()
    (directory / CHECKPOINT_NAME).unlink()  # as if lost: everything is recovered

    recovered = _log(directory, clock, **changes)
    assert not recovered.was_clean
    recovered.close()
    log = _log(directory, clock, **changes)

    assert log.apply_retention() == 0
    assert log.log_start_offset == 0
    assert log.offset_for_timestamp(T0 + 10_000) == 3
    log.close()


# ---------------------------------------------------------------------------- delete_records


def test_partition_log_delete_records_moves_log_start_and_deletes_segments_below(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_bytes=2 * S)
    _fill(log, [T0] * 8)  # segments at 0, 2, 4, 6

    assert log.delete_records(5) == 5

    assert log.log_start_offset == 5
    assert [s.base_offset for s in log.segments] == [4, 6]
    assert _files(tmp_path / "p") == ["00000000000000000004.log", "00000000000000000006.log"]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4)
    assert [r.offset for r in log.read_records(5)] == [5]  # one segment per fetch
    assert [r.offset for r in log.read_records(6)] == [6, 7]
    assert log.read(5).log_start_offset == 5
    log.close()


@pytest.mark.parametrize("before", [-1, 4, 100])
def test_partition_log_delete_records_raises_offset_out_of_range_when_outside_log(
    tmp_path: Path, before: int
) -> None:
    log = _log(tmp_path / "p")
    _fill(log, [T0] * 3)
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records(before)
    assert log.log_start_offset == 0
    log.close()


def test_partition_log_delete_records_is_noop_when_below_log_start(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    _fill(log, [T0] * 3)
    assert log.delete_records(2) == 2
    assert log.delete_records(1) == 2
    assert log.log_start_offset == 2
    log.close()


def test_partition_log_delete_records_to_log_end_leaves_empty_log_that_accepts_appends(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p")
    _fill(log, [T0] * 3)
    assert log.delete_records(3) == 3
    assert log.log_start_offset == log.log_end_offset == 3
    assert log.read(3).records == b""
    assert log.append_records([_rec()]).base_offset == 3
    assert [r.offset for r in log.read_records(3)] == [3]
    log.close()


def test_partition_log_delete_records_survives_crash(tmp_path: Path) -> None:
    log = _log(tmp_path / "p", segment_bytes=2 * S)
    _fill(log, [T0] * 5)
    log.delete_records(3)
    log._abandon()  # no close(): the process "dies" here

    again = _log(tmp_path / "p", segment_bytes=2 * S)
    assert not again.was_clean
    assert (again.log_start_offset, again.log_end_offset) == (3, 5)
    again.close()
    log.close()


# ---------------------------------------------------------------------------- reopen


def _state(log: PartitionLog) -> tuple[object, ...]:
    return (
        log.log_start_offset,
        log.log_end_offset,
        [(s.base_offset, s.next_offset) for s in log.segments],
        [log.read(o).records for o in range(log.log_start_offset, log.log_end_offset + 1)],
        [log.offset_for_timestamp(T0 + t) for t in range(-1, 25)],
        log.size_bytes,
    )


def test_partition_log_reopen_after_clean_close_restores_identical_state(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_bytes=4 * S, index_interval_bytes=S)
    _fill(log, [T0 + i for i in range(22)])
    log.delete_records(2)
    before = _state(log)
    log.close()

    again = _log(tmp_path / "p", segment_bytes=4 * S, index_interval_bytes=S)

    assert again.was_clean
    assert again.recovered_bytes == 0
    assert _state(again) == before
    assert again.append_records([_rec(T0 + 30)]).base_offset == 22
    again.close()


def test_partition_log_reopen_after_clean_close_opens_no_sealed_segment(tmp_path: Path) -> None:
    log = _log(tmp_path / "p", segment_bytes=4 * S)
    _fill(log, [T0] * 10)  # segments 0, 4, 8
    log.close()
    fs = RecordingFS()

    again = _log(tmp_path / "p", fs=fs, segment_bytes=4 * S)

    sealed = [str(tmp_path / "p" / f"{base:020d}") for base in (0, 4)]
    opened = fs.opened()
    assert not any(path.startswith(prefix) for path in opened for prefix in sealed)
    assert again.log_end_offset == 10
    assert _offsets(again.read(1).records) == [1, 2, 3]  # now segment 0 is opened
    assert sealed[0] + ".log" in fs.opened()
    again.close()


def test_partition_log_reopen_after_clean_close_reads_only_tail_of_active_segment(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", index_interval_bytes=2 * S)
    _fill(log, [T0] * 40)
    size = log.size_bytes
    log.close()

    clean_fs = RecordingFS()
    again = _log(tmp_path / "p", fs=clean_fs, index_interval_bytes=2 * S)
    assert again.was_clean and again.log_end_offset == 40
    read_clean = sum(n for path, _, n in clean_fs.preads if path.endswith(".log"))
    assert read_clean < size // 4
    again.append_records([_rec()])  # marks the log dirty; no close: a crash
    again._abandon()

    crash_fs = RecordingFS()
    recovered = _log(tmp_path / "p", fs=crash_fs, index_interval_bytes=2 * S)
    assert not recovered.was_clean and recovered.log_end_offset == 41
    read_recovery = sum(n for path, _, n in crash_fs.preads if path.endswith(".log"))
    assert read_recovery >= size  # the unclean case does rescan
    recovered.close()
    again.close()


def test_partition_log_reopen_after_crash_truncates_torn_tail(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    _fill(log, [T0] * 3)
    log._abandon()
    # crash in the middle of the next write: half a batch reaches the file
    with open(segment_path(str(tmp_path / "p"), 0, ".log"), "ab") as f:
        f.write(encode_batch([_rec()], base_offset=3)[:50])

    again = _log(tmp_path / "p")

    assert not again.was_clean
    assert again.recovered_bytes == 50
    assert again.log_end_offset == 3
    assert again.size_bytes == 3 * S
    assert again.append_records([_rec()]).base_offset == 3
    again.close()
    log.close()


def test_partition_log_reopen_after_clean_close_rolls_by_time_from_first_batch(
    tmp_path: Path,
) -> None:
    changes = {"segment_ms": 10_000, "index_interval_bytes": 0}
    log = _log(tmp_path / "p", **changes)
    _fill(log, [T0, T0 + 1000, T0 + 2000, T0 + 3000])
    log.close()

    again = _log(tmp_path / "p", **changes)
    _fill(again, [T0 + 10_000])  # 10 s after the segment's first batch

    assert [s.base_offset for s in again.segments] == [0, 4]
    again.close()


# ---------------------------------------------------------------------------- flush policies


def _log_path(tmp_path: Path) -> str:
    return str(tmp_path / "p" / "00000000000000000000.log")


def test_partition_log_flush_always_fsyncs_log_before_append_returns(tmp_path: Path) -> None:
    fs = RecordingFS()
    log = _log(tmp_path / "p", fs=fs, flush="always")
    path = _log_path(tmp_path)
    for n in range(1, 4):
        log.append_records([_rec()])
        last_write = max(i for i, event in enumerate(fs.events) if event == ("write", path))
        assert ("fsync", path) in fs.events[last_write:]
        assert fs.count("fsync", ".log") == n
    log.close()


def _settle_flusher() -> None:
    """Wait until the background flusher has nothing due (its queue holds only later
    rechecks) and is not inside a flush."""
    from logstore.storage.flusher import FLUSHER

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with FLUSHER._cond:
            idle = not FLUSHER._queue or FLUSHER._queue[0][0] > time.monotonic() + 0.005
        if idle:
            time.sleep(0.05)  # a flush popped just now finishes
            return
        time.sleep(0.005)
    raise AssertionError("the background flusher did not settle")


def test_partition_log_flush_interval_fsyncs_at_most_every_flush_ms(tmp_path: Path) -> None:
    clock = Clock()
    fs = RecordingFS()
    log = _log(tmp_path / "p", clock, fs, flush="interval", flush_ms=1000)
    expected = [(0, 0), (999, 0), (1, 1), (500, 1), (499, 1), (1, 2), (0, 2), (5000, 3)]
    for advance, fsyncs in expected:
        clock.advance(advance)
        log.append_records([_rec()])
        _settle_flusher()
        assert fs.count("fsync", ".log") == fsyncs, (clock.now - T0, fsyncs)
    assert log.recovery_point == log.log_end_offset
    log.close()


@pytest.mark.slow  # 10 s of timing, the same on either codec: not in the pure-Python pass
def test_partition_log_flush_interval_syncs_off_the_append_path(tmp_path: Path) -> None:
    """An append returns before its fsync: the flusher thread makes it, and the recovery
    point follows once it is done."""
    fs = RecordingFS()
    log = _log(tmp_path / "p", fs=fs, flush="interval", flush_ms=0)
    gate = threading.Event()
    entered = threading.Event()
    real_fsync = fs._fsync

    def slow_fsync(handle: FileHandle) -> None:
        entered.set()
        gate.wait(10)
        real_fsync(handle)

    fs._fsync = slow_fsync  # type: ignore[method-assign]
    log.append_records([_rec()])  # returns although the fsync is held up
    assert entered.wait(10)
    log.append_records([_rec()])  # appends go on while the flusher syncs
    assert log.recovery_point == 0
    gate.set()
    deadline = time.monotonic() + 10
    while log.recovery_point < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert log.recovery_point == 2
    fs._fsync = real_fsync  # type: ignore[method-assign]
    log.close()


def test_partition_log_background_fsync_failure_fails_the_log(tmp_path: Path) -> None:
    fs = FailingFsyncFS()
    log = _log(tmp_path / "p", fs=fs, flush="interval", flush_ms=0)
    fs.failing = True
    log.append_records([_rec(value=b"written, never synced")])
    deadline = time.monotonic() + 10
    while not log.failed and time.monotonic() < deadline:
        time.sleep(0.005)
    fs.failing = False
    with pytest.raises(LogFailedError, match="background fsync failed"):
        log.append_records([_rec()])
    assert log.recovery_point == 0
    log.close()


def test_partition_log_flush_never_does_not_fsync_on_append(tmp_path: Path) -> None:
    clock = Clock()
    fs = RecordingFS()
    log = _log(tmp_path / "p", clock, fs, flush="never", flush_ms=0)
    for _ in range(20):
        log.append_records([_rec()])
        clock.advance(10_000)
    assert fs.count("fsync", ".log") == 0
    log.close()
    assert fs.count("fsync", ".log") == 1  # a clean close does fsync


def test_partition_log_fsync_failure_raises_storage_error_then_log_failed(
    tmp_path: Path,
) -> None:
    fs = FailingFsyncFS()
    log = _log(tmp_path / "p", fs=fs, flush="always")
    log.append_records([_rec(value=b"kept")])
    fs.failing = True

    with pytest.raises(StorageError) as info:
        log.append_records([_rec(value=b"unacknowledged")])
    assert not isinstance(info.value, LogFailedError)
    assert info.value.path == _log_path(tmp_path)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO

    fs.failing = False  # even once the disk "recovers", the log stays failed
    calls: list[Callable[[], object]] = [
        lambda: log.append_records([_rec()]),
        lambda: log.append_batches(encode_batch([_rec()])),
        log.roll,
        log.flush,
        lambda: log.delete_records(0),
        log.apply_retention,
    ]
    for call in calls:
        with pytest.raises(LogFailedError, match="earlier failure"):
            call()
    assert log.read_records(0)[0].value == b"kept"  # reads still work
    log.close()

    again = _log(tmp_path / "p")
    assert not again.was_clean  # the failed log was not marked clean
    again.close()


class FullDiskFS(RecordingFS):
    """Writes to ``.log`` files stop half-way with ENOSPC while ``full`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
        if self.full and handle.path.endswith(".log"):
            data = b"".join(parts)
            if len(data) > 10:
                return super()._pwritev(handle, (data[: len(data) // 2],), position)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super()._pwritev(handle, parts, position)


def test_partition_log_write_failure_cuts_partial_write_and_fails_log(tmp_path: Path) -> None:
    fs = FullDiskFS()
    log = _log(tmp_path / "p", fs=fs)
    _fill(log, [T0] * 2)
    fs.full = True

    with pytest.raises(StorageError, match="disk is full") as info:
        log.append_records([_rec(value=b"x" * 200)])

    assert info.value.path == _log_path(tmp_path)
    assert os.path.getsize(_log_path(tmp_path)) == 2 * S  # no half batch left behind
    assert log.log_end_offset == 2
    fs.full = False
    with pytest.raises(LogFailedError):
        log.append_records([_rec()])
    log.close()
    again = _log(tmp_path / "p")
    assert (again.log_end_offset, again.recovered_bytes) == (2, 0)
    again.close()


# ---------------------------------------------------------------------------- checkpoint


def test_partition_log_checkpoint_marked_dirty_before_first_write(tmp_path: Path) -> None:
    fs = RecordingFS()
    log = _log(tmp_path / "p", fs=fs)
    log.append_records([_rec()])

    checkpoint = str(tmp_path / "p" / CHECKPOINT_NAME)
    first_write = fs.events.index(("write", _log_path(tmp_path)))
    assert ("rename", checkpoint) in fs.events[:first_write]
    cp = read_checkpoint(FileSystem(), str(tmp_path / "p"))
    assert cp is not None and not cp.clean
    log.close()


def test_partition_log_close_writes_clean_checkpoint_at_log_end(tmp_path: Path) -> None:
    log = _log(tmp_path / "p", segment_bytes=2 * S)
    _fill(log, [T0] * 5)
    log.delete_records(1)
    log.close()
    cp = read_checkpoint(FileSystem(), str(tmp_path / "p"))
    assert cp == Checkpoint(recovery_point=5, log_start_offset=1, clean=True)


def test_partition_log_checkpoint_is_replaced_atomically(tmp_path: Path) -> None:
    fs = RecordingFS()
    directory = tmp_path / "p"
    log = _log(directory, fs=fs, segment_bytes=2 * S)
    _fill(log, [T0] * 5)  # dirty mark (rolls write none with flush "never")
    log.delete_records(3)
    log.close()

    checkpoint = str(directory / CHECKPOINT_NAME)
    tmp = str(directory / f"~{CHECKPOINT_NAME}.tmp")
    assert ("write", checkpoint) not in fs.events  # never written in place
    assert ("open", tmp) in fs.events
    renames = [i for i, e in enumerate(fs.events) if e == ("rename", checkpoint)]
    assert len(renames) >= 3  # dirty mark, delete_records, clean close
    for i in renames:
        assert ("fsync", tmp) in fs.events[i - 2 : i]
        assert fs.events[i + 1] == ("fsync_dir", str(directory))
    assert sorted(p.name for p in directory.iterdir() if "checkpoint" in p.name) == [
        CHECKPOINT_NAME
    ]


def test_partition_log_open_removes_leftover_temporary_files(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    _fill(log, [T0])
    log.close()
    (tmp_path / "p" / (CHECKPOINT_NAME + ".tmp")).write_bytes(b"half")
    (tmp_path / "p" / "00000000000000000007.index").write_bytes(b"")  # no .log
    (tmp_path / "p" / "notes.txt").write_bytes(b"mine")

    again = _log(tmp_path / "p")

    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        ".open.lock",
        ".writer.lock",
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.snapshot",  # producer state: at the first write
        "00000000000000000000.timeindex",
        "00000000000000000001.snapshot",  # and at the clean close
        CHECKPOINT_NAME,
        "head",
        "notes.txt",
    ]
    assert again.was_clean
    again.close()


# ---------------------------------------------------------------------------- timestamps


def test_partition_log_offset_for_timestamp_returns_first_offset_at_or_after(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_bytes=3 * S)
    _fill(log, [100, 200, 200, 300, 150, 400, 400, 50])  # segments 0-2, 3-5, 6-7

    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(100) == 0
    assert log.offset_for_timestamp(101) == 1
    assert log.offset_for_timestamp(200) == 1
    assert log.offset_for_timestamp(201) == 3
    assert log.offset_for_timestamp(301) == 5
    assert log.offset_for_timestamp(400) == 5
    assert log.offset_for_timestamp(401) is None
    log.close()


def test_partition_log_offset_for_timestamp_returns_none_when_log_empty(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    assert log.offset_for_timestamp(0) is None
    assert log.offset_for_timestamp(-1) is None
    log.close()


def test_partition_log_offset_for_timestamp_ignores_records_below_log_start(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_bytes=3 * S)
    _fill(log, [500, 100, 100, 600, 100])
    log.delete_records(1)
    assert log.offset_for_timestamp(200) == 3
    log.delete_records(4)
    assert log.offset_for_timestamp(200) is None
    assert log.offset_for_timestamp(100) == 4
    log.close()


@settings(deadline=None, max_examples=25)
@given(
    batches=st.lists(st.lists(st.integers(0, 1000), min_size=1, max_size=4), max_size=12),
    targets=st.lists(st.integers(-5, 1005), min_size=1, max_size=10),
)
def test_partition_log_offset_for_timestamp_agrees_with_linear_scan(
    batches: list[list[int]], targets: list[int]
) -> None:
    stamps = [ts for batch in batches for ts in batch]
    changes = {"segment_bytes": 300, "index_interval_bytes": 100}

    def expected(target: int) -> int | None:
        return next((o for o, ts in enumerate(stamps) if ts >= target), None)

    with tempfile.TemporaryDirectory() as tmp:
        log = _log(Path(tmp), **changes)
        for batch in batches:
            log.append_records([_rec(ts) for ts in batch])
        assert [log.offset_for_timestamp(t) for t in targets] == [expected(t) for t in targets]
        log.close()
        again = _log(Path(tmp), **changes)  # sealed segments now load lazily
        assert [again.offset_for_timestamp(t) for t in targets] == [expected(t) for t in targets]
        again.close()


# ---------------------------------------------------------------------------- close


def test_partition_log_methods_raise_store_closed_after_close(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    _fill(log, [T0])
    log.close()
    log.close()  # idempotent
    assert log.closed
    calls: list[Callable[[], object]] = [
        lambda: log.append_records([_rec()]),
        lambda: log.append_batches(encode_batch([_rec()])),
        lambda: log.read(0),
        lambda: log.read_records(0),
        lambda: log.offset_for_timestamp(0),
        log.roll,
        log.flush,
        lambda: log.delete_records(1),
        log.apply_retention,
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            call()


def test_partition_log_works_as_context_manager(tmp_path: Path) -> None:
    with _log(tmp_path / "p") as log:
        _fill(log, [T0])
    assert log.closed
    cp = read_checkpoint(FileSystem(), str(tmp_path / "p"))
    assert cp is not None and cp.clean


def test_lookups_after_appends_to_a_reopened_log_use_the_index_without_rebuilding(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: the index bound checked at open (the old end) was reused by the first
    # lazy load after more appends, so a healthy index was "damaged" and rebuilt (a full
    # rescan; in a second process, a rewrite of index files another process appends to).
    config = TopicConfig(index_interval_bytes=1, flush="never")
    with PartitionLog(str(tmp_path), config) as plog:
        for i in range(20):
            plog.append_records([_rec(T0 + i)])
    with PartitionLog(str(tmp_path), config) as plog:
        for i in range(20, 40):
            plog.append_records([_rec(T0 + i)])
        caplog.clear()
        assert plog.offset_for_timestamp(T0 + 30) == 30
        assert plog.read_records(35, max_records=1)[0].offset == 35
        assert "rebuilding" not in caplog.text
        other = PartitionLog(str(tmp_path), config)  # a second opener joins via the head
        try:
            plog.append_records([_rec(T0 + 40)])
            assert other.offset_for_timestamp(T0 + 40) == 40
            assert "rebuilding" not in caplog.text
        finally:
            other.close()


@pytest.mark.parametrize("keep", [0, 1])  # emptied, or cut after its first batch
def test_a_sealed_segment_cut_short_raises_instead_of_skipping_its_offsets(
    tmp_path: Path, keep: int
) -> None:
    # Regression: reading an offset of a shortened sealed segment (before the recovery
    # point, so never repaired) moved on to the next segment and silently skipped offsets.
    config = TopicConfig(segment_bytes=3 * S, flush="always")
    with PartitionLog(str(tmp_path), config) as plog:
        for i in range(9):
            plog.append_records([_rec(T0 + i)])
        assert [s.base_offset for s in plog.segments][:3] == [0, 3, 6]
    middle = segment_path(str(tmp_path), 3, ".log")
    with open(middle, "r+b") as f:
        f.truncate(keep * S)
    with PartitionLog(str(tmp_path), config) as plog:
        assert [r.offset for r in plog.read_records(0, max_records=3)] == [0, 1, 2]
        with pytest.raises(CorruptRecordError) as err:
            plog.read_records(4)
        assert err.value.path == middle
        assert [r.offset for r in plog.read_records(6)] == [6, 7, 8]


def test_a_roll_deletes_the_segment_a_writer_killed_mid_roll_left(tmp_path: Path) -> None:
    """A writer killed between creating a new segment (and writing its batch there) and
    the head naming it leaves that segment behind; the next writer goes on in the
    segment the head names. Its next roll deletes the stray, so no open finds offsets
    held twice (recovery dropped every segment after such a stray, acknowledged records
    included: the kill -9 producer-state test found it)."""
    directory = tmp_path / "p"
    log = _log(directory, flush="always")
    for i in range(3):
        log.append_records([_rec(value=b"acked-%d" % i)])
    stray = Segment.create(FileSystem(), str(directory), 3, log.config, T0)
    stray.close_files()
    with open(directory / "00000000000000000003.log", "ab") as f:  # the killed writer's
        f.write(encode_batch([_rec(value=b"never acked")], base_offset=3))
    for i in range(3, 5):
        log.append_records([_rec(value=b"acked-%d" % i)])  # into segment 0, as the head says
    log.roll()
    log.append_records([_rec(value=b"acked-5")])
    assert _files(directory) == ["00000000000000000000.log", "00000000000000000005.log"]
    log._abandon()  # a crash: the next open rescans
    again = _log(directory, flush="always")
    records = again.read_records(0, max_bytes=1 << 20)
    records += again.read_records(len(records), max_bytes=1 << 20)
    assert [r.value for r in records] == [b"acked-%d" % i for i in range(6)]
    assert [r.offset for r in records] == list(range(6))
    again.close()


def test_an_append_at_a_stray_segments_base_deletes_it(tmp_path: Path) -> None:
    """The same stray, but the next writer's batch fits the named segment (no roll):
    its append at the stray's base deletes the stray, so a crash after it leaves no
    empty last segment whose offsets the head says were synced (the open refused it)."""
    directory = tmp_path / "p"
    log = _log(directory, flush="always")
    log.append_records([_rec(value=b"acked-0")])
    stray = Segment.create(FileSystem(), str(directory), 1, log.config, T0)  # left empty
    stray.close_files()
    log.append_records([_rec(value=b"acked-1")])
    assert _files(directory) == ["00000000000000000000.log"]
    log._abandon()
    again = _log(directory, flush="always")
    assert [r.value for r in again.read_records(0)] == [b"acked-0", b"acked-1"]
    again.close()


def test_a_failed_head_write_that_reached_the_file_leaves_a_log_that_opens(
    tmp_path: Path,
) -> None:
    """Found by the fault sweep (notes of issue 15): an append whose data and fsync
    succeeded, then whose head rewrite wrote the new head and failed (a short write, then
    an error). Cutting the append's bytes back left that head naming synced records the
    log no longer had: the next open refused the partition (CorruptRecordError "the log
    ends at offset 1, but ... up to 1 were synced"). The bytes now stay."""
    from logstore.storage.head import HEAD_NAME

    class HeadLands(FileSystem):
        fail = False

        def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
            written = super()._pwritev(handle, parts, position)
            if self.fail and handle.path.endswith(HEAD_NAME):
                raise OSError(errno.EIO, "injected: the head was written, then an error")
            return written

    fs = HeadLands()
    d = str(tmp_path / "p")
    log = PartitionLog(d, TopicConfig(flush="always"), fs=fs)
    log.append_records([(0, b"k", b"v0", ())])
    fs.fail = True
    with pytest.raises(StorageError):
        log.append_records([(0, b"k", b"v1", ())])
    assert log.failed
    log._abandon()
    reopened = PartitionLog(d, TopicConfig(flush="always"))
    assert [r.value for r in reopened.read_records(0)] == [b"v0", b"v1"]  # v1 unacked, kept
    reopened.close()
