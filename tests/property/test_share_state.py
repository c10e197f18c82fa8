"""One share-partition's state machine (logstore.groups.share_state) against a model of
what members were handed and what they acknowledged: acquire (available records first,
then new ones from a growing log), accept/release/reject (valid and bogus ones), the clock
moving past lock deadlines, a member leaving, and restarts (the state encoded and decoded,
as the coordinator persists it).

Invariants: no record is accepted twice; none is delivered more than
``max_delivery_attempts`` times; none is held by two members at once; a record archived
produces one dead letter, with its delivery count; SPSO only moves over finished records
(everything below it was accepted or archived); the window never passes
``max_record_locks``; a refused acknowledgement changes nothing."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from logstore.errors import (
    LockExpiredError,
    ShareAcknowledgeError,
)
from logstore.groups.share_state import (
    AckType,
    RecordState,
    SharePartitionState,
    ShareSettings,
)

MEMBERS = ("m0", "m1", "m2")
SETTINGS = ShareSettings(lock_timeout_ms=100, max_delivery_attempts=3, max_record_locks=6)


class SharePartitionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = SharePartitionState.starting_at(0)
        self.now = 0
        self.log_end = 0
        self.deliveries: dict[int, int] = {}  # offset -> times handed out
        self.holder: dict[int, tuple[str, int, int]] = {}  # offset -> member, count, deadline
        self.accepted: set[int] = set()
        self.archived: dict[int, int] = {}  # offset -> delivery count in its dead letter
        self.finished_by_ack: set[int] = set()

    # ------------------------------------------------------------------ helpers

    def _record_archived(self, archived: list[tuple[int, int, str, str]]) -> None:
        for offset, count, _, _ in archived:
            assert offset not in self.archived, f"offset {offset} dead-lettered twice"
            assert count == self.deliveries[offset]
            self.archived[offset] = count
            self.holder.pop(offset, None)

    def _handed(self, member: str, offset: int, count: int) -> None:
        current = self.holder.get(offset)
        assert current is None or current[2] <= self.now, (
            f"offset {offset} handed to {member} while {current[0]} holds it"
        )
        assert offset not in self.accepted and offset not in self.archived
        self.deliveries[offset] = self.deliveries.get(offset, 0) + 1
        assert count == self.deliveries[offset]
        assert count <= SETTINGS.max_delivery_attempts
        self.holder[offset] = (member, count, self.now + SETTINGS.lock_timeout_ms)

    # ------------------------------------------------------------------ rules

    @rule(n=st.integers(1, 5))
    def append(self, n: int) -> None:
        self.log_end += n

    @rule(member=st.sampled_from(MEMBERS), n=st.integers(1, 4))
    def acquire(self, member: str, n: int) -> None:
        self._record_archived(self.state.expire(self.now, SETTINGS))
        for offset, count in self.state.acquire(member, self.now, SETTINGS, n):
            self._handed(member, offset, count)
        room = min(self.state.room(SETTINGS), n)
        new = list(range(self.state.end_offset, min(self.log_end, self.state.end_offset + room)))
        if new:
            for offset, count in self.state.acquire_new(
                new, new[-1] + 1, member, self.now, SETTINGS
            ):
                self._handed(member, offset, count)

    @rule(ms=st.integers(1, 150))
    def tick(self, ms: int) -> None:
        self.now += ms

    @precondition(lambda self: bool(self.holder))
    @rule(data=st.data(), kind=st.sampled_from(list(AckType)), bogus=st.booleans())
    def acknowledge(self, data: st.DataObject, kind: AckType, bogus: bool) -> None:
        offset = data.draw(st.sampled_from(sorted(self.holder)))
        member, count, deadline = self.holder[offset]
        if bogus:  # another member, or a stale delivery count
            member = data.draw(st.sampled_from(MEMBERS))
            count = data.draw(st.integers(0, count + 1))
        before = self.state.encode()
        self._record_archived(self.state.expire(self.now, SETTINGS))
        expired = before != self.state.encode()
        snapshot = self.state.encode()
        try:
            archived = self.state.acknowledge(
                "g", "t", 0, member, offset, count, kind, ("E", "boom"), self.now, SETTINGS
            )
        except ShareAcknowledgeError as err:
            assert self.state.encode() == snapshot, "a refused ack changed the state"
            ok = (member, count) == self.holder.get(offset, ("", -1, 0))[:2] and (
                deadline > self.now
            )
            assert not ok or isinstance(err, LockExpiredError) or expired, err
            return
        assert (member, count) == self.holder[offset][:2] and deadline > self.now
        del self.holder[offset]
        if kind is AckType.ACCEPT:
            assert offset not in self.accepted, f"offset {offset} accepted twice"
            self.accepted.add(offset)
        if archived is not None:
            assert kind is AckType.REJECT or count >= SETTINGS.max_delivery_attempts
            self._record_archived([archived])
            assert archived.error_class == "E"

    @rule(member=st.sampled_from(MEMBERS))
    def leave(self, member: str) -> None:
        self._record_archived(self.state.expire(self.now, SETTINGS))
        self._record_archived(self.state.release_member(member, SETTINGS))
        for offset in [o for o, (m, _, _) in self.holder.items() if m == member]:
            del self.holder[offset]

    @rule()
    def restart(self) -> None:
        self.state = SharePartitionState.decode(self.state.encode())

    # ------------------------------------------------------------------ invariants

    @invariant()
    def spso_only_moves_over_finished_records(self) -> None:
        for offset in range(self.state.start_offset):
            assert offset in self.accepted or offset in self.archived, offset

    @invariant()
    def window_is_bounded(self) -> None:
        s = self.state
        assert 0 <= s.end_offset - s.start_offset <= SETTINGS.max_record_locks
        assert all(s.start_offset <= o < s.end_offset for o in s.records)

    @invariant()
    def states_agree_with_the_model(self) -> None:
        for offset, rec in self.state.records.items():
            assert rec.delivery_count == self.deliveries.get(offset, 0)
            if rec.state is RecordState.ACKNOWLEDGED:
                assert offset in self.accepted
            if rec.state is RecordState.ARCHIVED:
                assert offset in self.archived
            if rec.state is RecordState.ACQUIRED and rec.deadline_ms > self.now:
                assert self.holder[offset][0] == rec.holder


TestSharePartition = SharePartitionMachine.TestCase
