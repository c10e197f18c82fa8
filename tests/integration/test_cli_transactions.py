"""``logstore transactions list`` / ``abort-expired`` (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import logstore
from logstore import TransactionalProducer
from logstore_cli.main import cli


def _run(data: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--data-dir", str(data), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_list_shows_open_and_finished_transactions(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with logstore.open(data, maintenance=False) as store:
        store.create_topic("out", partitions=2)
        done = TransactionalProducer(store, "done-id")
        done.init_transactions()
        done.begin_transaction()
        done.send("out", b"x", partition=1)
        done.commit_transaction()
        done.close()
        open_ = TransactionalProducer(store, "open-id", transaction_timeout_ms=60_000)
        open_.init_transactions()
        open_.begin_transaction()
        open_.send("out", b"y", partition=0)
        open_.send_offsets_to_transaction({logstore.TopicPartition("out", 1): 1}, "g")
        open_.flush()
        text = _run(data, "transactions", "list")
        rows = json.loads(_run(data, "transactions", "list", "--json"))
        open_._txn_state = "ready"  # abandoned: not aborted at close
        open_.close()
    assert "open-id" in text and "Ongoing" in text and "out-0" in text
    by_id = {r["transactional_id"]: r for r in rows}
    assert by_id["done-id"]["state"] == "CompleteCommit"
    assert by_id["open-id"]["state"] == "Ongoing"
    assert by_id["open-id"]["groups"] == ["g"]
    assert 0 < by_id["open-id"]["timeout_in_ms"] <= 60_000
    assert _run(data, "transactions", "abort-expired").strip() == "0 transaction(s) ended"


def test_list_on_a_store_without_transactions(tmp_path: Path) -> None:
    with logstore.open(tmp_path / "d", maintenance=False):
        pass
    assert _run(tmp_path / "d", "transactions", "list").strip() == "no transactional ids"
