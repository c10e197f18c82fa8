"""The store: one data directory holding topics, their partitions and the topic registry.

On disk::

    <root>/.lock                    flock held by the open Store
    <root>/store.json               format version
    <root>/__topics/<topic>         one JSON file per topic: its id and config (the commit
                                    point of create, alter and add-partitions)
    <root>/<topic>-<partition>/     a partition log (segments, checkpoint)

Creating a topic makes its partition directories first and writes its registry file last;
deleting one removes the registry file first, then renames the partition directories to
``~deleted-<random>`` and removes them. A crash in between leaves directories no registered
topic owns, and the next open removes them (only if they hold nothing but logstore's own
files). Temporary names start with ``~``, which no topic name may contain, so a 249-character
topic name still fits the file system's 255-byte limit. Nothing is written outside ``root``:
topic names are checked against Kafka's rule before any path is built.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Self

from logstore.client import admin
from logstore.client.consumer import Consumer
from logstore.client.producer import Producer
from logstore.config import TopicConfig
from logstore.errors import (
    InvalidConfigError,
    InvalidTopicError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    TopicExistsError,
    TopicNotFoundError,
)
from logstore.metadata import OFFSETS_TOPIC, OffsetStore
from logstore.storage.checkpoint import CHECKPOINT_NAME
from logstore.storage.files import DEFAULT_FS, FileSystem
from logstore.storage.head import HEAD_NAME, OPEN_LOCK_NAME, WRITER_LOCK_NAME
from logstore.storage.log import PartitionLog
from logstore.storage.segment import parse_segment_name
from logstore.topic import (
    HeadersArg,
    Topic,
    TopicDescription,
    new_topic_id,
    partition_dir,
    validate_topic_name,
)
from logstore.types import (
    Clock,
    Compression,
    Record,
    RecordMetadata,
    SystemClock,
    TopicPartition,
)

log = logging.getLogger(__name__)

FORMAT_NAME = "logstore"
FORMAT_VERSION = 1
STORE_FILE = "store.json"
LOCK_FILE = ".lock"
OPENING_LOCK_FILE = ".opening.lock"
TOPICS_DIR = "__topics"
_PARTITION_DIR = re.compile(r"(?P<topic>[a-zA-Z0-9._-]+)-(?P<partition>\d+)")
_IMMUTABLE = ("partitions", "partitioner")
_TEMP_PREFIX = "~"  # no topic name contains "~", so temporary names never collide
_DELETED_PREFIX = "~deleted-"
_PARTITION_FILES = frozenset({CHECKPOINT_NAME, HEAD_NAME, OPEN_LOCK_NAME, WRITER_LOCK_NAME})


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
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        exclusive: bool = False,
        fs: FileSystem = DEFAULT_FS,
        clock: Clock | None = None,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._fs = fs
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._topics: dict[str, Topic] = {}
        self._offset_store: OffsetStore | None = None
        if not fs.is_dir(self.path):
            if not create:
                raise StorageError(
                    f"no store at {self.path} (pass create=True to make one)", self.path
                )
            parent = os.path.dirname(self.path)
            fs.mkdir(self.path, exist_ok=True)
            fs.fsync_dir(parent)
        # Opens take turns (a short, blocking lock), so two plain opens at the same moment
        # never refuse each other, and the exclusive-to-shared switch below (not atomic
        # with flock) cannot be raced by another opener.
        opening = fs.lock_file(os.path.join(self.path, OPENING_LOCK_FILE))
        try:
            opening.acquire()
            self._open_locked(fs, exclusive)
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
                if alone:  # no other process is half-way through creating a topic
                    self._remove_orphan_partitions()
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

    def _check_format(self) -> None:
        path = os.path.join(self.path, STORE_FILE)
        try:
            meta = json.loads(self._fs.read_file(path))
        except FileNotFoundError:
            self._fs.mkdir(os.path.join(self.path, TOPICS_DIR), exist_ok=True)
            self._fs.write_file_atomic(
                path, json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode()
            )
            return
        except ValueError as err:
            raise StorageError(f"{path} is not valid JSON: {err}", path) from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise StorageError(f"{self.path} is not a logstore data directory ({path})", path)
        version = meta.get("version")
        if version != FORMAT_VERSION:
            raise StorageError(
                f"{self.path} has store format version {version!r}; this logstore reads "
                f"version {FORMAT_VERSION} (upgrade logstore)",
                path,
            )
        self._fs.mkdir(os.path.join(self.path, TOPICS_DIR), exist_ok=True)

    def _topic_file(self, name: str) -> str:
        return os.path.join(self.path, TOPICS_DIR, name)

    def _load_topics(self) -> None:
        topics_dir = os.path.join(self.path, TOPICS_DIR)
        for entry in self._fs.listdir(topics_dir):
            if entry.startswith((_TEMP_PREFIX, ".")):
                continue
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
            topic.close(f"topic {name!r} was deleted (and created again)")
            topic = None
        if topic is None:
            topic = Topic(
                self.path, name, config, fs=self._fs, clock=self._clock, topic_id=topic_id
            )
            self._topics[name] = topic
        elif topic.config != config:
            topic.reconfigure(config)
        return topic

    def _remove_orphan_partitions(self) -> None:
        partitions = {name: t.num_partitions for name, t in self._topics.items()}
        for full, removable in orphan_dirs(self._fs, self.path, partitions):
            if removable:
                log.warning("removing %s: no registered topic owns it", full)
                self._fs.rmtree(full)
            else:
                log.warning("leaving %s alone: no topic owns it, but it holds other files", full)

    # ------------------------------------------------------------------ state

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            raise StoreClosedError(f"store {self.path} is closed (open it again)")

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
        return f"Store({self.path!r}, topics={len(self._topics)}, {self._state.value})"

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
            InvalidTopicError: bad name. InvalidConfigError: bad config.
            TopicExistsError: the topic exists and ``exist_ok`` is False.
        """
        validate_topic_name(name)
        if partitions is not None:
            config["partitions"] = partitions
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
            for p in range(cfg.partitions):
                PartitionLog(partition_dir(self.path, name, p), cfg, fs=self._fs).close()
            self._fs.fsync_dir(self.path)
            self._write_topic(topic, cfg)
            self._topics[name] = topic
            return topic

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
            on_disk = {
                entry
                for entry in self._fs.listdir(os.path.join(self.path, TOPICS_DIR))
                if not entry.startswith((_TEMP_PREFIX, "."))
            }
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

    def _fresh_topic(self, name: str) -> Topic:
        """Topic ``name`` as its registry file says now (hold the registry lock)."""
        topic = self._load_topic(name) if validate_name_quietly(name) else None
        if topic is None:
            self._topics.pop(name, None)
            return self.topic(name)  # raises TopicNotFoundError
        return topic

    def delete_topic(self, name: str) -> None:
        """Delete a topic, all its data and every group's committed offsets for it."""
        with self._registry():
            topic = self._fresh_topic(name)
            topic.close(f"topic {name!r} was deleted")
            self._fs.unlink(self._topic_file(name))
            self._fs.fsync_dir(os.path.join(self.path, TOPICS_DIR))
            del self._topics[name]
            for p in range(topic.num_partitions):
                directory = partition_dir(self.path, name, p)
                if self._fs.exists(directory):
                    doomed = os.path.join(self.path, _DELETED_PREFIX + secrets.token_hex(8))
                    self._fs.rename(directory, doomed)
                    self._fs.rmtree(doomed)
            self._fs.fsync_dir(self.path)
            # after the commit point: a crash before this leaves offsets of another
            # incarnation, which the topic id keeps from applying to a new topic
            if self._offset_store is not None or self._fs.exists(
                os.path.join(self.path, f"{OFFSETS_TOPIC}-0")
            ):
                self.offsets.delete_topic(name)

    def alter_topic(self, name: str, **changes: Any) -> TopicConfig:
        """Change a topic's config (not ``partitions``: see :meth:`add_partitions`)."""
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
        """Grow topic ``name`` to ``total`` partitions (Kafka only ever adds partitions)."""
        with self._registry():
            topic = self._fresh_topic(name)
            current = topic.num_partitions
            if isinstance(total, bool) or not isinstance(total, int) or total <= current:
                raise InvalidConfigError(
                    f"topic {name!r} has {current} partitions; add_partitions needs a larger "
                    f"total, got {total!r} (partitions can only be added)"
                )
            cfg = topic.config.replace(partitions=total)
            for p in range(current, total):
                PartitionLog(partition_dir(self.path, name, p), cfg, fs=self._fs).close()
            self._fs.fsync_dir(self.path)
            self._write_topic(topic, cfg)
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
        """Committed consumer-group offsets (opened on first use)."""
        with self._lock:
            self._check_open()
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
        self._check_open()
        return Producer(self, **options)

    def consumer(self, topics: Iterable[str] | None = None, **options: Any) -> Consumer:
        """A :class:`~logstore.client.consumer.Consumer` on this store: subscribed to
        ``topics`` with a ``group_id``, or assigned partitions later."""
        self._check_open()
        return Consumer(self, topics, **options)

    # ------------------------------------------------------------------ groups

    def list_groups(self) -> list[str]:
        """Consumer groups with committed offsets or members."""
        return admin.list_groups(self)

    def describe_group(self, group: str) -> admin.GroupDescription:
        """Live members, assignment, committed offset, log end and lag per partition."""
        return admin.describe_group(self, group)

    def reset_offsets(self, group: str, **options: Any) -> dict[TopicPartition, int]:
        """New offsets for an inactive group (``to_earliest``, ``to_latest``,
        ``to_datetime``, ``to_offset`` or ``shift_by``); a dry run unless ``execute``."""
        return admin.reset_offsets(self, group, **options)

    def delete_group(self, group: str) -> None:
        """Forget an inactive group's offsets and membership."""
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
        return self.topic(topic).append_many(records, compression=Compression.parse(compression))

    def read(
        self, topic: str, partition: int, offset: int, max_records: int | None = None
    ) -> list[Record]:
        """Records of one partition from ``offset`` on (one fetch's worth, up to 1 MiB)."""
        return self.partition(topic, partition).read_records(offset, max_records)

    def apply_retention(self) -> int:
        """Apply every topic's retention now; returns how many segments were deleted."""
        with self._lock:
            self._check_open()
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
    exclusive: bool = False,
    fs: FileSystem = DEFAULT_FS,
    clock: Clock | None = None,
) -> Store:
    """Open (creating if needed) the store in directory ``path``. Other processes (and
    other ``Store``s) may open it too, unless ``exclusive``."""
    return Store(path, create=create, exclusive=exclusive, fs=fs, clock=clock)


def orphan_dirs(
    fs: FileSystem, root: str, partitions: Mapping[str, int]
) -> Iterator[tuple[str, bool]]:
    """Directories in store ``root`` that no topic owns (``partitions``: each registered
    topic's partition count), with whether opening the store removes them: a deleted
    topic's leftovers, and partition directories holding only partition files."""
    for entry in fs.listdir(root):
        full = os.path.join(root, entry)
        if entry.startswith(_DELETED_PREFIX) and fs.is_dir(full):
            yield full, True
            continue
        match = _PARTITION_DIR.fullmatch(entry)
        if match is None or entry.startswith("__") or not fs.is_dir(full):
            continue  # "__" names are logstore's own (offsets log, groups)
        if int(match["partition"]) < partitions.get(match["topic"], 0):
            continue
        yield full, all(
            name in _PARTITION_FILES or name.endswith(".tmp")
            or parse_segment_name(name) is not None
            for name in fs.listdir(full)
        )


def validate_name_quietly(name: str) -> bool:
    """Whether ``name`` is a legal topic name (no exception)."""
    try:
        validate_topic_name(name)
    except InvalidTopicError:
        return False
    return True
