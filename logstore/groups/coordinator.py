"""The group coordinator: Kafka's classic group protocol over files every process shares.

A group lives in ``<root>/__groups/<group_dir_name(group)>/``:

* ``.lock``: every change happens under this file's exclusive ``flock`` (and a thread
  mutex), so processes sharing the store take turns; a call never holds it while it
  waits.
* ``state``: the :class:`~logstore.groups.state.GroupState` (JSON) in the checksummed
  state-file format (:mod:`logstore.storage.statefile`, kind ``group-state``), replaced
  atomically. A damaged one is a :class:`~logstore.errors.CorruptionError` naming it.
* ``members/<member>.lock``: one small file per member, removed when the member leaves
  or is removed. It holds the member's last heartbeat time (8 bytes, big-endian ms of
  the coordinator's clock), rewritten in place at most every :data:`TOUCH_MS`. A
  ``"lock"`` member's process also holds an exclusive ``flock`` on it until it leaves
  or closes: the kernel drops it when the process dies (even by SIGKILL), so any process
  tells a dead member from a live one at once.

Liveness (:data:`~logstore.groups.state.Liveness`): a ``"lock"`` member is dead when its
lock is free or it has not heartbeated for its ``rebalance_timeout_ms`` (the client's
``max_poll_interval_ms``: a SIGSTOPped process loses its partitions); a ``"deadline"``
member when it has not heartbeated for its ``session_timeout_ms``.

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
import json
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from logstore.errors import (
    CorruptionError,
    FencedInstanceIdError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InvalidConfigError,
    RebalanceInProgressError,
    StorageError,
    StoreClosedError,
    UnknownMemberIdError,
)
from logstore.groups import state as sm
from logstore.groups.state import GroupState, Liveness, Member
from logstore.storage import statefile
from logstore.storage.files import FileHandle, FileSystem, LockFile
from logstore.types import Clock, GroupInfo, GroupMember, JoinResult, MemberInfo

GROUPS_DIR = "__groups"
STATE_KIND = "group-state"
TOUCH_MS = 1000
"""A member's heartbeat time is rewritten at most this often (and at least four times
per timeout, for short timeouts)."""
RACY_MS = 20
"""A state file changed this recently (by the wall clock) is re-read even when its
``stat`` looks unchanged: two writes within one millisecond may leave the same mtime
and size (git's "racy clean" problem)."""
_SWEEP_S = 0.05
"""While waiting, the state machine is advanced at least this often (seconds): a member
may die or time out without the state file changing."""
_HEARTBEAT = struct.Struct(">q")
_PLAIN = re.compile(r"[a-zA-Z0-9._-]{1,200}")

T = TypeVar("T")


def group_dir_name(group: str) -> str:
    """A file name for ``group`` (or a member id): itself when it is plain, else ``%`` +
    hex of its UTF-8."""
    if _PLAIN.fullmatch(group) and group not in (".", ".."):
        return group
    return "%" + group.encode("utf-8").hex()


def group_from_dir_name(name: str) -> str:
    """The group :func:`group_dir_name` made ``name`` from."""
    return bytes.fromhex(name[1:]).decode("utf-8") if name.startswith("%") else name


@dataclass
class _Local:
    """A member file this process has open: its heartbeat handle, and for a ``"lock"``
    member the lock it holds."""

    handle: FileHandle
    lock: LockFile | None
    touched_ms: int = 0

    def close(self) -> None:
        self.handle.close()
        if self.lock is not None:
            self.lock.close()


StatKey = tuple[int, int]


@dataclass
class _Group:
    """What this process keeps per group: paths, the lock, a cached state, local members."""

    name: str
    directory: str
    mutex: threading.RLock = field(default_factory=threading.RLock)
    lock: LockFile | None = None
    cached: tuple[StatKey, GroupState, bool] | None = None
    """``(stat of the state file, its state, whether the stat can be trusted)``."""
    local: dict[str, _Local] = field(default_factory=dict)

    @property
    def state_path(self) -> str:
        return os.path.join(self.directory, "state")

    @property
    def members_dir(self) -> str:
        return os.path.join(self.directory, "members")

    def member_path(self, member_id: str) -> str:
        return os.path.join(self.members_dir, f"{group_dir_name(member_id)}.lock")


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
        self._groups: dict[str, _Group] = {}
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

        def attempt(g: _Group, st: GroupState, now: int) -> JoinResult | None:
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

        def attempt(g: _Group, st: GroupState, now: int) -> bytes | None:
            member = _validate(st, group, member_id, generation)
            if st.state == "PreparingRebalance":
                raise RebalanceInProgressError(
                    f"group {group!r} is rebalancing: member {member_id!r} must rejoin",
                    group,
                )
            self._touch(g, member, now, force=True)
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

        def attempt(g: _Group, st: GroupState, now: int) -> None:
            member = _validate(st, group, member_id, generation)
            self._touch(g, member, now)
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

        def attempt(g: _Group, st: GroupState, now: int) -> None:
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
        st = self._load(g)
        if st is None:
            return GroupInfo(group, "Dead", "", "", 0, None, [])
        sm.expire(st, self._clock.now_ms(), self._dead(g, st, self._clock.now_ms()))
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
            st = self._load(g)
            if st is None:
                return
            now = self._clock.now_ms()
            sm.expire(st, now, self._dead(g, st, now))
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
        st = self._peek(g)
        _validate(st or GroupState(), member.group, member.member_id, member.generation)

    def changed(self, member: GroupMember) -> bool:
        """Whether the group moved on from ``member``'s generation: a rebalance started
        or completed, or the member was removed. Cheap (a ``stat`` when nothing changed
        since the last look); changes nothing and raises no fencing error. (A member
        that died is found by the next heartbeat, join or sync of any member.)"""
        g = self._group(member.group, create=False)
        st = self._peek(g)
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

        def validate(_g: _Group, st: GroupState, _now: int) -> Member:
            return _validate(st, member.group, member.member_id, member.generation)

        if not self._fs.is_dir(g.directory):
            validate(g, GroupState(), 0)  # no such group: refused, nothing created
        with self._locked(g):
            found = validate(g, self._peek(g) or GroupState(), 0)
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
                for local in g.local.values():
                    local.close()
                g.local.clear()
                if g.lock is not None:
                    g.lock.close()
                    g.lock = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the group coordinator is closed")

    # ------------------------------------------------------------------ the machinery

    def _directory(self, group: str) -> str:
        return os.path.join(self._root, group_dir_name(group))

    def _group(self, group: str, *, create: bool) -> _Group:
        self._check_open()
        with self._mutex:
            g = self._groups.get(group)
            if g is None:
                g = self._groups[group] = _Group(group, self._directory(group))
        if create and not self._fs.is_dir(g.members_dir):
            for d in (self._root, g.directory, g.members_dir):
                self._fs.mkdir(d, exist_ok=True)
        return g

    @contextlib.contextmanager
    def _locked(self, g: _Group) -> Iterator[None]:
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

    def _stat(self, g: _Group) -> StatKey | None:
        try:
            return self._fs.mtime_ms(g.state_path), self._fs.size(g.state_path)
        except (FileNotFoundError, StorageError):
            return None

    def _load(self, g: _Group) -> GroupState | None:
        """The group's stored state, to change (None: it has none).

        Raises:
            CorruptionError: the state file is damaged (naming it).
        """
        st = self._peek(g)
        return None if st is None else st.clone()

    def _peek(self, g: _Group) -> GroupState | None:
        """The group's stored state, not to be changed: the cached one when the state
        file's ``stat`` is unchanged (and was not "racily" recent), else read again.

        Raises:
            CorruptionError: the state file is damaged (naming it).
        """
        with g.mutex:
            cached = g.cached
            if cached is not None and cached[2] and self._stat(g) == cached[0]:
                return cached[1]
            return self._read(g)

    def _read(self, g: _Group) -> GroupState | None:
        wall = time.time_ns() // 1_000_000
        key = self._stat(g)
        try:
            payload = statefile.read_state(self._fs, g.state_path, STATE_KIND)
        except FileNotFoundError:
            g.cached = None
            return None
        except CorruptionError:
            legacy = self._legacy(g)
            if legacy is None:
                raise
            return legacy
        try:
            st = GroupState.from_json(payload)
        except (ValueError, KeyError, TypeError) as err:
            raise CorruptionError(
                f"group state {g.state_path} passes its checksum but is not a group "
                f"state ({err}); remove it (the members rejoin at their next poll)",
                g.state_path,
                0,
            ) from err
        if key is not None and key == self._stat(g):
            g.cached = (key, st, wall - key[0] > RACY_MS)
        return st

    def _legacy(self, g: _Group) -> GroupState | None:
        """A state file of the file-based groups before this coordinator (plain JSON,
        ``{"generation": N, ...}``): read as an empty group of that generation, so a
        member of the old code is fenced and the generations keep increasing."""
        try:
            raw = json.loads(self._fs.read_file(g.state_path))
            return GroupState(generation=int(raw["generation"]))
        except (ValueError, KeyError, TypeError, FileNotFoundError):
            return None

    def _dead(self, g: _Group, st: GroupState, now: int) -> set[str]:
        return {m.member_id for m in st.members.values() if not self._alive(g, m, now)}

    def _alive(self, g: _Group, member: Member, now: int) -> bool:
        path = g.member_path(member.member_id)
        local = g.local.get(member.member_id)
        held = local is not None and local.lock is not None
        beat = local.touched_ms if local is not None and held else self._read_heartbeat(path)
        if beat is None:
            return False
        if member.liveness == "deadline":
            return now - beat <= member.session_timeout_ms
        if now - beat > member.rebalance_timeout_ms:
            return False
        if held:
            return True
        probe = self._fs.lock_file(path)
        try:
            free = probe.acquire(blocking=False)
            if free:
                probe.release()
            return not free
        finally:
            probe.close()

    def _read_heartbeat(self, path: str) -> int | None:
        try:
            with self._fs.open(path, writable=False) as handle:
                data = handle.pread(_HEARTBEAT.size, 0)
        except (FileNotFoundError, StorageError):
            return None
        if len(data) < _HEARTBEAT.size:
            return None
        return int(_HEARTBEAT.unpack(data)[0])

    def _touch(self, g: _Group, member: Member, now: int, *, force: bool = False) -> None:
        """Write the member's heartbeat time (at most every :data:`TOUCH_MS`)."""
        local = g.local.get(member.member_id)
        if local is None:
            local = self._open_member(g, member, take_lock=False)
        timeout = (
            member.session_timeout_ms if member.liveness == "deadline"
            else member.rebalance_timeout_ms
        )
        if force or now - local.touched_ms >= min(TOUCH_MS, max(1, timeout // 4)):
            local.handle.write_at(_HEARTBEAT.pack(now), 0)
            local.touched_ms = now

    def _open_member(self, g: _Group, member: Member, *, take_lock: bool) -> _Local:
        path = g.member_path(member.member_id)
        lock = None
        if take_lock:
            lock = self._fs.lock_file(path)
            if not lock.acquire(blocking=False):
                lock.close()
                raise InvalidConfigError(
                    f"member id {member.member_id!r} of group {g.name!r} is in use by "
                    f"another live process (give each consumer its own member id)"
                )
        local = g.local[member.member_id] = _Local(self._fs.open(path, create=True), lock)
        return local

    def _forget_local(self, g: _Group, member_id: str) -> None:
        local = g.local.pop(member_id, None)
        if local is not None:
            local.close()

    def _join(
        self, g: _Group, st: GroupState, now: int, wanted: Member, protocol_type: str
    ) -> None:
        member_id = wanted.member_id
        if member_id not in st.members and member_id in st.removed:
            self._forget_local(g, member_id)
            raise _removed_error(st, g.name, member_id)
        others = [m for m in st.ordered() if m.member_id != member_id]
        if others and protocol_type != st.protocol_type:
            raise InvalidConfigError(
                f"member {member_id!r} joins group {g.name!r} with protocol type "
                f"{protocol_type!r}, but its members use {st.protocol_type!r}"
            )
        if others and not sm.common_protocols([*others, wanted]):
            raise InvalidConfigError(
                f"member {member_id!r} supports none of the protocols of group "
                f"{g.name!r} ({', '.join(sm.common_protocols(others))}): Kafka's "
                f"INCONSISTENT_GROUP_PROTOCOL"
            )
        if wanted.group_instance_id is not None:
            for old in others:
                if old.group_instance_id == wanted.group_instance_id:
                    sm.remove(st, old.member_id, f"fenced:{old.group_instance_id}", now)
        existing = st.members.get(member_id)
        if existing is None:
            local = g.local.get(member_id)
            if local is None or local.lock is None or not local.handle.still_named():
                # (a lock held on a file since deleted, by delete(), would look dead)
                self._forget_local(g, member_id)
                self._open_member(g, wanted, take_lock=wanted.liveness == "lock")
            wanted.join_seq = st.next_seq
            st.next_seq += 1
            st.members[member_id] = wanted
            st.protocol_type = protocol_type
            sm.prepare_rebalance(st, now)
            wanted.rejoined = True
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
        self._touch(g, st.members[member_id], now, force=True)

    def _mutate(
        self,
        group: str,
        attempt: Callable[[_Group, GroupState, int], T],
        *,
        create: bool,
    ) -> T:
        g = self._group(group, create=create)
        if not create and not self._fs.is_dir(g.directory):
            return attempt(g, GroupState(), self._clock.now_ms())  # refused: no group
        with self._locked(g):
            return self._advance_and_store(g, attempt)

    def _advance_and_store(
        self, g: _Group, attempt: Callable[[_Group, GroupState, int], T]
    ) -> T:
        """Under the lock: load, expire dead members, run ``attempt``, store what changed
        (even when ``attempt`` raises: the expiry stands), drop removed members' files."""
        before = self._peek(g) or GroupState()
        st = before.clone()
        members_before = set(st.members)
        now = self._clock.now_ms()
        sm.expire(st, now, self._dead(g, st, now))
        try:
            return attempt(g, st, now)
        finally:
            if st != before:
                statefile.write_state(self._fs, g.state_path, STATE_KIND, st.to_json())
                g.cached = None
            for gone in members_before - set(st.members):
                self._forget_local(g, gone)
                self._fs.unlink(g.member_path(gone), missing_ok=True)

    def _waiting(
        self,
        group: str,
        attempt: Callable[[_Group, GroupState, int], T | None],
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
                key = self._stat(g)
            if result is not None or time.monotonic() >= deadline:
                return result
            swept = time.monotonic()
            while time.monotonic() < min(deadline, swept + _SWEEP_S):
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 0.01)
                if self._stat(g) != key:
                    break


def _removed_error(
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


def _validate(st: GroupState, group: str, member_id: str, generation: int) -> Member:
    """The member, if it belongs to the group's current generation ``generation``."""
    member = st.members.get(member_id)
    if member is None:
        raise _removed_error(st, group, member_id)
    if generation != st.generation or member.generation != generation:
        raise IllegalGenerationError(
            f"member {member_id!r} of group {group!r} is in generation "
            f"{member.generation}, the request in {generation}, the group in "
            f"{st.generation}: it was fenced (rejoin before fetching or committing)",
            group,
        )
    return member
