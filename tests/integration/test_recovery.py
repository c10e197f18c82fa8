"""Crash recovery and corruption handling of a :class:`PartitionLog` (kafka.md §2,
reliability.md §3(c)).

A "crash" is simulated by copying the partition directory while the log is still open
(:func:`crash_image`): every appended byte is in the OS already, and the copy's checkpoint
says ``clean 0`` (it is written before the first append), exactly what a ``kill -9`` leaves.
Damage is then done to the copy with plain file operations (tests are exempt from the I/O
seam rule) and the copy is opened as a new log.

Expected behaviour, from ``logstore/storage/log.py`` and kafka.md §2.1:

* indexes are derived data: deleted or damaged ones are rebuilt, lookups are unchanged;
* segments from the one holding the recovery point onwards are rescanned after a crash and
  cut at the first incomplete or corrupt batch (WARNING naming file, position and bytes
  dropped); later segments are deleted so offsets stay contiguous;
* damage before the recovery point is never dropped silently: reading it raises
  :class:`CorruptRecordError` naming the ``.log`` file and the batch's byte position.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from logstore.config import TopicConfig
from logstore.errors import CorruptRecordError
from logstore.records import encode_batch
from logstore.storage.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from logstore.storage.files import DEFAULT_FS
from logstore.storage.log import PartitionLog
from logstore.storage.segment import segment_path
from logstore.types import Record

INDEX_SUFFIXES = (".index", ".timeindex")
TIME_ENTRY_SIZE = 12  # timestamp int64, relativeOffset int32


class Batch(NamedTuple):
    """Where one appended batch landed: its segment, byte range and offsets."""

    segment: int  # base offset of the segment holding it
    start: int  # byte position of the batch in the segment's .log
    end: int  # one past its last byte
    base_offset: int
    records: int


class State(NamedTuple):
    """Everything a reader can observe, to compare a log before and after damage."""

    log_start_offset: int
    log_end_offset: int
    records: tuple[tuple[Record, ...], ...]  # read_records(offset, 1) for each offset
    scan: tuple[Record, ...]  # every record, read in whole fetches from the log start
    by_timestamp: tuple[int | None, ...]  # offset_for_timestamp for TIMESTAMPS


T0 = 1_700_000_000_000


def batch_inputs(i: int) -> list[tuple[int, bytes | None, bytes | None, tuple]]:
    """The records of the ``i``-th batch: 1-3 records of varied sizes, nullable keys and
    values, headers now and then, and timestamps that are not in order."""
    rng = random.Random(i)
    out = []
    for j in range(rng.randint(1, 3)):
        timestamp = T0 + 10 * i + rng.choice((-25, -3, 0, 1, 4, 9)) + j
        key = None if rng.random() < 0.2 else b"key-%d-%d" % (i, j)
        value = None if rng.random() < 0.1 else rng.randbytes(rng.randint(0, 60))
        headers = (("h", b"%d" % i),) if rng.random() < 0.3 else ()
        out.append((timestamp, key, value, headers))
    return out


TIMESTAMPS = tuple(range(T0 - 40, T0 + 10 * 60 + 20, 2))


def fill(log: PartitionLog, count: int, first: int = 0) -> list[Batch]:
    """Append ``count`` batches; return where each landed."""
    batches = []
    for i in range(first, first + count):
        inputs = batch_inputs(i)
        result = log.append_records(inputs)
        seg = log.active_segment
        size = len(encode_batch(inputs))
        batches.append(
            Batch(seg.base_offset, seg.size - size, seg.size, result.base_offset, len(inputs))
        )
    return batches


def read_all(log: PartitionLog) -> tuple[Record, ...]:
    out: list[Record] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        got = log.read_records(offset)
        assert got, f"no records at offset {offset} < log end {log.log_end_offset}"
        out += got
        offset = got[-1].offset + 1
    return tuple(out)


def state(log: PartitionLog) -> State:
    records = tuple(
        tuple(log.read_records(offset, 1))
        for offset in range(log.log_start_offset, log.log_end_offset)
    )
    return State(
        log.log_start_offset,
        log.log_end_offset,
        records,
        read_all(log),
        tuple(log.offset_for_timestamp(t) for t in TIMESTAMPS),
    )


def crash_image(log: PartitionLog, dst: Path) -> str:
    """A copy of the open log's directory: what the disk holds after a kill -9."""
    shutil.copytree(log.directory, dst)
    return str(dst)


def log_file(directory: str, base: int, suffix: str = ".log") -> str:
    return segment_path(directory, base, suffix)


def flip(path: str, position: int, mask: int = 0x10) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ mask]))


def cut(path: str, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def append_bytes(path: str, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def index_files(directory: str) -> dict[str, bytes]:
    return {
        name: read_bytes(os.path.join(directory, name))
        for name in sorted(os.listdir(directory))
        if name.endswith(INDEX_SUFFIXES)
    }


def set_checkpoint(directory: str, *, recovery_point: int, clean: bool) -> None:
    cp = read_checkpoint(DEFAULT_FS, directory)
    assert cp is not None
    write_checkpoint(DEFAULT_FS, directory, Checkpoint(recovery_point, cp.log_start_offset, clean))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture
def open_log(tiny_config: TopicConfig, clock) -> Iterator[Callable[..., PartitionLog]]:
    """Open a log on a directory; every log opened is closed at teardown."""
    opened: list[PartitionLog] = []

    def _open(directory: str | Path, config: TopicConfig = tiny_config) -> PartitionLog:
        log = PartitionLog(str(directory), config, clock=clock)
        opened.append(log)
        return log

    yield _open
    for log in opened:
        log.close()


def build(
    open_log: Callable[..., PartitionLog], directory: Path, count: int = 40, *, then: int = 0
):
    """A log of ``count`` batches over several segments, left open; with ``then``, the log
    is flushed (its recovery point moves to the log end) and ``then`` more are appended."""
    log = open_log(directory)
    batches = fill(log, count)
    assert len(log.segments) >= 4, "the test needs several sealed segments"
    if then:
        log.flush()
        batches += fill(log, then, first=count)
    return log, batches


WHEN = ("clean", "crash", "crash_unflushed")
"""How the log was left: closed cleanly; crashed after a flush and some more appends (the
segments before the recovery point are trusted, the rest rescanned); crashed without any
flush (with flush "never" a roll syncs nothing, so the recovery point stays at 0 and every
segment is rescanned)."""


def left(open_log, tmp_path: Path, when: str) -> tuple[PartitionLog, list[Batch], str, State]:
    """A log left as ``when`` says: the live log, its batches, the directory to open and
    the state a reader saw."""
    log, batches = build(open_log, tmp_path / "live", then=12 if when == "crash" else 0)
    before = state(log)
    if when == "clean":
        log.close()
        directory = log.directory
    else:
        directory = crash_image(log, tmp_path / "crashed")
    return log, batches, directory, before


# --------------------------------------------------------------------------- indexes


def damaged_copy(open_log, tmp_path: Path, when: str) -> tuple[str, State, dict[str, bytes]]:
    """A log directory after a clean close or a crash, with the state and index files a
    reader saw before any damage."""
    _, _, directory, before = left(open_log, tmp_path, when)
    return directory, before, index_files(directory)


def delete_indexes(directory: str) -> None:
    for name in os.listdir(directory):
        if name.endswith(INDEX_SUFFIXES):
            os.unlink(os.path.join(directory, name))


@pytest.mark.parametrize("when", WHEN)
def test_recovery_deleted_indexes_give_identical_reads(open_log, tmp_path, when):
    directory, before, _ = damaged_copy(open_log, tmp_path, when)
    delete_indexes(directory)

    log = open_log(directory)

    after = state(log)
    assert after.records == before.records
    assert after.scan == before.scan
    assert (after.log_start_offset, after.log_end_offset) == (
        before.log_start_offset,
        before.log_end_offset,
    )


MISSING_TIME_INDEX = (
    "bug: a missing .timeindex of a sealed segment that is not rescanned is recreated "
    "empty and accepted (Segment.load_sealed: an empty file passes check_tail), so the "
    "segment's max_timestamp stays -1 and offset_for_timestamp skips the segment"
)
MISSING_INDEX = (
    "bug: a deleted .index/.timeindex of a segment that is not rescanned is recreated as "
    "an empty file and never rebuilt (Segment.load_sealed/load_active: an empty index "
    "passes check_tail, so _rebuild_indexes is not called)"
)


def when_buggy(reason: str) -> list:
    """Every WHEN case (``reason`` records the bug these cases once exposed)."""
    return ["clean", "crash", "crash_unflushed"]


@pytest.mark.parametrize("when", when_buggy(MISSING_TIME_INDEX))
def test_recovery_deleted_indexes_give_identical_timestamp_lookups(open_log, tmp_path, when):
    directory, before, _ = damaged_copy(open_log, tmp_path, when)
    delete_indexes(directory)

    log = open_log(directory)

    after = state(log)
    wrong = [
        (t - T0, b, a)
        for t, b, a in zip(TIMESTAMPS, before.by_timestamp, after.by_timestamp, strict=True)
        if a != b
    ]
    assert not wrong, f"(timestamp - T0, offset before, offset after): {wrong[:5]}"


def check_rebuilt(directory: str, originals: dict[str, bytes], active_base: int) -> None:
    """Rebuilt index files equal the originals byte for byte, except that the active
    segment's .timeindex may gain one final entry: a rebuild always indexes the largest
    timestamp (Kafka's ``LogSegment.recover`` does the same), while the live active
    segment only writes it when it is sealed."""
    rebuilt = index_files(directory)
    assert sorted(rebuilt) == sorted(originals)
    active_time_index = os.path.basename(log_file(directory, active_base, ".timeindex"))
    for name, data in originals.items():
        if name == active_time_index:
            assert rebuilt[name][: len(data)] == data, name
            assert len(rebuilt[name]) - len(data) in (0, TIME_ENTRY_SIZE), name
        else:
            assert rebuilt[name] == data, f"{name}: {len(rebuilt[name])} bytes, was {len(data)}"


@pytest.mark.parametrize("when", when_buggy(MISSING_INDEX))
def test_recovery_deleted_indexes_are_rebuilt_byte_identical(open_log, tmp_path, when):
    directory, _, originals = damaged_copy(open_log, tmp_path, when)
    delete_indexes(directory)

    log = open_log(directory)
    state(log)  # every segment is opened, so every index is rebuilt
    active_base = log.active_segment.base_offset
    log.close()

    check_rebuilt(directory, originals, active_base)


def _odd_size(data: bytes) -> bytes:
    return data + b"\x01\x02\x03"


def _garbage(data: bytes) -> bytes:
    return b"\xff" * len(data) if data else b"\xff" * 24


def _random_garbage(data: bytes) -> bytes:
    return random.Random(5).randbytes(max(len(data), 24) // 24 * 24)


def _non_monotonic(data: bytes) -> bytes:
    half = len(data) // 2
    return data[half:] + data[:half]


def _past_end(data: bytes) -> bytes:
    """One more increasing entry, pointing far past the end of the log."""
    last = struct.unpack(">ii", data[-8:])[0] if data else -1
    return data + struct.pack(">ii", last + 1, 2**31 - 1)


def _time_past_end(data: bytes) -> bytes:
    """One more increasing entry, naming an offset past the end of the segment."""
    timestamp, _ = struct.unpack(">qi", data[-12:]) if data else (0, 0)
    return data + struct.pack(">qi", timestamp + 1, 2**31 - 1)


def _emptied(data: bytes) -> bytes:
    return b""


INDEX_DAMAGE = {
    "odd_size": (".index", _odd_size),
    "garbage": (".index", _garbage),
    "random_garbage": (".index", _random_garbage),
    "non_monotonic": (".index", _non_monotonic),
    "past_end": (".index", _past_end),
    "time_odd_size": (".timeindex", _odd_size),
    "time_garbage": (".timeindex", _garbage),
    "time_non_monotonic": (".timeindex", _non_monotonic),
    "time_past_end": (".timeindex", _time_past_end),
    "emptied": (".index", _emptied),
    "time_emptied": (".timeindex", _emptied),
}
EMPTIED = (
    "bug: an emptied index of a sealed segment that is not rescanned passes check_tail "
    "and is never rebuilt; an empty .timeindex leaves max_timestamp at -1, so "
    "offset_for_timestamp skips the segment (Segment.load_sealed)"
)


def index_damage_cases() -> list:
    cases = []
    for when in WHEN:
        for damage in INDEX_DAMAGE:
            cases.append(pytest.param(when, damage, id=f"{when}-{damage}"))
    return cases


@pytest.mark.parametrize(("when", "damage"), index_damage_cases())
def test_recovery_damaged_sealed_index_is_rebuilt_silently(
    open_log, tmp_path, caplog, when, damage
):
    directory, before, originals = damaged_copy(open_log, tmp_path, when)
    suffix, change = INDEX_DAMAGE[damage]
    # the first segment and one in the middle, both sealed and (unless the log was never
    # flushed) wholly below the recovery point, so they are loaded lazily, not rescanned
    cp = read_checkpoint(DEFAULT_FS, directory)
    bases = sorted(int(n[:20]) for n in os.listdir(directory) if n.endswith(".log"))
    trusted = [b for b, nxt in itertools.pairwise(bases) if nxt <= cp.recovery_point]
    if when != "crash_unflushed":
        assert len(trusted) >= 3
    pool = trusted or bases[:-1]
    damaged = [pool[0], pool[len(pool) // 2]]
    for base in damaged:
        path = log_file(directory, base, suffix)
        data = read_bytes(path)
        with open(path, "wb") as f:
            f.write(change(data))

    log = open_log(directory)
    after = state(log)  # no CorruptIndexError or CorruptRecordError escapes
    active_base = log.active_segment.base_offset
    log.close()

    assert after == before
    check_rebuilt(directory, originals, active_base)
    rebuilt = [m for m in warnings_of(caplog) if m.startswith("rebuilding indexes")]
    if when != "crash_unflushed":  # a rescan rebuilds indexes without a warning
        for base in damaged:
            assert any(log_file(directory, base) in m for m in rebuilt), rebuilt


# --------------------------------------------------------------------------- torn tails


@pytest.mark.parametrize("torn", ["middle_of_segment", "first_of_segment"])
def test_recovery_truncates_torn_last_batch_at_every_byte(open_log, tmp_path, clock, torn):
    log = open_log(tmp_path / "live")
    batches = fill(log, 25)
    if torn == "first_of_segment":
        log.roll()
        batches += fill(log, 1, first=25)
    else:
        batches += fill(log, 2, first=25)
    last = batches[-1]
    assert last.segment == log.active_segment.base_offset
    assert (last.start == 0) == (torn == "first_of_segment")
    expected = state(log).records[: last.base_offset]
    image = crash_image(log, tmp_path / "image")

    for size in range(last.start, last.end):
        directory = tmp_path / f"cut-{size}"
        shutil.copytree(image, directory)
        cut(log_file(str(directory), last.segment), size)

        recovered = open_log(directory)

        where = f"log cut at byte {size} of the batch at [{last.start}, {last.end})"
        assert recovered.log_end_offset == last.base_offset, where
        assert recovered.recovered_bytes == size - last.start, where
        assert recovered.active_segment.size == last.start, where
        assert state(recovered).records == expected, where
        result = recovered.append_records([(T0, b"k", b"after", ())])
        assert result.base_offset == last.base_offset, where
        assert recovered.read_records(last.base_offset)[0].value == b"after", where
        recovered.close()


def test_open_raises_corrupt_record_error_when_cleanly_closed_active_segment_is_cut(
    open_log, tmp_path
):
    """A clean close fsynced everything: a short active segment afterwards is damage,
    not a torn write, and is reported rather than repaired (Segment.load_active)."""
    log, batches = build(open_log, tmp_path / "log")
    log.close()
    last = batches[-1]
    path = log_file(log.directory, last.segment)
    cut(path, last.end - 1)

    with pytest.raises(CorruptRecordError) as info:
        open_log(log.directory)

    assert info.value.path == path
    assert info.value.position == last.start


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(random.Random(3).randbytes(300), id="garbage"),
        pytest.param(b"\x00" * 4096, id="zero_filled"),
        pytest.param(b"\x00" * 11, id="short_zeros"),
        pytest.param(b"\xff" * 70, id="ff_bytes"),
    ],
)
def test_recovery_truncates_tail_after_last_batch_with_warning(open_log, tmp_path, caplog, tail):
    log, batches = build(open_log, tmp_path / "live")
    before = state(log)
    directory = crash_image(log, tmp_path / "crashed")
    path = log_file(directory, batches[-1].segment)
    size = batches[-1].end
    append_bytes(path, tail)
    caplog.set_level(logging.WARNING, logger="logstore")

    recovered = open_log(directory)

    assert recovered.recovered_bytes == len(tail)
    assert os.path.getsize(path) == size
    assert state(recovered) == before
    messages = [m for m in warnings_of(caplog) if path in m]
    assert len(messages) == 1, warnings_of(caplog)
    assert f"position {size}" in messages[0]
    assert f"dropping {len(tail)} bytes" in messages[0]
    assert recovered.append_records([(T0, None, b"x", ())]).base_offset == before.log_end_offset


def test_recovery_truncates_at_zeroed_block_inside_active_segment(open_log, tmp_path, caplog):
    log = open_log(tmp_path / "live", TopicConfig(segment_bytes=1 << 20, flush="never"))
    batches = fill(log, 120)
    before = state(log)
    directory = crash_image(log, tmp_path / "crashed")
    path = log_file(directory, 0)
    block = 4096
    with open(path, "r+b") as f:
        f.seek(block)
        f.write(b"\x00" * block)
    first_bad = next(b for b in batches if b.end > block)
    caplog.set_level(logging.WARNING, logger="logstore")

    recovered = open_log(directory, TopicConfig(segment_bytes=1 << 20, flush="never"))

    assert recovered.log_end_offset == first_bad.base_offset
    assert os.path.getsize(path) == first_bad.start
    assert state(recovered).records == before.records[: first_bad.base_offset]
    assert any(f"position {first_bad.start}" in m for m in warnings_of(caplog))


# --------------------------------------------------------------------------- sealed damage

BASE_OFFSET_BYTES = range(0, 8)
BATCH_LENGTH_BYTES = range(8, 12)
LEADER_EPOCH_BYTES = range(12, 16)
MAGIC_BYTE = 16
CHECKED_HEADER_BYTES = range(17, 61)  # crc, attributes ... recordsCount: under the CRC


def sealed_victim(batches: list[Batch]) -> Batch:
    """A batch in the middle of the first segment, with batches before and after it."""
    first = [b for b in batches if b.segment == batches[0].segment]
    assert len(first) >= 3
    return first[len(first) // 2]


def flipped_copy(open_log, tmp_path, when: str, byte: int):
    _, batches, directory, before = left(open_log, tmp_path, when)
    victim = sealed_victim(batches)
    cp = read_checkpoint(DEFAULT_FS, directory)
    assert cp is not None
    assert cp.recovery_point > victim.segment, "the damage must lie before the recovery point"
    path = log_file(directory, victim.segment)
    flip(path, victim.start + byte if byte >= 0 else victim.end + byte)
    return directory, path, before, victim


def assert_reads_raise(log: PartitionLog, path: str, victim: Batch) -> None:
    """Reading the damaged batch, or reading through it, names its file and position."""
    for offset in (victim.base_offset, victim.base_offset + victim.records - 1, victim.segment):
        with pytest.raises(CorruptRecordError) as info:
            log.read_records(offset)
        assert (info.value.path, info.value.position) == (path, victim.start), offset


@pytest.mark.parametrize(
    "byte",
    [*CHECKED_HEADER_BYTES, 61, 62, 70, -1],
    ids=lambda b: f"byte{b}",
)
@pytest.mark.parametrize("when", ["clean", "crash"])
def test_read_raises_corrupt_record_error_for_flipped_byte_in_sealed_segment(
    open_log, tmp_path, when, byte
):
    directory, path, before, victim = flipped_copy(open_log, tmp_path, when, byte)
    size = os.path.getsize(path)

    damaged = open_log(directory)

    assert damaged.log_end_offset == before.log_end_offset  # nothing was cut
    assert os.path.getsize(path) == size
    assert_reads_raise(damaged, path, victim)
    # the batches before it, and every later segment, still read as before
    for offset in range(victim.segment, victim.base_offset):
        assert tuple(damaged.read_records(offset, 1)) == before.records[offset]
    later = [o for o in range(before.log_end_offset) if o >= damaged.segments[1].base_offset]
    for offset in later:
        assert tuple(damaged.read_records(offset, 1)) == before.records[offset]


@pytest.mark.parametrize("byte", LEADER_EPOCH_BYTES)
def test_read_ignores_flipped_partition_leader_epoch_in_sealed_segment(open_log, tmp_path, byte):
    """partitionLeaderEpoch is outside the CRC on purpose (a broker stamps it) and is not
    part of a Record: damage there changes nothing a reader sees."""
    directory, _, before, _ = flipped_copy(open_log, tmp_path, "clean", byte)

    assert state(open_log(directory)) == before


@pytest.mark.parametrize("when", ["clean", "crash"])
def test_read_raises_corrupt_record_error_for_flipped_magic_in_sealed_segment(
    open_log, tmp_path, when
):
    directory, path, _, victim = flipped_copy(open_log, tmp_path, when, MAGIC_BYTE)

    assert_reads_raise(open_log(directory), path, victim)


@pytest.mark.parametrize("byte", BATCH_LENGTH_BYTES)
@pytest.mark.parametrize("when", ["clean", "crash"])
def test_read_raises_corrupt_record_error_for_flipped_batch_length_in_sealed_segment(
    open_log, tmp_path, when, byte
):
    directory, path, _, victim = flipped_copy(open_log, tmp_path, when, byte)

    assert_reads_raise(open_log(directory), path, victim)


@pytest.mark.parametrize("byte", BASE_OFFSET_BYTES)
@pytest.mark.parametrize("when", ["clean", "crash"])
def test_read_raises_corrupt_record_error_for_flipped_base_offset_in_sealed_segment(
    open_log, tmp_path, when, byte
):
    """baseOffset lies outside the CRC (the log rewrites it on append, kafka.md §1.2), so
    only the offsets not following on can tell: never serve records under wrong offsets."""
    directory, path, before, victim = flipped_copy(open_log, tmp_path, when, byte)
    damaged = open_log(directory)

    for offset in range(victim.base_offset, victim.base_offset + victim.records):
        try:
            got = damaged.read_records(offset, 1)
        except CorruptRecordError:
            continue
        assert tuple(got) == before.records[offset], offset
    assert_reads_raise(damaged, path, victim)


# --------------------------------------------------------------------------- leftovers


def test_open_removes_leftover_and_orphan_files(open_log, tmp_path):
    log, batches = build(open_log, tmp_path / "log")
    before = state(log)
    log.close()
    directory = log.directory
    last_base = batches[-1].segment
    leftovers = [
        "checkpoint.tmp",
        os.path.basename(log_file(directory, 0, ".log.deleted")),
        os.path.basename(log_file(directory, 0, ".index.deleted")),
        os.path.basename(log_file(directory, last_base, ".log.swap")),
        os.path.basename(log_file(directory, last_base, ".log.cleaned")),
        os.path.basename(log_file(directory, 900, ".log.tmp")),
        # orphans: indexes with no .log beside them
        os.path.basename(log_file(directory, 900, ".index")),
        os.path.basename(log_file(directory, 901, ".timeindex")),
        os.path.basename(log_file(directory, 3, ".index")),
    ]
    for name in leftovers:
        with open(os.path.join(directory, name), "wb") as f:
            f.write(b"left over")
    kept = sorted(os.listdir(directory))
    kept = [n for n in kept if n not in leftovers]

    reopened = open_log(directory)

    assert sorted(os.listdir(directory)) == kept
    assert state(reopened) == before


# --------------------------------------------------------------------------- rolls


@pytest.mark.parametrize("files", [(".log",), (".log", ".index", ".timeindex")])
def test_recovery_keeps_offsets_when_crash_left_empty_new_segment(open_log, tmp_path, files):
    """A crash inside roll(), after the new segment's files were created and before
    anything was written to them (or the checkpoint moved)."""
    log, _ = build(open_log, tmp_path / "live")
    before = state(log)
    directory = crash_image(log, tmp_path / "crashed")
    for suffix in files:
        open(log_file(directory, before.log_end_offset, suffix), "wb").close()

    recovered = open_log(directory)

    assert state(recovered) == before
    result = recovered.append_records([(T0, b"k", b"v", ())])
    assert result.base_offset == before.log_end_offset
    recovered.close()
    again = open_log(directory)
    assert again.was_clean
    assert [r.value for r in again.read_records(before.log_end_offset)] == [b"v"]
    assert state(again).records[: before.log_end_offset] == before.records


def _torn(path: str, victim: Batch) -> None:
    cut(path, victim.start + 30)


def _flipped(path: str, victim: Batch) -> None:
    flip(path, victim.start + 40)


def _at_boundary(path: str, victim: Batch) -> None:
    cut(path, victim.start)


@pytest.mark.parametrize("damage", [_torn, _flipped, _at_boundary], ids=lambda f: f.__name__)
@pytest.mark.parametrize("checkpoint", ["rewound", "missing"])
def test_recovery_deletes_segments_after_damaged_segment_past_recovery_point(
    open_log, tmp_path, caplog, damage, checkpoint
):
    """The recovery point lies before the damaged sealed segment (the crash came before
    the checkpoint caught up, or the checkpoint was lost): the segment is cut at the
    damage and every later segment is deleted, so offsets stay contiguous."""
    log, batches = build(open_log, tmp_path / "live")
    before = state(log)
    directory = crash_image(log, tmp_path / "crashed")
    if checkpoint == "missing":
        os.unlink(os.path.join(directory, "checkpoint"))
    else:
        set_checkpoint(directory, recovery_point=0, clean=False)
    bases = sorted({b.segment for b in batches})
    damaged_base = bases[1]
    in_segment = [b for b in batches if b.segment == damaged_base]
    assert len(in_segment) >= 3
    victim = in_segment[len(in_segment) // 2]
    path = log_file(directory, damaged_base)
    damage(path, victim)
    caplog.set_level(logging.WARNING, logger="logstore")

    recovered = open_log(directory)

    assert recovered.log_end_offset == victim.base_offset
    assert [s.base_offset for s in recovered.segments] == bases[:2]
    assert os.path.getsize(path) == victim.start
    assert state(recovered).records == before.records[: victim.base_offset]
    for base in bases[2:]:
        for suffix in (".log", *INDEX_SUFFIXES):
            assert not os.path.exists(log_file(directory, base, suffix))
        assert any(
            m.startswith("deleting") and log_file(directory, base) in m for m in warnings_of(caplog)
        ), base
    if damage is not _at_boundary:
        assert any(path in m and f"position {victim.start}" in m for m in warnings_of(caplog))
    assert recovered.append_records([(T0, None, b"x", ())]).base_offset == victim.base_offset


def test_open_recovers_everything_when_checkpoint_is_damaged(open_log, tmp_path, caplog):
    log, _ = build(open_log, tmp_path / "log")
    before = state(log)
    log.close()
    path = os.path.join(log.directory, "checkpoint")
    with open(path, "r+b") as f:
        f.seek(40)
        f.write(b"9")
    caplog.set_level(logging.WARNING, logger="logstore")

    reopened = open_log(log.directory)

    assert not reopened.was_clean
    assert state(reopened) == before
    assert any("damaged checkpoint" in m for m in warnings_of(caplog))


# --------------------------------------------------------------------------- idempotence


def test_recovery_is_idempotent_and_appends_continue(open_log, tmp_path):
    log, batches = build(open_log, tmp_path / "live")
    last = batches[-1]
    directory = crash_image(log, tmp_path / "crash1")
    cut(log_file(directory, last.segment), last.end - 7)
    first = open_log(directory)
    recovered = state(first)
    assert first.recovered_bytes == last.end - last.start - 7
    assert recovered.log_end_offset == last.base_offset

    # a second crash right after recovery: nothing more to drop, same state
    second = open_log(crash_image(first, tmp_path / "crash2"))
    assert second.recovered_bytes == 0
    assert state(second) == recovered
    # a clean close and reopen: no rescan, same state
    first.close()
    third = open_log(directory)
    assert third.was_clean
    assert third.recovered_bytes == 0
    assert state(third) == recovered
    assert third.recovery_point == recovered.log_end_offset

    more = fill(third, 10, first=len(batches))
    assert more[0].base_offset == recovered.log_end_offset
    offsets = [r[0].offset for r in state(third).records]
    assert offsets == list(range(third.log_end_offset))
    third.close()
    fourth = open_log(directory)
    assert state(fourth).records[: recovered.log_end_offset] == recovered.records
    assert fourth.log_end_offset == more[-1].base_offset + more[-1].records


def test_synced_records_cut_off_after_a_crash_are_a_corruption_error(open_log, tmp_path):
    # Everything below the recovery point was fsynced; a log that recovers to less has
    # lost acknowledged records, which is reported (naming file and position), never
    # clamped away silently.
    log, batches = build(open_log, tmp_path / "live")
    log.flush()
    assert log.recovery_point == log.log_end_offset
    directory = crash_image(log, tmp_path / "crashed")
    last = batches[-1]
    path = log_file(directory, last.segment)
    cut(path, last.start + 1)

    with pytest.raises(CorruptRecordError) as err:
        open_log(directory)

    assert err.value.path == str(path) and err.value.position == last.start
    assert "checkpoint" in str(err.value)


def test_reopen_of_never_written_log_is_clean(open_log, tmp_path):
    open_log(tmp_path / "log").close()

    reopened = open_log(tmp_path / "log")

    assert reopened.was_clean
