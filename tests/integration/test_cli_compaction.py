"""``logstore compact``, ``logstore maintain`` and the compaction columns of ``topics
describe``, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from logstore_cli.main import cli


def _run(data: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data), *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def _users(data: Path) -> None:
    assert _run(data, "topics", "create", "users", "-c", "cleanup_policy=compact",
                "-c", "segment_bytes=400", "-c", "min_cleanable_dirty_ratio=0.25")[0] == 0
    for chunk in range(5):
        lines = "".join(f"u{i % 4}:v{chunk}-{i}\n" for i in range(12))
        assert _run(data, "produce", "users", "--key-separator", ":", stdin=lines)[0] == 0


def test_compact_keeps_the_latest_value_per_key_and_describe_shows_it(tmp_path: Path):
    data = tmp_path / "d"
    _users(data)
    code, out, _ = _run(data, "topics", "describe", "users")
    assert code == 0 and "DIRTY" in out and "CLEANED-TO" in out
    assert "min_cleanable_dirty_ratio=0.25" in out
    code, out, err = _run(data, "compact", "users", "--roll")
    assert code == 0, err
    row = out.splitlines()[1].split()
    assert row[0] == "0" and row[1] == "60" and row[2] == "4"  # records in, out
    code, out, _ = _run(data, "consume", "users", "--from-beginning", "--print-key")
    assert sorted(out.split()) == sorted(
        ["u0", "v4-8", "u1", "v4-9", "u2", "v4-10", "u3", "v4-11"]
    )
    code, out, _ = _run(data, "topics", "describe", "users", "--json")
    state = json.loads(out)["partitions"][0]["compaction"]
    assert state["last_cleaned_offset"] == 59 and state["bytes_reclaimed"] > 0
    assert state["runs"] == 1


def test_compact_json_and_if_due(tmp_path: Path):
    data = tmp_path / "d"
    _users(data)
    code, out, _ = _run(data, "compact", "users", "--if-due", "--json")
    assert code == 0
    [part] = json.loads(out)["partitions"]
    assert part["run"]["records_out"] < part["run"]["records_in"]  # sealed segments were due
    code, out, _ = _run(data, "compact", "users", "--if-due", "--json")
    assert json.loads(out)["partitions"][0]["run"] is None  # nothing dirty since


def test_compact_refuses_a_topic_that_is_not_compacted(tmp_path: Path):
    data = tmp_path / "d"
    assert _run(data, "topics", "create", "plain")[0] == 0
    code, _, err = _run(data, "compact", "plain")
    assert code == 1 and "cleanup_policy" in err and "Traceback" not in err
    code, _, err = _run(data, "compact", "nope")
    assert code != 0 and "nope" in err


def test_maintain_once_compacts_what_is_due(tmp_path: Path):
    data = tmp_path / "d"
    _users(data)
    code, out, err = _run(data, "maintain", "--once")
    assert code == 0, err
    assert out.startswith("compacted users-0: ")
    code, out, _ = _run(data, "maintain", "--once")
    assert code == 0 and out == ""
