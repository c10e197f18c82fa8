"""Fixtures of the web console's browser tests (issue 18): a store with data made through
the public API, ``logstore ui`` on it as a separate process, and Playwright driving
Debian's headless Chromium.

Without Chromium (``/usr/bin/chromium``, or ``LOGSTORE_CHROMIUM``) or Playwright the tests
skip, except under ``CI=true``, where that is a failure (``./dev test`` installs the
``chromium`` package; a missing browser must not pass CI silently). Screenshots of every
page go to ``$LOGSTORE_SCREENSHOTS`` (default ``build/screenshots/``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore.patterns.retry import RetryingConsumer
from logstore.patterns.retry_policy import RetryPolicy
from logstore.types import ConsumerRecord, TopicPartition
from tests.integration.workers import Worker

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LOGSTORE_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}
SAMPLE_INTERVAL = "0.2"  # the console's sampling, so lag moves on the chart within seconds
# the records of 'orders': partition p's record i has timestamp BASE_MS + p * 500 + i * 1000
BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
ORDERS_PER_PARTITION = 120
JOBS_PER_PARTITION = 150
BINARY = bytes([0x00, 0x01, 0x02, 0xFF, 0xFE, 0x7F, 0x80]) + b"logstore" + bytes(range(16))


def logstore_command() -> list[str]:
    exe = Path(sys.executable).with_name("logstore")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "logstore_cli.main"]


def screenshot_dir() -> Path:
    path = Path(os.environ.get("LOGSTORE_SCREENSHOTS") or ROOT / "build" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- the store ----------------------------------------------------------------------------


def order(partition: int, i: int) -> dict[str, Any]:
    return {"id": partition * 1000 + i, "item": ["book", "pen", "lamp"][i % 3],
            "qty": i % 5 + 1, "paid": i % 2 == 0, "customer": {"name": f"user-{i % 7}"}}


def make_store(path: Path) -> Path:
    """A store with:

    * ``orders``: 2 partitions of 120 JSON records keyed ``user-N``, at known times;
    * ``blobs``: 3 binary values; ``events``: 20 text values with headers;
    * ``users``: a compacted topic, some keys written twice;
    * group ``billing`` with committed offsets 100 (partition 0) and 60 (partition 1) of
      ``orders``: lag 20 + 60;
    * ``jobs``: 2 partitions of 150 records, and group ``workers`` at offset 0 in both (lag
      300, for a slow consumer to bring down);
    * ``payments.dlq``: four dead letters a RetryingConsumer (group ``payments-worker``)
      wrote, beside one record of ``payments`` it handled.
    """
    with logstore.open(path) as store:
        store.create_topic("orders", partitions=2)
        for p in range(2):
            store.append_many("orders", [
                (json.dumps(order(p, i)).encode(), f"user-{i % 7}".encode(), None, p,
                 BASE_MS + p * 500 + i * 1000)
                for i in range(ORDERS_PER_PARTITION)])
        store.create_topic("blobs", partitions=1)
        for i in range(3):
            store.append("blobs", BINARY + bytes([i]), key=f"blob-{i}".encode(), partition=0)
        store.create_topic("events", partitions=1)
        store.append_many("events", [
            (f"event number {i}".encode(), f"e{i}".encode(),
             {"trace": f"trace-{i:03d}".encode(), "source": b"api" if i % 2 else b"batch"}, 0,
             None)
            for i in range(20)])
        store.create_topic("users", partitions=1, cleanup_policy="compact")
        for i, name in enumerate(["ada", "bob", "cy", "ada", "dee", "bob"]):
            store.append("users", json.dumps({"name": name, "version": i}).encode(),
                         key=name.encode(), partition=0)
        commit(store, "billing", {TopicPartition("orders", 0): 100,
                                  TopicPartition("orders", 1): 60})
        store.create_topic("jobs", partitions=2)
        for p in range(2):
            store.append_many("jobs", [(f"job {p}-{i}".encode(), None, None, p, None)
                                       for i in range(JOBS_PER_PARTITION)])
        commit(store, "workers", {TopicPartition("jobs", 0): 0, TopicPartition("jobs", 1): 0})
        make_dead_letters(store)
    return path


def commit(store: logstore.Store, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` (which then has no live member)."""
    with store.consumer(group_id=group) as consumer:
        consumer.assign(list(offsets))
        consumer.commit(offsets)


def make_dead_letters(store: logstore.Store) -> None:
    """``payments.dlq``: the four records of ``payments`` whose handler raised."""
    store.create_topic("payments", partitions=2)
    with store.producer() as producer:
        for i in range(4):
            producer.send("payments", json.dumps({"payment": i, "amount": 10 * i}).encode(),
                          key=f"pay-{i}".encode(), headers={"trace": f"pt{i}".encode()},
                          partition=i % 2)
        producer.send("payments", b"fine", key=b"pay-fine", partition=0)

    def handle(record: ConsumerRecord) -> None:
        if record.value != b"fine":
            raise ValueError(f"card declined for {record.key!r}")

    policy = RetryPolicy(max_attempts=1, delays_ms=())
    with RetryingConsumer(store, "payments-worker", ["payments"], handle, policy) as rc:
        stats = rc.run(idle_ms=150)
    assert stats.dead_lettered == 4


def values_of(path: Path, topic: str) -> list[bytes | None]:
    with logstore.open(path) as store:
        return [r.value for info in store.describe_topic(topic).partitions
                for r in store.read(topic, info.partition, 0)]


# -- logstore ui ----------------------------------------------------------------------------


class UiServer:
    """``logstore ui --port 0`` on a data directory, as a separate process."""

    def __init__(self, data: Path, *extra: str) -> None:
        self.worker = Worker([*logstore_command(), "--data-dir", str(data), "ui", "--port", "0",
                              "--sample-interval", SAMPLE_INTERVAL, *extra])
        deadline = time.monotonic() + 30
        while "\n" not in self.worker.output():
            if not self.worker.running() or time.monotonic() > deadline:
                self.worker.kill()
                out, err = self.worker.communicate(timeout=10)
                raise AssertionError(f"logstore ui did not start: {out!r}\n{err}")
            time.sleep(0.05)
        line = self.worker.output().splitlines()[0]
        assert line.startswith("logstore ui: serving "), line
        self.url = line.split(" on ", 1)[1].split()[0].rstrip("/")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.load(resp)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    def stop(self) -> None:
        if self.worker.running():
            self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.communicate(timeout=15)


# -- the browser ------------------------------------------------------------------------------


def _unavailable() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (one per test module); skipped without it, failed under CI."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests cannot run under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class PageErrors:
    """What went wrong in a page's script: uncaught errors and console.error lines."""

    def __init__(self, page: Any) -> None:
        self.lines: list[str] = []
        page.on("pageerror", lambda err: self.lines.append(f"uncaught: {err}"))
        page.on("console", lambda msg: msg.type == "error" and self.lines.append(
            f"console.error: {msg.text}"))


def new_page(browser: Any) -> tuple[Any, Any, PageErrors]:
    """A fresh browser context and page at the fixed viewport, its clock in UTC."""
    context = browser.new_context(viewport=VIEWPORT, timezone_id="UTC", locale="en-US")
    context.set_default_timeout(10_000)
    page = context.new_page()
    return context, page, PageErrors(page)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page for one test; the test fails if the page's script raised or logged
    an error (test_browser.py shares one page per module instead)."""
    context, page, errors = new_page(browser)
    yield page
    context.close()
    unexpected = [x for x in errors.lines if "Failed to load resource" not in x]
    assert not unexpected, unexpected
