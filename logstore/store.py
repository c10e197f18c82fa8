"""The store: one data directory holding topics, their partitions and the topic registry.

On disk::

    <root>/store.json               the store's marker: {"format": "logstore", "version": 1}
    <root>/.lock                    flock held by the open Store
    <root>/__topics/<topic>         one JSON file per topic: its id and config (the commit
                                    point of create, alter and add-partitions)
    <root>/<topic>-<partition>/     a partition log (segments, checkpoint)

A directory is a store if it holds ``store.json``. The first open of a missing or empty
directory writes it (a directory holding only the names that initialisation itself
creates counts as empty, so two processes may initialise one at once); any other
directory is refused with :class:`~logstore.errors.NotAStoreError`, before anything is
written there, unless ``init=True`` asks to make a store in it.

Creating a topic (or adding partitions) writes a marker ``__topics/~creating-<random>``
naming the topic and its new partitions, makes their directories, writes the registry
file (the commit point) and removes the marker. If that is interrupted, by an error or a
KeyboardInterrupt, the new directories go at once; after a crash the marker tells the
next open which directories to remove, quietly (one INFO line). Deleting a topic removes
the registry file first, then renames the partition directories to ``~deleted-<random>``
and removes them. A crash in between leaves directories no registered topic owns, and the
next open removes them (only if they hold nothing but logstore's own files), with one
summary line.

``read_only=True`` opens the store through a
:class:`~logstore.storage.files.ReadOnlyFileSystem`: nothing is created, written, locked
for writing or cleaned (what recovery would repair is repaired in memory), and every write
raises :class:`~logstore.errors.ReadOnlyStoreError`. It works on a read-only mount and on
a copy the user may read but not write.

A topic may have at most ``max_partitions`` partitions (10,000 by default): a larger count
is refused with :class:`~logstore.errors.InvalidConfigError` before anything is made.

Cleanup only ever deletes names logstore itself creates (segment files, checkpoint, head,
lock files, ``~<name>.tmp`` temporaries), one by one, and a directory only once that left
it empty: a user's file is never removed, wherever it is. Temporary names start with
``~``, which no topic name may contain, so a 249-character topic name still fits the file
system's 255-byte limit. Nothing is written outside ``root``: topic names are checked
against Kafka's rule before any path is built.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from logstore.config import DEFAULT_MAX_PARTITIONS, MAX_PARTITIONS, TopicConfig
from logstore.errors import (
    InvalidConfigError,
    InvalidTopicError,
    LogstoreError,
    NotAStoreError,
    PartitionLimitError,
    ReadOnlyStoreError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    TopicExistsError,
    TopicNotFoundError,
)
from logstore.metadata import OFFSETS_TOPIC, SNAPSHOT_NAME, OffsetStore
from logstore.storage.files import (
    DEFAULT_FS,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    FileSystem,
    ReadOnlyFileSystem,
    temp_path,
)
from logstore.storage.head import WRITER_LOCK_NAME
from logstore.storage.log import PartitionLog, is_partition_file
from logstore.storage.segment import is_segment_log
from logstore.topic import (
    Topic,
    TopicDescription,
    new_topic_id,
    partition_dir,
    validate_topic_name,
)
from logstore.types import (
    Clock,
    Compression,
    HeadersArg,
    Record,
    RecordMetadata,
    SystemClock,
    TopicPartition,
)

if TYPE_CHECKING:  # transitional: these methods move to the package facade
    from logstore.client import admin
    from logstore.client.consumer import Consumer
    from logstore.client.producer import Producer

log = logging.getLogger(__name__)

FORMAT_NAME = "logstore"
FORMAT_VERSION = 1
STORE_FILE = "store.json"
LOCK_FILE = ".lock"
OPENING_LOCK_FILE = ".opening.lock"
TOPICS_DIR = "__topics"
_PARTITION_DIR = re.compile(r"(?P<topic>[a-zA-Z0-9._-]+)-(?P<partition>\d+)")
_IMMUTABLE = ("partitions", "partitioner")
_TEMP_PREFIX = TEMP_PREFIX  # no topic name contains "~", so temporary names never collide
_DELETED_PREFIX = "~deleted-"
_DELETED_DIR = re.compile(r"~deleted-[0-9a-f]+")
_CREATING_PREFIX = "~creating-"  # + random hex: a 249-character topic name would not fit
_INIT_NAMES = frozenset({
    OPENING_LOCK_FILE,
    LOCK_FILE,
    TOPICS_DIR,
    os.path.basename(temp_path(STORE_FILE)),
    STORE_FILE + ".tmp",  # how logstore 0.1 named the marker's temporary file
    ".gitkeep",  # the placeholder that keeps an empty directory in git (this repo's data/)
})
"""What initialising a store creates before its marker is in place (and the placeholder
git users leave in an empty directory, never touched): a directory holding only these is
empty for :func:`open`."""
_OFFSETS_LEFTOVERS = (
    os.path.basename(temp_path(SNAPSHOT_NAME)),
    SNAPSHOT_NAME + ".tmp",  # logstore 0.1's name
)
_SHOWN = 5  # names a summary line lists


class _State(enum.Enum):
    OPEN = "open"  # usable
    CLOSED = "closed"  # close() ran; every method raises StoreClosedError


class Store:
    """An open data directory. Use :func:`logstore.open`; close it (or use ``with``).

    Thread-safe, and any number of processes may have the same directory open at once
    (each partition's writers take turns through a file lock). ``exclusive=True`` asks
    to be the only one: another ``Store`` on the directory, in this process or another,
    then gets :class:`~logstore.errors.StoreLockedError`, and so does this one if others
    are open.

    A directory is a store if it holds ``store.json``; a missing or empty one becomes a
    store on its first open. A directory holding anything else is refused with
    :class:`~logstore.errors.NotAStoreError` (and nothing is written there) unless
    ``init`` is True. ``create=False`` refuses a missing directory instead of making it.

    ``max_partitions`` (default 10,000, at most 100,000) caps the partitions of one topic:
    :meth:`create_topic` and :meth:`add_partitions` refuse more before making anything.

    ``read_only=True`` opens an existing store without creating, writing, locking for
    writing or cleaning anything (lock files are opened read-only, or not at all where
    none exists); reads work, and every write raises
    :class:`~logstore.errors.ReadOnlyStoreError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        init: bool = False,
        exclusive: bool = False,
        read_only: bool = False,
        max_partitions: int = DEFAULT_MAX_PARTITIONS,
        fs: FileSystem = DEFAULT_FS,
        clock: Clock | None = None,
    ) -> None:
        if (
            isinstance(max_partitions, bool)
            or not isinstance(max_partitions, int)
            or not 1 <= max_partitions <= MAX_PARTITIONS
        ):
            raise InvalidConfigError(
                f"max_partitions={max_partitions!r} is out of range (use an int in "
                f"[1, {MAX_PARTITIONS}])"
            )
        self.max_partitions = max_partitions
        self.path = os.path.abspath(os.fspath(path))
        self.read_only = read_only
        self._fs: FileSystem = ReadOnlyFileSystem(fs, self.path) if read_only else fs
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._topics: dict[str, Topic] = {}
        self._offset_store: OffsetStore | None = None
        self._init = init
        # Nothing is written until the directory is known to be a store, an empty one,
        # or one the caller asked to make a store in.
        if read_only:
            if not fs.dir_exists(self.path) or self._read_marker() is None:
                raise StorageError(
                    f"no store at {self.path} (it has no {STORE_FILE}, and a read-only open "
                    f"makes none)",
                    self.path,
                )
        elif not fs.dir_exists(self.path):
            if not create:
                raise StorageError(
                    f"no store at {self.path} (pass create=True to make one)", self.path
                )
            parent = os.path.dirname(self.path)
            try:
                fs.mkdir(self.path, exist_ok=True)
            except StorageError as err:
                if err.errno != errno.ENOENT:
                    raise
                raise StorageError(
                    f"cannot create data directory {self.path}: its parent {parent} does "
                    f"not exist (create it first, or check the path)",
                    self.path,
                    errno=err.errno,
                ) from err
            fs.fsync_dir(parent)
        elif self._read_marker() is None:
            self._refuse_foreign_directory()
        # Opens take turns (a short, blocking lock), so two plain opens at the same moment
        # never refuse each other, and the exclusive-to-shared switch below (not atomic
        # with flock) cannot be raced by another opener.
        opening = self._fs.lock_file(os.path.join(self.path, OPENING_LOCK_FILE))
        try:
            opening.acquire()
            self._open_locked(self._fs, exclusive)
        finally:
            opening.close()

    def _open_locked(self, fs: FileSystem, exclusive: bool) -> None:
        self._store_lock = fs.lock_file(os.path.join(self.path, LOCK_FILE))
        try:
            alone = self._store_lock.acquire(blocking=False)
            shared_ok = not alone and not exclusive
            if not alone and not (
                shared_ok and self._store_lock.acquire(shared=True, blocking=False)
            ):
                raise StoreLockedError(
                    f"{self.path} is in use by another Store"
                    + (" (opened exclusive=True; close it first)" if not exclusive else
                       " (close the other Stores, or open without exclusive=True)")
                )
            self._state = _State.OPEN
            self._check_format()
            self._registry_lock = fs.lock_file(os.path.join(self.path, TOPICS_DIR, LOCK_FILE))
            with self._registry():
                self._load_topics()
                if alone and not self.read_only:  # no other process is mid-create
                    self._remove_leftovers()
            if alone and not exclusive:
                self._store_lock.acquire(shared=True)
        except BaseException:
            self._state = _State.CLOSED
            self._store_lock.close()
            raise

    @contextlib.contextmanager
    def _registry(self) -> Iterator[None]:
        """Hold the topic registry's lock (other processes' creates and deletes wait)."""
        with self._lock:
            self._check_open()
            self._registry_lock.acquire()
            try:
                yield
            finally:
                self._registry_lock.release()

    # ------------------------------------------------------------------ open

    def _read_marker(self) -> dict[str, Any] | None:
        """The content of ``store.json``, None if there is none.

        Raises:
            StorageError: it is not logstore's marker (another program's ``store.json``,
                or damaged), or another format version.
        """
        path = os.path.join(self.path, STORE_FILE)
        try:
            meta = json.loads(self._fs.read_file(path))
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise StorageError(
                f"{path} is not valid JSON: {err} (it is not logstore's marker; if this "
                f"directory is not a store, use another one)",
                path,
            ) from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise StorageError(
                f"{self.path} is not a logstore data directory: {path} is not logstore's "
                f"(use another directory)",
                path,
            )
        version = meta.get("version")
        if version != FORMAT_VERSION:
            raise StorageError(
                f"{self.path} has store format version {version!r}; this logstore reads "
                f"version {FORMAT_VERSION} (upgrade logstore)",
                path,
            )
        return meta

    def _refuse_foreign_directory(self) -> None:
        """Raise NotAStoreError if the directory (without a marker) holds anything but
        what initialising a store creates, unless ``init`` asked for a store here."""
        if self._init:
            return
        found = [e for e in self._fs.listdir(self.path) if e not in _INIT_NAMES]
        if found:
            raise NotAStoreError(self.path, found)

    def _check_format(self) -> None:
        """Under the opening lock: check the marker, or write it (and the registry
        directory), into an empty directory, or one ``init`` allows."""
        if self.read_only:
            if self._read_marker() is None:
                raise StorageError(f"no store at {self.path}: {STORE_FILE} is gone", self.path)
            return
        if self._read_marker() is None:
            self._refuse_foreign_directory()  # again: files may have appeared since
            self._fs.mkdir(os.path.join(self.path, TOPICS_DIR), exist_ok=True)
            self._fs.write_file_atomic(
                os.path.join(self.path, STORE_FILE),
                json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode(),
            )
            return
        self._fs.mkdir(os.path.join(self.path, TOPICS_DIR), exist_ok=True)

    def _topic_file(self, name: str) -> str:
        return os.path.join(self.path, TOPICS_DIR, name)

    def _registry_entries(self) -> list[str]:
        """The registry directory's topic files (none if a read-only store has none)."""
        try:
            entries = self._fs.listdir(os.path.join(self.path, TOPICS_DIR))
        except FileNotFoundError:
            if not self.read_only:
                raise
            return []
        return [e for e in entries if not e.startswith((_TEMP_PREFIX, "."))]

    def _load_topics(self) -> None:
        for entry in self._registry_entries():
            self._load_topic(entry)

    def _load_topic(self, name: str) -> Topic | None:
        """Read topic ``name``'s registry file (written by this or another process)."""
        path = self._topic_file(name)
        try:
            meta = json.loads(self._fs.read_file(path))
            if validate_topic_name(meta["name"]) != name:
                raise ValueError(f"it names topic {meta['name']!r}")
            config = TopicConfig.from_dict(meta["config"])
            topic_id = meta.get("id")
            if topic_id is not None and not isinstance(topic_id, str):
                raise ValueError(f"topic id {topic_id!r} is not a string")
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as err:
            raise StorageError(
                f"topic registry file {path} is damaged: {err} (restore it from a copy, "
                f"or delete it to drop the topic)",
                path,
            ) from err
        topic = self._topics.get(name)
        if topic is not None and topic.topic_id != topic_id:
            # deleted and created again (by another process): a new incarnation
            topic.close(f"topic {name!r} was deleted (and created again)", deleted=True)
            topic = None
        if topic is None:
            topic = Topic(
                self.path, name, config, fs=self._fs, clock=self._clock, topic_id=topic_id
            )
            self._topics[name] = topic
        elif topic.config != config:
            topic.reconfigure(config)
        return topic

    def _remove_leftovers(self) -> None:
        """With the store to itself: remove what interrupted operations left behind
        (only files logstore creates), with one summary line per kind, not one a
        directory."""
        kept: list[str] = []
        for marker in creating_markers(self._fs, self.path):
            kept += self._abandon_partitions(marker.topic, marker.first, marker.end, marker.path)
        partitions = {name: t.num_partitions for name, t in self._topics.items()}
        empty: list[str] = []
        with_records: list[str] = []
        for orphan in orphan_dirs(self._fs, self.path, partitions):
            if orphan.removable and self._remove_own_dir(orphan.path):
                (with_records if orphan.records else empty).append(orphan.path)
            else:
                kept.append(orphan.path)
        if empty:
            log.info(
                "removed %s holding no records that no registered topic owns (left by an "
                "interrupted topic create, add-partitions or delete)",
                _summary(empty),
            )
        if with_records:
            log.warning(
                "removed %s that no registered topic owns (left by an interrupted topic "
                "delete)",
                _summary(with_records),
            )
        kept = list(dict.fromkeys(kept))  # a marker's directory is an orphan too
        if kept:
            log.warning(
                "left %s alone: no registered topic owns them, but they hold files "
                "logstore did not create (move those away)",
                _summary(kept),
            )
        offsets = os.path.join(self.path, f"{OFFSETS_TOPIC}-0")
        for name in _OFFSETS_LEFTOVERS:  # the committed-offsets snapshot's temp file
            self._fs.unlink(os.path.join(offsets, name), missing_ok=True)

    def _remove_own_dir(self, directory: str) -> bool:
        """Delete the files logstore creates in partition directory ``directory``, one by
        one, then the directory if that left it empty. True if it is gone; any other
        file (or directory) in it stays, untouched."""
        fs = self._fs
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

    def _holds_segments(self, directory: str) -> bool:
        fs = self._fs
        return fs.is_dir(directory) and any(map(is_segment_log, fs.listdir(directory)))

    def _discard_partition_dir(self, directory: str) -> None:
        """Remove a deleted topic's partition directory. It is renamed to
        ``~deleted-<random>`` first (a crash then leaves a name no topic owns, which the
        next open removes), unless it holds files logstore did not create: then only
        logstore's files go, and the others stay where they are."""
        fs = self._fs
        if not fs.is_dir(directory):
            return
        if all(is_partition_file(name) for name in fs.listdir(directory)):
            doomed = os.path.join(self.path, _DELETED_PREFIX + secrets.token_hex(8))
            # Under the partition's writer lock: an append another process is making
            # completes first (acknowledged while the partition was live), and every
            # later one finds its head file gone and fails; none lands in the renamed
            # directory after its check and is acknowledged for nothing.
            writer = fs.lock_file(os.path.join(directory, WRITER_LOCK_NAME))
            try:
                writer.acquire()
                fs.rename(directory, doomed)
            finally:
                writer.close()
            directory = doomed
        if not self._remove_own_dir(directory):
            log.warning(
                "left %s: it holds files logstore did not create (only the deleted "
                "partition's own files were removed)",
                directory,
            )

    # ------------------------------------------------------------------ state

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            raise StoreClosedError(f"store {self.path} is closed (open it again)")

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyStoreError(
                f"cannot {what}: the store {self.path} is open read-only, so nothing is "
                f"written (open it without read_only=True, with write access, to do this)",
                self.path,
            )

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def close(self) -> None:
        """Flush and close every partition, then release the lock. Idempotent."""
        with self._lock:
            if getattr(self, "_state", _State.CLOSED) is _State.CLOSED:
                return
            self._state = _State.CLOSED
            self._registry_lock.close()
            try:
                errors: list[BaseException] = []
                if self._offset_store is not None:
                    try:
                        self._offset_store.close()
                    except Exception as err:
                        errors.append(err)
                for topic in self._topics.values():
                    try:
                        topic.close()
                    except Exception as err:
                        errors.append(err)
                if errors:
                    raise errors[0]
            finally:
                self._store_lock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = ", read-only" if self.read_only else ""
        return f"Store({self.path!r}, topics={len(self._topics)}, {self._state.value}{mode})"

    # ------------------------------------------------------------------ topics

    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        *,
        exist_ok: bool = False,
        **config: Any,
    ) -> Topic:
        """Create a topic with ``partitions`` partitions and the given config overrides.

        Raises:
            InvalidTopicError: bad name. InvalidConfigError: bad config, or more
                partitions than ``max_partitions`` (nothing is created).
            TopicExistsError: the topic exists and ``exist_ok`` is False.
        """
        self._check_writable(f"create topic {name!r}")
        validate_topic_name(name)
        if partitions is not None:
            config["partitions"] = partitions
        count = config.get("partitions")
        if isinstance(count, int):  # before the config's own, wider range check
            self._check_partition_count(name, count)
        cfg = TopicConfig().replace(**config)
        self._check_open()
        with self._registry():
            existing = self._load_topic(name)  # another process may have made it
            if existing is not None:
                if exist_ok:
                    return existing
                raise TopicExistsError(
                    f"topic {name!r} already exists (pass exist_ok=True to reuse it)"
                )
            topic = Topic(
                self.path, name, cfg, fs=self._fs, clock=self._clock, topic_id=new_topic_id()
            )
            self._make_partitions(topic, 0, cfg)
            self._topics[name] = topic
            return topic

    def _check_partition_count(self, name: str, count: int) -> None:
        if count > MAX_PARTITIONS:
            raise PartitionLimitError(
                f"topic {name!r} cannot have {count} partitions: no topic may have more "
                f"than {MAX_PARTITIONS}",
                name, count, MAX_PARTITIONS, hard=True,
            )
        if count > self.max_partitions:
            raise PartitionLimitError(
                f"topic {name!r} cannot have {count} partitions: this store allows at most "
                f"{self.max_partitions} per topic (each is a directory of files; if you mean "
                f"it, open the store with max_partitions={count})",
                name, count, self.max_partitions, hard=False,
            )

    def _make_partitions(self, topic: Topic, first: int, cfg: TopicConfig) -> None:
        """Make partitions ``first`` to ``cfg.partitions - 1`` of ``topic`` and write its
        registry file (the commit point), under a creation marker.

        Anything that stops it before the commit (an error, a KeyboardInterrupt) removes
        the new directories before it propagates; after a crash, the marker tells the next
        open to remove them."""
        name = topic.name
        end = cfg.partitions
        marker = self._creating_marker(name)
        self._fs.write_file_atomic(
            marker, json.dumps({"topic": name, "first": first, "end": end}).encode()
        )
        try:
            for p in range(first, end):
                directory = partition_dir(self.path, name, p)
                # no registered topic owns it (we hold the registry lock): the leftover of
                # a deleted topic that no open has cleaned yet. Its records belong to
                # another incarnation and must not become this one's.
                if self._holds_segments(directory):
                    self._discard_partition_dir(directory)
                PartitionLog(directory, cfg, fs=self._fs).close()
            self._fs.fsync_dir(self.path)
            self._write_topic(topic, cfg)
        except BaseException:
            try:
                self._abandon_partitions(name, first, end, marker)
            except Exception as err:  # the first failure is the one to report
                log.warning(
                    "could not remove the partitions of the interrupted create of topic %r "
                    "(the next open removes them): %s",
                    name,
                    err,
                )
            raise
        self._fs.unlink(marker, missing_ok=True)

    def _creating_marker(self, name: str) -> str:
        return os.path.join(self.path, TOPICS_DIR, _CREATING_PREFIX + secrets.token_hex(8))

    def _registered_partitions(self, name: str) -> int | None:
        """How many partitions the registry file on disk gives topic ``name`` (0 if it
        has none; None if it cannot be read: then nothing of the topic is touched)."""
        try:
            meta = json.loads(self._fs.read_file(self._topic_file(name)))
            return TopicConfig.from_dict(meta["config"]).partitions
        except FileNotFoundError:
            return 0
        except (LogstoreError, ValueError, KeyError, TypeError):
            return None

    def _abandon_partitions(self, name: str, first: int, end: int, marker: str) -> list[str]:
        """Remove partition directories ``first`` to ``end - 1`` of topic ``name`` that its
        registry file does not count, then the creation ``marker``. Returns the
        directories left because they hold files logstore did not create."""
        registered = self._registered_partitions(name)
        if registered is None:
            return []  # an unreadable registry file: opening the store reports it
        kept: list[str] = []
        removed = 0
        for p in range(max(first, registered), end):
            directory = partition_dir(self.path, name, p)
            if not self._fs.is_dir(directory):
                continue
            if self._remove_own_dir(directory):
                removed += 1
            else:
                kept.append(directory)
        self._fs.unlink(marker, missing_ok=True)
        if removed:
            log.info(
                "removed %d partition directories of topic %r left by an interrupted create "
                "or add-partitions",
                removed,
                name,
            )
        return kept

    def _write_topic(self, topic: Topic, cfg: TopicConfig) -> None:
        name = topic.name
        meta: dict[str, Any] = {"name": name, "config": cfg.to_dict()}
        if topic.topic_id is not None:
            meta["id"] = topic.topic_id
        data = json.dumps(meta, indent=1, sort_keys=True)
        tmp = os.path.join(self.path, TOPICS_DIR, _TEMP_PREFIX + name)
        self._fs.write_file_atomic(self._topic_file(name), data.encode(), tmp=tmp)

    def topic(self, name: str) -> Topic:
        """The topic called ``name``.

        Raises:
            TopicNotFoundError: there is none.
        """
        with self._lock:
            self._check_open()
            topic = self._topics.get(name)
            if topic is None and validate_name_quietly(name):
                topic = self._load_topic(name)  # created by another process since
            if topic is None:
                raise TopicNotFoundError(
                    f"unknown topic {name!r} (create it first; existing topics: "
                    f"{', '.join(sorted(self._topics)) or 'none'})"
                )
            return topic

    def list_topics(self) -> list[str]:
        """Every topic, including those other processes created since this store opened."""
        with self._lock:
            self._check_open()
            on_disk = set(self._registry_entries())
            for name in on_disk - set(self._topics):
                self._load_topic(name)
            return sorted(on_disk)

    def has_topic(self, name: str) -> bool:
        with self._lock:
            self._check_open()
            return name in self._topics or (
                validate_name_quietly(name) and self._load_topic(name) is not None
            )

    def describe_topic(self, name: str) -> TopicDescription:
        return self.topic(name).describe()

    def refresh_topic(self, name: str) -> Topic:
        """Topic ``name`` as its registry file says now (one small file read): a topic
        deleted and created again (by any process) is a new :class:`Topic`, the old one
        closed (its use raises TopicNotFoundError); a grown or altered one has its new
        config. Producers and consumers call this every ``metadata_max_age_ms``.

        Raises:
            TopicNotFoundError: the topic is gone (the cached one is closed).
        """
        with self._lock:
            self._check_open()
            return self._fresh_topic(name)

    def _fresh_topic(self, name: str) -> Topic:
        """Topic ``name`` as its registry file says now."""
        topic = self._load_topic(name) if validate_name_quietly(name) else None
        if topic is None:
            gone = self._topics.pop(name, None)
            if gone is not None:
                gone.close(f"topic {name!r} was deleted", deleted=True)
            return self.topic(name)  # raises TopicNotFoundError
        return topic

    def delete_topic(self, name: str) -> None:
        """Delete a topic, all its data and every group's committed offsets for it."""
        self._check_writable(f"delete topic {name!r}")
        with self._registry():
            topic = self._fresh_topic(name)
            topic.close(f"topic {name!r} was deleted", deleted=True)
            self._fs.unlink(self._topic_file(name))
            self._fs.fsync_dir(os.path.join(self.path, TOPICS_DIR))
            del self._topics[name]
            for p in range(topic.num_partitions):
                self._discard_partition_dir(partition_dir(self.path, name, p))
            self._fs.fsync_dir(self.path)
            # after the commit point: a crash before this leaves offsets of another
            # incarnation, which the topic id keeps from applying to a new topic
            if self._offset_store is not None or self._fs.exists(
                os.path.join(self.path, f"{OFFSETS_TOPIC}-0")
            ):
                self.offsets.delete_topic(name)

    def alter_topic(self, name: str, **changes: Any) -> TopicConfig:
        """Change a topic's config (not ``partitions``: see :meth:`add_partitions`)."""
        self._check_writable(f"alter topic {name!r}")
        for key in _IMMUTABLE:
            if key in changes:
                raise InvalidConfigError(
                    f"cannot alter {key} of topic {name!r} this way"
                    + (" (use add_partitions)" if key == "partitions" else
                       " (keys would move between partitions)")
                )
        with self._registry():
            topic = self._fresh_topic(name)  # the newest config on disk
            cfg = topic.config.replace(**changes)
            self._write_topic(topic, cfg)
            topic.reconfigure(cfg)
            return cfg

    def add_partitions(self, name: str, total: int) -> TopicConfig:
        """Grow topic ``name`` to ``total`` partitions (Kafka only ever adds partitions).

        Raises:
            InvalidConfigError: ``total`` is not larger, or is above ``max_partitions``
                (nothing is created).
        """
        self._check_writable(f"add partitions to topic {name!r}")
        with self._registry():
            topic = self._fresh_topic(name)
            current = topic.num_partitions
            if isinstance(total, bool) or not isinstance(total, int) or total <= current:
                raise InvalidConfigError(
                    f"topic {name!r} has {current} partitions; add_partitions needs a larger "
                    f"total, got {total!r} (partitions can only be added)"
                )
            self._check_partition_count(name, total)
            cfg = topic.config.replace(partitions=total)
            self._make_partitions(topic, current, cfg)
            topic.reconfigure(cfg)
            return cfg

    @property
    def clock(self) -> Clock:
        """The store's time source."""
        return self._clock

    @property
    def fs(self) -> FileSystem:
        """The store's I/O seam."""
        return self._fs

    @property
    def offsets(self) -> OffsetStore:
        """Committed consumer-group offsets (opened on first use; not on a read-only
        store, whose offsets log would need a write to close)."""
        with self._lock:
            self._check_writable("use consumer-group offsets")
            if self._offset_store is None:
                self._offset_store = OffsetStore(
                    self.path, fs=self._fs, clock=self._clock, topic_id_of=self._topic_id_of
                )
            return self._offset_store

    def _topic_id_of(self, name: str) -> str | None:
        return self.topic(name).topic_id if self.has_topic(name) else None

    def producer(self, **options: Any) -> Producer:
        """A :class:`~logstore.client.producer.Producer` on this store (options: linger_ms,
        batch_bytes, compression, idempotent)."""
        from logstore.client.producer import Producer  # noqa: PLC0415

        self._check_writable("make a producer")
        return Producer(self, **options)

    def consumer(self, topics: Iterable[str] | None = None, **options: Any) -> Consumer:
        """A :class:`~logstore.client.consumer.Consumer` on this store: subscribed to
        ``topics`` with a ``group_id``, or assigned partitions later (a read-only store
        takes consumers without a group only: a group records members and offsets)."""
        if options.get("group_id") is not None:
            self._check_writable(f"consume as group {options['group_id']!r}")
        from logstore.client.consumer import Consumer  # noqa: PLC0415

        self._check_open()
        return Consumer(self, topics, **options)

    # ------------------------------------------------------------------ groups

    def list_groups(self) -> list[str]:
        """Consumer groups with committed offsets or members."""
        from logstore.client import admin  # noqa: PLC0415

        return admin.list_groups(self)

    def describe_group(self, group: str) -> admin.GroupDescription:
        """Live members, assignment, committed offset, log end and lag per partition."""
        from logstore.client import admin  # noqa: PLC0415

        return admin.describe_group(self, group)

    def reset_offsets(self, group: str, **options: Any) -> dict[TopicPartition, int]:
        """New offsets for an inactive group (``to_earliest``, ``to_latest``,
        ``to_datetime``, ``to_offset`` or ``shift_by``); a dry run unless ``execute``."""
        from logstore.client import admin  # noqa: PLC0415

        return admin.reset_offsets(self, group, **options)

    def delete_group(self, group: str) -> None:
        """Forget an inactive group's offsets and membership."""
        from logstore.client import admin  # noqa: PLC0415

        admin.delete_group(self, group)

    def partition(self, topic: str, partition: int) -> PartitionLog:
        """The low-level log of one partition."""
        return self.topic(topic).partition(partition)

    # ------------------------------------------------------------------ records

    def append(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """Append one record and return where it landed.

        The partition is ``partition`` if given, else the topic's partitioner applied to
        ``key`` (null keys round-robin). ``timestamp`` defaults to now (ms). Durability
        follows the topic's ``flush`` policy.
        """
        self._check_writable(f"append to topic {topic!r}")
        with self._forget_if_deleted(topic):
            return self.topic(topic).append(value, key, headers, partition, timestamp)

    def append_many(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None, HeadersArg, int | None, int | None]],
        *,
        compression: Compression | str = Compression.NONE,
    ) -> list[RecordMetadata]:
        """Append ``(value, key, headers, partition, timestamp)`` tuples, one batch per
        partition; returns the metadata of each in input order."""
        self._check_writable(f"append to topic {topic!r}")
        with self._forget_if_deleted(topic):
            return self.topic(topic).append_many(
                records, compression=Compression.parse(compression)
            )

    @contextlib.contextmanager
    def _forget_if_deleted(self, name: str) -> Iterator[None]:
        """On TopicNotFoundError, re-read topic ``name``'s registry file, so the next
        call finds the new incarnation (or none) rather than the deleted one."""
        try:
            yield
        except TopicNotFoundError:
            with contextlib.suppress(TopicNotFoundError, StoreClosedError):
                self.refresh_topic(name)
            raise

    def read(
        self, topic: str, partition: int, offset: int, max_records: int | None = None
    ) -> list[Record]:
        """Records of one partition from ``offset`` on (one fetch's worth, up to 1 MiB)."""
        return self.partition(topic, partition).read_records(offset, max_records)

    def apply_retention(self) -> int:
        """Apply every topic's retention now; returns how many segments were deleted."""
        with self._lock:
            self._check_writable("apply retention")
            topics = list(self._topics.values())
        return sum(
            topic.partition(p).apply_retention()
            for topic in topics
            for p in range(topic.num_partitions)
        )


def open(  # mirrors sqlite3.connect and lmdb.open: the package's entry point
    path: str | os.PathLike[str] = "data",
    *,
    create: bool = True,
    init: bool = False,
    exclusive: bool = False,
    read_only: bool = False,
    max_partitions: int = DEFAULT_MAX_PARTITIONS,
    fs: FileSystem = DEFAULT_FS,
    clock: Clock | None = None,
) -> Store:
    """Open the store in directory ``path``. Other processes (and other Store objects)
    may open it too, unless ``exclusive``.

    Args:
        path: the store's directory. A missing one is made (unless ``create`` is False);
            a missing or empty one becomes a store (``store.json`` is written).
        create: make ``path`` if it does not exist.
        init: make a store in ``path`` even though it holds other files (they are never
            touched); without it such a directory is refused.
        exclusive: be the only ``Store`` on the directory.
        read_only: open an existing store without writing anything at all (for a
            read-only mount or a copy without write permission); writes then raise
            ReadOnlyStoreError.
        max_partitions: the most partitions a topic may have (10,000 by default, at most
            100,000): more are refused with InvalidConfigError before anything is made.
        fs: the I/O seam. clock: the time source.

    Raises:
        NotAStoreError: ``path`` holds files but no store, and ``init`` is False; nothing
            was written.
        StorageError: ``path`` cannot be a directory (a file, under a file, too long, a
            symlink loop), is missing with ``create=False``, or holds another program's
            or another version's ``store.json``.
        StoreLockedError: ``exclusive`` conflicts with another open ``Store``.
        ReadOnlyStoreError: (later) a write on a store opened ``read_only``.
    """
    return Store(
        path,
        create=create,
        init=init,
        exclusive=exclusive,
        read_only=read_only,
        max_partitions=max_partitions,
        fs=fs,
        clock=clock,
    )


class CreatingMarker(NamedTuple):
    """An interrupted create (or add-partitions): partitions ``first`` to ``end - 1`` of
    ``topic`` may exist without the registry file counting them."""

    path: str
    topic: str
    first: int
    end: int


def creating_markers(fs: FileSystem, root: str) -> list[CreatingMarker]:
    """The creation markers in store ``root``'s registry directory."""
    directory = os.path.join(root, TOPICS_DIR)
    try:
        entries = fs.listdir(directory)
    except FileNotFoundError:
        return []
    markers = []
    for entry in entries:
        if not entry.startswith(_CREATING_PREFIX) or entry.endswith(TEMP_SUFFIX):
            continue
        path = os.path.join(directory, entry)
        try:
            meta = json.loads(fs.read_file(path))
            name, first, end = meta["topic"], int(meta["first"]), int(meta["end"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            continue  # written atomically: only another program's file reads as damaged
        if isinstance(name, str) and validate_name_quietly(name):
            markers.append(CreatingMarker(path, name, max(0, first), min(end, MAX_PARTITIONS)))
    return markers


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


def _summary(paths: list[str]) -> str:
    """``3 directories (a-0, a-1, a-2)``: a count and the first few names."""
    names = [os.path.basename(p) for p in paths]
    shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
    return f"{len(names)} director{'y' if len(names) == 1 else 'ies'} ({shown})"


def validate_name_quietly(name: str) -> bool:
    """Whether ``name`` is a legal topic name (no exception)."""
    try:
        validate_topic_name(name)
    except InvalidTopicError:
        return False
    return True
