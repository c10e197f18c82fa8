"""``logstore consume --from-time``/``--print-*``, ``groups``, ``replay``, ``inspect``,
``verify`` and ``demo`` through click's CliRunner."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import logstore
from logstore.storage.files import FileSystem
from logstore.types import SystemClock
from logstore_cli.common import parse_time
from logstore_cli.main import cli
from tests.legacy_offsets import make_legacy

NOW = 1_700_000_000_000  # in the past: records produced "now" come after these


def _run(data: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data), *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def _events(data: Path, topic: str, stamps: list[int], partitions: int = 2) -> None:
    """One JSON line a record: key k<i % 3>, value v<i>, the given timestamps."""
    _run(data, "topics", "create", topic, "-p", str(partitions))
    lines = "".join(
        json.dumps({"key": f"k{i % 3}", "value": f"v{i}", "timestamp": ts}) + "\n"
        for i, ts in enumerate(stamps)
    )
    code, _, err = _run(data, "produce", topic, "--format", "json", stdin=lines)
    assert code == 0, err


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


# ------------------------------------------------------------------ time arguments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("1700000000000", 1_700_000_000_000),
        ("90s", NOW - 90_000),
        ("15m", NOW - 900_000),
        ("2h", NOW - 7_200_000),
        ("1.5h", NOW - 5_400_000),
        ("7d", NOW - 7 * 86_400_000),
        ("250ms", NOW - 250),
        ("2026-12-01T09:30:00Z", 1_796_117_400_000),
        ("2026-12-01T10:30:00+01:00", 1_796_117_400_000),
    ],
)
def test_parse_time_takes_iso_8601_relative_now_and_epoch_ms(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


def test_parse_time_reads_a_naive_time_as_local_time() -> None:
    local = dt.datetime(2026, 12, 1, 9, 30).astimezone()
    assert parse_time("2026-12-01T09:30:00", NOW) == int(local.timestamp() * 1000)


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-", "12:00:00:00", "2026-13-01"])
def test_parse_time_rejects_anything_else_naming_the_value(text: str) -> None:
    with pytest.raises(click.ClickException, match="bad --from-time"):
        parse_time(text, NOW, "--from-time")


# ------------------------------------------------------------------ consume


def test_consume_from_time_starts_each_partition_at_its_first_record_at_or_after_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    stamps = [NOW + i * 1000 for i in range(12)]
    _events(data, "t", stamps)
    code, out, _ = _run(data, "consume", "t", "--from-time", str(NOW + 6000), "--format", "json")
    assert code == 0
    got = sorted(json.loads(line)["value"] for line in out.splitlines())
    assert got == sorted(f"v{i}" for i in range(6, 12))
    # with a group: the same start, then the group's committed offsets
    code, out, _ = _run(data, "consume", "t", "--group", "g", "--from-time", str(NOW + 9000))
    assert sorted(out.split()) == ["v10", "v11", "v9"]
    assert _run(data, "consume", "t", "--group", "g")[1] == ""


def test_consume_print_options_follow_kafka_console_consumer(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t")
    lines = (json.dumps({"key": "k", "value": "v", "headers": {"a": "1", "b": "2"},
                         "timestamp": NOW}) + "\n"
             + json.dumps({"value": "w", "timestamp": NOW + 1}) + "\n")
    assert _run(data, "produce", "t", "--format", "json", stdin=lines)[0] == 0
    _, out, _ = _run(data, "consume", "t", "--from-beginning", "--print-timestamp",
                     "--print-partition", "--print-offset", "--print-headers", "--print-key")
    assert out.splitlines() == [
        f"CreateTime:{NOW}\tPartition:0\tOffset:0\ta:1,b:2\tk\tv",
        f"CreateTime:{NOW + 1}\tPartition:0\tOffset:1\tNO_HEADERS\tnull\tw",
    ]


def test_consume_rejects_conflicting_or_bad_start_options(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _events(data, "t", [NOW, NOW + 1])
    code, _, err = _run(data, "consume", "t", "--from-time", "soon")
    _one_line_error(code, err, "bad --from-time 'soon'")
    code, _, err = _run(data, "consume", "t", "--from-time", "1h", "--from-beginning")
    _one_line_error(code, err, "choose one of")
    code, _, err = _run(data, "consume", "t", "--partition", "0", "--offset", "99")
    _one_line_error(code, err, "offset 99", "range")
    code, _, err = _run(data, "consume", "t", "--max-messages", "0")
    _one_line_error(code, err, "--max-messages 0")


# ------------------------------------------------------------------ groups


def test_groups_list_describe_reset_and_delete(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _events(data, "t", [NOW + i for i in range(10)], partitions=2)
    assert _run(data, "consume", "t", "--group", "g", "--from-beginning")[0] == 0
    assert _run(data, "produce", "t", stdin="x\ny\n")[0] == 0  # lag 2
    code, out, _ = _run(data, "groups", "list")
    assert code == 0 and out.split("\n")[1].split() == ["g", "Empty", "0", "2"]
    assert json.loads(_run(data, "groups", "list", "--json")[1]) == [
        {"group": "g", "state": "Empty", "members": 0, "lag": 2}
    ]
    code, out, _ = _run(data, "groups", "describe", "g")
    assert "total lag 2" in out and "COMMITTED" in out
    described = json.loads(_run(data, "groups", "describe", "g", "--json")[1])
    ends = {p["partition"]: p["log_end_offset"] for p in described["partitions"]}
    assert sum(ends.values()) == 12 and described["lag"] == 2

    # a dry run changes nothing
    code, out, _ = _run(data, "groups", "reset-offsets", "g", "--to-earliest")
    assert code == 0 and "dry run" in out
    assert json.loads(_run(data, "groups", "describe", "g", "--json")[1])["lag"] == 2
    # each way of choosing offsets, executed
    assert _run(data, "groups", "reset-offsets", "g", "--to-earliest", "--execute")[0] == 0
    assert json.loads(_run(data, "groups", "describe", "g", "--json")[1])["lag"] == 12
    assert _run(data, "groups", "reset-offsets", "g", "--to-latest", "--execute")[0] == 0
    assert json.loads(_run(data, "groups", "describe", "g", "--json")[1])["lag"] == 0
    assert _run(data, "groups", "reset-offsets", "g", "--shift-by", "-1", "--execute")[0] == 0
    assert json.loads(_run(data, "groups", "describe", "g", "--json")[1])["lag"] == 2
    assert _run(data, "groups", "reset-offsets", "g", "--to-offset", "0", "--execute")[0] == 0
    assert json.loads(_run(data, "groups", "describe", "g", "--json")[1])["lag"] == 12
    code, out, _ = _run(data, "groups", "reset-offsets", "g", "--to-datetime",
                        str(NOW + 5), "--execute")
    assert code == 0 and "committed new offsets" in out
    # records at NOW+5.. (5 of them) plus the 2 later lines are left
    assert json.loads(_run(data, "groups", "describe", "g", "--json")[1])["lag"] == 7
    # a new group can be given offsets for named topics
    assert _run(data, "groups", "reset-offsets", "new", "--topic", "t", "--to-earliest",
                "--execute")[0] == 0
    assert json.loads(_run(data, "groups", "describe", "new", "--json")[1])["lag"] == 12

    assert _run(data, "groups", "delete", "g")[0] == 0
    code, _, err = _run(data, "groups", "describe", "g")
    _one_line_error(code, err, "'g' does not exist")


def test_groups_errors_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _events(data, "t", [NOW])
    code, _, err = _run(data, "groups", "reset-offsets", "nope", "--to-earliest")
    _one_line_error(code, err, "'nope' does not exist")
    code, _, err = _run(data, "groups", "reset-offsets", "nope", "--topic", "t")
    _one_line_error(code, err, "exactly one of")
    code, _, err = _run(data, "groups", "reset-offsets", "g", "--topic", "t", "--to-datetime",
                        "someday")
    _one_line_error(code, err, "bad --to-datetime")
    code, _, err = _run(data, "groups", "delete", "nope")
    _one_line_error(code, err, "does not exist")
    # a group with a live member cannot be reset or deleted
    with logstore.open(data) as store, store.consumer(["t"], group_id="live") as consumer:
        consumer.poll(timeout_ms=0)
        consumer.commit()
        code, _, err = _run(data, "groups", "reset-offsets", "live", "--to-earliest",
                            "--execute")
        _one_line_error(code, err, "live member")
        code, _, err = _run(data, "groups", "delete", "live")
        _one_line_error(code, err, "live member")
        code, out, _ = _run(data, "groups", "describe", "live")
        assert "Stable" in out and consumer.member_id in out


# ------------------------------------------------------------------ replay


def test_replay_to_stdout_merges_partitions_in_timestamp_order_within_the_window(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    stamps = [NOW + i * 10 for i in range(30)]
    _events(data, "t", stamps, partitions=3)
    code, out, err = _run(data, "replay", "t", "--from-time", str(NOW + 50), "--to-time",
                          str(NOW + 200), "--max-speed", "--format", "json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["value"] for r in rows] == [f"v{i}" for i in range(5, 20)]
    assert "replayed 15 record(s)" in err


def test_replay_keeps_the_original_gaps_divided_by_speed(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _events(data, "t", [NOW, NOW + 400, NOW + 800], partitions=1)
    started = time.monotonic()
    assert _run(data, "replay", "t", "--from-time", str(NOW), "--speed", "4")[1] == "v0\nv1\nv2\n"
    paced = time.monotonic() - started
    started = time.monotonic()
    assert _run(data, "replay", "t", "--from-time", str(NOW), "--max-speed")[0] == 0
    fast = time.monotonic() - started
    assert paced >= 0.2  # 800 ms of history at 4x
    assert fast < paced


def test_replay_into_another_topic_copies_key_value_headers(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _events(data, "src", [NOW + i for i in range(10)])
    _run(data, "topics", "create", "dst", "-p", "3")
    code, _, err = _run(data, "replay", "src", "--from-time", str(NOW + 3), "--to", "dst",
                        "--max-speed", "--keep-timestamps")
    assert code == 0 and "replayed 7 record(s) of 'src' to 'dst'" in err
    with logstore.open(data) as store, store.consumer(auto_offset_reset="earliest") as c:
        c.assign([logstore.TopicPartition("dst", p) for p in range(3)])
        got = sorted((r.timestamp, r.key, r.value) for r in c.poll(timeout_ms=0))
    assert got == [(NOW + i, f"k{i % 3}".encode(), f"v{i}".encode()) for i in range(3, 10)]
    # replaying a topic into itself stops at the end it had when the replay began
    code, _, err = _run(data, "replay", "src", "--from-time", str(NOW), "--to", "src",
                        "--max-speed")
    assert code == 0 and "replayed 10 record(s)" in err


def test_replay_to_a_topic_with_smaller_records_says_how_to_raise_its_limit(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "src")
    _run(data, "produce", "src", stdin="x" * 3000 + "\n")
    _run(data, "topics", "create", "dst", "-c", "max_message_bytes=1000")
    code, _, err = _run(data, "replay", "src", "--from-time", "1h", "--to", "dst",
                        "--max-speed")
    _one_line_error(code, err, "writing to 'dst' failed: a record batch of ",
                    "bytes is over the topic's max_message_bytes (1000): send smaller "
                    "records, or raise the limit with 'logstore topics alter TOPIC -c "
                    "max_message_bytes=N'")


def test_a_failed_log_is_recovered_by_running_the_command_again() -> None:
    from logstore_cli.common import describe

    err = logstore.LogFailedError("partition log /d/t-0 refuses writes after an earlier "
                                  "failure (disk full); close and reopen the store to recover")
    assert describe(err) == ("partition log /d/t-0 refuses writes after an earlier failure "
                             "(disk full); run the command again to recover")


def test_replay_errors_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _events(data, "t", [NOW])
    for args, words in [
        (["--from-time", "1h", "--to", "missing"], ["missing"]),
        (["--from-time", "1h", "--speed", "0"], ["--speed 0"]),
        (["--from-time", str(NOW), "--to-time", str(NOW - 1)], ["is not after"]),
        (["--from-time", "whenever"], ["bad --from-time"]),
    ]:
        code, _, err = _run(data, "replay", "t", *args)
        _one_line_error(code, err, *words)
    code, _, err = _run(data, "replay", "nope", "--from-time", "1h")
    _one_line_error(code, err, "nope")


# ------------------------------------------------------------------ inspect and verify


def _small_store(data: Path) -> None:
    _run(data, "topics", "create", "s", "-c", "segment_bytes=1200", "-c",
         "index_interval_bytes=100")
    for chunk in range(6):
        lines = "".join(f"k{i}:value-{chunk}-{i}\n" for i in range(10))
        _run(data, "produce", "s", "--key-separator", ":", stdin=lines)


def test_inspect_dumps_batches_records_and_index_entries(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _small_store(data)
    code, out, _ = _run(data, "inspect", "s")
    assert code == 0
    batches = [line for line in out.splitlines() if line.startswith("baseOffset:")]
    assert len(batches) == 6 and all("isvalid: true" in b for b in batches)
    assert "compresscodec: none" in batches[0] and "count: 10" in batches[0]
    code, out, _ = _run(data, "inspect", "s", "--partition", "0", "--records", "--indexes")
    records = [line for line in out.splitlines() if line.startswith("| offset:")]
    assert len(records) == 60 and "key: k3 payload: value-0-3" in records[3]
    assert "offset: " in out and "timestamp: " in out and ".timeindex" in out
    first = sorted((data / "s-0").glob("*.log"))[0]
    code, out, _ = _run(data, "inspect", str(first))
    assert code == 0 and out.startswith(f"Dumping {first}")
    code, out, _ = _run(data, "inspect", str(first.with_suffix(".index")))
    assert code == 0 and "position:" in out


def test_inspect_marks_a_damaged_batch_and_exits_non_zero(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _small_store(data)
    first = sorted((data / "s-0").glob("*.log"))[0]
    raw = bytearray(first.read_bytes())
    raw[80] ^= 0xFF
    first.write_bytes(bytes(raw))
    code, out, err = _run(data, "inspect", "s")
    assert "isvalid: false" in out and "CRC mismatch" in out
    _one_line_error(code, err, "damaged batch")
    for target, words in [("nope", ["nope"]), (str(data / "x" / "0.log"), ["no file"]),
                          ("s --partition 5", ["partitions 0..0"])]:
        code, _, err = _run(data, "inspect", *target.split())
        _one_line_error(code, err, *words)


def test_verify_reports_clean_repairable_and_corrupt_stores_by_exit_status(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    _small_store(data)
    assert _run(data, "consume", "s", "--group", "g", "--from-beginning")[0] == 0
    code, out, _ = _run(data, "verify")
    assert code == 0, out
    assert "no problems" in out and "s-0: ok" in out and "__consumer_offsets-0: ok" in out
    logs = sorted((data / "s-0").glob("*.log"))
    # repairable: a lost index, a leftover temp file
    logs[0].with_suffix(".index").unlink()
    (data / "s-0" / "checkpoint.tmp").write_bytes(b"x")
    code, out, _ = _run(data, "verify", "s")
    assert code == 1, out
    assert "repair:" in out and "rebuilt" in out and "leftover" in out
    report = json.loads(_run(data, "verify", "--json")[1])
    assert report["repairs"] == 2 and report["corrupt"] == 0
    # not repairable: a flipped byte in a synced segment
    raw = bytearray(logs[0].read_bytes())
    raw[70] ^= 0x01
    logs[0].write_bytes(bytes(raw))
    code, out, _ = _run(data, "verify")
    assert code == 2 and "CORRUPT" in out and f"{logs[0]} at position 0" in out
    # opening repairs what verify said it would, and only that
    with logstore.open(data) as store, pytest.raises(logstore.CorruptRecordError):
        store.read("s", 0, 0)
    assert (data / "s-0" / "checkpoint.tmp").exists() is False


def test_verify_refuses_a_store_in_use_and_a_missing_store(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _small_store(data)
    with logstore.open(data):
        code, _, err = _run(data, "verify")
        _one_line_error(code, err, "verify needs it to itself")
    code, _, err = _run(tmp_path / "none", "verify")
    _one_line_error(code, err, "no store")


def _crash_after_append(data: Path) -> None:
    """A real process appends to topic s and dies without closing the store (a crash:
    the partition is left marked unclean, as kill -9 leaves it)."""
    code = ("import logstore, os, sys\n"
            "store = logstore.open(sys.argv[1])\n"
            "store.append('s', b'last', key=b'k')\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(data)], check=True, timeout=60)


def _flip(path: Path, position: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0x01
    path.write_bytes(bytes(raw))


def _logs(data: Path) -> list[Path]:
    return sorted((data / "s-0").glob("*.log"))


def _torn_tail_after_a_crash(data: Path) -> None:
    _crash_after_append(data)
    with open(_logs(data)[-1], "ab") as log:
        log.write(b"\x00\x00\x00\x00\x00\x00\x00\x07half a batch")


def _damaged_legacy_offsets_snapshot(data: Path) -> None:
    """A store written before the offsets log was compacted (its committed offsets in a
    snapshot), whose snapshot is then overwritten."""
    make_legacy(data, FileSystem(), SystemClock())
    (data / "__consumer_offsets-0" / "offsets.snapshot").write_text("x")


_VERIFY_CASES = [
    # (damage, exit status, what the report says, what reading after an open gives)
    ("torn tail after a crash", _torn_tail_after_a_crash, 1, "repair:", 61),
    ("index to rebuild", lambda d: _logs(d)[0].with_suffix(".index").unlink(), 1, "rebuilt", 60),
    ("byte flipped in a synced segment", lambda d: _flip(_logs(d)[0], 70), 2, "CORRUPT",
     logstore.CorruptRecordError),
    ("partition directory removed", lambda d: shutil.rmtree(d / "s-0"), 2,
     "partition directory is missing", logstore.TopicNotFoundError),
    ("registry file damaged", lambda d: (d / "__topics" / "s").write_text("{"), 2,
     "topic registry file is damaged", logstore.CorruptionError),
    ("offsets snapshot damaged", _damaged_legacy_offsets_snapshot, 2,
     "offsets snapshot", logstore.CorruptionError),
    ("store.json damaged", lambda d: (d / "store.json").write_text("{"), 2,
     "store.json is damaged", logstore.StorageError),
]


def _read_back(data: Path) -> int:
    """Open the store (recovery runs) and count the records of s and their commits."""
    with logstore.open(data) as store:
        store.offsets.group_offsets("g")
        plog = store.partition("s", 0)
        count, offset = 0, plog.log_start_offset
        while offset < plog.log_end_offset:
            records = store.read("s", 0, offset)
            count += len(records)
            offset = records[-1].offset + 1
        return count


@pytest.mark.parametrize(("damage", "expected", "word", "after"),
                         [case[1:] for case in _VERIFY_CASES],
                         ids=[case[0] for case in _VERIFY_CASES])
def test_verify_exit_status_says_whether_the_next_open_repairs_the_damage(
    tmp_path: Path,
    damage: Callable[[Path], object],
    expected: int,
    word: str,
    after: int | type[Exception],
) -> None:
    data = tmp_path / "d"
    _small_store(data)
    assert _run(data, "consume", "s", "--group", "g", "--from-beginning")[0] == 0
    damage(data)
    code, out, err = _run(data, "verify")
    assert code == expected, out + err
    assert word in out and ("CORRUPT" in out) == (expected == 2), out
    if isinstance(after, int):  # 1: the next open repairs it, and nothing synced is lost
        assert _read_back(data) == after
        code, out, _ = _run(data, "verify")
        assert code == 0, out
    else:  # 2: no open repairs it
        with pytest.raises(after):
            _read_back(data)
        assert _run(data, "verify")[0] == 2


def test_verify_does_not_call_the_partitions_of_a_damaged_registry_file_leftovers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    _small_store(data)
    (data / "__topics" / "s").write_text("{")
    code, out, _ = _run(data, "verify")
    assert code == 2
    assert "no registered topic owns it" not in out, out


def test_verify_exits_3_when_it_cannot_check(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _small_store(data)
    not_a_store = tmp_path / "plain"
    not_a_store.mkdir()
    other_format = tmp_path / "other"
    other_format.mkdir()
    (other_format / "store.json").write_text('{"format": "something-else"}')
    for directory, args, words in [
        (data, ["nope"], "unknown topic 'nope' (existing topics: s)"),
        (data, ["s", "nope"], "unknown topic 'nope'"),
        (data, ["../x"], "invalid topic name '../x'"),
        (tmp_path / "missing", [], "no store at"),
        (not_a_store, [], "no store at"),
        (other_format, [], "is not a logstore data directory"),
    ]:
        code, out, err = _run(directory, "verify", *args)
        assert code == 3, (directory, args, out, err)
        _one_line_error(code, err, words)
        assert out == ""
    assert not (other_format / ".lock").exists()  # it changed nothing there
    # in use by another process
    holder = subprocess.Popen(
        [sys.executable, "-c", "import logstore, sys\n"
         "with logstore.open(sys.argv[1]):\n"
         "    print('ready', flush=True)\n"
         "    sys.stdin.read()\n", str(data)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "ready\n"
        code, _, err = _run(data, "verify")
        assert code == 3
        _one_line_error(code, err, "verify needs it to itself")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()
    assert _run(data, "verify")[0] == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_verify_exits_3_when_it_cannot_write_its_report(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _small_store(data)
    exe = Path(sys.executable).with_name("logstore")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "logstore_cli.main"]
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([*command, "--data-dir", str(data), "verify"], stdout=full,
                              stderr=subprocess.PIPE, timeout=120, check=False)
    assert proc.returncode == 3
    assert proc.stderr.decode() == "Error: cannot write to stdout: No space left on device\n"


# ------------------------------------------------------------------ demo


def test_demo_runs_end_to_end_and_again_on_the_same_store(tmp_path: Path) -> None:
    data = tmp_path / "d"
    for _ in range(2):
        code, out, err = _run(data, "demo", "--events", "2000", "--workers", "2")
        assert code == 0, out + err
        assert "1. 2 worker processes joined group 'demo-workers'" in out
        assert "2. produced 2,000 events" in out
        assert "3. the workers handled 2,000 events" in out
        assert "per-key order kept: yes" in out
        assert "lag of group 'demo-workers'" in out and out.count(" 0\n") >= 1
        assert "4. replay from" in out
    with logstore.open(data) as store:
        assert store.describe_group("demo-workers").total_lag == 0
        assert sum(p.log_end_offset for p in store.describe_topic("demo-events").partitions) \
            == 4000
    assert os.listdir(data)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out += _commands(command, (*prefix, name))
    return out


@pytest.mark.parametrize("path", [(), *_commands(cli)], ids=lambda p: " ".join(p) or "logstore")
def test_every_command_has_help_with_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output, result.output


def test_verify_predicts_exactly_the_cut_that_recovery_makes(tmp_path: Path) -> None:
    import random

    from logstore.storage.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
    from logstore.storage.files import DEFAULT_FS
    from logstore.storage.head import HEAD_NAME, pack_head, unpack_head
    from logstore.storage.verify import REPAIR

    rng = random.Random(7)
    for case in range(25):
        data = tmp_path / f"c{case}"
        _small_store(data)
        directory = data / "s-0"
        # a crash: the partition was not closed cleanly (the recovery point is where the
        # last roll left it, and the head vouches for nothing past it: appends not yet
        # synced), and the active tail is damaged
        cp = read_checkpoint(DEFAULT_FS, str(directory))
        assert cp is not None
        last = sorted(directory.glob("*.log"))[-1]
        write_checkpoint(DEFAULT_FS, str(directory), Checkpoint(int(last.stem),
                                                                cp.log_start_offset, False))
        head = unpack_head((directory / HEAD_NAME).read_bytes())
        assert head is not None
        (directory / HEAD_NAME).write_bytes(
            pack_head(head._replace(recovery_point=int(last.stem))))
        raw = bytearray(last.read_bytes())
        damage = rng.choice(["cut", "flip", "garbage"])
        where = rng.randrange(len(raw))
        if damage == "cut":
            del raw[where:]
        elif damage == "flip":
            raw[where] ^= 1 << rng.randrange(8)
        else:
            raw += rng.randbytes(rng.randrange(1, 200))
        last.write_bytes(bytes(raw))
        report = logstore.verify_store(data, topics=["s"])
        cuts = [f for f in report.all_findings if f.position is not None]
        assert all(f.kind == REPAIR for f in report.all_findings), (case, report)
        with logstore.open(data) as store:
            store.partition("s", 0)  # recovery runs here
        if cuts:
            assert len(cuts) == 1 and cuts[0].path == str(last), (case, cuts)
            assert last.stat().st_size == cuts[0].position, (case, damage, where)
        else:
            assert last.stat().st_size == len(raw), (case, damage, where)
        assert logstore.verify_store(data, topics=["s"]).all_findings == [], case
    # damage below the recovery point (synced records) is predicted as not repairable
    data = tmp_path / "synced"
    _small_store(data)
    last = sorted((data / "s-0").glob("*.log"))[-1]
    raw = last.read_bytes()
    last.write_bytes(raw[: len(raw) // 2])
    report = logstore.verify_store(data, topics=["s"])
    assert [f.kind for f in report.all_findings if f.position is not None] == ["corrupt"]
    with pytest.raises(logstore.CorruptRecordError), logstore.open(data) as store:
        store.partition("s", 0)
