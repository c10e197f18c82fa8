"""The one I/O seam: every file operation logstore performs goes through :class:`FileSystem`.

Tests swap in a subclass to record operations (crash-state exploration) or to inject faults
(ENOSPC, EIO on fsync, short writes); ``tests/unit/test_io_seam.py`` fails if any other
module touches files directly.

Operations: open, read, write (append at the end), truncate, fsync, directory fsync, rename,
unlink, mkdir, rmdir, list, stat, remove-tree and lock. OS errors surface as
:class:`~logstore.errors.StorageError` naming the path (and ``errno``), raised ``from`` the
``OSError``.

:class:`ReadOnlyFileSystem` wraps a file system for a store opened read-only: files open
``O_RDONLY``, locks are taken on lock files opened read-only (or skipped where none
exists), nothing is created, written, renamed or deleted, and what an open would repair
(a torn tail cut off, an index rebuilt) is repaired in this process's memory only
(:class:`PrivateHandle`).

Temporary files are named ``~<name>.tmp`` (:func:`temp_path`): no topic name holds a
``~``, and no user picks such a name by accident, so cleanup can tell them from files it
must never touch.

This module knows files and directories, nothing about logs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat as _stat
from collections.abc import Sequence
from typing import Self

from logstore.errors import ReadOnlyStoreError, StorageError, StoreLockedError

Buffer = bytes | bytearray | memoryview
_IOV_MAX = 1024  # Linux's limit on buffers in one pwritev
TEMP_PREFIX = "~"
TEMP_SUFFIX = ".tmp"
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
"""What ``errno`` a write refused by a read-only mount or missing permissions carries."""
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def temp_path(path: str) -> str:
    """The temporary file an atomic write of ``path`` goes through: ``<dir>/~<name>.tmp``."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f"{TEMP_PREFIX}{name}{TEMP_SUFFIX}")


def _storage_error(action: str, path: str, err: OSError) -> StorageError:
    hint = ""
    if err.errno == errno.ENOSPC:
        hint = " (the disk is full: free space, then retry)"
    elif err.errno in READ_ONLY_ERRNOS:
        hint = " (check permissions and that the file system is writable)"
    return StorageError(
        f"cannot {action} {path}: {err.strerror or err}{hint}", path, errno=err.errno
    )


def _short(path: str, limit: int = 100) -> str:
    """``path``, shortened in the middle if it is long (for one-line messages)."""
    if len(path) <= limit:
        return path
    return f"{path[: limit // 2]}...{path[-limit // 2 :]} ({len(path)} characters)"


def _directory_error(path: str, err: OSError) -> StorageError:
    """A one-line, typed error for a store directory ``path`` that cannot be used."""
    what = f"cannot use {_short(path)} as a data directory"
    if err.errno == errno.ENAMETOOLONG:
        why = (
            "the path is too long for the file system (a name over 255 bytes or a path "
            "over 4096); choose a shorter one"
        )
    elif err.errno == errno.ELOOP:
        why = "too many levels of symbolic links (a symlink loop?); check its symlinks"
    elif err.errno == errno.ENOTDIR:
        parent = os.path.dirname(path)
        while parent and parent != os.path.dirname(parent) and not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        why = f"{_short(parent)} is a file, not a directory; choose a path inside a directory"
    elif err.errno in READ_ONLY_ERRNOS:
        why = f"{err.strerror} (check its permissions)"
    else:
        why = str(err.strerror or err)
    return StorageError(f"{what}: {why}", path, errno=err.errno)


class FileHandle:
    """An open file: positional reads, appends at the tracked end, truncate and fsync.

    The handle keeps the file's size itself (set at open, moved by appends and truncates),
    so appends need no ``lseek`` and a failed partial write can be cut back.
    """

    def __init__(self, fs: FileSystem, path: str, fd: int, size: int) -> None:
        self.fs = fs
        self.path = path
        self._fd = fd
        self.size = size

    def append(self, data: Buffer) -> int:
        """Write all of ``data`` at the end of the file; return the position it starts at.

        A short or failed write is cut back, so the file never keeps half an append.
        """
        return self.append_parts((data,))

    def append_parts(self, parts: Sequence[Buffer]) -> int:
        """Write the concatenation of ``parts`` at the end of the file (one ``pwritev``
        when the kernel takes it whole, so the caller need not join them first)."""
        start = self.size
        total = sum(len(memoryview(p)) for p in parts)
        try:
            written = self.fs._pwritev(self, parts, start)
            if written < total:  # short write: finish the rest one buffer at a time
                rest = memoryview(b"".join(parts))
                while written < total:
                    written += self.fs._pwritev(self, (rest[written:],), start + written)
        except OSError as err:
            with contextlib.suppress(OSError):
                self.fs._ftruncate(self, start)
            raise _storage_error("write to", self.path, err) from err
        self.size = start + written
        return start

    def write_at(self, data: Buffer, position: int) -> None:
        """Overwrite bytes at ``position`` (for small fixed-size records rewritten in
        place); the file grows if needed."""
        written = 0
        view = memoryview(data)
        try:
            while written < len(view):
                written += self.fs._pwritev(self, (view[written:],), position + written)
        except OSError as err:
            raise _storage_error("write to", self.path, err) from err
        self.size = max(self.size, position + len(view))

    def refresh_size(self) -> int:
        """Re-read the file's size from the OS (another process may have written)."""
        try:
            self.size = os.fstat(self._fd).st_size
        except OSError as err:
            raise _storage_error("stat", self.path, err) from err
        return self.size

    def still_named(self) -> bool:
        """Whether this file's path still names it: False once the file (or a directory
        above it) was deleted or renamed away, or replaced by another file."""
        try:
            named = os.stat(self.path)
            own = os.fstat(self._fd)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as err:
            raise _storage_error("stat", self.path, err) from err
        return (named.st_dev, named.st_ino) == (own.st_dev, own.st_ino)

    def pread(self, size: int, position: int) -> bytes:
        """Read up to ``size`` bytes at ``position`` (fewer at the end of the file)."""
        try:
            return self.fs._pread(self, size, position)
        except OSError as err:
            raise _storage_error("read", self.path, err) from err

    def read_all(self) -> bytes:
        chunks = []
        pos = 0
        while pos < self.size:
            chunk = self.pread(min(self.size - pos, 1 << 24), pos)
            if not chunk:
                break
            chunks.append(chunk)
            pos += len(chunk)
        return b"".join(chunks)

    def truncate(self, size: int) -> None:
        try:
            self.fs._ftruncate(self, size)
        except OSError as err:
            raise _storage_error("truncate", self.path, err) from err
        self.size = size

    def fsync(self) -> None:
        try:
            self.fs._fsync(self)
        except OSError as err:
            raise _storage_error("fsync", self.path, err) from err

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                self.fs._close(self, fd)
            except OSError as err:
                raise _storage_error("close", self.path, err) from err

    @property
    def fd(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrivateHandle(FileHandle):
    """A file opened read-only whose changes stay in this process's memory.

    What opening a store read-only would repair (a torn tail cut off, an index rebuilt
    from its log) is done on these handles: reads see the change, the file never does.
    A cut only lowers the size reads stop at (no copy, so a large log costs nothing);
    the first write copies the file into memory (only index files are ever written
    this way: appends and rolls are refused on a read-only store). ``fd`` is -1 for a
    file that does not exist (one the store would create): it starts empty.
    """

    def __init__(self, fs: FileSystem, path: str, fd: int, size: int) -> None:
        super().__init__(fs, path, fd, size)
        self._copy: bytearray | None = None if fd >= 0 else bytearray()
        self._changed = fd < 0
        self._is_closed = False

    def _own_copy(self) -> bytearray:
        if self._copy is None:
            self._copy = bytearray(self.read_all())
            del self._copy[self.size :]
        self._changed = True
        return self._copy

    def append_parts(self, parts: Sequence[Buffer]) -> int:
        start = self.size
        self.write_at(b"".join(bytes(memoryview(p)) for p in parts), start)
        return start

    def write_at(self, data: Buffer, position: int) -> None:
        copy = self._own_copy()
        raw = bytes(memoryview(data))
        if len(copy) < position:
            copy.extend(bytes(position - len(copy)))
        copy[position : position + len(raw)] = raw
        self.size = max(self.size, position + len(raw))

    def truncate(self, size: int) -> None:
        if self._copy is None and size <= self.size:
            self.size = size  # reads stop here; the file keeps its bytes
            self._changed = True
            return
        copy = self._own_copy()
        del copy[size:]
        copy.extend(bytes(size - len(copy)))
        self.size = size

    def refresh_size(self) -> int:
        if self._changed:
            return self.size  # the private view is what this process sees
        return super().refresh_size()

    def pread(self, size: int, position: int) -> bytes:
        if self._copy is not None:
            return bytes(self._copy[position : position + size])
        if self._changed:
            size = max(0, min(size, self.size - position))
            if not size:
                return b""
        return super().pread(size, position)

    def fsync(self) -> None:
        pass  # nothing of this handle is meant for the disk

    def close(self) -> None:
        self._is_closed = True
        super().close()

    @property
    def closed(self) -> bool:
        return self._is_closed


class LockHandle:
    """An exclusive ``flock`` held on a lock file until :meth:`release`.

    ``flock`` (not POSIX ``fcntl`` locks) because it conflicts even within one process and
    is not dropped when some other descriptor of the same file is closed; the kernel frees
    it when the holder dies, even by SIGKILL.
    """

    def __init__(self, fs: FileSystem, path: str, fd: int) -> None:
        self.fs = fs
        self.path = path
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self.fs._unlock(self.path, fd)


class LockFile:
    """A lock file held open, whose ``flock`` is taken and dropped many times: shared or
    exclusive, waiting or not. Used for the locks processes share a partition with."""

    def __init__(self, fs: FileSystem, path: str, fd: int) -> None:
        self.fs = fs
        self.path = path
        self._fd = fd

    def acquire(self, *, shared: bool = False, blocking: bool = True) -> bool:
        """Take (or convert to) the lock; False if ``blocking`` is off and it is held."""
        op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if not blocking:
            op |= fcntl.LOCK_NB
        try:
            self.fs._flock(self._fd, op)
        except BlockingIOError:
            return False
        except OSError as err:
            raise _storage_error("lock", self.path, err) from err
        return True

    def release(self) -> None:
        if self._fd >= 0:
            try:
                self.fs._flock(self._fd, fcntl.LOCK_UN)
            except OSError as err:
                raise _storage_error("unlock", self.path, err) from err

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self.fs._unlock(self.path, fd)


class AbsentLock(LockFile):
    """The lock of a read-only store whose lock file does not exist: no process has
    opened the store for writing since it was copied, and none can create the file, so
    there is nobody to take turns with. Every acquire succeeds."""

    def __init__(self, fs: FileSystem, path: str) -> None:
        super().__init__(fs, path, -1)

    def acquire(self, *, shared: bool = False, blocking: bool = True) -> bool:
        return True

    def release(self) -> None:
        pass


class FileSystem:
    """The operating system's files, through one small interface.

    Subclasses override the underscored primitives (``_pwrite``, ``_fsync``, ``_rename`` ...)
    to record or fail operations; the public methods add error translation on top.
    """

    read_only = False
    """True for a :class:`ReadOnlyFileSystem`: the store above must not write."""

    # ----------------------------------------------------------------- primitives

    def _open(self, path: str, flags: int) -> int:
        return os.open(path, flags | os.O_CLOEXEC, 0o644)

    def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
        """Write ``parts`` at ``position``; may write less than all (like ``pwritev(2)``).
        The one write primitive: every byte logstore writes passes here."""
        if len(parts) > _IOV_MAX:
            parts = (b"".join(parts),)
        return os.pwritev(handle.fd, parts, position)

    def _pread(self, handle: FileHandle, size: int, position: int) -> bytes:
        return os.pread(handle.fd, size, position)

    def _ftruncate(self, handle: FileHandle, size: int) -> None:
        os.ftruncate(handle.fd, size)

    def _fsync(self, handle: FileHandle) -> None:
        os.fsync(handle.fd)

    def _close(self, handle: FileHandle, fd: int) -> None:
        os.close(fd)

    def _fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def _unlink(self, path: str) -> None:
        os.unlink(path)

    def _mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def _rmdir(self, path: str) -> None:
        os.rmdir(path)

    def _lock(self, path: str) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        return fd

    def _unlock(self, path: str, fd: int) -> None:
        os.close(fd)  # closing the only descriptor releases the flock

    def _open_lock(self, path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _flock(self, fd: int, operation: int) -> None:
        fcntl.flock(fd, operation)

    # ----------------------------------------------------------------- public

    def open(self, path: str, *, create: bool = False, writable: bool = True) -> FileHandle:
        """Open ``path`` for positional reads and, if ``writable``, appends.

        Raises:
            FileNotFoundError: ``path`` does not exist and ``create`` is False.
            StorageError: any other OS error.
        """
        flags = os.O_RDWR if writable else os.O_RDONLY
        if create:
            flags |= os.O_CREAT
        try:
            fd = self._open(path, flags)
        except FileNotFoundError:
            raise
        except OSError as err:
            raise _storage_error("open", path, err) from err
        try:
            size = os.fstat(fd).st_size
        except OSError as err:
            os.close(fd)
            raise _storage_error("stat", path, err) from err
        return FileHandle(self, path, fd, size)

    def read_file(self, path: str) -> bytes:
        """The whole content of ``path`` (FileNotFoundError if it does not exist)."""
        with self.open(path, writable=False) as handle:
            return handle.read_all()

    def write_file_atomic(self, path: str, data: bytes, *, tmp: str | None = None) -> None:
        """Replace ``path`` with ``data`` so that a crash leaves the old or the new content.

        Writes ``tmp`` (default :func:`temp_path`: ``~<name>.tmp`` in the same directory),
        fsyncs it, renames it over ``path`` and fsyncs the directory: a rename alone can
        reach the disk before the data it names.
        """
        tmp = tmp or temp_path(path)
        with self.open(tmp, create=True) as handle:
            handle.truncate(0)
            handle.append(data)
            handle.fsync()
        self.rename(tmp, path)
        self.fsync_dir(os.path.dirname(path) or ".")

    def fsync_dir(self, path: str) -> None:
        """Make creations, renames and unlinks inside directory ``path`` durable."""
        try:
            self._fsync_dir(path)
        except OSError as err:
            raise _storage_error("fsync directory", path, err) from err

    def rename(self, src: str, dst: str) -> None:
        try:
            self._rename(src, dst)
        except OSError as err:
            raise _storage_error(f"rename {src} to", dst, err) from err

    def unlink(self, path: str, *, missing_ok: bool = False) -> None:
        try:
            self._unlink(path)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError as err:
            raise _storage_error("delete", path, err) from err

    def mkdir(self, path: str, *, exist_ok: bool = False) -> None:
        try:
            self._mkdir(path)
        except FileExistsError as err:
            if not self.is_dir(path):
                raise StorageError(
                    f"cannot create directory {path}: a file of that name exists (move it "
                    f"away or choose another path)",
                    path,
                ) from err
            if not exist_ok:
                raise StorageError(f"cannot create directory {path}: it exists", path) from err
        except OSError as err:
            raise _storage_error("create directory", path, err) from err

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path`` (StorageError if it is not empty)."""
        try:
            self._rmdir(path)
        except OSError as err:
            raise _storage_error("delete directory", path, err) from err

    def rmtree(self, path: str) -> None:
        """Delete ``path`` and everything below it (no symlinks are followed)."""
        try:
            for name in self.listdir(path):
                child = os.path.join(path, name)
                if self.is_dir(child):
                    self.rmtree(child)
                else:
                    self._unlink(child)
            self._rmdir(path)
        except FileNotFoundError:
            return
        except OSError as err:
            raise _storage_error("delete directory", path, err) from err

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            raise
        except OSError as err:
            raise _storage_error("list directory", path, err) from err

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_dir(self, path: str) -> bool:
        try:
            return _stat.S_ISDIR(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False

    def dir_exists(self, path: str) -> bool:
        """Whether ``path`` is a directory (symlinks followed): False if nothing is there.

        Raises:
            StorageError: ``path`` cannot be a directory: it is a file, a component of it
                is a file, it is too long, it loops through symlinks, or is not
                accessible (one clear line each).
        """
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if os.path.islink(path):  # a symlink to nothing
                raise StorageError(
                    f"cannot use {_short(path)} as a data directory: it is a symlink to "
                    f"{os.readlink(path)}, which does not exist (create the target or "
                    f"remove the link)",
                    path,
                ) from None
            return False
        except OSError as err:
            raise _directory_error(path, err) from err
        if not _stat.S_ISDIR(mode):
            raise StorageError(
                f"cannot use {_short(path)} as a data directory: it is a file, not a "
                f"directory (choose another path)",
                path,
                errno=errno.ENOTDIR,
            )
        return True

    def size(self, path: str) -> int:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            raise
        except OSError as err:
            raise _storage_error("stat", path, err) from err

    def mtime_ms(self, path: str) -> int:
        try:
            return os.stat(path).st_mtime_ns // 1_000_000
        except OSError as err:
            raise _storage_error("stat", path, err) from err

    def lock(self, path: str) -> LockHandle:
        """Take an exclusive lock on ``path`` (created if missing) without waiting.

        Raises:
            StoreLockedError: another holder has it.
        """
        try:
            fd = self._lock(path)
        except BlockingIOError as err:
            raise StoreLockedError(
                f"{os.path.dirname(path) or path} is in use by another Store (lock file "
                f"{path} is held; close the other Store or wait for its process to exit)"
            ) from err
        except OSError as err:
            raise _storage_error("lock", path, err) from err
        return LockHandle(self, path, fd)


    def lock_file(self, path: str) -> LockFile:
        """Open (creating if missing) a lock file to take shared or exclusive locks on."""
        try:
            return LockFile(self, path, self._open_lock(path))
        except OSError as err:
            raise _storage_error("open lock file", path, err) from err


class ReadOnlyFileSystem(FileSystem):
    """``inner`` seen read-only, for a store opened with ``read_only=True``.

    Reads go through ``inner``'s primitives (so a recording or fault-injecting file system
    sees every one). Files open ``O_RDONLY``: opened for writing, they are
    :class:`PrivateHandle` objects, whose changes stay in memory; a file opened with ``create``
    that does not exist is an empty private one. Lock files are opened read-only (``flock``
    works on those) and a missing one is an :class:`AbsentLock`. Every other change
    (rename, unlink, mkdir, rmdir, directory fsync, atomic writes) raises
    :class:`~logstore.errors.ReadOnlyStoreError` naming the store, before any system call.
    """

    read_only = True

    def __init__(self, inner: FileSystem, root: str) -> None:
        self.inner = inner
        self.root = root

    def _refuse(self, action: str, path: str) -> ReadOnlyStoreError:
        return ReadOnlyStoreError(
            f"cannot {action} {path}: the store {self.root} is open read-only, so nothing "
            f"is written (open it without read_only=True, with write access, to change it)",
            path,
        )

    # ----------------------------------------------------------------- reads: delegated

    def _open(self, path: str, flags: int) -> int:
        if flags & _WRITE_FLAGS:
            raise self._refuse("open for writing", path)
        return self.inner._open(path, flags)

    def _pread(self, handle: FileHandle, size: int, position: int) -> bytes:
        return self.inner._pread(handle, size, position)

    def _close(self, handle: FileHandle, fd: int) -> None:
        self.inner._close(handle, fd)

    def _unlock(self, path: str, fd: int) -> None:
        self.inner._unlock(path, fd)

    def _flock(self, fd: int, operation: int) -> None:
        self.inner._flock(fd, operation)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def is_dir(self, path: str) -> bool:
        return self.inner.is_dir(path)

    def dir_exists(self, path: str) -> bool:
        return self.inner.dir_exists(path)

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def mtime_ms(self, path: str) -> int:
        return self.inner.mtime_ms(path)

    # ----------------------------------------------------------------- writes: refused

    def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
        raise self._refuse("write to", handle.path)

    def _ftruncate(self, handle: FileHandle, size: int) -> None:
        raise self._refuse("truncate", handle.path)

    def _fsync(self, handle: FileHandle) -> None:
        pass  # nothing was written through this file system

    def _fsync_dir(self, path: str) -> None:
        raise self._refuse("fsync directory", path)

    def _rename(self, src: str, dst: str) -> None:
        raise self._refuse(f"rename {src} to", dst)

    def _unlink(self, path: str) -> None:
        raise self._refuse("delete", path)

    def _mkdir(self, path: str) -> None:
        raise self._refuse("create directory", path)

    def _rmdir(self, path: str) -> None:
        raise self._refuse("delete directory", path)

    def _lock(self, path: str) -> int:
        raise self._refuse("create lock file", path)

    def _open_lock(self, path: str) -> int:
        raise self._refuse("create lock file", path)

    # ----------------------------------------------------------------- public

    def open(self, path: str, *, create: bool = False, writable: bool = True) -> FileHandle:
        try:
            fd = self._open(path, os.O_RDONLY)
        except FileNotFoundError:
            if not create:
                raise
            return PrivateHandle(self, path, -1, 0)
        except OSError as err:
            raise _storage_error("open", path, err) from err
        try:
            size = os.fstat(fd).st_size
        except OSError as err:
            os.close(fd)
            raise _storage_error("stat", path, err) from err
        if writable or create:
            return PrivateHandle(self, path, fd, size)
        return FileHandle(self, path, fd, size)

    def write_file_atomic(self, path: str, data: bytes, *, tmp: str | None = None) -> None:
        raise self._refuse("write", path)

    def fsync_dir(self, path: str) -> None:
        raise self._refuse("fsync directory", path)

    def rmtree(self, path: str) -> None:
        raise self._refuse("delete directory", path)

    def lock_file(self, path: str) -> LockFile:
        """The lock file opened read-only (an :class:`AbsentLock` if it does not exist)."""
        try:
            return LockFile(self, path, self._open(path, os.O_RDONLY))
        except FileNotFoundError:
            return AbsentLock(self, path)
        except OSError as err:
            raise _storage_error("open lock file", path, err) from err


DEFAULT_FS = FileSystem()
"""The real file system. Stateless, so sharing one instance is safe."""
