"""``logstore dlq list|redrive`` (cli/dlq.py, issue 16) through click's CliRunner, on dead
letters a RetryingConsumer wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import logstore
from logstore import headers as h
from logstore.patterns.retry import RetryingConsumer
from logstore.patterns.retry_policy import RetryPolicy
from logstore.types import ConsumerRecord
from logstore_cli.main import cli


def run(data: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data), *args], input=stdin)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dead_letters(tmp_path / "data")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """For the tests that change nothing."""
    return make_dead_letters(tmp_path_factory.mktemp("dlq") / "data")


def make_dead_letters(path: Path) -> Path:
    """A store whose ``orders.dlq`` holds four dead letters (values p0..p3, one delivery
    each) of ``orders`` (2 partitions), beside one record that was handled."""
    with logstore.open(path) as store:
        store.create_topic("orders", partitions=2)
        with store.producer() as producer:
            for i in range(4):
                producer.send("orders", f"p{i}".encode(), key=f"k{i}".encode(),
                              headers={"trace": f"t{i}".encode()}, partition=i % 2)
            producer.send("orders", b"fine", key=b"kf", partition=0)

        def handle(record: ConsumerRecord) -> None:
            if record.value != b"fine":
                raise ValueError(f"bad order {record.value!r}")

        policy = RetryPolicy(max_attempts=1, delays_ms=())
        with RetryingConsumer(store, "billing", ["orders"], handle, policy) as rc:
            stats = rc.run(idle_ms=150)
        assert stats.dead_lettered == 4
    return path


def records(data: Path, topic: str) -> list[tuple[int, logstore.Record]]:
    with logstore.open(data) as store:
        return [(i.partition, r) for i in store.describe_topic(topic).partitions
                for r in store.read(topic, i.partition, 0)]


def test_dlq_list_shows_where_each_dead_letter_came_from_and_why(shared: Path) -> None:
    data = shared
    result = run(data, "dlq", "list", "orders.dlq")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["PARTITION:OFFSET", "TIME", "ORIGINAL", "ATTEMPTS", "ERROR",
                                "KEY", "VALUE", "REDRIVEN"]
    assert len(lines) == 5
    assert "orders-0@0" in result.output and "orders-1@1" in result.output
    assert "ValueError: bad order b'p0'" in result.output
    listed = json.loads(run(data, "dlq", "list", "orders.dlq", "--json").output)
    assert len(listed) == 4
    by_value = {x["value"]: x for x in listed}
    p2 = by_value["p2"]
    assert p2["original"]["topic"] == "orders" and p2["original"]["partition"] == 0
    assert p2["original"]["offset"] == 1  # p0 and p2 went to partition 0
    assert p2["attempts"] == 1 and p2["error_class"] == "ValueError"
    assert p2["key"] == "k2" and p2["headers"] == {"trace": "t2"}
    assert p2["redriven"] is False
    limited = json.loads(run(data, "dlq", "list", "orders.dlq", "--json", "--limit", "1").output)
    assert len(limited) == 1


def new_records(data: Path, old: list[tuple[int, logstore.Record]]) -> list[
        tuple[int, logstore.Record]]:
    seen = {(p, r.offset) for p, r in old}
    return [(p, r) for p, r in records(data, "orders") if (p, r.offset) not in seen]


def test_dlq_redrive_sends_chosen_records_back_once(data: Path) -> None:
    old = records(data, "orders")
    before = len(old)
    listed = json.loads(run(data, "dlq", "list", "orders.dlq", "--json").output)
    p3 = next(x for x in listed if x["value"] == "p3")
    result = run(data, "dlq", "redrive", "orders.dlq", "--offset",
                 f"{p3['partition']}:{p3['offset']}", "--yes")
    assert result.exit_code == 0, result.output
    assert "re-drove 1 dead letter(s) of 'orders.dlq' to orders (1)" in result.output
    [(partition, back)] = new_records(data, old)
    assert back.value == b"p3"
    assert partition == 1  # its original partition
    assert back.key == b"k3"
    assert list(back.headers) == [("trace", b"t3")]  # the DLQ headers dropped
    # --all sends the other three, not p3 again; then nothing is left
    result = run(data, "dlq", "redrive", "orders.dlq", "--all", "--yes")
    assert result.exit_code == 0, result.output
    assert "re-drove 3 dead letter(s)" in result.output
    sent = sorted(r.value or b"" for _, r in new_records(data, old))
    assert sent == [b"p0", b"p1", b"p2", b"p3"]  # p3 once only
    result = run(data, "dlq", "redrive", "orders.dlq", "--all", "--yes")
    assert result.exit_code == 0
    assert "nothing to re-drive" in result.output
    assert len(records(data, "orders")) == before + 4
    listed = json.loads(run(data, "dlq", "list", "orders.dlq", "--json").output)
    assert all(x["redriven"] for x in listed)
    # asking for one already re-driven sends nothing and says so
    result = run(data, "dlq", "redrive", "orders.dlq", "--offset",
                 f"{p3['partition']}:{p3['offset']}", "--yes")
    assert "already re-driven" in result.output
    assert len(records(data, "orders")) == before + 4


def test_dlq_redrive_asks_first_and_to_sends_elsewhere(data: Path) -> None:
    before = len(records(data, "orders"))
    result = run(data, "dlq", "redrive", "orders.dlq", "--all", stdin="n\n")
    assert result.exit_code == 1  # aborted
    assert "re-drive 4 dead letter(s) of 'orders.dlq' to orders (4)?" in result.output
    assert len(records(data, "orders")) == before
    with logstore.open(data) as store:
        store.create_topic("replay", partitions=1)
    result = run(data, "dlq", "redrive", "orders.dlq", "--all", "--to", "replay", stdin="y\n")
    assert result.exit_code == 0, result.output
    sent = [r for _, r in records(data, "replay")]
    assert sorted(r.value or b"" for r in sent) == [b"p0", b"p1", b"p2", b"p3"]
    assert not any(k in h.DLQ_HEADERS for r in sent for k, _ in r.headers)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["list", "nope"], 1, "unknown topic 'nope'"),
        (["redrive", "nope", "--all", "--yes"], 1, "unknown topic 'nope'"),
        (["redrive", "orders.dlq", "--offset", "0:99", "--yes"], 2,
         "offset 99 is out of range: partition 0 of 'orders.dlq' holds offsets 0..1"),
        (["redrive", "orders.dlq", "--offset", "5:0", "--yes"], 2,
         "'orders.dlq' has no partition 5"),
        (["redrive", "orders.dlq", "--offset", "3", "--yes"], 2, "needs its partition"),
        (["redrive", "orders.dlq", "--offset", "x:y", "--yes"], 2, "is not PARTITION:OFFSET"),
        (["redrive", "orders.dlq", "--yes"], 2, "give either --offset"),
        (["redrive", "orders.dlq", "--all", "--offset", "0:0"], 2, "give either --offset"),
        (["list", "orders"], 1, "holds no dead letters"),
        (["redrive", "orders", "--all", "--yes"], 1, "not dead letters"),
        (["redrive", "orders.dlq", "--all", "--to", "nope", "--yes"], 1,
         "unknown topic 'nope'"),
    ],
)
def test_dlq_bad_input_is_one_clear_line(
    shared: Path, args: list[str], code: int, message: str
) -> None:
    before = len(records(shared, "orders"))
    result = run(shared, "dlq", *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(records(shared, "orders")) == before  # nothing sent
