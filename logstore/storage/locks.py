"""Lock files: the ``flock`` locks a store and its partitions are shared with.

:class:`LockHandle` is an exclusive lock held until released (the store's ``.lock``);
:class:`LockFile` a lock file held open whose lock is taken and dropped many times, shared
or exclusive (a partition's writer and presence locks). Both call the file system's
``_flock``/``_unlock`` primitives, so recording and failing file systems see them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from logstore.storage.files import LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, storage_error

if TYPE_CHECKING:
    from logstore.storage.files import FileSystem


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
        op = LOCK_SH if shared else LOCK_EX
        if not blocking:
            op |= LOCK_NB
        try:
            self.fs._flock(self._fd, op)
        except BlockingIOError:
            return False
        except OSError as err:
            raise storage_error("lock", self.path, err) from err
        return True

    def release(self) -> None:
        if self._fd >= 0:
            try:
                self.fs._flock(self._fd, LOCK_UN)
            except OSError as err:
                raise storage_error("unlock", self.path, err) from err

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
