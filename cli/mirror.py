"""``logstore mirror SRC DST``: copy topics and consumer groups between stores (issue 17).

The work is :class:`logstore.patterns.mirror.Mirror`'s; this module opens the two sides
(:func:`open_side`), names the mirror, draws the progress and prints the summary.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import click

import logstore
from logstore.backend import backend_for
from logstore.client.backend import Backend
from logstore.patterns.mirror import (
    DEFAULT_BATCH_RECORDS,
    Mirror,
    MirrorProgress,
    MirrorStats,
    checkpoint_group,
)
from logstore.types import Compression

from .cluster import cluster_address
from .common import until_interrupted, user_errors
from .datadir import open_store

KAFKA_SCHEME = "kafka://"
NON_TTY_PROGRESS_S = 5.0


class Side(NamedTuple):
    """One end of a mirror: its backend, how to close it, and a stable identity (what
    the default mirror name is derived from)."""

    backend: Backend
    close: Callable[[], None]
    identity: str


def open_side(target: str, *, source: bool = False) -> Side:
    """Open ``target``: a data directory, or a Kafka cluster as ``kafka://HOST:PORT``.
    A source directory must hold a store already (nothing is made there); a destination
    directory becomes a store if it is missing or empty, as for any writing command.

    Raises:
        click.ClickException: no store there, or a malformed kafka:// address.
    """
    role = "SRC" if source else "DST"
    if target.startswith(KAFKA_SCHEME):
        try:  # librdkafka's own log lines off unless asked for (errors stay one line)
            address = cluster_address(target, ())
        except click.ClickException as err:
            raise click.ClickException(err.message.replace("--bootstrap-server", role)) from None
        cluster = logstore.KafkaStore(address)
        return Side(cluster.backend, cluster.close, target.lower())
    if source and not (os.path.isdir(target) and os.listdir(target)):
        raise click.ClickException(
            f"no store at {os.path.abspath(target)} ({role} must be a logstore data "
            f"directory or kafka://HOST:PORT)"
        )
    store = open_store(target, must_exist=source, read_only_ok=source,
                       maintenance=not source)
    return Side(backend_for(store), store.close, "dir:" + os.path.realpath(target))


def default_name(src_identity: str) -> str:
    """The mirror's name when ``--name`` is not given: a short stable hash of SRC."""
    return hashlib.sha256(src_identity.encode("utf-8")).hexdigest()[:12]


class _Display:
    """The progress line on stderr: redrawn in place on a terminal, else a line every
    few seconds."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = time.monotonic()  # without a terminal: a first line after a while
        self.drawn = False

    def __call__(self, p: MirrorProgress) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not self.tty and now - self.last < NON_TTY_PROGRESS_S:
            return
        self.last = now
        rate = p.copied / p.elapsed_s if p.elapsed_s > 0 else 0.0
        line = (f"mirrored {p.copied:,} record(s) ({rate:,.0f}/s), lag {p.lag:,} over "
                f"{p.partitions} partition(s)")
        if self.tty:
            click.echo(f"\r{line}\x1b[K", nl=False, err=True)
            self.drawn = True
        else:
            click.echo(line, err=True)

    def done(self) -> None:
        if self.drawn:
            click.echo(err=True)


def _summary(stats: MirrorStats, interrupted: bool, group: str) -> None:
    rate = stats.copied / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
    click.echo(f"mirrored {stats.copied:,} record(s) in {stats.batches:,} batch(es) in "
               f"{stats.elapsed_s:.2f} s ({rate:,.0f} records/s)")
    if stats.topics_created:
        click.echo(f"created topic(s): {', '.join(stats.topics_created)}")
    for topic, count in stats.partitions_added.items():
        click.echo(f"grew topic {topic!r} to {count} partition(s)")
    if stats.skipped_on_resume:
        click.echo(f"resumed: {stats.skipped_on_resume:,} record(s) already copied before "
                   f"the last stop were not copied again")
    if stats.started_at_end:
        click.echo(f"started at the source's end (records already there not copied; "
                   f"--from-beginning copies them): {', '.join(stats.started_at_end)}")
    if stats.restarts:
        click.echo(f"recovered from {stats.restarts} error(s) (see the warnings above) by "
                   f"starting again from the checkpoints")
    if stats.lost_to_retention:
        click.echo(f"warning: {stats.lost_to_retention:,} source offset(s) were deleted by "
                   f"retention before they could be copied", err=True)
    for g, n in stats.groups_translated.items():
        click.echo(f"group {g!r}: offsets of {n} partition(s) translated")
    for g, why in stats.groups_skipped.items():
        click.echo(f"group {g!r}: not translated: {why}")
    if interrupted:
        click.echo(f"stopped: progress is saved (group {group!r} on DST); the same command "
                   f"resumes")


@click.command("mirror")
@click.argument("src")
@click.argument("dst")
@click.option("--topics", default=".*", show_default=True, metavar="REGEX",
              help="Mirror the topics whose whole name matches (internal ones never).")
@click.option("--groups", default=".*", show_default=True, metavar="REGEX",
              help="Translate the committed offsets of these consumer groups.")
@click.option("--no-groups", is_flag=True, help="Translate no consumer group offsets.")
@click.option("--from-beginning", is_flag=True,
              help="Partitions the mirror has no progress in start at the source's first "
              "record (default: at its end, as kafka-console-consumer). Progress is always "
              "resumed.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep mirroring new records until Ctrl-C or SIGTERM (default: stop at "
              "the source's end as it was at the start).")
@click.option("--name", help="The mirror's name: its progress is kept as group "
              "logstore-mirror.NAME on DST (default: a hash of SRC).")
@click.option("--batch-records", type=click.IntRange(1, 100_000),
              default=DEFAULT_BATCH_RECORDS, show_default=True,
              help="Records per batch written to DST at most.")
@click.option("--compression", type=click.Choice([c.name.lower() for c in Compression]),
              default="none", show_default=True, help="Of the batches written to DST.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line on stderr.")
@user_errors
def mirror(
    src: str,
    dst: str,
    topics: str,
    groups: str,
    no_groups: bool,
    from_beginning: bool,
    follow: bool,
    name: str | None,
    batch_records: int,
    compression: str,
    quiet: bool,
) -> None:
    """Copy topics (records with keys, timestamps and headers; partition counts and
    configs) and consumer group offsets from SRC to DST, and resume where it stopped.

    SRC and DST are data directories or kafka://HOST:PORT. Partition i goes to partition
    i. The mirror must be the only writer of its topics on DST. Its progress is kept on
    DST (group logstore-mirror.NAME), so a stopped or killed mirror resumes with no
    record copied twice or left out. Group offsets are translated to DST (when the group
    has no members there) so that its consumers can move to DST and resume.

    \b
    Examples:
      logstore mirror data backup --from-beginning
      logstore mirror data kafka://localhost:9092 --topics 'orders|payments' -f
      logstore mirror kafka://localhost:9092 data --groups 'billing.*'
    """
    if not name:
        name = None
    with until_interrupted(signal.SIGINT, signal.SIGTERM) as stop:
        source = open_side(src, source=True)
        try:
            target = open_side(dst)
            try:
                if source.identity == target.identity:
                    raise click.ClickException(f"SRC and DST are the same store ({src})")
                mirror_name = name or default_name(source.identity)
                display = _Display(quiet)
                job = Mirror(
                    source.backend, target.backend, name=mirror_name, topics=topics,
                    groups=None if no_groups else groups, from_beginning=from_beginning,
                    batch_records=batch_records, compression=Compression.parse(compression),
                )
                try:
                    stats = job.run(follow=follow, stop=stop, on_progress=display)
                finally:
                    display.done()
                _summary(stats, stop.is_set(), checkpoint_group(mirror_name))
            finally:
                target.close()
        finally:
            source.close()


if __name__ == "__main__":  # python -m logstore_cli.mirror (until 'logstore mirror' is registered)
    mirror(prog_name="logstore mirror")
