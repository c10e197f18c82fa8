"""Kafka's classic consumer-group state machine, as pure functions over a value.

A group is in one of Kafka's states (``ClassicGroupState``):

* ``Empty``: no members (committed offsets may live on elsewhere).
* ``PreparingRebalance``: membership or protocols changed; every member must rejoin
  (or be removed: dead, or silent past its ``rebalance_timeout_ms``) before the next
  generation completes.
* ``CompletingRebalance``: the new generation completed; the members wait for the
  leader's assignment (SyncGroup).
* ``Stable``: the leader synced; every member has its assignment.
* ``Dead``: there is no such group (only ever reported, never stored).

Protocol metadata and assignments are opaque bytes here: the consumer protocol
(:mod:`logstore.records.consumer_protocol`) is the clients' business.

Who is alive is an input (:func:`expire` takes the set of dead members), the time is
an argument, so every transition is deterministic and testable without files.
No I/O happens here; :mod:`logstore.groups.coordinator` loads, advances and stores it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Set
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from logstore.errors import FencedInstanceIdError, IllegalGenerationError, UnknownMemberIdError
from logstore.types import JoinResult

GroupStateName = Literal["Empty", "PreparingRebalance", "CompletingRebalance", "Stable"]
Liveness = Literal["lock", "deadline"]
"""How a member's liveness is judged: ``"lock"`` (an embedded member: alive while its
process holds its member lock and it heartbeats within ``rebalance_timeout_ms``, the
client's ``max_poll_interval_ms``) or ``"deadline"`` (a remote member, e.g. of the wire
server: alive while it heartbeats within ``session_timeout_ms``)."""

TOMBSTONES = 256
"""Removed member ids remembered, so a member removed while it was paused (SIGSTOP) is
told it was removed when it rejoins (Kafka's UNKNOWN_MEMBER_ID), instead of coming back
as a new member still believing it owns its old partitions."""


@dataclass
class Member:
    """One member as the coordinator knows it."""

    member_id: str
    group_instance_id: str | None
    protocols: list[tuple[str, bytes]]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    liveness: Liveness
    join_seq: int
    """Join order: the first joiner leads when the old leader did not rejoin."""
    generation: int = -1
    """The generation this member belongs to; -1 while it waits for its first."""
    rejoined: bool = True
    """Whether it rejoined since the current rebalance began (PreparingRebalance)."""
    assignment: bytes = b""
    synced: bool = False
    """Whether it received its assignment in this generation. A member that did and
    joins again asks for a rebalance (it saw a topic grow, or revoked partitions); one
    that did not is told the current generation again."""

    def metadata(self, protocol: str) -> bytes:
        """Its metadata for ``protocol`` (b"" if it does not support it)."""
        return next((m for name, m in self.protocols if name == protocol), b"")

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.group_instance_id,
            "protocols": [[n, _b64(m)] for n, m in self.protocols],
            "session_timeout_ms": self.session_timeout_ms,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
            "liveness": self.liveness,
            "join_seq": self.join_seq,
            "generation": self.generation,
            "rejoined": self.rejoined,
            "assignment": _b64(self.assignment),
            "synced": self.synced,
        }

    @classmethod
    def from_json(cls, member_id: str, raw: dict[str, Any]) -> Member:
        liveness: Liveness = "deadline" if raw["liveness"] == "deadline" else "lock"
        return cls(
            member_id,
            None if raw["instance"] is None else str(raw["instance"]),
            [(str(n), _unb64(m)) for n, m in raw["protocols"]],
            int(raw["session_timeout_ms"]),
            int(raw["rebalance_timeout_ms"]),
            liveness,
            int(raw["join_seq"]),
            int(raw["generation"]),
            bool(raw["rejoined"]),
            _unb64(raw["assignment"]),
            bool(raw["synced"]),
        )


@dataclass
class GroupState:
    """A group's whole coordination state (what the group's ``state`` file holds)."""

    state: GroupStateName = "Empty"
    generation: int = 0
    protocol_type: str = ""
    protocol: str = ""
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    next_seq: int = 0
    since_ms: int = 0
    """When the current state began (a rebalance's start, a generation's completion)."""
    removed: dict[str, str] = field(default_factory=dict)
    """Recently removed member ids (at most :data:`TOMBSTONES`), each with why: "left",
    "expired", or ``"fenced:<instance id>"`` for one replaced by a newer member with its
    ``group_instance_id``."""

    # ------------------------------------------------------------------ queries

    def ordered(self) -> list[Member]:
        """The members in join order."""
        return sorted(self.members.values(), key=lambda m: m.join_seq)

    def join_result(self, member_id: str) -> JoinResult | None:
        """``member_id``'s answer to JoinGroup, if the generation it waits for completed."""
        member = self.members.get(member_id)
        if (
            member is None
            or self.state not in ("CompletingRebalance", "Stable")
            or member.generation != self.generation
        ):
            return None
        members: list[tuple[str, bytes]] = []
        if member_id == self.leader:
            members = [(m.member_id, m.metadata(self.protocol)) for m in self.ordered()]
        return JoinResult(self.generation, self.protocol, self.leader or "", member_id, members)

    def clone(self) -> GroupState:
        """A copy to change (cheaper than decoding the file again)."""
        return replace(
            self,
            members={k: replace(m, protocols=list(m.protocols)) for k, m in self.members.items()},
            removed=dict(self.removed),
        )

    # ------------------------------------------------------------------ encoding

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "state": self.state,
                "generation": self.generation,
                "protocol_type": self.protocol_type,
                "protocol": self.protocol,
                "leader": self.leader,
                "members": {m: v.to_json() for m, v in self.members.items()},
                "next_seq": self.next_seq,
                "since_ms": self.since_ms,
                "removed": self.removed,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> GroupState:
        """Decode a state file's payload (ValueError, KeyError or TypeError if it is not
        one: the caller words the error)."""
        raw = json.loads(data)
        state = str(raw["state"])
        if state not in ("Empty", "PreparingRebalance", "CompletingRebalance", "Stable"):
            raise ValueError(f"unknown group state {state!r}")
        return cls(
            cast(GroupStateName, state),
            int(raw["generation"]),
            str(raw["protocol_type"]),
            str(raw["protocol"]),
            None if raw["leader"] is None else str(raw["leader"]),
            {str(m): Member.from_json(str(m), v) for m, v in raw["members"].items()},
            int(raw["next_seq"]),
            int(raw["since_ms"]),
            {str(m): str(why) for m, why in raw["removed"].items()},
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


# ---------------------------------------------------------------------- transitions


def remove(state: GroupState, member_id: str, why: str, now_ms: int) -> None:
    """Drop ``member_id`` (remembering why), and rebalance the others."""
    if state.members.pop(member_id, None) is None:
        return
    state.removed.pop(member_id, None)
    state.removed[member_id] = why
    while len(state.removed) > TOMBSTONES:
        del state.removed[next(iter(state.removed))]
    if state.leader == member_id:
        state.leader = None
    prepare_rebalance(state, now_ms)


def prepare_rebalance(state: GroupState, now_ms: int) -> None:
    """Start a rebalance: every member must rejoin (no-op if one is under way)."""
    if state.state == "PreparingRebalance":
        return
    state.state = "PreparingRebalance"
    state.since_ms = now_ms
    for member in state.members.values():
        member.rejoined = False


def expire(state: GroupState, now_ms: int, dead: Set[str]) -> None:
    """Remove the ``dead`` members, and those that did not rejoin a rebalance within
    their ``rebalance_timeout_ms``; restart a rebalance whose leader never synced; then
    complete the rebalance if everyone left has rejoined."""
    for member_id in sorted(dead):
        remove(state, member_id, "expired", now_ms)
    if state.state == "PreparingRebalance":
        for member in state.ordered():
            if not member.rejoined and now_ms - state.since_ms > member.rebalance_timeout_ms:
                remove(state, member.member_id, "expired", now_ms)
    elif state.state == "CompletingRebalance" and state.members:
        limit = max(m.rebalance_timeout_ms for m in state.members.values())
        if now_ms - state.since_ms > limit:
            prepare_rebalance(state, now_ms)
    try_complete(state, now_ms)


def try_complete(state: GroupState, now_ms: int, completer: str | None = None) -> None:
    """Complete the rebalance once every member has rejoined: the next generation, the
    protocol every member supports (by vote, as Kafka picks it), and its leader: the
    member whose join completed it (``completer``: it is awake, so the assignment is
    computed at once, even when several members share one thread), else the old leader
    if it rejoined, else the first joiner. With no members left the group becomes
    Empty."""
    if state.state != "PreparingRebalance":
        return
    if any(not m.rejoined for m in state.members.values()):
        return
    state.generation += 1
    state.since_ms = now_ms
    if not state.members:
        state.state, state.protocol, state.leader = "Empty", "", None
        return
    ordered = state.ordered()
    state.protocol = choose_protocol(ordered)
    if completer in state.members:
        state.leader = completer
    elif state.leader not in state.members:
        state.leader = ordered[0].member_id
    state.state = "CompletingRebalance"
    for member in ordered:
        member.generation = state.generation
        member.assignment = b""
        member.synced = False


def common_protocols(members: list[Member]) -> list[str]:
    """Protocol names every one of ``members`` supports, in the first one's order."""
    if not members:
        return []
    names = [n for n, _ in members[0].protocols]
    for member in members[1:]:
        supported = {n for n, _ in member.protocols}
        names = [n for n in names if n in supported]
    return names


def choose_protocol(ordered: list[Member]) -> str:
    """Kafka's vote: each member votes for the first of its protocols that all support;
    the most votes wins, ties going to the first joiner's preference."""
    candidates = common_protocols(ordered)
    votes = dict.fromkeys(candidates, 0)
    for member in ordered:
        choice = next(n for n, _ in member.protocols if n in votes)
        votes[choice] += 1
    return max(candidates, key=lambda n: (votes[n], -candidates.index(n)))


def removed_error(
    st: GroupState, group: str, member_id: str
) -> FencedInstanceIdError | UnknownMemberIdError:
    """Why ``member_id`` may not act in ``group``: replaced, or not (any longer) in it."""
    why = st.removed.get(member_id, "")
    if why.startswith("fenced:"):
        return FencedInstanceIdError(
            f"member {member_id!r} of group {group!r} was fenced: a newer member joined "
            f"with its group_instance_id {why[len('fenced:'):]!r}",
            group,
        )
    if why == "expired":
        reason = "it missed its heartbeat or poll deadline, or its process died"
    elif why == "left":
        reason = "it left"
    else:
        reason = "it is not a member"
    return UnknownMemberIdError(
        f"member {member_id!r} is not in group {group!r} ({reason}); it lost its "
        f"partitions: rejoin with a new member id",
        group,
    )


def validate_member(st: GroupState, group: str, member_id: str, generation: int) -> Member:
    """The member, if it belongs to the group's current generation ``generation``.

    Raises:
        IllegalGenerationError: it is in another generation.
        UnknownMemberIdError, FencedInstanceIdError: it is not (any longer) in the group
            (:func:`removed_error`).
    """
    member = st.members.get(member_id)
    if member is None:
        raise removed_error(st, group, member_id)
    if generation != st.generation or member.generation != generation:
        raise IllegalGenerationError(
            f"member {member_id!r} of group {group!r} is in generation "
            f"{member.generation}, the request in {generation}, the group in "
            f"{st.generation}: it was fenced (rejoin before fetching or committing)",
            group,
        )
    return member
