"""What every ``logstore`` command shares: one-line user errors, time arguments, tables,
and progress bars that appear only on a terminal."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import functools
import os
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


BROKEN_PIPE_EXIT = 141
"""Exit status when stdout is a pipe whose reader has gone (``logstore ... | head -1``):
what a shell reports for a Unix tool that SIGPIPE ended (128 + 13). Nothing is printed."""


def user_errors(fn: F) -> F:
    """Turn errors into one line on stderr and exit status 1, never a traceback:
    logstore's errors and bad values (in the command line's words: flags, not Python
    arguments), a failed write to stdout ("cannot write to stdout: ..."), and any other
    ``OSError``. A closed stdout pipe ends the command quietly with
    :data:`BROKEN_PIPE_EXIT`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (logstore.LogstoreError, ValueError) as err:
            raise click.ClickException(describe(err)) from err
        except OSError as err:
            raise os_error(err) from err

    return wrapper  # type: ignore[return-value]


def describe(err: Exception) -> str:
    """``err``'s message as the command line should say it: where the library's message
    names a Python argument, the command line's way to do the same instead."""
    if isinstance(err, logstore.StoreLockedError):
        ctx = click.get_current_context(silent=True)
        where = os.path.abspath(ctx.obj) if ctx is not None and isinstance(ctx.obj, str) \
            else "the store"
        return (
            f"{where} is in use by a process that needs it to itself (such as 'logstore "
            f"verify', or a program that opened the store exclusively): try again when it "
            f"is done"
        )
    if isinstance(err, logstore.RecordTooLargeError) and err.size >= 0:
        return (
            f"a record batch of {err.size} bytes is over the topic's max_message_bytes "
            f"({err.limit}): send smaller records, or raise the limit with 'logstore topics "
            f"alter TOPIC -c max_message_bytes=N'"
        )
    if isinstance(err, logstore.LogFailedError):  # each command opens the store anew
        return str(err).replace("close and reopen the store to recover",
                                "run the command again to recover")
    if isinstance(err, logstore.ClusterError) and err.code in _UNREACHABLE:
        return (f"{err} (check --bootstrap-server, or LOGSTORE_BOOTSTRAP_SERVERS, and that "
                f"the cluster is up)")
    return str(err)


_UNREACHABLE = ("_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE")
"""librdkafka's codes of a ClusterError that means no broker answered."""


def os_error(err: OSError) -> click.ClickException | click.exceptions.Exit:
    """What to raise for ``err``: see :func:`user_errors`."""
    if err.errno == errno.EPIPE:
        _discard_stdout()
        return click.exceptions.Exit(BROKEN_PIPE_EXIT)
    reason = err.strerror or str(err) or type(err).__name__
    if err.filename is not None:
        return click.ClickException(f"cannot use {err.filename}: {reason}")
    if err.errno is not None:
        # The store names the file in every OS error it raises (StorageError), and the
        # commands that read input say so themselves: an OS error naming no file comes
        # from writing the output. (A failed write drops what was buffered, so asking
        # stdout again proves nothing.)
        _discard_stdout()
        return click.ClickException(f"cannot write to stdout: {reason}")
    return click.ClickException(reason)


def _discard_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so the interpreter's last flush of what is
    still buffered for it fails no more ("Exception ignored ..." on stderr)."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (CliRunner): nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


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
def until_interrupted(
    *signals: signal.Signals,
) -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT), or by any of ``signals`` if given, while the block
    runs, so a long command can stop cleanly (commit, flush, summarise) instead of dying
    with a traceback."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in signals or (signal.SIGINT,)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
