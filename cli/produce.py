"""``logstore produce``: one record a line, from stdin or a file, through a producer.

What was written is never left unsaid. A run that stops early (a bad line, a line too
large for the topic, the topic deleted meanwhile, Ctrl-C) first lets the producer write
everything it was sent, then says on stderr how many records were acknowledged and the
first input line that was not: every line before it is in the topic (or was skipped as
bad), so ``tail -n +N`` resumes. Built on the public ``logstore`` API only.
"""

from __future__ import annotations

import functools
import json
import math
import os
import select
import sys
import threading
from collections.abc import Iterator
from typing import IO, NamedTuple

import click

import logstore

from .cluster import backend_of, open_target
from .common import describe, progress, until_interrupted, user_errors
from .partitions import check_partition

INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C: 128 + SIGINT, as a shell reports for a command it stopped."""
SHOWN_BAD_LINES = 5
"""How many bad line numbers ``--skip-bad-lines`` lists."""
JSON_FIELDS = ("key", "value", "headers", "timestamp")
_READ_BYTES = 1 << 16

Parsed = tuple[bytes | None, bytes | None, dict[str, bytes | None], int | None]


class BadLineError(ValueError):
    """An input line that is no record (the message says why)."""


class ProduceInterruptedError(click.ClickException):
    """Ctrl-C stopped the run: the message says what was written (exit status 130)."""

    exit_code = INTERRUPTED_EXIT


class _Stop(NamedTuple):
    """Where reading the input stopped early, and why."""

    line: int
    why: str
    interrupted: bool = False


@click.command()
@click.argument("topic")
@click.option("--file", "path", type=click.Path(dir_okay=False), help="Read from FILE.")
@click.option("--key-separator", help="Split each line at SEP into key and value.")
@click.option("--header", "headers", multiple=True, help="K=V header on every record.")
@click.option("--partition", type=int, help="Write to this partition.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text: one value a line; json: one object a line with key, value, headers, timestamp.",
)
@click.option("--skip-bad-lines", is_flag=True,
              help="Skip lines that are no record (or too large), count them, go on.")
@click.pass_obj
@user_errors
def produce(
    target: str,
    topic: str,
    path: str | None,
    key_separator: str | None,
    headers: tuple[str, ...],
    partition: int | None,
    fmt: str,
    skip_bad_lines: bool,
) -> None:
    """Write records to TOPIC from stdin (or --file), one a line.

    With --format json each line is an object with the fields key, value, headers (an
    object of name: value) and timestamp (ms since the epoch), each optional; any other
    field is an error. A string is stored as its UTF-8 bytes, null as no value, and
    anything else (a number, true/false, an object, an array) as its JSON text.

    A line that is no record stops the run, after everything before it was written:
    stderr says how many records were acknowledged and the first input line that was
    not, so 'tail -n +N' resumes (exit status 1; 130 after Ctrl-C). With
    --skip-bad-lines such lines (and lines too large for the topic) are skipped instead,
    and counted at the end.

    \b
    Examples:
      seq 1 100000 | logstore produce numbers
      logstore produce users --key-separator : < users.txt
      logstore produce events --format json --file events.jsonl --skip-bad-lines
      tail -n +57 events.jsonl | logstore produce events --format json   # resume
    """
    common: dict[str, bytes | None] = {}
    for pair in headers:
        k, sep, v = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not K=V", param_hint="--header")
        common[k] = v.encode()
    if key_separator == "":
        raise click.ClickException(
            "--key-separator must not be empty (leave it out to take whole lines as values)"
        )
    if key_separator is not None and fmt == "json":
        raise click.ClickException(
            "--key-separator does not apply to --format json (each object has its own "
            "\"key\"): leave one of them out"
        )
    separator = None if key_separator is None else key_separator.encode()
    delivery = _Delivery(skip_bad_lines)
    stopped: _Stop | None = None
    with until_interrupted() as interrupted, open_target(target) as store:
        # an unknown topic or partition is one line, before any input is read
        backend = backend_of(store)
        if partition is None:
            backend.topic_metadata(topic)
        else:
            check_partition(backend, topic, partition)
        stream = open(path, "rb") if path else sys.stdin.buffer  # noqa: SIM115
        try:
            total = os.fstat(stream.fileno()).st_size if path else 0
            with store.producer(linger_ms=20) as producer, \
                    progress(total, f"produce {topic}") as bar:
                number = 0
                for number, line in _lines(stream, interrupted):
                    try:
                        key, value, hdrs, ts = _parse_line(line, fmt, separator, common)
                    except BadLineError as err:
                        if not skip_bad_lines:
                            stopped = _Stop(number, str(err))
                            break
                        delivery.skip(number, str(err))
                        continue
                    try:
                        future = producer.send(topic, value, key=key, headers=hdrs,
                                               partition=partition, timestamp=ts)
                    except logstore.LogstoreError as err:
                        stopped = _Stop(number, describe(err))
                        break
                    future.add_callback(functools.partial(delivery.done, number))
                    if delivery.failed:  # e.g. the topic was deleted: stop sending
                        break
                    if path and number % 4096 == 0:
                        bar.update(stream.tell() - bar.pos)
                if stopped is None and interrupted.is_set():
                    stopped = _Stop(number + 1, "interrupted (Ctrl-C)", interrupted=True)
        finally:
            if path:
                stream.close()
    # the producer has written (or failed) everything it was sent
    delivery.report(topic, stopped)


def _lines(stream: IO[bytes], stop: threading.Event) -> Iterator[tuple[int, bytes]]:
    """``(number, line)`` for each input line, without its line end, until the input ends
    or ``stop`` is set (by Ctrl-C: a wait for a terminal or an idle pipe ends at once)."""
    number = 0
    for chunk in _chunks(stream, stop):
        for line in chunk:
            if stop.is_set():
                return
            number += 1
            yield number, line.rstrip(b"\r\n")


def _chunks(stream: IO[bytes], stop: threading.Event) -> Iterator[list[bytes]]:
    """The input's whole lines, in chunks as they arrive (a pipe's lines are not held
    back until a buffer fills); the last line may lack its newline. A real file or pipe
    is read by descriptor, waiting at most 0.1 s at a time so ``stop`` is seen."""
    try:
        fd: int | None = stream.fileno()
    except (OSError, ValueError):  # an in-memory stream (tests): it never waits
        fd = None
    pending: list[bytes] = []  # the start of a line whose end has not come yet
    while not stop.is_set():
        try:
            if fd is None:
                data = stream.read(_READ_BYTES)
            elif select.select([fd], [], [], 0.1)[0]:
                data = os.read(fd, _READ_BYTES)
            else:
                continue
        except OSError as err:
            raise click.ClickException(f"cannot read the input: {err.strerror or err}") from err
        if not data:
            if pending:
                yield [b"".join(pending)]
            return
        if b"\n" not in data:
            pending.append(data)
            continue
        if pending:
            pending.append(data)
            data = b"".join(pending)
        lines = data.split(b"\n")
        tail = lines.pop()
        pending = [tail] if tail else []
        yield lines


class _Delivery:
    """Which input lines are in the topic. Producer callbacks run in the producer's
    threads, so everything here is guarded by one lock.

    ``next_line``: every line before it was acknowledged (or skipped as bad); lines after
    it that were settled already wait in ``_above`` (at most the records in flight then).
    """

    def __init__(self, skip_bad_lines: bool) -> None:
        self._lock = threading.Lock()
        self._skip_bad_lines = skip_bad_lines
        self.next_line = 1
        self._above: dict[int, bool] = {}  # line -> acknowledged (True) or skipped
        self.acked: dict[int, int] = {}  # partition -> records acknowledged
        self.bad_lines: list[int] = []  # the first SHOWN_BAD_LINES skipped
        self.bad_count = 0
        self.first_bad: str | None = None
        self.failed = 0
        self.first_failure: tuple[int, BaseException] | None = None

    def _settle(self, line: int, acknowledged: bool) -> None:
        if line != self.next_line:
            self._above[line] = acknowledged
            return
        self.next_line += 1
        while self._above.pop(self.next_line, None) is not None:
            self.next_line += 1

    def skip(self, line: int, why: str) -> None:
        with self._lock:
            self.bad_count += 1
            if len(self.bad_lines) < SHOWN_BAD_LINES:
                self.bad_lines.append(line)
            if self.first_bad is None:
                self.first_bad = f"line {line}: {why}"
            self._settle(line, False)

    def done(
        self, line: int, meta: logstore.RecordMetadata | None, error: BaseException | None
    ) -> None:
        if error is None and meta is not None:
            with self._lock:
                self.acked[meta.partition] = self.acked.get(meta.partition, 0) + 1
                self._settle(line, True)
            return
        if self._skip_bad_lines and isinstance(error, logstore.RecordTooLargeError):
            self.skip(line, _too_large(error))
            return
        with self._lock:
            self.failed += 1
            if error is not None and (
                self.first_failure is None or line < self.first_failure[0]
            ):
                self.first_failure = (line, error)

    def report(self, topic: str, stopped: _Stop | None) -> None:
        """Say what was written: the summary on stderr, or (raised as a ClickException)
        one error line if the run stopped early or records failed."""
        acked = sum(self.acked.values())
        skipped = ""
        if self.bad_count:
            more = ", ..." if self.bad_count > len(self.bad_lines) else ""
            skipped = (f"skipped {self.bad_count} bad line(s) (line "
                       f"{', '.join(map(str, self.bad_lines))}{more}; {self.first_bad})")
        if stopped is None and not self.failed:
            spread = ", ".join(f"p{p}: {n}" for p, n in sorted(self.acked.items()))
            click.echo(f"wrote {acked} record(s) to {topic!r} ({spread or 'none'})", err=True)
            if skipped:
                click.echo(skipped, err=True)
            return
        resume = self.next_line  # every line before it is in the topic, or was skipped
        interrupted = False
        if self.first_failure is not None and self.first_failure[0] == resume:
            error = self.first_failure[1]
            why = (_too_large(error) if isinstance(error, logstore.RecordTooLargeError)
                   else describe(error) if isinstance(error, Exception) else str(error))
        elif stopped is not None and stopped.line == resume:
            why, interrupted = stopped.why, stopped.interrupted
        else:
            why = "not acknowledged"
        again = sum(1 for acknowledged in self._above.values() if acknowledged)
        parts = [
            f"stopped at input line {resume}: {why}",
            f"{acked} record(s) acknowledged" + (f", {self.failed} not" if self.failed else ""),
            *([skipped] if skipped else []),
            f"resume with tail -n +{resume}"
            + (f" (it sends again the {again} record(s) acknowledged after line {resume})"
               if again else ""),
        ]
        raise (ProduceInterruptedError if interrupted else click.ClickException)("; ".join(parts))


def _too_large(err: logstore.RecordTooLargeError) -> str:
    if err.size < 0:  # a broker's refusal: it tells no sizes
        return f"the line is too large: {err}"
    return (
        f"the line is too large: its record takes {err.size} bytes, over the topic's "
        f"max_message_bytes ({err.limit}; raise it with 'logstore topics alter TOPIC -c "
        f"max_message_bytes=N')"
    )


def _parse_line(
    line: bytes, fmt: str, separator: bytes | None, common: dict[str, bytes | None]
) -> Parsed:
    """The record of one input line.

    Raises:
        BadLineError: saying why the line is no record.
    """
    if fmt == "json":
        try:
            return _parse_json(line, common)
        except RecursionError:
            raise BadLineError("JSON nested too deeply") from None
        except BadLineError:
            raise
        except ValueError as err:  # json's errors, and text that is no UTF-8
            raise BadLineError(str(err)) from err
    if separator is not None:
        key, sep, value = line.partition(separator)
        if not sep:
            raise BadLineError(f"no key separator {separator.decode()!r}")
        return key, value, dict(common), None
    return None, line, dict(common), None


def _reject_constant(name: str) -> float:
    raise BadLineError(f"{name} is not JSON (a number must be finite)")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise BadLineError(f"{text} is too large for a JSON number (a number must be finite)")
    return number


def _as_bytes(data: object) -> bytes | None:
    """A JSON value as stored: a string as its UTF-8, null as None, anything else as
    its JSON text."""
    if data is None:
        return None
    if isinstance(data, str):
        return data.encode()
    return json.dumps(data).encode()


def _unique_names(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for name, value in pairs:
        if name in obj:
            raise BadLineError(f"the name {name!r} is given twice in one JSON object (which "
                               f"one is meant?)")
        obj[name] = value
    return obj


def _parse_json(line: bytes, common: dict[str, bytes | None]) -> Parsed:
    obj = json.loads(line, parse_constant=_reject_constant, parse_float=_finite,
                     object_pairs_hook=_unique_names)
    if not isinstance(obj, dict):
        raise BadLineError(f"not a JSON object but {type(obj).__name__} (fields: "
                      f"{', '.join(JSON_FIELDS)})")
    unknown = sorted(set(obj) - set(JSON_FIELDS))
    if unknown:
        raise BadLineError(f"unknown field(s) {', '.join(map(repr, unknown))} (a record has "
                      f"the fields {', '.join(JSON_FIELDS)})")
    given = obj.get("headers")
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise BadLineError(f"headers must be an object of name: value, not {json.dumps(given)}")
    ts = obj.get("timestamp")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int) or ts < 0):
        raise BadLineError(f"timestamp {json.dumps(ts)} is not milliseconds since the epoch "
                      f"(an integer >= 0)")
    headers = {**common, **{name: _as_bytes(v) for name, v in given.items()}}
    return _as_bytes(obj.get("key")), _as_bytes(obj.get("value")), headers, ts
