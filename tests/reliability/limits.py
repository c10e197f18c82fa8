"""A wall-clock limit for one block of a reliability test (a hang must fail, not block)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class TimeLimitError(Exception):
    """The block ran past its limit."""


@contextlib.contextmanager
def time_limit(
    seconds: float, error: type[BaseException] = TimeLimitError
) -> Iterator[None]:
    """Raise ``error`` in the main thread if the block runs longer than ``seconds``
    (SIGALRM; pass a ``BaseException`` subclass so no ``except Exception`` swallows it)."""

    def expire(signum: int, frame: object) -> None:
        raise error(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
