"""The backend that serves an embedded store: clients on a data directory, no server.

:class:`LocalBackend` implements :class:`logstore.client.backend.Backend` over a
:class:`~logstore.store.Store`: topics and partition logs for records, the offsets log for
commits, the file-based :class:`~logstore.groups.GroupCoordinator` for groups (shared by
every process that opens the directory). One backend serves every client of one store
(:func:`backend_for`), so the clients of a store share its coordinator and its caches.

This module is the only one between the clients and the storage files: the clients know
topics by name and incarnation id, never their logs, directories or lock files.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from logstore.backend.share_methods import ShareGroupMethods
from logstore.backend.txn import TransactionRequests, committed_isolation
from logstore.config import (
    READ_UNCOMMITTED,
    TopicConfig,
)
from logstore.errors import (
    LogstoreError,
    OffsetOutOfRangeError,
    TopicNotFoundError,
)
from logstore.groups import GroupCoordinator
from logstore.groups.state import Liveness
from logstore.records import decode_header
from logstore.storage.head import HEAD_NAME
from logstore.storage.watch import ChangeWatcher
from logstore.store import Store
from logstore.topic import Topic
from logstore.types import (
    AppendResult,
    CommittedOffset,
    Compression,
    ConsumerRecord,
    FetchResult,
    GroupInfo,
    GroupMember,
    JoinResult,
    OffsetAndTimestamp,
    SystemClock,
    TopicMetadata,
    TopicPartition,
)

_WAIT_FIRST_S = 0.0001
_WAIT_MAX_S = 0.002
"""Without a way to hear of other processes' appends (no inotify), a fetch waiting for
records looks again after 0.1 ms, backing off to 2 ms: appends are seen within 2 ms."""
_WAIT_RECHECK_S = 0.05
"""With inotify, a waiting fetch sleeps until an append wakes it, and looks again at
least this often anyway (a safety net: a watch that could not be added, say)."""


class LocalBackend(ShareGroupMethods, TransactionRequests):
    """The :class:`~logstore.client.backend.Backend` of an embedded store. Thread-safe.

    Use :func:`backend_for` (one backend per store); the store must stay open while
    clients use it.

    Args:
        store: the open store to serve.
        member_liveness: how the group coordinator tells a member is alive: "lock" (an
            embedded member lives as long as its process: the default) or "deadline"
            (a member behind a network lives while it heartbeats within its session
            timeout: the wire server's members).
    """

    def __init__(self, store: Store, *, member_liveness: Liveness = "lock") -> None:
        self._store = store
        # group deadlines run on the wall clock every process shares (the store's clock
        # stamps records, and tests move it by hand)
        self._groups = GroupCoordinator(store.path, store.fs, SystemClock())
        self._liveness: Liveness = member_liveness
        self._listeners: list[Callable[[TopicPartition], None]] = []
        self._watcher: ChangeWatcher | None = None
        self._watch_lock = threading.Lock()
        # fetches waiting for records, woken by an append to one of their partitions
        self._waiting: dict[TopicPartition, set[threading.Event]] = {}

    @property
    def store(self) -> Store:
        return self._store

    def now_ms(self) -> int:
        return self._store.clock.now_ms()

    @property
    def uses_system_clock(self) -> bool:
        """Whether :meth:`now_ms` is the wall clock (a producer then reads it inline)."""
        return type(self._store.clock) is SystemClock

    # ------------------------------------------------------------------ metadata

    def topic_metadata(self, topic: str) -> TopicMetadata:
        found = self._store.refresh_topic(topic)
        return _metadata(found)

    def list_topics(self) -> list[str]:
        return self._store.list_topics()

    def create_topic(self, name: str, partitions: int = 1, **config: Any) -> TopicMetadata:
        return _metadata(self._store.create_topic(name, partitions, **config))

    def delete_topic(self, name: str) -> None:
        self._store.delete_topic(name)

    def add_partitions(self, name: str, total: int) -> TopicMetadata:
        self._store.add_partitions(name, total)
        return _metadata(self._store.refresh_topic(name))

    def topic_config(self, name: str) -> TopicConfig:
        return self._store.refresh_topic(name).config

    def _incarnation(self, name: str, topic_id: str | None) -> Topic:
        """Topic ``name`` in incarnation ``topic_id``.

        Raises:
            TopicNotFoundError: that incarnation was deleted (maybe created again).
        """
        topic = self._store.topic(name)
        if topic.topic_id != topic_id or topic.closed:
            topic = self._store.refresh_topic(name)
            if topic.topic_id != topic_id:
                raise TopicNotFoundError(
                    f"topic {name!r} was deleted and created again since the records were "
                    f"sent (they are not written into the new topic; send them again)"
                )
        return topic

    # ------------------------------------------------------------------ produce

    def append(
        self,
        tp: TopicPartition,
        records: Sequence[tuple[int, bytes | None, bytes | None, Any]],
        *,
        topic_id: str | None,
        compression: Compression = Compression.NONE,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
        transactional: bool = False,
    ) -> AppendResult:
        topic = self._incarnation(tp.topic, topic_id)
        if transactional:
            self._txns.verify_append(producer_id, producer_epoch, tp)
        try:
            result = topic.partition(tp.partition).append_records(
                records,
                compression=compression,
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                base_sequence=base_sequence,
                transactional=transactional,
            )
        except TopicNotFoundError as err:
            raise topic.deleted(err) from err
        self._appended(tp)
        return result

    def append_batch(self, tp: TopicPartition, batch: bytes) -> AppendResult:
        topic = self._store.topic(tp.topic)
        header = decode_header(batch)
        if header is not None and header.is_transactional and not header.is_control:
            self._txns.verify_append(header.producer_id, header.producer_epoch, tp)
        try:
            result = topic.partition(tp.partition).append_batches(batch)
        except TopicNotFoundError as err:
            raise topic.deleted(err) from err
        self._appended(tp)
        return result

    def _appended(self, tp: TopicPartition) -> None:
        waiting = self._waiting.get(tp)
        if waiting:
            for event in list(waiting):
                event.set()
        for listener in self._listeners:
            listener(tp)

    def add_append_listener(self, listener: Callable[[TopicPartition], None]) -> bool:
        with self._watch_lock:
            self._listeners = [*self._listeners, listener]  # appends read it unlocked
        return True

    def watch_appends(self, tps: Iterable[TopicPartition]) -> None:
        with self._watch_lock:
            if self._watcher is None:
                self._watcher = ChangeWatcher(self._store.fs, self._changed)
            watcher = self._watcher
        for tp in tps:
            plog = self._store.topic(tp.topic).partition(tp.partition)
            watcher.watch(os.path.join(plog.directory, HEAD_NAME), tp)

    def _changed(self, key: Hashable) -> None:
        if isinstance(key, TopicPartition):
            self._appended(key)

    # ------------------------------------------------------------------ fetch

    def fetch(
        self,
        positions: Mapping[TopicPartition, int],
        *,
        max_records: int,
        max_bytes: int,
        max_wait_ms: int = 0,
        member: GroupMember | None = None,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> dict[TopicPartition, list[ConsumerRecord] | LogstoreError]:
        if member is not None:
            self.check_member(member)
        committed = committed_isolation(isolation_level)
        out = self._fetch_once(positions, max_records, max_bytes, committed)
        if max_wait_ms <= 0 or any(out.values()):
            return out
        # Wait for an append: this process's wake the event at once; other processes'
        # through the watcher (inotify on each partition's head file).
        deadline = time.monotonic() + max_wait_ms / 1000
        tps = list(positions)
        event = threading.Event()
        with self._watch_lock:
            for tp in tps:
                self._waiting.setdefault(tp, set()).add(event)
        try:
            self.watch_appends(tps)
            assert self._watcher is not None
            woken_by_inotify = self._watcher.uses_inotify
            pause = _WAIT_FIRST_S
            while True:
                event.clear()
                out = self._fetch_once(positions, max_records, max_bytes, committed)
                left = deadline - time.monotonic()
                if any(out.values()) or left <= 0:
                    return out
                event.wait(min(left, _WAIT_RECHECK_S if woken_by_inotify else pause))
                pause = min(pause * 2, _WAIT_MAX_S)
                if member is not None:
                    self.check_member(member)
        finally:
            with self._watch_lock:
                for tp in tps:
                    waiting = self._waiting.get(tp)
                    if waiting is not None:
                        waiting.discard(event)
                        if not waiting:
                            del self._waiting[tp]

    def _fetch_once(
        self,
        positions: Mapping[TopicPartition, int],
        max_records: int,
        max_bytes: int,
        committed: bool = False,
    ) -> dict[TopicPartition, list[ConsumerRecord] | LogstoreError]:
        out: dict[TopicPartition, list[ConsumerRecord] | LogstoreError] = {}
        store = self._store
        for tp, offset in positions.items():
            plog = store.topic(tp.topic).partition(tp.partition)
            read = plog.read_committed if committed else plog.read_records
            try:
                out[tp] = read(
                    offset,
                    max_records,
                    max_bytes,
                    record_type=ConsumerRecord,
                    topic_partition=tp,
                )
            except OffsetOutOfRangeError as err:
                out[tp] = err
        return out

    def fetch_batches(
        self,
        tp: TopicPartition,
        offset: int,
        max_bytes: int,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> FetchResult:
        plog = self._store.topic(tp.topic).partition(tp.partition)
        if committed_isolation(isolation_level):
            return plog.read_stable(offset, max_bytes)
        return plog.read(offset, max_bytes, partial_tail=True)

    def offset_range(
        self, tp: TopicPartition, isolation_level: str = READ_UNCOMMITTED
    ) -> tuple[int, int]:
        plog = self._store.topic(tp.topic).partition(tp.partition)
        if committed_isolation(isolation_level):
            stable = plog.last_stable_offset()
            return plog.log_start_offset, stable
        plog.refresh()
        return plog.log_start_offset, plog.log_end_offset

    def offset_for_timestamp(
        self, tp: TopicPartition, timestamp: int
    ) -> OffsetAndTimestamp | None:
        plog = self._store.topic(tp.topic).partition(tp.partition)
        offset = plog.offset_for_timestamp(timestamp)
        if offset is None:
            return None
        record = plog.read_records(offset, max_records=1)[0]
        return OffsetAndTimestamp(record.offset, record.timestamp)

    # ------------------------------------------------------------------ offsets

    def committed_offsets(
        self, group: str, tps: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        self._txns.settle_group(group)  # UnstableOffsetCommitError while one holds them
        offsets = self._store.offsets
        if tps is None:
            return offsets.group_offsets(group)
        out = {}
        for tp in tps:
            found = offsets.committed(group, tp)
            if found is not None:
                out[tp] = found
        return out

    def commit_offsets(
        self,
        group: str,
        offsets: Mapping[TopicPartition, tuple[int, str]],
        *,
        member: GroupMember | None = None,
    ) -> None:
        if not offsets:
            return
        ids = {t: self._store.topic(t).topic_id for t in {tp.topic for tp in offsets}}
        with self._fenced(member):
            self._store.offsets.commit(group, dict(offsets), ids)

    def delete_offsets(self, group: str, tps: Iterable[TopicPartition]) -> None:
        self._store.offsets.delete(group, list(tps))

    # ------------------------------------------------------------------ groups

    def join_group(
        self,
        group: str,
        member_id: str,
        *,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        group_instance_id: str | None = None,
        wait_ms: int = 0,
    ) -> JoinResult | None:
        return self._groups.join(
            group,
            member_id,
            protocol_type=protocol_type,
            protocols=protocols,
            session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            group_instance_id=group_instance_id,
            liveness=self._liveness,
            wait_ms=wait_ms,
        )

    def sync_group(
        self,
        group: str,
        member_id: str,
        generation: int,
        assignments: Mapping[str, bytes],
        *,
        wait_ms: int = 0,
    ) -> bytes | None:
        return self._groups.sync(group, member_id, generation, assignments, wait_ms=wait_ms)

    def heartbeat(self, group: str, member_id: str, generation: int) -> None:
        self._groups.heartbeat(group, member_id, generation)

    def group_changed(self, group: str, member_id: str, generation: int) -> bool:
        return self._groups.changed(GroupMember(group, member_id, generation))

    def leave_group(self, group: str, member_id: str) -> None:
        self._groups.leave(group, member_id)

    def describe_group(self, group: str) -> GroupInfo:
        return self._groups.describe(group)

    def list_groups(self) -> list[str]:
        return sorted({*self._store.offsets.groups(), *self._groups.list_groups()})

    def delete_group(self, group: str) -> None:
        self._groups.delete(group)  # GroupNotEmptyError while it has live members
        offsets = self._store.offsets
        offsets.delete(group, list(offsets.group_offsets(group)))

    def check_member(self, member: GroupMember) -> None:
        """Raise the fencing error if ``member`` is not in its group's generation."""
        self._groups.check(member)

    @contextlib.contextmanager
    def _fenced(self, member: GroupMember | None) -> Iterator[None]:
        if member is None:
            yield
        else:
            with self._groups.fenced(member):
                yield

    def close(self) -> None:
        """Release the member locks this process holds and stop watching partitions."""
        with self._watch_lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()
        self._groups.close()


def _metadata(topic: Topic) -> TopicMetadata:
    config = topic.config
    return TopicMetadata(
        topic.name, topic.topic_id, config.partitions, config.partitioner,
        config.max_message_bytes, config.compact,
    )


_BACKENDS: weakref.WeakKeyDictionary[Store, LocalBackend] = weakref.WeakKeyDictionary()
_BACKENDS_LOCK = threading.Lock()


def backend_for(store: Store) -> LocalBackend:
    """The backend serving ``store`` (one per store, made on first use)."""
    with _BACKENDS_LOCK:
        backend = _BACKENDS.get(store)
        if backend is None:
            backend = _BACKENDS[store] = LocalBackend(store)
            store.on_close(backend.close)
        return backend
