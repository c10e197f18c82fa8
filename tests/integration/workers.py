"""Starting ``process_worker.py`` programs and reading what they report (test helpers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WORKER = str(Path(__file__).with_name("process_worker.py"))


def start(*args: object) -> subprocess.Popen[str]:
    """Start a worker and wait until it has opened the store ("ready")."""
    proc = subprocess.Popen(
        [sys.executable, WORKER, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")
    return proc


def rows(output: str, *kinds: str) -> list[tuple[int, int, str]]:
    """``(partition, offset, value)`` of the worker's lines of the given kinds."""
    found = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in kinds:
            found.append((int(parts[1]), int(parts[2]), parts[3]))
    return found
