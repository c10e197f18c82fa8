"""The web console in a real browser (issue 18), read-only: every page against a store with
data, the record browser (filters, paging both ways, from a time, JSON and hex), error
answers in the banner, and a group's lag chart falling live while a consumer works.

One ``logstore ui`` process and one Chromium serve the whole module (its tests run in one
xdist worker); screenshots of the pages go to ``build/screenshots/`` (conftest.py).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")

from playwright.sync_api import expect

import logstore
from tests.integration.workers import Worker
from tests.ui.conftest import (
    BASE_MS,
    JOBS_PER_PARTITION,
    UiServer,
    make_store,
    new_page,
    screenshot_dir,
)

pytestmark = pytest.mark.xdist_group("ui-browser-read")

SLOW_CONSUMER = str(Path(__file__).with_name("slow_consumer.py"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("ui") / "data")


@pytest.fixture(scope="module")
def server(data: Path) -> Iterator[UiServer]:
    ui = UiServer(data)
    yield ui
    ui.stop()


@pytest.fixture(scope="module")
def module_page(browser: Any) -> Iterator[Any]:
    context, page, errors = new_page(browser)
    page.errors = errors
    yield page
    context.close()


@pytest.fixture
def page(module_page: Any) -> Iterator[Any]:
    """The module's page; a test fails if the page's script raised or logged an error."""
    errors = module_page.errors
    errors.lines.clear()
    yield module_page
    unexpected = [x for x in errors.lines if "Failed to load resource" not in x]
    assert not unexpected, unexpected


def show(page: Any, server: UiServer, route: str, name: str) -> Any:
    """Open ``#route`` and wait until the page named ``name`` has its data."""
    target = f"{server.url}/#{route}"
    if page.url == target:
        page.reload()
    else:
        if page.url.startswith(server.url):  # the same document: wait for the new data
            page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
        page.goto(target)
    page.wait_for_selector(f'main[data-page="{name}"][data-ready="true"]')
    return page.locator("main")


def shoot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"{name}.png"))


def texts_of(page: Any, testid: str) -> list[str]:
    return [x.strip() for x in page.get_by_test_id(testid).all_inner_texts()]


def offsets(page: Any) -> list[int]:
    return [int(x) for x in texts_of(page, "record-offset")]


# -- overview, topic ------------------------------------------------------------------------


def test_overview_lists_topics_and_groups_and_refreshes(
        page: Any, server: UiServer, data: Path) -> None:
    show(page, server, "/", "overview")
    names = [r.get_attribute("data-name") for r in page.get_by_test_id("topic-row").all()]
    assert names == sorted(["blobs", "events", "jobs", "orders", "payments", "payments.dlq",
                            "users"])
    orders = page.locator('[data-testid="topic-row"][data-name="orders"]')
    assert orders.locator("td").nth(1).inner_text() == "2"  # partitions
    assert orders.get_by_test_id("topic-records").inner_text() == "240"
    assert "DLQ" in page.locator('[data-testid="topic-row"][data-name="payments.dlq"]').inner_text()
    assert "compact" in page.locator('[data-testid="topic-row"][data-name="users"]').inner_text()
    # billing, workers, payments-worker
    assert page.get_by_test_id("groups-count").inner_text() == "3"
    assert str(data) in page.get_by_test_id("store-target").inner_text()
    assert page.get_by_test_id("mode-badge").inner_text() == "read-only"
    shoot(page, "overview")
    # a record appended meanwhile shows within a refresh (every 3 s)
    with logstore.open(data) as store:
        store.append("events", b"one more", key=b"late", headers={"trace": b"late"})
    events = page.locator('[data-testid="topic-row"][data-name="events"]')
    events.get_by_test_id("topic-records").filter(has_text=re.compile(r"^21$")).wait_for(
        timeout=8000)


def test_topic_page_shows_partitions_segments_and_config(page: Any, server: UiServer) -> None:
    show(page, server, "/", "overview")
    page.locator('[data-testid="topic-row"][data-name="orders"]').get_by_test_id(
        "topic-link").click()
    page.wait_for_selector('main[data-page="topic"][data-ready="true"]')
    assert page.get_by_test_id("page-title").inner_text() == "orders"
    rows = page.get_by_test_id("partition-row")
    assert rows.count() == 2
    for p in range(2):
        row = page.locator(f'[data-testid="partition-row"][data-partition="{p}"]')
        assert row.get_by_test_id("start-offset").inner_text() == "0"
        assert row.get_by_test_id("end-offset").inner_text() == "120"
    assert page.get_by_test_id("segment-row").count() == 2  # one segment per partition
    policy = page.locator('[data-testid="config-row"][data-key="cleanup.policy"]')
    assert "delete" in policy.inner_text()
    assert page.get_by_test_id("compaction-table").count() == 0
    assert page.get_by_test_id("delete-topic").is_disabled()  # read-only
    shoot(page, "topic")
    # a compacted topic shows its compaction state
    show(page, server, "/topics/users", "topic")
    assert page.get_by_test_id("compacted-badge").is_visible()
    assert page.get_by_test_id("compaction-row").count() == 1
    # and Browse leads to the record browser of that partition
    page.get_by_test_id("browse-partition").first.click()
    page.wait_for_selector('main[data-page="records"][data-ready="true"]')
    assert "partition=0" in page.url
    assert offsets(page) == list(range(6))


# -- the record browser --------------------------------------------------------------------


def test_records_pretty_json_and_paging_both_ways(page: Any, server: UiServer) -> None:
    show(page, server, "/topics/orders/records?partition=0", "records")
    assert offsets(page) == list(range(50))
    first = page.get_by_test_id("record-row").first
    value = first.get_by_test_id("record-value").inner_text()
    assert value.startswith('{\n  "id": 0,\n  "item": "book",')  # pretty-printed
    assert '"customer": {\n    "name": "user-0"\n  }' in value
    assert first.get_by_test_id("record-key").inner_text() == "user-0"
    assert "2025-01-01 00:00:00.000" in first.inner_text()  # the page's clock is UTC
    shoot(page, "records")
    top = page.get_by_test_id("pager-top")
    assert top.get_by_test_id("pager-prev").is_disabled()

    def turn(which: str, first_offset: int) -> None:
        page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
        top.get_by_test_id(which).click()
        page.wait_for_selector('main[data-page="records"][data-ready="true"]')
        assert offsets(page)[0] == first_offset

    turn("pager-next", 50)
    turn("pager-next", 100)
    assert offsets(page) == list(range(100, 120))
    assert top.get_by_test_id("pager-next").is_disabled()
    assert page.get_by_test_id("records-end").is_visible()
    turn("pager-prev", 50)
    assert offsets(page) == list(range(50, 100))
    turn("pager-prev", 0)
    assert top.get_by_test_id("pager-prev").is_disabled()


def test_records_filters_and_filtered_paging(page: Any, server: UiServer) -> None:
    show(page, server, "/topics/orders/records?partition=0", "records")
    page.get_by_test_id("filter-key").fill("user-3")
    page.get_by_test_id("limit-select").select_option("10")
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    page.get_by_test_id("records-apply").click()
    page.wait_for_selector('main[data-page="records"][data-ready="true"]')
    matching = [i for i in range(120) if i % 7 == 3]  # 17 records keyed user-3
    assert offsets(page) == matching[:10]
    assert set(texts_of(page, "record-key")) == {"user-3"}
    top = page.get_by_test_id("pager-top")
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    top.get_by_test_id("pager-next").click()
    page.wait_for_selector('main[data-page="records"][data-ready="true"]')
    assert offsets(page) == matching[10:]
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    top.get_by_test_id("pager-prev").click()  # back, though a filtered page has no prev_offset
    page.wait_for_selector('main[data-page="records"][data-ready="true"]')
    assert offsets(page) == matching[:10]
    # key and value together
    page.get_by_test_id("filter-value").fill('"lamp"')
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    page.get_by_test_id("records-apply").click()
    page.wait_for_selector('main[data-page="records"][data-ready="true"]')
    assert offsets(page) == [i for i in range(120) if i % 7 == 3 and i % 3 == 2][:10]
    # a header's value
    show(page, server, "/topics/events/records?header=trace%3Dtrace-005", "records")
    assert offsets(page) == [5]
    headers = page.get_by_test_id("record-headers").first.inner_text()
    assert "trace" in headers and "trace-005" in headers and "source" in headers


def test_records_scan_limit_offers_to_continue(page: Any, server: UiServer) -> None:
    show(page, server, "/topics/orders/records?partition=0&key=user-3&max_scan=20", "records")
    assert offsets(page) == [3, 10, 17]
    hint = page.get_by_test_id("scan-limited")
    assert "scanned 20" in hint.inner_text()
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    hint.get_by_test_id("scan-continue").click()
    page.wait_for_selector('main[data-page="records"][data-ready="true"]')
    assert offsets(page) == [24, 31, 38]


def test_records_from_a_time_and_another_partition(page: Any, server: UiServer) -> None:
    show(page, server, "/topics/orders/records?partition=0", "records")
    page.get_by_test_id("start-mode").select_option("time")
    # the page's clock is UTC (new_page): 00:00:30 is record 30 of partition 0
    page.get_by_test_id("time-input").fill("2025-01-01T00:00:30")
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    page.get_by_test_id("records-apply").click()
    page.wait_for_selector('main[data-page="records"][data-ready="true"]')
    assert f"timestamp={BASE_MS + 30_000}" in page.url
    assert offsets(page)[0] == 30
    # partition 1's records are half a second later: 00:00:30 is its record 30 (at 30.5 s)
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    page.get_by_test_id("partition-select").select_option("1")
    page.wait_for_selector('main[data-page="records"][data-ready="true"]')
    assert offsets(page)[0] == 0
    page.get_by_test_id("start-mode").select_option("time")
    page.get_by_test_id("time-input").fill("2025-01-01T00:00:30")
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    page.get_by_test_id("records-apply").click()
    page.wait_for_selector('main[data-page="records"][data-ready="true"]')
    assert offsets(page)[0] == 30
    assert "1970" not in page.get_by_test_id("record-row").first.inner_text()


def test_binary_values_show_as_a_hex_dump(page: Any, server: UiServer) -> None:
    show(page, server, "/topics/blobs/records", "records")
    assert offsets(page) == [0, 1, 2]
    value = page.get_by_test_id("record-value").first
    dump = value.locator('pre[data-encoding="binary"]').inner_text()
    lines = dump.splitlines()
    assert lines[0].startswith("00000000  00 01 02 ff fe 7f 80 6c  6f 67 73 74 6f 72 65 00")
    assert lines[0].endswith("|.......logstore.|")
    assert lines[1].startswith("00000010  01 02 03")
    assert "binary, 32 B" in value.inner_text()
    assert page.get_by_test_id("record-key").first.inner_text() == "blob-0"


def test_json_numbers_are_shown_as_written(page: Any, server: UiServer, data: Path) -> None:
    # an id above 2**53 would be rounded by a parse into a JavaScript number
    text = '{"id": 12345678901234567890123, "n": -1.5e3, "empty": {}, "s": "a,b:{c}"}'
    with logstore.open(data) as store:
        store.append("events", text.encode(), key=b"big")
        end = store.describe_topic("events").partitions[0].log_end_offset
    show(page, server, f"/topics/events/records?offset={end - 1}", "records")
    value = page.get_by_test_id("record-value").first.inner_text()
    assert value == ('{\n  "id": 12345678901234567890123,\n  "n": -1.5e3,\n  "empty": {},\n'
                     '  "s": "a,b:{c}"\n}')


def test_errors_show_in_the_banner(page: Any, server: UiServer) -> None:
    show(page, server, "/topics/nope", "topic")
    banner = page.get_by_test_id("error-banner")
    assert banner.is_visible()
    assert "nope" in banner.inner_text() and "topic_not_found" in banner.inner_text()
    assert page.locator("main").get_attribute("data-error") == "topic_not_found"
    show(page, server, "/topics/orders/records?partition=0&offset=999", "records")
    assert "offset_out_of_range" in banner.inner_text()
    assert "999" in banner.inner_text()
    show(page, server, "/", "overview")  # a good page clears it
    assert not banner.is_visible()


# -- groups and live lag -------------------------------------------------------------------


def test_groups_page(page: Any, server: UiServer) -> None:
    show(page, server, "/groups", "groups")
    billing = page.locator('[data-testid="group-row"][data-name="billing"]')
    assert billing.get_by_test_id("group-lag").inner_text() == "80"
    assert billing.get_by_test_id("group-state").inner_text() == "Empty"
    assert page.locator('[data-testid="group-row"][data-name="workers"]').get_by_test_id(
        "group-lag").inner_text() == str(2 * JOBS_PER_PARTITION)
    shoot(page, "groups")
    billing.get_by_test_id("group-link").click()
    page.wait_for_selector('main[data-page="group"][data-ready="true"]')
    rows = {r.get_attribute("data-partition"): r for r in page.get_by_test_id(
        "group-partition-row").all()}
    assert rows["0"].get_by_test_id("committed").inner_text() == "100"
    assert rows["0"].get_by_test_id("lag").inner_text() == "20"
    assert rows["1"].get_by_test_id("lag").inner_text() == "60"
    assert page.get_by_test_id("group-total-lag").inner_text() == "80"
    chart = page.get_by_test_id("lag-chart")
    expect(page.get_by_test_id("lag-chart")).to_have_attribute("data-latest-total", "80")
    assert chart.locator("canvas").count() == 1
    assert page.get_by_test_id("reset-offsets").is_disabled()


def test_lag_chart_falls_live_while_a_consumer_runs(
        page: Any, server: UiServer, data: Path) -> None:
    show(page, server, "/groups/workers", "group")
    total = 2 * JOBS_PER_PARTITION
    expect(page.get_by_test_id("lag-chart")).to_have_attribute(
        "data-latest-total", str(total))
    assert page.evaluate("document.body.dataset.openStreams") == "1"
    chart = page.get_by_test_id("lag-chart")
    points_before = int(chart.get_attribute("data-points") or 0)
    consumer = Worker([sys.executable, SLOW_CONSUMER, str(data), "jobs", "workers", "10",
                       "0.05"])
    seen = []
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            latest = chart.get_attribute("data-latest-total")
            if latest and (not seen or seen[-1] != int(latest)):
                seen.append(int(latest))
            if seen and seen[-1] == 0:
                break
            time.sleep(0.1)
        out, err = consumer.communicate(timeout=30)
    finally:
        if consumer.running():
            consumer.kill()
    assert consumer.returncode == 0, err
    assert f"done {total}" in out
    assert seen[0] == total and seen[-1] == 0, seen
    assert any(0 < x < total for x in seen), seen  # seen falling, not only before and after
    assert seen == sorted(seen, reverse=True), seen
    assert int(chart.get_attribute("data-points") or 0) > points_before + len(seen) - 2
    expect(page.get_by_test_id("group-total-lag")).to_have_text(
        "0", timeout=8000)  # the tables refresh too
    shoot(page, "group")
    show(page, server, "/groups", "groups")  # leaving the page closes its event stream
    assert page.evaluate("document.body.dataset.openStreams") == "0"


# -- dead letters, read-only -----------------------------------------------------------------


def test_dead_letters_read_only(page: Any, server: UiServer) -> None:
    show(page, server, "/dlq", "dlq-list")
    row = page.locator('[data-testid="dlq-row"][data-name="payments.dlq"]')
    assert row.get_by_test_id("dlq-pending").inner_text() == "4"
    assert row.get_by_test_id("dlq-redriven").inner_text() == "0"
    row.get_by_test_id("dlq-link").click()
    page.wait_for_selector('main[data-page="dlq"][data-ready="true"]')
    letters = page.get_by_test_id("letter-row")
    assert letters.count() == 4
    first = page.locator('[data-testid="letter-row"][data-id="0:0"]')
    assert first.get_by_test_id("letter-original").inner_text() == "payments-0@0"
    assert "ValueError" in first.get_by_test_id("letter-error").inner_text()
    assert "card declined for b'pay-0'" in first.get_by_test_id("letter-error").inner_text()
    assert first.get_by_test_id("letter-value").inner_text() == '{"payment": 0, "amount": 0}'
    assert first.get_by_test_id("letter-redriven").inner_text() == "pending"
    assert page.get_by_test_id("redrive-selected").is_disabled()
    assert page.get_by_test_id("redrive-all").is_disabled()
    assert "--allow-writes" in page.get_by_test_id("writes-note").inner_text()
    # the API refuses a confirmed change, and previews one that is not
    path = "/api/topics/payments.dlq/dead-letters/redrive"
    status, body = server.post(path, {"all": True, "confirm": True})
    assert status == 403 and body["error"] == "read_only", body
    status, body = server.post(path, {"all": True})
    assert status == 200 and body["done"] is False and body["count"] == 4, body
    assert server.get("/api/dead-letters")["topics"][0]["pending"] == 4


def test_api_page_lists_the_endpoints(page: Any, server: UiServer) -> None:
    show(page, server, "/api", "api")
    paths = {r.get_attribute("data-path") for r in page.get_by_test_id("endpoint-row").all()}
    assert {"/api/store", "/api/topics", "/api/topics/{topic}/records",
            "/api/groups/{group}/lag/stream",
            "/api/topics/{topic}/dead-letters/redrive"} <= paths
    shoot(page, "api")
