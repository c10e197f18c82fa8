"""The web console's changes in a real browser (issue 18), on ``logstore ui --allow-writes``:
re-driving dead letters, resetting a group's offsets and deleting a topic, each through
the preview in the confirmation dialog; the result checked in the store itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")

from playwright.sync_api import expect

import logstore
from tests.ui.conftest import UiServer, make_store, screenshot_dir, values_of

pytestmark = pytest.mark.xdist_group("ui-browser-writes")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("ui-writes") / "data")


@pytest.fixture(scope="module")
def server(data: Path) -> Iterator[UiServer]:
    ui = UiServer(data, "--allow-writes")
    yield ui
    ui.stop()


def show(page: Any, server: UiServer, route: str, name: str) -> None:
    page.goto(f"{server.url}/#{route}")
    page.wait_for_selector(f'main[data-page="{name}"][data-ready="true"]')


def reloaded(page: Any, name: str) -> None:
    """Wait for the page to draw itself again (after a change)."""
    page.wait_for_selector(f'main[data-page="{name}"][data-ready="true"]')


def test_redrive_selected_and_all_through_the_dialog(
        page: Any, server: UiServer, data: Path) -> None:
    before = values_of(data, "payments")
    assert len(before) == 5
    show(page, server, "/dlq/payments.dlq", "dlq")
    assert page.get_by_test_id("mode-badge").inner_text() == "writes allowed"
    assert page.get_by_test_id("writes-note").count() == 0
    assert page.get_by_test_id("redrive-all").is_enabled()
    selected = page.get_by_test_id("redrive-selected")
    assert selected.is_disabled()  # nothing selected yet
    row = page.locator('[data-testid="letter-row"][data-id="0:0"]')
    row.get_by_test_id("letter-check").check()
    assert selected.is_enabled()
    selected.click()
    dialog = page.get_by_test_id("confirm-dialog")
    dialog.wait_for(state="visible")
    assert "Send 1 dead letter(s)" in dialog.inner_text()
    assert "payments" in dialog.get_by_test_id("redrive-routes").inner_text()
    assert values_of(data, "payments") == before  # a preview changes nothing
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    dialog.get_by_test_id("confirm-ok").click()
    reloaded(page, "dlq")
    result = page.get_by_test_id("result-banner")
    assert result.is_visible()
    assert "Re-drove 1 dead letter(s) of 'payments.dlq' to payments (1)" in result.inner_text()
    row = page.locator('[data-testid="letter-row"][data-id="0:0"]')
    assert row.get_by_test_id("letter-redriven").inner_text() == "re-driven"
    assert row.get_by_test_id("letter-check").is_disabled()
    page.screenshot(path=str(screenshot_dir() / "dlq.png"))
    # it is back in its original topic, once
    after = values_of(data, "payments")
    assert len(after) == 6
    sent = json.dumps({"payment": 0, "amount": 0}).encode()
    assert after.count(sent) == 2  # the original and the re-driven one
    with logstore.open(data) as store:
        [back] = [r for r in store.read("payments", 0, 0) if r.offset >= 3]
        assert back.value == sent and back.key == b"pay-0"
        assert list(back.headers) == [("trace", b"pt0")]

    # all pending: the dialog's Cancel changes nothing; Confirm sends the other three
    page.get_by_test_id("redrive-all").click()
    dialog.wait_for(state="visible")
    assert "Send 3 dead letter(s)" in dialog.inner_text()
    dialog.get_by_test_id("confirm-cancel").click()
    dialog.wait_for(state="hidden")
    assert len(values_of(data, "payments")) == 6
    page.get_by_test_id("redrive-all").click()
    dialog.wait_for(state="visible")
    page.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    dialog.get_by_test_id("confirm-ok").click()
    reloaded(page, "dlq")
    assert "Re-drove 3 dead letter(s)" in page.get_by_test_id("result-banner").inner_text()
    assert set(page.get_by_test_id("letter-redriven").all_inner_texts()) == {"re-driven"}
    values = values_of(data, "payments")
    assert len(values) == 9
    for i in range(4):
        assert values.count(json.dumps({"payment": i, "amount": 10 * i}).encode()) == 2
    # nothing pending now: the list says so, and a preview of "all" finds nothing
    show(page, server, "/dlq", "dlq-list")
    row = page.locator('[data-testid="dlq-row"][data-name="payments.dlq"]')
    assert row.get_by_test_id("dlq-pending").inner_text() == "0"
    assert row.get_by_test_id("dlq-redriven").inner_text() == "4"


def test_reset_offsets_through_the_dialog(page: Any, server: UiServer, data: Path) -> None:
    show(page, server, "/groups/billing", "group")
    page.get_by_test_id("reset-offsets").click()
    dialog = page.get_by_test_id("confirm-dialog")
    dialog.wait_for(state="visible")
    dialog.get_by_test_id("reset-to").select_option("offset")
    dialog.get_by_test_id("reset-value").fill("10")
    dialog.get_by_test_id("confirm-ok").click()  # "Preview"
    preview = dialog.get_by_test_id("reset-preview")
    preview.wait_for(state="visible")
    cells = [r.locator("td").all_inner_texts() for r in preview.locator("tbody tr").all()]
    assert cells == [["orders", "0", "100", "10"], ["orders", "1", "60", "10"]]
    assert server.get("/api/groups/billing")["lag"] == 80  # not yet
    dialog.get_by_test_id("confirm-ok").click()
    result = page.get_by_test_id("result-banner")
    result.wait_for(state="visible")
    assert "Reset 2 offset(s) of group 'billing'" in result.inner_text()
    expect(page.get_by_test_id("group-total-lag")).to_have_text("220")
    with logstore.open(data) as store, store.consumer(group_id="billing") as consumer:
        assert consumer.committed(("orders", 0)) == 10
        assert consumer.committed(("orders", 1)) == 10


def test_delete_a_topic_through_the_dialog(page: Any, server: UiServer, data: Path) -> None:
    with logstore.open(data) as store:
        store.create_topic("scratch", partitions=1)
        store.append("scratch", b"x")
    show(page, server, "/topics/scratch", "topic")
    page.get_by_test_id("delete-topic").click()
    dialog = page.get_by_test_id("confirm-dialog")
    dialog.wait_for(state="visible")
    assert "scratch" in dialog.inner_text() and "1 record(s)" in dialog.inner_text()
    dialog.get_by_test_id("confirm-ok").click()
    page.wait_for_selector('main[data-page="overview"][data-ready="true"]')
    assert "Deleted topic 'scratch'" in page.get_by_test_id("result-banner").inner_text()
    assert page.locator('[data-testid="topic-row"][data-name="scratch"]').count() == 0
    with logstore.open(data) as store:
        assert "scratch" not in store.list_topics()


def test_a_refused_change_shows_its_error(page: Any, server: UiServer, data: Path) -> None:
    """A group with a live member cannot be reset: the 409 answer's message is shown."""
    with logstore.open(data) as store, store.consumer(
            ["events"], group_id="live", auto_offset_reset="earliest") as member:
        for _ in range(50):
            member.poll(timeout_ms=100)
            if member.assignment():
                break
        assert member.assignment()
        show(page, server, "/groups/live", "group")
        assert page.get_by_test_id("member-row").count() == 1
        page.get_by_test_id("reset-offsets").click()
        dialog = page.get_by_test_id("confirm-dialog")
        dialog.wait_for(state="visible")
        dialog.get_by_test_id("confirm-ok").click()  # "Preview": refused already
        banner = page.get_by_test_id("error-banner")
        banner.wait_for(state="visible")
        assert "409 group_not_empty" in banner.inner_text()
        assert "live" in banner.inner_text()
        assert not dialog.is_visible()
