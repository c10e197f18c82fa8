"""examples/priority_queue.py runs and says the priority queue worked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "priority_queue.py"


def test_priority_queue_example_serves_strict_then_weighted(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--data-dir", str(tmp_path / "store")],
        check=False, capture_output=True, text=True, timeout=60,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "strict:   " + "h" * 48 + "... " + "l" * 24 in out
    assert "{'h': 32, 'm': 12, 'l': 4} (8:3:1, low never starved)" in out
    assert out.rstrip().endswith("weighted shared 8:3:1")
