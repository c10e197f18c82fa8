"""The README's recipes run verbatim: every ```python block (in order, in one fresh
directory, as a reader would paste them), the command-line tour (each ``$`` line run by
bash, its output compared with the README's after masking times, ids and speeds), and the
set-up hints (``./dev logstore``) (issue 10, acceptance)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import logstore

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _tour() -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` of the tour's ``$`` lines."""
    start = README.index("A tour, with real output")
    block = re.search(r"```\n(.*?)```", README[start:], flags=re.S)
    assert block is not None
    steps: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and line:
            steps[-1][1].append(line)
    return steps


_MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?"), "<time>"),
    (re.compile(r"\b\d{13}\b"), "<ms>"),
    (re.compile(r"producerId: -?\d+"), "producerId: <id>"),
    (re.compile(r"crc: \d+"), "crc: <crc>"),
    (re.compile(r"\d+(\.\d+)? (records/sec|MB/sec|ms|MB|s)\b"), r"<n> \2"),
    (re.compile(r"\b\d+ polls\b"), "<n> polls"),
    (re.compile(r"/\S+/tour/"), "<dir>/"),
]
_VARIES = ("logstore bench",)  # speeds and counts of a benchmark
_UNORDERED = ("logstore replay",)  # records of one millisecond come in either order


def _masked(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        masked = line
        for pattern, replacement in _MASKS:
            masked = pattern.sub(replacement, masked)
        out.append(masked.rstrip())
    return out


def test_readme_has_recipes() -> None:
    assert len(_python_blocks()) >= 4
    assert len(_tour()) >= 10


def test_python_recipes_run_verbatim(tmp_path: Path) -> None:
    for number, block in enumerate(_python_blocks(), 1):
        result = subprocess.run(
            [sys.executable, "-c", block], check=False, cwd=tmp_path, capture_output=True,
            text=True, timeout=120,
        )
        assert result.returncode == 0, f"README python block {number}:\n{block}\n" \
            f"{result.stderr}"
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_command_line_tour_runs_verbatim(tmp_path: Path) -> None:
    bindir = str(Path(sys.executable).parent)
    if not (Path(bindir) / "logstore").exists():
        pytest.skip("the logstore command is not installed next to this Python")
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"],
           "LOGSTORE_DATA_DIR": str(tmp_path / "tour")}
    steps = _tour()
    for number, (command, expected) in enumerate(steps, 1):
        result = subprocess.run(["bash", "-c", command], check=False, env=env, capture_output=True,
                                text=True, timeout=120, stdin=subprocess.DEVNULL)
        got = (result.stdout + result.stderr).splitlines()
        last = number == len(steps)
        if last:  # the tour ends with an error, shown as it is printed
            assert result.returncode == 1, (command, got)
        else:
            assert result.returncode == 0, (command, got)
        if command.startswith(_VARIES):
            assert len(got) == len(expected), (command, got)
            continue
        if command.startswith(_UNORDERED):
            assert sorted(_masked(got)) == sorted(_masked(expected)), f"$ {command}"
        else:
            assert _masked(got) == _masked(expected), f"$ {command}"


def test_dev_runs_the_logstore_command() -> None:
    if not (ROOT / ".venv" / "bin" / "logstore").exists():
        pytest.skip("no .venv here (./dev makes it on first use)")
    result = subprocess.run([str(ROOT / "dev"), "logstore", "--version"], check=False,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("logstore, version")


@pytest.mark.kafka
def test_the_kafka_cluster_recipe_runs_on_a_real_broker(tmp_path: Path, kafka_broker: Any) -> None:
    """The chapter "Outgrowing one machine" defines ``on_a_cluster(bootstrap)``: call it on
    the session's broker (its topic and group are the recipe's own; they are deleted after)."""
    [block] = [b for b in _python_blocks() if "def on_a_cluster(" in b]
    script = block + f"\non_a_cluster({kafka_broker.bootstrap!r})\n"
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], check=False, cwd=tmp_path, capture_output=True,
            text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[-1] == "0"  # the group's lag after its commit
        assert any(line.endswith("b'{\"id\": 1}'") for line in lines[:-1])
    finally:
        with logstore.KafkaStore(f"kafka://{kafka_broker.bootstrap}") as cluster:
            for group in ("billing",):
                cluster.delete_group(group)
            if cluster.has_topic("orders"):
                cluster.delete_topic("orders")
