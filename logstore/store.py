"""The store: one data directory holding topics, their partitions and the topic registry.

On disk::

    <root>/store.json               the store's marker (:mod:`logstore.storedir`)
    <root>/.lock                    flock held by the open Store
    <root>/__topics/<topic>         one state file per topic: its id and config (the commit
                                    point of create, alter and add-partitions;
                                    :mod:`logstore.registry`)
    <root>/<topic>-<partition>/     a partition log (segments, checkpoint, head)
    <root>/__consumer_offsets-0/    committed offsets (:mod:`logstore.metadata`)

A directory is a store if it holds ``store.json``; a missing or empty one becomes a store
on its first open, and any other is refused (:mod:`logstore.storedir`). Creating and
deleting topics is crash-safe: a creation marker or a ``~deleted-`` directory tells the
next open what to remove (:mod:`logstore.registry`, which also says what cleanup may
delete: only logstore's own files). Nothing is written outside ``root``: topic names are
checked against Kafka's rule before any path is built.

This is the storage-level store: it imports no client. ``logstore.open`` and
``logstore.Store`` (:mod:`logstore.embedded`) add the producer, consumer and group
helpers on top.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self

from logstore import maintenance
from logstore.config import DEFAULT_MAX_PARTITIONS, TopicConfig
from logstore.errors import ReadOnlyStoreError, StoreClosedError, TopicNotFoundError
from logstore.metadata import OFFSETS_TOPIC, SNAPSHOT_NAME, OffsetStore
from logstore.registry import (
    TOPICS_DIR,
    CreatingMarker,
    Orphan,
    creating_markers,
    orphan_dirs,
    remove_leftovers,
    validate_name_quietly,
)
from logstore.storage.compaction import CompactionStats
from logstore.storage.files import DEFAULT_FS, FileSystem, ReadOnlyFileSystem, temp_path
from logstore.storage.log import PartitionLog
from logstore.storedir import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCK_FILE,
    OPENING_LOCK_FILE,
    STORE_FILE,
    check_data_directory,
    check_max_partitions,
    check_partition_count,
    lock_store,
    prepare_data_directory,
)
from logstore.topic import Topic, TopicDescription, validate_topic_name
from logstore.topictable import TopicTable, check_alterable
from logstore.types import Clock, Compression, HeadersArg, Record, RecordMetadata, SystemClock

__all__ = [  # what this module has always exported (some now live in registry, storedir)
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "OPENING_LOCK_FILE",
    "STORE_FILE", "TOPICS_DIR", "CreatingMarker", "Orphan", "Store", "creating_markers",
    "open", "orphan_dirs", "validate_name_quietly",
]

log = logging.getLogger(__name__)

_OFFSETS_LEFTOVERS = (
    os.path.basename(temp_path(SNAPSHOT_NAME)),
    SNAPSHOT_NAME + ".tmp",  # logstore 0.1's name
)


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
        check_max_partitions(max_partitions)
        self.max_partitions = max_partitions
        self.path = os.path.abspath(os.fspath(path))
        self.read_only = read_only
        self._fs: FileSystem = ReadOnlyFileSystem(fs, self.path) if read_only else fs
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._topics = TopicTable(self.path, self._fs, self._clock)
        self._offset_store: OffsetStore | None = None
        self._on_close: list[Callable[[], None]] = []
        self._init = init
        # Nothing is written until the directory is known to be a store, an empty one,
        # or one the caller asked to make a store in.
        check_data_directory(fs, self.path, create=create, init=init, read_only=read_only)
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
        self._store_lock, alone = lock_store(fs, self.path, exclusive=exclusive)
        try:
            self._state = _State.OPEN
            prepare_data_directory(self._fs, self.path, init=self._init, read_only=self.read_only)
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
            self.check_open()
            self._registry_lock.acquire()
            try:
                yield
            finally:
                self._registry_lock.release()

    # ------------------------------------------------------------------ open

    def _registry_entries(self) -> list[str]:
        """The registry directory's topic files (none if a read-only store has none)."""
        return self._topics.entries(missing_ok=self.read_only)

    def _load_topics(self) -> None:
        for entry in self._registry_entries():
            self._load_topic(entry)

    def _load_topic(self, name: str) -> Topic | None:
        """Read topic ``name``'s registry file (written by this or another process)."""
        return self._topics.load(name)

    def _remove_leftovers(self) -> None:
        """With the store to itself: remove what interrupted operations left behind."""
        remove_leftovers(self._fs, self.path, self._topics.partition_counts())
        offsets = os.path.join(self.path, f"{OFFSETS_TOPIC}-0")
        for name in _OFFSETS_LEFTOVERS:  # the committed-offsets snapshot's temp file
            self._fs.unlink(os.path.join(offsets, name), missing_ok=True)

    # ------------------------------------------------------------------ state

    def check_open(self) -> None:
        """Raise StoreClosedError if the store is closed."""
        if self._state is not _State.OPEN:
            raise StoreClosedError(f"store {self.path} is closed (open it again)")

    def check_writable(self, what: str) -> None:
        """Raise unless the store is open for writing (``what``: the write, for the
        message), as every write does first."""
        self.check_open()
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
                closes = [*self._on_close]  # what serves clients of this store goes first
                if self._offset_store is not None:
                    closes.append(self._offset_store.close)
                for close in [*closes, *(t.close for t in self._topics.topics())]:
                    try:
                        close()
                    except Exception as err:
                        errors.append(err)
                if errors:
                    raise errors[0]
            finally:
                self._store_lock.close()

    def on_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` when the store closes, before its partitions close (how the
        backend serving its clients stops its threads with it)."""
        with self._lock:
            self._on_close.append(fn)

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
        self.check_writable(f"create topic {name!r}")
        validate_topic_name(name)
        if partitions is not None:
            config["partitions"] = partitions
        count = config.get("partitions")
        if isinstance(count, int):  # before the config's own, wider range check
            check_partition_count(name, count, self.max_partitions)
        cfg = TopicConfig().replace(**config)
        self.check_open()
        with self._registry():
            return self._topics.create(name, cfg, exist_ok=exist_ok)

    def topic(self, name: str) -> Topic:
        """The topic called ``name``.

        Raises:
            TopicNotFoundError: there is none.
        """
        with self._lock:
            self.check_open()
            topic = self._topics.get(name)
            if topic is None and validate_name_quietly(name):
                topic = self._load_topic(name)  # created by another process since
            if topic is None:
                raise TopicNotFoundError(
                    f"unknown topic {name!r} (create it first; existing topics: "
                    f"{', '.join(self._topics.names()) or 'none'})"
                )
            return topic

    def list_topics(self) -> list[str]:
        """Every topic, including those other processes created since this store opened."""
        with self._lock:
            self.check_open()
            on_disk = set(self._registry_entries())
            for name in on_disk - set(self._topics.names()):
                self._load_topic(name)
            return sorted(on_disk)

    def has_topic(self, name: str) -> bool:
        with self._lock:
            self.check_open()
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
            self.check_open()
            return self._fresh_topic(name)

    def _fresh_topic(self, name: str) -> Topic:
        """Topic ``name`` as its registry file says now."""
        topic = self._load_topic(name) if validate_name_quietly(name) else None
        if topic is None:
            self._topics.forget(name)
            return self.topic(name)  # raises TopicNotFoundError
        return topic

    def delete_topic(self, name: str) -> None:
        """Delete a topic, all its data and every group's committed offsets for it."""
        self.check_writable(f"delete topic {name!r}")
        with self._registry():
            self._topics.delete(self._fresh_topic(name))
            # after the commit point: a crash before this leaves offsets of another
            # incarnation, which the topic id keeps from applying to a new topic
            if self._offset_store is not None or self._fs.exists(
                os.path.join(self.path, f"{OFFSETS_TOPIC}-0")
            ):
                self.offsets.delete_topic(name)

    def alter_topic(self, name: str, **changes: Any) -> TopicConfig:
        """Change a topic's config (not ``partitions``: see :meth:`add_partitions`)."""
        self.check_writable(f"alter topic {name!r}")
        check_alterable(name, changes)
        with self._registry():
            topic = self._fresh_topic(name)  # the newest config on disk
            return self._topics.alter(topic, changes)

    def add_partitions(self, name: str, total: int) -> TopicConfig:
        """Grow topic ``name`` to ``total`` partitions (Kafka only ever adds partitions).

        Raises:
            InvalidConfigError: ``total`` is not larger, or is above ``max_partitions``
                (nothing is created).
        """
        self.check_writable(f"add partitions to topic {name!r}")
        with self._registry():
            topic = self._fresh_topic(name)
            return self._topics.grow(topic, total, self.max_partitions)

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
            self.check_writable("use consumer-group offsets")
            if self._offset_store is None:
                self._offset_store = OffsetStore(
                    self.path, fs=self._fs, clock=self._clock, topic_id_of=self._topic_id_of
                )
            return self._offset_store

    def _topic_id_of(self, name: str) -> str | None:
        return self.topic(name).topic_id if self.has_topic(name) else None

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
        self.check_writable(f"append to topic {topic!r}")
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
        self.check_writable(f"append to topic {topic!r}")
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
        return maintenance.apply_retention(self)

    def compact(self, topic: str, **options: bool) -> dict[int, CompactionStats | None]:
        """Run the log cleaner on ``topic`` now (:func:`~logstore.maintenance.compact_topic`:
        options ``force``, ``roll``)."""
        return maintenance.compact_topic(self, topic, **options)

    def topics_snapshot(self) -> list[Topic]:  # the topics loaded, listed now

        with self._lock:
            self.check_open()
            return self._topics.topics()


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
    """Open the storage-level store in directory ``path`` (no client helpers: use
    :func:`logstore.open` for those); the arguments are :func:`logstore.open`'s."""
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
