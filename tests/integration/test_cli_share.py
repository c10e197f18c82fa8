"""``logstore share-groups list|describe`` through CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import logstore
from logstore.client.share import ShareConsumer
from logstore_cli.main import cli


def run(data: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data), *args])
    return result.exit_code, result.output


def test_cli_share_groups_list_and_describe(tmp_path: Path) -> None:
    data = tmp_path / "s"
    with logstore.open(data) as store:
        store.create_topic("jobs", 2)
        for i in range(6):
            store.append("jobs", b"v", partition=i % 2)
        with ShareConsumer(store, "mailers", ["jobs"], lock_timeout_ms=60_000,
                           max_records=4, acknowledgement_mode="explicit") as consumer:
            got = consumer.poll()
            consumer.acknowledge(got[0])
            consumer.commit()
            code, out = run(data, "share-groups", "describe", "mailers", "--json")
            assert code == 0, out
            described = json.loads(out)
            assert described["lock_timeout_ms"] == 60_000
            parts = {p["partition"]: p for p in described["partitions"]}
            assert sum(p["acquired"] for p in parts.values()) == 3
            assert all(p["oldest_lock_deadline_ms"] for p in parts.values() if p["acquired"])
            code, out = run(data, "share-groups", "describe", "mailers")
            assert code == 0 and "lock timeout 60000 ms" in out and "ms ago" in out, out
            code, out = run(data, "share-groups", "list", "--json")
            assert json.loads(out) == [{
                "group": "mailers", "partitions": 2, "acquired": 3, "available": 0,
                "lock_timeout_ms": 60_000, "max_delivery_attempts": 5,
            }]
            code, out = run(data, "share-groups", "list")
            assert code == 0 and "mailers" in out
    code, out = run(data, "share-groups", "describe", "nobody")
    assert code == 1 and "share group 'nobody' does not exist" in out
