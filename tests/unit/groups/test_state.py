"""The pure group state machine (logstore.groups.state): transitions, the protocol
vote, timeouts and the state file's JSON, without files or processes."""

from __future__ import annotations

import pytest

from logstore.groups import state as sm
from logstore.groups.state import GroupState, Member


def member(member_id: str, seq: int, protocols: list[str] | None = None,
           rebalance_timeout_ms: int = 1000) -> Member:
    return Member(member_id, None, [(p, p.encode()) for p in protocols or ["range"]],
                  10_000, rebalance_timeout_ms, "lock", seq)


def group(*members: Member) -> GroupState:
    st = GroupState(members={m.member_id: m for m in members}, next_seq=len(members))
    sm.prepare_rebalance(st, 0)
    for m in members:
        m.rejoined = True
    sm.try_complete(st, 0)
    return st


def test_state_rebalance_completes_when_all_rejoined_with_first_joiner_leading() -> None:
    st = group(member("b", 1), member("a", 0))
    assert (st.state, st.generation, st.leader) == ("CompletingRebalance", 1, "a")
    assert [m.member_id for m in st.ordered()] == ["a", "b"]
    assert st.join_result("b") is not None and st.join_result("b").members == []  # type: ignore[union-attr]
    assert [m for m, _ in st.join_result("a").members] == ["a", "b"]  # type: ignore[union-attr]


def test_state_member_not_rejoining_within_its_timeout_is_removed() -> None:
    st = group(member("a", 0), member("b", 1, rebalance_timeout_ms=500))
    sm.prepare_rebalance(st, 100)
    st.members["a"].rejoined = True
    sm.expire(st, 600, set())
    assert st.state == "PreparingRebalance"  # b has until 100 + 500
    sm.expire(st, 601, set())
    assert (st.state, list(st.members), st.removed) == (
        "CompletingRebalance", ["a"], {"b": "expired"})


def test_state_leader_that_never_syncs_restarts_the_rebalance() -> None:
    st = group(member("a", 0), member("b", 1))
    sm.expire(st, 1001, set())
    assert st.state == "PreparingRebalance"


def test_state_last_member_gone_empties_the_group_with_a_new_generation() -> None:
    st = group(member("a", 0))
    sm.expire(st, 5, {"a"})
    assert (st.state, st.generation, st.leader, st.members) == ("Empty", 2, None, {})


@pytest.mark.parametrize(("prefs", "chosen"), [
    ([["range", "sticky"], ["sticky", "range"], ["sticky"]], "sticky"),
    ([["range", "sticky"], ["sticky", "range"]], "range"),  # a tie: the first joiner's
    ([["roundrobin", "range"], ["range", "roundrobin"], ["roundrobin", "range"]],
     "roundrobin"),
])
def test_state_protocol_vote(prefs: list[list[str]], chosen: str) -> None:
    assert sm.choose_protocol([member(f"m{i}", i, p) for i, p in enumerate(prefs)]) == chosen


def test_state_tombstones_are_bounded() -> None:
    st = group(*(member(f"m{i}", i) for i in range(sm.TOMBSTONES + 10)))
    for i in range(sm.TOMBSTONES + 10):
        sm.remove(st, f"m{i}", "left", 1)
    assert len(st.removed) == sm.TOMBSTONES and "m0" not in st.removed


def test_state_json_round_trips_and_clone_is_independent() -> None:
    st = group(member("a", 0, ["range", "sticky"]), member("b", 1))
    st.members["a"].assignment = b"\x00\xff"
    st.removed["old"] = "fenced:host-1"
    again = GroupState.from_json(st.to_json())
    assert again == st
    copy = st.clone()
    copy.members["a"].protocols.append(("x", b""))
    assert copy != st
    with pytest.raises(ValueError, match="unknown group state"):
        GroupState.from_json(st.to_json().replace(b"CompletingRebalance", b"Bogus"))
