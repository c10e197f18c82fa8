"""``logstore ui`` as a command (cli/ui.py): what it prints, how it stops, and its one-line
errors (the pages themselves: test_browser.py, test_changes.py)."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

import logstore
from logstore_cli.main import cli
from tests.integration.workers import Worker
from tests.kafka_broker import KafkaBroker
from tests.ui.conftest import UiServer, logstore_command


@pytest.fixture
def data(tmp_path: Path) -> Path:
    with logstore.open(tmp_path / "data") as store:
        store.create_topic("orders", partitions=2)
    return tmp_path / "data"


def test_serves_until_sigterm_and_says_where(data: Path) -> None:
    server = UiServer(data)
    try:
        line = server.worker.output().splitlines()[0]
        assert line == f"logstore ui: serving {data} on {server.url}/ (read-only)"
        assert server.url.startswith("http://127.0.0.1:")
        assert server.get("/api/store")["target"] == str(data)
        assert [t["name"] for t in server.get("/api/topics")["topics"]] == ["orders"]
        status, answer = server.post("/api/topics/orders/delete", {"confirm": True})
        assert (status, answer["error"]) == (403, "read_only")
    finally:
        server.worker.send_signal(signal.SIGTERM)
        _, err = server.worker.communicate(timeout=15)
    assert server.worker.returncode == 0, err
    assert "Traceback" not in err


def test_allow_writes_is_said_on_start(data: Path) -> None:
    server = UiServer(data, "--allow-writes")
    try:
        assert server.worker.output().splitlines()[0].endswith("(writes allowed)")
        assert server.get("/api/store")["allow_writes"] is True
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "{busy}"], "Address already in use (choose another --port"),
        (["--host", "999.1.1.1"], "cannot listen on 999.1.1.1:8080: Name or service"),
        (["--port", "70000"], "70000 is not in the range"),
        (["--sample-interval", "0"], "0 is not in the range"),
    ],
)
def test_bad_options_are_one_line(data: Path, args: list[str], words: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = str(busy.getsockname()[1])
        result = CliRunner().invoke(
            cli, ["--data-dir", str(data), "ui", *(a.replace("{busy}", port) for a in args)])
    assert result.exit_code in (1, 2), result.output
    assert words in result.output
    assert "Traceback" not in result.output


def test_a_missing_store_is_not_made(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "nope"), "ui"])
    assert result.exit_code == 1 and "no store at" in result.output
    assert not (tmp_path / "nope").exists()


@pytest.mark.kafka
def test_serves_a_kafka_cluster(kafka_broker: KafkaBroker) -> None:
    worker = Worker([*logstore_command(), "--bootstrap-server", kafka_broker.bootstrap, "ui",
                     "--port", "0"])
    try:
        deadline = time.monotonic() + 60
        while "\n" not in worker.output() and worker.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        line = worker.output().splitlines()[0]
        assert line.startswith(f"logstore ui: serving kafka://{kafka_broker.bootstrap} on ")
        url = line.split(" on ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "api/store", timeout=30) as answer:
            assert json.load(answer)["kind"] == "kafka"
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err


def test_sigterm_with_a_lag_stream_open_stops_at_once(tmp_path: Path) -> None:
    with logstore.open(tmp_path / "data") as store:
        store.create_topic("orders")
        store.append("orders", b"x")
        with store.consumer(["orders"], group_id="billing") as consumer:
            consumer.poll(timeout_ms=2000)
            consumer.commit()
    server = UiServer(tmp_path / "data")
    url = server.url + "/api/groups/billing/lag/stream"
    stream = urllib.request.urlopen(url, timeout=30)  # the group page's EventSource
    try:
        assert stream.readline().startswith(b"event: lag")
        started = time.monotonic()
        server.worker.send_signal(signal.SIGTERM)
        _, err = server.worker.communicate(timeout=15)
        took = time.monotonic() - started
    finally:
        stream.close()
    assert server.worker.returncode == 0 and "Traceback" not in err, err
    assert took < 1.5, took  # the stream ends; uvicorn need not cancel it after 2 s
