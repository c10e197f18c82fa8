"""The main job: ``logstore demo`` end to end, through click's CliRunner and as a process
(the full run with worker processes is in test_cli_tools.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import logstore
from logstore_cli.main import cli


def test_demo_reads_data_dir_from_environment(tmp_path: Path) -> None:
    data = tmp_path / "env-data"
    result = CliRunner().invoke(
        cli, ["demo", "--events", "10", "--workers", "1"], env={"LOGSTORE_DATA_DIR": str(data)}
    )
    assert result.exit_code == 0, result.output
    assert (data / "store.json").exists()


def test_demo_reports_a_locked_store_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data, exclusive=True):
        result = CliRunner().invoke(cli, ["--data-dir", str(data), "demo", "--events", "2"])
    assert result.exit_code != 0
    assert "is in use by a process that needs it to itself" in result.output
    assert len(result.output.splitlines()) == 1
    assert "Traceback" not in result.output


def test_demo_rejects_bad_sizes_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "demo", "--workers", "0"])
    assert result.exit_code != 0 and "--workers" in result.output
    assert "Traceback" not in result.output


def test_logstore_console_script_runs_the_demo(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("logstore")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "logstore_cli.main"]
    proc = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "d"), "demo", "--events", "500"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1. 3 worker processes joined group 'demo-workers'" in proc.stdout
    assert "3. the workers handled 500 events" in proc.stdout
    assert proc.stderr == ""
