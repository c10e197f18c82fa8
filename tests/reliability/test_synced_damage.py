"""Damage below the recovery point after an unclean stop (issue 11, points 3 and 4).

A child process appends with ``flush="always"`` (every acknowledged append is fsynced) or
commits group offsets (the offsets log is always fsynced), prints what was acknowledged,
and is SIGKILLed. Then a byte of what it acknowledged is damaged, as a failing disk or a
stray write would. Those bytes were synced before the crash, so recovery must not cut
them: opening is a typed ``CorruptionError`` naming the file and the damaged position,
``logstore verify`` exits 2, and the files are left as they were (restorable). A torn
tail, bytes past the last acknowledged append, is still cut silently with a warning.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import logstore
from logstore.errors import CorruptionError, CorruptRecordError
from logstore.records import scan
from logstore.types import TopicPartition

LOGSTORE = os.path.join(os.path.dirname(sys.executable), "logstore")
OFFSETS_DIR = "__consumer_offsets-0"

_APPEND_CHILD = """
import os, signal, sys
import logstore
with_commits = sys.argv[3] == "commits"
store = logstore.open(sys.argv[1])
if with_commits:
    tp = logstore.TopicPartition("t", 0)
    for offset in range(100, 201, 10):  # the last acknowledged commit is 200
        store.offsets.commit("g", {tp: (offset, "")})
        print("committed", offset, flush=True)
else:
    store.create_topic("t", 1, flush="always", segment_bytes=1 << 24)
    for i in range(int(sys.argv[2])):
        store.append("t", b"value-%04d" % i, key=b"k", partition=0, timestamp=1000 + i)
        print("acked", i, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # an unclean stop: nothing closed, nothing flushed
"""


def _killed_child(data: Path, count: int, what: str = "records") -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _APPEND_CHILD, str(data), str(count), what],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc.stdout.splitlines()


def _verify(data: Path) -> tuple[int, str]:
    proc = subprocess.run([LOGSTORE, "--data-dir", str(data), "verify"],
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _batches(path: Path) -> list[tuple[int, int, int]]:
    """(position, size, base offset) of every batch of a ``.log``."""
    return [(h.position, h.size, h.base_offset) for h in scan(path.read_bytes())]


def _flip(path: Path, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ 0x10]))


def _active_log(partition_dir: Path) -> Path:
    return sorted(partition_dir.glob("*.log"))[-1]


@pytest.mark.parametrize("damage", ["flip", "garbage", "cut"])
def test_damage_to_fsynced_records_after_a_kill_is_a_typed_error_not_a_shorter_log(
    tmp_path: Path, damage: str
) -> None:
    """Point 4: 1,000 acknowledged (fsynced) records, then a kill -9, then damage at the
    101st record: before the fix recovery cut the log there and 900 acknowledged records
    were gone without an error."""
    data = tmp_path / "d"
    acks = _killed_child(data, 1000)
    assert len(acks) == 1000
    log_path = _active_log(data / "t-0")
    position, size, base = _batches(log_path)[100]
    assert base == 100
    before = log_path.read_bytes()
    if damage == "flip":
        _flip(log_path, position + size - 3)  # inside the records: the CRC fails
    elif damage == "garbage":
        with open(log_path, "r+b") as f:
            f.seek(position)
            f.write(os.urandom(size * 3))
    else:
        os.truncate(log_path, position + size // 2)
    damaged = log_path.read_bytes()

    code, out = _verify(data)
    assert code == 2, out
    assert "CORRUPT" in out and str(log_path) in out, out
    with logstore.open(data) as store, pytest.raises(CorruptRecordError) as caught:
        store.read("t", 0, 0)
    assert caught.value.path is not None
    assert os.path.samefile(caught.value.path, log_path)
    assert caught.value.position == position
    assert log_path.read_bytes() == damaged  # nothing cut: a copy can still be restored
    assert len(damaged) <= len(before)
    assert _verify(data)[0] == 2  # and the next open says the same


def test_a_torn_tail_past_the_last_acknowledged_append_is_still_cut_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The part of an append a crash cut short lies past the synced end: recovery cuts
    it (a WARNING), every acknowledged record stays, and verify says "repairable" (1)."""
    data = tmp_path / "d"
    assert len(_killed_child(data, 300)) == 300
    log_path = _active_log(data / "t-0")
    position, size, _ = _batches(log_path)[-1]
    with open(log_path, "ab") as f:  # half of another batch: an append torn by the kill
        f.write(log_path.read_bytes()[position : position + size // 2])
    assert _verify(data)[0] == 1
    with caplog.at_level(logging.WARNING), logstore.open(data) as store:
        records = []
        while len(records) < 300:
            got = store.read("t", 0, len(records))
            assert got
            records += got
        assert [r.value for r in records] == [b"value-%04d" % i for i in range(300)]
        assert store.partition("t", 0).log_end_offset == 300
    assert any("truncating" in r.getMessage() for r in caplog.records)
    assert _verify(data)[0] == 0


@pytest.mark.parametrize("damage", ["flip", "garbage"])
def test_damaged_committed_offsets_after_a_kill_are_a_typed_error_not_a_rewind(
    tmp_path: Path, damage: str
) -> None:
    """Point 3: commits 100, 110, ..., 200 acknowledged, then a kill -9 and damage to
    the last commit in the offsets log. Before the fix the group's offset silently went
    back to 190 (a flip) or to an earlier one (garbage): a consumer then re-reads, or
    with nothing left, ``latest`` skips unconsumed records."""
    data = tmp_path / "d"
    with logstore.open(data) as store:
        store.create_topic("t", 1)
    acks = _killed_child(data, 0, "commits")
    assert acks[-1] == "committed 200"
    log_path = _active_log(data / OFFSETS_DIR)
    batches = _batches(log_path)
    position, size, _ = batches[-1 if damage == "flip" else 0]
    if damage == "flip":
        _flip(log_path, position + size - 2)
    else:  # garbage over every commit
        with open(log_path, "r+b") as f:
            f.seek(position)
            f.write(os.urandom(os.path.getsize(log_path) - position))
    damaged = log_path.read_bytes()

    code, out = _verify(data)
    assert code == 2, out
    assert "CORRUPT" in out and str(log_path) in out, out
    with pytest.raises(CorruptionError) as caught, logstore.open(data) as store:
        store.offsets.committed("g", TopicPartition("t", 0))
    assert caught.value.path is not None
    assert os.path.samefile(caught.value.path, log_path)
    assert log_path.read_bytes() == damaged
