"""The recovery plan as a pure function (``logstore/storage/plan.py``): listings, a
checkpoint, a recovery point and segment scans in, a plan out; no files."""

from __future__ import annotations

from logstore.storage.batches import StopReason, WalkStop
from logstore.storage.checkpoint import Checkpoint
from logstore.storage.listing import read_listing
from logstore.storage.plan import CORRUPT, REPAIR, Action, plan_recovery
from logstore.storage.segment import SegmentScan

D = "/p/t-0"
NAMES = [f"{b:020d}{s}" for b in (0, 10, 20) for s in (".log", ".index", ".timeindex")]
WHOLE = {0: SegmentScan(100, 100, 10, None), 10: SegmentScan(100, 100, 20, None),
         20: SegmentScan(50, 50, 25, None)}
TORN = WalkStop(StopReason.INCOMPLETE, 60, "incomplete record batch (40 bytes at the end)")


def _actions(plan) -> list[tuple[int, Action, int | None]]:
    return [(s.base_offset, s.action, s.cut_at) for s in plan.segments]


def test_a_clean_shutdown_keeps_everything_without_a_scan() -> None:
    plan = plan_recovery(D, read_listing(NAMES), Checkpoint(25, 0, True), 25, {})

    assert _actions(plan) == [(0, Action.KEEP, None), (10, Action.KEEP, None),
                              (20, Action.KEEP, None)]
    assert plan.error is None and plan.findings == ()


def test_a_torn_tail_past_the_recovery_point_is_cut_and_later_segments_deleted() -> None:
    scans = {**WHOLE, 10: SegmentScan(100, 60, 15, TORN)}

    plan = plan_recovery(D, read_listing(NAMES), Checkpoint(12, 0, False), 12, scans)

    assert _actions(plan) == [(0, Action.KEEP, None), (10, Action.CUT, 60),
                              (20, Action.DELETE, None)]
    assert plan.error is None
    assert [f.kind for f in plan.findings] == [REPAIR, REPAIR]


def test_the_same_damage_below_the_recovery_point_is_refused_and_nothing_changes() -> None:
    scans = {**WHOLE, 10: SegmentScan(100, 60, 15, TORN)}

    plan = plan_recovery(D, read_listing(NAMES), Checkpoint(18, 0, False), 18, scans)

    assert plan.error is not None and plan.error.position == 60
    assert {s.action for s in plan.segments} == {Action.KEEP}
    assert [f.kind for f in plan.findings] == [CORRUPT]


def test_a_gap_between_segments_is_legal_only_after_a_segment_that_declares_gaps() -> None:
    scans = {**WHOLE, 0: SegmentScan(100, 100, 8, None)}  # ends at 8, the next base is 10
    no_cp = None

    normal = plan_recovery(D, read_listing(NAMES), no_cp, 0, scans)
    declared = plan_recovery(D, read_listing([*NAMES, f"{0:020d}.gaps"]), no_cp, 0, scans)

    assert _actions(normal)[1:] == [(10, Action.DELETE, None), (20, Action.DELETE, None)]
    assert _actions(declared) == [(0, Action.REBUILD, None), (10, Action.REBUILD, None),
                                  (20, Action.REBUILD, None)]


def test_leftovers_and_orphans_are_removed() -> None:
    names = [*NAMES, "~checkpoint.tmp", f"{30:020d}.index", f"{40:020d}.gaps", "notes.tmp"]

    plan = plan_recovery(D, read_listing(names), Checkpoint(25, 0, True), 25, {})

    assert sorted(plan.remove) == sorted(
        ["~checkpoint.tmp", f"{30:020d}.index", f"{40:020d}.gaps"]
    )
