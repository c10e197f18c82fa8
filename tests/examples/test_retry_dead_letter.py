"""examples/retry_dead_letter.py runs on its own and says the pattern worked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import logstore
from logstore import headers as h

EXAMPLE = Path(__file__).parents[2] / "examples" / "retry_dead_letter.py"


def test_retry_dead_letter_example_retries_and_dead_letters(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "handled pay-flaky (delivery 3)" in out
    assert "failed  pay-poison (delivery 3)" in out
    assert "done: 4 handled, 4 sent to retry topics, 1 dead-lettered" in out
    assert "dead letter: pay-poison from payments-0@1 after 3 deliveries: ValueError" in out
    assert out.rstrip().endswith("OK: the flaky payment was retried until it worked, the "
                                 "poison one is in payments.dlq")
    # the 200 ms retry came after its delay, not before
    lines = {m[2]: int(m[1]) for m in re.finditer(r"^\s*(\d+) ms  (.*)$", out, re.M)}
    assert lines["failed  pay-flaky (delivery 2)"] - lines["failed  pay-flaky (delivery 1)"] >= 190
    with logstore.open(data) as store:
        [dead] = store.read("payments.dlq", 0, 0)
    assert dict(dead.headers)[h.DLQ_ATTEMPTS] == b"3"
    assert dict(dead.headers)["source"] == b"shop"


def test_retry_dead_letter_example_runs_on_a_fresh_temporary_store() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "OK:" in result.stdout
