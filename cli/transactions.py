"""``logstore transactions list`` and ``abort-expired``: the store's transactional ids
and their transactions (:mod:`logstore.transactions`)."""

from __future__ import annotations

import json

import click

from logstore.groups.txn_state import ONGOING, TxnState
from logstore.transactions import transactions_for

from .common import format_time, table, user_errors
from .datadir import open_store


@click.group("transactions")
def transactions() -> None:
    """Transactional producers' state: which transactions are open, decided or done.

    \b
    Examples:
      logstore transactions list
      logstore transactions abort-expired
    """


@transactions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
@user_errors
def list_transactions(data_dir: str, as_json: bool) -> None:
    """Every transactional id: its producer id and epoch, the state of its last
    transaction (Ongoing: open; PrepareCommit/PrepareAbort: decided, its markers not all
    written yet), the partitions it wrote to, and for an open one how long it has left
    before its timeout aborts it.

    \b
    Examples:
      logstore transactions list
      logstore transactions list --json
    """
    with open_store(data_dir, maintenance=False) as store:
        states = transactions_for(store).states()
        now = store.clock.now_ms()
    if as_json:
        click.echo(json.dumps([_as_dict(st, now) for st in states]))
        return
    rows = []
    for st in states:
        left = _time_left(st, now)
        rows.append([
            st.transactional_id, str(st.producer_id), str(st.epoch), st.state,
            ", ".join(f"{t}-{p}" for t, _, p in st.partitions) or "-",
            ", ".join(sorted(st.offsets)) or "-",
            format_time(st.started_ms) if st.state == ONGOING else "-",
            "-" if left is None else f"{left / 1000:.1f} s",
        ])
    if not rows:
        click.echo("no transactional ids")
        return
    table(["TRANSACTIONAL-ID", "PRODUCER-ID", "EPOCH", "STATE", "PARTITIONS",
           "GROUP-OFFSETS", "STARTED", "TIMEOUT-IN"], rows)


@transactions.command("abort-expired")
@click.pass_obj
@user_errors
def abort_expired(data_dir: str) -> None:
    """Abort the transactions open past their timeout and finish the decided ones whose
    process died, now (the maintenance thread of every writable process does it every
    15 s).

    \b
    Examples:
      logstore transactions abort-expired
      logstore --data-dir /var/lib/app/events transactions abort-expired
    """
    with open_store(data_dir, maintenance=False) as store:
        ended = transactions_for(store).abort_expired()
    click.echo(f"{ended} transaction(s) ended")


def _time_left(st: TxnState, now: int) -> int | None:
    if st.state != ONGOING:
        return None
    return max(0, st.started_ms + st.timeout_ms - now)


def _as_dict(st: TxnState, now: int) -> dict[str, object]:
    return {
        "transactional_id": st.transactional_id, "producer_id": st.producer_id,
        "epoch": st.epoch, "state": st.state, "timeout_ms": st.timeout_ms,
        "partitions": [{"topic": t, "partition": p} for t, _, p in st.partitions],
        "groups": sorted(st.offsets), "started_ms": st.started_ms,
        "updated_ms": st.updated_ms, "timeout_in_ms": _time_left(st, now),
    }
