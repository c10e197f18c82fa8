"""Idempotent producers in a partition log (logstore.storage.producing, log.py's append;
kafka.md §1.8, §5.1): duplicates of the last 5 batches, refused epochs and sequences
(nothing written), the state across clean and unclean reopens, rolls, retention and
damaged snapshots, two logs on one directory (as two processes), and the bounds: lazy
loading, the snapshot interval, the replay of a log without snapshots.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from logstore.config import TopicConfig
from logstore.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    OutOfOrderSequenceError,
    ProducerStateError,
)
from logstore.records.batch import encode_batch
from logstore.storage import log as log_module
from logstore.storage import producing
from logstore.storage.checkpoint import Checkpoint, write_checkpoint
from logstore.storage.files import FileHandle, FileSystem
from logstore.storage.listing import snapshot_path
from logstore.storage.log import PartitionLog
from logstore.storage.plan import REPAIR
from logstore.storage.producers import (
    EXPIRATION_CHECK_INTERVAL_MS,
    PRODUCER_ID_EXPIRATION_MS,
    read_snapshot,
)
from logstore.storage.verify import verify_partition
from logstore.types import AppendResult
from tests.conftest import FakeClock

T0 = 1_700_000_000_000
PID = 77


def _log(
    directory: Path, clock: FakeClock | None = None, fs: FileSystem | None = None,
    **changes: object,
) -> PartitionLog:
    config = TopicConfig(flush="never").replace(**changes)
    return PartitionLog(str(directory), config, fs=fs or FileSystem(), clock=clock or FakeClock(T0))


def _send(
    log: PartitionLog, sequence: int, count: int = 1, *, pid: int = PID, epoch: int = 0,
    ts: int = T0,
) -> AppendResult:
    records = [(ts, None, b"s%d" % (sequence + i), ()) for i in range(count)]
    return log.append_records(
        records, producer_id=pid, producer_epoch=epoch, base_sequence=sequence
    )


def _values(log: PartitionLog) -> list[bytes | None]:
    values: list[bytes | None] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        records = log.read_records(offset, max_bytes=1 << 30)
        values += [r.value for r in records]
        offset = records[-1].offset + 1
    return values


def _snapshots(directory: Path) -> list[int]:
    return sorted(int(p.name.split(".")[0]) for p in directory.glob("*.snapshot"))


def _history(log: PartitionLog, batches: int = 7) -> list[AppendResult]:
    """Batches of 2 records with sequences 0-1, 2-3, ..."""
    return [_send(log, 2 * i, 2) for i in range(batches)]


def _unchanged(log: PartitionLog, directory: Path):  # type: ignore[no-untyped-def]
    before = (log.log_end_offset, log.size_bytes, sorted(os.listdir(directory)))
    return lambda: (log.log_end_offset, log.size_bytes, sorted(os.listdir(directory))) == before


# --------------------------------------------------------------------------- the checks


@pytest.mark.parametrize("back", range(5))
def test_a_retry_of_each_of_the_last_five_batches_returns_its_offsets_and_writes_nothing(
    tmp_path: Path, back: int
) -> None:
    log = _log(tmp_path / "p")
    written = _history(log)
    same = _unchanged(log, tmp_path / "p")
    i = len(written) - 1 - back

    retry = _send(log, 2 * i, 2)

    assert (retry.base_offset, retry.last_offset, retry.records_count) == (
        written[i].base_offset, written[i].last_offset, 2
    )
    assert same()
    assert _values(log) == [b"s%d" % n for n in range(14)]
    log.close()


def test_a_retry_older_than_five_batches_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    _history(log)
    same = _unchanged(log, tmp_path / "p")
    with pytest.raises(OutOfOrderSequenceError):
        _send(log, 2, 2)  # the 6th batch back
    assert same()
    log.close()


def test_an_out_of_order_sequence_is_refused_with_a_typed_error_and_nothing_written(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p")
    _history(log, 3)  # sequences 0..5
    same = _unchanged(log, tmp_path / "p")
    with pytest.raises(OutOfOrderSequenceError, match="sequence 7 does not follow 5") as info:
        _send(log, 7)
    assert info.value.kafka_code == 45 and info.value.producer_id == PID
    assert str(tmp_path / "p") in str(info.value)
    assert same()
    assert _send(log, 6).base_offset == 6  # the right one still goes in
    log.close()


def test_an_older_epoch_is_refused_and_a_new_epoch_must_start_at_zero(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    _send(log, 0, epoch=3)
    same = _unchanged(log, tmp_path / "p")
    with pytest.raises(InvalidProducerEpochError) as info:
        _send(log, 1, epoch=2)
    assert info.value.kafka_code == 47
    with pytest.raises(OutOfOrderSequenceError, match="new epoch 4"):
        _send(log, 1, epoch=4)
    assert same()
    assert _send(log, 0, epoch=4).base_offset == 1
    with pytest.raises(ProducerStateError):
        _send(log, 1, epoch=3)  # fenced now
    log.close()


def test_a_producer_the_partition_does_not_know_may_start_at_any_sequence(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    _send(log, 0)
    assert _send(log, 12_345, pid=PID + 1, epoch=9).base_offset == 1
    log.append_records([(T0, None, b"plain", ())])  # not idempotent: never checked
    log.append_records([(T0, None, b"plain", ())])
    assert log.log_end_offset == 4
    log.close()


def test_an_idempotent_batch_among_other_batches_is_refused_as_invalid(tmp_path: Path) -> None:
    log = _log(tmp_path / "p")
    plain = encode_batch([(T0, None, b"a", ())])
    mine = encode_batch([(T0, None, b"b", ())], producer_id=PID, producer_epoch=0, base_sequence=0)
    with pytest.raises(InvalidRecordError, match="must come alone"):
        log.append_batches(plain + mine)
    assert log.log_end_offset == 0
    assert log.append_batches(plain + plain).records_count == 2  # several plain ones: fine
    first = log.append_batches(mine)
    assert log.append_batches(mine) == first
    assert log.log_end_offset == 3
    log.close()


# --------------------------------------------------------------------------- persistence


def _check_remembered(log: PartitionLog, written: list[AppendResult]) -> None:
    """The producer of ``_history(written)`` is known as before: each of its last 5
    batches is a duplicate, a gap and an older epoch are refused, the next goes in."""
    end = log.log_end_offset
    for i in range(len(written) - 5, len(written)):
        retry = _send(log, 2 * i, 2)
        assert (retry.base_offset, retry.last_offset) == (
            written[i].base_offset, written[i].last_offset
        )
    with pytest.raises(OutOfOrderSequenceError):
        _send(log, 2 * len(written) + 1)
    with pytest.raises(InvalidProducerEpochError):
        _send(log, 2 * len(written), epoch=-1)
    assert log.log_end_offset == end
    assert _send(log, 2 * len(written)).base_offset == end


def test_the_state_survives_a_clean_close_and_reopen_and_the_open_reads_no_snapshot(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_bytes=300)
    written = _history(log, 9)
    log.close()

    fs = _ListingFS()
    again = _log(tmp_path / "p", fs=fs, segment_bytes=300)
    listed = fs.listings
    again.read(0)
    assert not any(p.endswith(".snapshot") for p in fs.opened) and fs.listings == listed

    _check_remembered(again, written)
    assert any(p.endswith(f"{written[-1].last_offset + 1:020d}.snapshot") for p in fs.opened)
    again.close()


def test_the_state_survives_a_crash_by_replaying_the_log_after_the_last_snapshot(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_bytes=300)
    written = _history(log, 9)
    log._abandon()  # killed: no snapshot at the log end
    assert _snapshots(tmp_path / "p")[-1] < log.log_end_offset

    again = _log(tmp_path / "p", segment_bytes=300)
    assert not again.was_clean
    _check_remembered(again, written)
    again.close()


def test_a_log_without_snapshots_replays_its_last_offsets_and_saves_a_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _log(tmp_path / "p")
    _send(log, 0, pid=1)  # offset 0: outside the replay window below
    written = _history(log, 6)  # offsets 1..12
    log.close()
    for offset in _snapshots(tmp_path / "p"):  # as an earlier logstore left it
        os.unlink(snapshot_path(str(tmp_path / "p"), offset))
    monkeypatch.setattr(producing, "MAX_REPLAY_WITHOUT_SNAPSHOT", 10)

    again = _log(tmp_path / "p")
    _check_remembered(again, written)  # its last 5 batches lie in the last 10 offsets
    assert _send(again, 500, pid=1).records_count == 1  # pid 1 is unknown: any sequence
    assert _snapshots(tmp_path / "p") == [13]  # saved at the first write
    again._abandon()


def test_each_roll_writes_a_snapshot_at_the_new_base_fsynced_before_the_dir_and_older_go(
    tmp_path: Path,
) -> None:
    fs = _ListingFS()
    log = _log(tmp_path / "p", fs=fs, segment_bytes=300, flush="always")
    _history(log, 12)
    bases = [s.base_offset for s in log.segments]
    assert len(bases) > 3
    # Kafka's rule: kept from the segment before the active one (and before the one
    # holding the recovery point, which flush "always" moves to each new base)
    assert _snapshots(tmp_path / "p") == bases[-2:]
    state = read_snapshot(FileSystem(), str(tmp_path / "p"), bases[-1])
    assert state.producers[PID].batches[-1].last_offset == bases[-1] - 1
    for base in bases[1:]:
        path = snapshot_path(str(tmp_path / "p"), base)
        tmp = str(Path(path).with_name(f"~{Path(path).name}.tmp"))
        i = fs.events.index(("rename", path))
        assert ("fsync", tmp) in fs.events[:i]
        assert ("fsync_dir", str(tmp_path / "p")) in fs.events[i:]
    log.close()


def test_with_flush_never_old_snapshots_stay_until_the_recovery_point_moves(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_bytes=300)
    written = _history(log, 12)
    bases = [s.base_offset for s in log.segments]
    assert _snapshots(tmp_path / "p") == bases  # a crash may rescan from offset 0
    log.flush()
    assert _snapshots(tmp_path / "p") == bases[-2:]
    _check_remembered(log, written)
    log.close()


def test_delete_records_deletes_the_snapshots_below_and_forgets_their_producers(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "p", segment_bytes=300)
    _send(log, 0, pid=1)  # only in the first segment
    written = _history(log, 12)
    bases = [s.base_offset for s in log.segments]
    assert len(bases) > 3 and _snapshots(tmp_path / "p")[:3] == bases[:3]
    assert bases[2] <= written[-5].base_offset

    log.delete_records(bases[2])

    assert log.segments[0].base_offset == bases[2]
    assert _snapshots(tmp_path / "p")[0] == bases[2]
    assert _send(log, 999, pid=1).records_count == 1  # forgotten: any sequence
    log.close()
    again = _log(tmp_path / "p", segment_bytes=300)
    _check_remembered(again, written)
    assert _send(again, 1000, pid=1).records_count == 1  # known again, from its new batch
    with pytest.raises(OutOfOrderSequenceError):
        _send(again, 5, pid=1)
    again.close()


def test_retention_by_time_deletes_snapshots_with_their_segments(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    log = _log(tmp_path / "p", clock, segment_bytes=300, retention_ms=60_000)
    for i in range(6):
        _send(log, i, pid=1, ts=T0 - 120_000)  # expired by retention
    written = [_send(log, 2 * i, 2) for i in range(6)]
    before = _snapshots(tmp_path / "p")
    assert log.apply_retention() >= 1
    first = log.segments[0].base_offset
    assert _snapshots(tmp_path / "p") == [o for o in before if o >= first]
    _check_remembered(log, written)
    log.close()


def test_a_damaged_snapshot_is_skipped_with_a_warning_removed_and_reported_by_verify(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = _log(tmp_path / "p", segment_bytes=300)
    written = _history(log, 9)
    log.close()
    newest = Path(snapshot_path(str(tmp_path / "p"), _snapshots(tmp_path / "p")[-1]))
    data = bytearray(newest.read_bytes())
    data[40] ^= 0x10
    newest.write_bytes(bytes(data))
    report = verify_partition(FileSystem(), str(tmp_path / "p"))
    assert [(f.path, f.kind) for f in report.findings] == [(str(newest), REPAIR)]

    again = _log(tmp_path / "p", segment_bytes=300)
    with caplog.at_level(logging.WARNING, logger="logstore.storage.log"):
        _check_remembered(again, written)
    assert "ignoring a damaged producer snapshot" in caplog.text
    assert not newest.exists() or newest.read_bytes() != bytes(data)  # gone (or rewritten
    again.close()  # by a roll since)
    assert verify_partition(FileSystem(), str(tmp_path / "p")).findings == []


def test_an_open_removes_snapshots_below_the_first_segment_and_past_the_log_end(
    tmp_path: Path,
) -> None:
    d = tmp_path / "p"
    log = _log(d, segment_bytes=300)
    written = _history(log, 9)
    first = log.segments[1].base_offset
    log.delete_records(first)
    end = log.log_end_offset
    log.close()
    copy = Path(snapshot_path(str(d), end)).read_bytes()
    below, past = snapshot_path(str(d), first - 1), snapshot_path(str(d), end + 40)
    Path(below).write_bytes(copy)  # as if retention was interrupted
    Path(past).write_bytes(copy)  # as if a crash lost the tail it covers
    write_checkpoint(FileSystem(), str(d), Checkpoint(0, first, clean=False))  # a crash
    report = verify_partition(FileSystem(), str(d))
    assert sorted(f.path for f in report.findings if "producer snapshot" in f.message) == [
        below, past
    ]

    again = _log(d, segment_bytes=300)
    assert not os.path.exists(below) and not os.path.exists(past)
    assert first in _snapshots(d) and end in _snapshots(d)
    _check_remembered(again, written)
    again.close()


# --------------------------------------------------------------------------- processes


def test_two_logs_on_one_directory_check_a_producer_against_each_others_batches(
    tmp_path: Path,
) -> None:
    a = _log(tmp_path / "p", segment_bytes=400)
    b = _log(tmp_path / "p", segment_bytes=400)
    first = _send(a, 0, 2)
    assert _send(b, 2, 2).base_offset == 2  # follows a's batch
    assert _send(b, 0, 2) == first
    assert _send(a, 2, 2).base_offset == 2  # a finds b's batch: a duplicate
    with pytest.raises(OutOfOrderSequenceError):
        _send(a, 7)
    for i in range(4, 30):  # alternating, across rolls
        _send(a if i % 2 else b, i)
    assert _send(b, 0, epoch=1).base_offset == 30
    with pytest.raises(InvalidProducerEpochError):
        _send(a, 1)  # fenced by b's new epoch
    assert a.log_end_offset == b.log_end_offset == 31
    assert len(a.segments) > 1
    a.close()
    b.close()
    again = _log(tmp_path / "p", segment_bytes=400)
    assert _send(again, 0, epoch=1).base_offset == 30  # the last batch, again
    again.close()


def test_a_log_far_behind_takes_a_newer_snapshot_instead_of_replaying_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producing, "SNAPSHOT_INTERVAL_BATCHES", 20)
    monkeypatch.setattr(log_module, "SNAPSHOT_INTERVAL_BATCHES", 20)
    fs = _ListingFS()
    a = _log(tmp_path / "p", fs=fs)
    b = _log(tmp_path / "p")
    _send(a, 0)
    for i in range(1, 200):
        _send(b, i)
    fs.preads.clear()
    assert _send(a, 200).base_offset == 200
    assert len([p for p in fs.preads if p.endswith(".log")]) < 40  # not 200 headers
    assert _send(a, 198).base_offset == 198  # b's batch: a duplicate
    with pytest.raises(OutOfOrderSequenceError):
        _send(a, 190)  # more than 5 batches back
    a.close()
    b.close()


def test_snapshots_every_interval_keep_one_inside_the_active_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producing, "SNAPSHOT_INTERVAL_BATCHES", 4)
    monkeypatch.setattr(log_module, "SNAPSHOT_INTERVAL_BATCHES", 4)
    log = _log(tmp_path / "p")
    for i in range(11):
        _send(log, i)
    # at the start of the append after every 4th batch (at a log end the head names)
    assert _snapshots(tmp_path / "p") == [0, 8]  # the one at 4 went
    log.append_records([(T0, None, b"plain", ())])  # plain batches count too
    assert _snapshots(tmp_path / "p") == [0, 8]
    for i in range(11, 14):  # offsets 12..14
        _send(log, i)
    assert _snapshots(tmp_path / "p") == [0, 12]
    log._abandon()
    again = _log(tmp_path / "p")
    with pytest.raises(OutOfOrderSequenceError):
        _send(again, 15)
    assert _send(again, 13).base_offset == 14  # a duplicate, found past the snapshot
    again.close()


def test_a_producer_silent_past_the_expiration_is_forgotten(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    log = _log(tmp_path / "p", clock)
    _send(log, 0, ts=T0)
    clock.advance(PRODUCER_ID_EXPIRATION_MS - 1)
    with pytest.raises(OutOfOrderSequenceError):
        _send(log, 5, ts=clock.now)
    _send(log, 1, ts=T0)  # still known: its last timestamp stays T0
    clock.advance(EXPIRATION_CHECK_INTERVAL_MS)
    assert _send(log, 5, ts=clock.now).base_offset == 2  # expired: a new producer
    log.close()
    clock.advance(PRODUCER_ID_EXPIRATION_MS)
    again = _log(tmp_path / "p", clock)
    assert _send(again, 100, ts=clock.now).base_offset == 3  # expired in the snapshot too
    again.close()


# --------------------------------------------------------------------------- helpers


class _ListingFS(FileSystem):
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.preads: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.listings = 0

    def _open(self, path: str, flags: int) -> int:
        self.opened.append(path)
        return super()._open(path, flags)

    def _pread(self, handle: FileHandle, size: int, position: int) -> bytes:
        self.preads.append(handle.path)
        return super()._pread(handle, size, position)

    def _fsync(self, handle: FileHandle) -> None:
        self.events.append(("fsync", handle.path))
        super()._fsync(handle)

    def _rename(self, src: str, dst: str) -> None:
        self.events.append(("rename", dst))
        super()._rename(src, dst)

    def _fsync_dir(self, path: str) -> None:
        self.events.append(("fsync_dir", path))
        super()._fsync_dir(path)

    def listdir(self, path: str) -> list[str]:
        self.listings += 1
        return super().listdir(path)
