"""The data directory of a store: its marker ``store.json``, and what is refused.

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

from logstore.errors import CorruptionError, NotAStoreError, StorageError
from logstore.storage.files import FileSystem, temp_path
from logstore.storage.statefile import decode_state, is_state, write_state

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
        return json.loads(data)  # a marker of an earlier version (or another program's)
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
