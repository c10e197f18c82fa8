"""The data directory of a store: its marker ``store.json``, its lock, and what is refused
(a foreign directory, more partitions than the store allows).

A directory is a store if it holds ``store.json``, a state file of kind ``store`` (see
:mod:`logstore.storage.statefile`) whose payload is JSON::

    logstore-state 1 store
    {"format": "logstore", "version": 1}
    crc32c 1a2b3c4d

Earlier versions wrote the JSON alone; that is read too, and only the state file is
written. A ``store.json`` that is neither (another program's, or plain JSON naming another
format) means the directory is not a store: :class:`~logstore.errors.StorageError`,
nothing written. A marker that is a damaged state file is a
:class:`~logstore.errors.CorruptionError` naming it.

The first open of a missing or empty directory writes the marker (a directory holding
only the names that initialisation itself creates counts as empty, so two processes may
initialise one at once); any other directory is refused with
:class:`~logstore.errors.NotAStoreError`, before anything is written there, unless
``init=True`` asks to make a store in it.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any

from logstore.config import MAX_PARTITIONS
from logstore.errors import (
    CorruptionError,
    InvalidConfigError,
    NotAStoreError,
    PartitionLimitError,
    StorageError,
    StoreLockedError,
)
from logstore.storage.files import FileSystem, LockFile, temp_path
from logstore.storage.statefile import (
    MAGIC,
    decode_state,
    is_state,
    looks_like_damaged_state,
    write_state,
)

FORMAT_NAME = "logstore"
FORMAT_VERSION = 1
STORE_FILE = "store.json"
STORE_KIND = "store"
LOCK_FILE = ".lock"
OPENING_LOCK_FILE = ".opening.lock"
_TOPICS_DIR = "__topics"  # logstore.registry.TOPICS_DIR (the registry imports nothing here)
INIT_NAMES = frozenset({
    OPENING_LOCK_FILE,
    LOCK_FILE,
    _TOPICS_DIR,
    os.path.basename(temp_path(STORE_FILE)),
    STORE_FILE + ".tmp",  # how logstore 0.1 named the marker's temporary file
    ".gitkeep",  # the placeholder that keeps an empty directory in git (this repo's data/)
})
"""What initialising a store creates before its marker is in place (and the placeholder
git users leave in an empty directory, never touched): a directory holding only these is
empty for :func:`~logstore.store.open`."""
MARKER_JSON = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION})
"""The marker's payload."""


def decode_marker(data: bytes, path: str) -> Any:
    """What marker ``path`` (its bytes ``data``) holds: JSON, not yet checked.

    Raises:
        CorruptionError: it is a damaged state file (naming ``path``).
        ValueError: it is not JSON (it is not logstore's, or an old marker damaged).
    """
    if not is_state(data):
        try:
            return json.loads(data)  # a marker of an earlier version (or another program's)
        except ValueError as err:
            if looks_like_damaged_state(data):
                raise CorruptionError(
                    f"{path} is damaged: it is logstore's marker, but its first line is not "
                    f"{MAGIC.decode()}{STORE_KIND}",
                    path,
                    0,
                ) from err
            raise
    payload = decode_state(STORE_KIND, data, path)
    try:
        return json.loads(payload)
    except ValueError as err:
        raise CorruptionError(f"{path} is damaged: {err}", path, 0) from err


def check_marker(meta: Any, root: str, path: str) -> dict[str, Any]:
    """``meta``, if it is this logstore's marker and version.

    Raises:
        StorageError: it is another program's, or another version's.
    """
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise StorageError(
            f"{root} is not a logstore data directory: {path} is not logstore's "
            f"(use another directory)",
            path,
        )
    version = meta.get("version")
    if version != FORMAT_VERSION:
        raise StorageError(
            f"{root} has store format version {version!r}; this logstore reads version "
            f"{FORMAT_VERSION} (upgrade logstore)",
            path,
        )
    return meta


def read_marker(fs: FileSystem, root: str) -> dict[str, Any] | None:
    """The content of ``root``'s ``store.json``, None if there is none.

    Raises:
        StorageError: it is not logstore's marker (another program's ``store.json``, or
            not JSON), or another format version.
        CorruptionError: it is logstore's, damaged (naming it).
    """
    path = os.path.join(root, STORE_FILE)
    try:
        data = fs.read_file(path)
    except FileNotFoundError:
        return None
    try:
        meta = decode_marker(data, path)
    except (ValueError, RecursionError) as err:
        raise StorageError(
            f"{path} is not valid JSON: {err} (it is not logstore's marker; if this "
            f"directory is not a store, use another one)",
            path,
        ) from err
    return check_marker(meta, root, path)


def write_marker(fs: FileSystem, root: str) -> None:
    """Write ``root``'s marker (atomically)."""
    write_state(fs, os.path.join(root, STORE_FILE), STORE_KIND, MARKER_JSON.encode())


def refuse_foreign_directory(fs: FileSystem, root: str) -> None:
    """Raise NotAStoreError if ``root`` (without a marker) holds anything but what
    initialising a store creates."""
    found = [e for e in fs.listdir(root) if e not in INIT_NAMES]
    if found:
        raise NotAStoreError(root, found)


def make_data_directory(fs: FileSystem, root: str) -> None:
    """Create directory ``root`` (its parent must exist) and make it durable there.

    Raises:
        StorageError: it cannot be made (the message says why, e.g. no parent).
    """
    parent = os.path.dirname(root)
    try:
        fs.mkdir(root, exist_ok=True)
    except StorageError as err:
        if err.errno != errno.ENOENT:
            raise
        raise StorageError(
            f"cannot create data directory {root}: its parent {parent} does not exist "
            f"(create it first, or check the path)",
            root,
            errno=err.errno,
        ) from err
    fs.fsync_dir(parent)


def check_data_directory(
    fs: FileSystem, root: str, *, create: bool, init: bool, read_only: bool
) -> None:
    """Before anything is locked or written: make ``root`` if it is missing (and
    ``create``), and refuse it if it is no store and cannot become one.

    Raises:
        StorageError: no store there (read-only, or missing with ``create`` False), or
            another program's or version's marker.
        NotAStoreError: it holds other files and no marker, and ``init`` is False.
        CorruptionError: its marker is damaged.
    """
    if read_only:
        if not fs.dir_exists(root) or read_marker(fs, root) is None:
            raise StorageError(
                f"no store at {root} (it has no {STORE_FILE}, and a read-only open makes "
                f"none)",
                root,
            )
    elif not fs.dir_exists(root):
        if not create:
            raise StorageError(f"no store at {root} (pass create=True to make one)", root)
        make_data_directory(fs, root)
    elif read_marker(fs, root) is None and not init:
        refuse_foreign_directory(fs, root)


def prepare_data_directory(fs: FileSystem, root: str, *, init: bool, read_only: bool) -> None:
    """Under the opening lock: check the marker, or write it (and the registry
    directory) into an empty directory, or one ``init`` allows."""
    if read_only:
        if read_marker(fs, root) is None:
            raise StorageError(f"no store at {root}: {STORE_FILE} is gone", root)
        return
    if read_marker(fs, root) is None:
        if not init:
            refuse_foreign_directory(fs, root)  # again: files may have appeared since
        fs.mkdir(os.path.join(root, _TOPICS_DIR), exist_ok=True)
        write_marker(fs, root)
        return
    fs.mkdir(os.path.join(root, _TOPICS_DIR), exist_ok=True)


def lock_store(fs: FileSystem, root: str, *, exclusive: bool) -> tuple[LockFile, bool]:
    """Take store ``root``'s lock (the caller holds the opening lock): exclusively if
    no other Store has it, else shared (unless ``exclusive``). Returns the lock and
    whether it is held exclusively (this Store is alone: it may clean up).

    Raises:
        StoreLockedError: ``exclusive`` and another Store is open, or another Store was
            opened ``exclusive``.
    """
    lock = fs.lock_file(os.path.join(root, LOCK_FILE))
    try:
        alone = lock.acquire(blocking=False)
        if not alone and (exclusive or not lock.acquire(shared=True, blocking=False)):
            raise StoreLockedError(
                f"{root} is in use by another Store"
                + (" (opened exclusive=True; close it first)" if not exclusive else
                   " (close the other Stores, or open without exclusive=True)")
            )
    except BaseException:
        lock.close()
        raise
    return lock, alone


def check_max_partitions(max_partitions: object) -> None:
    """Refuse a store's ``max_partitions`` outside [1, MAX_PARTITIONS].

    Raises:
        InvalidConfigError: it is not an int in range.
    """
    if (
        isinstance(max_partitions, bool)
        or not isinstance(max_partitions, int)
        or not 1 <= max_partitions <= MAX_PARTITIONS
    ):
        raise InvalidConfigError(
            f"max_partitions={max_partitions!r} is out of range (use an int in "
            f"[1, {MAX_PARTITIONS}])"
        )


def check_partition_count(name: str, count: int, max_partitions: int) -> None:
    """Refuse ``count`` partitions for topic ``name`` above ``max_partitions`` (the
    store's cap) or :data:`~logstore.config.MAX_PARTITIONS` (anyone's).

    Raises:
        PartitionLimitError: too many (``hard``: above anyone's cap).
    """
    if count > MAX_PARTITIONS:
        raise PartitionLimitError(
            f"topic {name!r} cannot have {count} partitions: no topic may have more "
            f"than {MAX_PARTITIONS}",
            name, count, MAX_PARTITIONS, hard=True,
        )
    if count > max_partitions:
        raise PartitionLimitError(
            f"topic {name!r} cannot have {count} partitions: this store allows at most "
            f"{max_partitions} per topic (each is a directory of files; if you mean "
            f"it, open the store with max_partitions={count})",
            name, count, max_partitions, hard=False,
        )
