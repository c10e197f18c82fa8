"""``logstore replay``: re-emit a time range of a topic, at its original pace or faster."""

from __future__ import annotations

import heapq
import sys
import time

import click

from logstore import TopicPartition
from logstore.client.backend import Backend
from logstore.client.reading import read_partition

from .cluster import backend_of, open_target
from .commands import Fields, render_record
from .common import (
    TIME_HELP,
    describe,
    format_time,
    parse_time,
    progress,
    until_interrupted,
    user_errors,
)
from .partitions import spans


def _bounds(
    backend: Backend, topic: str, from_ms: int, to_ms: int | None
) -> dict[int, tuple[int, int]]:
    """Each partition's offsets [first at or after from_ms, first at or after to_ms), or
    up to its end now (a replay into the same topic must not chase its own output)."""
    out = {}
    for span in spans(backend, topic):
        tp = TopicPartition(topic, span.partition)
        found = backend.offset_for_timestamp(tp, from_ms)
        if found is None:
            continue
        start, stop = max(found.offset, span.start), span.end
        if to_ms is not None:
            until = backend.offset_for_timestamp(tp, to_ms)
            stop = stop if until is None else min(until.offset, stop)
        if start < stop:
            out[span.partition] = (start, stop)
    return out


@click.command()
@click.argument("topic")
@click.option("--from-time", required=True, help=f"Replay from this time: {TIME_HELP}.")
@click.option("--to-time", help="Stop before the first record at or after this time.")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="N times the original pace (2 = twice as fast).")
@click.option("--max-speed", is_flag=True, help="As fast as possible, no waiting.")
@click.option("--to", "dest", help="Write to this topic instead of stdout.")
@click.option("--keep-timestamps", is_flag=True,
              help="With --to: keep the original timestamps (default: the time of replay).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "raw"]), default="text",
    show_default=True, help="Output to stdout, as in 'logstore consume'.",
)
@click.pass_obj
@user_errors
def replay(
    target: str,
    topic: str,
    from_time: str,
    to_time: str | None,
    speed: float,
    max_speed: bool,
    dest: str | None,
    keep_timestamps: bool,
    fmt: str,
) -> None:
    """Re-emit TOPIC's records from --from-time (to --to-time) in timestamp order.

    Records go to stdout, or with --to into another topic (same key, value and headers;
    placed by key). The gaps between the original timestamps are kept, divided by --speed,
    or dropped with --max-speed. It stops at the log end as it was when the replay began.

    \b
    Examples:
      logstore replay orders --from-time 1h --max-speed
      logstore replay orders --from-time 2026-12-01T09:00 --to-time 2026-12-01T10:00 --speed 60
      logstore replay orders --from-time 1d --to orders-replayed --max-speed
    """
    if speed <= 0:
        raise click.ClickException(f"--speed {speed} must be above 0 (or use --max-speed)")
    now = int(time.time() * 1000)
    from_ms = parse_time(from_time, now, "--from-time")
    to_ms = None if to_time is None else parse_time(to_time, now, "--to-time")
    if to_ms is not None and to_ms <= from_ms:
        raise click.ClickException(
            f"--to-time {to_time!r} is not after --from-time {from_time!r}"
        )
    with until_interrupted() as interrupted, open_target(target, must_exist=True) as store:
        backend = backend_of(store)
        if dest is not None:
            backend.topic_metadata(dest)  # exists, or TopicNotFoundError says so
        bounds = _bounds(backend, topic, from_ms, to_ms)
        total = sum(stop - start for start, stop in bounds.values())
        # (records that retention deletes meanwhile fail the replay: OffsetOutOfRangeError)
        streams = [read_partition(backend, TopicPartition(topic, p), start, stop, chunk=2000,
                                  skip_deleted=False)
                   for p, (start, stop) in sorted(bounds.items())]
        merged = heapq.merge(*streams, key=lambda r: (r.timestamp, r.partition, r.offset))
        count, first_ts, last_ts, started = 0, None, None, time.monotonic()
        fields = Fields(False, False, False, False, False)
        out = sys.stdout.buffer
        producer = store.producer() if dest is not None else None
        errors: list[BaseException] = []

        def failed(meta: object, error: BaseException | None) -> None:
            if error is not None:
                errors.append(error)

        try:
            with progress(total if dest is not None else 0, f"replay {topic}") as bar:
                for record in merged:
                    if interrupted.is_set():
                        break
                    if first_ts is None:
                        first_ts = record.timestamp
                    elif not max_speed:
                        due = started + (record.timestamp - first_ts) / 1000 / speed
                        wait = due - time.monotonic()
                        if wait > 0 and interrupted.wait(wait):  # Ctrl-C ends a long gap
                            break
                    last_ts = record.timestamp
                    if producer is not None and dest is not None:
                        producer.send(
                            dest, record.value, key=record.key, headers=record.headers,
                            timestamp=record.timestamp if keep_timestamps else None,
                        ).add_callback(failed)
                        bar.update(1)
                        if errors:
                            break
                    else:
                        out.write(render_record(record, fmt, fields))
                        if not max_speed:
                            out.flush()  # paced output reaches a pipe as it happens
                    count += 1
            out.flush()
        finally:
            if producer is not None:
                producer.close()
    stopped = interrupted.is_set()
    if errors:
        error = errors[0]
        why = describe(error) if isinstance(error, Exception) else str(error)
        raise click.ClickException(f"writing to {dest!r} failed: {why}")
    elapsed = time.monotonic() - started
    span = "" if first_ts is None or last_ts is None else (
        f", timestamps {format_time(first_ts)} .. {format_time(last_ts)}"
    )
    where = f"to {dest!r}" if dest else "to stdout"
    click.echo(f"replayed {count} record(s) of {topic!r} {where} in {elapsed:.2f} s{span}"
               + (" (interrupted)" if stopped else ""), err=True)


