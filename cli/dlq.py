"""``logstore dlq list|redrive``: look at dead letters and send them back (issue 16).

Dead letters are the records :class:`~logstore.patterns.retry.RetryingConsumer` wrote to
a dead-letter topic, with the ``logstore.dlq.*`` headers of :mod:`logstore.headers`.

What was re-driven is kept as the committed offsets of the consumer group
:data:`REDRIVE_GROUP`, one per dead-letter partition: the committed offset is the first
offset not re-driven yet (every one below it was), and its commit metadata lists the
re-driven offsets above it (``"5,7-9"``), so re-driving chosen offsets out of order is
remembered too. ``logstore groups describe logstore-redrive`` shows it; deleting that
group forgets it. A re-drive commits after the producer flushed the records, so a crash
in between sends them again on the next re-drive (at-least-once), never loses one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import click

from logstore import headers as h
from logstore.client.admin import current_offsets
from logstore.client.backend import Backend
from logstore.patterns.retry_policy import own_headers
from logstore.types import ConsumerRecord, TopicPartition

from .cluster import backend_of, open_target
from .common import format_time, table, user_errors
from .partitions import read_range, spans

REDRIVE_GROUP = "logstore-redrive"
MAX_STATE_CHARS = 4096  # Kafka's offset.metadata.max.bytes: the commit metadata's limit
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


class _Letter:
    """One record of a dead-letter topic and what its headers say."""

    def __init__(self, partition: int, record: ConsumerRecord) -> None:
        self.partition = partition
        self.record = record
        found = {k: v for k, v in record.headers}
        self.fields = {k: _text(found.get(k)) for k in h.DLQ_HEADERS}

    @property
    def is_dead_letter(self) -> bool:
        return self.fields[h.DLQ_ORIGINAL_TOPIC] is not None

    @property
    def where(self) -> str:
        return f"{self.partition}:{self.record.offset}"

    def as_json(self, redriven: bool) -> dict[str, object]:
        f = self.fields
        return {
            "partition": self.partition, "offset": self.record.offset,
            "timestamp": self.record.timestamp,
            "original": {"topic": f[h.DLQ_ORIGINAL_TOPIC],
                         "partition": _int(f[h.DLQ_ORIGINAL_PARTITION]),
                         "offset": _int(f[h.DLQ_ORIGINAL_OFFSET]),
                         "timestamp": _int(f[h.DLQ_ORIGINAL_TIMESTAMP])},
            "attempts": _int(f[h.DLQ_ATTEMPTS]),
            "error_class": f[h.DLQ_ERROR_CLASS], "error_message": f[h.DLQ_ERROR_MESSAGE],
            "key": _text(self.record.key), "value": _text(self.record.value),
            "headers": {k: _text(v) for k, v in own_headers(self.record.headers)},
            "redriven": redriven,
        }

    def row(self, redriven: bool) -> list[str]:
        f = self.fields
        original = "-" if f[h.DLQ_ORIGINAL_TOPIC] is None else (
            f"{f[h.DLQ_ORIGINAL_TOPIC]}-{f[h.DLQ_ORIGINAL_PARTITION]}@"
            f"{f[h.DLQ_ORIGINAL_OFFSET]}")
        error = f"{f[h.DLQ_ERROR_CLASS] or '-'}: {f[h.DLQ_ERROR_MESSAGE] or ''}"
        return [
            self.where, format_time(self.record.timestamp), original,
            f[h.DLQ_ATTEMPTS] or "-", _preview(error, 60), _preview(_text(self.record.key)),
            _preview(_text(self.record.value)), "yes" if redriven else "no",
        ]


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="backslashreplace")


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _preview(text: str | None, chars: int = PREVIEW_CHARS) -> str:
    if text is None:
        return "-"
    text = text.replace("\n", "\\n")
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _read_all(backend: Backend, topic: str) -> list[_Letter]:
    return [_Letter(span.partition, record) for span in spans(backend, topic)
            for record in read_range(backend, topic, span.partition, span.start, span.end)]


# ---------------------------------------------------------------------- re-drive state

def _parse_state(offset: int, metadata: str) -> set[int]:
    """The re-driven offsets at or above the committed ``offset``."""
    done: set[int] = set()
    for part in filter(None, metadata.split(",")):
        low, _, high = part.partition("-")
        try:
            done.update(range(int(low), int(high or low) + 1))
        except ValueError:
            continue  # not ours: ignore it
    return {o for o in done if o >= offset}


def _format_state(done: Iterable[int]) -> str:
    parts: list[str] = []
    for o in sorted(done):
        if parts and parts[-1].split("-")[-1] == str(o - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{o}"
        else:
            parts.append(str(o))
    return ",".join(parts)


def _redriven(backend: Backend, topic: str) -> dict[int, tuple[int, set[int]]]:
    """Per partition of ``topic``: the committed offset and the re-driven ones above."""
    out = {}
    for tp, c in current_offsets(backend, REDRIVE_GROUP).items():
        if tp.topic == topic:
            out[tp.partition] = (c.offset, _parse_state(c.offset, c.metadata))
    return out


def _is_redriven(state: dict[int, tuple[int, set[int]]], letter: _Letter) -> bool:
    committed, above = state.get(letter.partition, (0, set()))
    return letter.record.offset < committed or letter.record.offset in above


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
        letters = _read_all(backend, topic)
        state = _redriven(backend, topic)
    _check_dead_letters(topic, letters)
    letters = letters[:limit] if limit is not None else letters
    if as_json:
        click.echo(json.dumps([x.as_json(_is_redriven(state, x)) for x in letters]))
        return
    table(["PARTITION:OFFSET", "TIME", "ORIGINAL", "ATTEMPTS", "ERROR", "KEY", "VALUE",
           "REDRIVEN"], [x.row(_is_redriven(state, x)) for x in letters])


def _check_dead_letters(topic: str, letters: Sequence[_Letter]) -> None:
    if letters and not any(x.is_dead_letter for x in letters):
        raise click.ClickException(
            f"topic {topic!r} holds no dead letters: none of its {len(letters)} record(s) "
            f"has the {h.DLQ_ORIGINAL_TOPIC} header (give the dead-letter topic, e.g. "
            f"'{topic}{h.DLQ_SUFFIX}')"
        )


def _choose(
    letters: list[_Letter], topic: str, partitions: int, offsets: Sequence[str]
) -> list[_Letter]:
    """The letters ``--offset`` names (``PARTITION:OFFSET``, or ``OFFSET`` in a topic of
    one partition), in the order given."""
    by_where = {(x.partition, x.record.offset): x for x in letters}
    chosen = []
    for text in offsets:
        part, sep, off = text.rpartition(":")
        try:
            partition = int(part) if sep else 0
            offset = int(off)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not PARTITION:OFFSET (e.g. 0:12)", param_hint="--offset"
            ) from None
        if not sep and partitions > 1:
            raise click.BadParameter(
                f"{text!r} needs its partition: {topic!r} has {partitions} (use "
                f"PARTITION:OFFSET, e.g. 0:{offset})", param_hint="--offset")
        if not 0 <= partition < partitions:
            raise click.BadParameter(
                f"{topic!r} has no partition {partition} (it has 0..{partitions - 1})",
                param_hint="--offset")
        letter = by_where.get((partition, offset))
        if letter is None:
            held = sorted(o for p, o in by_where if p == partition)
            span = f"offsets {held[0]}..{held[-1]}" if held else "no records"
            raise click.BadParameter(
                f"offset {offset} is out of range: partition {partition} of {topic!r} "
                f"holds {span} (see 'logstore dlq list {topic}')", param_hint="--offset")
        if letter not in chosen:
            chosen.append(letter)
    return chosen


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
        letters = _read_all(backend, topic)
        partitions = backend.topic_metadata(topic).partitions
        state = _redriven(backend, topic)
        if redrive_all:
            chosen = [x for x in letters if not _is_redriven(state, x)]
        else:
            chosen = _choose(letters, topic, partitions, offsets)
            again = [x.where for x in chosen if _is_redriven(state, x)]
            if again:
                click.echo(f"already re-driven, skipped: {', '.join(again)}", err=True)
                chosen = [x for x in chosen if not _is_redriven(state, x)]
        if not chosen:
            click.echo(f"nothing to re-drive in {topic!r}")
            return
        routes = _routes(backend, topic, chosen, target)
        counts: dict[str, int] = {}
        for _, name, _ in routes:
            counts[name] = counts.get(name, 0) + 1
        where = ", ".join(f"{n} ({c})" for n, c in sorted(counts.items()))
        if not yes:
            click.confirm(f"re-drive {len(chosen)} dead letter(s) of {topic!r} to {where}?",
                          abort=True)
        new_state = _after(state, chosen, backend, topic)
        with store.producer() as producer:
            futures = [
                producer.send(name, x.record.value, x.record.key,
                              list(own_headers(x.record.headers)), partition=partition)
                for x, name, partition in routes
            ]
            producer.flush()
            for future in futures:
                future.result()
        backend.commit_offsets(REDRIVE_GROUP, new_state)
    click.echo(f"re-drove {len(chosen)} dead letter(s) of {topic!r} to {where}")


def _routes(
    backend: Backend, topic: str, chosen: list[_Letter], target: str | None
) -> list[tuple[_Letter, str, int | None]]:
    """Where each letter goes: its topic and partition (its original partition when it
    goes back to its original topic and that still has it, else by its key). Refuses,
    before anything is sent, letters without the headers and topics that do not exist."""
    missing = [x.where for x in chosen if not x.is_dead_letter]
    if missing and target is None:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise click.ClickException(
            f"{len(missing)} record(s) of {topic!r} ({shown}) have no "
            f"{h.DLQ_ORIGINAL_TOPIC} header, so their original topic is unknown: they are "
            f"not dead letters (give --to TOPIC to send them somewhere)"
        )
    sizes: dict[str, int] = {}
    out = []
    for x in chosen:
        name = target or x.fields[h.DLQ_ORIGINAL_TOPIC] or topic  # (never empty: see above)
        if name not in sizes:
            sizes[name] = backend.topic_metadata(name).partitions  # exists?
        original = _int(x.fields[h.DLQ_ORIGINAL_PARTITION])
        same = name == x.fields[h.DLQ_ORIGINAL_TOPIC]
        keep = same and original is not None and original < sizes[name]
        out.append((x, name, original if keep else None))
    return out


def _after(
    state: dict[int, tuple[int, set[int]]], chosen: list[_Letter], backend: Backend,
    topic: str,
) -> dict[TopicPartition, tuple[int, str]]:
    """The commits that record ``chosen`` as re-driven too."""
    starts = {span.partition: span.start for span in spans(backend, topic)}
    out = {}
    for partition in sorted({x.partition for x in chosen}):
        committed, above = state.get(partition, (0, set()))
        above = above | {x.record.offset for x in chosen if x.partition == partition}
        committed = max(committed, starts[partition])
        while committed in above:
            committed += 1
        left = {o for o in above if o > committed}
        metadata = _format_state(left)
        if len(metadata) > MAX_STATE_CHARS:
            raise click.ClickException(
                f"too many scattered re-driven offsets in partition {partition} of "
                f"{topic!r} to remember: re-drive the ones before them first (or --all)"
            )
        out[TopicPartition(topic, partition)] = (committed, metadata)
    return out
