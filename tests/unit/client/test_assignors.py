"""Partition assignors (logstore.client.assignors): pure functions, checked against the
rules of Kafka's RangeAssignor, RoundRobinAssignor and StickyAssignor (kafka.md §4.3)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstore.client.assignors import (
    ASSIGNORS,
    range_assign,
    roundrobin_assign,
    sticky_assign,
)
from logstore.types import TopicPartition

TP = TopicPartition

TOPICS = ["a", "b", "c", "d"]

member_ids = st.text(alphabet="mxyz0123", min_size=1, max_size=4)
partition_counts = st.dictionaries(
    st.sampled_from(TOPICS), st.integers(0, 12), min_size=1, max_size=len(TOPICS)
)


@st.composite
def group_inputs(
    draw: st.DrawFn, *, same_topics: bool = False
) -> tuple[dict[str, set[str]], dict[str, int]]:
    """Members with their subscriptions and the partition count of every topic."""
    partitions = draw(partition_counts)
    members = draw(st.sets(member_ids, min_size=1, max_size=7))
    # some subscribed topics may be missing from ``partitions`` (no such topic yet)
    topic_sets = st.sets(st.sampled_from([*TOPICS, "zz"]), min_size=1, max_size=3)
    if same_topics:
        topics = draw(topic_sets)
        subscriptions = {m: set(topics) for m in members}
    else:
        subscriptions = {m: draw(topic_sets) for m in members}
    return subscriptions, partitions


def _subscribed_partitions(
    subscriptions: dict[str, set[str]], partitions: dict[str, int]
) -> set[TP]:
    wanted = set().union(*subscriptions.values())
    return {TP(t, p) for t, n in partitions.items() if t in wanted for p in range(n)}


def _check_complete_and_valid(
    result: dict[str, list[TP]],
    subscriptions: dict[str, set[str]],
    partitions: dict[str, int],
) -> None:
    assert set(result) == set(subscriptions)
    handed_out = Counter(tp for tps in result.values() for tp in tps)
    assert all(n == 1 for n in handed_out.values()), "a partition went to two members"
    assert set(handed_out) == _subscribed_partitions(subscriptions, partitions)
    for member, tps in result.items():
        assert all(tp.topic in subscriptions[member] for tp in tps), member


def _spread(result: dict[str, list[TP]]) -> int:
    counts = [len(tps) for tps in result.values()]
    return max(counts) - min(counts)


# ---------------------------------------------------------------------- every assignor


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
@given(group=group_inputs())
def test_assignor_assigns_every_subscribed_partition_once_to_a_subscriber(
    name: str, group: tuple[dict[str, set[str]], dict[str, int]]
) -> None:
    subscriptions, partitions = group
    result = ASSIGNORS[name](subscriptions, partitions, {})
    _check_complete_and_valid(result, subscriptions, partitions)


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
@given(group=group_inputs())
def test_assignor_is_deterministic_when_members_are_given_in_another_order(
    name: str, group: tuple[dict[str, set[str]], dict[str, int]]
) -> None:
    subscriptions, partitions = group
    reordered = dict(reversed(list(subscriptions.items())))
    assert ASSIGNORS[name](reordered, partitions, {}) == ASSIGNORS[name](
        subscriptions, partitions, {}
    )


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
def test_assignor_returns_empty_lists_when_no_partitions(name: str) -> None:
    result = ASSIGNORS[name]({"m1": {"a"}, "m2": {"a"}}, {"a": 0}, {})
    assert result == {"m1": [], "m2": []}


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
def test_assignor_skips_topics_nobody_subscribes_to(name: str) -> None:
    result = ASSIGNORS[name]({"m1": {"a"}}, {"a": 2, "b": 3}, {})
    assert result == {"m1": [TP("a", 0), TP("a", 1)]}


# ---------------------------------------------------------------------- range


def test_range_assign_matches_kafka_example_with_two_topics() -> None:
    # Kafka's RangeAssignor javadoc: C0, C1 on t0 and t1 with 3 partitions each
    result = range_assign({"C1": {"t0", "t1"}, "C0": {"t0", "t1"}}, {"t0": 3, "t1": 3})
    assert result == {
        "C0": [TP("t0", 0), TP("t0", 1), TP("t1", 0), TP("t1", 1)],
        "C1": [TP("t0", 2), TP("t1", 2)],
    }


def test_range_assign_gives_extra_partitions_to_first_members_when_uneven() -> None:
    result = range_assign({m: {"t"} for m in ("c", "a", "b")}, {"t": 8})
    assert result == {
        "a": [TP("t", 0), TP("t", 1), TP("t", 2)],
        "b": [TP("t", 3), TP("t", 4), TP("t", 5)],
        "c": [TP("t", 6), TP("t", 7)],
    }


def test_range_assign_leaves_last_members_empty_when_fewer_partitions_than_members() -> None:
    result = range_assign({m: {"t"} for m in ("m1", "m2", "m3")}, {"t": 2})
    assert result == {"m1": [TP("t", 0)], "m2": [TP("t", 1)], "m3": []}


@given(group=group_inputs())
def test_range_assign_follows_kafka_rule_per_topic(
    group: tuple[dict[str, set[str]], dict[str, int]],
) -> None:
    subscriptions, partitions = group
    result = range_assign(subscriptions, partitions)
    for topic, n in partitions.items():
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        if not members:
            continue
        share, extra = divmod(n, len(members))
        start = 0
        for i, member in enumerate(members):
            size = share + (1 if i < extra else 0)
            got = [tp.partition for tp in result[member] if tp.topic == topic]
            assert got == list(range(start, start + size)), (topic, member)
            start += size


# ---------------------------------------------------------------------- round robin


def test_roundrobin_assign_deals_partitions_of_all_topics_in_turn() -> None:
    result = roundrobin_assign({"C1": {"t0", "t1"}, "C0": {"t0", "t1"}}, {"t0": 3, "t1": 3})
    assert result == {
        "C0": [TP("t0", 0), TP("t0", 2), TP("t1", 1)],
        "C1": [TP("t0", 1), TP("t1", 0), TP("t1", 2)],
    }


def test_roundrobin_assign_skips_members_not_subscribed_to_a_topic() -> None:
    # Kafka's RoundRobinAssignor javadoc example: C0 on t0; C1 on t0, t1; C2 on t0, t1, t2
    subscriptions = {"C0": {"t0"}, "C1": {"t0", "t1"}, "C2": {"t0", "t1", "t2"}}
    result = roundrobin_assign(subscriptions, {"t0": 1, "t1": 2, "t2": 3})
    assert result == {
        "C0": [TP("t0", 0)],
        "C1": [TP("t1", 0)],
        "C2": [TP("t1", 1), TP("t2", 0), TP("t2", 1), TP("t2", 2)],
    }


@given(group=group_inputs(same_topics=True))
def test_roundrobin_assign_is_balanced_when_members_subscribe_to_same_topics(
    group: tuple[dict[str, set[str]], dict[str, int]],
) -> None:
    subscriptions, partitions = group
    result = roundrobin_assign(subscriptions, partitions)
    _check_complete_and_valid(result, subscriptions, partitions)
    assert _spread(result) <= 1


# ---------------------------------------------------------------------- sticky


@given(group=group_inputs(same_topics=True))
def test_sticky_assign_is_balanced_when_members_subscribe_to_same_topics(
    group: tuple[dict[str, set[str]], dict[str, int]],
) -> None:
    subscriptions, partitions = group
    result = sticky_assign(subscriptions, partitions, {})
    assert _spread(result) <= 1


@st.composite
def sticky_rebalances(
    draw: st.DrawFn,
) -> tuple[dict[str, set[str]], dict[str, int], dict[str, list[TP]]]:
    """A previous (arbitrary, possibly unbalanced or stale) assignment of a group whose
    members then change: some leave, some join; every member on the same topics."""
    partitions = draw(partition_counts)
    topics = draw(st.sets(st.sampled_from(TOPICS), min_size=1, max_size=3))
    old_members = draw(st.sets(member_ids, min_size=1, max_size=6))
    every = sorted(TP(t, p) for t in topics if t in partitions for p in range(partitions[t]))
    # each partition was owned by an old member, or by nobody (a new partition)
    owners = draw(
        st.lists(
            st.none() | st.sampled_from(sorted(old_members)),
            min_size=len(every),
            max_size=len(every),
        )
    )
    previous: dict[str, list[TP]] = {m: [] for m in old_members}
    for tp, owner in zip(every, owners, strict=True):
        if owner is not None:
            previous[owner].append(tp)
    # stale ownership of partitions that no longer exist must be ignored
    if draw(st.booleans()):
        previous[min(old_members)].append(TP(min(topics), 99))
    staying = draw(st.sets(st.sampled_from(sorted(old_members))))
    joining = draw(st.sets(member_ids.map(lambda m: "new-" + m), max_size=3))
    members = staying | joining
    if not members:
        members = {"new-only"}
    return {m: set(topics) for m in members}, partitions, previous


@given(case=sticky_rebalances())
def test_sticky_assign_keeps_previous_owners_as_far_as_balance_allows(
    case: tuple[dict[str, set[str]], dict[str, int], dict[str, list[TP]]],
) -> None:
    subscriptions, partitions, previous = case
    result = sticky_assign(subscriptions, partitions, previous)
    _check_complete_and_valid(result, subscriptions, partitions)
    assert _spread(result) <= 1
    # The most partitions a balanced assignment can leave where they were: each live
    # member keeps up to the floor share, and up to ``extra`` members one more.
    valid = _subscribed_partitions(subscriptions, partitions)
    held = {m: len(set(previous.get(m, [])) & valid) for m in subscriptions}
    floor_share, extra = divmod(len(valid), len(subscriptions))
    best = sum(min(n, floor_share) for n in held.values()) + min(
        extra, sum(1 for n in held.values() if n > floor_share)
    )
    kept = sum(1 for m, tps in result.items() for tp in tps if tp in previous.get(m, []))
    assert kept == best


def test_sticky_assign_moves_only_the_leavers_partitions_when_a_member_leaves() -> None:
    previous = {
        "m1": [TP("t", 0), TP("t", 3)],
        "m2": [TP("t", 1), TP("t", 4)],
        "m3": [TP("t", 2), TP("t", 5)],
    }
    result = sticky_assign({"m1": {"t"}, "m3": {"t"}}, {"t": 6}, previous)
    assert set(previous["m1"]) <= set(result["m1"])
    assert set(previous["m3"]) <= set(result["m3"])
    assert sorted(result["m1"] + result["m3"]) == [TP("t", p) for p in range(6)]
    assert len(result["m1"]) == len(result["m3"]) == 3


def test_sticky_assign_takes_only_surplus_for_a_joining_member() -> None:
    previous = {"m1": [TP("t", p) for p in range(3)], "m2": [TP("t", p) for p in range(3, 6)]}
    result = sticky_assign({m: {"t"} for m in ("m1", "m2", "m3")}, {"t": 6}, previous)
    assert [len(result[m]) for m in ("m1", "m2", "m3")] == [2, 2, 2]
    assert set(result["m1"]) <= set(previous["m1"])
    assert set(result["m2"]) <= set(previous["m2"])


def test_sticky_assign_drops_previous_partitions_of_unsubscribed_topics() -> None:
    previous = {"m1": [TP("a", 0), TP("b", 0)], "m2": [TP("a", 1)]}
    result = sticky_assign({"m1": {"a"}, "m2": {"a", "b"}}, {"a": 2, "b": 1}, previous)
    _check_complete_and_valid(result, {"m1": {"a"}, "m2": {"a", "b"}}, {"a": 2, "b": 1})
    assert TP("b", 0) in result["m2"]
