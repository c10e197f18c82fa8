"""``logstore compact TOPIC`` (run the log cleaner now) and ``logstore maintain`` (the
store's maintenance loop in a process of its own: :mod:`logstore.maintenance`)."""

from __future__ import annotations

import json
import signal
import time

import click

from logstore import CompactionState
from logstore.maintenance import (
    DEFAULT_INTERVAL_MS,
    DEFAULT_RETENTION_CHECK_MS,
    MaintenanceReport,
    maintain_once,
)

from .common import table, until_interrupted, user_errors
from .datadir import open_store


@click.command("compact")
@click.argument("topic")
@click.option(
    "--if-due", is_flag=True,
    help="Only partitions the maintenance thread would clean now (dirty ratio above "
    "min_cleanable_dirty_ratio, or max_compaction_lag_ms passed).",
)
@click.option(
    "--roll", is_flag=True,
    help="Seal each active segment first, so that everything written so far is cleaned "
    "(the active segment never is).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
@user_errors
def compact(data_dir: str, topic: str, if_due: bool, roll: bool, as_json: bool) -> None:
    """Run the log cleaner on TOPIC now: in each partition, keep the latest record per
    key in the sealed segments (never the active one), drop tombstones older than
    delete_retention_ms, and print what it did. The topic must be compacted
    (cleanup_policy compact or compact,delete).

    \b
    Examples:
      logstore compact users --roll
      logstore compact users --if-due --json
    """
    with open_store(data_dir, maintenance=False) as store:
        results = store.compact(topic, force=not if_due, roll=roll)
        states = {p: s.compaction for p, s in enumerate(store.describe_topic(topic).partitions)}
    if as_json:
        click.echo(json.dumps({
            "topic": topic,
            "partitions": [
                {"partition": p, "run": None if r is None else r.to_dict(),
                 "state": _state_dict(states[p])}
                for p, r in results.items()
            ],
        }))
        return
    rows = []
    for p, run in results.items():
        if run is None:
            rows.append([str(p), "-", "-", "-", "-", "-", "nothing to clean (the active "
                         "segment never is: --roll), or another process is cleaning it"])
            continue
        rows.append([
            str(p), f"{run.records_in:,}", f"{run.records_out:,}", f"{run.bytes_in:,}",
            f"{run.bytes_out:,}", f"{run.throughput_mb_s:.1f}",
            f"{run.segments_in} segment(s) -> {run.segments_out}, "
            f"{run.tombstones_removed} tombstone(s) removed",
        ])
    table(["PARTITION", "RECORDS-IN", "RECORDS-OUT", "BYTES-IN", "BYTES-OUT", "MB/S", "NOTE"],
          rows)


def _state_dict(state: CompactionState | None) -> dict[str, object] | None:
    return None if state is None else state.to_dict()


@click.command("maintain")
@click.option("--once", is_flag=True, help="One turn (compaction and retention), then exit.")
@click.option("--interval-ms", default=DEFAULT_INTERVAL_MS, show_default=True, type=int,
              help="Between compaction turns.")
@click.option("--retention-check-ms", default=DEFAULT_RETENTION_CHECK_MS, show_default=True,
              type=int, help="Between retention turns.")
@click.pass_obj
@user_errors
def maintain(data_dir: str, once: bool, interval_ms: int, retention_check_ms: int) -> None:
    """Run the store's maintenance in this process until interrupted: compact the
    partitions of compacted topics that are due and apply retention. Every process that
    opens the store for writing does this on a thread already (logstore.open(...,
    maintenance=True)); run this for stores whose writers turn it off, or from cron with
    --once. Several maintainers never clean a partition at the same time.

    \b
    Examples:
      logstore maintain --once
      logstore maintain --interval-ms 5000
    """
    if interval_ms <= 0 or retention_check_ms <= 0:
        raise click.BadParameter("intervals must be > 0 milliseconds")
    with open_store(data_dir, maintenance=False) as store, until_interrupted(
        signal.SIGINT, signal.SIGTERM
    ) as stop:
        next_retention = 0.0
        while not stop.is_set():
            now = time.monotonic()
            retention = once or now >= next_retention
            if retention:
                next_retention = now + retention_check_ms / 1000
            _print_report(maintain_once(store, retention=retention, stop=stop))
            if once or stop.wait(interval_ms / 1000):
                return


def _print_report(report: MaintenanceReport) -> None:
    for (topic, p), stats in sorted(report.compacted.items()):
        click.echo(
            f"compacted {topic}-{p}: {stats.records_in:,} -> {stats.records_out:,} records, "
            f"{stats.bytes_in:,} -> {stats.bytes_out:,} bytes in {stats.seconds:.2f} s"
        )
    if report.segments_deleted:
        click.echo(f"retention deleted {report.segments_deleted} segment(s)")
    if report.failures:
        click.echo(f"{report.failures} partition(s) failed (see the log); tried again later",
                   err=True)
