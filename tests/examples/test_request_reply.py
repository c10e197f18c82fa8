"""examples/request_reply.py runs and says request-reply worked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "request_reply.py"


def test_request_reply_example_gets_replies_errors_and_a_timeout() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], check=False, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "request b'apple' -> reply b'3' (EUR)" in out
    assert "100 requests in flight at once -> 100 replies, 50 x b'4' and 50 x b'2'" in out
    assert "error reply: KeyError" in out
    assert "no reply within 200 ms" in out
    assert out.rstrip().endswith("request-reply worked: every request got its own reply")
