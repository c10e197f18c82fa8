"""The group coordinator (logstore.groups): Kafka's classic group protocol over shared
files (kafka.md §4.2): joins, rebalances, sync, heartbeats, leaves, liveness by lock and
by deadline, fencing, static membership, persistence and damaged state files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstore.errors import (
    CorruptionError,
    FencedInstanceIdError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InvalidConfigError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from logstore.groups import GroupCoordinator, group_dir_name, group_from_dir_name
from logstore.storage.files import FileSystem
from logstore.types import GroupMember, JoinResult
from tests.conftest import FakeClock

G = "g"
PROTOCOLS = [("range", b"meta-range"), ("roundrobin", b"meta-rr")]


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path)


@pytest.fixture
def coordinator(root: str, clock: FakeClock) -> Iterator[GroupCoordinator]:
    c = GroupCoordinator(root, FileSystem(), clock)
    yield c
    c.close()


def join(
    c: GroupCoordinator,
    member: str,
    protocols: list[tuple[str, bytes]] | None = None,
    **kwargs: object,
) -> JoinResult | None:
    return c.join(
        G, member, protocol_type="consumer", protocols=protocols or PROTOCOLS,
        session_timeout_ms=kwargs.pop("session_timeout_ms", 10_000),  # type: ignore[arg-type]
        rebalance_timeout_ms=kwargs.pop("rebalance_timeout_ms", 30_000),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def stable(c: GroupCoordinator, *members: str) -> dict[str, JoinResult]:
    """Join ``members`` (one thread, non-blocking calls) until a generation completes
    with all of them, then sync it (the leader assigns each its id as bytes)."""
    results: dict[str, JoinResult] = {}
    for _ in range(20):
        for m in members:
            r = join(c, m)
            if r is not None:
                results[m] = r
        info = c.describe(G)
        if info.state == "CompletingRebalance" and all(
            m in results and results[m].generation == info.generation for m in members
        ):
            break
    leader = next(r for r in results.values() if r.member_id == r.leader)
    assert sorted(m for m, _ in leader.members) == sorted(members)
    c.sync(G, leader.member_id, leader.generation,
           {m: m.encode() for m, _ in leader.members})
    for m, r in results.items():
        assert c.sync(G, m, r.generation, {}) == m.encode()
    return results


def test_group_dir_name_round_trips_plain_and_odd_names() -> None:
    for name in ["g", "billing.v2", "a b", "../x", ".", "ü", "x" * 300]:
        assert group_from_dir_name(group_dir_name(name)) == name
        assert "/" not in group_dir_name(name)
    assert group_dir_name("plain-name_1.0") == "plain-name_1.0"


def test_coordinator_first_join_completes_generation_one_at_once(
    coordinator: GroupCoordinator,
) -> None:
    result = join(coordinator, "a")
    assert result == JoinResult(1, "range", "a", "a", [("a", b"meta-range")])
    info = coordinator.describe(G)
    assert (info.state, info.generation, info.leader, info.protocol) == (
        "CompletingRebalance", 1, "a", "range")
    assert coordinator.sync(G, "a", 1, {"a": b"asg"}) == b"asg"
    assert coordinator.describe(G).state == "Stable"
    assert coordinator.describe(G).members[0].assignment == b"asg"


def test_coordinator_second_member_rebalances_and_leader_is_kept(
    coordinator: GroupCoordinator,
) -> None:
    stable(coordinator, "a")
    assert join(coordinator, "b") is None  # a must rejoin first
    with pytest.raises(RebalanceInProgressError):
        coordinator.heartbeat(G, "a", 1)
    coordinator.check(GroupMember(G, "a", 1))  # may still commit before it rejoins
    result = join(coordinator, "a")
    assert result is not None and result.generation == 2 and result.leader == "a"
    assert [m for m, _ in result.members] == ["a", "b"]
    b = join(coordinator, "b")
    assert b is not None and b.members == [] and b.leader == "a"
    with pytest.raises(IllegalGenerationError):
        coordinator.check(GroupMember(G, "a", 1))
    assert coordinator.sync(G, "b", 2, {}) is None  # the leader has not synced
    assert coordinator.sync(G, "a", 2, {"a": b"A", "b": b"B"}) == b"A"
    assert coordinator.sync(G, "b", 2, {}) == b"B"
    coordinator.heartbeat(G, "b", 2)


def test_coordinator_rejoin_before_sync_gets_the_current_generation(
    coordinator: GroupCoordinator,
) -> None:
    stable(coordinator, "a")
    assert join(coordinator, "b") is None
    assert join(coordinator, "a") is not None
    coordinator.sync(G, "a", 2, {"a": b"A", "b": b"B"})
    result = join(coordinator, "b")  # b missed its answer: it gets the same generation
    assert result is not None and result.generation == 2
    assert coordinator.describe(G).state == "Stable"
    assert coordinator.sync(G, "b", 2, {}) == b"B"
    assert join(coordinator, "b") is None  # after its sync, a rejoin asks for a rebalance
    assert coordinator.describe(G).state == "PreparingRebalance"


def test_coordinator_changed_protocols_or_leader_rejoin_rebalance(
    coordinator: GroupCoordinator,
) -> None:
    stable(coordinator, "a", "b")
    gen = coordinator.describe(G).generation
    assert join(coordinator, "b", [("range", b"other")]) is None
    assert coordinator.describe(G).state == "PreparingRebalance"
    stable(coordinator, "a", "b")  # b changes back: one more rebalance
    assert coordinator.describe(G).generation > gen
    assert join(coordinator, "a") is None  # the leader rejoins: a new rebalance
    assert coordinator.describe(G).state == "PreparingRebalance"


def test_coordinator_protocol_is_chosen_by_vote_among_common_ones(
    coordinator: GroupCoordinator,
) -> None:
    join(coordinator, "a", [("range", b""), ("sticky", b"")])
    join(coordinator, "b", [("sticky", b""), ("range", b"")])
    join(coordinator, "c", [("sticky", b"")])
    results = [join(coordinator, m, p) for m, p in [
        ("a", [("range", b""), ("sticky", b"")]), ("b", [("sticky", b""), ("range", b"")])]]
    assert all(r is not None and r.protocol == "sticky" for r in results)


def test_coordinator_refuses_a_member_with_no_protocol_in_common(
    coordinator: GroupCoordinator,
) -> None:
    stable(coordinator, "a")
    with pytest.raises(InvalidConfigError, match="INCONSISTENT_GROUP_PROTOCOL"):
        join(coordinator, "b", [("other", b"")])
    with pytest.raises(InvalidConfigError, match="protocol type"):
        coordinator.join(G, "c", protocol_type="connect", protocols=PROTOCOLS,
                         session_timeout_ms=10, rebalance_timeout_ms=10)
    assert [m.member_id for m in coordinator.describe(G).members] == ["a"]


def test_coordinator_leave_rebalances_and_last_leave_empties_the_group(
    coordinator: GroupCoordinator, root: str,
) -> None:
    stable(coordinator, "a", "b")
    gen = coordinator.describe(G).generation
    coordinator.leave(G, "a")
    result = join(coordinator, "b")
    assert result is not None and result.generation == gen + 1 and result.leader == "b"
    members_dir = os.path.join(root, "__groups", G, "members")
    assert os.listdir(members_dir) == ["b.lock"]  # a's file went with it
    coordinator.leave(G, "b")
    info = coordinator.describe(G)
    assert (info.state, info.generation, list(info.members)) == ("Empty", gen + 2, [])
    assert os.listdir(members_dir) == []
    coordinator.leave(G, "b")  # leaving twice does nothing
    assert coordinator.list_groups() == [G]


def test_coordinator_removed_member_cannot_rejoin_with_its_old_id(
    coordinator: GroupCoordinator,
) -> None:
    stable(coordinator, "a", "b")
    coordinator.leave(G, "a")
    with pytest.raises(UnknownMemberIdError, match="left"):
        join(coordinator, "a")
    with pytest.raises(UnknownMemberIdError):
        coordinator.heartbeat(G, "a", 1)


def test_coordinator_process_death_frees_the_lock_and_removes_the_member(
    root: str, clock: FakeClock,
) -> None:
    one, two = (GroupCoordinator(root, FileSystem(), clock) for _ in range(2))
    try:
        stable(one, "a")
        results = {}
        for _ in range(5):
            for c, m in ((one, "a"), (two, "b")):
                r = join(c, m)
                if r is not None:
                    results[m] = r
        gen = results["b"].generation
        one.close()  # what the kernel does when the process dies
        assert join(two, "b") is None or two.describe(G).members[0].member_id == "b"
        result = join(two, "b")
        assert result is not None and result.generation == gen + 1 and result.leader == "b"
        assert [m.member_id for m in two.describe(G).members] == ["b"]
    finally:
        one.close()
        two.close()


def test_coordinator_member_silent_past_rebalance_timeout_is_removed(
    root: str, clock: FakeClock,
) -> None:
    one, two = (GroupCoordinator(root, FileSystem(), clock) for _ in range(2))
    try:
        join(one, "a", rebalance_timeout_ms=500)
        one.sync(G, "a", 1, {"a": b"p0"})
        assert join(two, "b", rebalance_timeout_ms=500) is None
        clock.advance(400)
        assert join(two, "b", rebalance_timeout_ms=500) is None  # a may still rejoin
        clock.advance(200)  # a: no heartbeat for 600 ms > 500 (a SIGSTOPped process)
        result = join(two, "b", rebalance_timeout_ms=500)
        assert result is not None and result.generation == 2 and result.leader == "b"
        with pytest.raises(UnknownMemberIdError, match="deadline"):
            one.heartbeat(G, "a", 1)
        with pytest.raises(UnknownMemberIdError), one.fenced(GroupMember(G, "a", 1)):
            pytest.fail("a fenced member's commit must not run")
        with pytest.raises(UnknownMemberIdError):
            join(one, "a")
    finally:
        one.close()
        two.close()


def test_coordinator_heartbeats_keep_a_member_alive(
    root: str, clock: FakeClock,
) -> None:
    one, two = (GroupCoordinator(root, FileSystem(), clock) for _ in range(2))
    try:
        join(one, "a", rebalance_timeout_ms=500)
        one.sync(G, "a", 1, {})
        for _ in range(10):
            clock.advance(200)
            one.heartbeat(G, "a", 1)
        info = two.describe(G)
        assert (info.state, [m.member_id for m in info.members]) == ("Stable", ["a"])
    finally:
        one.close()
        two.close()


def test_coordinator_deadline_member_lives_by_session_timeout(
    coordinator: GroupCoordinator, clock: FakeClock,
) -> None:
    join(coordinator, "w", liveness="deadline", session_timeout_ms=1000)
    coordinator.sync(G, "w", 1, {})
    clock.advance(900)
    coordinator.heartbeat(G, "w", 1)
    clock.advance(900)
    assert coordinator.describe(G).state == "Stable"
    clock.advance(200)
    assert coordinator.describe(G).state == "Empty"  # shown advanced, nothing written
    with pytest.raises(UnknownMemberIdError):
        coordinator.heartbeat(G, "w", 1)


def test_coordinator_static_member_fences_its_predecessor(
    coordinator: GroupCoordinator,
) -> None:
    join(coordinator, "a1", group_instance_id="host-1")
    coordinator.sync(G, "a1", 1, {})
    result = join(coordinator, "a2", group_instance_id="host-1")
    assert result is not None and result.generation == 2
    with pytest.raises(FencedInstanceIdError, match="host-1"):
        coordinator.check(GroupMember(G, "a1", 1))
    with pytest.raises(FencedInstanceIdError):
        coordinator.heartbeat(G, "a1", 1)


def test_coordinator_wait_ms_waits_for_the_others(root: str, clock: FakeClock) -> None:
    import threading

    one, two = (GroupCoordinator(root, FileSystem(), clock) for _ in range(2))
    try:
        stable(one, "a")
        got: list[JoinResult | None] = []
        t = threading.Thread(target=lambda: got.append(join(two, "b", wait_ms=5000)))
        t.start()
        while one.describe(G).state != "PreparingRebalance":
            pass
        with pytest.raises(RebalanceInProgressError):
            one.heartbeat(G, "a", 1)
        a = join(one, "a", wait_ms=5000)
        t.join()
        assert a is not None and got[0] is not None and got[0].generation == a.generation
        sync_b: list[bytes | None] = []
        t = threading.Thread(target=lambda: sync_b.append(
            two.sync(G, "b", a.generation, {}, wait_ms=5000)))
        t.start()
        one.sync(G, "a", a.generation, {"b": b"B"})
        t.join()
        assert sync_b == [b"B"]
        assert one.sync(G, "a", a.generation, {}, wait_ms=0) == b""
    finally:
        one.close()
        two.close()


def test_coordinator_check_is_a_stat_when_nothing_changed(
    coordinator: GroupCoordinator, root: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    stable(coordinator, "a")
    path = os.path.join(root, "__groups", G, "state")
    old = os.stat(path).st_mtime - 1
    os.utime(path, (old, old))  # not "racily" recent
    coordinator.check(GroupMember(G, "a", 1))
    reads: list[str] = []
    fs = coordinator._fs
    real = fs.read_file
    monkeypatch.setattr(fs, "read_file", lambda p: reads.append(p) or real(p))
    for _ in range(100):
        coordinator.check(GroupMember(G, "a", 1))
    assert reads == []


def test_coordinator_state_survives_a_new_coordinator(root: str, clock: FakeClock) -> None:
    one = GroupCoordinator(root, FileSystem(), clock)
    stable(one, "a")
    two = GroupCoordinator(root, FileSystem(), clock)
    try:
        two.check(GroupMember(G, "a", 1))
        assert two.describe(G).members[0].assignment == b"a"
    finally:
        one.close()
        two.close()


def test_coordinator_damaged_state_file_is_a_corruption_error_naming_it(
    coordinator: GroupCoordinator, root: str,
) -> None:
    stable(coordinator, "a")
    path = os.path.join(root, "__groups", G, "state")
    data = bytearray(Path(path).read_bytes())
    data[30] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="state") as err:
        coordinator.heartbeat(G, "a", 1)
    assert err.value.path == path
    with pytest.raises(CorruptionError):
        coordinator.describe(G)


def test_coordinator_reads_a_legacy_state_file_as_an_empty_group(
    coordinator: GroupCoordinator, root: str,
) -> None:
    directory = Path(root, "__groups", G)
    directory.mkdir(parents=True)
    (directory / "state").write_text(
        '{"assignment": {}, "assignor": "range", "generation": 7, "members": {}}')
    assert coordinator.describe(G).generation == 7
    result = join(coordinator, "a")
    assert result is not None and result.generation == 8


def test_coordinator_delete_refuses_live_members_and_forgets_the_group(
    coordinator: GroupCoordinator,
) -> None:
    stable(coordinator, "a")
    with pytest.raises(GroupNotEmptyError, match="live member"):
        coordinator.delete(G)
    coordinator.leave(G, "a")
    coordinator.delete(G)
    assert coordinator.list_groups() == []
    assert coordinator.describe(G).state == "Dead"
    coordinator.delete("never-existed")


def test_coordinator_unknown_group_is_dead_and_fences_everyone(
    coordinator: GroupCoordinator,
) -> None:
    assert coordinator.describe("nope").state == "Dead"
    with pytest.raises(UnknownMemberIdError):
        coordinator.check(GroupMember("nope", "a", 1))
    with pytest.raises(UnknownMemberIdError):
        coordinator.heartbeat("nope", "a", 1)
    assert coordinator.list_groups() == []


def test_coordinator_requests_for_an_unknown_group_create_nothing(
    coordinator: GroupCoordinator, root: str,
) -> None:
    with pytest.raises(UnknownMemberIdError), coordinator.fenced(GroupMember("nope", "a", 1)):
        pytest.fail("must not run")
    with pytest.raises(UnknownMemberIdError):
        coordinator.sync("nope", "a", 1, {})
    assert not os.path.exists(os.path.join(root, "__groups", "nope"))


def test_coordinator_member_rejoining_a_deleted_group_is_alive_to_others(
    root: str, clock: FakeClock,
) -> None:
    one, two = (GroupCoordinator(root, FileSystem(), clock) for _ in range(2))
    try:
        join(one, "a")
        one.leave(G, "a")
        one.delete(G)
        assert join(one, "a") is not None  # the group forgot it: a new member
        info = two.describe(G)  # two probes a's lock on its (new) member file
        assert [m.member_id for m in info.members] == ["a"]
    finally:
        one.close()
        two.close()
