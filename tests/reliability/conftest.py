"""Reliability suite (issue 5): the figures each test measures are collected with the
``reliability_report`` fixture and printed at the end of the run, under "reliability
figures", so ``RELIABILITY.md`` can quote them with the command that produced them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

_LINES: list[str] = []


@pytest.fixture
def reliability_report() -> Callable[[str], None]:
    """Call with one line (e.g. "120 kill -9 cycles, 5,100 acks, 0 lost") to report it."""
    return _LINES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("reliability figures")
        for line in _LINES:
            terminalreporter.write_line(line)
