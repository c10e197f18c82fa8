"""The one I/O seam: every file operation logstore performs goes through :class:`FileSystem`.

Tests swap in a subclass to record operations (crash-state exploration) or to inject faults
(ENOSPC, EIO on fsync, short writes); ``tests/unit/test_io_seam.py`` fails if any other
module touches files directly.

Operations: open, read, write (append at the end), truncate, fsync, directory fsync, rename,
unlink, mkdir, rmdir, list, stat, remove-tree and lock. OS errors surface as
:class:`~logstore.errors.StorageError` naming the path (and ``errno``), raised ``from`` the
``OSError``.

:class:`ReadOnlyFileSystem` (in :mod:`logstore.storage.readonly`, re-exported here) wraps
a file system for a store opened read-only.

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

from logstore.errors import READ_ONLY_ERRNOS, StorageError, StoreLockedError
from logstore.storage.fserrors import short_path, storage_error

Buffer = bytes | bytearray | memoryview
_IOV_MAX = 1024  # Linux's limit on buffers in one pwritev
TEMP_PREFIX = "~"
TEMP_SUFFIX = ".tmp"
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
"""``open`` flags that would change a file (refused on a read-only file system)."""
READ_FLAGS = os.O_RDONLY
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = fcntl.LOCK_SH, fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN
"""``flock`` operations, for :mod:`logstore.storage.locks`."""


def temp_path(path: str) -> str:
    """The temporary file an atomic write of ``path`` goes through: ``<dir>/~<name>.tmp``."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f"{TEMP_PREFIX}{name}{TEMP_SUFFIX}")


def _directory_error(path: str, err: OSError) -> StorageError:
    """A one-line, typed error for a store directory ``path`` that cannot be used."""
    what = f"cannot use {short_path(path)} as a data directory"
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
        why = f"{short_path(parent)} is a file, not a directory; choose a path inside a directory"
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
            raise storage_error("write to", self.path, err) from err
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
            raise storage_error("write to", self.path, err) from err
        self.size = max(self.size, position + len(view))

    def refresh_size(self) -> int:
        """Re-read the file's size from the OS (another process may have written)."""
        try:
            self.size = os.fstat(self._fd).st_size
        except OSError as err:
            raise storage_error("stat", self.path, err) from err
        return self.size

    def still_named(self) -> bool:
        """Whether this file's path still names it: False once the file (or a directory
        above it) was deleted or renamed away, or replaced by another file."""
        return self.fs.identity(self.path) == self.identity()

    def identity(self) -> tuple[int, int]:
        """``(st_dev, st_ino)`` of the open file: which file it is, whatever names it."""
        try:
            own = os.fstat(self._fd)
        except OSError as err:
            raise storage_error("stat", self.path, err) from err
        return own.st_dev, own.st_ino

    def pread(self, size: int, position: int) -> bytes:
        """Read up to ``size`` bytes at ``position`` (fewer at the end of the file)."""
        try:
            return self.fs._pread(self, size, position)
        except OSError as err:
            raise storage_error("read", self.path, err) from err

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
            raise storage_error("truncate", self.path, err) from err
        self.size = size

    def fsync(self) -> None:
        try:
            self.fs._fsync(self)
        except OSError as err:
            raise storage_error("fsync", self.path, err) from err

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                self.fs._close(self, fd)
            except OSError as err:
                raise storage_error("close", self.path, err) from err

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
            raise storage_error("open", path, err) from err
        return FileHandle(self, path, fd, self.size_of_open(path, fd))

    def size_of_open(self, path: str, fd: int) -> int:
        """The size of the file ``fd`` just opened from ``path`` (closed on failure)."""
        try:
            return os.fstat(fd).st_size
        except OSError as err:
            os.close(fd)
            raise storage_error("stat", path, err) from err

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
            raise storage_error("fsync directory", path, err) from err

    def rename(self, src: str, dst: str) -> None:
        try:
            self._rename(src, dst)
        except OSError as err:
            raise storage_error(f"rename {src} to", dst, err) from err

    def unlink(self, path: str, *, missing_ok: bool = False) -> None:
        try:
            self._unlink(path)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError as err:
            raise storage_error("delete", path, err) from err

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
            raise storage_error("create directory", path, err) from err

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path`` (StorageError if it is not empty)."""
        try:
            self._rmdir(path)
        except OSError as err:
            raise storage_error("delete directory", path, err) from err

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
            raise storage_error("delete directory", path, err) from err

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            raise
        except OSError as err:
            raise storage_error("list directory", path, err) from err

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
                    f"cannot use {short_path(path)} as a data directory: it is a symlink to "
                    f"{os.readlink(path)}, which does not exist (create the target or "
                    f"remove the link)",
                    path,
                ) from None
            return False
        except OSError as err:
            raise _directory_error(path, err) from err
        if not _stat.S_ISDIR(mode):
            raise StorageError(
                f"cannot use {short_path(path)} as a data directory: it is a file, not a "
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
            raise storage_error("stat", path, err) from err

    def identity(self, path: str) -> tuple[int, int] | None:
        """``(st_dev, st_ino)`` of the file ``path`` names (None: none), as fstat's."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise storage_error("stat", path, err) from err
        return st.st_dev, st.st_ino

    def mtime_ms(self, path: str) -> int:
        try:
            return os.stat(path).st_mtime_ns // 1_000_000
        except OSError as err:
            raise storage_error("stat", path, err) from err

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
            raise storage_error("lock", path, err) from err
        return LockHandle(self, path, fd)


    def lock_file(self, path: str) -> LockFile:
        """Open (creating if missing) a lock file to take shared or exclusive locks on."""
        try:
            return LockFile(self, path, self._open_lock(path))
        except OSError as err:
            raise storage_error("open lock file", path, err) from err


DEFAULT_FS = FileSystem()
"""The real file system. Stateless, so sharing one instance is safe."""

# Last, as they build on the names above (logstore.storage.files is always imported first).
from logstore.storage.locks import LockFile, LockHandle  # noqa: E402
from logstore.storage.readonly import ReadOnlyFileSystem  # noqa: E402

__all__ = [
    "DEFAULT_FS",
    "LOCK_EX",
    "LOCK_NB",
    "LOCK_SH",
    "LOCK_UN",
    "READ_FLAGS",
    "READ_ONLY_ERRNOS",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "WRITE_FLAGS",
    "Buffer",
    "FileHandle",
    "FileSystem",
    "LockFile",
    "LockHandle",
    "ReadOnlyFileSystem",
    "storage_error",
    "temp_path",
]
