"""How an ``OSError`` from a file operation becomes a typed, one-line
:class:`~logstore.errors.StorageError` (for :mod:`logstore.storage.files`, the I/O seam)."""

from __future__ import annotations

import errno

from logstore.errors import READ_ONLY_ERRNOS, StorageError


def storage_error(action: str, path: str, err: OSError) -> StorageError:
    """A typed error for ``action`` on ``path`` failing with ``err`` (with a hint for a
    full disk or a read-only file system)."""
    hint = ""
    if err.errno == errno.ENOSPC:
        hint = " (the disk is full: free space, then retry)"
    elif err.errno in READ_ONLY_ERRNOS:
        hint = " (check permissions and that the file system is writable)"
    return StorageError(
        f"cannot {action} {path}: {err.strerror or err}{hint}", path, errno=err.errno
    )


def short_path(path: str, limit: int = 100) -> str:
    """``path``, shortened in the middle if it is long (for one-line messages)."""
    if len(path) <= limit:
        return path
    return f"{path[: limit // 2]}...{path[-limit // 2 :]} ({len(path)} characters)"
