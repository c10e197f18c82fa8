"""Consumer-group membership across processes, coordinated through files (no server).

A group lives in ``<root>/__groups/<group>/``:

* ``members/<member>.lock``: each member holds an exclusive ``flock`` on its own file for
  as long as it is in the group. The kernel drops it when the process dies (even by
  SIGKILL), so any member can tell a dead one from a live one by trying the lock.
* ``state``: JSON ``{generation, members: {id: [topics]}, assignment: {id: [[t, p]]}}``,
  replaced atomically, only while holding ``.lock`` (exclusive). Whoever changes the
  membership (a join, a leave, or finding a dead member) computes the new assignment with
  the group's assignor and bumps the generation; members notice the change at their next
  poll and take or give up partitions.
* ``owners/<topic>-<partition>.lock``: the member that reads a partition holds this lock.
  A newly assigned member takes a partition only once the previous owner has let go of it
  (after its revoke callback and final commit), so a partition never has two readers at
  once, and only the lock holder may commit its offset (generation fencing).

Liveness is checked every ``heartbeat_interval_ms`` (a third of ``session_timeout_ms`` by
default): a dead member's partitions move to the others within the session timeout.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from logstore.client.assignors import ASSIGNORS
from logstore.errors import InvalidConfigError, StorageError
from logstore.storage.files import FileSystem, LockFile
from logstore.types import TopicPartition

GROUPS_DIR = "__groups"
_PLAIN = re.compile(r"[a-zA-Z0-9._-]{1,200}")


def group_dir_name(group: str) -> str:
    """A file name for ``group``: itself when it is plain, else ``%`` + hex of its UTF-8."""
    if _PLAIN.fullmatch(group) and group not in (".", ".."):
        return group
    return "%" + group.encode("utf-8").hex()


def group_from_dir_name(name: str) -> str:
    return bytes.fromhex(name[1:]).decode("utf-8") if name.startswith("%") else name


@dataclass
class GroupState:
    generation: int = 0
    members: dict[str, list[str]] = field(default_factory=dict)
    assignment: dict[str, list[TopicPartition]] = field(default_factory=dict)
    assignor: str = "range"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "generation": self.generation,
                "assignor": self.assignor,
                "members": self.members,
                "assignment": {m: [list(tp) for tp in tps] for m, tps in self.assignment.items()},
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> GroupState:
        raw = json.loads(data)
        return cls(
            int(raw["generation"]),
            {str(m): [str(t) for t in ts] for m, ts in raw["members"].items()},
            {
                str(m): [TopicPartition(str(t), int(p)) for t, p in tps]
                for m, tps in raw["assignment"].items()
            },
            str(raw.get("assignor", "range")),
        )


class GroupFiles:
    """The files of one group, and the operations on them that hold the group lock."""

    def __init__(self, root: str, group: str, fs: FileSystem) -> None:
        self.group = group
        self.fs = fs
        self.directory = os.path.join(root, GROUPS_DIR, group_dir_name(group))
        for d in (
            os.path.join(root, GROUPS_DIR),
            self.directory,
            os.path.join(self.directory, "members"),
            os.path.join(self.directory, "owners"),
        ):
            fs.mkdir(d, exist_ok=True)
        self.state_path = os.path.join(self.directory, "state")
        self._lock = fs.lock_file(os.path.join(self.directory, ".lock"))
        self._mutex = threading.Lock()

    def member_lock_path(self, member: str) -> str:
        return os.path.join(self.directory, "members", f"{group_dir_name(member)}.lock")

    def owner_lock_path(self, tp: TopicPartition) -> str:
        return os.path.join(self.directory, "owners", f"{tp.topic}-{tp.partition}.lock")

    def read_state(self) -> GroupState:
        try:
            return GroupState.from_json(self.fs.read_file(self.state_path))
        except FileNotFoundError:
            return GroupState()
        except (ValueError, KeyError, TypeError) as err:
            raise StorageError(
                f"group state {self.state_path} is damaged: {err} (delete the file; the "
                f"members rejoin at their next poll)",
                self.state_path,
            ) from err

    def state_version(self) -> int:
        """Cheap change detector: the state file's modification time (ns) and size."""
        try:
            return self.fs.mtime_ms(self.state_path) * 1_000_003 + self.fs.size(self.state_path)
        except (FileNotFoundError, StorageError):
            return 0

    def is_alive(self, member: str) -> bool:
        """Whether ``member``'s process still holds its membership lock."""
        path = self.member_lock_path(member)
        if not self.fs.exists(path):
            return False
        probe = self.fs.lock_file(path)
        try:
            free = probe.acquire(blocking=False)
            if free:
                probe.release()
            return not free
        finally:
            probe.close()

    def change(
        self,
        *,
        add: tuple[str, list[str]] | None = None,
        remove: str | None = None,
        assignor: str,
        partitions: dict[str, int] | Callable[[], dict[str, int]],
    ) -> GroupState:
        """Under the group lock: drop dead members, apply ``add``/``remove``, and if the
        membership or a subscribed topic's partition count (``partitions``, or what it
        returns: called under the lock, so a member that read the registry before
        another member rebalanced for a grown topic cannot shrink the assignment back)
        changed, reassign and bump the generation. Returns the state."""
        with self._mutex:
            self._lock.acquire()
            try:
                if callable(partitions):
                    partitions = partitions()
                state = self.read_state()
                before = dict(state.members)
                for member in list(state.members):
                    if member != (add[0] if add else None) and not self.is_alive(member):
                        del state.members[member]
                if add is not None:
                    state.members[add[0]] = sorted(add[1])
                if remove is not None:
                    state.members.pop(remove, None)
                counts = {t: n for t, n in partitions.items() if n > 0}
                if state.members != before or state.assignor != assignor or any(
                    tp.topic in counts and tp.partition >= counts[tp.topic]
                    for tps in state.assignment.values()
                    for tp in tps
                ) or self._partitions_grew(state, counts):
                    if assignor not in ASSIGNORS:
                        raise InvalidConfigError(
                            f"unknown assignor {assignor!r} (use one of: "
                            f"{', '.join(ASSIGNORS)})"
                        )
                    subscriptions = {m: set(ts) for m, ts in state.members.items()}
                    wanted = {t: n for t, n in counts.items()
                              if any(t in ts for ts in subscriptions.values())}
                    state.assignment = ASSIGNORS[assignor](
                        subscriptions, wanted, state.assignment
                    )
                    state.assignor = assignor
                    state.generation += 1
                    self.fs.write_file_atomic(self.state_path, state.to_json())
                return state
            finally:
                self._lock.release()

    @staticmethod
    def _partitions_grew(state: GroupState, counts: dict[str, int]) -> bool:
        assigned: dict[str, int] = {}
        for tps in state.assignment.values():
            for tp in tps:
                assigned[tp.topic] = assigned.get(tp.topic, 0) + 1
        subscribed = {t for ts in state.members.values() for t in ts}
        return any(counts.get(t, 0) != assigned.get(t, 0) for t in subscribed if t in counts)

    def close(self) -> None:
        self._lock.close()


class Ownership:
    """The partitions this member holds the owner lock of."""

    def __init__(self, files: GroupFiles) -> None:
        self._files = files
        self._locks: dict[TopicPartition, LockFile] = {}

    def __contains__(self, tp: object) -> bool:
        return tp in self._locks

    @property
    def owned(self) -> set[TopicPartition]:
        return set(self._locks)

    def try_take(self, tp: TopicPartition) -> bool:
        lock = self._files.fs.lock_file(self._files.owner_lock_path(tp))
        if lock.acquire(blocking=False):
            self._locks[tp] = lock
            return True
        lock.close()
        return False

    def give_up(self, tp: TopicPartition) -> None:
        lock = self._locks.pop(tp, None)
        if lock is not None:
            lock.close()

    def give_up_all(self) -> None:
        for tp in list(self._locks):
            self.give_up(tp)
