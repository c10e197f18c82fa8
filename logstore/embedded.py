"""The embedded store with its client helpers: what ``logstore.open`` returns.

:class:`logstore.store.Store` is the storage-level store and imports no client;
:class:`Store` here adds the convenience constructors (``store.producer()``,
``store.consumer()``) and the consumer-group admin calls on top of it, so that the
layering stays one way (store below, clients above, this facade above both).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from logstore import store as _storage
from logstore.client import admin
from logstore.client.consumer import Consumer
from logstore.client.producer import Producer
from logstore.cluster import KafkaStore
from logstore.config import DEFAULT_MAX_PARTITIONS
from logstore.maintenance import Maintenance
from logstore.storage.files import DEFAULT_FS, FileSystem
from logstore.types import Clock, TopicPartition


class Store(_storage.Store):
    """An open data directory, with producers, consumers and group admin. Use
    :func:`logstore.open`; close it (or use ``with``). Everything else is
    :class:`logstore.store.Store`'s (read its documentation for locking, ``exclusive``,
    ``init``, ``read_only`` and ``max_partitions``)."""

    def producer(self, **options: Any) -> Producer:
        """A :class:`~logstore.client.producer.Producer` on this store (options: linger_ms,
        batch_bytes, compression, idempotent)."""
        self.check_writable("make a producer")
        return Producer(self, **options)

    def consumer(self, topics: Iterable[str] | None = None, **options: Any) -> Consumer:
        """A :class:`~logstore.client.consumer.Consumer` on this store: subscribed to
        ``topics`` with a ``group_id``, or assigned partitions later (a read-only store
        takes consumers without a group only: a group records members and offsets)."""
        if options.get("group_id") is not None:
            self.check_writable(f"consume as group {options['group_id']!r}")
        self.check_open()
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
    maintenance: bool = True,
) -> Store:
    """Open the store in directory ``path``. Other processes (and other Store objects)
    may open it too, unless ``exclusive``.

    A ``kafka://host:port[,host:port...][?setting=value&...]`` address instead of a
    directory opens a Kafka cluster: a :class:`~logstore.cluster.KafkaStore` with the
    same producers, consumers, topic and group calls (the storage-level calls of a
    directory are not there; only ``clock`` applies). Type checkers see a Store here:
    annotate such a call's result as KafkaStore (or call ``KafkaStore(url)``).

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
        maintenance: run the store's maintenance thread (compaction of compacted topics,
            retention; :mod:`logstore.maintenance`) while it is open with write access.

    Raises:
        NotAStoreError: ``path`` holds files but no store, and ``init`` is False; nothing
            was written.
        StorageError: ``path`` cannot be a directory (a file, under a file, too long, a
            symlink loop), is missing with ``create=False``, or holds another program's
            or another version's ``store.json``.
        StoreLockedError: ``exclusive`` conflicts with another open ``Store``.
        ReadOnlyStoreError: (later) a write on a store opened ``read_only``.
    """
    if isinstance(path, str) and path.startswith("kafka://"):
        return KafkaStore(path, clock=clock)  # type: ignore[return-value]  # see above
    store = Store(
        path,
        create=create,
        init=init,
        exclusive=exclusive,
        read_only=read_only,
        max_partitions=max_partitions,
        fs=fs,
        clock=clock,
    )
    if maintenance and not read_only:
        store.on_close(Maintenance(store).start().stop)
    return store
