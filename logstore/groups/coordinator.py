"""The group coordinator: Kafka's classic group protocol over files every process shares.

The files a group lives in (its lock, state file and member files) and how a member's
liveness is judged: :mod:`logstore.groups.files`.

There is no background thread: every call advances the state machine under the lock
(removes dead members, completes rebalances) before it does its own work. Calls that
wait for others (``join``, ``sync``) wait at most ``wait_ms``, polling with short sleeps
and a cheap ``stat`` of the state file between, and return None for "not yet: call
again", so several members may share one thread.

Fencing: :meth:`GroupCoordinator.check` (a ``stat`` when nothing changed) and
:meth:`GroupCoordinator.fenced` (under the lock, around an offsets commit) refuse a
member of an older generation (:class:`~logstore.errors.IllegalGenerationError`), one
no longer in the group (:class:`~logstore.errors.UnknownMemberIdError`) or one replaced
by a newer member with its ``group_instance_id``
(:class:`~logstore.errors.FencedInstanceIdError`). Members of the current generation may
commit during PreparingRebalance, before they rejoin (as in Kafka).

This package knows files (through the :class:`~logstore.storage.files.FileSystem` seam),
not topics, offsets or clients.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from logstore.errors import (
    GroupNotEmptyError,
    InvalidConfigError,
    RebalanceInProgressError,
    StoreClosedError,
)
from logstore.groups import state as sm
from logstore.groups.files import GROUPS_DIR, GroupFiles, group_dir_name, group_from_dir_name
from logstore.groups.state import GroupState, Liveness, Member
from logstore.storage.files import FileSystem
from logstore.types import Clock, GroupInfo, GroupMember, JoinResult, MemberInfo

_SWEEP_S = 0.05
"""While waiting, the state machine is advanced at least this often (seconds): a member
may die or time out without the state file changing."""

T = TypeVar("T")


class GroupCoordinator:
    """Consumer groups of one store, shared by every process that opens it.

    Thread-safe. Protocol metadata and assignments are opaque bytes.

    Args:
        root: the store's directory (groups live in ``<root>/__groups``).
        fs: the file system seam.
        clock: the time for heartbeats and timeouts (tests pass a fake one).
    """

    def __init__(self, root: str, fs: FileSystem, clock: Clock) -> None:
        self._root = os.path.join(root, GROUPS_DIR)
        self._fs = fs
        self._clock = clock
        self._groups: dict[str, GroupFiles] = {}
        self._mutex = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ group protocol

    def join(
        self,
        group: str,
        member_id: str,
        *,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        group_instance_id: str | None = None,
        liveness: Liveness = "lock",
        wait_ms: int = 0,
    ) -> JoinResult | None:
        """Join (or rejoin) ``group`` (Kafka's JoinGroup).

        A new member, changed protocols, or a member rejoining after it received its
        assignment in the current generation (it wants a rebalance: a topic grew, it
        revoked partitions) start a rebalance; a member that has not received its
        assignment yet and rejoins with the same protocols gets the current generation.
        The rebalance completes once every member has rejoined or was removed (dead,
        or silent past its ``rebalance_timeout_ms``).

        Returns:
            The completed generation (with every member's metadata for the leader), or
            None if it has not completed within ``wait_ms``: call again.

        Raises:
            UnknownMemberIdError: ``member_id`` was removed from the group (it left,
                or missed its deadline): it lost its partitions; join with a new id.
            FencedInstanceIdError: a newer member took its ``group_instance_id``.
            InvalidConfigError: no protocol in common with the group's members, another
                ``protocol_type``, bad timeouts, or the member id held by another live
                process.
        """
        if not protocols:
            raise InvalidConfigError(f"join of group {group!r} needs at least one protocol")
        if session_timeout_ms < 1 or rebalance_timeout_ms < 1:
            raise InvalidConfigError(
                f"session_timeout_ms={session_timeout_ms} and rebalance_timeout_ms="
                f"{rebalance_timeout_ms} must be positive"
            )
        wanted = Member(
            member_id, group_instance_id, [(n, bytes(m)) for n, m in protocols],
            session_timeout_ms, rebalance_timeout_ms, liveness, 0,
        )

        def attempt(g: GroupFiles, st: GroupState, now: int) -> JoinResult | None:
            self._join(g, st, now, wanted, protocol_type)
            return st.join_result(member_id)

        return self._waiting(group, attempt, wait_ms, create=True)

    def sync(
        self,
        group: str,
        member_id: str,
        generation: int,
        assignments: Mapping[str, bytes],
        *,
        wait_ms: int = 0,
    ) -> bytes | None:
        """This member's assignment in ``generation`` (Kafka's SyncGroup). The leader
        passes every member's; the others pass none and get None until the leader has
        synced (after ``wait_ms``: call again).

        Raises:
            RebalanceInProgressError: a new rebalance started: rejoin.
            IllegalGenerationError, UnknownMemberIdError, FencedInstanceIdError: fenced.
        """

        def attempt(g: GroupFiles, st: GroupState, now: int) -> bytes | None:
            member = sm.validate_member(st, group, member_id, generation)
            if st.state == "PreparingRebalance":
                raise RebalanceInProgressError(
                    f"group {group!r} is rebalancing: member {member_id!r} must rejoin",
                    group,
                )
            g.touch(member, now, force=True)
            if st.state == "CompletingRebalance":
                if member_id != st.leader:
                    return None
                for m in st.members.values():
                    m.assignment = bytes(assignments.get(m.member_id, b""))
                st.state, st.since_ms = "Stable", now
            member.synced = True
            return member.assignment

        return self._waiting(group, attempt, wait_ms, create=False)

    def heartbeat(self, group: str, member_id: str, generation: int) -> None:
        """Record that the member is alive and polling (Kafka's Heartbeat).

        Raises:
            RebalanceInProgressError: a rebalance started: rejoin (the member may still
                commit what it processed first).
            IllegalGenerationError, UnknownMemberIdError, FencedInstanceIdError: fenced:
                the member lost its partitions.
        """

        def attempt(g: GroupFiles, st: GroupState, now: int) -> None:
            member = sm.validate_member(st, group, member_id, generation)
            g.touch(member, now)
            if st.state == "PreparingRebalance":
                raise RebalanceInProgressError(
                    f"group {group!r} is rebalancing (generation {generation} ends): "
                    f"member {member_id!r} must rejoin",
                    group,
                )

        self._mutate(group, attempt, create=False)

    def leave(self, group: str, member_id: str) -> None:
        """Leave ``group`` (Kafka's LeaveGroup): the others rebalance at once. Leaving a
        group one is not (any longer) a member of does nothing."""

        def attempt(g: GroupFiles, st: GroupState, now: int) -> None:
            sm.remove(st, member_id, "left", now)
            sm.try_complete(st, now)

        if self._fs.is_dir(self._directory(group)):
            self._mutate(group, attempt, create=False)

    def describe(self, group: str) -> GroupInfo:
        """``group`` as it is now (Kafka's DescribeGroups), dead members left out; state
        ``"Dead"`` with no members if there is no such group. Writes nothing.

        Raises:
            CorruptionError: its state file is damaged.
        """
        g = self._group(group, create=False)
        st = g.load()
        if st is None:
            return GroupInfo(group, "Dead", "", "", 0, None, [])
        sm.expire(st, self._clock.now_ms(), g.dead(st, self._clock.now_ms()))
        members = [
            MemberInfo(
                m.member_id,
                m.group_instance_id,
                m.metadata(st.protocol or m.protocols[0][0]),
                m.assignment,
            )
            for m in st.ordered()
        ]
        return GroupInfo(
            group, st.state, st.protocol_type, st.protocol, st.generation, st.leader, members
        )

    def list_groups(self) -> list[str]:
        """Every group that has a state (members or not)."""
        self._check_open()
        try:
            names = self._fs.listdir(self._root)
        except FileNotFoundError:
            return []
        return sorted(
            group_from_dir_name(name)
            for name in names
            if self._fs.exists(os.path.join(self._root, name, "state"))
        )

    def delete(self, group: str) -> None:
        """Forget ``group``'s membership: its state and member files. (Its directory and
        lock file stay: a process waiting for that lock must never end up holding a lock
        on a deleted file while another locks a new one.)

        Raises:
            GroupNotEmptyError: it has live members.
        """
        if not self._fs.is_dir(self._directory(group)):
            return
        g = self._group(group, create=False)
        with self._locked(g):
            st = g.load()
            if st is None:
                return
            now = self._clock.now_ms()
            sm.expire(st, now, g.dead(st, now))
            if st.members:
                raise GroupNotEmptyError(
                    f"group {group!r} has {len(st.members)} live member(s) "
                    f"({', '.join(sorted(st.members))}); stop them before deleting it",
                    group,
                )
            self._fs.unlink(g.state_path, missing_ok=True)
            g.cached = None
            with contextlib.suppress(FileNotFoundError):
                for name in self._fs.listdir(g.members_dir):
                    self._fs.unlink(os.path.join(g.members_dir, name), missing_ok=True)

    # ------------------------------------------------------------------ fencing

    def check(self, member: GroupMember) -> None:
        """Refuse a fetch by a fenced member. Cheap: a ``stat`` of the state file when
        nothing changed since the last look.

        Raises:
            IllegalGenerationError: ``member.generation`` is not the group's current one.
            UnknownMemberIdError: the member is not (any longer) in the group.
            FencedInstanceIdError: a newer member took its ``group_instance_id``.
        """
        g = self._group(member.group, create=False)
        st = g.peek()
        sm.validate_member(st or GroupState(), member.group, member.member_id, member.generation)

    def changed(self, member: GroupMember) -> bool:
        """Whether the group moved on from ``member``'s generation: a rebalance started
        or completed, or the member was removed. Cheap (a ``stat`` when nothing changed
        since the last look); changes nothing and raises no fencing error. (A member
        that died is found by the next heartbeat, join or sync of any member.)"""
        g = self._group(member.group, create=False)
        st = g.peek()
        return (
            st is None
            or st.state != "Stable"
            or st.generation != member.generation
            or member.member_id not in st.members
        )

    @contextlib.contextmanager
    def fenced(self, member: GroupMember) -> Iterator[None]:
        """Hold the group's lock after checking ``member`` (as :meth:`check`, against the
        state advanced now): a commit made inside can never land after a newer
        generation completed.

        Raises:
            IllegalGenerationError, UnknownMemberIdError, FencedInstanceIdError: fenced;
                the body does not run.
        """
        g = self._group(member.group, create=False)

        def validate(_g: GroupFiles, st: GroupState, _now: int) -> Member:
            return sm.validate_member(st, member.group, member.member_id, member.generation)

        if not self._fs.is_dir(g.directory):
            validate(g, GroupState(), 0)  # no such group: refused, nothing created
        with self._locked(g):
            found = validate(g, g.peek() or GroupState(), 0)
            local = g.local.get(member.member_id)
            if (
                local is None
                or local.lock is None
                or self._clock.now_ms() - local.touched_ms > found.rebalance_timeout_ms
            ):
                # not a live member of this process: judge its liveness (and store
                # the verdict) before it may commit
                self._advance_and_store(g, validate)
            yield

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the member locks and files this process holds (the members stay in
        their groups until another process finds their locks free). Idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            groups = list(self._groups.values())
        for g in groups:
            with g.mutex:
                g.close_local()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the group coordinator is closed")

    # ------------------------------------------------------------------ the machinery

    def _directory(self, group: str) -> str:
        return os.path.join(self._root, group_dir_name(group))

    def _group(self, group: str, *, create: bool) -> GroupFiles:
        self._check_open()
        with self._mutex:
            g = self._groups.get(group)
            if g is None:
                g = self._groups[group] = GroupFiles(group, self._directory(group), self._fs)
        if create and not self._fs.is_dir(g.members_dir):
            for d in (self._root, g.directory, g.members_dir):
                self._fs.mkdir(d, exist_ok=True)
        return g

    @contextlib.contextmanager
    def _locked(self, g: GroupFiles) -> Iterator[None]:
        with g.mutex:
            self._check_open()
            if g.lock is None:
                if not self._fs.is_dir(g.directory):
                    self._fs.mkdir(self._root, exist_ok=True)
                    self._fs.mkdir(g.directory, exist_ok=True)
                g.lock = self._fs.lock_file(os.path.join(g.directory, ".lock"))
            g.lock.acquire()
            try:
                yield
            finally:
                g.lock.release()

    def _join(
        self, g: GroupFiles, st: GroupState, now: int, wanted: Member, protocol_type: str
    ) -> None:
        member_id = wanted.member_id
        if member_id not in st.members and member_id in st.removed:
            g.forget_local(member_id)
            raise sm.removed_error(st, g.name, member_id)
        others = [m for m in st.ordered() if m.member_id != member_id]
        _check_joinable(g.name, st, others, wanted, protocol_type)
        if wanted.group_instance_id is not None:
            for old in others:
                if old.group_instance_id == wanted.group_instance_id:
                    sm.remove(st, old.member_id, f"fenced:{old.group_instance_id}", now)
        existing = st.members.get(member_id)
        if existing is None:
            self._add_member(g, st, now, wanted, protocol_type)
        else:
            changed = existing.protocols != wanted.protocols
            existing.protocols = wanted.protocols
            existing.session_timeout_ms = wanted.session_timeout_ms
            existing.rebalance_timeout_ms = wanted.rebalance_timeout_ms
            existing.group_instance_id = wanted.group_instance_id
            if st.state != "PreparingRebalance" and (changed or existing.synced):
                sm.prepare_rebalance(st, now)
            existing.rejoined = True
        sm.try_complete(st, now, completer=member_id)
        g.touch(st.members[member_id], now, force=True)

    def _add_member(
        self, g: GroupFiles, st: GroupState, now: int, wanted: Member, protocol_type: str
    ) -> None:
        """Add new member ``wanted`` (opening its file, and lock) and start a rebalance."""
        member_id = wanted.member_id
        local = g.local.get(member_id)
        if local is None or local.lock is None or not local.handle.still_named():
            # (a lock held on a file since deleted, by delete(), would look dead)
            g.forget_local(member_id)
            g.open_member(wanted, take_lock=wanted.liveness == "lock")
        wanted.join_seq = st.next_seq
        st.next_seq += 1
        st.members[member_id] = wanted
        st.protocol_type = protocol_type
        sm.prepare_rebalance(st, now)
        wanted.rejoined = True

    def _mutate(
        self,
        group: str,
        attempt: Callable[[GroupFiles, GroupState, int], T],
        *,
        create: bool,
    ) -> T:
        g = self._group(group, create=create)
        if not create and not self._fs.is_dir(g.directory):
            return attempt(g, GroupState(), self._clock.now_ms())  # refused: no group
        with self._locked(g):
            return self._advance_and_store(g, attempt)

    def _advance_and_store(
        self, g: GroupFiles, attempt: Callable[[GroupFiles, GroupState, int], T]
    ) -> T:
        """Under the lock: load, expire dead members, run ``attempt``, store what changed
        (even when ``attempt`` raises: the expiry stands), drop removed members' files."""
        before = g.peek() or GroupState()
        st = before.clone()
        members_before = set(st.members)
        now = self._clock.now_ms()
        sm.expire(st, now, g.dead(st, now))
        try:
            return attempt(g, st, now)
        finally:
            if st != before:
                g.store(st)
            for gone in members_before - set(st.members):
                g.forget_local(gone)
                self._fs.unlink(g.member_path(gone), missing_ok=True)

    def _waiting(
        self,
        group: str,
        attempt: Callable[[GroupFiles, GroupState, int], T | None],
        wait_ms: int,
        *,
        create: bool,
    ) -> T | None:
        """Run ``attempt`` under the lock until it answers or ``wait_ms`` passed; between
        tries, sleep briefly, retrying at once when the state file changes."""
        deadline = time.monotonic() + max(0, wait_ms) / 1000
        g = self._group(group, create=create)
        if not create and not self._fs.is_dir(g.directory):
            return attempt(g, GroupState(), self._clock.now_ms())  # refused: no group
        pause = 0.001
        while True:
            with self._locked(g):
                result = self._advance_and_store(g, attempt)
                key = g.stat()
            if result is not None or time.monotonic() >= deadline:
                return result
            swept = time.monotonic()
            while time.monotonic() < min(deadline, swept + _SWEEP_S):
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 0.01)
                if g.stat() != key:
                    break


def _check_joinable(
    group: str, st: GroupState, others: list[Member], wanted: Member, protocol_type: str
) -> None:
    """Refuse ``wanted`` joining ``group`` with ``others`` in it: another protocol type,
    or no protocol in common (Kafka's INCONSISTENT_GROUP_PROTOCOL)."""
    member_id = wanted.member_id
    if others and protocol_type != st.protocol_type:
        raise InvalidConfigError(
            f"member {member_id!r} joins group {group!r} with protocol type "
            f"{protocol_type!r}, but its members use {st.protocol_type!r}"
        )
    if others and not sm.common_protocols([*others, wanted]):
        raise InvalidConfigError(
            f"member {member_id!r} supports none of the protocols of group "
            f"{group!r} ({', '.join(sm.common_protocols(others))}): Kafka's "
            f"INCONSISTENT_GROUP_PROTOCOL"
        )
