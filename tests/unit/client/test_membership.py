"""Group membership (logstore.client.membership) over a real coordinator: the consumer
protocol, cooperative rebalancing (KIP-429: only moved partitions are revoked, never two
owners), request_rejoin, leaving, and fencing of a paused member (issue 12, point 2):
the in-process version of tests/delivery/test_fencing.py, with a fake clock in place of
SIGSTOP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from logstore.client.membership import Membership, assign_cooperatively
from logstore.errors import (
    FencedInstanceIdError,
    IllegalGenerationError,
    InvalidConfigError,
    UnknownMemberIdError,
)
from logstore.groups import GroupCoordinator
from logstore.records.consumer_protocol import Subscription
from logstore.storage.files import FileSystem
from logstore.types import TopicPartition
from tests.conftest import FakeClock
from tests.group_backend import GroupBackend, Reader

TP = TopicPartition
T = "t"
MAX_POLL_MS = 1000


@pytest.fixture
def coordinators(tmp_path: Path, clock: FakeClock) -> Iterator[list[GroupCoordinator]]:
    """Three coordinators on one directory: three processes sharing a store."""
    made = [GroupCoordinator(str(tmp_path), FileSystem(), clock) for _ in range(3)]
    yield made
    for c in made:
        c.close()


def reader(
    coordinator: GroupCoordinator, name: str, clock: FakeClock,
    partitions: dict[str, int], offsets: dict[tuple[str, TopicPartition], int],
    assignor: str = "sticky", commits: list[tuple[str, TopicPartition, int]] | None = None,
    **kwargs: object,
) -> Reader:
    backend = GroupBackend(coordinator, partitions, offsets, commits=commits)
    membership = Membership(
        backend, "g", name, assignor=assignor, session_timeout_ms=10_000,
        max_poll_interval_ms=MAX_POLL_MS, heartbeat_interval_ms=100,
        monotonic_ms=clock.now_ms, **kwargs,  # type: ignore[arg-type]
    )
    membership.subscribe([T])
    return Reader(backend, membership)


def settle(*readers: Reader, clock: FakeClock | None = None, rounds: int = 30,
           fetch: int = 0) -> None:
    """Poll every reader in turn (one thread) until no rebalance is under way, checking
    after every poll that no partition has two owners."""
    for i in range(rounds):
        for r in readers:
            r.step(fetch=fetch)
            owners: dict[TopicPartition, str] = {}
            for other in readers:
                for tp in other.membership.assignment:
                    assert tp not in owners, f"{tp} owned by {owners[tp]} and {other}"
                    owners[tp] = other.membership.member_id
        if clock is not None:
            clock.advance(50)
        if i >= 4 and not any(r.membership.rebalancing for r in readers):
            return  # (after a few rounds: every member heartbeated and heard the news)
    raise AssertionError("the group did not settle")


def test_assign_cooperatively_holds_back_partitions_another_member_owns() -> None:
    subs = {"a": Subscription([T], None, [TP(T, p) for p in range(4)]), "b": Subscription([T])}
    first = assign_cooperatively("range", subs, {T: 4})
    assert first == {"a": [TP(T, 0), TP(T, 1)], "b": []}  # 2, 3 revoked first
    subs["a"] = Subscription([T], None, first["a"])
    assert assign_cooperatively("range", subs, {T: 4}) == {
        "a": [TP(T, 0), TP(T, 1)], "b": [TP(T, 2), TP(T, 3)]}


def test_assign_cooperatively_gives_a_contested_partition_to_nobody() -> None:
    subs = {"a": Subscription([T], None, [TP(T, 0)]), "b": Subscription([T], None, [TP(T, 0)])}
    assert assign_cooperatively("roundrobin", subs, {T: 2}) == {"a": [], "b": [TP(T, 1)]}
    with pytest.raises(InvalidConfigError, match="unknown assignor"):
        assign_cooperatively("nope", subs, {T: 2})


def test_membership_single_member_gets_everything_in_one_poll(
    coordinators: list[GroupCoordinator], clock: FakeClock,
) -> None:
    a = reader(coordinators[0], "a", clock, {T: 3}, {})
    a.step()
    assert a.membership.assignment == [TP(T, p) for p in range(3)]
    assert a.events == [("assign", [TP(T, 0), TP(T, 1), TP(T, 2)])]
    assert not a.membership.rebalancing and a.membership.generation == 1


@pytest.mark.parametrize("assignor", ["range", "roundrobin", "sticky"])
def test_membership_cooperative_rebalance_revokes_only_what_moves(
    coordinators: list[GroupCoordinator], clock: FakeClock, assignor: str,
) -> None:
    offsets: dict[tuple[str, TopicPartition], int] = {}
    a = reader(coordinators[0], "a", clock, {T: 4}, offsets, assignor)
    settle(a, fetch=5)
    b = reader(coordinators[1], "b", clock, {T: 4}, offsets, assignor)
    settle(a, b, clock=clock, fetch=5)
    assert sorted(a.membership.assignment + b.membership.assignment) == [
        TP(T, p) for p in range(4)]
    assert len(a.membership.assignment) == len(b.membership.assignment) == 2
    revoked = [tps for kind, tps in a.events if kind == "revoke"]
    assert revoked == [sorted(b.membership.assignment)]  # only what moved, once
    assert b.events == [("assign", b.membership.assignment)]
    # b starts where a committed in on_revoke: no record handled twice
    assert len(set(a.handled + b.handled)) == len(a.handled + b.handled)


def test_membership_three_processes_share_and_survive_a_leave(
    coordinators: list[GroupCoordinator], clock: FakeClock,
) -> None:
    offsets: dict[tuple[str, TopicPartition], int] = {}
    readers = [reader(c, n, clock, {T: 6}, offsets)
               for c, n in zip(coordinators, "abc", strict=True)]
    settle(*readers, clock=clock, fetch=3)
    assert sorted(len(r.membership.assignment) for r in readers) == [2, 2, 2]
    leaving = readers.pop(1)
    leaving.membership.leave(on_revoke=leaving.on_revoke)
    settle(*readers, clock=clock, fetch=3)
    assert sorted(len(r.membership.assignment) for r in readers) == [3, 3]
    handled = [h for r in [*readers, leaving] for h in r.handled]
    assert len(set(handled)) == len(handled)


def test_membership_request_rejoin_assigns_partitions_of_a_grown_topic(
    coordinators: list[GroupCoordinator], clock: FakeClock,
) -> None:
    partitions = {T: 2}
    a = reader(coordinators[0], "a", clock, partitions, {})
    b = reader(coordinators[1], "b", clock, partitions, {})
    b.backend.partitions = partitions  # both "processes" see the registry
    settle(a, b, clock=clock)
    partitions[T] = 4
    b.membership.request_rejoin()  # a follower noticed: it asks for the rebalance
    settle(a, b, clock=clock)
    assert sorted(a.membership.assignment + b.membership.assignment) == [
        TP(T, p) for p in range(4)]


def test_membership_paused_member_is_fenced_and_never_commits_over_the_new_owner(
    coordinators: list[GroupCoordinator], clock: FakeClock,
) -> None:
    offsets: dict[tuple[str, TopicPartition], int] = {}
    commits: list[tuple[str, TopicPartition, int]] = []
    a = reader(coordinators[0], "a", clock, {T: 4}, offsets, commits=commits)
    b = reader(coordinators[1], "b", clock, {T: 4}, offsets, commits=commits)
    settle(a, b, clock=clock, fetch=10)
    a_owned = a.membership.assignment
    a.commit()
    a.step(fetch=10)  # fetched, handled, not committed: then a is paused (SIGSTOP)
    fetched_by_a = {h for h in a.handled if h[1] >= offsets[("g", h[0])]}
    assert fetched_by_a
    clock.advance(MAX_POLL_MS + 1)  # a misses its poll deadline; b keeps polling
    for _ in range(10):
        b.step(fetch=10)
        b.commit()
        clock.advance(50)
    assert b.membership.assignment == [TP(T, p) for p in range(4)]
    new_owner = {tp: offsets[("g", tp)] for tp in a_owned}
    # a wakes up (SIGCONT): its commit and its fetch are refused, typed
    with pytest.raises(UnknownMemberIdError):
        a.commit()
    assert {tp: offsets[("g", tp)] for tp in a_owned} == new_owner
    with pytest.raises(UnknownMemberIdError):
        a.backend.fetch({tp: 0 for tp in a_owned}, max_records=1, member=a.membership.member)
    with pytest.raises(UnknownMemberIdError):
        a.membership.poll(on_revoke=a.on_revoke, on_assign=a.on_assign, on_lost=a.on_lost)
    assert a.events[-1] == ("lost", a_owned) and a.membership.assignment == []
    # the next poll rejoins under a new id; partitions move back cooperatively
    settle(a, b, clock=clock, fetch=10)
    assert a.membership.member_id == "a-1" and len(a.membership.assignment) == 2
    for tp in a_owned:  # every partition's committed offset only ever moved forward
        history = [o for _, p, o in commits if p == tp]
        assert history == sorted(history)
    # no record a had fetched before the pause was committed by a: b handled them again
    assert fetched_by_a <= set(b.handled)


def test_membership_fetch_racing_a_rebalance_is_transient_not_lost(
    coordinators: list[GroupCoordinator], clock: FakeClock,
) -> None:
    a = reader(coordinators[0], "a", clock, {T: 4}, {})
    b = reader(coordinators[1], "b", clock, {T: 4}, {})
    settle(a, b, clock=clock)
    owned = b.membership.assignment
    reader(coordinators[2], "c", clock, {T: 4}, {}).step()  # c joins: a rebalance
    clock.advance(200)
    b.step()  # b hears it and rejoins; a has not yet
    assert b.membership.rebalancing
    stale = b.membership.member
    a.step()  # a rejoins: the generation completes (b has not heard yet)
    with pytest.raises(IllegalGenerationError) as err:
        b.backend.fetch({tp: 0 for tp in owned}, max_records=1, member=stale)
    assert b.membership.transient(err.value)  # b's partitions are still b's
    b.step()
    assert b.membership.member != stale and ("lost", owned) not in b.events
    assert set(b.membership.assignment) <= set(owned)


def test_membership_static_member_replaced_is_fenced_for_good(
    coordinators: list[GroupCoordinator], clock: FakeClock,
) -> None:
    a = reader(coordinators[0], "a", clock, {T: 2}, {}, group_instance_id="host-1")
    settle(a)
    a2 = reader(coordinators[1], "a2", clock, {T: 2}, {}, group_instance_id="host-1")
    a2.step()
    clock.advance(200)
    for _ in range(2):
        with pytest.raises(FencedInstanceIdError):
            a.membership.poll(on_revoke=a.on_revoke, on_assign=a.on_assign,
                              on_lost=a.on_lost)
    assert ("lost", [TP(T, 0), TP(T, 1)]) in a.events
    settle(a2)
    assert a2.membership.assignment == [TP(T, 0), TP(T, 1)]


def test_membership_reused_member_id_joins_under_a_new_one(
    coordinators: list[GroupCoordinator], clock: FakeClock,
) -> None:
    first = reader(coordinators[0], "a", clock, {T: 2}, {})
    settle(first)
    first.membership.leave(on_revoke=first.on_revoke)
    again = reader(coordinators[1], "a", clock, {T: 2}, {})  # a restarted process
    settle(again)
    assert again.membership.member_id == "a-1" and len(again.membership.assignment) == 2
    assert again.errors == []


def test_membership_topic_not_found_counts_as_no_partitions(
    coordinators: list[GroupCoordinator], clock: FakeClock,
) -> None:
    a = reader(coordinators[0], "a", clock, {}, {})
    settle(a)
    assert a.membership.assignment == [] and a.membership.generation == 1


def test_membership_unsubscribing_revokes_and_leaves(
    coordinators: list[GroupCoordinator], clock: FakeClock,
) -> None:
    a = reader(coordinators[0], "a", clock, {T: 2}, {})
    b = reader(coordinators[1], "b", clock, {T: 2}, {})
    settle(a, b, clock=clock)
    a_owned = a.membership.assignment
    a.membership.subscribe([])
    a.step()
    assert a.events[-1] == ("revoke", a_owned) and a.membership.member is None
    settle(b, clock=clock)
    assert b.membership.assignment == [TP(T, 0), TP(T, 1)]
