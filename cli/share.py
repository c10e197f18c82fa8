"""``logstore share-groups list|describe``: share groups (per-record work queues) and
their share-partitions' state."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from logstore.backend import backend_for

from .common import table, user_errors
from .datadir import open_store


@click.group("share-groups")
def share_groups() -> None:
    """List and describe share groups (work queues: records acknowledged one by one).

    \b
    Examples:
      logstore share-groups list
      logstore share-groups describe mailers
      logstore share-groups describe mailers --json
    """


def _describe(data_dir: str, groups: list[str] | None) -> list[dict[str, Any]]:
    with open_store(data_dir, must_exist=True) as store:
        backend = backend_for(store)
        names = backend.list_share_groups() if groups is None else groups
        return [backend.describe_share_group(g) for g in names]


@share_groups.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
@user_errors
def share_groups_list(data_dir: str, as_json: bool) -> None:
    """List the share groups: partitions, records in flight, lock timeout, delivery limit.

    \b
    Example:
      logstore share-groups list --json
    """
    described = _describe(data_dir, None)
    rows = [{
        "group": d["group"], "partitions": len(d["partitions"]),
        "acquired": sum(p["acquired"] for p in d["partitions"]),
        "available": sum(p["available"] for p in d["partitions"]),
        "lock_timeout_ms": d["lock_timeout_ms"],
        "max_delivery_attempts": d["max_delivery_attempts"],
    } for d in described]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table(["GROUP", "PARTITIONS", "ACQUIRED", "AVAILABLE", "LOCK-MS", "MAX-ATTEMPTS"],
          [[str(r[k]) for k in r] for r in rows])


@share_groups.command("describe")
@click.argument("group")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
@user_errors
def share_groups_describe(data_dir: str, group: str, as_json: bool) -> None:
    """Per share-partition of GROUP: start and end offset (SPSO/SPEO), records acquired,
    available (to deliver again), acknowledged and archived in the in-flight window, and
    the age of the oldest lock.

    \b
    Example:
      logstore share-groups describe mailers
    """
    (d,) = _describe(data_dir, [group])
    if not d.pop("known"):
        raise click.ClickException(
            f"share group {group!r} does not exist (see 'logstore share-groups list')"
        )
    if as_json:
        click.echo(json.dumps(d))
        return
    dlq = d["dead_letter_topic"] or "<topic>.dlq"
    click.echo(f"share group {group}: lock timeout {d['lock_timeout_ms']} ms, at most "
               f"{d['max_delivery_attempts']} deliveries, dead letters to {dlq}, "
               f"{d['max_record_locks']} records in flight per partition")
    now = int(time.time() * 1000)
    table(
        ["TOPIC", "PARTITION", "START", "END", "ACQUIRED", "AVAILABLE", "ACKED", "ARCHIVED",
         "OLDEST-LOCK"],
        [[p["topic"], str(p["partition"]), str(p["start_offset"]), str(p["end_offset"]),
          str(p["acquired"]), str(p["available"]), str(p["acknowledged"]),
          str(p["archived"]),
          "-" if p["oldest_lock_deadline_ms"] is None
          else f"{now - p['oldest_lock_deadline_ms'] + d['lock_timeout_ms']} ms ago"]
         for p in d["partitions"]],
    )
