"""``--data-dir`` on the command line: a non-empty directory is refused naming ``--init``,
and a bad path is one ``Error:`` line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from logstore_cli.main import cli
from tests.unit.test_store_dir import BAD_PATHS, snapshot


def _run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def _one_error_line(code: int, out: str, err: str) -> str:
    assert code != 0
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def test_cli_refuses_a_non_empty_directory_naming_init_and_writes_nothing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "D"
    (root / "work-1").mkdir(parents=True)
    (root / "work-1" / "notes.tmp").write_bytes(b"x\n")
    before = snapshot(root)

    for args in (("topics", "list"), ("topics", "create", "t"), ("consume", "t")):
        line = _one_error_line(*_run("--data-dir", str(root), *args))
        assert "--init" in line and "init=True" not in line and str(root) in line

    assert snapshot(root) == before
    code, _, err = _run("--data-dir", str(root), "--init", "topics", "create", "t")
    assert code == 0, err
    assert (root / "work-1" / "notes.tmp").read_bytes() == b"x\n"
    assert _run("--data-dir", str(root), "topics", "list")[0] == 0  # a store now


@pytest.mark.parametrize("case", BAD_PATHS.values(), ids=BAD_PATHS.keys())
@pytest.mark.parametrize("command", [("topics", "list"), ("produce", "t")], ids=["read", "write"])
def test_cli_bad_data_directory_is_one_error_line(
    tmp_path: Path, case: tuple, command: tuple[str, ...]
) -> None:
    make, _, words = case
    path = make(tmp_path)
    before = snapshot(tmp_path)

    line = _one_error_line(*_run("--data-dir", str(path), *command, stdin="x\n"))

    assert words in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [
    ["topics", "list"], ["topics", "describe", "t"], ["consume", "t"], ["inspect", "t"],
    ["groups", "list"], ["groups", "describe", "g"], ["replay", "t", "--from-time", "1h"],
])
def test_read_commands_on_a_missing_directory_leave_no_store_behind(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "typo"
    result = CliRunner().invoke(cli, ["--data-dir", str(missing), *command])
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: no store at") and "--data-dir" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not missing.exists()
