"""A group's files: its state file (with a stat cache) and its members' heartbeat files.

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

This module reads and writes those files (through the
:class:`~logstore.storage.files.FileSystem` seam); it takes no group lock and runs no
protocol: :mod:`logstore.groups.coordinator` does, holding the lock around these calls.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import time
from dataclasses import dataclass, field

from logstore.errors import CorruptionError, InvalidConfigError, StorageError
from logstore.groups.state import GroupState, Member
from logstore.storage import statefile
from logstore.storage.files import FileHandle, FileSystem, LockFile

GROUPS_DIR = "__groups"
STATE_KIND = "group-state"
TOUCH_MS = 1000
"""A member's heartbeat time is rewritten at most this often (and at least four times
per timeout, for short timeouts)."""
RACY_MS = 20
"""A state file changed this recently (by the wall clock) is re-read even when its
``stat`` looks unchanged: two writes within one millisecond may leave the same mtime
and size (git's "racy clean" problem)."""
_HEARTBEAT = struct.Struct(">q")
_PLAIN = re.compile(r"[a-zA-Z0-9._-]{1,200}")

StatKey = tuple[int, int]
"""``(mtime in ms, size)`` of a state file: unchanged, its cached state still holds."""


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
class LocalMember:
    """A member file this process has open: its heartbeat handle, and for a ``"lock"``
    member the lock it holds."""

    handle: FileHandle
    lock: LockFile | None
    touched_ms: int = 0

    def close(self) -> None:
        """Close the heartbeat handle and release the member lock (if held)."""
        self.handle.close()
        if self.lock is not None:
            self.lock.close()


@dataclass
class GroupFiles:
    """What this process keeps per group: paths, the lock, a cached state, local members.

    The caller holds :attr:`mutex` (and, to change anything, the group's ``.lock``
    in :attr:`lock`) around every method that touches the files.
    """

    name: str
    directory: str
    fs: FileSystem
    mutex: threading.RLock = field(default_factory=threading.RLock)
    lock: LockFile | None = None
    cached: tuple[StatKey, GroupState, bool] | None = None
    """``(stat of the state file, its state, whether the stat can be trusted)``."""
    local: dict[str, LocalMember] = field(default_factory=dict)

    @property
    def state_path(self) -> str:
        """The group's state file."""
        return os.path.join(self.directory, "state")

    @property
    def members_dir(self) -> str:
        """The directory of the group's member files."""
        return os.path.join(self.directory, "members")

    def member_path(self, member_id: str) -> str:
        """Member ``member_id``'s heartbeat (and lock) file."""
        return os.path.join(self.members_dir, f"{group_dir_name(member_id)}.lock")

    # ------------------------------------------------------------------ the state file

    def stat(self) -> StatKey | None:
        """The state file's :data:`StatKey` (None: it cannot be stat'ed)."""
        try:
            return self.fs.mtime_ms(self.state_path), self.fs.size(self.state_path)
        except (FileNotFoundError, StorageError):
            return None

    def load(self) -> GroupState | None:
        """The group's stored state, to change (None: it has none).

        Raises:
            CorruptionError: the state file is damaged (naming it).
        """
        st = self.peek()
        return None if st is None else st.clone()

    def peek(self) -> GroupState | None:
        """The group's stored state, not to be changed: the cached one when the state
        file's ``stat`` is unchanged (and was not "racily" recent), else read again.

        Raises:
            CorruptionError: the state file is damaged (naming it).
        """
        with self.mutex:
            cached = self.cached
            if cached is not None and cached[2] and self.stat() == cached[0]:
                return cached[1]
            return self._read()

    def store(self, st: GroupState) -> None:
        """Replace the state file with ``st`` (atomically) and drop the cached state."""
        statefile.write_state(self.fs, self.state_path, STATE_KIND, st.to_json())
        self.cached = None

    def _read(self) -> GroupState | None:
        wall = time.time_ns() // 1_000_000
        key = self.stat()
        try:
            payload = statefile.read_state(self.fs, self.state_path, STATE_KIND)
        except FileNotFoundError:
            self.cached = None
            return None
        except CorruptionError:
            legacy = self._legacy()
            if legacy is None:
                raise
            return legacy
        try:
            st = GroupState.from_json(payload)
        except (ValueError, KeyError, TypeError) as err:
            raise CorruptionError(
                f"group state {self.state_path} passes its checksum but is not a group "
                f"state ({err}); remove it (the members rejoin at their next poll)",
                self.state_path,
                0,
            ) from err
        if key is not None and key == self.stat():
            self.cached = (key, st, wall - key[0] > RACY_MS)
        return st

    def _legacy(self) -> GroupState | None:
        """A state file of the file-based groups before this coordinator (plain JSON,
        ``{"generation": N, ...}``): read as an empty group of that generation, so a
        member of the old code is fenced and the generations keep increasing."""
        try:
            raw = json.loads(self.fs.read_file(self.state_path))
            return GroupState(generation=int(raw["generation"]))
        except (ValueError, KeyError, TypeError, FileNotFoundError):
            return None

    # ------------------------------------------------------------------ member files

    def dead(self, st: GroupState, now: int) -> set[str]:
        """The members of ``st`` that are dead at ``now`` (see the module docstring)."""
        return {m.member_id for m in st.members.values() if not self.alive(m, now)}

    def alive(self, member: Member, now: int) -> bool:
        """Whether ``member`` is alive at ``now``: its heartbeat time and, for a
        ``"lock"`` member another process holds, a probe of its lock."""
        path = self.member_path(member.member_id)
        local = self.local.get(member.member_id)
        held = local is not None and local.lock is not None
        beat = local.touched_ms if local is not None and held else self._heartbeat(path)
        if beat is None:
            return False
        if member.liveness == "deadline":
            return now - beat <= member.session_timeout_ms
        if now - beat > member.rebalance_timeout_ms:
            return False
        if held:
            return True
        probe = self.fs.lock_file(path)
        try:
            free = probe.acquire(blocking=False)
            if free:
                probe.release()
            return not free
        finally:
            probe.close()

    def _heartbeat(self, path: str) -> int | None:
        try:
            with self.fs.open(path, writable=False) as handle:
                data = handle.pread(_HEARTBEAT.size, 0)
        except (FileNotFoundError, StorageError):
            return None
        if len(data) < _HEARTBEAT.size:
            return None
        return int(_HEARTBEAT.unpack(data)[0])

    def touch(self, member: Member, now: int, *, force: bool = False) -> None:
        """Write the member's heartbeat time (at most every :data:`TOUCH_MS`)."""
        local = self.local.get(member.member_id)
        if local is None:
            local = self.open_member(member, take_lock=False)
        timeout = (
            member.session_timeout_ms if member.liveness == "deadline"
            else member.rebalance_timeout_ms
        )
        if force or now - local.touched_ms >= min(TOUCH_MS, max(1, timeout // 4)):
            local.handle.write_at(_HEARTBEAT.pack(now), 0)
            local.touched_ms = now

    def open_member(self, member: Member, *, take_lock: bool) -> LocalMember:
        """Open (creating it) ``member``'s file, taking its lock if ``take_lock``.

        Raises:
            InvalidConfigError: the lock is held by another live process.
        """
        path = self.member_path(member.member_id)
        lock = None
        if take_lock:
            lock = self.fs.lock_file(path)
            if not lock.acquire(blocking=False):
                lock.close()
                raise InvalidConfigError(
                    f"member id {member.member_id!r} of group {self.name!r} is in use by "
                    f"another live process (give each consumer its own member id)"
                )
        local = self.local[member.member_id] = LocalMember(
            self.fs.open(path, create=True), lock
        )
        return local

    def forget_local(self, member_id: str) -> None:
        """Close this process's file (and lock) of ``member_id``, if it has one open."""
        local = self.local.pop(member_id, None)
        if local is not None:
            local.close()

    def close_local(self) -> None:
        """Close every member file and the group lock this process holds."""
        for local in self.local.values():
            local.close()
        self.local.clear()
        if self.lock is not None:
            self.lock.close()
            self.lock = None
