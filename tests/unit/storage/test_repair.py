"""Repair (``logstore/storage/repair.py``): accepting a loss of synced records explicitly.

Each test builds a partition of three segments of three 10-record batches (offsets 0-29,
30-59, 60-89) with :class:`PartitionLog`, damages it by hand (a flipped byte, a file cut
short or deleted), and checks the plan's figures exactly, then what carrying it out
leaves: a log that opens, reads the records that survive and takes appends.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logstore.config import TopicConfig
from logstore.errors import CorruptRecordError
from logstore.records.batch import encode_batch
from logstore.storage.files import FileSystem
from logstore.storage.head import HEAD_NAME, HEAD_SIZE, unpack_head
from logstore.storage.log import PartitionLog
from logstore.storage.repair import (
    PartitionInUseError,
    RepairPlanChangedError,
    SegmentLoss,
    carry_out_repair,
    plan_repair,
)
from logstore.storage.verify import verify_partition
from tests.reliability.crashfs import CrashModel, RecordingFS, remove_tree, scratch_root

T0 = 1_700_000_000_000
PER_BATCH = 10
BATCHES = 9

Rec = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]


def _batch(n: int) -> list[Rec]:
    return [(T0 + n, b"k%d" % i, b"value-%03d-%02d" % (n, i), ()) for i in range(PER_BATCH)]


B = len(encode_batch(_batch(0)))
"""Bytes of one batch (all the same size)."""
CONFIG = TopicConfig(flush="always", segment_bytes=3 * B, index_interval_bytes=B // 2)
VALUES = [value for n in range(BATCHES) for _, _, value, _ in _batch(n)]


class Clock:
    def now_ms(self) -> int:
        return T0


def _open(directory: Path, fs: FileSystem | None = None) -> PartitionLog:
    return PartitionLog(str(directory), CONFIG, fs=fs or FileSystem(), clock=Clock())


def _build(directory: Path, *, close: bool = True) -> None:
    """Offsets 0-89 in segments 0, 30 and 60 (closed cleanly, or abandoned as a kill
    leaves it)."""
    log = _open(directory)
    for n in range(BATCHES):
        log.append_records(_batch(n))
    assert [s.base_offset for s in log.segments] == [0, 30, 60]
    log.close() if close else log._abandon()


def _log_path(directory: Path, base: int) -> Path:
    return directory / f"{base:020d}.log"


def _flip(path: Path, position: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0x01
    path.write_bytes(bytes(raw))


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _values(log: PartitionLog) -> list[bytes | None]:
    out: list[bytes | None] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        records = log.read_records(offset)
        out += [r.value for r in records]
        offset = records[-1].offset + 1
    return out


def _repair(directory: Path) -> None:
    fs = FileSystem()
    carry_out_repair(fs, str(directory), plan_repair(fs, str(directory)), CONFIG)


def _assert_repaired_to(directory: Path, end: int) -> None:
    """The log opens at ``end``, reads what survives, takes an append, and verify is
    clean before and after the append."""
    assert verify_partition(FileSystem(), str(directory)).findings == []
    with _open(directory) as log:
        assert (log.log_start_offset, log.log_end_offset) == (0, end)
        assert _values(log) == VALUES[:end]
        assert log.append_records(_batch(99)).base_offset == end
    with _open(directory) as log:
        assert log.log_end_offset == end + PER_BATCH
        assert _values(log)[end:] == [v for _, _, v, _ in _batch(99)]
    assert verify_partition(FileSystem(), str(directory)).findings == []


def _snapshots_past(directory: Path, offset: int) -> tuple[str, ...]:
    return tuple(sorted(
        p.name for p in directory.glob("*.snapshot") if int(p.name.split(".")[0]) > offset
    ))


# --------------------------------------------------------------------------- nothing to do


def test_repair_plan_is_empty_and_changes_nothing_when_the_partition_is_healthy(
    tmp_path: Path,
) -> None:
    p = tmp_path / "p"
    _build(p)
    before = _files(p)

    plan = plan_repair(FileSystem(), str(p))
    carry_out_repair(FileSystem(), str(p), plan, CONFIG)

    assert not plan.needed
    assert (plan.reasons, plan.losses, plan.remove) == ((), (), ())
    assert (plan.recovery_point, plan.log_end_offset) == (90, 90)
    assert _files(p) == before


def test_repair_leaves_a_torn_tail_past_the_recovery_point_to_the_open(tmp_path: Path) -> None:
    p = tmp_path / "p"
    _build(p, close=False)  # killed: the open rescans, and cuts what was never synced
    with open(_log_path(p, 60), "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x5a" + b"half a batch")
    before = _files(p)

    plan = plan_repair(FileSystem(), str(p))
    carry_out_repair(FileSystem(), str(p), plan, CONFIG)

    assert not plan.needed and plan.losses == ()
    assert _files(p) == before
    with _open(p) as log:
        assert log.log_end_offset == 90


# --------------------------------------------------------------------------- damage


def test_repair_cuts_a_damaged_synced_segment_at_its_last_good_batch_and_deletes_the_rest(
    tmp_path: Path,
) -> None:
    p = tmp_path / "p"
    _build(p)
    _flip(_log_path(p, 0), B + 70)  # a record byte of the second batch (offsets 10-19)
    stale = _snapshots_past(p, 10)
    with _open(p) as log, pytest.raises(CorruptRecordError):
        log.read_records(10)

    plan = plan_repair(FileSystem(), str(p))

    assert plan.needed and f"{_log_path(p, 0)} at position {B}" in plan.reasons[0]
    cut, *deleted = plan.losses
    assert cut._replace(problem=None) == SegmentLoss(
        str(_log_path(p, 0)), 0, False, B, 3 * B, 10, 30, 1, 10, B, None
    )
    assert cut.problem is not None and "CRC" in cut.problem
    assert deleted == [
        SegmentLoss(str(_log_path(p, 30)), 30, True, 0, 3 * B, 30, 60, 3, 30, 0, None),
        SegmentLoss(str(_log_path(p, 60)), 60, True, 0, 3 * B, 60, 90, 3, 30, 0, None),
    ]
    assert (plan.recovery_point, plan.log_end_offset, plan.lost_end) == (90, 10, 90)
    assert (plan.records, plan.damaged_bytes) == (70, B)
    assert stale and plan.remove == stale

    carry_out_repair(FileSystem(), str(p), plan, CONFIG)

    assert sorted(x.name for x in p.glob("*.log")) == [_log_path(p, 0).name]
    assert _log_path(p, 0).stat().st_size == B
    assert _snapshots_past(p, 10) == ()
    _assert_repaired_to(p, 10)


def test_repair_of_a_log_cut_short_at_a_batch_boundary_only_moves_the_recovery_point(
    tmp_path: Path,
) -> None:
    p = tmp_path / "p"
    _build(p)
    _truncate(_log_path(p, 60), 2 * B)  # offsets 80-89 gone
    with pytest.raises(CorruptRecordError, match="records are missing"):
        _open(p)

    plan = plan_repair(FileSystem(), str(p))

    assert plan.needed and plan.losses == ()
    assert (plan.recovery_point, plan.log_end_offset, plan.lost_end) == (90, 80, 90)
    _repair(p)
    _assert_repaired_to(p, 80)


def test_repair_counts_a_torn_batch_below_the_recovery_point_as_damaged_bytes(
    tmp_path: Path,
) -> None:
    p = tmp_path / "p"
    _build(p)
    _truncate(_log_path(p, 60), 2 * B + 20)  # the last batch cut after 20 of its bytes
    with pytest.raises(CorruptRecordError):
        _open(p)

    plan = plan_repair(FileSystem(), str(p))

    assert plan.losses[0]._replace(problem=None) == SegmentLoss(
        str(_log_path(p, 60)), 60, False, 2 * B, 2 * B + 20, 80, None, 0, 0, 20, None
    )
    assert len(plan.losses) == 1
    assert (plan.log_end_offset, plan.lost_end) == (80, 90)
    _repair(p)
    _assert_repaired_to(p, 80)


def test_repair_after_a_middle_segment_was_deleted_drops_the_segments_after_the_hole(
    tmp_path: Path,
) -> None:
    p = tmp_path / "p"
    _build(p)
    _log_path(p, 30).unlink()  # its indexes stay, as orphans

    plan = plan_repair(FileSystem(), str(p))

    assert plan.losses == (
        SegmentLoss(str(_log_path(p, 60)), 60, True, 0, 3 * B, 60, 90, 3, 30, 0, None),
    )
    assert (plan.recovery_point, plan.log_end_offset) == (90, 30)
    orphans = (f"{30:020d}.index", f"{30:020d}.timeindex")
    assert plan.remove == orphans + _snapshots_past(p, 30)
    _repair(p)
    assert not any((p / name).exists() for name in orphans)
    _assert_repaired_to(p, 30)


def test_repair_lowers_the_recovery_point_the_head_vouches_for(tmp_path: Path) -> None:
    p = tmp_path / "p"
    _build(p, close=False)  # the checkpoint says 60 (the last roll), the head 90
    _truncate(_log_path(p, 60), 2 * B)
    with pytest.raises(CorruptRecordError):
        _open(p)

    plan = plan_repair(FileSystem(), str(p))
    carry_out_repair(FileSystem(), str(p), plan, CONFIG)

    assert (plan.recovery_point, plan.log_end_offset) == (90, 80)
    head = unpack_head((p / HEAD_NAME).read_bytes()[:HEAD_SIZE])
    assert head is not None and head.recovery_point == 80
    _assert_repaired_to(p, 80)


# --------------------------------------------------------------------------- refusals


def test_repair_refuses_while_another_log_has_the_partition_open(tmp_path: Path) -> None:
    p = tmp_path / "p"
    _build(p)
    _flip(_log_path(p, 30), 70)  # a cleanly closed log opens; reads there fail
    plan = plan_repair(FileSystem(), str(p))

    with _open(p):
        before = _files(p)
        with pytest.raises(PartitionInUseError, match="open in another process"):
            plan_repair(FileSystem(), str(p))
        with pytest.raises(PartitionInUseError):
            carry_out_repair(FileSystem(), str(p), plan, CONFIG)
        assert _files(p) == before

    carry_out_repair(FileSystem(), str(p), plan, CONFIG)
    _assert_repaired_to(p, 30)


def test_repair_refuses_a_plan_the_files_no_longer_match(tmp_path: Path) -> None:
    p = tmp_path / "p"
    _build(p)
    _flip(_log_path(p, 30), B + 70)
    plan = plan_repair(FileSystem(), str(p))
    _flip(_log_path(p, 0), 70)  # more damage since the plan
    before = _files(p)

    with pytest.raises(RepairPlanChangedError, match="plan the repair again"):
        carry_out_repair(FileSystem(), str(p), plan, CONFIG)

    assert _files(p) == before
    _repair(p)
    _assert_repaired_to(p, 0)


# --------------------------------------------------------------------------- crashes


def _checkpoint_of(directory: Path) -> bytes | None:
    path = directory / "checkpoint"
    return path.read_bytes() if path.exists() else None


def test_repair_cut_by_a_power_loss_at_any_point_leaves_the_loss_reported_or_repaired(
    tmp_path: Path,
) -> None:
    """Every state a power cut can leave during a repair: before its checkpoint is
    durable, the loss is still reported (the partition refuses, or opens as it was,
    never silently shorter) and a second repair finishes it; after, it opens repaired."""
    scratch = scratch_root(str(tmp_path))
    try:
        live = os.path.join(scratch, "live")
        os.mkdir(live)
        p = Path(live) / "p"
        _build(p)
        _flip(_log_path(p, 0), B + 70)
        plan = plan_repair(FileSystem(), str(p))
        recording = RecordingFS(live)
        carry_out_repair(recording, str(p), plan, CONFIG)
        done = _checkpoint_of(p)
        states = CrashModel(recording.baseline, recording.trace).distinct_states().values()
        outcomes = {"reported": 0, "repaired": 0}
        for n, state in enumerate(states):
            directory = os.path.join(scratch, f"state-{n}")
            state.write(directory)
            q = Path(directory) / "p"
            try:
                if _checkpoint_of(q) == done:
                    outcomes["repaired"] += 1
                else:
                    outcomes["reported"] += 1
                    assert plan_repair(FileSystem(), str(q)).needed, state.where
                    try:
                        with _open(q) as log:
                            assert log.log_end_offset == 90, state.where
                    except CorruptRecordError:
                        pass
                    _repair(q)
                _assert_repaired_to(q, 10)
            finally:
                remove_tree(directory)
    finally:
        remove_tree(scratch)
    assert outcomes["reported"] and outcomes["repaired"], outcomes
