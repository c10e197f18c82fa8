"""The share-group coordinator of an embedded store: per-record work queues across
processes, with no server (KIP-932's share groups; the state machine is
:mod:`logstore.groups.share_state`).

On disk::

    <root>/__share_group_state-0/    the state log: compacted, one record per changed
                                     share-partition (its whole state) or group settings
    <root>/__share_groups/<group>.lock   flock: one change of that group at a time

Every change runs under the group's flock (and a thread lock: flocks conflict between
descriptors, not between threads of one descriptor): read the state log's tail (what
other processes appended since), apply the transition to a copy, append the dead
letters it archived to their topic, append the new state (fsynced), and only then
answer. A process killed anywhere in between leaves either the old state (its change
never happened, its dead letters may be written twice: at least once) or the new one.

The lock deadlines are on the clock passed in (the wall clock every process shares, in
:class:`~logstore.backend.local.LocalBackend`); a member that dies keeps its locks until
they expire, then its records are delivered again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from logstore.backend.share_dlq import write_dead_letters
from logstore.config import DEFAULT_DELETE_RETENTION_MS, TopicConfig
from logstore.errors import (
    LogstoreError,
    OffsetOutOfRangeError,
    ShareAcknowledgeError,
    UnknownShareRecordError,
)
from logstore.groups import group_dir_name
from logstore.groups.share_state import (
    AckType,
    Acquired,
    Archived,
    RecordState,
    SharePartitionState,
    ShareSettings,
    decode_key,
    partition_key,
    settings_key,
)
from logstore.storage.files import LockFile
from logstore.storage.log import PartitionLog
from logstore.store import Store
from logstore.topic import validate_topic_name
from logstore.types import Clock, ConsumerRecord, SystemClock, TopicPartition

log = logging.getLogger(__name__)

SHARE_STATE_TOPIC = "__share_group_state"
SHARE_LOCKS_DIR = "__share_groups"
SHARE_STATE_SEGMENT_BYTES = 4 << 20
_READ_CHUNK = 500  # records read from a partition log at once for redeliveries
_WAIT_FIRST_S = 0.001
_WAIT_MAX_S = 0.02
"""A waiting acquire looks again after 1 ms, backing off to 20 ms."""

Acquisition = tuple[ConsumerRecord, int]
"""A record handed out, with its delivery count."""
Ack = tuple[TopicPartition, int, int, int, str | None, str | None]
"""``(tp, offset, delivery_count, ack_type, error_class, error_message)``."""
StateKey = tuple[str, str, int]


def share_state_log_config() -> TopicConfig:
    """The state log's config: compacted, an fsync per change (as the offsets log)."""
    return TopicConfig(
        segment_bytes=SHARE_STATE_SEGMENT_BYTES,
        flush="always",
        cleanup_policy="compact",
        delete_retention_ms=DEFAULT_DELETE_RETENTION_MS,
    )


class ShareCoordinator:
    """Share groups of one store, shared with every process that opens it. Thread-safe.

    Args:
        store: the open store (records to hand out, dead-letter topics).
        clock: lock deadlines; every process must share it (default: the wall clock).
        on_append: called with each dead-letter partition appended to.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock | None = None,
        *,
        on_append: Callable[[TopicPartition], None] | None = None,
    ) -> None:
        self._store = store
        self._clock: Clock = clock or SystemClock()
        self._on_append = on_append
        fs = store.fs
        self._log = PartitionLog(
            os.path.join(store.path, f"{SHARE_STATE_TOPIC}-0"), share_state_log_config(),
            fs=fs, clock=self._clock,
        )
        self._locks_dir = os.path.join(store.path, SHARE_LOCKS_DIR)
        try:
            fs.mkdir(self._locks_dir, exist_ok=True)
        except BaseException:
            self._log.close()
            raise
        self._lock = threading.RLock()
        self._flocks: dict[str, LockFile] = {}
        self._mutexes: dict[str, threading.Lock] = {}
        self._settings: dict[str, ShareSettings] = {}
        self._partitions: dict[StateKey, SharePartitionState] = {}
        self._applied = self._log.log_start_offset
        self._active_base = self._log.active_segment.base_offset
        self._closed = False

    # ------------------------------------------------------------------ state log

    @contextlib.contextmanager
    def _locked(self, group: str) -> Iterator[None]:
        """Hold ``group``'s lock: its thread mutex, then its file lock (waited for
        without holding the coordinator's own lock, so a group another process holds
        stalls only its own members), then the coordinator's lock for the change."""
        with self._lock:
            mutex = self._mutexes.setdefault(group, threading.Lock())
            flock = self._flocks.get(group)
            if flock is None:
                path = os.path.join(self._locks_dir, group_dir_name(group) + ".lock")
                flock = self._flocks[group] = self._store.fs.lock_file(path)
        with mutex:
            flock.acquire()
            try:
                with self._lock:
                    self._catch_up()
                    yield
            finally:
                flock.release()

    def _catch_up(self) -> None:
        """Apply the state records appended (by any process) since the last call."""
        while True:
            try:
                records = self._log.read_records(self._applied)
            except OffsetOutOfRangeError:  # trimmed by hand: read what is left
                self._settings.clear()
                self._partitions.clear()
                self._applied = self._log.log_start_offset
                continue
            if not records:
                return
            for record in records:
                self._apply(record.key, record.value)
            self._applied = records[-1].offset + 1

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            kind, group, topic, partition = decode_key(key)
            if kind == "g":
                if value is None:
                    self._settings.pop(group, None)
                else:
                    self._settings[group] = ShareSettings.decode(value)
            elif value is None:
                self._partitions.pop((group, topic, partition), None)
            else:
                self._partitions[(group, topic, partition)] = SharePartitionState.decode(value)
        except (ValueError, KeyError, TypeError) as err:  # a newer version: not ours
            log.warning("%s: skipping a share-group state record: %s", self._log.directory, err)

    def _write(
        self, records: list[tuple[bytes, bytes]], install: Callable[[], None]
    ) -> None:
        """Append ``records`` (one batch, fsynced) and apply them: by ``install`` (what
        they say, from memory) when nothing came between, else by reading them back."""
        if not records:
            return
        now = self._clock.now_ms()
        result = self._log.append_records([(now, k, v, ()) for k, v in records])
        if self._applied == result.base_offset:
            install()
            self._applied = result.last_offset + 1
        else:
            self._catch_up()
        base = self._log.active_segment.base_offset
        if base != self._active_base:
            self._active_base = base
            try:
                self._log.compact()
            except LogstoreError as err:  # the change is durable already
                log.warning("%s: compacting share-group state failed: %s",
                            self._log.directory, err)

    # ------------------------------------------------------------------ groups

    def join(
        self,
        group: str,
        *,
        lock_timeout_ms: int | None = None,
        max_delivery_attempts: int | None = None,
        dead_letter_topic: str | None = None,
        max_record_locks: int | None = None,
    ) -> ShareSettings:
        """The group's settings, after checking the asked ones (None: the group's) agree;
        a new group takes the asked ones (or the defaults) and persists them.

        Raises:
            ShareGroupConfigError: a setting differs from the group's.
            InvalidConfigError, InvalidTopicError: a bad setting.
        """
        asked: dict[str, Any] = {
            "lock_timeout_ms": lock_timeout_ms,
            "max_delivery_attempts": max_delivery_attempts,
            "dead_letter_topic": dead_letter_topic,
            "max_record_locks": max_record_locks,
        }
        if dead_letter_topic is not None:
            validate_topic_name(dead_letter_topic)
        with self._locked(group):
            found = self._settings.get(group)
            if found is not None:
                return found.merged(group, **asked)
            settings = ShareSettings(**{k: v for k, v in asked.items() if v is not None})
            self._write([(settings_key(group), settings.encode())],
                        lambda: self._settings.__setitem__(group, settings))
            return settings

    def settings(self, group: str) -> ShareSettings:
        with self._lock:
            self._catch_up()
            return self._settings.get(group) or ShareSettings()

    def list_groups(self) -> list[str]:
        with self._lock:
            self._catch_up()
            return sorted({*self._settings, *(g for g, _, _ in self._partitions)})

    def describe(self, group: str) -> dict[str, Any]:
        """The group's settings and, per share-partition, its offsets and record counts
        (a JSON-able dict; ``partitions`` is empty for an unknown group)."""
        with self._lock:
            self._catch_up()
            settings = self._settings.get(group) or ShareSettings()
            states = sorted(
                (k, s) for k, s in self._partitions.items() if k[0] == group
            )
        now = self._clock.now_ms()
        partitions = [{"topic": topic, "partition": partition, **st.summary(now, settings)}
                      for (_, topic, partition), st in states]
        return {
            "group": group, "known": group in self._settings or bool(partitions),
            **settings.as_dict(), "partitions": partitions,
        }

    # ------------------------------------------------------------------ acquire, acknowledge

    def acquire(
        self, group: str, member: str, topics: Sequence[str], *, max_records: int,
        wait_ms: int = 0, acks: Sequence[Ack] = (),
    ) -> tuple[list[Acquisition], list[ShareAcknowledgeError]]:
        """Apply ``member``'s ``acks`` (as :meth:`acknowledge`), then lock up to
        ``max_records`` records of ``topics`` for it: available ones (released or
        expired) first, then new ones from each partition's log, in one change (Kafka's
        ShareFetch carries acknowledgements too). Waits up to ``wait_ms`` for records.
        Returns the records and the refused acknowledgements' errors.

        Raises:
            TopicNotFoundError: a topic does not exist.
        """
        deadline = time.monotonic() + wait_ms / 1000
        pause = _WAIT_FIRST_S
        tps = [TopicPartition(t, p) for t in topics  # partitions added by any process
               for p in range(self._store.refresh_topic(t).config.partitions)]
        errors: list[ShareAcknowledgeError] = []
        turn = 0
        while True:
            # start at another partition each time: no partition starves the others
            order = tps[turn % len(tps):] + tps[:turn % len(tps)] if tps else []
            turn += 1
            if acks or self._may_acquire(group, order):
                out, refused = self._change(group, member, acks, order, max_records)
                errors += refused
                acks = ()
                if out:
                    return out, errors
            left = deadline - time.monotonic()
            if left <= 0:
                return [], errors
            time.sleep(min(left, pause))
            pause = min(pause * 2, _WAIT_MAX_S)

    def acknowledge(
        self, group: str, member: str, acks: Sequence[Ack]
    ) -> list[ShareAcknowledgeError]:
        """Apply ``member``'s acknowledgements; returns the refused ones' errors (the
        others are applied and durable when this returns)."""
        return self._change(group, member, acks, [], 0)[1] if acks else []

    def _may_acquire(self, group: str, tps: Sequence[TopicPartition]) -> bool:
        """Whether some partition may have a record to hand out (checked without the
        group's flock, so idle members do not queue on it)."""
        now = self._clock.now_ms()
        with self._lock:
            self._catch_up()
            settings = self._settings.get(group) or ShareSettings()
            for tp in tps:
                st = self._partitions.get((group, tp.topic, tp.partition))
                if st is None:
                    return True
                for rec in st.records.values():
                    if rec.state is RecordState.AVAILABLE or (
                        rec.state is RecordState.ACQUIRED and rec.deadline_ms <= now
                    ):
                        return True
                if st.room(settings) > 0:
                    plog = self._store.topic(tp.topic).partition(tp.partition)
                    plog.refresh()
                    if plog.log_end_offset > st.end_offset:
                        return True
        return False

    def _change(
        self, group: str, member: str, acks: Sequence[Ack], tps: Sequence[TopicPartition],
        max_records: int,
    ) -> tuple[list[Acquisition], list[ShareAcknowledgeError]]:
        """One change of ``group`` under its lock: expire locks, apply ``acks``, acquire
        up to ``max_records`` records of ``tps``, write the dead letters, then the state."""
        out: list[Acquisition] = []
        errors: list[ShareAcknowledgeError] = []
        with self._locked(group):
            settings = self._settings.get(group) or ShareSettings()
            now = self._clock.now_ms()
            states: dict[TopicPartition, SharePartitionState] = {}
            dead: list[tuple[TopicPartition, Archived]] = []

            def state(tp: TopicPartition) -> SharePartitionState | None:
                if tp not in states:
                    cur = self._partitions.get((group, tp.topic, tp.partition))
                    if cur is None:
                        return None
                    states[tp] = cur.copy()
                    dead.extend((tp, a) for a in states[tp].expire(now, settings))
                return states[tp]

            for ack in acks:
                tp, offset, count, kind, err_class, err_message = ack
                st = state(tp)
                try:
                    if st is None:
                        raise UnknownShareRecordError(
                            f"share group {group!r} never handed out {tp.topic}-"
                            f"{tp.partition} offset {offset} (it has no state for that "
                            f"partition)", group, tp.topic, tp.partition, offset)
                    error = None if err_class is None else (err_class, err_message or "")
                    found = st.acknowledge(group, tp.topic, tp.partition, member, offset,
                                           count, AckType(kind), error, now, settings)
                except ShareAcknowledgeError as err:
                    errors.append(err)
                    continue
                if found is not None:
                    dead.append((tp, found))
            for tp in tps:
                plog = self._store.topic(tp.topic).partition(tp.partition)
                st = state(tp)
                if st is None:
                    st = states[tp] = SharePartitionState.starting_at(plog.log_start_offset)
                st.skip_to(plog.log_start_offset)
                if len(out) < max_records:
                    again = st.acquire(member, now, settings, max_records - len(out))
                    out += self._read_redelivered(plog, tp, st, again)
                room = min(st.room(settings), max_records - len(out))
                if room > 0:
                    seen_end = plog.log_end_offset  # (read_records reads at least this far)
                    try:
                        new = plog.read_records(
                            st.end_offset, room, record_type=ConsumerRecord,
                            topic_partition=tp,
                        )
                    except OffsetOutOfRangeError:  # the log was emptied or re-created
                        st = states[tp] = SharePartitionState.starting_at(
                            plog.log_start_offset
                        )
                        new = []
                    if not new:
                        # only control batches (transaction markers) or a compacted
                        # stretch up to the end: nothing to hand out there, ever
                        st.pass_empty(seen_end)
                    if new:
                        got = st.acquire_new(
                            [r.offset for r in new], new[-1].offset + 1, member, now, settings
                        )
                        out += [(r, a.delivery_count) for r, a in zip(new, got, strict=True)]
            write_dead_letters(
                self._store, group, settings, dead, self._clock.now_ms(), self._on_append,
                lambda plog, tp, offset: self._read_offsets(plog, tp, [offset]).get(offset),
            )
            changed = {(group, tp.topic, tp.partition): st for tp, st in states.items()
                       if st != self._partitions.get((group, tp.topic, tp.partition))}
            self._write([(partition_key(*key), st.encode()) for key, st in changed.items()],
                        lambda: self._partitions.update(changed))
        return out, errors

    def _read_redelivered(
        self, plog: PartitionLog, tp: TopicPartition, st: SharePartitionState,
        acquired: Sequence[Acquired],
    ) -> list[Acquisition]:
        """The records of ``acquired`` (offset, delivery count) read from the log;
        those the log no longer holds (compacted away) leave the window."""
        wanted = {a.offset: a.delivery_count for a in acquired}
        found = self._read_offsets(plog, tp, sorted(wanted))
        for offset in set(wanted) - set(found):
            st.forget(offset)
        return [(found[o], wanted[o]) for o in sorted(found)]

    @staticmethod
    def _read_offsets(
        plog: PartitionLog, tp: TopicPartition, offsets: Sequence[int]
    ) -> dict[int, ConsumerRecord]:
        found: dict[int, ConsumerRecord] = {}
        wanted = set(offsets)
        i = 0
        while i < len(offsets):
            first = offsets[i]
            try:
                records = plog.read_records(
                    first, min(offsets[-1] - first + 1, _READ_CHUNK),
                    record_type=ConsumerRecord, topic_partition=tp,
                )
            except OffsetOutOfRangeError:
                records = []
            found.update((r.offset, r) for r in records if r.offset in wanted)
            last = records[-1].offset if records else first
            while i < len(offsets) and offsets[i] <= last:
                i += 1
        return found

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for flock in self._flocks.values():
                flock.close()
            self._flocks.clear()
            self._log.close()
