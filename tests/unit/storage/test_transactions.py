"""Transactions in a partition log (KIP-98; kafka.md §1.4, §5.2): transactional batches
open a producer's transaction, markers close it; the last stable offset; read_committed
reads skip aborted records and stop at the LSO; fencing by a marker's newer epoch; the
state across reopen (snapshots) and in a second log object on the directory (another
process); control batches refused from clients.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from logstore.config import TopicConfig
from logstore.errors import InvalidProducerEpochError, InvalidRecordError
from logstore.records import scan
from logstore.records.batch import encode_batch
from logstore.records.control import ControlType, control_type, encode_marker
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.storage.producers import ProducerState, read_snapshot
from tests.conftest import FakeClock

T0 = 1_700_000_000_000


def _log(directory: Path, **changes: object) -> PartitionLog:
    config = TopicConfig(flush="never").replace(**changes)
    return PartitionLog(str(directory), config, fs=FileSystem(), clock=FakeClock(T0))


class Txn:
    """One transactional producer writing to a log."""

    def __init__(self, log: PartitionLog, pid: int, epoch: int = 0) -> None:
        self.log, self.pid, self.epoch, self.sequence = log, pid, epoch, 0

    def send(self, *values: bytes) -> int:
        records = [(T0, b"k", v, ()) for v in values]
        result = self.log.append_records(
            records, producer_id=self.pid, producer_epoch=self.epoch,
            base_sequence=self.sequence, transactional=True,
        )
        self.sequence += len(values)
        return result.base_offset

    def end(self, *, commit: bool) -> int:
        return self.log.append_marker(self.pid, self.epoch, commit=commit).base_offset


def _plain(log: PartitionLog, *values: bytes) -> int:
    return log.append_records([(T0, None, v, ()) for v in values]).base_offset


def _committed(log: PartitionLog, offset: int = 0) -> list[bytes | None]:
    out: list[bytes | None] = []
    while True:
        got = log.read_committed(offset, max_bytes=64)
        if not got:
            return out
        out += [r.value for r in got]
        offset = got[-1].offset + 1


def test_marker_round_trip() -> None:
    for commit in (True, False):
        data = encode_marker(5, 2, commit=commit, coordinator_epoch=7, timestamp=T0)
        (header,) = scan(data)
        assert header.is_control and header.is_transactional
        assert (header.producer_id, header.producer_epoch, header.base_sequence) == (5, 2, -1)
        expected = ControlType.COMMIT if commit else ControlType.ABORT
        assert control_type(data, header) == expected


def test_the_lso_stops_at_an_open_transaction_and_moves_on_at_its_marker(
    tmp_path: Path,
) -> None:
    with _log(tmp_path) as log:
        _plain(log, b"a")
        t = Txn(log, 1)
        first = t.send(b"t1")
        _plain(log, b"b")
        assert log.last_stable_offset() == first
        assert _committed(log) == [b"a"]
        assert [r.value for r in log.read_records(0)] == [b"a", b"t1", b"b"]  # uncommitted
        t.send(b"t2")
        t.end(commit=True)
        assert log.last_stable_offset() == log.log_end_offset
        assert _committed(log) == [b"a", b"t1", b"b", b"t2"]


def test_aborted_records_are_skipped_but_others_interleaved_are_not(tmp_path: Path) -> None:
    with _log(tmp_path) as log:
        a, b = Txn(log, 1), Txn(log, 2)
        a.send(b"a1")
        b.send(b"b1")
        _plain(log, b"p")
        a.send(b"a2")
        b.end(commit=True)   # b's marker; a still open: LSO at a1
        assert _committed(log) == []
        a.end(commit=False)
        b.send(b"b2")
        b.end(commit=False)
        a.send(b"a3")
        a.end(commit=True)
        assert _committed(log) == [b"b1", b"p", b"a3"]
        for start in range(log.log_end_offset):  # from every offset, as a reader resumes
            expected = [r.value for r in log.read_records(start)
                        if r.value in (b"b1", b"p", b"a3")]
            assert _committed(log, start) == expected


def test_a_marker_whose_abort_lies_past_the_lso_is_found(tmp_path: Path) -> None:
    with _log(tmp_path, segment_bytes=200) as log:  # many segments: the scan crosses them
        a, b = Txn(log, 1), Txn(log, 2)
        a.send(b"a1")
        for i in range(20):
            _plain(log, b"p%d" % i)
        b.send(b"b1")  # opens before a's marker
        a.end(commit=False)
        assert log.last_stable_offset() == 21
        assert _committed(log) == [b"p%d" % i for i in range(20)]
        fetched = log.read_stable(0, 1 << 20)
        assert fetched.last_stable_offset == 21
        assert list(fetched.aborted) == [(1, 0)]  # its marker is at 22, past the LSO
        offsets = [h.base_offset for h in scan(fetched.records)]
        assert offsets[0] == 0 and offsets[-1] < 21  # from the first segment only, as Kafka


def test_read_stable_gives_the_lso_and_the_aborted_transactions(tmp_path: Path) -> None:
    with _log(tmp_path) as log:
        a = Txn(log, 9)
        a.send(b"x", b"y")
        a.end(commit=False)
        _plain(log, b"z")
        got = log.read_stable(0, 1 << 20)
        assert got.last_stable_offset == log.log_end_offset == 4
        assert list(got.aborted) == [(9, 0)]
        assert [h.base_offset for h in scan(got.records)] == [0, 2, 3]


def test_a_marker_with_a_newer_epoch_fences_the_older_producer(tmp_path: Path) -> None:
    with _log(tmp_path) as log:
        old = Txn(log, 4, epoch=0)
        old.send(b"x")
        log.append_marker(4, 1, commit=False)  # the coordinator aborts with a bumped epoch
        with pytest.raises(InvalidProducerEpochError):
            old.send(b"zombie")
        with pytest.raises(InvalidProducerEpochError):
            log.append_marker(4, 0, commit=True)
        new = Txn(log, 4, epoch=1)
        new.send(b"fresh")
        new.end(commit=True)
        assert _committed(log) == [b"fresh"]


def test_a_marker_for_a_producer_never_seen_fences_its_older_epochs(tmp_path: Path) -> None:
    with _log(tmp_path) as log:
        log.append_marker(8, 3, commit=False)
        with pytest.raises(InvalidProducerEpochError):
            Txn(log, 8, epoch=2).send(b"late")
        Txn(log, 8, epoch=3).send(b"ok")


def test_open_transactions_survive_a_reopen_and_a_second_log_object(tmp_path: Path) -> None:
    with _log(tmp_path, segment_bytes=150) as log:
        _plain(log, b"a")
        Txn(log, 1).send(b"t")
        for i in range(10):
            _plain(log, b"p%d" % i)  # rolls: snapshots with the open transaction
        lso = log.last_stable_offset()
        assert lso == 1
        with _log(tmp_path, segment_bytes=150) as other:  # another process, reading
            assert other.last_stable_offset() == 1
            assert _committed(other) == [b"a"]
    snapshots = sorted(tmp_path.glob("*.snapshot"))
    assert snapshots
    state = read_snapshot(FileSystem(), str(tmp_path), int(snapshots[-1].stem))
    assert state.ongoing == {1: 1}
    with _log(tmp_path, segment_bytes=150) as log:
        assert log.last_stable_offset() == 1
        log.append_marker(1, 0, commit=True)
        assert log.last_stable_offset() == log.log_end_offset
        assert _committed(log)[:2] == [b"a", b"t"]


def test_clients_cannot_append_control_batches(tmp_path: Path) -> None:
    with _log(tmp_path) as log, pytest.raises(InvalidRecordError, match="control batch"):
        log.append_batches(encode_marker(1, 0, commit=True, timestamp=T0))


def test_a_transactional_batch_needs_a_producer_id_and_sequence(tmp_path: Path) -> None:
    with _log(tmp_path) as log:
        data = encode_batch([(T0, None, b"v", ())], is_transactional=True)
        with pytest.raises(InvalidRecordError, match="transactional"):
            log.append_batches(data)


def test_snapshot_encodes_open_transactions_and_old_snapshots_still_decode() -> None:
    state = ProducerState(10)
    state.producers.clear()
    data = encode_batch([(T0, None, b"v", ())], producer_id=3, producer_epoch=0,
                        base_sequence=0, is_transactional=True, base_offset=4)
    (header,) = scan(data)
    state.append(header)
    state.end_offset = 10
    again = ProducerState.decode(state.encode(), 10, "p")
    assert again.ongoing == {3: 4}
    old = b'{"offset":10,"producers":[]}'
    assert ProducerState.decode(old, 10, "p").ongoing == {}
