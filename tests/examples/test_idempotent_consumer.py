"""examples/idempotent_consumer.py runs and says each order was charged once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "idempotent_consumer.py"


def test_idempotent_consumer_example_charges_each_order_once() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], check=False, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "first consumer:  20 delivered, 20 charged" in out
    assert "second consumer: 20 delivered again, 0 charged" in out
    assert "charges table:   20 rows, total 1900" in out
    assert out.rstrip().endswith("redelivered orders were not charged twice")
