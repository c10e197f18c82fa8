"""The I/O seam: every file operation of logstore goes through ``storage/files.py``.

Two halves:

* a static check: no module under ``logstore/`` other than ``logstore/storage/files.py``
  calls the builtin ``open``, ``io.open``, the file functions of ``os``/``os.path``,
  ``shutil``, ``fcntl``, ``mmap``, ``tempfile`` or ``pathlib``'s I/O methods (names are
  resolved through imports and scopes, so ``logstore.store.open``, the public API, is not
  mistaken for the builtin);
* a dynamic check: a :class:`FileSystem` that records every primitive sees the expected
  operations during create topic + append + roll + close, and a shadow copy rebuilt from
  the recorded writes equals every file under the store directory, byte for byte: nothing
  is written any other way.
"""

from __future__ import annotations

import ast
import builtins
import os
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import logstore
from logstore.storage.files import Buffer, FileHandle, FileSystem

PACKAGE = Path(logstore.__file__).parent
SEAM = PACKAGE / "storage" / "files.py"
NOT_FILE_IO = {
    PACKAGE / "storage" / "watch.py": "reads inotify events (kernel notices, not file data) "
    "and writes a wake-up pipe",
}
"""Modules allowed ``os.read``/``os.write``/``os.close`` on descriptors that are not files."""


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


OS_FILE_FUNCTIONS = _names(
    """open fdopen write read pread pwrite readv writev preadv pwritev sendfile
    copy_file_range fsync fdatasync sync rename renames replace unlink remove removedirs
    mkdir makedirs mkfifo mknod rmdir listdir scandir walk fwalk truncate ftruncate
    posix_fallocate posix_fadvise stat lstat fstat statvfs fstatvfs chmod fchmod lchmod
    chown fchown lchown utime link symlink readlink access chdir fchdir chroot dup dup2
    close closerange lseek lockf"""
)
OS_PATH_FILE_FUNCTIONS = _names(
    """exists lexists isfile isdir islink ismount getsize getmtime getatime getctime
    samefile sameopenfile samestat realpath"""
)
WHOLE_MODULES = frozenset({"shutil", "fcntl", "mmap", "tempfile"})
"""Modules every use of which is file I/O. (pathlib is checked method by method: a
``PurePath`` used to build a name is fine.)"""
PATH_IO_METHODS = _names(
    """open read_text read_bytes write_text write_bytes touch mkdir rmdir unlink rename
    replace stat lstat chmod lchmod exists is_file is_dir is_symlink iterdir glob rglob
    symlink_to hardlink_to link_to readlink resolve samefile owner group walk"""
)


# --------------------------------------------------------------------------- the checker


def _bound_names(body: list[ast.stmt]) -> set[str]:
    """Names bound directly in a scope (not inside nested functions or classes)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            return  # a new scope
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    for statement in body:
        visit(statement)
    return names


def _arguments(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    return {a.arg for a in every}


class _Checker(ast.NodeVisitor):
    """Finds direct file I/O in one module's AST; ``problems`` lists ``line: what``."""

    def __init__(self, tree: ast.Module) -> None:
        self.problems: list[str] = []
        self.module_names = _bound_names(tree.body)
        self.scopes: list[set[str]] = []  # enclosing function scopes, innermost last
        # local name -> what it stands for: "os", "os.path", "io", "builtins", "shutil",
        # "pathlib", "pathlib.Path", "os.unlink", "builtins.open", ...
        self.aliases: dict[str, str] = {}
        self.path_names: set[str] = set()  # names assigned a pathlib path somewhere
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and self._is_path(node.value):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.path_names.add(target.id)

    # ----------------------------------------------------------------- resolution

    def _resolve(self, node: ast.expr) -> str | None:
        """The dotted name an expression refers to (``os.path.exists``), if any."""
        if isinstance(node, ast.Name):
            if any(node.id in scope for scope in self.scopes):
                return None  # a local or an argument shadows it
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id in self.module_names:
                return None  # defined in this module, e.g. logstore.store.open
            if hasattr(builtins, node.id):
                return f"builtins.{node.id}"
            return None
        if isinstance(node, ast.Attribute):
            base = self._resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def _is_path(self, node: ast.expr) -> bool:
        """Whether ``node`` builds a pathlib path (``Path(x)``, ``p / "a"``, ``p.parent``)."""
        if isinstance(node, ast.Call):
            name = self._resolve(node.func) or ""
            return name.startswith("pathlib.") or self._is_path(node.func)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return self._is_path(node.left)
        if isinstance(node, ast.Attribute):
            return node.attr in ("parent", "parents") and self._is_path(node.value)
        if isinstance(node, ast.Name):
            return node.id in self.path_names
        return False

    @staticmethod
    def _forbidden(name: str) -> bool:
        parts = name.split(".")
        if name in ("builtins.open", "io.open", "io.FileIO", "io.open_code"):
            return True
        if parts[0] == "os" and len(parts) >= 2:
            if parts[1] == "path":
                return len(parts) == 3 and parts[2] in OS_PATH_FILE_FUNCTIONS
            return parts[1] in OS_FILE_FUNCTIONS
        if parts[0] == "posixpath" and len(parts) == 2:
            return parts[1] in OS_PATH_FILE_FUNCTIONS
        return parts[0] in WHOLE_MODULES and len(parts) >= 2

    # ----------------------------------------------------------------- visiting

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
        body = node.body if isinstance(node.body, list) else [ast.Expr(node.body)]
        self.scopes.append(_arguments(node) | _bound_names(body))
        for statement in body:
            self.visit(statement)
        self.scopes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._function(node)

    def visit_Import(self, node: ast.Import) -> None:
        pass  # importing is fine; using is checked

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        pass

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self._resolve(node)
        if name and self._forbidden(name):
            self.problems.append(f"{node.lineno}: {name}")
            return
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            name = self._resolve(node)
            if name and self._forbidden(name):
                self.problems.append(f"{node.lineno}: {name}")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in PATH_IO_METHODS
            and self._is_path(func.value)
        ):
            self.problems.append(f"{node.lineno}: pathlib .{func.attr}()")
        self.generic_visit(node)


def find_direct_io(source: str) -> list[str]:
    """``line: name`` of every direct file operation in ``source``."""
    tree = ast.parse(source)
    checker = _Checker(tree)
    checker.visit(tree)
    return checker.problems


def modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != SEAM and path not in NOT_FILE_IO:
            yield path


# --------------------------------------------------------------------------- static check


@pytest.mark.parametrize("path", list(modules()), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_does_no_file_io_outside_the_seam(path):
    problems = find_direct_io(path.read_text(encoding="utf-8"))

    assert not problems, f"{path} bypasses logstore/storage/files.py: {problems}"


def test_io_seam_check_covers_the_whole_package():
    names = {str(p.relative_to(PACKAGE)) for p in modules()}

    assert {"store.py", "storage/log.py", "storage/segment.py", "storage/index.py"} <= names
    assert "storage/files.py" not in names
    assert find_direct_io(SEAM.read_text(encoding="utf-8")), "the seam itself does I/O"


BAD = {
    "builtin_open": "def f(p):\n    return open(p, 'rb').read()",
    "builtin_open_module_level": "DATA = open('x').read()",
    "builtins_open": "import builtins\nbuiltins.open('x')",
    "io_open": "import io\nio.open('x')",
    "from_io_open": "from io import open as io_open\nio_open('x')",
    "os_unlink": "import os\ndef f(p):\n    os.unlink(p)",
    "os_alias": "import os as _os\n_os.fsync(3)",
    "from_os_remove": "from os import remove\nremove('x')",
    "os_reference": "import os\ncallbacks = [os.replace]",
    "os_path_exists": "import os\nos.path.exists('x')",
    "os_makedirs": "import os\nos.makedirs('x', exist_ok=True)",
    "os_scandir": "import os\nfor e in os.scandir('.'):\n    pass",
    "shutil": "import shutil\nshutil.rmtree('x')",
    "from_shutil": "from shutil import copyfile\ncopyfile('a', 'b')",
    "fcntl": "import fcntl\nfcntl.flock(3, fcntl.LOCK_EX)",
    "mmap": "import mmap\nmmap.mmap(3, 0)",
    "tempfile": "import tempfile\ntempfile.mkstemp()",
    "pathlib_write": "from pathlib import Path\nPath('x').write_bytes(b'')",
    "pathlib_div": "import pathlib\n(pathlib.Path('a') / 'b').unlink()",
    "pathlib_name": "from pathlib import Path\np = Path('a')\np.mkdir()",
    "pathlib_open": "from pathlib import Path\nwith Path('a').open('wb') as f:\n    pass",
    "pathlib_read": "import pathlib\npathlib.Path('a').read_text()",
    "open_in_method": "class A:\n    def open(self):\n        return open('x')",
    "open_after_local_def_elsewhere": (
        "def g():\n    def open(p):\n        return p\n    return open\n"
        "def f(p):\n    return open(p)"
    ),
}
GOOD = {
    "public_open_definition": "def open(path='data'):\n    return Store(path)",
    "public_open_call": "def open(path):\n    return path\nopen('data')",
    "public_open_import": "from logstore.store import Store, open",
    "method_named_open": "def f(fs, p):\n    return fs.open(p, create=True)",
    "fs_primitives": "def f(fs, p):\n    fs.unlink(p)\n    fs.rename(p, p)\n    fs.mkdir(p)",
    "os_path_join": "import os\nos.path.join(os.path.dirname('a'), 'b')",
    "os_fspath": "import os\nos.fspath('a')",
    "local_shadow": "def f(open):\n    return open('x')",
    "attribute_of_object": "def f(self):\n    return self.os.unlink",
    "strings": "'open(x)'\n'os.unlink'",
    "pure_path_name": "from pathlib import PurePath\nPurePath('a/b.log').stem",
}


@pytest.mark.parametrize("source", BAD.values(), ids=BAD.keys())
def test_io_seam_check_flags_direct_io(source):
    assert find_direct_io(textwrap.dedent(source))


@pytest.mark.parametrize("source", GOOD.values(), ids=GOOD.keys())
def test_io_seam_check_allows_seam_calls_and_public_open(source):
    assert find_direct_io(textwrap.dedent(source)) == []


# --------------------------------------------------------------------------- dynamic check


class RecordingFS(FileSystem):
    """Records every primitive and keeps a shadow of what the files should hold."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.ops: list[tuple[str, str]] = []
        self.shadow: dict[str, bytearray] = {}  # file path -> expected content
        self.dirs: set[str] = set()

    def _inside(self, path: str) -> bool:
        return os.path.abspath(path).startswith(self.root + os.sep) or path == self.root

    def _open(self, path: str, flags: int) -> int:
        fd = super()._open(path, flags)
        self.ops.append(("open", path))
        if flags & os.O_CREAT and path not in self.shadow:
            self.shadow[path] = bytearray()
        if flags & os.O_TRUNC:
            self.shadow[path] = bytearray()
        return fd

    def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
        written = super()._pwritev(handle, parts, position)
        self.ops.append(("write", handle.path))
        data = b"".join(bytes(p) for p in parts)[:written]
        content = self.shadow.setdefault(handle.path, bytearray())
        if len(content) < position:
            content.extend(bytes(position - len(content)))
        content[position : position + written] = data
        return written

    def _pread(self, handle: FileHandle, size: int, position: int) -> bytes:
        self.ops.append(("read", handle.path))
        return super()._pread(handle, size, position)

    def _ftruncate(self, handle: FileHandle, size: int) -> None:
        super()._ftruncate(handle, size)
        self.ops.append(("truncate", handle.path))
        content = self.shadow.setdefault(handle.path, bytearray())
        del content[size:]
        content.extend(bytes(size - len(content)))

    def _fsync(self, handle: FileHandle) -> None:
        super()._fsync(handle)
        self.ops.append(("fsync", handle.path))

    def _close(self, handle: FileHandle, fd: int) -> None:
        super()._close(handle, fd)
        self.ops.append(("close", handle.path))

    def _fsync_dir(self, path: str) -> None:
        super()._fsync_dir(path)
        self.ops.append(("fsync_dir", path))

    def _rename(self, src: str, dst: str) -> None:
        super()._rename(src, dst)
        self.ops.append(("rename", dst))
        if src in self.shadow:
            self.shadow[dst] = self.shadow.pop(src)

    def _unlink(self, path: str) -> None:
        super()._unlink(path)
        self.ops.append(("unlink", path))
        self.shadow.pop(path, None)

    def _mkdir(self, path: str) -> None:
        super()._mkdir(path)
        self.ops.append(("mkdir", path))
        self.dirs.add(path)

    def _rmdir(self, path: str) -> None:
        super()._rmdir(path)
        self.ops.append(("rmdir", path))
        self.dirs.discard(path)

    def _lock(self, path: str) -> int:
        fd = super()._lock(path)
        self.ops.append(("lock", path))
        self.shadow.setdefault(path, bytearray())
        return fd

    def _unlock(self, path: str, fd: int) -> None:
        super()._unlock(path, fd)
        self.ops.append(("unlock", path))

    def _open_lock(self, path: str) -> int:
        fd = super()._open_lock(path)
        self.ops.append(("lock", path))
        self.shadow.setdefault(path, bytearray())
        return fd

    def ops_named(self, op: str) -> list[str]:
        return [path for name, path in self.ops if name == op]


def untracked_changes(fs: RecordingFS) -> list[str]:
    """Files and directories under ``fs.root`` that the recorded operations do not
    explain: not created through the seam, or holding other bytes than were written."""
    problems = []
    seen_files: set[str] = set()
    for directory, subdirs, files in os.walk(fs.root):
        for name in subdirs:
            path = os.path.join(directory, name)
            if path not in fs.dirs:
                problems.append(f"directory {path} was not made through the seam")
        for name in files:
            path = os.path.join(directory, name)
            seen_files.add(path)
            with open(path, "rb") as f:
                actual = f.read()
            if path not in fs.shadow:
                problems.append(f"file {path} was not created through the seam")
            elif bytes(fs.shadow[path]) != actual:
                problems.append(
                    f"file {path} holds {len(actual)} bytes, the seam wrote "
                    f"{len(fs.shadow[path])} different ones"
                )
    gone = {p for p in fs.shadow if fs._inside(p)} - seen_files
    problems += [f"file {p} vanished without an unlink through the seam" for p in sorted(gone)]
    return problems


def workload(fs: RecordingFS, clock) -> None:
    """Create a topic, append enough to roll, roll by hand, close: flush "always"."""
    with logstore.open(fs.root, fs=fs, clock=clock) as store:
        store.create_topic("events", partitions=2, segment_bytes=400, flush="always")
        for i in range(30):
            store.append("events", b"value-%d" % i * 5, key=b"key-%d" % i, partition=i % 2)
        store.partition("events", 0).roll()
        store.append("events", b"after the roll", partition=0)
        assert store.read("events", 0, 0)


def test_store_does_all_file_io_through_the_seam(tmp_path, clock):
    root = str(tmp_path / "store")
    fs = RecordingFS(root)

    workload(fs, clock)

    partition = os.path.join(root, "events-0")
    for op in ("open", "write", "fsync", "rename", "fsync_dir", "mkdir", "close", "lock"):
        assert fs.ops_named(op), f"no {op} went through the seam"
    writes = fs.ops_named("write")
    fsyncs = fs.ops_named("fsync")
    assert any(p.endswith(".log") and p.startswith(partition) for p in writes)
    assert any(p.endswith(".log") for p in fsyncs), "flush 'always' fsyncs the .log"
    assert any(p.endswith(".index") for p in fsyncs), "a roll fsyncs the sealed segment"
    assert any(p.endswith("checkpoint") for p in fs.ops_named("rename"))
    assert partition in fs.ops_named("fsync_dir"), "a roll fsyncs the partition directory"
    assert len([p for p in os.listdir(partition) if p.endswith(".log")]) >= 3
    assert untracked_changes(fs) == []


def test_untracked_changes_finds_writes_that_bypass_the_seam(tmp_path, clock):
    root = str(tmp_path / "store")
    fs = RecordingFS(root)
    workload(fs, clock)
    partition = os.path.join(root, "events-1")
    log = sorted(p for p in os.listdir(partition) if p.endswith(".log"))[0]
    with open(os.path.join(partition, log), "ab") as f:
        f.write(b"x")
    with open(os.path.join(root, "stray"), "wb") as f:
        f.write(b"")
    os.mkdir(os.path.join(root, "stray-dir"))

    problems = untracked_changes(fs)

    assert len(problems) == 3, problems
    assert any(log in p for p in problems)
    assert any("stray-dir" in p for p in problems)
