"""examples/exactly_once.py runs and says every order got exactly one invoice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "exactly_once.py"


def test_exactly_once_example_survives_a_crash_and_fences_a_zombie() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], check=False, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "worker 1 crashes with a transaction of 5 invoices open" in out
    assert "a zombie instance with the same transactional id was fenced" in out
    assert "40 invoices read_committed" in out
    assert out.rstrip().endswith("exactly-once worked: every order has exactly one invoice")
