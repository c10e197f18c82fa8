"""``logstore groups list|describe|reset-offsets|delete``: what kafka-consumer-groups does."""

from __future__ import annotations

import datetime as dt
import json
import time

import click

from logstore import TopicPartition

from .cluster import AnyStore, open_target
from .common import TIME_HELP, parse_time, table, user_errors


@click.group()
def groups() -> None:
    """List and describe consumer groups (with lag), reset their offsets, delete them.

    \b
    Examples:
      logstore groups list
      logstore groups describe billing
      logstore groups reset-offsets billing --to-datetime 2h            # dry run
      logstore groups reset-offsets billing --to-earliest --execute
      logstore groups delete billing
    """


def _known(store: AnyStore, group: str) -> None:
    if group not in store.list_groups():
        raise click.ClickException(
            f"consumer group {group!r} does not exist (see 'logstore groups list')"
        )


@groups.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
@user_errors
def groups_list(target: str, as_json: bool) -> None:
    """List the consumer groups: state, live members and total lag.

    \b
    Example:
      logstore groups list --json
    """
    with open_target(target, must_exist=True) as store:
        described = [store.describe_group(g) for g in store.list_groups()]
    if as_json:
        click.echo(json.dumps([
            {"group": d.group, "state": d.state, "members": len(d.members),
             "lag": d.total_lag} for d in described
        ]))
        return
    table(["GROUP", "STATE", "MEMBERS", "LAG"],
          [[d.group, d.state, str(len(d.members)), str(d.total_lag)] for d in described])


@groups.command("describe")
@click.argument("group")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
@user_errors
def groups_describe(target: str, group: str, as_json: bool) -> None:
    """Per partition: committed offset, log end, lag and owning member of GROUP.

    \b
    Example:
      logstore groups describe billing
    """
    with open_target(target, must_exist=True) as store:
        _known(store, group)
        d = store.describe_group(group)
    if as_json:
        click.echo(json.dumps({
            "group": d.group, "state": d.state, "generation": d.generation,
            "members": {m: [list(tp) for tp in tps] for m, tps in d.members.items()},
            "partitions": [p._asdict() for p in d.partitions], "lag": d.total_lag,
        }))
        return
    # (a Kafka cluster's DescribeGroups does not tell the generation: -1)
    generation = f"generation {d.generation}, " if d.generation >= 0 else ""
    click.echo(f"group {d.group}: {d.state}, {generation}{len(d.members)} live member(s), "
               f"total lag {d.total_lag}")
    table(
        ["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "OWNER"],
        [[p.topic, str(p.partition), "-" if p.committed is None else str(p.committed),
          str(p.log_end_offset), "-" if p.lag is None else str(p.lag), p.owner or "-"]
         for p in d.partitions],
    )
    for p in d.partitions:
        if p.stale_offset is not None:
            click.echo(
                f"note: {p.topic}-{p.partition} has offset {p.stale_offset} committed against "
                f"an earlier topic {p.topic!r} that was deleted; it is ignored (the group "
                f"starts this partition per its offset reset policy)"
            )


@groups.command("reset-offsets")
@click.argument("group")
@click.option("--topic", "topics", multiple=True,
              help="Reset this topic's partitions (repeatable); default: those with offsets.")
@click.option("--to-earliest", is_flag=True, help="To each partition's log start.")
@click.option("--to-latest", is_flag=True, help="To each partition's log end.")
@click.option("--to-datetime", help=f"To the first record at or after this time: {TIME_HELP}.")
@click.option("--to-offset", type=int, help="To this offset (clamped to the log's range).")
@click.option("--shift-by", type=int, help="Move the committed offsets by N (may be negative).")
@click.option("--execute", is_flag=True, help="Apply the new offsets (default: a dry run).")
@click.pass_obj
@user_errors
def groups_reset_offsets(
    target: str,
    group: str,
    topics: tuple[str, ...],
    to_earliest: bool,
    to_latest: bool,
    to_datetime: str | None,
    to_offset: int | None,
    shift_by: int | None,
    execute: bool,
) -> None:
    """Show (and with --execute, commit) new offsets for inactive GROUP.

    Exactly one of the --to-* / --shift-by options. The group must have no live members.

    \b
    Examples:
      logstore groups reset-offsets billing --to-earliest
      logstore groups reset-offsets billing --topic orders --to-datetime 2h --execute
      logstore groups reset-offsets billing --shift-by -100 --execute
    """
    chosen = [to_earliest, to_latest, to_datetime is not None, to_offset is not None,
              shift_by is not None]
    if sum(chosen) != 1:
        raise click.ClickException(
            "choose exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset, "
            "--shift-by"
        )
    when = None
    if to_datetime is not None:
        ms = parse_time(to_datetime, int(time.time() * 1000), "--to-datetime")
        when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    with open_target(target) as store:
        if not topics:
            _known(store, group)
        before = {
            TopicPartition(p.topic, p.partition): p.committed
            for p in store.describe_group(group).partitions
            if p.committed is not None
        }
        new = store.reset_offsets(
            group, topics=list(topics) or None, to_earliest=to_earliest, to_latest=to_latest,
            to_datetime=when, to_offset=to_offset, shift_by=shift_by, execute=execute,
        )
    if not new:
        raise click.ClickException(
            f"group {group!r} has no committed offsets to reset; name topics with --topic"
        )
    table(
        ["TOPIC", "PARTITION", "CURRENT", "NEW"],
        [[tp.topic, str(tp.partition),
          str(before[tp]) if tp in before else "-", str(offset)]
         for tp, offset in sorted(new.items())],
    )
    if execute:
        click.echo(f"committed new offsets for {len(new)} partition(s) of group {group!r}")
    else:
        click.echo("dry run: nothing changed; add --execute to commit these offsets")


@groups.command("delete")
@click.argument("group")
@click.pass_obj
@user_errors
def groups_delete(target: str, group: str) -> None:
    """Delete inactive GROUP: its committed offsets and membership files.

    \b
    Example:
      logstore groups delete billing
    """
    with open_target(target) as store:
        _known(store, group)
        store.delete_group(group)
    click.echo(f"deleted group {group!r}")
