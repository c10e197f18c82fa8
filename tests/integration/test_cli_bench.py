"""``logstore bench produce`` and ``bench consume`` through CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import logstore
from logstore_cli import bench as bench_module
from logstore_cli.main import cli

PRODUCE_LINE = re.compile(
    r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, ([\d.]+) ms 50th, ([\d.]+) ms 95th, ([\d.]+) ms 99th, "
    r"([\d.]+) ms 99\.9th\.$"
)
CONSUME_LINE = re.compile(
    r"^(\d+) records consumed in ([\d.]+) s, ([\d.]+) records/sec \(([\d.]+) MB/sec, "
    r"([\d.]+) MB\), (\d+) polls, ([\d.]+) ms avg poll, ([\d.]+) ms max poll, "
    r"([\d.]+) ms 50th, ([\d.]+) ms 95th, ([\d.]+) ms 99th, ([\d.]+) ms 99\.9th\.$"
)
LATENCY_KEYS = {"avg", "p50", "p95", "p99", "p99_9", "max"}


def _run(data: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data), "bench", *args])
    return result.exit_code, result.stdout, result.stderr


def _records_in(data: Path, topic: str) -> list[int]:
    with logstore.open(data) as store:
        return [
            p.log_end_offset - p.log_start_offset
            for p in store.describe_topic(topic).partitions
        ]


def test_produce_prints_the_perf_test_line_and_writes_every_record(tmp_path: Path) -> None:
    data = tmp_path / "d"
    code, out, err = _run(data, "produce", "perf", "--records", "2000", "-c", "flush=never")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out  # one summary line: no progress bar off a terminal
    match = PRODUCE_LINE.match(lines[0])
    assert match, lines[0]
    sent, rate, mb, avg, top, p50, p95, p99, p999 = (float(g) for g in match.groups())
    assert sent == 2000 and rate > 0 and mb > 0
    assert 0 <= p50 <= p95 <= p99 <= p999 <= top and avg <= top
    assert _records_in(data, "perf") == [2000]


def test_produce_json_partitions_keys_and_an_existing_topic(tmp_path: Path) -> None:
    data = tmp_path / "d"
    code, out, err = _run(
        data, "produce", "perf", "-n", "2000", "--record-size", "50", "-p", "3",
        "--keys", "10", "--linger-ms", "0", "--batch-size", "4096", "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["records"] == 2000 and report["partitions"] == 3 and report["created"]
    assert report["batch_size"] == 4096 and report["linger_ms"] == 0
    assert report["bytes"] == 2000 * 50 + 200 * sum(len(f"key-{i}") for i in range(10))
    assert report["records_per_sec"] > 0 and report["mb_per_sec"] > 0
    assert set(report["latency_ms"]) == LATENCY_KEYS
    assert report["latency_samples"] == 2000
    counts = _records_in(data, "perf")
    assert len(counts) == 3 and sum(counts) == 2000 and all(counts)

    # an existing topic keeps its partitions and gets the new records appended
    code, out, _ = _run(data, "produce", "perf", "-n", "500", "-p", "1", "--json")
    assert code == 0
    assert json.loads(out)["partitions"] == 3 and not json.loads(out)["created"]
    assert sum(_records_in(data, "perf")) == 2500


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_is_used_and_reads_back(tmp_path: Path, codec: str) -> None:
    data = tmp_path / "d"
    for topic, used in (("plain", "none"), ("packed", codec)):
        code, _, err = _run(
            data, "produce", topic, "-n", "1000", "--record-size", "200",
            "--compression", used, "-c", "flush=never",
        )
        assert code == 0, err
    with logstore.open(data) as store:
        plain = store.describe_topic("plain").partitions[0].size_bytes
        packed = store.describe_topic("packed").partitions[0].size_bytes
        first_batch = store.partition("packed", 0).read(0).records
    attributes = int.from_bytes(first_batch[21:23], "big")  # RecordBatch v2 layout
    assert attributes & 0x07 == logstore.Compression.parse(codec)
    if codec in ("gzip", "zstd"):  # random capital letters: entropy coders take ~40 % off
        assert packed < plain * 0.8
    code, out, _ = _run(data, "consume", "packed", "--json")
    assert code == 0 and json.loads(out)["records"] == 1000
    assert json.loads(out)["bytes"] == 1000 * 200


def test_consume_reports_every_record_of_every_partition(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert _run(data, "produce", "t", "-n", "2000", "-p", "3", "--keys", "7",
                "-c", "flush=never")[0] == 0
    code, out, err = _run(data, "consume", "t")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    match = CONSUME_LINE.match(lines[0])
    assert match, lines[0]
    assert int(match.group(1)) == 2000 and float(match.group(3)) > 0

    code, out, _ = _run(data, "consume", "t", "--json", "--max-records-per-poll", "64")
    report = json.loads(out)
    assert code == 0 and report["records"] == 2000 and report["partitions"] == 3
    assert report["bytes"] == 2000 * 100 + sum(len(f"key-{i % 7}") for i in range(2000))
    assert report["polls"] >= 2000 // 64 and report["max_records_per_poll"] == 64
    assert set(report["poll_ms"]) == LATENCY_KEYS

    code, out, _ = _run(data, "consume", "t", "--records", "300", "--json")
    assert code == 0 and json.loads(out)["records"] == 300


def test_latency_is_sampled_beyond_the_sample_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_module, "MAX_LATENCY_SAMPLES", 100)
    code, out, _ = _run(tmp_path / "d", "produce", "t", "-n", "2000", "--json")
    report = json.loads(out)
    assert code == 0 and report["records"] == 2000 and report["latency_samples"] == 100
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["max"]


def test_throughput_caps_the_send_rate(tmp_path: Path) -> None:
    code, out, _ = _run(
        tmp_path / "d", "produce", "t", "-n", "1000", "--throughput", "10000", "--json",
        "-c", "flush=never",
    )
    report = json.loads(out)
    assert code == 0 and report["elapsed_s"] >= 0.09
    assert report["records_per_sec"] <= 11_000


def test_user_errors_print_one_line_and_exit_non_zero(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with logstore.open(data) as store:
        store.create_topic("empty")
        store.create_topic("small")
        store.append("small", b"x")
    for args in (
        ("consume", "missing"),
        ("consume", "empty"),
        ("consume", "small", "--records", "2"),
        ("consume", "small", "--records", "0"),
        ("consume", "small", "--max-records-per-poll", "0"),
        ("produce", "t", "--records", "0"),
        ("produce", "t", "--records", "-5"),
        ("produce", "t", "--record-size", "-1"),
        ("produce", "t", "--keys", "-1"),
        ("produce", "t", "--throughput", "0"),
        ("produce", "bad/name", "-n", "10"),
        ("produce", "t", "-n", "10", "-c", "flush=sometimes"),
        ("produce", "t", "-n", "1", "--record-size", "1100000"),  # > max_message_bytes
    ):
        code, out, err = _run(data, *args)
        assert code != 0, args
        assert "Traceback" not in out + err, args
        assert out == "", args
        assert len(err.strip().splitlines()) == 1, (args, err)
        assert err.startswith("Error: "), (args, err)


def test_every_command_has_examples_in_its_help(tmp_path: Path) -> None:
    for command in ("produce", "consume"):
        code, out, _ = _run(tmp_path / "d", command, "--help")
        assert code == 0 and "Examples:" in out and f"logstore bench {command}" in out
