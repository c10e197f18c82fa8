"""What every ``logstore`` command shares: one-line user errors, time arguments, tables,
and progress bars that appear only on a terminal."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

import logstore

F = TypeVar("F", bound=Callable[..., Any])

TIME_HELP = (
    "ISO 8601 (2026-12-01T09:30:00, local time unless it ends in Z or +01:00), "
    "a time ago (30s, 15m, 2h, 7d), 'now', or epoch milliseconds"
)

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
             "w": 604_800_000}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")


def user_errors(fn: F) -> F:
    """Turn logstore's errors (and bad values) into one clear line and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (logstore.LogstoreError, ValueError) as err:
            raise click.ClickException(str(err)) from err

    return wrapper  # type: ignore[return-value]


def parse_time(text: str, now_ms: int, option: str = "time") -> int:
    """Milliseconds since the epoch for ``text``: ISO 8601, a time ago (``2h``), ``now``
    or epoch milliseconds. A bad value raises a one-line ``ClickException``."""
    raw = text.strip()
    if raw.lower() == "now":
        return now_ms
    if raw.isdigit():
        return int(raw)
    match = _RELATIVE.match(raw.lower())
    if match:
        return now_ms - int(float(match.group(1)) * _UNITS_MS[match.group(2)])
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise click.ClickException(
            f"bad {option} {text!r}: use {TIME_HELP}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # a naive time is local, as in Kafka's tools
    return int(parsed.timestamp() * 1000)


def format_time(ms: int) -> str:
    """``ms`` since the epoch as local ISO 8601 with milliseconds."""
    if ms < 0:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="milliseconds")


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@contextlib.contextmanager
def until_interrupted() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT) while the block runs, so a long command can stop
    cleanly (commit, flush, summarise) instead of dying with a traceback."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class _Progress:
    """What code drawing progress sees when there is no terminal: nothing is drawn."""

    length = 0
    pos = 0

    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Any]:
    """A progress bar on stderr when stdout is a terminal; otherwise nothing is drawn."""
    if not sys.stdout.isatty() or total <= 0:
        yield _Progress()
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar
