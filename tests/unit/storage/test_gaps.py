"""Segments that declare offset gaps (``logstore/storage/gaps.py``), built by hand as the
log cleaner will write them: reads, indexes, recovery and verify accept the gaps there,
and the same gaps in a segment that does not declare them are still corruption."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logstore.config import TopicConfig
from logstore.errors import CorruptRecordError, InvalidRecordError
from logstore.records.batch import encode_batch, scan
from logstore.storage.checkpoint import CHECKPOINT_NAME, Checkpoint, write_checkpoint
from logstore.storage.files import DEFAULT_FS
from logstore.storage.gaps import write_cleaned_segment
from logstore.storage.log import PartitionLog
from logstore.storage.plan import CORRUPT, Action
from logstore.storage.segment import Segment, segment_path
from logstore.storage.verify import verify_partition
from tests.conftest import FakeClock

T0 = 1_700_000_000_000
CONFIG = TopicConfig(index_interval_bytes=1, flush="always")
CLEANED = {0: [[2, 3], [6], [8, 9]], 12: [[14], [17, 18]]}
"""Two cleaned segments: 0 ends at 10 before the next base 12, and 12 starts at 14 and
ends at 19 before the active segment's base 20."""
ACTIVE = (20, [[20, 21], [22]])
SURVIVING = [2, 3, 6, 8, 9, 14, 17, 18, 20, 21, 22]
LOG_END = 23


def _batch(offsets: list[int]) -> bytes:
    records = [(T0 + 10 * o, f"k{o}".encode(), f"v{o}".encode(), ()) for o in offsets]
    return encode_batch(records, base_offset=offsets[0])


def _next_surviving(offset: int) -> int | None:
    return next((o for o in SURVIVING if o >= offset), None)


def build(directory: str, *, mode: str = "clean", marked: bool = True) -> None:
    """The partition: two cleaned segments and a normal active one, then a checkpoint for
    ``mode`` (clean; crash with the recovery point at 0, 13 or 21; no checkpoint)."""
    os.makedirs(directory)
    for base, batches in CLEANED.items():
        write_cleaned_segment(DEFAULT_FS, directory, base, [_batch(b) for b in batches], CONFIG)
        if not marked:
            os.unlink(segment_path(directory, base, ".gaps"))
    base, batches = ACTIVE
    active = Segment.create(DEFAULT_FS, directory, base, CONFIG, T0)
    data = b"".join(_batch(b) for b in batches)
    active.append(data, list(scan(data)))
    active.fsync()
    active.close_files()
    points = {"clean": LOG_END, "crash-rp0": 0, "crash-rp13": 13, "crash-rp21": 21}
    if mode in points:
        write_checkpoint(DEFAULT_FS, directory, Checkpoint(points[mode], 0, mode == "clean"))


MODES = ("clean", "crash-rp0", "crash-rp13", "crash-rp21", "no-checkpoint")


def _open(directory: str) -> PartitionLog:
    return PartitionLog(directory, CONFIG, clock=FakeClock(T0 + 1000))


@pytest.mark.parametrize("mode", MODES)
def test_reads_of_declared_gaps_return_the_next_surviving_record(tmp_path: Path, mode: str):
    directory = str(tmp_path / "t-0")
    build(directory, mode=mode)

    with _open(directory) as log:
        assert log.log_end_offset == LOG_END
        assert log.recovered_bytes == 0
        for offset in range(LOG_END):
            want = _next_surviving(offset)
            got = log.read_records(offset, max_records=1)
            assert [r.offset for r in got] == [want], offset
            many = [r.offset for r in log.read_records(offset)]  # up to its segment's end
            assert many and many == [o for o in SURVIVING if o >= offset][: len(many)]
            fetched = log.read(offset, max_bytes=1)
            first = next(scan(fetched.records))
            assert first.base_offset <= want <= first.last_offset, offset
            assert log.offset_for_timestamp(T0 + 10 * offset) == want, offset
        assert log.offset_for_timestamp(T0 + 10 * LOG_END) is None
    for base in (*CLEANED, ACTIVE[0]):  # recovery deleted nothing
        assert os.path.exists(segment_path(directory, base, ".log"))


@pytest.mark.parametrize("mode", MODES)
def test_verify_accepts_declared_gaps_and_plans_no_cut(tmp_path: Path, mode: str):
    directory = str(tmp_path / "t-0")
    build(directory, mode=mode)

    report = verify_partition(DEFAULT_FS, directory)

    assert report.plan is not None and report.plan.error is None
    assert {s.action for s in report.plan.segments} <= {Action.KEEP, Action.REBUILD}
    assert [f for f in report.findings if f.kind == CORRUPT] == []
    assert report.records == len(SURVIVING)
    if mode != "no-checkpoint":
        assert report.ok, report.findings


def _index_bytes(directory: str) -> dict[str, bytes]:
    return {
        name: Path(directory, name).read_bytes()
        for name in sorted(os.listdir(directory))
        if name.endswith((".index", ".timeindex"))
    }


@pytest.mark.parametrize("mode", ["clean", "no-checkpoint"])
def test_index_rebuild_of_declared_segments_equals_what_the_writer_wrote(
    tmp_path: Path, mode: str
):
    directory = str(tmp_path / "t-0")
    build(directory, mode=mode)
    written = _index_bytes(directory)
    assert all(written.values())
    for base in CLEANED:
        for suffix in (".index", ".timeindex"):
            os.unlink(segment_path(directory, base, suffix))

    with _open(directory) as log:
        for offset in range(LOG_END):  # lookups rebuild the lost indexes
            assert log.read_records(offset, max_records=1)[0].offset == _next_surviving(offset)

    assert _index_bytes(directory) == written


def test_the_same_gaps_in_segments_that_do_not_declare_them_are_corruption(tmp_path: Path):
    clean, crashed = str(tmp_path / "clean-0"), str(tmp_path / "crash-0")
    build(clean, marked=False)
    build(crashed, mode="no-checkpoint", marked=False)

    report = verify_partition(DEFAULT_FS, clean)
    assert [f.path for f in report.findings if f.kind == CORRUPT] == [
        segment_path(clean, 0, ".log"), segment_path(clean, 12, ".log")
    ]
    with _open(clean) as log, pytest.raises(CorruptRecordError) as err:
        log.read_records(0)
    assert err.value.path == segment_path(clean, 0, ".log")

    report = verify_partition(DEFAULT_FS, crashed)
    assert report.plan is not None
    assert [(s.base_offset, s.action) for s in report.plan.segments] == [
        (0, Action.CUT), (12, Action.DELETE), (20, Action.DELETE)
    ]
    with _open(crashed) as log:  # a rescan cuts at the first gap and drops what follows
        assert log.log_end_offset == 0
        assert log.recovery_plan is not None
        assert log.recovery_plan.actions() == report.plan.actions()
    assert not os.path.exists(segment_path(crashed, 12, ".log"))


def test_a_gap_after_a_normal_segment_is_corruption_even_before_a_declared_one(
    tmp_path: Path,
):
    """Only the declared segment may skip: a normal segment must end at the next base."""
    directory = str(tmp_path / "t-0")
    os.makedirs(directory)
    normal = Segment.create(DEFAULT_FS, directory, 0, CONFIG, T0)
    data = _batch([0, 1])
    normal.append(data, list(scan(data)))
    normal.seal()
    normal.close_files()
    write_cleaned_segment(DEFAULT_FS, directory, 5, [_batch([6])], CONFIG)

    report = verify_partition(DEFAULT_FS, directory)  # no checkpoint: all rescanned

    assert report.plan is not None
    assert [(s.base_offset, s.action) for s in report.plan.segments] == [
        (0, Action.REBUILD), (5, Action.DELETE)
    ]


def test_write_cleaned_segment_refuses_offsets_that_go_back(tmp_path: Path):
    with pytest.raises(InvalidRecordError):
        write_cleaned_segment(DEFAULT_FS, str(tmp_path), 10, [_batch([12]), _batch([11])],
                              CONFIG)
    with pytest.raises(InvalidRecordError):
        write_cleaned_segment(DEFAULT_FS, str(tmp_path), 10, [_batch([9])], CONFIG)
    assert os.listdir(tmp_path) == []


def test_a_marker_without_a_log_is_removed_and_deleting_a_segment_removes_its_marker(
    tmp_path: Path,
):
    directory = str(tmp_path / "t-0")
    build(directory)
    orphan = segment_path(directory, 100, ".gaps")
    Path(orphan).write_bytes(b"")
    os.unlink(os.path.join(directory, CHECKPOINT_NAME))

    with _open(directory) as log:
        assert not os.path.exists(orphan)
        log.delete_records(15)  # segment 0 goes, with its marker

    assert not os.path.exists(segment_path(directory, 0, ".gaps"))
    assert os.path.exists(segment_path(directory, 12, ".gaps"))
