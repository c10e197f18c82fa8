"""The benchmarks still run (a benchmark nobody runs goes stale): one quick pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_benchmarks_quick_run_completes_and_checks_its_data(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--runs",
            "1",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("append", "read", "append_1mib", "open", "random_read"):
        assert f"| {name} |" in proc.stdout, name


def test_compaction_benchmark_quick_run_completes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_compaction.py"),
            "--quick",
            "--runs",
            "1",
            "--workdir",
            str(tmp_path),
            "--out",
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| compaction | cleaner pass 1: throughput (bytes in / s) |" in proc.stdout
    assert (tmp_path / "out.json").exists()


def test_transactions_benchmark_quick_run_completes() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_transactions.py"), "--quick"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("at-least-once, poll of 100", "exactly-once, poll of 1000",
                 "read the exactly-once output, read_committed"):
        assert f"| {name} |" in proc.stdout, name


def test_ui_benchmark_quick_run_completes(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")  # the 'ui' extra
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ui.py"), "--quick", "--runs", "1",
         "--records", "5000", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("pages of 500 (next_offset), HTTP (logstore ui process)",
                 "filtered scan matching nothing (max_scan=100,000), TestClient",
                 "Sampler.sample_now(), 50 topics x 4 partitions, 20 groups"):
        assert f"| {name} |" in proc.stdout, name
