"""The topics a store has loaded, kept in step with the topic registry on disk.

:class:`TopicTable` holds one :class:`~logstore.topic.Topic` per topic name this process
has read from the registry (:mod:`logstore.registry`) and carries out the changes that
commit there: create, delete, alter and add-partitions. It takes no lock: the
:class:`~logstore.store.Store` calls it under its own lock, and every change under the
registry's lock too. It knows nothing of the store's open/closed or read-only state, nor
of committed offsets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from logstore.config import TopicConfig
from logstore.errors import InvalidConfigError, TopicExistsError
from logstore.registry import (
    TOPICS_DIR,
    discard_partition_dir,
    make_partitions,
    read_topic_file,
    registry_entries,
    topic_file,
    write_topic_file,
)
from logstore.storage.files import FileSystem
from logstore.storedir import check_partition_count
from logstore.topic import Topic, new_topic_id, partition_dir
from logstore.types import Clock

IMMUTABLE = ("partitions", "partitioner")
"""Topic config keys :meth:`TopicTable.alter` may not change."""


def check_alterable(name: str, changes: Mapping[str, Any]) -> None:
    """Refuse ``changes`` to topic ``name``'s config that alter cannot make.

    Raises:
        InvalidConfigError: they change ``partitions`` (use add_partitions) or
            ``partitioner`` (keys would move between partitions).
    """
    for key in IMMUTABLE:
        if key in changes:
            raise InvalidConfigError(
                f"cannot alter {key} of topic {name!r} this way"
                + (" (use add_partitions)" if key == "partitions" else
                   " (keys would move between partitions)")
            )


class TopicTable:
    """The loaded topics of the store in ``root``, by name.

    Args:
        root: the store's directory.
        fs: the file system seam.
        clock: the time source the topics use.
    """

    def __init__(self, root: str, fs: FileSystem, clock: Clock) -> None:
        self._root = root
        self._fs = fs
        self._clock = clock
        self._topics: dict[str, Topic] = {}

    # ------------------------------------------------------------------ what is loaded

    def __len__(self) -> int:
        return len(self._topics)

    def __contains__(self, name: object) -> bool:
        return name in self._topics

    def get(self, name: str) -> Topic | None:
        """The loaded topic called ``name`` (None: none is loaded)."""
        return self._topics.get(name)

    def names(self) -> list[str]:
        """The loaded topics' names, sorted."""
        return sorted(self._topics)

    def topics(self) -> list[Topic]:
        """The loaded topics."""
        return list(self._topics.values())

    def partition_counts(self) -> dict[str, int]:
        """Each loaded topic's partition count."""
        return {name: t.num_partitions for name, t in self._topics.items()}

    # ------------------------------------------------------------------ reading the registry

    def entries(self, *, missing_ok: bool) -> list[str]:
        """The registry directory's topic files (none if ``missing_ok`` and it has none)."""
        return registry_entries(self._fs, self._root, missing_ok=missing_ok)

    def load(self, name: str) -> Topic | None:
        """Read topic ``name``'s registry file (written by this or another process).

        A topic deleted and created again since it was loaded becomes a new
        :class:`Topic` (the old one closed); an altered or grown one is reconfigured.
        None: the topic has no registry file.

        Raises:
            CorruptionError: its registry file is damaged.
        """
        entry = read_topic_file(self._fs, self._root, name)  # CorruptionError if damaged
        if entry is None:
            return None
        config, topic_id = entry.config, entry.topic_id
        topic = self._topics.get(name)
        if topic is not None and topic.topic_id != topic_id:
            # deleted and created again (by another process): a new incarnation
            topic.close(f"topic {name!r} was deleted (and created again)", deleted=True)
            topic = None
        if topic is None:
            topic = Topic(
                self._root, name, config, fs=self._fs, clock=self._clock, topic_id=topic_id
            )
            self._topics[name] = topic
        elif topic.config != config:
            topic.reconfigure(config)
        return topic

    def forget(self, name: str) -> None:
        """Drop topic ``name`` (gone from the registry), closing it as deleted."""
        gone = self._topics.pop(name, None)
        if gone is not None:
            gone.close(f"topic {name!r} was deleted", deleted=True)

    # ------------------------------------------------------------------ changes

    def create(self, name: str, cfg: TopicConfig, *, exist_ok: bool) -> Topic:
        """Create topic ``name`` with config ``cfg`` (its partitions, then its registry
        file); with ``exist_ok``, return the existing one instead.

        Raises:
            TopicExistsError: it exists and ``exist_ok`` is False.
        """
        existing = self.load(name)  # another process may have made it
        if existing is not None:
            if exist_ok:
                return existing
            raise TopicExistsError(
                f"topic {name!r} already exists (pass exist_ok=True to reuse it)"
            )
        topic = Topic(
            self._root, name, cfg, fs=self._fs, clock=self._clock, topic_id=new_topic_id()
        )
        make_partitions(self._fs, self._root, topic.name, topic.topic_id, 0, cfg)
        self._topics[name] = topic
        return topic

    def delete(self, topic: Topic) -> None:
        """Delete loaded ``topic``: close it, remove its registry file (the commit
        point), then its partition directories."""
        name = topic.name
        topic.close(f"topic {name!r} was deleted", deleted=True)
        self._fs.unlink(topic_file(self._root, name))
        self._fs.fsync_dir(os.path.join(self._root, TOPICS_DIR))
        del self._topics[name]
        for p in range(topic.num_partitions):
            discard_partition_dir(self._fs, self._root, partition_dir(self._root, name, p))
        self._fs.fsync_dir(self._root)

    def alter(self, topic: Topic, changes: Mapping[str, Any]) -> TopicConfig:
        """Apply config ``changes`` to ``topic`` (its registry file, then the topic)."""
        cfg = topic.config.replace(**changes)
        write_topic_file(self._fs, self._root, topic.name, cfg, topic.topic_id)
        topic.reconfigure(cfg)
        return cfg

    def grow(self, topic: Topic, total: int, max_partitions: int) -> TopicConfig:
        """Grow ``topic`` to ``total`` partitions (at most ``max_partitions``).

        Raises:
            InvalidConfigError: ``total`` is not larger, or is above ``max_partitions``
                (nothing is created).
        """
        name, current = topic.name, topic.num_partitions
        if isinstance(total, bool) or not isinstance(total, int) or total <= current:
            raise InvalidConfigError(
                f"topic {name!r} has {current} partitions; add_partitions needs a larger "
                f"total, got {total!r} (partitions can only be added)"
            )
        check_partition_count(name, total, max_partitions)
        cfg = topic.config.replace(partitions=total)
        make_partitions(self._fs, self._root, name, topic.topic_id, current, cfg)
        topic.reconfigure(cfg)
        return cfg
