"""The log cleaner (``logstore/storage/compaction.py``, ``compacting.py``, ``swap.py``):
what a run keeps, when it runs, how its swap survives crashes, and how other readers of
the partition (another PartitionLog on the directory stands for another process: its
flocks are its own) follow it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from logstore.config import TopicConfig
from logstore.records.batch import encode_batch, scan
from logstore.storage import compacting, swap
from logstore.storage.compaction import CleanerProgress, read_progress, write_progress
from logstore.storage.files import DEFAULT_FS
from logstore.storage.listing import CLEANER_LOCK_NAME, read_listing
from logstore.storage.log import PartitionLog
from logstore.storage.verify import verify_partition
from logstore.types import Record
from tests.conftest import FakeClock

T0 = 1_700_000_000_000
DAY = 24 * 3600 * 1000


def compacted(**changes: object) -> TopicConfig:
    base = {"cleanup_policy": "compact", "segment_bytes": 300, "index_interval_bytes": 1}
    base.update(changes)
    return TopicConfig().replace(**base)


def put(log: PartitionLog, clock: FakeClock, key: bytes | None, value: bytes | None) -> int:
    clock.advance(1)
    return log.append_records([(clock.now, key, value, ())]).base_offset


def read_all(log: PartitionLog) -> list[Record]:
    out: list[Record] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        records = log.read_records(offset)
        if not records:
            break
        out += records
        offset = records[-1].offset + 1
    offsets = [r.offset for r in out]
    assert offsets == sorted(set(offsets)), "offsets must strictly increase"
    return out


def table(log: PartitionLog) -> dict[bytes | None, bytes | None]:
    return {r.key: r.value for r in read_all(log)}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def fill(log: PartitionLog, clock: FakeClock, writes: int, keys: int) -> dict[bytes, int]:
    """``writes`` updates over ``keys`` keys; the offset of each key's last write."""
    last: dict[bytes, int] = {}
    for i in range(writes):
        key = b"k%d" % (i % keys)
        last[key] = put(log, clock, key, b"v%d-" % i + b"x" * (i % 7))
    return last


def test_a_run_keeps_the_latest_record_per_key_at_its_offset(tmp_path: Path, clock: FakeClock):
    log = PartitionLog(str(tmp_path / "p"), compacted(), clock=clock)
    last = fill(log, clock, 200, 7)
    before = {r.offset: r for r in read_all(log)}
    active_base = log.active_segment.base_offset
    stats = log.compact()
    assert stats is not None and stats.records_in > stats.records_out
    kept = read_all(log)
    for r in kept:
        assert before[r.offset] == r  # same offset, key, value, timestamp, headers
    sealed = [r for r in kept if r.offset < active_base]
    # below the active segment, only each key's latest record there stays (the active
    # segment is not mapped: a newer value in it does not remove the older one yet)
    latest_sealed = {r.key: r.offset for r in before.values() if r.offset < active_base}
    assert {r.offset for r in sealed} == set(latest_sealed.values())
    assert [r.offset for r in kept if r.offset >= active_base] == list(
        range(active_base, log.log_end_offset)
    )  # the active segment is never cleaned
    assert table(log) == {k: before[o].value for k, o in last.items()}
    assert log.log_end_offset == 200
    assert stats.bytes_out < stats.bytes_in and stats.segments_out < stats.segments_in
    log.close()
    reopened = PartitionLog(str(tmp_path / "p"), compacted(), clock=clock)
    assert read_all(reopened) == kept
    assert verify_partition(DEFAULT_FS, str(tmp_path / "p")).ok
    reopened.close()


def test_batches_keep_their_offsets_and_whole_ones_their_bytes(tmp_path: Path, clock: FakeClock):
    log = PartitionLog(str(tmp_path / "p"), compacted(segment_bytes=10_000), clock=clock)
    old = [(T0, b"a", b"1", ()), (T0, b"b", b"1", ()), (T0, b"c", b"1", ())]
    log.append_records(old)  # offsets 0-2: a and c get newer values below
    untouched = [(T0, b"d", b"1", ()), (T0, b"e", b"1", ())]
    log.append_records(untouched)  # 3-4: stay whole
    log.append_records([(T0, b"a", b"2", ()), (T0, b"c", b"2", ())])  # 5-6
    raw_before = log.read(3).records
    log.roll()
    log.compact(force=True)
    data = log.read(0).records
    headers = list(scan(data, verify=True))
    assert [(h.base_offset, h.last_offset_delta, h.records_count) for h in headers] == [
        (0, 2, 1), (3, 1, 2), (5, 1, 2)
    ]
    first = next(scan(raw_before))
    assert data[headers[1].position : headers[1].position + headers[1].size] == (
        raw_before[: first.size]
    )
    assert [(r.offset, r.key) for r in read_all(log)] == [
        (1, b"b"), (3, b"d"), (4, b"e"), (5, b"a"), (6, b"c")
    ]
    assert log.read_records(0)[0].offset == 1  # a read inside a gap gets the next record
    log.close()


def test_tombstones_stay_for_delete_retention_then_go(tmp_path: Path, clock: FakeClock):
    log = PartitionLog(str(tmp_path / "p"), compacted(delete_retention_ms=DAY), clock=clock)
    put(log, clock, b"a", b"1")
    put(log, clock, b"b", b"1")
    put(log, clock, b"a", None)
    log.roll()
    log.compact(force=True)
    assert [(r.key, r.value) for r in read_all(log)] == [(b"b", b"1"), (b"a", None)]
    clock.advance(DAY + 1)
    stats = log.compact(force=True)
    assert stats is not None and stats.tombstones_removed == 1
    assert [(r.key, r.value) for r in read_all(log)] == [(b"b", b"1")]
    log.close()


def test_keyless_records_go_and_control_and_transactional_batches_stay_whole(
    tmp_path: Path, clock: FakeClock
):
    # written while the topic was cleanup_policy=delete, then altered to compact
    log = PartitionLog(
        str(tmp_path / "p"), compacted(segment_bytes=10_000, cleanup_policy="delete"),
        clock=clock,
    )
    put(log, clock, None, b"no key")
    log.reconfigure(compacted(segment_bytes=10_000))
    txn = encode_batch([(T0, b"t", b"1", ()), (T0, b"t", b"2", ())], is_transactional=True,
                       producer_id=5, producer_epoch=0, base_sequence=0)
    log.append_batches(txn)  # 1-2: kept whole, duplicate key included
    log.append_marker(5, 0, commit=False)  # 3
    put(log, clock, b"t", b"3")  # 4: newer than the transaction's, which stays anyway
    log.roll()
    log.compact(force=True)
    headers = list(scan(log.read(0).records, verify=True))
    assert [(h.base_offset, h.records_count, h.is_control) for h in headers] == [
        (1, 2, False), (3, 1, True), (4, 1, False)
    ]
    log.close()


def test_a_compacted_log_refuses_records_without_a_key(tmp_path: Path, clock: FakeClock):
    from logstore.errors import InvalidRecordError

    log = PartitionLog(str(tmp_path / "p"), compacted(), clock=clock)
    with pytest.raises(InvalidRecordError, match=r"no key.*compacted"):
        log.append_records([(T0, b"k", b"1", ()), (T0, None, b"2", ())])
    with pytest.raises(InvalidRecordError, match="no key"):
        log.append_batches(encode_batch([(T0, None, b"x", ())]))
    assert log.log_end_offset == 0
    put(log, clock, b"k", None)  # a tombstone has a key: fine
    log.close()


def test_the_active_segment_and_young_segments_are_not_cleaned(tmp_path: Path, clock: FakeClock):
    lag = 60_000
    log = PartitionLog(str(tmp_path / "p"), compacted(min_compaction_lag_ms=lag), clock=clock)
    fill(log, clock, 60, 3)
    assert len(log.segments) > 2
    state = log.compaction_state()
    assert state.cleanable_end == 0 and not state.due  # everything is younger than the lag
    assert log.compact(force=True) is None
    clock.advance(lag + 1)
    state = log.compaction_state()
    assert state.cleanable_end == log.active_segment.base_offset and state.due
    assert log.compact() is not None
    log.close()


def test_the_dirty_ratio_decides_and_force_overrides(tmp_path: Path, clock: FakeClock):
    log = PartitionLog(
        str(tmp_path / "p"), compacted(min_cleanable_dirty_ratio=0.9, segment_bytes=2000),
        clock=clock,
    )
    for i in range(60):  # unique keys: cleaning keeps everything, so the clean section grows
        put(log, clock, b"u%d" % i, b"x" * 20)
    log.roll()
    assert log.compact() is not None  # all dirty: ratio 1.0 > 0.9
    put(log, clock, b"u1", b"new")
    log.roll()
    state = log.compaction_state()
    assert 0 < state.dirty_ratio < 0.9 and not state.due
    assert log.compact() is None
    assert log.compact(force=True) is not None
    assert log.compaction_state().dirty_bytes == 0
    assert log.compaction_state().first_dirty_offset == log.active_segment.base_offset
    log.close()


def test_max_compaction_lag_makes_a_run_due_whatever_the_ratio(tmp_path: Path, clock: FakeClock):
    config = compacted(min_cleanable_dirty_ratio=1.0, max_compaction_lag_ms=10_000)
    log = PartitionLog(str(tmp_path / "p"), config, clock=clock)
    fill(log, clock, 40, 2)
    assert not log.compaction_state().due
    clock.advance(10_001)
    assert log.compaction_state().due
    assert log.compact() is not None
    log.close()


def test_retention_follows_the_policy(tmp_path: Path, clock: FakeClock):
    for policy, deletes in (("compact", False), ("compact,delete", True)):
        log = PartitionLog(
            str(tmp_path / policy), compacted(cleanup_policy=policy, retention_ms=1000),
            clock=clock,
        )
        fill(log, clock, 40, 40)
        clock.advance(5000)
        assert (log.apply_retention() > 0) == deletes
        log.close()


def test_progress_survives_a_reopen_and_damage_only_costs_a_full_run(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    d = str(tmp_path / "p")
    log = PartitionLog(d, compacted(), clock=clock)
    fill(log, clock, 100, 5)
    stats = log.compact()
    assert stats is not None
    state = log.compaction_state()
    log.close()
    log = PartitionLog(d, compacted(), clock=clock)
    again = log.compaction_state()
    assert (again.first_dirty_offset, again.runs, again.bytes_reclaimed) == (
        state.first_dirty_offset, 1, stats.bytes_in - stats.bytes_out
    )
    with open(os.path.join(d, "cleaner.checkpoint"), "r+b") as f:
        f.seek(20)
        f.write(b"garbage")
    with caplog.at_level(logging.WARNING):
        assert log.compaction_state().first_dirty_offset == 0
    assert "damaged" in caplog.text
    assert log.compact(force=True) is not None  # everything cleaned again, nothing lost
    log.close()


def test_a_progress_past_the_log_end_is_moved_back_on_open(tmp_path: Path, clock: FakeClock):
    d = str(tmp_path / "p")
    log = PartitionLog(d, compacted(), clock=clock)
    fill(log, clock, 10, 2)
    log.close()
    write_progress(DEFAULT_FS, d, CleanerProgress(first_dirty_offset=500, runs=3))
    log = PartitionLog(d, compacted(), clock=clock)
    assert read_progress(DEFAULT_FS, d).first_dirty_offset == 0
    log.close()


def test_one_cleaner_at_a_time(tmp_path: Path, clock: FakeClock):
    d = str(tmp_path / "p")
    log = PartitionLog(d, compacted(), clock=clock)
    fill(log, clock, 60, 3)
    other = DEFAULT_FS.lock_file(os.path.join(d, CLEANER_LOCK_NAME))
    assert other.acquire(blocking=False)  # another process is cleaning
    assert log.compact(force=True) is None
    other.close()
    assert log.compact(force=True) is not None
    log.close()


def test_another_process_reads_across_a_swap(tmp_path: Path, clock: FakeClock):
    d = str(tmp_path / "p")
    writer = PartitionLog(d, compacted(), clock=clock)
    last = fill(writer, clock, 150, 4)
    reader = PartitionLog(d, compacted(), clock=clock)
    before = read_all(reader)  # its sealed segments are open and their state cached
    half = before[len(before) // 2].offset
    assert writer.compact() is not None
    after = read_all(reader)
    assert {r.key: r.value for r in after} == {r.key: r.value for r in before}
    assert {r.offset for r in after} < {r.offset for r in before}
    assert set(last.values()) <= {r.offset for r in after}
    resumed = reader.read_records(half)  # a consumer resuming mid-way
    assert resumed and resumed[0].offset >= half
    assert reader.compaction_state().runs == 1
    reader.close()
    writer.close()


def kill_cleaner_at(log: PartitionLog, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the cleaner until it reaches ``step`` (``commit_swap`` or ``complete_swap``)
    and die there, as a killed process: the log abandoned, its flocks released."""

    def die(fs: object, directory: str, s: swap.Swap) -> None:
        raise KeyboardInterrupt(f"killed at {step}")

    with monkeypatch.context() as mp:
        mp.setattr(compacting, step, die)
        with pytest.raises(KeyboardInterrupt):
            log.compact()
    log._abandon()


def test_recovery_finishes_a_committed_swap(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    d = str(tmp_path / "p")
    log = PartitionLog(d, compacted(), clock=clock)
    fill(log, clock, 120, 4)
    expected = table(log)
    kill_cleaner_at(log, "complete_swap", monkeypatch)
    listing = read_listing(os.listdir(d))
    assert listing.swaps  # committed, not completed
    reopened = PartitionLog(d, compacted(), clock=clock)
    listing = read_listing(os.listdir(d))
    assert not listing.swaps and not any(n.endswith(".cleaned") for n in os.listdir(d))
    assert table(reopened) == expected
    assert verify_partition(DEFAULT_FS, d).ok
    reopened.close()


def test_an_uncommitted_cleaning_leaves_the_log_as_it_was(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    d = str(tmp_path / "p")
    log = PartitionLog(d, compacted(), clock=clock)
    fill(log, clock, 120, 4)
    before = read_all(log)
    kill_cleaner_at(log, "commit_swap", monkeypatch)
    assert any(n.endswith(".cleaned") for n in os.listdir(d))
    reopened = PartitionLog(d, compacted(), clock=clock)
    assert not any(n.endswith(".cleaned") for n in os.listdir(d))
    assert read_all(reopened) == before
    reopened.close()


def test_a_swap_left_by_a_dead_cleaner_is_finished_by_a_reader(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    d = str(tmp_path / "p")
    writer = PartitionLog(d, compacted(), clock=clock)
    fill(writer, clock, 120, 4)
    reader = PartitionLog(d, compacted(), clock=clock)  # keeps the partition open
    expected = table(reader)
    reader.close()
    reader = PartitionLog(d, compacted(), clock=clock)  # nothing opened or cached yet
    kill_cleaner_at(writer, "complete_swap", monkeypatch)  # its cleaner lock goes with it
    monkeypatch.setattr("logstore.storage.sharing._FOLLOW_TIMEOUT_S", 0.05)
    assert table(reader) == expected
    assert not read_listing(os.listdir(d)).swaps
    reader.close()


def test_a_read_only_open_reads_a_pending_swap_without_finishing_it(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    from logstore.storage.readonly import ReadOnlyFileSystem

    d = str(tmp_path / "p")
    log = PartitionLog(d, compacted(), clock=clock)
    fill(log, clock, 120, 4)
    expected = table(log)
    real = swap.complete_swap
    calls = []

    def half(fs: object, directory: str, s: swap.Swap) -> None:
        calls.append(s)
        raise KeyboardInterrupt("killed after the commit")

    monkeypatch.setattr(compacting, "complete_swap", half)
    with pytest.raises(KeyboardInterrupt):
        log.compact()
    log._abandon()
    names = sorted(os.listdir(d))
    ro = PartitionLog(d, compacted(), fs=ReadOnlyFileSystem(DEFAULT_FS, str(tmp_path)), clock=clock)
    assert table(ro) == expected
    assert sorted(os.listdir(d)) == names
    ro.close()
    assert calls and real is swap.complete_swap


# ---------------------------------------------------------------- bugs the model test found


def test_a_read_starting_in_a_gap_at_a_cleaned_batchs_end_goes_on_to_later_records(
    tmp_path: Path, clock: FakeClock
):
    log = PartitionLog(str(tmp_path / "p"), compacted(delete_retention_ms=0), clock=clock)
    log.append_records([(T0, b"a", b"1", ()), (T0, b"b", None, ())])  # b's tombstone goes
    log.roll()
    log.append_records([(T0, b"c", b"1", ())])
    clock.advance(1)
    log.compact(force=True)
    assert [r.offset for r in read_all(log)] == [0, 2]
    assert [r.offset for r in log.read_records(1)] == [2]  # was [] (a consumer stalled)
    assert [r.offset for r in log.read_records(1, max_records=1)] == [2]
    log.close()


def test_a_segment_cleaned_empty_does_not_stop_later_runs(tmp_path: Path, clock: FakeClock):
    log = PartitionLog(str(tmp_path / "p"), compacted(delete_retention_ms=0), clock=clock)
    put(log, clock, b"x", None)
    log.roll()
    clock.advance(1)
    log.compact(force=True)
    assert log.segments[0].size == 0  # cleaned to nothing
    put(log, clock, b"a", b"1")
    put(log, clock, b"a", b"2")
    log.roll()
    stats = log.compact(force=True)
    assert stats is not None and stats.records_out == 1  # was refused: the empty one's
    assert [(r.key, r.value) for r in read_all(log)] == [(b"a", b"2")]  # identity unknown
    log.close()


def test_a_swap_that_fails_once_after_its_commit_is_finished_and_reads_go_on(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    log = PartitionLog(str(tmp_path / "p"), compacted(), clock=clock)
    fill(log, clock, 120, 4)
    expected = table(log)
    real = swap.complete_swap
    failures = []

    def once(fs: object, directory: str, s: swap.Swap) -> None:
        if not failures:
            failures.append(s)
            from logstore.errors import StorageError

            raise StorageError("injected: rename failed", directory)
        real(fs, directory, s)  # type: ignore[arg-type]

    monkeypatch.setattr(compacting, "complete_swap", once)
    assert log.compact() is not None
    assert failures and not log.failed
    assert table(log) == expected
    assert not read_listing(os.listdir(str(tmp_path / "p"))).swaps
    log.close()


def _pending_swap(d: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> dict[
    bytes | None, bytes | None
]:
    """A partition whose cleaner died right after committing its first swap."""
    log = PartitionLog(d, compacted(), clock=clock)
    fill(log, clock, 120, 4)
    expected = table(log)
    kill_cleaner_at(log, "complete_swap", monkeypatch)
    return expected


def test_verify_checks_a_pending_swap_as_the_next_open_will_see_it(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    d = str(tmp_path / "p")
    expected = _pending_swap(d, clock, monkeypatch)
    names = sorted(os.listdir(d))
    report = verify_partition(DEFAULT_FS, d)
    assert sorted(os.listdir(d)) == names  # verify changes nothing
    [finding] = report.findings  # the segments check out; the .cleaned files are no leftovers
    assert finding.kind == "repair" and "swap was committed but not finished" in finding.message
    log = PartitionLog(d, compacted(), clock=clock)
    assert table(log) == expected
    log.close()
    assert not verify_partition(DEFAULT_FS, d).findings


def test_repair_finishes_a_pending_swap_first_and_drops_nothing(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    from logstore.storage.repair import plan_repair

    d = str(tmp_path / "p")
    expected = _pending_swap(d, clock, monkeypatch)
    plan = plan_repair(DEFAULT_FS, d)
    assert not plan.needed
    assert not read_listing(os.listdir(d)).swaps
    log = PartitionLog(d, compacted(), clock=clock)
    assert table(log) == expected
    log.close()
