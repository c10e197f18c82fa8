"""The console's pages on a Kafka cluster (``logstore --bootstrap-server H:P ui``), in
headless Chromium against a real Apache Kafka broker: the same pages through the backend
seam, with "—" where a cluster has no data-directory files (issue 18)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("playwright")

from playwright.sync_api import expect

import logstore
from logstore.types import TopicPartition
from tests.integration.workers import Worker
from tests.kafka_broker import KafkaBroker
from tests.ui.conftest import logstore_command, screenshot_dir

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def cluster(kafka_broker: KafkaBroker) -> Iterator[tuple[str, str]]:
    """``(console url, tag)``: a topic ``kui-orders-TAG`` (2 partitions, 10 JSON records
    each) and a group ``kui-billing-TAG`` with lag 15, served by ``logstore ui``."""
    tag = uuid.uuid4().hex[:8]
    orders = f"kui-orders-{tag}"
    store = logstore.KafkaStore(f"kafka://{kafka_broker.bootstrap}?log_level=0")
    try:
        store.create_topic(orders, partitions=2)
        with store.producer() as producer:
            for i in range(20):
                producer.send(orders, json.dumps({"order": i}).encode(),
                              key=f"k{i}".encode(), partition=i % 2)
        store.backend.commit_offsets(f"kui-billing-{tag}", {TopicPartition(orders, 0): (5, "")})
        worker = Worker([*logstore_command(), "--bootstrap-server", kafka_broker.bootstrap,
                         "ui", "--port", "0", "--sample-interval", "0.2"])
        try:
            deadline = time.monotonic() + 60
            while "\n" not in worker.output() and worker.running():
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.05)
            line = worker.output().splitlines()[0]
            yield line.split(" on ", 1)[1].split()[0].rstrip("/"), tag
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=30)
        store.delete_topic(orders)
    finally:
        store.close()


def show(page: Any, url: str, name: str) -> None:
    page.goto(url)
    page.wait_for_selector(f'main[data-page="{name}"][data-ready="true"]')


def test_pages_on_a_kafka_cluster(page: Any, cluster: tuple[str, str]) -> None:
    url, tag = cluster
    orders, group = f"kui-orders-{tag}", f"kui-billing-{tag}"
    show(page, f"{url}/#/", "overview")
    row = page.locator(f'[data-testid="topic-row"][data-name="{orders}"]')
    expect(row.get_by_test_id("topic-records")).to_have_text("20")
    assert "—" in row.inner_text()  # no size on a cluster
    assert "kafka://" in page.get_by_test_id("store-target").inner_text()
    show(page, f"{url}/#/topics/{orders}", "topic")
    assert page.get_by_test_id("segments").count() == 0  # a broker's files are its own
    show(page, f"{url}/#/topics/{orders}/records?partition=1", "records")
    value = page.get_by_test_id("record-value").first.inner_text()
    assert value == '{\n  "order": 1\n}'
    page.screenshot(path=str(screenshot_dir() / "kafka-records.png"))
    show(page, f"{url}/#/groups/{group}", "group")
    expect(page.get_by_test_id("lag-chart")).to_have_attribute("data-latest-total", "5")
