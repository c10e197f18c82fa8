"""The helpers that start worker processes and read their output lose no line."""

from __future__ import annotations

import sys

import pytest

from tests.integration import workers


def test_start_then_communicate_returns_the_lines_written_with_ready() -> None:
    """The worker writes "ready" and three more lines in one write: reading "ready" must
    not swallow the rest (a buffered readline pulls them all into its buffer, where a
    later communicate() on the raw pipe never sees them)."""
    worker = workers.start("echo", "a", "b", "c")
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert out.splitlines() == ["ready", "a", "b", "c"]


def test_output_keeps_lines_printed_before_ready() -> None:
    code = "print('opening'); print('ready', flush=True); print('done')"
    worker = workers.Worker([sys.executable, "-c", code])
    worker.wait_ready()
    out, _ = worker.communicate(timeout=60)
    assert out == "opening\nready\ndone\n"
    assert worker.output() == out


def test_wait_ready_reports_a_worker_that_never_gets_ready() -> None:
    worker = workers.Worker([sys.executable, workers.WORKER, "nonsense"])
    with pytest.raises(AssertionError, match="unknown command"):
        worker.wait_ready(timeout=60)
