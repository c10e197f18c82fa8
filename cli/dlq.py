"""``logstore dlq list|redrive``: look at dead letters and send them back (issue 16).

Dead letters are the records :class:`~logstore.patterns.retry.RetryingConsumer` wrote to
a dead-letter topic, with the ``logstore.dlq.*`` headers of :mod:`logstore.headers`.

What was re-driven is kept as the committed offsets of the consumer group
:data:`~logstore.patterns.dlq.REDRIVE_GROUP` (``logstore groups describe logstore-redrive``
shows it; deleting that group forgets it): :mod:`logstore.patterns.dlq` does the work,
the web console's dead-letter view too.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

import click

from logstore import headers as h
from logstore.client.backend import Backend
from logstore.errors import InvalidConfigError, PartitionNotFoundError
from logstore.patterns.dlq import (
    REDRIVE_GROUP,
    DeadLetter,
    LetterNotFoundError,
    execute_redrive,
    find_letters,
    letters_of,
    parse_where,
    plan_redrive,
    preview_redrive_all,
    redrive_state,
)
from logstore.patterns.dlq import redrive_all as redrive_all_letters
from logstore.patterns.retry_policy import own_headers

from .cluster import backend_of, open_target
from .common import format_time, table, user_errors

__all__ = ["REDRIVE_GROUP", "dlq"]

PREVIEW_CHARS = 40


@click.group()
def dlq() -> None:
    """List dead letters and re-drive them to their original topic.

    \b
    Examples:
      logstore dlq list orders.dlq
      logstore dlq list orders.dlq --json --limit 10
      logstore dlq redrive orders.dlq --offset 0:12 --offset 1:3     # PARTITION:OFFSET
      logstore dlq redrive orders.dlq --all --yes                    # what is left
      logstore dlq redrive orders.dlq --all --to orders-replay
    """


def _preview(text: str | None, chars: int = PREVIEW_CHARS) -> str:
    if text is None:
        return "-"
    text = text.replace("\n", "\\n")
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="backslashreplace")


def _as_json(letter: DeadLetter, redriven: bool) -> dict[str, object]:
    record = letter.record
    return {
        "partition": letter.partition, "offset": record.offset,
        "timestamp": record.timestamp, **letter.summary(),
        "key": _text(record.key), "value": _text(record.value),
        "headers": {k: _text(v) for k, v in own_headers(record.headers)},
        "redriven": redriven,
    }


def _row(letter: DeadLetter, redriven: bool) -> list[str]:
    f = letter.fields
    original = "-" if f[h.DLQ_ORIGINAL_TOPIC] is None else (
        f"{f[h.DLQ_ORIGINAL_TOPIC]}-{f[h.DLQ_ORIGINAL_PARTITION]}@"
        f"{f[h.DLQ_ORIGINAL_OFFSET]}")
    error = f"{f[h.DLQ_ERROR_CLASS] or '-'}: {f[h.DLQ_ERROR_MESSAGE] or ''}"
    return [
        letter.where, format_time(letter.record.timestamp), original,
        f[h.DLQ_ATTEMPTS] or "-", _preview(error, 60), _preview(_text(letter.record.key)),
        _preview(_text(letter.record.value)), "yes" if redriven else "no",
    ]


# ---------------------------------------------------------------------- commands

@dlq.command("list")
@click.argument("topic")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Show at most N dead letters (the oldest of each partition first).")
@click.pass_obj
@user_errors
def dlq_list(store_target: str, topic: str, as_json: bool, limit: int | None) -> None:
    """List the dead letters of TOPIC: where each came from, after how many attempts,
    the error, a preview of its key and value, and whether it was re-driven.

    \b
    Example:
      logstore dlq list orders.dlq --limit 20
    """
    with open_target(store_target, must_exist=True) as store:
        backend = backend_of(store)
        letters = list(itertools.islice(letters_of(backend, topic), limit))
        state = redrive_state(backend, topic)
        if letters and not any(x.is_dead_letter for x in letters):
            _check_dead_letters(topic, backend)
    if as_json:
        click.echo(json.dumps([_as_json(x, state.is_redriven(x)) for x in letters]))
        return
    table(["PARTITION:OFFSET", "TIME", "ORIGINAL", "ATTEMPTS", "ERROR", "KEY", "VALUE",
           "REDRIVEN"], [_row(x, state.is_redriven(x)) for x in letters])


def _check_dead_letters(topic: str, backend: Backend) -> None:
    """Refuses ``topic`` unless some record of it is a dead letter (read a fetch at a
    time, stopping at the first)."""
    count = 0
    for x in letters_of(backend, topic):
        if x.is_dead_letter:
            return
        count += 1
    if count:
        raise click.ClickException(
            f"topic {topic!r} holds no dead letters: none of its {count} record(s) "
            f"has the {h.DLQ_ORIGINAL_TOPIC} header (give the dead-letter topic, e.g. "
            f"'{topic}{h.DLQ_SUFFIX}')"
        )


def _choose(backend: Backend, topic: str, offsets: Sequence[str]) -> list[DeadLetter]:
    """The letters ``--offset`` names (``PARTITION:OFFSET``, or ``OFFSET`` in a topic of
    one partition), in the order given."""
    partitions = backend.topic_metadata(topic).partitions
    try:
        wheres = [parse_where(text, topic, partitions) for text in offsets]
        return find_letters(backend, topic, wheres)
    except (InvalidConfigError, PartitionNotFoundError, LetterNotFoundError) as err:
        message = err.args[0] if err.args else str(err)
        raise click.BadParameter(message, param_hint="--offset") from None


@dlq.command("redrive")
@click.argument("topic")
@click.option("--offset", "offsets", multiple=True, metavar="PARTITION:OFFSET",
              help="A dead letter to re-drive (repeat for more).")
@click.option("--all", "redrive_all", is_flag=True,
              help="Every dead letter not re-driven yet.")
@click.option("--to", "target", default=None,
              help="Send them to this topic instead of their original one.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@user_errors
def dlq_redrive(
    store_target: str, topic: str, offsets: tuple[str, ...], redrive_all: bool,
    target: str | None, yes: bool,
) -> None:
    """Send dead letters of TOPIC back to their original topic (or --to TOPIC), with
    their original key, value and headers (the dead-letter headers dropped), and remember
    them, so a later 'redrive --all' does not send them again.

    \b
    Examples:
      logstore dlq redrive orders.dlq --offset 0:12
      logstore dlq redrive orders.dlq --all --yes
    """
    if bool(offsets) == redrive_all:
        raise click.UsageError("give either --offset PARTITION:OFFSET (one or more) or --all")
    with open_target(store_target, must_exist=True) as store:
        backend = backend_of(store)
        if redrive_all:
            preview = preview_redrive_all(backend, topic, target)
            count, counts = preview.count, preview.counts
        else:
            plan = plan_redrive(backend, topic, _choose(backend, topic, offsets), target)
            if plan.skipped:
                click.echo("already re-driven, skipped: "
                           f"{', '.join(x.where for x in plan.skipped)}", err=True)
            count, counts = len(plan.routes), plan.counts
        if not count:
            click.echo(f"nothing to re-drive in {topic!r}")
            return
        where = ", ".join(f"{n} ({c})" for n, c in counts.items())
        if not yes:
            click.confirm(f"re-drive {count} dead letter(s) of {topic!r} to {where}?",
                          abort=True)
        if redrive_all:  # exactly the letters counted (not those dead-lettered since)
            redrive_all_letters(backend, topic, target, through=preview.through)
        else:
            execute_redrive(backend, plan)
    click.echo(f"re-drove {count} dead letter(s) of {topic!r} to {where}")
