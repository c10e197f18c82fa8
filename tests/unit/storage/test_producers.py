"""Idempotent producers' state, the pure part (logstore.storage.producers; kafka.md §5.1):
Kafka's checkProducerEpoch / checkSequence rules, the 5-batch duplicate window, the
sequence wrap, truncation at the log start, expiry, the producer cap, and the snapshot
payload and file. A hypothesis test drives random appends, retries, epoch bumps and
restarts against a plain model of the rules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.errors import (
    CorruptionError,
    InvalidProducerEpochError,
    LogstoreError,
    OutOfOrderSequenceError,
    ProducerStateError,
)
from logstore.storage.files import FileHandle, FileSystem
from logstore.storage.listing import is_leftover, is_partition_file, snapshot_path
from logstore.storage.producers import (
    EXPIRATION_CHECK_INTERVAL_MS,
    INT32_MAX,
    NUM_BATCHES_TO_RETAIN,
    PRODUCER_ID_EXPIRATION_MS,
    SNAPSHOT_KIND,
    BatchMetadata,
    ProducerState,
    in_sequence,
    increment_sequence,
    read_snapshot,
    write_snapshot,
)
from logstore.storage.statefile import encode_state
from logstore.types import BatchHeader

T0 = 1_700_000_000_000
PID = 4242


def _batch(
    pid: int = PID, epoch: int = 0, sequence: int = 0, count: int = 1, *,
    offset: int = 0, timestamp: int = T0, control: bool = False,
) -> BatchHeader:
    return BatchHeader(
        0, offset, 49 + 20 * count, -1, 2, 0, 0x20 if control else 0, count - 1, timestamp,
        timestamp, pid, epoch, sequence, count,
    )


class Log:
    """A ProducerState plus the offsets an append would assign."""

    def __init__(self, state: ProducerState | None = None) -> None:
        self.state = state or ProducerState()
        self.end = self.state.end_offset

    def send(self, pid: int = PID, epoch: int = 0, sequence: int = 0, count: int = 1,
             timestamp: int = T0) -> tuple[int, int]:
        """Check and append a batch; its (first, last) offsets (a duplicate's originals)."""
        batch = _batch(pid, epoch, sequence, count, offset=self.end, timestamp=timestamp)
        prior = self.state.check(batch)
        if prior is not None:
            return prior.first_offset, prior.last_offset
        self.state.append(batch)
        first, self.end = self.end, self.end + count
        return first, self.end - 1


# --------------------------------------------------------------------------- sequences


@pytest.mark.parametrize(
    ("sequence", "increment", "expected"),
    [(0, 0, 0), (5, 3, 8), (INT32_MAX, 1, 0), (INT32_MAX - 1, 3, 1),
     (INT32_MAX - 2, 2, INT32_MAX)],
)
def test_increment_sequence_wraps_after_int32_max(
    sequence: int, increment: int, expected: int
) -> None:
    assert increment_sequence(sequence, increment) == expected


def test_in_sequence_is_the_next_number_or_zero_after_int32_max() -> None:
    assert in_sequence(4, 5) and in_sequence(-1, 0) and in_sequence(INT32_MAX, 0)
    assert not in_sequence(4, 4) and not in_sequence(4, 6) and not in_sequence(INT32_MAX - 1, 0)


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize("sequence", [0, 7, INT32_MAX])
def test_check_accepts_any_sequence_from_a_producer_the_partition_does_not_know(
    sequence: int,
) -> None:
    log = Log()
    assert log.send(sequence=sequence) == (0, 0)
    assert log.send(pid=PID + 1, epoch=3, sequence=sequence, count=2) == (1, 2)


def test_check_accepts_the_next_sequence_and_refuses_a_gap() -> None:
    log = Log()
    log.send(sequence=0, count=3)  # sequences 0..2
    assert log.send(sequence=3, count=2) == (3, 4)
    with pytest.raises(OutOfOrderSequenceError, match="sequence 7 does not follow 4") as info:
        log.send(sequence=7)
    assert info.value.producer_id == PID
    assert info.value.kafka_code == 45
    assert log.state.end_offset == 5  # nothing applied


@pytest.mark.parametrize("back", range(NUM_BATCHES_TO_RETAIN))
def test_check_returns_the_original_offsets_of_each_of_the_last_five_batches(back: int) -> None:
    log = Log()
    written = [log.send(sequence=2 * i, count=2) for i in range(8)]
    i = len(written) - 1 - back
    assert log.state.check(_batch(sequence=2 * i, count=2)) == BatchMetadata(
        2 * i, 2 * i + 1, written[i][0], written[i][1], T0
    )


def test_check_refuses_a_retry_older_than_the_last_five_batches() -> None:
    log = Log()
    for i in range(NUM_BATCHES_TO_RETAIN + 1):
        log.send(sequence=i)
    with pytest.raises(OutOfOrderSequenceError):
        log.send(sequence=0)


def test_check_a_duplicate_must_match_first_and_last_sequence() -> None:
    log = Log()
    log.send(sequence=0, count=3)
    with pytest.raises(OutOfOrderSequenceError):
        log.send(sequence=0, count=2)  # same start, other end: not the batch written


def test_check_refuses_an_epoch_older_than_the_producers() -> None:
    log = Log()
    log.send(epoch=2, sequence=0)
    with pytest.raises(InvalidProducerEpochError, match="epoch 1 is older than epoch 2") as info:
        log.send(epoch=1, sequence=1)
    assert info.value.kafka_code == 47
    assert isinstance(info.value, ProducerStateError) and isinstance(info.value, LogstoreError)
    with pytest.raises(InvalidProducerEpochError):
        log.send(epoch=1, sequence=0)  # a retry of an old epoch's batch too


def test_check_a_new_epoch_must_start_at_sequence_zero_and_forgets_the_old_batches() -> None:
    log = Log()
    log.send(epoch=0, sequence=0, count=4)
    with pytest.raises(OutOfOrderSequenceError, match="new epoch 1"):
        log.send(epoch=1, sequence=4)
    assert log.send(epoch=1, sequence=0) == (4, 4)
    assert log.send(epoch=1, sequence=1) == (5, 5)
    with pytest.raises(InvalidProducerEpochError):
        log.send(epoch=0, sequence=0, count=4)  # the old epoch's batch is no duplicate now


def test_check_follows_the_sequence_across_the_int32_wrap() -> None:
    log = Log()
    log.send(sequence=INT32_MAX - 1, count=3)  # sequences MAX-1, MAX, 0
    assert log.state.check(_batch(sequence=INT32_MAX - 1, count=3)) is not None
    assert log.send(sequence=1) == (3, 3)
    log2 = Log()
    log2.send(sequence=INT32_MAX)
    assert log2.send(sequence=0, count=2) == (1, 2)


def test_check_epoch_minus_one_accepts_any_sequence_as_kafka_does() -> None:
    log = Log()
    log.send(epoch=-1, sequence=5)
    assert log.send(epoch=-1, sequence=9) == (1, 1)


# --------------------------------------------------------------------------- bounds


def test_truncate_head_forgets_batches_and_producers_below_the_log_start() -> None:
    log = Log()
    log.send(pid=1, sequence=0)  # offset 0
    log.send(pid=2, sequence=0)  # 1
    log.send(pid=2, sequence=1)  # 2
    log.state.truncate_head(2)
    assert list(log.state.producers) == [2]
    assert [b.first_offset for b in log.state.producers[2].batches] == [2]
    assert log.send(pid=1, sequence=50) == (3, 3)  # unknown now: any sequence
    with pytest.raises(OutOfOrderSequenceError):
        log.send(pid=2, sequence=0)  # its batch at offset 1 is no longer retained


def test_remove_expired_forgets_producers_silent_for_the_expiration_ms() -> None:
    log = Log()
    log.send(pid=1, sequence=0, timestamp=T0)
    log.send(pid=2, sequence=0, timestamp=T0 + 1)
    log.state.remove_expired(T0 + PRODUCER_ID_EXPIRATION_MS)  # pid 1: exactly that old
    assert list(log.state.producers) == [2]
    assert log.send(pid=1, sequence=9) == (2, 2)


def test_expiry_is_due_every_check_interval() -> None:
    state = ProducerState()
    assert state.expiry_due(T0)
    state.remove_expired(T0)
    assert not state.expiry_due(T0 + EXPIRATION_CHECK_INTERVAL_MS - 1)
    assert state.expiry_due(T0 + EXPIRATION_CHECK_INTERVAL_MS)


def test_the_least_recently_used_producer_goes_past_max_producers() -> None:
    log = Log(ProducerState(max_producers=3))
    for pid in (1, 2, 3):
        log.send(pid=pid, sequence=0)
    log.send(pid=1, sequence=1)  # 1 is the most recently used now
    log.send(pid=4, sequence=0)
    assert list(log.state.producers) == [3, 1, 4]


def test_replay_applies_only_idempotent_data_batches() -> None:
    state = ProducerState()
    state.replay(_batch(pid=-1, sequence=-1, count=3, offset=0))
    state.replay(_batch(pid=7, sequence=-1, offset=3))  # a producer id without sequences
    state.replay(_batch(pid=8, epoch=0, sequence=-1, offset=4, control=True))
    state.replay(_batch(pid=9, sequence=4, count=2, offset=5))
    # a transaction marker makes its producer known (its epoch fences older ones)
    assert list(state.producers) == [8, 9] and not state.producers[8].batches
    assert state.end_offset == 7 and state.unsnapshotted == 4
    state.advance(12, 2)  # plain batches appended
    assert state.end_offset == 12 and state.unsnapshotted == 6


# --------------------------------------------------------------------------- snapshots


def _state_with_history() -> ProducerState:
    log = Log(ProducerState(name="/p"))
    for i in range(7):
        log.send(pid=1, sequence=i, timestamp=T0 + i)
    log.send(pid=2, epoch=3, sequence=INT32_MAX, count=2)
    log.send(pid=1, sequence=7)
    return log.state


def test_encode_decode_round_trips_every_producer_in_order() -> None:
    state = _state_with_history()
    again = ProducerState.decode(state.encode(), state.end_offset, "/p/x.snapshot")
    assert list(again.producers) == [2, 1]
    for pid, entry in state.producers.items():
        assert again.producers[pid].epoch == entry.epoch
        assert again.producers[pid].batches == entry.batches
        assert again.producers[pid].last_timestamp == entry.last_timestamp
    assert len(again.producers[1].batches) == NUM_BATCHES_TO_RETAIN
    assert again.snapshot_offset == again.end_offset == state.end_offset


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"offset": 10}',
        b'{"offset": 11, "producers": []}',  # not the offset of its name
        b'{"offset": true, "producers": []}',
        b'{"offset": 10, "producers": [[1, 0, 5]]}',
        b'{"offset": 10, "producers": [[-1, 0, 5, [[0, 0, 0, 0, 5]]]]}',
        b'{"offset": 10, "producers": [[1, 40000, 5, [[0, 0, 0, 0, 5]]]]}',
        b'{"offset": 10, "producers": [], "ongoing": [[1, 4]]}',
        b'{"offset": 10, "producers": [[1, 0, 5, [[0, 0, 0, 10, 5]]]]}',  # past its offset
        b'{"offset": 10, "producers": [[1, 0, 5, [[0, 0, 3, 2, 5]]]]}',
        b'{"offset": 10, "producers": [[1, 0, 5, [[0, false, 0, 0, 5]]]]}',
        b'{"offset": 10, "producers": [[1, 0, 5, [[0, 0, 0, 0, 5]]], '
        b'[1, 0, 5, [[1, 1, 1, 1, 5]]]]}',  # a producer twice
        json.dumps({"offset": 10, "producers": [[1, 0, 5, [[i, i, i, i, 5] for i in range(6)]]]})
        .encode(),
    ],
)
def test_decode_refuses_a_damaged_payload_naming_the_file(payload: bytes) -> None:
    with pytest.raises(CorruptionError, match=r"producer snapshot /p/x\.snapshot is damaged"):
        ProducerState.decode(payload, 10, "/p/x.snapshot")


class RecordingFS(FileSystem):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def _fsync(self, handle: FileHandle) -> None:
        self.events.append(("fsync", handle.path))
        super()._fsync(handle)

    def _rename(self, src: str, dst: str) -> None:
        self.events.append(("rename", dst))
        super()._rename(src, dst)


@pytest.mark.parametrize("durable", [True, False])
def test_write_snapshot_replaces_the_file_by_rename_and_fsyncs_only_when_durable(
    tmp_path: Path, durable: bool
) -> None:
    fs = RecordingFS()
    state = _state_with_history()
    path = write_snapshot(fs, str(tmp_path), state, durable=durable)
    assert path == snapshot_path(str(tmp_path), state.end_offset)
    tmp = str(tmp_path / f"~{Path(path).name}.tmp")
    assert fs.events == ([("fsync", tmp)] if durable else []) + [("rename", path)]
    assert is_leftover(Path(tmp).name) and is_partition_file(Path(path).name)
    again = read_snapshot(fs, str(tmp_path), state.end_offset)
    assert again.producers[1].batches == state.producers[1].batches
    assert again.name == str(tmp_path)


def test_read_snapshot_raises_corruption_for_a_flipped_byte_or_another_kind(tmp_path: Path) -> None:
    state = _state_with_history()
    path = Path(write_snapshot(FileSystem(), str(tmp_path), state, durable=False))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="CRC-32C"):
        read_snapshot(FileSystem(), str(tmp_path), state.end_offset)
    path.write_bytes(encode_state("checkpoint", state.encode()))
    with pytest.raises(CorruptionError, match="not 'producer-snapshot'"):
        read_snapshot(FileSystem(), str(tmp_path), state.end_offset)
    with pytest.raises(FileNotFoundError):
        read_snapshot(FileSystem(), str(tmp_path), state.end_offset + 1)
    assert SNAPSHOT_KIND == "producer-snapshot"


# --------------------------------------------------------------------------- the model


@dataclass
class Model:
    """The rules, stated plainly: per producer id its epoch and every batch of that
    epoch, in order; offsets assigned one after another."""

    epochs: dict[int, int] = field(default_factory=dict)
    batches: dict[int, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    end: int = 0

    def send(self, pid: int, epoch: int, first: int, count: int) -> tuple[int, int] | str:
        last = (first + count - 1) % (INT32_MAX + 1)
        if pid not in self.epochs:
            return self._append(pid, epoch, first, last, count)
        current, history = self.epochs[pid], self.batches[pid]
        if epoch == current:
            for b in history[-5:]:
                if (b[0], b[1]) == (first, last):
                    return b[2], b[3]
        if epoch < current:
            return "epoch"
        if epoch > current:
            return self._append(pid, epoch, first, last, count) if first == 0 else "sequence"
        if first != (history[-1][1] + 1) % (INT32_MAX + 1):
            return "sequence"
        return self._append(pid, epoch, first, last, count)

    def _append(self, pid: int, epoch: int, first: int, last: int, count: int) -> tuple[int, int]:
        if self.epochs.get(pid) != epoch:
            self.batches[pid] = []
        self.epochs[pid] = epoch
        self.batches[pid].append((first, last, self.end, self.end + count - 1))
        self.end += count
        return self.end - count, self.end - 1


def _next_sequence(model: Model, pid: int) -> int:
    history = model.batches.get(pid)
    return (history[-1][1] + 1) % (INT32_MAX + 1) if history else INT32_MAX - 3


OPS = st.lists(
    st.tuples(
        st.sampled_from(["next", "next", "next", "retry", "gap", "old-epoch", "bump", "bump-bad",
                         "restart"]),
        st.integers(0, 2),  # producer
        st.integers(1, 3),  # records
        st.integers(0, 7),  # how far back a retry goes
    ),
    max_size=60,
)


@given(OPS)
@settings(max_examples=200, deadline=None)
def test_state_agrees_with_the_model_over_appends_retries_epochs_and_restarts(
    ops: Sequence[tuple[str, int, int, int]],
) -> None:
    model = Model()
    log = Log()
    for kind, pid, records, back in ops:
        count = records
        if kind == "restart":  # a snapshot written and read back
            log = Log(ProducerState.decode(log.state.encode(), log.end, "/p/s.snapshot"))
            continue
        epoch = model.epochs.get(pid, 0)
        first = _next_sequence(model, pid)
        history = model.batches.get(pid, [])
        if kind == "retry" and history:
            b = history[max(0, len(history) - 1 - back)]
            first, count = b[0], (b[1] - b[0]) % (INT32_MAX + 1) + 1
        elif kind == "gap":
            first = (first + 1 + back) % (INT32_MAX + 1)
        elif kind == "old-epoch" and pid in model.epochs:
            epoch -= 1
        elif kind == "bump":
            epoch, first = epoch + 1, 0
        elif kind == "bump-bad":
            epoch, first = epoch + 1, 1 + back
        expected = model.send(pid, epoch, first, count)
        try:
            got: tuple[int, int] | str = log.send(pid, epoch, first, count)
        except InvalidProducerEpochError:
            got = "epoch"
        except OutOfOrderSequenceError:
            got = "sequence"
        assert got == expected, (kind, pid, epoch, first, count)
        assert log.state.end_offset == log.end == model.end
