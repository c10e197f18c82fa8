"""The topic registry of a store: registry files, creation markers, orphan directories.

On disk, in ``<root>/__topics/``::

    <topic>              a state file of kind ``topic`` (see :mod:`logstore.storage.statefile`)
                         whose payload is JSON {"config": {...}, "id": "<hex>", "name": "<topic>"}:
                         the commit point of create, alter and add-partitions
    ~creating-<hex>      a state file of kind ``creating``, payload JSON
                         {"end": N, "first": M, "topic": "<topic>"}: an interrupted create
                         or add-partitions may have left partitions M..N-1 of the topic
    .lock                flock serialising creates and deletes across processes

Files written by earlier versions (the same JSON, unchecksummed) are read too; only state
files are written. A damaged registry file is a
:class:`~logstore.errors.CorruptionError` naming it (the store does not open: a topic is
never silently lost); a damaged creation marker is ignored with a WARNING and removed by
the next open that has the store to itself (the directories it named are orphans then,
removed like any other).

Everything here takes a :class:`~logstore.storage.files.FileSystem` and the store's root;
the :class:`~logstore.store.Store` holds the locks. Cleanup only ever deletes names
logstore itself creates (segment files, checkpoint, head, lock files, ``~<name>.tmp``
temporaries), one by one, and a directory only once that left it empty: a user's file is
never removed, wherever it is. Temporary names start with ``~``, which no topic name may
contain, so a 249-character topic name still fits the file system's 255-byte limit.

Creating a topic (or adding partitions) writes a creation marker naming the topic and its
new partitions, makes their directories, writes the registry file (the commit point) and
removes the marker. If that is interrupted, by an error or a KeyboardInterrupt, the new
directories go at once; after a crash the marker tells the next open which directories
to remove, quietly (one INFO line). Deleting a topic removes the registry file first,
then renames the partition directories to ``~deleted-<random>`` and removes them. A crash
in between leaves directories no registered topic owns, and the next open removes them
(only if they hold nothing but logstore's own files), with one summary line.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from logstore.config import MAX_PARTITIONS, TopicConfig
from logstore.errors import (
    CorruptionError,
    InvalidTopicError,
    LogstoreError,
    StorageError,
)
from logstore.storage.files import TEMP_PREFIX, TEMP_SUFFIX, FileSystem
from logstore.storage.head import WRITER_LOCK_NAME
from logstore.storage.log import PartitionLog, is_partition_file
from logstore.storage.segment import is_segment_log
from logstore.storage.statefile import decode_state, is_state, write_state
from logstore.topic import partition_dir, validate_topic_name

log = logging.getLogger(__name__)

TOPICS_DIR = "__topics"
TOPIC_KIND = "topic"
CREATING_KIND = "creating"
CREATING_PREFIX = "~creating-"  # + random hex: a 249-character topic name would not fit
DELETED_PREFIX = "~deleted-"
_DELETED_DIR = re.compile(r"~deleted-[0-9a-f]+")
_PARTITION_DIR = re.compile(r"(?P<topic>[a-zA-Z0-9._-]+)-(?P<partition>\d+)")
_SHOWN = 5  # names a summary line lists


def validate_name_quietly(name: str) -> bool:
    """Whether ``name`` is a legal topic name (no exception)."""
    try:
        validate_topic_name(name)
    except InvalidTopicError:
        return False
    return True


def summary(paths: list[str]) -> str:
    """``3 directories (a-0, a-1, a-2)``: a count and the first few names."""
    names = [os.path.basename(p) for p in paths]
    shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
    return f"{len(names)} director{'y' if len(names) == 1 else 'ies'} ({shown})"


def _json_payload(kind: str, what: str, data: bytes, path: str, hint: str = "") -> Any:
    """The JSON a registry state file (or its unchecksummed predecessor) holds.

    Raises:
        CorruptionError: damaged (naming ``path``, called ``what``).
    """
    try:
        return json.loads(decode_state(kind, data, path) if is_state(data) else data)
    except CorruptionError as err:
        raise CorruptionError(f"{what} {err}{hint}", path, err.position) from err
    except (ValueError, RecursionError) as err:
        raise CorruptionError(f"{what} {path} is damaged: {err}{hint}", path, 0) from err


# ---------------------------------------------------------------------- registry files


class TopicEntry(NamedTuple):
    """What a topic's registry file says."""

    name: str
    config: TopicConfig
    topic_id: str | None


def topic_file(root: str, name: str) -> str:
    return os.path.join(root, TOPICS_DIR, name)


def decode_topic_file(data: bytes, path: str, name: str) -> TopicEntry:
    """The registry entry in ``data`` (the bytes of ``path``, the file of topic ``name``).

    Raises:
        CorruptionError: the file is damaged, or names another topic (naming ``path``).
    """
    hint = " (restore it from a copy, or delete it to drop the topic)"
    meta = _json_payload(TOPIC_KIND, "topic registry file", data, path, hint)
    try:
        if validate_topic_name(meta["name"]) != name:
            raise ValueError(f"it names topic {meta['name']!r}")
        config = TopicConfig.from_dict(meta["config"])
        topic_id = meta.get("id")
        if topic_id is not None and not isinstance(topic_id, str):
            raise ValueError(f"topic id {topic_id!r} is not a string")
    except (LogstoreError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CorruptionError(
            f"topic registry file {path} is damaged: {err}{hint}", path, 0
        ) from err
    return TopicEntry(name, config, topic_id)


def read_topic_file(fs: FileSystem, root: str, name: str) -> TopicEntry | None:
    """Topic ``name``'s registry entry; None if it has none.

    Raises:
        CorruptionError: the file is damaged (naming it).
    """
    path = topic_file(root, name)
    try:
        data = fs.read_file(path)
    except FileNotFoundError:
        return None
    return decode_topic_file(data, path, name)


def write_topic_file(
    fs: FileSystem, root: str, name: str, config: TopicConfig, topic_id: str | None
) -> None:
    """Replace topic ``name``'s registry file atomically (the commit point)."""
    meta: dict[str, Any] = {"name": name, "config": config.to_dict()}
    if topic_id is not None:
        meta["id"] = topic_id
    payload = json.dumps(meta, indent=1, sort_keys=True).encode()
    # "~<name>", not "~<name>.tmp": a 249-character topic name must fit in 255 bytes
    tmp = os.path.join(root, TOPICS_DIR, TEMP_PREFIX + name)
    write_state(fs, topic_file(root, name), TOPIC_KIND, payload, tmp=tmp)


def registered_partitions(fs: FileSystem, root: str, name: str) -> int | None:
    """How many partitions the registry file on disk gives topic ``name`` (0 if it has
    none; None if it cannot be read: then nothing of the topic is touched)."""
    try:
        entry = read_topic_file(fs, root, name)
    except CorruptionError:
        return None
    return 0 if entry is None else entry.config.partitions


def registry_entries(fs: FileSystem, root: str, *, missing_ok: bool = False) -> list[str]:
    """The names of the registry's topic files (none if ``missing_ok`` and there is no
    registry directory)."""
    try:
        entries = fs.listdir(os.path.join(root, TOPICS_DIR))
    except FileNotFoundError:
        if not missing_ok:
            raise
        return []
    return [e for e in entries if not e.startswith((TEMP_PREFIX, "."))]


# ---------------------------------------------------------------------- creation markers


class CreatingMarker(NamedTuple):
    """An interrupted create (or add-partitions): partitions ``first`` to ``end - 1`` of
    ``topic`` may exist without the registry file counting them."""

    path: str
    topic: str
    first: int
    end: int


def write_creating_marker(fs: FileSystem, root: str, name: str, first: int, end: int) -> str:
    """Write a marker for partitions ``first`` to ``end - 1`` of topic ``name``; its path."""
    path = os.path.join(root, TOPICS_DIR, CREATING_PREFIX + secrets.token_hex(8))
    payload = json.dumps({"end": end, "first": first, "topic": name}, sort_keys=True)
    write_state(fs, path, CREATING_KIND, payload.encode())
    return path


def decode_creating_marker(data: bytes, path: str) -> CreatingMarker:
    """The creation marker in ``data`` (the bytes of ``path``).

    Raises:
        CorruptionError: it is damaged (naming ``path``).
    """
    meta = _json_payload(CREATING_KIND, "creation marker", data, path)
    try:
        name, first, end = meta["topic"], meta["first"], meta["end"]
        if not (isinstance(name, str) and validate_name_quietly(name)):
            raise ValueError(f"topic {name!r}")
        if type(first) is not int or type(end) is not int:
            raise ValueError(f"partitions {first!r} to {end!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptionError(f"creation marker {path} is damaged: {err}", path, 0) from err
    return CreatingMarker(path, name, max(0, first), min(end, MAX_PARTITIONS))


def creating_markers(
    fs: FileSystem, root: str, damaged: list[CorruptionError] | None = None
) -> list[CreatingMarker]:
    """The creation markers in store ``root``'s registry directory; a damaged one is left
    out (and its error appended to ``damaged``, if given)."""
    directory = os.path.join(root, TOPICS_DIR)
    try:
        entries = fs.listdir(directory)
    except FileNotFoundError:
        return []
    markers = []
    for entry in entries:
        if not entry.startswith(CREATING_PREFIX) or entry.endswith(TEMP_SUFFIX):
            continue
        path = os.path.join(directory, entry)
        try:
            markers.append(decode_creating_marker(fs.read_file(path), path))
        except FileNotFoundError:
            continue  # its create completed meanwhile
        except CorruptionError as err:
            if damaged is not None:
                damaged.append(err)
    return markers


# ---------------------------------------------------------------------- orphan directories


class Orphan(NamedTuple):
    """A directory of the store holding a partition that no registered topic owns."""

    path: str
    removable: bool
    """It holds only files logstore creates: opening the store removes it."""
    records: bool
    """One of its segments holds data (not just an interrupted create's empty files)."""


def orphan_dirs(fs: FileSystem, root: str, partitions: Mapping[str, int]) -> Iterator[Orphan]:
    """Directories in store ``root`` holding a partition no registered topic owns
    (``partitions``: each registered topic's partition count): ``~deleted-<hex>``
    directories of a delete, and directories named ``<topic>-<n>`` that hold a segment
    (or nothing at all, beyond a registered topic's count). A directory without a segment
    file is not a partition but a user's (``work-1/``, a model's ``run-1/checkpoint``),
    and is never listed, whatever its name."""
    for entry in fs.listdir(root):
        full = os.path.join(root, entry)
        deleted = _DELETED_DIR.fullmatch(entry) is not None
        match = None if deleted else _PARTITION_DIR.fullmatch(entry)
        if not deleted and (match is None or entry.startswith("__")):
            continue  # "__" names are logstore's own (offsets log, groups)
        if match is not None and int(match["partition"]) < partitions.get(match["topic"], 0):
            continue
        if not fs.is_dir(full):
            continue
        names = fs.listdir(full)
        if not names:
            if deleted or (match is not None and match["topic"] in partitions):
                yield Orphan(full, removable=True, records=False)
            continue
        logs = [name for name in names if is_segment_log(name)]
        if not (deleted or logs):
            continue
        yield Orphan(
            full,
            removable=all(is_partition_file(name) for name in names),
            records=any(fs.size(os.path.join(full, name)) > 0 for name in logs),
        )


# ---------------------------------------------------------------------- removing directories


def remove_own_dir(fs: FileSystem, directory: str) -> bool:
    """Delete the files logstore creates in partition directory ``directory``, one by
    one, then the directory if that left it empty. True if it is gone; any other file
    (or directory) in it stays, untouched."""
    try:
        names = fs.listdir(directory)
    except FileNotFoundError:
        return True
    others = False
    for name in names:
        full = os.path.join(directory, name)
        if is_partition_file(name) and not fs.is_dir(full):
            fs.unlink(full, missing_ok=True)
        else:
            others = True
    if others:
        return False
    try:
        fs.rmdir(directory)
    except StorageError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False  # something appeared since it was listed: it stays
        if err.errno != errno.ENOENT:
            raise
    return True


def holds_segments(fs: FileSystem, directory: str) -> bool:
    return fs.is_dir(directory) and any(map(is_segment_log, fs.listdir(directory)))


def discard_partition_dir(fs: FileSystem, root: str, directory: str) -> None:
    """Remove a deleted topic's partition directory. It is renamed to
    ``~deleted-<random>`` first (a crash then leaves a name no topic owns, which the next
    open removes), unless it holds files logstore did not create: then only logstore's
    files go, and the others stay where they are."""
    if not fs.is_dir(directory):
        return
    if all(is_partition_file(name) for name in fs.listdir(directory)):
        doomed = os.path.join(root, DELETED_PREFIX + secrets.token_hex(8))
        # Under the partition's writer lock: an append another process is making
        # completes first (acknowledged while the partition was live), and every later
        # one finds its head file gone and fails; none lands in the renamed directory
        # after its check and is acknowledged for nothing.
        writer = fs.lock_file(os.path.join(directory, WRITER_LOCK_NAME))
        try:
            writer.acquire()
            fs.rename(directory, doomed)
        finally:
            writer.close()
        directory = doomed
    if not remove_own_dir(fs, directory):
        log.warning(
            "left %s: it holds files logstore did not create (only the deleted "
            "partition's own files were removed)",
            directory,
        )


def abandon_partitions(
    fs: FileSystem, root: str, name: str, first: int, end: int, marker: str
) -> list[str]:
    """Remove partition directories ``first`` to ``end - 1`` of topic ``name`` that its
    registry file does not count, then the creation ``marker``. Returns the directories
    left because they hold files logstore did not create."""
    registered = registered_partitions(fs, root, name)
    if registered is None:
        return []  # an unreadable registry file: opening the store reports it
    kept: list[str] = []
    removed = 0
    for p in range(max(first, registered), end):
        directory = partition_dir(root, name, p)
        if not fs.is_dir(directory):
            continue
        if remove_own_dir(fs, directory):
            removed += 1
        else:
            kept.append(directory)
    fs.unlink(marker, missing_ok=True)
    if removed:
        log.info(
            "removed %d partition directories of topic %r left by an interrupted create "
            "or add-partitions",
            removed,
            name,
        )
    return kept


def remove_leftovers(fs: FileSystem, root: str, partitions: Mapping[str, int]) -> None:
    """With the store to itself (``partitions``: each registered topic's partition
    count): remove what interrupted creates and deletes left behind (only files logstore
    creates), with one summary line per kind, not one a directory."""
    kept: list[str] = []
    damaged: list[CorruptionError] = []
    for marker in creating_markers(fs, root, damaged):
        kept += abandon_partitions(fs, root, marker.topic, marker.first, marker.end, marker.path)
    for err in damaged:
        log.warning("removing %s (the directories it named are removed as orphans)", err)
        if err.path is not None:
            fs.unlink(err.path, missing_ok=True)
    empty: list[str] = []
    with_records: list[str] = []
    for orphan in orphan_dirs(fs, root, partitions):
        if orphan.removable and remove_own_dir(fs, orphan.path):
            (with_records if orphan.records else empty).append(orphan.path)
        else:
            kept.append(orphan.path)
    if empty:
        log.info(
            "removed %s holding no records that no registered topic owns (left by an "
            "interrupted topic create, add-partitions or delete)",
            summary(empty),
        )
    if with_records:
        log.warning(
            "removed %s that no registered topic owns (left by an interrupted topic delete)",
            summary(with_records),
        )
    kept = list(dict.fromkeys(kept))  # a marker's directory is an orphan too
    if kept:
        log.warning(
            "left %s alone: no registered topic owns them, but they hold files logstore "
            "did not create (move those away)",
            summary(kept),
        )


# ---------------------------------------------------------------------- creating partitions


def make_partitions(
    fs: FileSystem, root: str, name: str, topic_id: str | None, first: int, cfg: TopicConfig
) -> None:
    """Make partitions ``first`` to ``cfg.partitions - 1`` of topic ``name`` and write its
    registry file (the commit point), under a creation marker. The caller holds the
    registry lock.

    Anything that stops it before the commit (an error, a KeyboardInterrupt) removes the
    new directories before it propagates; after a crash, the marker tells the next open
    to remove them."""
    end = cfg.partitions
    marker = write_creating_marker(fs, root, name, first, end)
    try:
        for p in range(first, end):
            directory = partition_dir(root, name, p)
            # no registered topic owns it (we hold the registry lock): the leftover of a
            # deleted topic that no open has cleaned yet. Its records belong to another
            # incarnation and must not become this one's.
            if holds_segments(fs, directory):
                discard_partition_dir(fs, root, directory)
            PartitionLog(directory, cfg, fs=fs).close()
        fs.fsync_dir(root)
        write_topic_file(fs, root, name, cfg, topic_id)
    except BaseException:
        try:
            abandon_partitions(fs, root, name, first, end, marker)
        except Exception as err:  # the first failure is the one to report
            log.warning(
                "could not remove the partitions of the interrupted create of topic %r "
                "(the next open removes them): %s",
                name,
                err,
            )
        raise
    fs.unlink(marker, missing_ok=True)
