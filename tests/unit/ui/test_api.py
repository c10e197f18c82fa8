"""The web console's JSON API (logstore/ui/app.py over console.py and sampler.py, issue 18)
through Starlette's TestClient, on a data directory with topics, a group and dead letters."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

import logstore
from logstore import headers as h
from logstore.backend import backend_for
from logstore.patterns.retry import RetryingConsumer
from logstore.patterns.retry_policy import RetryPolicy
from logstore.types import ConsumerRecord, TopicPartition
from logstore.ui.app import create_app
from logstore.ui.browse import PAGE_CHARS
from logstore.ui.console import Console, Serialized
from logstore.ui.payloads import HEX_LIMIT, MAX_HEADERS, MAX_JSON_DEPTH, TEXT_LIMIT, payload
from logstore.ui.sampler import Sampler

BASE = "http://127.0.0.1"
ORDERS = 120  # records in "orders", 60 per partition


def make_store(path: Path) -> Path:
    """orders (2 partitions, JSON values, keys k0.., a "trace" header), blobs (binary),
    users (compacted), a group "billing" with lag, and orders.dlq with 4 dead letters."""
    with logstore.open(path) as store:
        store.create_topic("orders", partitions=2)
        store.create_topic("blobs")
        store.create_topic("users", cleanup_policy="compact")
        with store.producer() as producer:
            for i in range(ORDERS):
                producer.send("orders", json.dumps({"id": i, "item": "book"}).encode(),
                              key=f"k{i}".encode(), headers={"trace": f"t{i}".encode()},
                              partition=i % 2)
            producer.send("blobs", bytes(range(256)) * 40)  # 10 KiB of binary
            producer.send("blobs", b"plain text")
            for i in range(6):
                producer.send("users", f"v{i}".encode(), key=f"user{i % 3}".encode())
        backend = backend_for(store)
        backend.commit_offsets("billing", {TopicPartition("orders", 0): (10, ""),
                                           TopicPartition("orders", 1): (50, "")})

        def handle(record: ConsumerRecord) -> None:
            if record.offset in (5, 7):
                raise ValueError(f"bad order {record.offset}")

        policy = RetryPolicy(max_attempts=1, delays_ms=())
        with RetryingConsumer(store, "shipper", ["orders"], handle, policy) as rc:
            assert rc.run(idle_ms=150).dead_lettered == 4
    return path


class Env:
    def __init__(self, path: Path, *, allow_writes: bool) -> None:
        self.path = path
        self.store = logstore.open(path, maintenance=False)
        self.console = Console(backend_for(self.store), kind="local", target=str(path),
                               local=self.store)
        self.sampler = Sampler(self.console, interval=0.05)
        self.sampler.sample_now()
        self.app = create_app(self.console, self.sampler, allow_writes=allow_writes)
        self.client = TestClient(self.app, base_url=BASE)

    def get(self, url: str, status: int = 200, **kwargs: Any) -> Any:
        answer = self.client.get(url, **kwargs)
        assert answer.status_code == status, answer.text
        return answer.json()

    def post(self, url: str, body: object, status: int = 200) -> Any:
        answer = self.client.post(url, json=body)
        assert answer.status_code == status, answer.text
        return answer.json()

    def close(self) -> None:
        self.client.close()
        self.store.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Read-only console, for the tests that change nothing."""
    env = Env(make_store(tmp_path_factory.mktemp("ui") / "data"), allow_writes=False)
    yield env
    env.close()


@pytest.fixture
def writable(tmp_path: Path) -> Iterator[Env]:
    env = Env(make_store(tmp_path / "data"), allow_writes=True)
    yield env
    env.close()


# ---------------------------------------------------------------------- payloads


def test_payload_shows_json_text_and_binary() -> None:
    assert payload(None) is None
    as_json = payload(b'{"a": [1, 2]}')
    assert as_json is not None and as_json["encoding"] == "json"
    assert as_json["json"] == {"a": [1, 2]}
    text = payload("naïve {not json".encode())
    assert text == {"size": 16, "encoding": "text", "text": "naïve {not json", "hex": None,
                    "truncated": False}
    binary = payload(b"\x00\x01\xff")
    assert binary is not None and binary["encoding"] == "binary"
    assert binary["hex"] == "0001ff"
    control = payload(b"ab\x00cd")  # decodes as UTF-8 but holds a NUL: binary
    assert control is not None and control["encoding"] == "binary"


def test_payload_is_bounded() -> None:
    big_text = payload(b"x" * (TEXT_LIMIT + 10))
    assert big_text is not None and big_text["truncated"]
    assert len(big_text["text"]) == TEXT_LIMIT and big_text["size"] == TEXT_LIMIT + 10
    big_json = payload(b"[" + b"1," * TEXT_LIMIT + b"1]")
    assert big_json is not None and big_json["encoding"] == "text"  # not parsed when cut
    big_binary = payload(b"\xff" * (HEX_LIMIT * 3))
    assert big_binary is not None and len(big_binary["hex"]) == 2 * HEX_LIMIT
    assert big_binary["truncated"]


# ---------------------------------------------------------------------- topics


def test_store_and_topics(shared: Env) -> None:
    info = shared.get("/api/store")
    assert info["kind"] == "local" and info["allow_writes"] is False
    assert info["dead_letter_suffix"] == h.DLQ_SUFFIX
    topics = {t["name"]: t for t in shared.get("/api/topics")["topics"]}
    assert set(topics) >= {"orders", "blobs", "users", "orders.dlq"}
    assert topics["orders"]["partitions"] == 2 and topics["orders"]["records"] == ORDERS
    assert topics["orders"]["size_bytes"] > 0
    assert topics["users"]["cleanup_policy"] == "compact"
    assert topics["orders.dlq"]["dead_letter"] and not topics["orders"]["dead_letter"]


def test_produce_rate_comes_from_samples(writable: Env) -> None:
    assert writable.get("/api/topics/blobs")["produce_rate"] is None  # one sample only
    time.sleep(0.2)
    writable.sampler.sample_now()
    assert writable.get("/api/topics/blobs")["produce_rate"] == 0.0
    with writable.store.producer() as producer:
        for _ in range(50):
            producer.send("blobs", b"more")
    time.sleep(0.1)
    writable.sampler.sample_now()
    rate = writable.get("/api/topics/blobs")["produce_rate"]
    assert rate > 0
    window = writable.sampler.samples()[-1].time - writable.sampler.samples()[0].time
    assert rate == pytest.approx(50 / window, rel=0.01)


def test_topic_detail_has_partitions_segments_config(shared: Env) -> None:
    topic = shared.get("/api/topics/orders")
    assert [p["partition"] for p in topic["partitions"]] == [0, 1]
    first = topic["partitions"][0]
    assert (first["start_offset"], first["end_offset"], first["records"]) == (0, 60, 60)
    assert first["segments"][0]["base_offset"] == 0
    assert first["segments"][0]["size_bytes"] == first["size_bytes"] > 0
    assert first["compaction"] is None
    assert topic["config"]["cleanup.policy"] == "delete"
    assert "retention.ms" in topic["config"]
    users = shared.get("/api/topics/users")
    state = users["partitions"][0]["compaction"]
    assert set(state) >= {"first_dirty_offset", "dirty_ratio", "due", "runs"}


# ---------------------------------------------------------------------- records


def test_records_page_and_paging(shared: Env) -> None:
    page = shared.get("/api/topics/orders/records", params={"limit": 10})
    assert [r["offset"] for r in page["records"]] == list(range(10))
    first = page["records"][0]
    assert first["key"]["text"] == "k0"
    assert first["value"]["json"] == {"id": 0, "item": "book"}
    assert first["headers"] == [{"key": "trace", "value": payload(b"t0")}]
    assert (page["next_offset"], page["prev_offset"]) == (10, None)
    second = shared.get("/api/topics/orders/records",
                        params={"offset": page["next_offset"], "limit": 10})
    assert second["records"][0]["offset"] == 10 and second["prev_offset"] == 0
    last = shared.get("/api/topics/orders/records",
                      params={"partition": 1, "offset": 55, "limit": 10})
    assert [r["offset"] for r in last["records"]] == [55, 56, 57, 58, 59]
    assert last["next_offset"] is None and last["prev_offset"] == 45
    empty = shared.get("/api/topics/orders/records", params={"offset": 60})
    assert empty["records"] == [] and empty["next_offset"] is None


def test_records_from_a_time(shared: Env) -> None:
    records = shared.get("/api/topics/orders/records", params={"limit": 60})["records"]
    middle = records[30]["timestamp"]
    page = shared.get("/api/topics/orders/records", params={"timestamp": middle})
    assert page["from_offset"] == next(r["offset"] for r in records if r["timestamp"] >= middle)
    future = shared.get("/api/topics/orders/records", params={"timestamp": 2**62})
    assert future["records"] == [] and future["from_offset"] == 60


def test_records_filters(shared: Env) -> None:
    by_key = shared.get("/api/topics/orders/records", params={"key": "k1", "limit": 100})
    assert {r["key"]["text"] for r in by_key["records"]} == {
        "k10", "k12", "k14", "k16", "k18"} | {f"k1{i}" for i in range(0, 10, 2)} | {
        f"k1{i}{j}" for i in range(2) for j in range(0, 10, 2)}
    assert by_key["prev_offset"] is None  # no going back through a filter
    by_value = shared.get("/api/topics/orders/records",
                          params={"value": '"id": 42,', "limit": 5})
    assert [r["offset"] for r in by_value["records"]] == [21]
    by_header = shared.get("/api/topics/orders/records",
                           params={"header": "trace=t58", "limit": 5})
    assert [r["offset"] for r in by_header["records"]] == [29]
    has_header = shared.get("/api/topics/orders/records", params={"header": "trace"})
    assert len(has_header["records"]) == 50
    none = shared.get("/api/topics/orders/records", params={"header": "nope"})
    assert none["records"] == [] and none["next_offset"] is None and none["scanned"] == 60


def test_filtered_scan_is_bounded(shared: Env) -> None:
    page = shared.get("/api/topics/orders/records",
                      params={"value": "no such text", "max_scan": 25})
    assert page["records"] == [] and page["scanned"] == 25
    assert page["scan_limited"] and page["next_offset"] == 25
    rest = shared.get("/api/topics/orders/records",
                      params={"value": "no such text", "max_scan": 25, "offset": 50})
    assert rest["scanned"] == 10 and not rest["scan_limited"] and rest["next_offset"] is None


def test_binary_and_large_values(shared: Env) -> None:
    page = shared.get("/api/topics/blobs/records")
    big, text = page["records"]
    assert big["value"]["encoding"] == "binary" and big["value"]["size"] == 256 * 40
    assert big["value"]["hex"].startswith("000102") and big["value"]["truncated"]
    assert len(big["value"]["hex"]) == 2 * HEX_LIMIT
    assert big["key"] is None
    assert text["value"] == payload(b"plain text")


@pytest.mark.parametrize(
    ("url", "status", "code", "words"),
    [
        ("/api/topics/nope", 404, "topic_not_found", "unknown topic 'nope'"),
        ("/api/topics/nope/records", 404, "topic_not_found", "unknown topic 'nope'"),
        ("/api/topics/orders/records?partition=7", 404, "partition_not_found",
         "no partition 7"),
        ("/api/topics/orders/records?offset=61", 400, "offset_out_of_range", "offset 61"),
        ("/api/topics/orders/records?limit=501", 422, "invalid_request", "limit"),
        ("/api/topics/orders/records?limit=0", 422, "invalid_request", "limit"),
        ("/api/topics/orders/records?max_scan=100001", 422, "invalid_request", "max_scan"),
        ("/api/topics/orders/records?offset=abc", 422, "invalid_request", "offset"),
        ("/api/topics/orders/records?offset=-1", 422, "invalid_request", "offset"),
        ("/api/topics/orders/records?offset=1&timestamp=1", 422, "invalid_request",
         "offset or timestamp"),
        ("/api/topics/orders/records?offset=99999999999999999999999", 422,
         "invalid_request", "offset"),
        ("/api/groups/nope", 404, "group_not_found", "'nope' does not exist"),
        ("/api/groups/nope/lag", 404, "group_not_found", "'nope'"),
        ("/api/groups/nope/lag/stream", 404, "group_not_found", "'nope'"),
        ("/api/topics/orders.dlq/dead-letters?cursor=x:y", 422, "invalid_request",
         "is not PARTITION:OFFSET"),
        ("/api/topics/orders.dlq/dead-letters?cursor=9:0", 404, "partition_not_found",
         "no partition 9"),
        ("/api/topics/orders.dlq/dead-letters?limit=100000", 422, "invalid_request",
         "limit"),
        ("/api/nothing", 404, "not_found", "/api/nothing"),
        ("/api/topics/" + "x" * 300, 422, "invalid_request", "topic"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    shared: Env, url: str, status: int, code: str, words: str
) -> None:
    answer = shared.get(url, status=status)
    assert answer["error"] == code
    assert words in answer["message"]


def test_nothing_outside_the_data_dir_is_read_or_made(shared: Env, tmp_path: Path) -> None:
    secret = shared.path.parent / "secret.txt"
    secret.write_text("do not show")
    before = sorted(os.listdir(shared.path.parent)), sorted(os.listdir(shared.path))
    for url in [
        "/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/..%2fsecret.txt",
        "/static/" + str(secret), "/static//etc/passwd",
        "/api/topics/..%2Fsecret.txt/records", "/api/topics/..", "/api/topics/../records",
        "/api/topics/%2e%2e/records", "/api/topics/.%2F..%2F..%2Fsecret.txt",
        "/api/topics/orders%00/records",
    ]:
        answer = shared.client.get(url)
        assert 400 <= answer.status_code < 500, (url, answer.status_code)
        assert "do not show" not in answer.text and "root:" not in answer.text
    for name in ["..", ".", "a/b", "../secret.txt"]:
        answer = shared.client.post(f"/api/topics/{name}/delete", json={"confirm": False})
        assert 400 <= answer.status_code < 500
    assert (sorted(os.listdir(shared.path.parent)), sorted(os.listdir(shared.path))) == before


def test_host_and_origin_are_checked(shared: Env) -> None:
    for host in ["evil.example", "127.0.0.1.evil.example", "localhost.evil"]:
        answer = shared.client.get("/api/store", headers={"Host": host})
        assert answer.status_code == 400 and answer.json()["error"] == "host_not_allowed"
    assert shared.client.get("/api/store", headers={"Host": "localhost:8080"}).status_code == 200
    answer = shared.client.post("/api/topics/orders/delete", json={"confirm": False},
                                headers={"Origin": "http://evil.example"})
    assert answer.status_code == 403 and answer.json()["error"] == "origin_not_allowed"
    same = shared.client.post("/api/topics/orders/delete", json={"confirm": False},
                              headers={"Origin": BASE})
    assert same.status_code == 200


# ---------------------------------------------------------------------- groups


def test_groups_and_lag(shared: Env) -> None:
    groups = {g["name"]: g for g in shared.get("/api/groups")["groups"]}
    assert groups["billing"]["lag"] == (60 - 10) + (60 - 50)
    assert groups["billing"]["state"] == "Empty" and groups["billing"]["members"] == 0
    assert groups["shipper"]["lag"] == 0
    billing = shared.get("/api/groups/billing")
    assert [(p["partition"], p["committed"], p["end_offset"], p["lag"])
            for p in billing["partitions"]] == [(0, 10, 60, 50), (1, 50, 60, 10)]
    shared.sampler.sample_now()
    history = shared.get("/api/groups/billing/lag")
    assert len(history["times"]) >= 2 and history["total"][-1] == 60
    assert [s["lag"][-1] for s in history["series"]] == [50, 10]


def test_lag_stream_sends_each_sample(writable: Env) -> None:
    writable.sampler.start()
    try:
        events = []
        with writable.client.stream("GET", "/api/groups/billing/lag/stream",
                                    params={"max_events": 3}) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            backend = writable.console.backend
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    backend.commit_offsets("billing", {TopicPartition("orders", 0): (
                        10 + 20 * len(events), "")})
        assert len(events) == 3
        assert events[0]["total"] == 60
        assert events[-1]["total"] < events[0]["total"]  # the commits show as lag falling
        assert {p["partition"] for p in events[0]["partitions"]} == {0, 1}
    finally:
        writable.sampler.stop()


def test_reset_offsets_previews_then_commits(writable: Env) -> None:
    preview = writable.post("/api/groups/billing/reset-offsets", {"to": "earliest"})
    assert preview["done"] is False
    assert [(o["partition"], o["from"], o["to"]) for o in preview["offsets"]] == [
        (0, 10, 0), (1, 50, 0)]
    assert writable.get("/api/groups/billing")["lag"] == 60  # unchanged
    done = writable.post("/api/groups/billing/reset-offsets",
                         {"to": "offset", "value": 30, "confirm": True})
    assert done["done"] is True
    assert writable.get("/api/groups/billing")["lag"] == 60
    assert [p["committed"] for p in writable.get("/api/groups/billing")["partitions"]] == [
        30, 30]
    bad = writable.post("/api/groups/billing/reset-offsets", {"to": "offset"}, status=422)
    assert "needs value" in bad["message"]
    assert writable.post("/api/groups/billing/reset-offsets", {"to": "somewhere"},
                         status=422)["error"] == "invalid_request"


def test_reset_offsets_of_a_live_group_is_refused(writable: Env) -> None:
    with writable.store.consumer(["orders"], group_id="billing") as consumer:
        consumer.poll(timeout_ms=500)
        answer = writable.post("/api/groups/billing/reset-offsets",
                               {"to": "latest", "confirm": True}, status=409)
    assert answer["error"] == "group_not_empty"


def test_delete_group_and_topic(writable: Env) -> None:
    assert writable.post("/api/groups/billing/delete", {})["done"] is False
    assert writable.post("/api/groups/billing/delete", {"confirm": True})["done"] is True
    assert writable.get("/api/groups/billing", status=404)["error"] == "group_not_found"
    preview = writable.post("/api/topics/blobs/delete", {"confirm": False})
    assert preview == {"done": False, "topic": "blobs", "records": 2}
    writable.post("/api/topics/blobs/delete", {"confirm": True})
    assert writable.get("/api/topics/blobs", status=404)["error"] == "topic_not_found"


# ---------------------------------------------------------------------- dead letters


def test_dead_letters_list_and_pages(shared: Env) -> None:
    topics = shared.get("/api/dead-letters")["topics"]
    assert topics == [{"name": "orders.dlq", "records": 4, "redriven": 0, "pending": 4}]
    page = shared.get("/api/topics/orders.dlq/dead-letters", params={"limit": 3})
    assert len(page["letters"]) == 3 and page["next_cursor"] is not None
    letter = page["letters"][0]
    assert letter["original"]["topic"] == "orders" and letter["attempts"] == 1
    assert letter["error_class"] == "ValueError" and letter["redriven"] is False
    assert not any(x["key"].startswith("logstore.dlq") for x in letter["headers"])
    rest = shared.get("/api/topics/orders.dlq/dead-letters",
                      params={"cursor": page["next_cursor"]})
    assert len(rest["letters"]) == 1 and rest["next_cursor"] is None
    ids = [x["id"] for x in page["letters"] + rest["letters"]]
    assert len(set(ids)) == 4


def test_redrive_needs_writes_and_confirmation(shared: Env) -> None:
    preview = shared.post("/api/topics/orders.dlq/dead-letters/redrive", {"all": True})
    assert preview == {"done": False, "count": 4, "routes": {"orders": 4}, "skipped": [],
                       "confirm_with": {"through": {"0": 2, "1": 2}}}
    refused = shared.post("/api/topics/orders.dlq/dead-letters/redrive",
                          {"all": True, "confirm": True}, status=403)
    assert refused["error"] == "read_only" and "--allow-writes" in refused["message"]
    assert shared.get("/api/dead-letters")["topics"][0]["pending"] == 4


def test_redrive_sends_letters_back_once(writable: Env) -> None:
    letters = writable.get("/api/topics/orders.dlq/dead-letters")["letters"]
    first = letters[0]
    before = writable.get("/api/topics/orders")["records"]
    done = writable.post("/api/topics/orders.dlq/dead-letters/redrive",
                         {"letters": [first["id"]], "confirm": True})
    assert done == {"done": True, "count": 1, "routes": {"orders": 1}, "skipped": []}
    assert writable.get("/api/topics/orders")["records"] == before + 1
    partition = first["original"]["partition"]
    end = writable.get("/api/topics/orders")["partitions"][partition]["end_offset"]
    back = writable.get("/api/topics/orders/records",
                        params={"partition": partition, "offset": end - 1})["records"][0]
    assert back["value"] == first["value"] and back["key"] == first["key"]
    assert [x["key"] for x in back["headers"]] == ["trace"]  # dead-letter headers dropped
    again = writable.post("/api/topics/orders.dlq/dead-letters/redrive",
                          {"letters": [first["id"]], "confirm": True})
    assert again["count"] == 0 and again["skipped"] == [first["id"]]
    status = writable.get("/api/dead-letters")["topics"][0]
    assert (status["redriven"], status["pending"]) == (1, 3)
    rest = writable.post("/api/topics/orders.dlq/dead-letters/redrive",
                         {"all": True, "confirm": True})
    assert rest["count"] == 3
    assert all(x["redriven"] for x in writable.get(
        "/api/topics/orders.dlq/dead-letters")["letters"])


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "invalid_request"),
        ({"all": True, "letters": ["0:0"]}, 422, "invalid_request"),
        ({"letters": ["0:99"]}, 404, "letter_not_found"),
        ({"letters": ["zz"]}, 422, "invalid_request"),
        ({"letters": ["0:0"], "to": "nope"}, 404, "topic_not_found"),
        ({"all": True, "extra": 1}, 422, "invalid_request"),
        ({"all": "yes please"}, 422, "invalid_request"),
    ],
)
def test_redrive_bad_input(shared: Env, body: object, status: int, code: str) -> None:
    answer = shared.post("/api/topics/orders.dlq/dead-letters/redrive", body, status=status)
    assert answer["error"] == code, answer


def test_redrive_of_records_that_are_not_dead_letters(shared: Env) -> None:
    answer = shared.post("/api/topics/orders/dead-letters/redrive", {"letters": ["0:0"]},
                         status=400)
    assert answer["error"] == "not_dead_letters"


def test_malformed_json_body_is_422(shared: Env) -> None:
    answer = shared.client.post("/api/topics/orders/delete", content=b"{not json",
                                headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["error"] == "invalid_request"


def test_openapi_document_lists_the_api(shared: Env) -> None:
    doc = shared.get("/openapi.json")
    assert {"/api/topics", "/api/topics/{topic}/records", "/api/groups/{group}/lag/stream",
            "/api/topics/{topic}/dead-letters/redrive"} <= set(doc["paths"])
    assert shared.client.get("/docs").status_code == 404  # Swagger UI would need a CDN


def test_answers_carry_security_headers(shared: Env) -> None:
    for url in ["/", "/api/store", "/api/topics/nope"]:
        answer = shared.client.get(url)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "query",
    ["%zz=1", "offset=%ff", "offset=1e3", "limit=%00", "partition=0x1", "=", "&&&", "a=b=c",
     "offset=1&offset=x", "key=%ff%fe", "header=%00=%00", "timestamp=-0", "max_scan=1.5",
     "value=" + "x" * 30_000],
)
def test_malformed_query_strings_are_4xx_or_ignored(shared: Env, query: str) -> None:
    answer = shared.client.get(f"/api/topics/orders/records?{query}")
    assert answer.status_code in (200, 400, 422), answer.text
    if answer.status_code != 200:
        assert set(answer.json()) == {"error", "message"}



# ---------------------------------------------------------------------- found in review


@pytest.mark.parametrize(
    "value",
    [b'["\\ud800"]', b"[NaN]", b'{"a": Infinity}', b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (
        MAX_JSON_DEPTH + 1), b"[" * 100_000 + b"]" * 100_000, b'{"a": 1e999}'],
    ids=["lone-surrogate", "nan", "infinity", "deep", "very-deep", "overflow"],
)
def test_json_that_cannot_go_back_as_json_is_shown_as_text(writable: Env, value: bytes) -> None:
    shown = payload(value)
    assert shown is not None and shown["encoding"] == "text" and "json" not in shown
    writable.store.create_topic("odd")
    with writable.store.producer() as producer:
        producer.send("odd", value, key=value[:100], headers={"h": value[:100]})
    page = writable.get("/api/topics/odd/records")
    assert page["records"][0]["value"]["encoding"] in ("text", "json")
    assert payload(b"[[1]]") == {"size": 5, "encoding": "json", "text": "[[1]]", "hex": None,
                                 "truncated": False, "json": [[1]]}


def test_headers_and_page_size_are_bounded(writable: Env) -> None:
    writable.store.create_topic("wide")
    with writable.store.producer() as producer:
        producer.send("wide", b"v", headers=[(f"h{i}", b"") for i in range(MAX_HEADERS * 3)])
        for _ in range(80):
            producer.send("wide", b"x" * (TEXT_LIMIT - 1))
    first = writable.get("/api/topics/wide/records", params={"limit": 1})["records"][0]
    assert len(first["headers"]) == MAX_HEADERS and first["headers_total"] == MAX_HEADERS * 3
    page = writable.get("/api/topics/wide/records", params={"limit": 500})
    shown = len(page["records"])
    assert 1 < shown < 81 and shown * TEXT_LIMIT <= PAGE_CHARS + 2 * TEXT_LIMIT
    assert page["next_offset"] == page["records"][-1]["offset"] + 1  # goes on from there
    assert not page["scan_limited"]


def test_previous_page_counts_records_not_offsets(tmp_path: Path) -> None:
    with logstore.open(tmp_path / "data") as store:
        store.create_topic("kv", cleanup_policy="compact", segment_bytes=300)
        with store.producer() as producer:
            for i in range(60):
                producer.send("kv", f"v{i}".encode(), key=f"k{i % 20 if i < 40 else i}".encode())
        store.compact("kv", force=True, roll=True)
    env = Env(tmp_path / "data", allow_writes=False)
    try:
        everything = [r["offset"] for r in env.get(
            "/api/topics/kv/records", params={"limit": 500})["records"]]
        assert len(everything) < 60  # compaction left gaps in the offsets
        last = env.get("/api/topics/kv/records", params={"offset": everything[-5], "limit": 5})
        back = env.get("/api/topics/kv/records",
                       params={"offset": last["prev_offset"], "limit": 5})
        assert [r["offset"] for r in back["records"]] == everything[-10:-5]  # no overlap
        first = env.get("/api/topics/kv/records", params={"limit": 5})
        assert first["prev_offset"] is None
    finally:
        env.close()


def test_redrive_all_sends_what_the_preview_counted(writable: Env) -> None:
    preview = writable.post("/api/topics/orders.dlq/dead-letters/redrive", {"all": True})
    assert preview["count"] == 4
    with writable.store.producer() as producer:  # one more dead-lettered meanwhile
        producer.send("orders.dlq", b"late", headers={h.DLQ_ORIGINAL_TOPIC: b"orders"},
                      partition=0)
    done = writable.post("/api/topics/orders.dlq/dead-letters/redrive",
                         {"all": True, "confirm": True, **preview["confirm_with"]})
    assert done["count"] == 4
    status = writable.get("/api/dead-letters")["topics"][0]
    assert (status["records"], status["redriven"], status["pending"]) == (5, 4, 1)
    assert writable.post("/api/topics/orders.dlq/dead-letters/redrive",
                         {"letters": ["0:0"], "through": {"0": 1}}, status=422)


def test_wildcard_bind_still_refuses_other_names(shared: Env) -> None:
    app = create_app(shared.console, shared.sampler, host="0.0.0.0",
                     allowed_hosts=["console.example"])
    with TestClient(app, base_url=BASE) as client:
        def status(host: str) -> int:
            return client.get("/api/store", headers={"Host": host}).status_code

        assert status("evil.example:8080") == 400  # a rebinding page's own name
        assert status("10.1.2.3:8080") == 200 and status("[fe80::1]:8080") == 200
        assert status("CONSOLE.example:8080") == 200 and status("localhost") == 200
        assert status(socket.gethostname()) == 200


@pytest.mark.parametrize("host", ["[::1", "[127.0.0.1]", "a:b:c", "", "%00"])
def test_malformed_host_headers_are_refused(shared: Env, host: str) -> None:
    answer = shared.client.get("/api/store", headers={"Host": host})
    assert answer.status_code == 400 and answer.json()["error"] == "host_not_allowed"


@pytest.mark.parametrize("origin", ["http://[x", "null", "http://127.0.0.1:1"])
def test_malformed_or_foreign_origins_are_refused(shared: Env, origin: str) -> None:
    answer = shared.client.post("/api/topics/orders/delete", json={},
                                headers={"Origin": origin})
    assert answer.status_code == 403 and answer.json()["error"] == "origin_not_allowed"


def test_reset_to_a_time_past_year_9999_is_422(writable: Env) -> None:
    answer = writable.post("/api/groups/billing/reset-offsets",
                           {"to": "timestamp", "value": 253402300800000}, status=422)
    assert "before year 10000" in answer["message"]


def test_internal_topics_are_not_deleted(writable: Env) -> None:
    # (a data directory has none by these names; a Kafka cluster's __consumer_offsets)
    answer = writable.post("/api/topics/__consumer_offsets/delete", {"confirm": True},
                           status=422)
    assert "internal topic" in answer["message"]


def test_a_read_only_store_shows_no_groups_and_says_why(tmp_path: Path) -> None:
    path = make_store(tmp_path / "data")
    with logstore.open(path, read_only=True) as store:
        console = Console(backend_for(store), kind="local", target=str(path), local=store)
        sampler = Sampler(console, interval=0.05)
        sampler.sample_now()
        with TestClient(create_app(console, sampler), base_url=BASE) as client:
            assert client.get("/api/groups").json() == {"groups": []}
            info = client.get("/api/store").json()
            assert "read-only" in info["groups_unavailable"]
            assert client.get("/api/topics/orders/records").status_code == 200


def test_serialized_makes_one_call_at_a_time() -> None:
    class Target:
        inside = 0
        overlaps = 0

        def work(self) -> None:
            self.inside += 1
            if self.inside > 1:
                self.overlaps += 1
            time.sleep(0.002)
            self.inside -= 1

        @property
        def busy(self) -> int:
            return self.inside

    target = Target()
    proxy: Any = Serialized(target, threading.RLock())

    def hammer() -> None:
        for _ in range(50):
            proxy.work()
            assert proxy.busy == 0  # a property is read under the lock too

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.overlaps == 0


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded",
                                  "multipart/form-data; boundary=x"])
def test_a_cross_site_form_cannot_make_a_change(writable: Env, kind: str) -> None:
    # what a page of another site may send without asking (no Origin check needed)
    answer = writable.client.post("/api/topics/blobs/delete", content=b'{"confirm": true}',
                                  headers={"Content-Type": kind})
    assert answer.status_code == 422, answer.text
    assert writable.get("/api/topics/blobs")["records"] == 2
