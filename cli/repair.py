"""``logstore repair``: accept a loss that no open repairs by itself, explicitly.

``verify`` reports records lost or damaged where they were synced (exit status 2); the
open refuses such a partition, or reads there fail. ``repair`` lists exactly what
accepting the loss drops (per segment file: bytes, offsets, batches, records), asks, and
then drops it, so the partition opens normally (the storage side is
:mod:`logstore.storage.repair`). It needs the store to itself, like ``verify``.
"""

from __future__ import annotations

import os
import sys

import click

import logstore
from logstore.config import TopicConfig
from logstore.errors import CorruptionError, TopicNotFoundError
from logstore.metadata import OFFSETS_TOPIC
from logstore.registry import read_topic_file, registry_entries
from logstore.storage.repair import (
    PartitionInUseError,
    RepairPlan,
    SegmentLoss,
    carry_out_repair,
    plan_repair,
)
from logstore.storedir import LOCK_FILE, STORE_FILE, read_marker
from logstore.topic import partition_dir, validate_topic_name

from .common import user_errors

_Target = tuple[str, str, TopicConfig]
"""A partition to check: its name (``orders-0``), its directory, its topic's settings."""


def _interactive() -> bool:
    """Whether a person can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 'es' if word.endswith('h') else 's'}"


def _loss_line(loss: SegmentLoss) -> str:
    if loss.end_offset is None:
        offsets = f"offsets from {loss.first_offset} (where they end is unknown: damaged)"
    elif loss.end_offset == loss.first_offset:
        offsets = "no offsets"
    else:
        offsets = f"offsets {loss.first_offset}..{loss.end_offset - 1}"
    counted = f"{_plural(loss.batches, 'batch')}, {_plural(loss.records, 'record')}"
    if loss.damaged_bytes:
        counted += f", and {loss.damaged_bytes:,} damaged bytes whose records cannot be counted"
    what = (f"delete {loss.path}" if loss.deleted else
            f"cut {loss.path} at position {loss.start_position}")
    line = (f"{what}: bytes {loss.start_position}..{loss.end_position} "
            f"({loss.bytes:,} bytes), {offsets}, {counted}")
    return line if loss.problem is None else f"{line} ({loss.problem})"


def _show(name: str, plan: RepairPlan) -> None:
    end, lost_end = plan.log_end_offset, plan.lost_end
    if lost_end > end:
        click.echo(
            f"{name}: drops offsets {end}..{lost_end - 1} (offsets below "
            f"{plan.recovery_point} were synced); the log will end at offset {end}"
        )
    else:
        click.echo(f"{name}: drops damaged bytes; the log still ends at offset {end}")
    for loss in plan.losses:
        click.echo(f"  {_loss_line(loss)}")
    if not plan.losses:
        click.echo("  no file holds those offsets any more: only the recovery point moves")
    if plan.remove:
        click.echo(f"  also removes {', '.join(plan.remove)} (leftovers, and producer "
                   f"snapshots past the new end)")


def _totals(plans: list[tuple[_Target, RepairPlan]]) -> str:
    records = sum(plan.records for _, plan in plans)
    damaged = sum(plan.damaged_bytes for _, plan in plans)
    text = f"{_plural(records, 'record')}"
    if damaged:
        text += f" and {damaged:,} damaged bytes"
    return f"{text} from {len(plans)} partition(s)"


def _targets(
    fs: logstore.FileSystem, root: str, topic: str | None, partition: int | None
) -> list[_Target]:
    """The partitions to check: those of ``topic`` (only ``partition``, if given), or of
    every topic and the committed-offsets log."""
    names = [validate_topic_name(topic)] if topic is not None else sorted(
        registry_entries(fs, root, missing_ok=True)
    )
    targets: list[_Target] = []
    for name in names:
        try:
            entry = read_topic_file(fs, root, name)
        except CorruptionError as err:
            if topic is not None:
                raise
            click.echo(f"note: {err}: its partitions are not checked", err=True)
            continue
        if entry is None:
            if topic is None:
                continue  # deleted since the listing
            existing = ", ".join(sorted(registry_entries(fs, root, missing_ok=True)))
            raise TopicNotFoundError(
                f"unknown topic {topic!r} (existing topics: {existing or 'none'})"
            )
        count = entry.config.partitions
        if partition is not None and not 0 <= partition < count:
            raise click.ClickException(
                f"topic {name!r} has partitions 0..{count - 1}, not {partition}"
            )
        for p in range(count) if partition is None else [partition]:
            directory = partition_dir(root, name, p)
            if not fs.is_dir(directory):
                click.echo(
                    f"note: {name}-{p}: no partition directory {directory}: not checked (see "
                    f"'logstore verify')",
                    err=True,
                )
                continue
            targets.append((f"{name}-{p}", directory, entry.config))
    offsets = os.path.join(root, f"{OFFSETS_TOPIC}-0")
    if topic is None and fs.is_dir(offsets):
        # its own settings (in logstore.metadata) differ only in what a rescan ignores
        targets.append((os.path.basename(offsets), offsets, TopicConfig()))
    return targets


@click.command()
@click.argument("topic", required=False)
@click.option("--partition", type=int, help="Only this partition of TOPIC.")
@click.option("--yes", is_flag=True, help="Drop what the plan lists without asking.")
@click.pass_obj
@user_errors
def repair(data_dir: str, topic: str | None, partition: int | None, yes: bool) -> None:
    """Accept records lost where they were synced, so damaged partitions open again.

    For every partition of the store (or of TOPIC) that 'logstore verify' reports as
    not repairable (exit status 2: records lost or corrupt below the recovery point),
    print exactly what repairing it drops: per segment file the bytes, offsets, batches
    and records. Then, after a yes (asked on a terminal; otherwise pass --yes), cut each
    such partition at its last good batch and delete what follows, as recovery does
    with unsynced data after a crash. Healthy partitions, and damage the next open
    repairs by itself, are left alone. The store must not be in use.

    \b
    Exit status: 0 nothing to repair, or repaired; 1 nothing changed (not confirmed,
    the store in use, an unknown topic, no store at --data-dir).

    \b
    Examples:
      logstore repair                      # what would be dropped; asks on a terminal
      logstore repair orders --partition 1 --yes
    """
    if partition is not None and topic is None:
        raise click.UsageError("--partition needs a TOPIC")
    fs = logstore.FileSystem()
    root = os.path.abspath(data_dir)
    if read_marker(fs, root) is None:
        raise click.ClickException(
            f"no store at {root} (it has no {STORE_FILE}): check --data-dir (or "
            f"LOGSTORE_DATA_DIR)"
        )
    lock = fs.lock_file(os.path.join(root, LOCK_FILE))
    try:
        if not lock.acquire(blocking=False):
            raise click.ClickException(
                f"{root} is in use by another process: repair needs the store to itself "
                f"(close the others first)"
            )
        try:
            _repair(fs, root, topic, partition, yes)
        except PartitionInUseError as err:  # not the store-wide wording of describe()
            raise click.ClickException(str(err)) from err
    finally:
        lock.close()


def _repair(
    fs: logstore.FileSystem, root: str, topic: str | None, partition: int | None, yes: bool
) -> None:
    plans: list[tuple[_Target, RepairPlan]] = []
    for target in _targets(fs, root, topic, partition):
        plan = plan_repair(fs, target[1])
        if plan.needed:
            plans.append((target, plan))
    if not plans:
        click.echo("nothing to repair")
        return
    for (name, _, _), plan in plans:
        _show(name, plan)
    if not yes:
        if not _interactive():
            raise click.ClickException(
                f"nothing changed: repairing drops {_totals(plans)}; re-run with --yes to "
                f"drop what is listed above"
            )
        click.confirm(f"Drop {_totals(plans)}?", abort=True)
    for (name, directory, config), plan in plans:
        carry_out_repair(fs, directory, plan, config)
        click.echo(f"{name}: repaired; the log ends at offset {plan.log_end_offset}")
    click.echo(f"repaired: dropped {_totals(plans)}")
