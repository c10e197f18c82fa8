"""Reliability suite (issue 5): the figures each test measures are collected with the
``reliability_report`` fixture and printed at the end of the run, under "reliability
figures", so ``RELIABILITY.md`` can quote them with the command that produced them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.reliability.crashfs import remove_tree, scratch_root

_LINES: list[str] = []


@pytest.fixture
def reliability_report() -> Callable[[str], None]:
    """Call with one line (e.g. "120 kill -9 cycles, 5,100 acks, 0 lost") to report it."""
    return _LINES.append


@pytest.fixture
def scratch(tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A fresh directory for crash states (under /dev/shm when there is one); files that
    need another place define their own ``scratch``."""
    path = scratch_root(os.fspath(tmp_path))
    try:
        yield path
    finally:
        remove_tree(path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("reliability figures")
        for line in _LINES:
            terminalreporter.write_line(line)
