"""Simulated power loss (reliability.md §3(b)): record a workload's file operations, then
rebuild the crash states POSIX allows at each point of the trace.

:class:`RecordingFS` is a :class:`~logstore.storage.files.FileSystem` that performs every
operation on the real files (so the workload runs normally) and appends each mutating one
to :attr:`RecordingFS.trace`: creations (an ``open`` or lock-file open that made the file),
``pwritev`` (path, position and the bytes written), ``ftruncate``, ``fsync``, directory
``fsync``, ``rename``, ``unlink``, ``mkdir`` and ``rmdir``. The workload adds markers:
:meth:`RecordingFS.note` before an operation starts and :meth:`RecordingFS.ack` after it
returns, so the checker knows what the user had been told at every crash point. Real
``fsync`` calls are skipped: durability of the live files does not matter, only the model.

The model (:class:`CrashModel`), per file system object (inode):

* a file has durable content plus pending writes and truncates; ``fsync`` of the file makes
  all of them durable;
* creations, renames, unlinks, ``mkdir`` and ``rmdir`` are pending in their directory until
  that directory is fsynced: an unsynced new file may vanish, an unsynced rename shows the
  old or the new name, an unsynced unlink may be undone;
* order is kept where it must be: a directory operation depends on the earlier pending ones
  on the same names (``create a; rename a b`` never shows ``b`` without ``a`` having been
  created), a dependency becomes durable with what depends on it, and data written to a file
  no surviving name reaches is simply gone.

Crash points are the moments after each mutating operation (and before the first). For each
:meth:`CrashModel.states` yields

* ``drop``: every pending operation dropped (only what was synced survives);
* ``apply``: every pending operation applied (what a ``kill -9`` leaves);
* ``torn``: when the next operation is a write, the crash lands inside it: that write torn
  at 0, 1 and len-1 bytes, at each 512-byte boundary and at 3 seeded random points, with
  the unwritten part of the extension reading as zeros, as garbage, or missing (the file
  not extended), over both of the above;
* ``subset``/``omit``/``prefix``: just before each ``fsync``/directory ``fsync`` (and at the
  end), where the set of pending operations is largest: every subset of them when there are
  at most 10, else 256 seeded random subsets plus every single-omission state (ALICE) and
  every in-order prefix. A subset possible at an earlier crash point is also a subset of the
  pending set at the next sync point (nothing became durable in between), where the checker
  knows at least as many acknowledgements, so checking it there is the stronger check.

States are deduplicated by a hash of their whole content (names, kinds and bytes).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import random
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from logstore.storage.files import Buffer, FileHandle, FileSystem

ROOT_INODE = 0

DATA_KINDS = frozenset({"write", "truncate"})
DIR_KINDS = frozenset({"create", "mkdir", "rename", "unlink", "rmdir"})
SYNC_KINDS = frozenset({"fsync", "fsync_dir"})
MARK_KINDS = frozenset({"note", "ack"})


@dataclass(slots=True)
class Op:
    """One trace entry. ``index`` is its position in the trace (markers included)."""

    index: int
    kind: str
    path: str = ""  # relative to the store root; the destination for a rename
    inode: int = -1  # the file written/synced/created/renamed/unlinked, or the dir synced
    parent: int = -1  # directory inode of a directory operation (destination of a rename)
    name: str = ""  # entry name in ``parent``
    src_parent: int = -1  # rename only
    src_name: str = ""  # rename only
    src_path: str = ""  # rename only
    position: int = 0
    data: bytes = b""
    size: int = 0
    label: str = ""
    info: Any = None

    def describe(self) -> str:
        if self.kind == "write":
            return f"#{self.index} write {self.path} @{self.position} +{len(self.data)}"
        if self.kind == "truncate":
            return f"#{self.index} truncate {self.path} to {self.size}"
        if self.kind == "rename":
            return f"#{self.index} rename {self.src_path} -> {self.path}"
        if self.kind in MARK_KINDS:
            return f"#{self.index} {self.kind} {self.label} {self.info!r}"
        return f"#{self.index} {self.kind} {self.path or '.'}"


@dataclass
class Baseline:
    """The store directory at the start of recording, taken as durable (the setup synced it)."""

    dirs: dict[int, dict[str, int]]
    files: dict[int, bytes]
    paths: dict[str, int]  # relative path ("" is the root) -> inode
    next_inode: int

    @classmethod
    def take(cls, root: str) -> Baseline:
        dirs: dict[int, dict[str, int]] = {ROOT_INODE: {}}
        files: dict[int, bytes] = {}
        paths: dict[str, int] = {"": ROOT_INODE}
        counter = itertools.count(ROOT_INODE + 1)
        for current, subdirs, names in os.walk(root):
            rel = os.path.relpath(current, root)
            rel = "" if rel == "." else rel
            parent = paths[rel]
            for name in sorted(subdirs):
                inode = next(counter)
                dirs[parent][name] = inode
                dirs[inode] = {}
                paths[os.path.join(rel, name)] = inode
            for name in sorted(names):
                inode = next(counter)
                dirs[parent][name] = inode
                with open(os.path.join(current, name), "rb") as f:
                    files[inode] = f.read()
                paths[os.path.join(rel, name)] = inode
        return cls(dirs, files, paths, next(counter))


class RecordingFS(FileSystem):
    """Performs every operation on the real files under ``root`` and records the mutating
    ones in :attr:`trace`. Create it after the setup has closed the store: it snapshots
    ``root`` as the durable baseline."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.baseline = Baseline.take(self.root)
        self.trace: list[Op] = []
        self._paths: dict[str, int] = dict(self.baseline.paths)
        self._dirs: set[int] = set(self.baseline.dirs)
        self._next_inode = self.baseline.next_inode
        self._fd_inode: dict[int, int] = {}
        self.drop_dir_fsyncs = False
        """While set, directory fsyncs are neither performed nor recorded (planted bugs)."""

    # ------------------------------------------------------------------ bookkeeping

    def _rel(self, path: str) -> str:
        full = os.path.normpath(os.path.abspath(path))
        rel = os.path.relpath(full, self.root)
        if rel == ".":
            return ""
        if rel.startswith(".."):
            raise AssertionError(f"{path} is outside the recorded root {self.root}")
        return rel

    def _split(self, rel: str) -> tuple[int, str]:
        head, name = os.path.split(rel)
        return self._paths[head], name

    def _new_inode(self) -> int:
        inode = self._next_inode
        self._next_inode += 1
        return inode

    def _add(self, kind: str, **fields: Any) -> Op:
        op = Op(len(self.trace), kind, **fields)
        self.trace.append(op)
        return op

    def _opened(self, path: str, fd: int, existed: bool) -> None:
        rel = self._rel(path)
        if not existed:
            inode = self._new_inode()
            parent, name = self._split(rel)
            self._paths[rel] = inode
            self._add("create", path=rel, inode=inode, parent=parent, name=name)
        self._fd_inode[fd] = self._paths[rel]

    def _inode_of(self, handle: FileHandle) -> int:
        return self._fd_inode[handle.fd]

    # ------------------------------------------------------------------ markers

    def note(self, label: str, info: Any = None) -> None:
        """Mark that an operation is about to start (what it will do, for the checker)."""
        self._add("note", label=label, info=info)

    def ack(self, label: str, info: Any = None) -> None:
        """Mark that an operation returned: the user was told it is done."""
        self._add("ack", label=label, info=info)

    @property
    def position(self) -> int:
        """The trace position the next entry will get."""
        return len(self.trace)

    @contextlib.contextmanager
    def dropping_dir_fsyncs(self) -> Iterator[None]:
        previous, self.drop_dir_fsyncs = self.drop_dir_fsyncs, True
        try:
            yield
        finally:
            self.drop_dir_fsyncs = previous

    # ------------------------------------------------------------------ primitives

    def _open(self, path: str, flags: int) -> int:
        existed = os.path.lexists(path)
        fd = super()._open(path, flags)
        if os.path.isdir(path):  # not something logstore does; keep the model honest
            raise AssertionError(f"opened directory {path} as a file")
        self._opened(path, fd, existed or not flags & os.O_CREAT)
        return fd

    def _lock(self, path: str) -> int:
        existed = os.path.lexists(path)
        fd = super()._lock(path)
        self._opened(path, fd, existed)
        return fd

    def _open_lock(self, path: str) -> int:
        existed = os.path.lexists(path)
        fd = super()._open_lock(path)
        self._opened(path, fd, existed)
        return fd

    def _unlock(self, path: str, fd: int) -> None:
        self._fd_inode.pop(fd, None)
        super()._unlock(path, fd)

    def _close(self, handle: FileHandle, fd: int) -> None:
        self._fd_inode.pop(fd, None)
        super()._close(handle, fd)

    def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
        data = b"".join(bytes(memoryview(p)) for p in parts)
        written = super()._pwritev(handle, (data,), position)
        self._add(
            "write",
            path=self._rel(handle.path),
            inode=self._inode_of(handle),
            position=position,
            data=data[:written],
        )
        return written

    def _ftruncate(self, handle: FileHandle, size: int) -> None:
        super()._ftruncate(handle, size)
        self._add("truncate", path=self._rel(handle.path), inode=self._inode_of(handle), size=size)

    def _fsync(self, handle: FileHandle) -> None:
        # no real fsync: only the model's durability matters
        self._add("fsync", path=self._rel(handle.path), inode=self._inode_of(handle))

    def _fsync_dir(self, path: str) -> None:
        if self.drop_dir_fsyncs:
            return
        rel = self._rel(path)
        self._add("fsync_dir", path=rel, inode=self._paths[rel])

    def _rename(self, src: str, dst: str) -> None:
        super()._rename(src, dst)
        srel, drel = self._rel(src), self._rel(dst)
        inode = self._paths.pop(srel)
        src_parent, src_name = self._split(srel)
        self._paths.pop(drel, None)
        if inode in self._dirs:  # move everything below the directory too
            prefix = srel + os.sep
            for old in [p for p in self._paths if p.startswith(prefix)]:
                self._paths[drel + os.sep + old[len(prefix):]] = self._paths.pop(old)
        parent, name = self._split(drel)
        self._paths[drel] = inode
        self._add(
            "rename", path=drel, inode=inode, parent=parent, name=name,
            src_parent=src_parent, src_name=src_name, src_path=srel,
        )

    def _unlink(self, path: str) -> None:
        super()._unlink(path)
        rel = self._rel(path)
        parent, name = self._split(rel)
        inode = self._paths.pop(rel)
        self._add("unlink", path=rel, inode=inode, parent=parent, name=name)

    def _mkdir(self, path: str) -> None:
        super()._mkdir(path)
        rel = self._rel(path)
        parent, name = self._split(rel)
        inode = self._new_inode()
        self._paths[rel] = inode
        self._dirs.add(inode)
        self._add("mkdir", path=rel, inode=inode, parent=parent, name=name)

    def _rmdir(self, path: str) -> None:
        super()._rmdir(path)
        rel = self._rel(path)
        parent, name = self._split(rel)
        inode = self._paths.pop(rel)
        self._add("rmdir", path=rel, inode=inode, parent=parent, name=name)

    # ------------------------------------------------------------------ queries

    @property
    def mutating_ops(self) -> int:
        return sum(1 for op in self.trace if op.kind not in MARK_KINDS)


# ---------------------------------------------------------------------- the model


Entries = tuple[tuple[str, bytes | None], ...]
"""A materialised state: (relative path, content; None for a directory), sorted."""


@dataclass
class CrashState:
    """One distinct crash state and the crash points it was seen at.

    ``first``/``last`` are trace positions: everything before ``last`` (acks included)
    had happened at the latest crash point producing this content, everything before
    ``first`` at the earliest. The content must satisfy the constraints of both.
    """

    digest: str
    entries: Entries
    kind: str
    first: int
    last: int
    kinds: set[str] = field(default_factory=set)
    where: str = ""  # the crash points it was seen at, for reports

    def write(self, directory: str) -> None:
        """Create the state's files under ``directory`` (which must not exist)."""
        os.mkdir(directory)
        for rel, content in self.entries:
            path = os.path.join(directory, rel)
            if content is None:
                os.mkdir(path)
            else:
                with open(path, "wb") as f:
                    f.write(content)


FILLS = ("zeros", "garbage", "none")
"""What the unwritten part of a torn write past the old end of the file reads as:
zeros, seeded random bytes, or nothing (the file was not extended)."""


def _apply_data(content: bytes, op: Op, keep: int | None = None, fill: str = "none") -> bytes:
    """``op`` applied to ``content``; a write may be torn after ``keep`` bytes, its
    unwritten part past the old end reading as ``fill`` (one of :data:`FILLS`)."""
    if op.kind == "truncate":
        if op.size <= len(content):
            return content[: op.size]
        return content + bytes(op.size - len(content))
    data = op.data if keep is None else op.data[:keep]
    end = op.position + len(data)
    buf = bytearray(content)
    if len(buf) < op.position:
        buf += bytes(op.position - len(buf))
    buf[op.position : end] = data
    missing = op.position + len(op.data) - len(buf)
    if keep is not None and missing > 0:
        if fill == "zeros":
            buf += bytes(missing)
        elif fill == "garbage":
            buf += random.Random(op.index * 65_537 + keep).randbytes(missing)
    return bytes(buf)


def _apply_dir(dirs: dict[int, dict[str, int]], op: Op, copied: set[int]) -> None:
    def entries(inode: int) -> dict[str, int]:
        if inode not in copied:
            dirs[inode] = dict(dirs.get(inode, {}))
            copied.add(inode)
        return dirs[inode]

    if op.kind in ("create", "mkdir"):
        entries(op.parent)[op.name] = op.inode
        if op.kind == "mkdir" and op.inode not in dirs:
            dirs[op.inode] = {}
            copied.add(op.inode)
    elif op.kind in ("unlink", "rmdir"):
        if entries(op.parent).get(op.name) == op.inode:
            del entries(op.parent)[op.name]
    elif op.kind == "rename":
        src = entries(op.src_parent)
        if src.get(op.src_name) == op.inode:
            del src[op.src_name]
        entries(op.parent)[op.name] = op.inode


class CrashModel:
    """Replays a trace against the durability model and produces crash states."""

    def __init__(
        self,
        baseline: Baseline,
        trace: Sequence[Op],
        *,
        seed: int = 0,
        max_exhaustive: int = 10,
        random_subsets: int = 256,
    ) -> None:
        self.baseline = baseline
        self.trace = list(trace)
        self.seed = seed
        self.max_exhaustive = max_exhaustive
        self.random_subsets = random_subsets
        self.dir_inodes: set[int] = set(baseline.dirs)
        for op in self.trace:
            if op.kind == "mkdir":
                self.dir_inodes.add(op.inode)
        # durable state
        self.dirs: dict[int, dict[str, int]] = {d: dict(m) for d, m in baseline.dirs.items()}
        self.files: dict[int, bytes] = dict(baseline.files)
        # pending operations, in trace order, and what each depends on
        self.pending: list[Op] = []
        self.deps: dict[int, tuple[int, ...]] = {}
        self._last_on_name: dict[tuple[int, str], int] = {}
        self.crash_points = 0
        self.generated = 0

    # ------------------------------------------------------------------ replay

    def _names(self, op: Op) -> list[tuple[int, str]]:
        names = [(op.parent, op.name)]
        if op.kind == "rename":
            names.append((op.src_parent, op.src_name))
        return names

    def _record_pending(self, op: Op) -> None:
        if op.kind in DIR_KINDS:
            deps = {self._last_on_name[n] for n in self._names(op) if n in self._last_on_name}
            self.deps[op.index] = tuple(sorted(deps))
            for n in self._names(op):
                self._last_on_name[n] = op.index
        else:
            self.deps[op.index] = ()
        self.pending.append(op)

    def _make_durable(self, chosen: set[int]) -> None:
        """Apply the pending ops in ``chosen`` (and what they depend on) to the durable
        state, in trace order."""
        todo = list(chosen)
        while todo:
            for dep in self.deps[todo.pop()]:
                if dep not in chosen:
                    chosen.add(dep)
                    todo.append(dep)
        copied: set[int] = set(self.dirs)  # the durable maps are ours to change
        keep: list[Op] = []
        for op in self.pending:
            if op.index not in chosen:
                keep.append(op)
                continue
            if op.kind in DATA_KINDS:
                self.files[op.inode] = _apply_data(self.files.get(op.inode, b""), op)
            else:
                _apply_dir(self.dirs, op, copied)
                for n in self._names(op):
                    if self._last_on_name.get(n) == op.index:
                        del self._last_on_name[n]
            del self.deps[op.index]
        self.pending = keep

    def _sync(self, op: Op) -> None:
        if op.kind == "fsync":
            chosen = {p.index for p in self.pending if p.kind in DATA_KINDS and p.inode == op.inode}
        else:
            chosen = {p.index for p in self.pending if p.kind in DIR_KINDS and p.parent == op.inode}
        if chosen:
            self._make_durable(chosen)

    # ------------------------------------------------------------------ materialise

    def materialise(
        self, applied: Sequence[Op], torn: tuple[Op, int, str] | None = None
    ) -> Entries:
        """The file tree: the durable state plus ``applied`` (dependency-closed, in trace
        order), then ``torn`` = (write, bytes kept, fill) if given."""
        dirs = self.dirs  # copied on write by _apply_dir
        copied: set[int] = set()
        dirs = dict(dirs)
        files = self.files
        changed: dict[int, bytes] = {}
        for op in applied:
            if op.kind in DATA_KINDS:
                changed[op.inode] = _apply_data(changed.get(op.inode, files.get(op.inode, b"")), op)
            else:
                _apply_dir(dirs, op, copied)
        if torn is not None:
            op, keep, fill = torn
            base = changed.get(op.inode, files.get(op.inode, b""))
            changed[op.inode] = _apply_data(base, op, keep, fill)
        out: list[tuple[str, bytes | None]] = []

        def walk(inode: int, prefix: str) -> None:
            for name, child in sorted(dirs.get(inode, {}).items()):
                rel = prefix + name
                if child in self.dir_inodes:
                    out.append((rel, None))
                    walk(child, rel + "/")
                else:
                    out.append((rel, changed.get(child, files.get(child, b""))))

        walk(ROOT_INODE, "")
        return tuple(out)

    def closed_subset(self, chosen: set[int]) -> list[Op]:
        """The pending ops in ``chosen`` whose dependencies are applied too, in order."""
        applied: set[int] = set()
        out: list[Op] = []
        for op in self.pending:
            if op.index in chosen and all(d in applied for d in self.deps[op.index]):
                applied.add(op.index)
                out.append(op)
        return out

    # ------------------------------------------------------------------ states

    def _subsets(self, position: int) -> Iterator[tuple[str, set[int]]]:
        indexes = [op.index for op in self.pending]
        n = len(indexes)
        if n <= self.max_exhaustive:
            for mask in range(1, (1 << n) - 1):
                yield "subset", {indexes[i] for i in range(n) if mask >> i & 1}
            return
        rng = random.Random(self.seed * 1_000_003 + position)
        for _ in range(self.random_subsets):
            yield "subset", {i for i in indexes if rng.random() < 0.5}
        everything = set(indexes)
        for i in indexes:
            yield "omit", everything - {i}
        for k in range(1, n):
            yield "prefix", set(indexes[:k])

    def _tear_points(self, op: Op) -> list[int]:
        length = len(op.data)
        if length <= 1:
            return [0] if length else []
        points = {0, 1, length - 1}
        points.update(range(512, length, 512))
        rng = random.Random(self.seed * 7_919 + op.index)
        points.update(rng.randrange(1, length) for _ in range(3))
        return sorted(p for p in points if 0 <= p < length)

    def states(self) -> Iterator[tuple[str, int, Entries]]:
        """Every crash state: ``(kind, trace position of the crash, entries)``. The position
        is where the next mutating operation stands (all markers before it had happened:
        an ack returns with no I/O after the operation it acknowledges)."""
        trace = self.trace
        i = 0
        while True:
            while i < len(trace) and trace[i].kind in MARK_KINDS:
                i += 1
            position = i
            self.crash_points += 1
            yield "drop", position, self.materialise(())
            yield "apply", position, self.materialise(self.pending)
            nxt = trace[i] if i < len(trace) else None
            if nxt is None or nxt.kind in SYNC_KINDS:
                for kind, chosen in self._subsets(position):
                    yield kind, position, self.materialise(self.closed_subset(chosen))
            if nxt is not None and nxt.kind == "write":
                for keep in self._tear_points(nxt):
                    for fill in FILLS:
                        torn = (nxt, keep, fill)
                        yield "torn", position, self.materialise((), torn)
                        yield "torn", position, self.materialise(self.pending, torn)
            if nxt is None:
                return
            self._step(nxt)
            i += 1

    def _step(self, op: Op) -> None:
        if op.kind in SYNC_KINDS:
            self._sync(op)
        elif op.kind not in MARK_KINDS:
            self._record_pending(op)

    def final(self) -> Entries:
        """The tree with every operation applied (what the live directory must hold)."""
        for op in self.trace:
            self._step(op)
        return self.materialise(self.pending)

    def distinct_states(self) -> dict[str, CrashState]:
        """All states, deduplicated by content hash."""
        out: dict[str, CrashState] = {}
        for kind, position, entries in self.states():
            self.generated += 1
            digest = digest_of(entries)
            state = out.get(digest)
            if state is None:
                out[digest] = CrashState(digest, entries, kind, position, position, {kind})
            else:
                state.first = min(state.first, position)
                state.last = max(state.last, position)
                state.kinds.add(kind)
        for state in out.values():
            state.where = describe_position(self.trace, state.first)
            if state.last != state.first:
                state.where += "; also " + describe_position(self.trace, state.last)
        return out


def digest_of(entries: Entries) -> str:
    h = hashlib.blake2b(digest_size=16)
    for rel, content in entries:
        h.update(rel.encode())
        if content is None:
            h.update(b"\0D")
        else:
            h.update(b"\0F%d\0" % len(content))
            h.update(content)
    return h.hexdigest()


def describe_position(trace: Sequence[Op], position: int) -> str:
    """``after #i <op>, before #j <op>`` for a crash position."""
    before = next((op for op in reversed(trace[:position]) if op.kind not in MARK_KINDS), None)
    after = trace[position] if position < len(trace) else None
    return (
        f"after {before.describe() if before else 'the baseline'}, before "
        f"{after.describe() if after else 'the end'}"
    )


def live_entries(root: str) -> Entries:
    """The real tree under ``root`` in :data:`Entries` form (to check the recorder)."""
    out: list[tuple[str, bytes | None]] = []

    def walk(directory: str, prefix: str) -> None:
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                out.append((prefix + name, None))
                walk(path, prefix + name + "/")
            else:
                with open(path, "rb") as f:
                    out.append((prefix + name, f.read()))

    walk(root, "")
    return tuple(out)


def scratch_root(fallback: str) -> str:
    """A fresh directory for crash states: under /dev/shm when it exists, else ``fallback``."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else fallback
    return tempfile.mkdtemp(prefix="logstore-powerloss-", dir=base)


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
