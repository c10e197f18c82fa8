"""Compaction across real processes: writers append keyed updates while another process
runs the cleaner over and over and consumers in other processes read the partition from
the start. Every consumer sees offsets strictly increase and each key's values in write
order (so no record twice and no older value after a newer one), and the log ends holding
the latest value of every key."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore

ROOT = Path(__file__).resolve().parents[2]
_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _none_left_running() -> Iterator[None]:
    """Kill and reap the workers a failed test left (else one is reaped, with a
    ResourceWarning, during a later test of the same process, failing that one)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None and not proc.stdout.closed:
            proc.communicate(timeout=30)


def _start(*args: object) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.compaction_worker", *map(str, args)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _STARTED.append(proc)
    return proc


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_readers_in_other_processes_read_across_swaps(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with logstore.open(data, maintenance=False) as store:
        store.create_topic("t", 1, cleanup_policy="compact", segment_bytes=2048,
                           min_cleanable_dirty_ratio=0.0)
    stop = tmp_path / "stop"
    writers = [_start("write", data, "t", f"w{i}", 1500, 40) for i in range(2)]
    compactor = _start("compact", data, "t", stop)
    readers = [_start("read", data, "t", stop), _start("read", data, "t", stop, "slow")]
    time.sleep(0.5)
    late = _start("read", data, "t", stop)  # starts after cleaning began
    for w in writers:
        assert _result(w) == {"written": 1500}
    stop.touch()
    compacted = _result(compactor)
    assert isinstance(compacted["changed"], int) and compacted["changed"] > 0, compacted
    with logstore.open(data, maintenance=False) as store:
        plog = store.partition("t", 0)
        end = plog.log_end_offset
        assert end == 3000
        table: dict[bytes | None, bytes | None] = {}
        offset = 0
        while offset < end:
            records = plog.read_records(offset)
            if not records:
                break
            table.update((r.key, r.value) for r in records)
            offset = records[-1].offset + 1
    assert set(table) == {b"k%d" % k for k in range(40)}
    for key, value in table.items():  # a key's last write (by either writer) is there
        _, seq = (value or b"").decode().split(":")
        assert int(seq) == max(s for s in range(1500) if s % 40 == int(key[1:])), (key, value)
    seen = []
    for reader in [*readers, late]:
        got = _result(reader)
        assert got["problems"] == [], got
        assert got["position"] == end, got
        seen.append(got["seen"])
    print(f"compaction across processes: 3,000 updates by 2 writers, {compacted['runs']} "
          f"cleaner runs ({compacted['changed']} removing records), 3 consumers read "
          f"{seen} records (one slow, one started late): 0 problems")
