"""The read-only view of a file system, for a store opened with ``read_only=True``.

:class:`ReadOnlyFileSystem` wraps a :class:`~logstore.storage.files.FileSystem`: files
open ``O_RDONLY``, locks are taken on lock files opened read-only (or skipped where none
exists: :class:`AbsentLock`), nothing is created, written, renamed or deleted, and what an
open would repair (a torn tail cut off, an index rebuilt) is repaired in this process's
memory only (:class:`PrivateHandle`). Every system call still goes through the wrapped
file system's primitives (the I/O seam).
"""

from __future__ import annotations

from collections.abc import Sequence

from logstore.errors import ReadOnlyStoreError
from logstore.storage.files import (
    READ_FLAGS,
    WRITE_FLAGS,
    Buffer,
    FileHandle,
    FileSystem,
    storage_error,
)
from logstore.storage.locks import AbsentLock, LockFile


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
        if flags & WRITE_FLAGS:
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
            fd = self._open(path, READ_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            return PrivateHandle(self, path, -1, 0)
        except OSError as err:
            raise storage_error("open", path, err) from err
        size = self.size_of_open(path, fd)
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
            return LockFile(self, path, self._open(path, READ_FLAGS))
        except FileNotFoundError:
            return AbsentLock(self, path)
        except OSError as err:
            raise storage_error("open lock file", path, err) from err
