"""``verify_store``: check a whole store without changing it (``logstore verify``).

Every partition's batches (CRC and offsets), indexes and checkpoint; ``store.json`` and
the topic registry; the committed-offsets log (and the offsets snapshot of a store written
before that log was compacted); and directories no topic owns. Each problem is a
:class:`~logstore.storage.verify.Finding`: ``repair`` if the next open fixes it by itself
(so nothing acknowledged is lost), ``corrupt`` if it cannot (records are lost, or opening
or reading there raises). What keeps the check from running at all (no store there, a
topic it does not have, the store in use) is raised.

The store must not be in use: a batch a writer is appending would look like a torn tail,
so the store's lock is taken exclusively for the duration. On a store the user cannot
write (a read-only mount, a copy without write permission) the lock file is opened
read-only (``flock`` works on it), or skipped if there is none, and the report says so
(``read_only``); nothing is written either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import NamedTuple

from logstore.errors import (
    CorruptionError,
    InvalidTopicError,
    PartitionNotFoundError,
    StorageError,
    StoreLockedError,
    TopicNotFoundError,
)
from logstore.metadata import OFFSETS_TOPIC, SNAPSHOT_NAME, read_snapshot
from logstore.registry import (
    TOPICS_DIR,
    creating_markers,
    orphan_dirs,
    read_topic_file,
    registry_entries,
)
from logstore.storage.files import (
    DEFAULT_FS,
    READ_ONLY_ERRNOS,
    FileSystem,
    LockFile,
    ReadOnlyFileSystem,
)
from logstore.storage.segment import LOG_SUFFIX, segment_log_bases, segment_path
from logstore.storage.verify import CORRUPT, REPAIR, Finding, PartitionReport, verify_partition
from logstore.storedir import LOCK_FILE, MARKER_JSON, STORE_FILE, check_marker, decode_marker
from logstore.topic import partition_dir, validate_topic_name


class StoreReport(NamedTuple):
    path: str
    partitions: list[PartitionReport]
    findings: list[Finding]  # store-level ones (registry, orphans, snapshot)
    read_only: bool = False  # the store could not be opened for writing (nor was it)

    @property
    def all_findings(self) -> list[Finding]:
        return self.findings + [f for p in self.partitions for f in p.findings]

    @property
    def corrupt(self) -> list[Finding]:
        return [f for f in self.all_findings if f.kind == CORRUPT]

    @property
    def repairs(self) -> list[Finding]:
        return [f for f in self.all_findings if f.kind == REPAIR]


def _store_file(fs: FileSystem, root: str, findings: list[Finding]) -> None:
    """Check ``store.json`` (with the reader open uses): damaged, it is a finding (opening
    fails); another format or version is no store this logstore can check (raised)."""
    path = os.path.join(root, STORE_FILE)
    try:
        meta = decode_marker(fs.read_file(path), path)
    except (CorruptionError, ValueError, RecursionError, FileNotFoundError) as err:
        # FileNotFoundError: raced away
        findings.append(Finding(
            path, None, CORRUPT,
            f"{STORE_FILE} is damaged ({err}): opening the store fails; restore it from a "
            f"copy (it holds {MARKER_JSON})",
        ))
        return
    check_marker(meta, root, path)


def _registry(
    fs: FileSystem, root: str, findings: list[Finding], damaged: set[str]
) -> dict[str, int]:
    """Each registered topic's partition count (with the reader open uses); the names of
    damaged registry files go to ``damaged`` (a finding each)."""
    topics: dict[str, int] = {}
    if not fs.is_dir(os.path.join(root, TOPICS_DIR)):
        return topics
    for entry in registry_entries(fs, root):
        try:
            found = read_topic_file(fs, root, entry)
        except (CorruptionError, InvalidTopicError) as err:
            damaged.add(entry)
            findings.append(Finding(
                os.path.join(root, TOPICS_DIR, entry), None, CORRUPT,
                f"topic registry file is damaged ({err}): opening the store fails; restore "
                f"it from a copy, or delete it to drop the topic",
            ))
            continue
        if found is not None:  # None: deleted since the listing
            topics[entry] = found.config.partitions
    return topics


def _snapshot(fs: FileSystem, directory: str, findings: list[Finding]) -> None:
    """The offsets snapshot of a store written before compaction, if it has one. (None
    with a log starting past 0 is a migrated store: see :mod:`logstore.metadata`.)"""
    path = os.path.join(directory, SNAPSHOT_NAME)
    try:
        read_snapshot(fs, path)
    except CorruptionError as err:
        findings.append(Finding(path, None, CORRUPT, f"{err}: committed offsets cannot be read"))


def segment_logs(
    path: str | os.PathLike[str], topic: str, partition: int, *, fs: FileSystem = DEFAULT_FS
) -> list[str]:
    """The ``.log`` files of a partition of the store at ``path``, oldest first (for
    ``logstore inspect``; reads the directory only).

    Raises:
        PartitionNotFoundError: the store has no such partition directory.
    """
    directory = partition_dir(os.path.abspath(os.fspath(path)), topic, partition)
    if not fs.is_dir(directory):
        raise PartitionNotFoundError(
            f"no partition {topic}-{partition} in {os.fspath(path)} (no directory "
            f"{directory}; see 'logstore topics describe {topic}')"
        )
    bases = segment_log_bases(fs.listdir(directory))
    return [segment_path(directory, base, LOG_SUFFIX) for base in bases]


def verify_store(
    path: str | os.PathLike[str],
    *,
    topics: Iterable[str] | None = None,
    fs: FileSystem = DEFAULT_FS,
    on_progress: Callable[[int, int], object] | None = None,
) -> StoreReport:
    """Check the store at ``path`` (only ``topics``, if given) and report; change nothing.
    ``on_progress(done, total)`` is called after each partition.

    Raises:
        StorageError: ``path`` holds no store (or one of another format or version).
        StoreLockedError: the store is open (in this process or another).
        TopicNotFoundError, InvalidTopicError: one of ``topics`` is no topic of the store.
    """
    root = os.path.abspath(os.fspath(path))
    if not fs.exists(os.path.join(root, STORE_FILE)):
        raise StorageError(f"no store at {root} (it has no {STORE_FILE})", root)
    findings: list[Finding] = []
    _store_file(fs, root, findings)  # another format or version: raised, nothing locked
    lock, read_only = _store_lock(fs, root)
    try:
        if not lock.acquire(blocking=False):
            raise StoreLockedError(
                f"{root} is open in another process or Store: verify needs it to itself "
                f"(a batch being written would look like damage); close the others first"
            )
        damaged: set[str] = set()
        registered = _registry(fs, root, findings, damaged)
        wanted = None if topics is None else set(topics)
        for name in sorted(wanted or ()):
            if name not in registered and validate_topic_name(name) not in damaged:
                raise TopicNotFoundError(
                    f"unknown topic {name!r} (existing topics: "
                    f"{', '.join(sorted(set(registered) | damaged)) or 'none'})"
                )
        directories: list[str] = []
        for name, count in sorted(registered.items()):
            if wanted is not None and name not in wanted:
                continue
            for partition in range(count):
                directory = partition_dir(root, name, partition)
                if not fs.is_dir(directory):
                    # creating a topic (or partitions) makes the directories before the
                    # registry names them: this one was removed, and its records with it
                    findings.append(Finding(
                        directory, None, CORRUPT,
                        "partition directory is missing: the records it held are lost, and "
                        "using the partition raises TopicNotFoundError (restore it from a "
                        "copy, or make an empty directory of that name to accept the loss)",
                    ))
                    continue
                directories.append(directory)
        offsets_dir = os.path.join(root, f"{OFFSETS_TOPIC}-0")
        if wanted is None and fs.is_dir(offsets_dir):
            directories.append(offsets_dir)
            _snapshot(fs, offsets_dir, findings)
        reports: list[PartitionReport] = []
        for directory in directories:
            reports.append(verify_partition(fs, directory))
            if on_progress is not None:
                on_progress(len(reports), len(directories))
        if wanted is None:
            owned = dict(registered)
            damaged_markers: list[CorruptionError] = []
            for marker in creating_markers(fs, root, damaged_markers):
                findings.append(Finding(
                    marker.path, None, REPAIR,
                    f"an interrupted create of topic {marker.topic!r} may have left partition "
                    f"directories {marker.topic}-{marker.first} to "
                    f"{marker.topic}-{marker.end - 1}: those the registry does not count "
                    f"are removed on open",
                ))
                owned[marker.topic] = max(owned.get(marker.topic, 0), marker.end)
            for err in damaged_markers:
                findings.append(Finding(
                    err.path or root, None, REPAIR,
                    f"{err}: removed on open (the partition directories of the interrupted "
                    f"create it named are then removed as orphans)",
                ))
            for orphan in orphan_dirs(fs, root, owned):
                if os.path.basename(orphan.path).rpartition("-")[0] in damaged:
                    continue  # its topic's registry file is damaged (a finding already)
                findings.append(Finding(
                    orphan.path, None, REPAIR,
                    "no registered topic owns it: removed on open" if orphan.removable else
                    "no registered topic owns it, but it holds files logstore did not "
                    "create: left alone on open (move it away)",
                ))
        return StoreReport(root, reports, findings, read_only)
    finally:
        lock.close()


def _store_lock(fs: FileSystem, root: str) -> tuple[LockFile, bool]:
    """The store's lock file, and whether the store is read-only to this user (then the
    file is opened read-only, or is absent: nobody can be writing there either)."""
    path = os.path.join(root, LOCK_FILE)
    try:
        return fs.lock_file(path), False
    except StorageError as err:
        if err.errno not in READ_ONLY_ERRNOS:
            raise
    return ReadOnlyFileSystem(fs, root).lock_file(path), True
