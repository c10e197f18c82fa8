"""The group half of the Backend Protocol, driven directly: Kafka's classic group protocol
as a coordinator must answer it (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
DescribeGroups, ListGroups, DeleteGroups, and OffsetCommit/Fetch fencing).

What ``logstore.client.membership`` relies on, pinned below the client: several members
in one thread (join and sync never block longer than ``wait_ms``; None means "call
again"), generations, the leader getting every member's metadata, fencing errors. Runs on
every backend that has a group coordinator (LocalBackend's is wired in with
``logstore.groups``; until then it is skipped there).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore.backend import LocalBackend, backend_for
from logstore.client.backend import Backend
from logstore.errors import (
    FencedInstanceIdError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InvalidConfigError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from logstore.types import GroupMember, JoinResult, TopicPartition
from tests.conftest import FakeClock
from tests.fakes import MemoryBackend

pytestmark = pytest.mark.groups

G = "g"
TP0 = TopicPartition("events", 0)
SESSION_MS = 10_000
REBALANCE_MS = 10_000


@pytest.fixture(params=["local", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    if request.param == "memory":
        memory = MemoryBackend(clock)
        memory.create_topic("events", 1)
        yield memory
        return
    with logstore.open(str(tmp_path / "store"), clock=clock) as store:
        local = backend_for(store)
        if not hasattr(local, "join_group"):
            pytest.skip("LocalBackend's group coordinator is wired in with logstore.groups")
        store.create_topic("events", 1)
        yield local  # type: ignore[misc]


def _join(
    backend: Backend,
    member: str,
    *,
    protocols: tuple[tuple[str, bytes], ...] = (("range", b"meta-"),),
    session_ms: int = SESSION_MS,
    rebalance_ms: int = REBALANCE_MS,
    instance: str | None = None,
    wait_ms: int = 0,
) -> JoinResult | None:
    return backend.join_group(
        G, member, protocol_type="consumer",
        protocols=[(name, meta + member.encode()) for name, meta in protocols],
        session_timeout_ms=session_ms, rebalance_timeout_ms=rebalance_ms,
        group_instance_id=instance, wait_ms=wait_ms,
    )


def _stable_pair(backend: Backend) -> tuple[JoinResult, JoinResult]:
    """Members a (the leader) and b in one generation, synced."""
    first = _join(backend, "a")
    assert first is not None
    backend.sync_group(G, "a", first.generation, {"a": b"all"})
    assert _join(backend, "b") is None  # a rebalance starts; a has not rejoined
    with pytest.raises(RebalanceInProgressError):
        backend.heartbeat(G, "a", first.generation)
    a = _join(backend, "a")
    b = _join(backend, "b")
    assert a is not None and b is not None
    assert backend.sync_group(G, "b", b.generation, {}) is None  # the leader has not synced
    assert backend.sync_group(G, "a", a.generation, {"a": b"A", "b": b"B"}) == b"A"
    assert backend.sync_group(G, "b", b.generation, {}) == b"B"
    return a, b


def test_a_lone_member_completes_its_join_at_once_and_leads(backend: Backend) -> None:
    result = _join(backend, "a")

    assert result == JoinResult(1, "range", "a", "a", [("a", b"meta-a")])
    assert backend.describe_group(G).state == "CompletingRebalance"
    assert backend.sync_group(G, "a", 1, {"a": b"assignment"}) == b"assignment"
    info = backend.describe_group(G)
    assert (info.state, info.generation, info.leader, info.protocol) == ("Stable", 1, "a", "range")
    assert [(m.member_id, m.metadata, m.assignment) for m in info.members] == [
        ("a", b"meta-a", b"assignment")
    ]
    backend.heartbeat(G, "a", 1)
    again = _join(backend, "a")  # a member that synced and rejoins asks for a rebalance
    assert again is not None and (again.generation, again.leader) == (2, "a")


def test_a_second_member_starts_a_rebalance_that_completes_once_both_rejoined(
    backend: Backend,
) -> None:
    a, b = _stable_pair(backend)

    assert (a.generation, b.generation) == (2, 2)
    assert (a.leader, b.leader) == ("a", "a")
    assert list(a.members) == [("a", b"meta-a"), ("b", b"meta-b")]  # the leader's view
    assert list(b.members) == []
    assert backend.describe_group(G).state == "Stable"
    backend.heartbeat(G, "a", 2)
    backend.heartbeat(G, "b", 2)


def test_an_old_generation_is_fenced_everywhere(backend: Backend) -> None:
    a, _ = _stable_pair(backend)
    old = GroupMember(G, "a", a.generation - 1)

    with pytest.raises(IllegalGenerationError):
        backend.heartbeat(G, "a", old.generation)
    with pytest.raises(IllegalGenerationError):
        backend.sync_group(G, "a", old.generation, {})
    with pytest.raises(IllegalGenerationError):
        backend.commit_offsets(G, {TP0: (5, "")}, member=old)
    with pytest.raises(IllegalGenerationError):
        backend.fetch({TP0: 0}, max_records=10, max_bytes=1 << 20, member=old)
    assert backend.committed_offsets(G) == {}
    backend.commit_offsets(G, {TP0: (0, "")}, member=GroupMember(G, "a", a.generation))
    assert backend.committed_offsets(G)[TP0].offset == 0


def test_a_member_that_left_is_unknown_and_the_rest_rebalance(backend: Backend) -> None:
    a, _ = _stable_pair(backend)

    backend.leave_group(G, "b")

    with pytest.raises(UnknownMemberIdError):
        backend.heartbeat(G, "b", a.generation)
    with pytest.raises(UnknownMemberIdError):
        backend.commit_offsets(G, {TP0: (1, "")}, member=GroupMember(G, "b", a.generation))
    with pytest.raises(RebalanceInProgressError):
        backend.heartbeat(G, "a", a.generation)
    again = _join(backend, "a")
    assert again is not None and again.generation == a.generation + 1
    assert list(again.members) == [("a", b"meta-a")]


def test_the_last_member_leaving_empties_the_group(backend: Backend) -> None:
    first = _join(backend, "a")
    assert first is not None
    backend.sync_group(G, "a", first.generation, {"a": b""})

    backend.leave_group(G, "a")

    info = backend.describe_group(G)
    assert (info.state, list(info.members)) == ("Empty", [])
    with pytest.raises((UnknownMemberIdError, IllegalGenerationError)):
        backend.commit_offsets(G, {TP0: (1, "")}, member=GroupMember(G, "a", first.generation))


def test_a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_removed(
    backend: Backend,
) -> None:
    first = _join(backend, "a", rebalance_ms=100)
    assert first is not None
    backend.sync_group(G, "a", first.generation, {"a": b""})

    assert _join(backend, "b", rebalance_ms=100) is None  # a is silent from here on
    result = _join(backend, "b", rebalance_ms=100, wait_ms=3000)

    assert result is not None
    assert (result.generation, result.leader, list(result.members)) == (
        first.generation + 1, "b", [("b", b"meta-b")],
    )
    with pytest.raises(UnknownMemberIdError):
        backend.heartbeat(G, "a", first.generation)


def test_a_member_silent_for_its_session_timeout_is_removed(backend: Backend) -> None:
    """Over a network (the memory backend stands for one) a member lives by its session
    timeout; an embedded member lives as long as its process holds its member lock and
    it polls within its rebalance timeout (max_poll_interval_ms), so a slow loop between
    two polls does not cost it its partitions."""
    a = _join(backend, "a", session_ms=100)
    assert a is not None
    backend.sync_group(G, "a", a.generation, {"a": b""})

    time.sleep(0.3)

    if isinstance(backend, LocalBackend):
        backend.heartbeat(G, "a", a.generation)  # alive: its lock is held
        assert [m.member_id for m in backend.describe_group(G).members] == ["a"]
        return
    with pytest.raises(UnknownMemberIdError):
        backend.heartbeat(G, "a", a.generation)
    assert list(backend.describe_group(G).members) == []


def test_join_with_wait_returns_when_the_others_rejoin_from_another_thread(
    backend: Backend,
) -> None:
    first = _join(backend, "a")
    assert first is not None
    backend.sync_group(G, "a", first.generation, {"a": b""})
    results: dict[str, JoinResult | None] = {}

    joiner = threading.Thread(target=lambda: results.update(b=_join(backend, "b", wait_ms=5000)))
    joiner.start()
    deadline = time.monotonic() + 5
    while backend.describe_group(G).state != "PreparingRebalance" and time.monotonic() < deadline:
        time.sleep(0.001)
    results["a"] = _join(backend, "a")
    joiner.join()

    a, b = results["a"], results["b"]
    assert a is not None and b is not None
    assert a.generation == b.generation == first.generation + 1


def test_sync_with_wait_returns_once_the_leader_synced(backend: Backend) -> None:
    first = _join(backend, "a")
    assert first is not None
    backend.sync_group(G, "a", first.generation, {"a": b""})
    assert _join(backend, "b") is None
    a, b = _join(backend, "a"), _join(backend, "b")
    assert a is not None and b is not None
    got: list[bytes | None] = []

    follower = threading.Thread(
        target=lambda: got.append(backend.sync_group(G, "b", b.generation, {}, wait_ms=5000))
    )
    follower.start()
    time.sleep(0.05)
    backend.sync_group(G, "a", a.generation, {"a": b"A", "b": b"B"})
    follower.join()

    assert got == [b"B"]


def test_the_protocol_is_one_every_member_supports(backend: Backend) -> None:
    first = _join(backend, "a", protocols=(("sticky", b"s-"), ("range", b"r-")))
    assert first is not None and first.protocol == "sticky"
    backend.sync_group(G, "a", first.generation, {"a": b""})
    assert _join(backend, "b", protocols=(("range", b"r-"),)) is None
    a = _join(backend, "a", protocols=(("sticky", b"s-"), ("range", b"r-")))
    assert a is not None and a.protocol == "range"
    assert dict(a.members) == {"a": b"r-a", "b": b"r-b"}
    with pytest.raises(InvalidConfigError):
        _join(backend, "c", protocols=(("roundrobin", b""),))


def test_a_static_member_fences_its_predecessor(backend: Backend) -> None:
    old = _join(backend, "old", instance="worker-1")
    assert old is not None
    backend.sync_group(G, "old", old.generation, {"old": b""})

    new = _join(backend, "new", instance="worker-1")

    assert new is not None
    with pytest.raises(FencedInstanceIdError):
        backend.heartbeat(G, "old", old.generation)
    with pytest.raises(FencedInstanceIdError):
        _join(backend, "old", instance="worker-1")
    assert [m.member_id for m in backend.describe_group(G).members] == ["new"]


def test_list_describe_and_delete_groups(backend: Backend) -> None:
    assert backend.describe_group("nobody").state == "Dead"
    first = _join(backend, "a")
    assert first is not None
    backend.commit_offsets("offsets-only", {TP0: (1, "")})

    assert {"g", "offsets-only"} <= set(backend.list_groups())
    with pytest.raises(GroupNotEmptyError):
        backend.delete_group(G)
    backend.leave_group(G, "a")
    backend.delete_group(G)
    backend.delete_group("offsets-only")

    assert not {"g", "offsets-only"} & set(backend.list_groups())
    assert backend.committed_offsets("offsets-only") == {}
    assert backend.describe_group("offsets-only").state == "Dead"
