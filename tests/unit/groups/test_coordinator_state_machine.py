"""A Hypothesis state machine over the group coordinator: random joins, syncs,
heartbeats, leaves, process deaths and clock jumps across three coordinator instances
(three processes sharing one directory). Invariants (issue 12, point 2):

* generations strictly increase, and one generation completes at a time: every answer
  for generation g names the same leader, protocol and members;
* a member only ever receives the assignment the leader of its generation gave it;
* a fenced member's check always fails: a member id of an older generation than the
  stored one, or removed, is refused by ``check`` and by ``fenced``;
* the stored state lists exactly the members the test believes joined and not removed,
  and every member of a Stable group received its assignment or can.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from logstore.errors import GroupError
from logstore.groups import GroupCoordinator, GroupState
from logstore.storage import statefile
from logstore.storage.files import FileSystem
from logstore.types import GroupMember, JoinResult
from tests.conftest import FakeClock

G = "g"
PROCESSES = 3
MEMBERS = 5
REBALANCE_MS = 1000
PROTOCOLS = [("range", b"r"), ("sticky", b"s")]


class Groups(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="groups-sm-")
        self.clock = FakeClock()
        self.fs = FileSystem()
        self.procs = [GroupCoordinator(self.dir, self.fs, self.clock) for _ in range(PROCESSES)]
        self.ids = [f"m{i}" for i in range(MEMBERS)]
        self.incarnation = [0] * MEMBERS
        self.joined: dict[int, JoinResult] = {}  # member slot -> its last join answer
        self.by_generation: dict[int, JoinResult] = {}  # a leader's answer per generation
        self.assigned: dict[int, tuple[int, bytes]] = {}
        self.seen: list[GroupMember] = []  # every GroupMember the members ever had
        self.last_generation = 0

    def teardown(self) -> None:
        for c in self.procs:
            c.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def proc(self, slot: int) -> GroupCoordinator:
        return self.procs[slot % PROCESSES]

    def stored(self) -> GroupState:
        path = os.path.join(self.dir, "__groups", G, "state")
        try:
            return GroupState.from_json(statefile.read_state(self.fs, path, "group-state"))
        except FileNotFoundError:
            return GroupState()

    def renew(self, slot: int) -> None:
        """The member was removed: it continues under a new id (as Membership does)."""
        self.incarnation[slot] += 1
        self.ids[slot] = f"m{slot}-{self.incarnation[slot]}"
        self.joined.pop(slot, None)
        self.assigned.pop(slot, None)

    def fenced(self, slot: int, err: GroupError) -> None:
        self.joined.pop(slot, None)
        self.assigned.pop(slot, None)
        if type(err).__name__ == "UnknownMemberIdError":
            self.renew(slot)

    # ------------------------------------------------------------------ rules

    @rule(slot=st.integers(0, MEMBERS - 1))
    def join(self, slot: int) -> None:
        try:
            result = self.proc(slot).join(
                G, self.ids[slot], protocol_type="consumer", protocols=PROTOCOLS,
                session_timeout_ms=REBALANCE_MS, rebalance_timeout_ms=REBALANCE_MS,
            )
        except GroupError as err:
            self.fenced(slot, err)
            return
        if result is None:
            return
        assert result.generation >= self.last_generation
        self.last_generation = result.generation
        self.joined[slot] = result
        self.seen.append(GroupMember(G, result.member_id, result.generation))
        if result.leader == result.member_id:
            known = self.by_generation.setdefault(result.generation, result)
            assert known == result, "two leaders' answers for one generation"
        known = self.by_generation.get(result.generation)
        if known is not None:
            assert (known.leader, known.protocol) == (result.leader, result.protocol)
            assert result.member_id in [m for m, _ in known.members]

    @rule(slot=st.integers(0, MEMBERS - 1))
    def sync(self, slot: int) -> None:
        joined = self.joined.get(slot)
        if joined is None:
            return
        gen = joined.generation
        assignments = {m: f"{m}@{gen}".encode() for m, _ in joined.members}
        try:
            data = self.proc(slot).sync(G, joined.member_id, gen, assignments)
        except GroupError as err:
            self.fenced(slot, err)
            return
        if data is not None:
            leader = self.by_generation.get(gen)
            if leader is not None:  # the leader's answer named this member
                assert data == f"{joined.member_id}@{gen}".encode()
            self.assigned[slot] = (gen, data)

    @rule(slots=st.sets(st.integers(0, MEMBERS - 1), min_size=1))
    def settle(self, slots: set[int]) -> None:
        """The members in ``slots`` poll in turn (join, then sync) a few rounds: long
        enough for a rebalance among them to complete and the leader to assign."""
        for _ in range(4):
            for slot in sorted(slots):
                if slot in self.joined:
                    self.sync(slot)
                stored = self.stored()
                got = self.assigned.get(slot)
                if got is None or got[0] != stored.generation or (
                    stored.state == "PreparingRebalance"
                ):
                    self.join(slot)
        for _ in range(2):  # members that polled before the generation completed or
            for slot in sorted(slots):  # before the leader synced: join, sync again
                joined = self.joined.get(slot)
                if joined is None or joined.generation != self.stored().generation:
                    self.join(slot)
                if slot in self.joined:
                    self.sync(slot)
        stored = self.stored()
        ours = {self.ids[slot]: slot for slot in slots}
        if stored.state == "Stable" and set(stored.members) <= set(ours):
            for member_id in stored.members:  # every live joined member got its assignment
                gen = stored.generation
                assert self.assigned.get(ours[member_id]) == (gen, f"{member_id}@{gen}".encode())

    @rule(slot=st.integers(0, MEMBERS - 1))
    def heartbeat(self, slot: int) -> None:
        joined = self.joined.get(slot)
        if joined is None:
            return
        try:
            self.proc(slot).heartbeat(G, joined.member_id, joined.generation)
        except GroupError as err:
            if type(err).__name__ != "RebalanceInProgressError":
                self.fenced(slot, err)

    @rule(slot=st.integers(0, MEMBERS - 1))
    def leave(self, slot: int) -> None:
        self.proc(slot).leave(G, self.ids[slot])
        self.renew(slot)

    @rule(process=st.integers(0, PROCESSES - 1))
    def die(self, process: int) -> None:
        """The process is killed: its member locks go; a new process takes its place."""
        self.procs[process].close()
        self.procs[process] = GroupCoordinator(self.dir, self.fs, self.clock)
        for slot in range(MEMBERS):
            if slot % PROCESSES == process:
                self.renew(slot)

    @rule(ms=st.sampled_from([10, 300, 700, REBALANCE_MS + 1, 5000]))
    def clock_jump(self, ms: int) -> None:
        self.clock.advance(ms)

    @precondition(lambda self: self.seen)
    @rule(data=st.data())
    def old_member_commits(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(self.seen))
        proc = data.draw(st.sampled_from(self.procs))
        try:
            with proc.fenced(member):
                committed = True
        except GroupError:
            committed = False
        stored = self.stored()  # as fenced() left it (it may have expired members)
        current = stored.members.get(member.member_id)
        valid = current is not None and current.generation == member.generation == (
            stored.generation)
        assert committed == valid

    # ------------------------------------------------------------------ invariants

    @invariant()
    def generation_never_goes_back(self) -> None:
        stored = self.stored()
        assert stored.generation >= self.last_generation
        self.last_generation = stored.generation

    @invariant()
    def stale_members_are_fenced(self) -> None:
        stored = self.stored()
        for member in self.seen[-20:]:
            current = stored.members.get(member.member_id)
            if current is not None and member.generation == stored.generation == (
                current.generation
            ):
                continue
            for proc in self.procs:
                with pytest.raises(GroupError):
                    proc.check(member)

    @invariant()
    def live_members_are_the_ones_that_joined(self) -> None:
        info = self.procs[0].describe(G)  # dead and timed-out members left out
        assert {m.member_id for m in info.members} <= set(self.ids)
        if info.state == "Stable":
            stored = self.stored()
            assert all(m.generation == stored.generation for m in stored.members.values())


GroupsTest = Groups.TestCase
GroupsTest.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
