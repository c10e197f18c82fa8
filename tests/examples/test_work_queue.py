"""examples/work_queue.py runs and shows the pattern working: four processes share one
partition, every job is processed once, the poison job is dead-lettered after 3
deliveries."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "work_queue.py"


def test_work_queue_example_processes_each_job_once_and_dead_letters_the_poison(
    tmp_path: Path,
) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--data-dir", str(tmp_path / "store"), "--jobs", "30"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "29 jobs sent, each exactly once: True" in out
    sent = [int(n) for n in re.findall(r"worker-\d: sent (\d+) emails", out)]
    assert len(sent) == 4 and sum(sent) == 29
    assert len(re.findall(r"failed job-13 .* \(delivery \d\)", out)) == 3
    assert ("dead letter in emails.dlq: b'job-13 (malformed address)' from emails-0 offset 13, "
            "after 3 deliveries: ValueError: malformed address") in out
    assert out.rstrip().endswith("work queue OK")
