"""The main job: ``logstore demo`` end to end, through click's CliRunner and as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import logstore
from logstore_cli.main import cli


def test_demo_writes_and_reads_back_when_run_twice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(cli, ["--data-dir", str(data), "demo", "--records", "900"])
        assert result.exit_code == 0, result.output
        assert "produced 900 keyed events" in result.output
        assert "consumed 900 new events back" in result.output
        assert "900 events have a timestamp at or after it" in result.output
    with logstore.open(data) as store:
        description = store.describe_topic("demo-events")
        assert sum(p.log_end_offset for p in description.partitions) == 1800


def test_demo_reads_data_dir_from_environment(tmp_path: Path) -> None:
    data = tmp_path / "env-data"
    result = CliRunner().invoke(
        cli, ["demo", "--records", "10"], env={"LOGSTORE_DATA_DIR": str(data)}
    )
    assert result.exit_code == 0, result.output
    assert (data / "store.json").exists()


def test_demo_reports_a_locked_store_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data, exclusive=True):
        result = CliRunner().invoke(cli, ["--data-dir", str(data), "demo", "--records", "1"])
    assert result.exit_code != 0
    assert "in use by another Store" in result.output
    assert "Traceback" not in result.output


def test_logstore_console_script_runs_the_demo(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("logstore")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "logstore_cli.main"]
    proc = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "d"), "demo", "--records", "50"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "produced 50 keyed events" in proc.stdout
