"""Priority levels as topics (issue 16): strict and weighted hand-out, preemption, no
starvation, and group semantics per level."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore.errors import InvalidConfigError
from logstore.patterns.priority import PriorityConsumer, SmoothWeightedRoundRobin
from logstore.types import ConsumerRecord
from tests.integration.workers import Worker

RR_WORKER = str(Path(__file__).with_name("rr_worker.py"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[logstore.Store]:
    with logstore.open(tmp_path / "store") as s:
        for topic in ("high", "mid", "low"):
            s.create_topic(topic, partitions=2)
        yield s


def fill(store: logstore.Store, counts: dict[str, int]) -> None:
    with store.producer() as producer:
        for topic, n in counts.items():
            for i in range(n):
                producer.send(topic, f"{topic}:{i}".encode(), key=b"k%d" % i)


def drain(consumer: PriorityConsumer, total: int, max_records: int) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    deadline = time.monotonic() + 20
    while len(out) < total and time.monotonic() < deadline:
        out += consumer.poll(timeout_ms=100, max_records=max_records)
    return out


def letters(records: list[ConsumerRecord]) -> str:
    return "".join(r.topic[0] for r in records)


def test_priority_strict_hands_out_every_higher_record_before_any_lower(
    store: logstore.Store,
) -> None:
    fill(store, {"low": 150, "mid": 150, "high": 150})  # the lowest written first
    with PriorityConsumer(store, "g", ["high", "mid", "low"], mode="strict") as consumer:
        got = drain(consumer, 450, max_records=40)
        consumer.commit()

    order = letters(got)
    assert order == "h" * 150 + "m" * 150 + "l" * 150
    assert len({(r.topic, r.partition, r.offset) for r in got}) == 450


def test_priority_weighted_3_to_1_hands_out_3_high_per_low_in_every_window_of_4(
    store: logstore.Store,
) -> None:
    fill(store, {"high": 900, "low": 200})
    with PriorityConsumer(
        store, "g", ["high", "low"], mode="weighted", weights=(3, 1)
    ) as consumer:
        got = drain(consumer, 1100, max_records=37)

    order = letters(got)
    both = order[:800]  # while both levels had a backlog: the low one runs dry at 200
    windows = [both[i : i + 4] for i in range(0, len(both), 4)]
    assert all(w.count("h") == 3 and w.count("l") == 1 for w in windows), windows[:10]
    assert both.count("l") == 200
    assert set(order[800:]) == {"h"}  # then the high level alone
    assert len(got) == 1100


def test_priority_weighted_never_starves_low_while_high_keeps_arriving(
    store: logstore.Store,
) -> None:
    fill(store, {"high": 1000, "low": 300})
    stop = threading.Event()

    def keep_sending_high() -> None:
        with store.producer(linger_ms=0) as producer:
            i = 0
            while not stop.is_set():
                producer.send("high", b"more:%d" % i).result()
                i += 1

    sender = threading.Thread(target=keep_sending_high)
    sender.start()
    try:
        with PriorityConsumer(
            store, "g", ["high", "mid", "low"], mode="weighted", weights=(4, 2, 1)
        ) as weighted, PriorityConsumer(store, "s", ["high", "mid", "low"]) as strict:
            got = drain(weighted, 1000, max_records=20)
            starved = drain(strict, 1000, max_records=20)
    finally:
        stop.set()
        sender.join()

    order = letters(got[:1000])
    # mid is empty, so high and low share 4:1: one low in every five
    windows = [order[i : i + 5] for i in range(0, 1000, 5)]
    assert all(w.count("l") == 1 for w in windows), order
    assert letters(starved[:1000]) == "h" * 1000  # what strict mode does instead


def test_priority_strict_new_high_records_preempt_the_lower_backlog(
    store: logstore.Store,
) -> None:
    fill(store, {"low": 100})
    with PriorityConsumer(store, "g", ["high", "mid", "low"], mode="strict") as consumer:
        first = drain(consumer, 30, max_records=30)
        fill(store, {"high": 20})  # arrives mid-run
        rest = drain(consumer, 90, max_records=15)

    assert letters(first) == "l" * 30
    assert letters(rest) == "h" * 20 + "l" * 70
    lows = {(r.partition, r.offset) for r in first + rest if r.topic == "low"}
    assert len(lows) == 100  # nothing skipped by the given-back records


def test_priority_records_not_handed_out_are_given_back_and_committed_positions_are_exact(
    store: logstore.Store,
) -> None:
    fill(store, {"high": 10, "low": 10})
    with PriorityConsumer(
        store, "g", ["high", "low"], mode="weighted", weights=(1, 1)
    ) as consumer:
        got = consumer.poll(timeout_ms=5000, max_records=4)
        while not got:
            got = consumer.poll(timeout_ms=100, max_records=4)
        consumer.commit()
    with PriorityConsumer(store, "g", ["high", "low"], mode="strict") as again:
        rest = drain(again, 20 - len(got), max_records=100)

    seen = [(r.topic, r.partition, r.offset) for r in got + rest]
    assert len(seen) == len(set(seen)) == 20  # each once: none lost, none repeated


def test_priority_group_members_share_each_level(store: logstore.Store) -> None:
    fill(store, {"high": 100, "low": 100})
    a = PriorityConsumer(store, "g", ["high", "low"], mode="strict")
    b = PriorityConsumer(store, "g", ["high", "low"], mode="strict")
    got: dict[str, list[ConsumerRecord]] = {"a": [], "b": []}
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got["a"] += a.poll(timeout_ms=20, max_records=5)
            got["b"] += b.poll(timeout_ms=20, max_records=5)
            if len(got["a"]) + len(got["b"]) >= 200 and all(
                len(x.assignment()) == 2 for x in (a, b)
            ):
                break
        assignments = {name: sorted(c.assignment()) for name, c in (("a", a), ("b", b))}
    finally:
        a.close()
        b.close()

    every = [(r.topic, r.partition, r.offset) for r in got["a"] + got["b"]]
    assert len(every) == len(set(every)) == 200
    for tps in assignments.values():  # each member owns one partition of each level
        assert sorted(tp.topic for tp in tps) == ["high", "low"]


def test_priority_group_member_processes_share_each_level(tmp_path: Path) -> None:
    data = str(tmp_path / "store")
    with logstore.open(data) as s:
        for topic in ("high", "low"):
            s.create_topic(topic, partitions=2)
    members = [
        Worker([sys.executable, RR_WORKER, "priority", data, "g"]) for _ in range(2)
    ]
    for member in members:
        member.wait_ready()  # both own one partition of each level
    with logstore.open(data) as s:
        fill(s, {"high": 100, "low": 100})
    outputs = [m.communicate(timeout=60) for m in members]

    seen: list[set[tuple[str, int, int]]] = []
    for (out, err), member in zip(outputs, members, strict=True):
        assert member.returncode == 0, err
        seen.append({
            (t, int(p), int(o)) for _, t, p, o in (line.split() for line in out.splitlines()
                                                   if line.startswith("rec "))
        })
    assert not seen[0] & seen[1]  # no record handed out to both
    assert len(seen[0] | seen[1]) == 200  # none lost
    for records in seen:  # each member read one partition of each level
        assert {t for t, _, _ in records} == {"high", "low"}
        assert len({(t, p) for t, p, _ in records}) == 2


@pytest.mark.parametrize(
    ("levels", "mode", "weights", "match"),
    [
        ([], "strict", None, "one topic per level"),
        (["a", "a"], "strict", None, "one topic per level"),
        (["a", "b"], "fifo", None, "mode='fifo'"),
        (["a", "b"], "weighted", (1,), "one positive integer per level"),
        (["a", "b"], "weighted", (1, 0), "one positive integer per level"),
    ],
)
def test_priority_bad_configuration_is_refused(
    store: logstore.Store, levels: list[str], mode: str, weights: tuple[int, ...] | None,
    match: str,
) -> None:
    with pytest.raises(InvalidConfigError, match=match):
        PriorityConsumer(store, "g", levels, mode=mode, weights=weights)


def test_smooth_weighted_round_robin_interleaves_and_skips_idle_choices() -> None:
    rr = SmoothWeightedRoundRobin([3, 1])
    assert [rr.pick([0, 1]) for _ in range(8)] == [0, 0, 1, 0, 0, 0, 1, 0]
    assert [rr.pick([1]) for _ in range(3)] == [1, 1, 1]
    rr = SmoothWeightedRoundRobin([5, 1, 1])
    picks = [rr.pick([0, 1, 2]) for _ in range(70)]
    assert (picks.count(0), picks.count(1), picks.count(2)) == (50, 10, 10)
