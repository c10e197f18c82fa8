"""Committed consumer-group offsets, kept in an internal log that the log cleaner compacts.

Every commit appends records to the internal partition log ``__consumer_offsets-0`` in
Kafka's own ``__consumer_offsets`` schema (so the bytes read like Kafka's; the codec is
:mod:`logstore.records.offsets_schema`). A commit record also carries a ``topic_id``
header: the id of the topic incarnation the offset was committed against. An offset of a
deleted and re-created topic thus never applies to the new one. A deletion is a
tombstone (a null value). Opening replays the whole log.

**Compaction keeps the log bounded**, as in Kafka: the log's config
(:func:`offsets_log_config`) is ``cleanup_policy="compact"`` with segments of
:data:`OFFSETS_SEGMENT_BYTES`, ``flush="always"`` and Kafka's ``delete_retention_ms`` (a
tombstone goes a day after the delete). After an append that rolled the log (its active
segment's base offset changed since the last check) the store asks the cleaner
(:meth:`~logstore.storage.log.PartitionLog.compact`), which cleans the sealed segments
when their dirty share is above ``min_cleanable_dirty_ratio`` (0.5): the clean section
keeps at most one record per key (:mod:`logstore.storage.compaction`).

The bound: with segment size ``S`` and ``L`` the size of the live records (one per
group/topic/partition holding an offset, plus tombstones younger than
``delete_retention_ms``; each counted as a batch of its own: 61 bytes of header plus the
record), the segment files (``.log``) hold at most about ``2·S + 2·L`` bytes, whatever
the number of commits. Why: after a cleaner run the clean section ``C`` holds at most one
record per key, so ``C <= L``; the dirty section ``D`` (sealed since) is checked at every
roll and cleaned once ``D > C``, so between runs ``D <= C + S`` (the last roll added one
segment of at most ``S``); the active segment holds at most ``S``. So ``C + D + S <= 2·S +
2·L``. While a run copies a group of segments, its cleaned copy (at most ``S`` more) is on
disk too; the index files (about 1% of the segments) are not counted. With 1 MiB segments
and a few thousand partitions' offsets, the log stays under 3 MiB.

**Stores written before compaction** (logstore up to issue 15) kept a snapshot,
``__consumer_offsets-0/offsets.snapshot`` (every live offset and the log offset it
covers, written every 10,000 commit records and at close; the log below it was deleted),
so their log starts past 0. It is a :mod:`~logstore.storage.statefile` of kind
``offsets-snapshot`` whose payload is JSON: ``{"version": 2, "next_offset": N,
"offsets": [[group, topic, partition, offset, metadata, commit_timestamp, topic_id],
...]}`` (the same JSON followed by a ``crc32c <hex>`` line, from still earlier versions,
is read too). Such a store still opens: the snapshot is loaded and the log after it
replayed. The first open with write access then **migrates** it, under the
``.snapshot.lock`` flock: it catches up, appends every live offset as commit records (the
same keys, offset, metadata, commit timestamp and topic-id header; record timestamp: now;
in batches of about :data:`MIGRATION_BATCH_BYTES`, as one could pass ``max_message_bytes``),
then deletes the snapshot (unlink, fsync of the directory). From then on the log alone
holds every live offset. The order matters: once the cleaner may drop tombstones, a
snapshot plus the log after it could bring back an offset deleted since the snapshot, so
the snapshot must be gone before the cleaner runs (no compaction is asked for during the
migration, and other processes wait for it in their open). A crash between the append and
the unlink leaves both: the next open migrates again, harmlessly (the records it appends
repeat what the log already says). A read-only open never migrates: it reads the snapshot
and the log.

What that costs: a missing snapshot with a log starting past 0 is now what a migrated
store looks like, so a legacy store whose snapshot was deleted (or lost) *before* its
migration opens without an error and without the offsets the snapshot held (before
compaction, that was a :class:`~logstore.errors.CorruptionError`). A damaged snapshot is
still one, naming the file.

Several processes share the log like any partition; each keeps its own in-memory view and
catches up by reading the records other processes appended. Compaction keeps offsets and
drops only records a later one replaces, and tombstones once ``delete_retention_ms`` old;
so a view that has not caught up for half of that (12 hours) reads the whole log again
instead, since a tombstone it has not read may be gone (a Kafka consumer that far behind a
compacted topic would miss the delete).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
from collections.abc import Callable, Mapping

import crc32c

from logstore.config import DEFAULT_DELETE_RETENTION_MS, TopicConfig
from logstore.errors import (
    CorruptionError,
    InvalidRecordError,
    LogstoreError,
    OffsetOutOfRangeError,
)
from logstore.records import RecordInput
from logstore.records.offsets_schema import (
    TOPIC_ID_HEADER,
    OffsetKey,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.storage.statefile import decode_state, is_state
from logstore.types import Clock, CommittedOffset, TopicPartition

__all__ = [  # the schema's names stay importable from here
    "MAX_METADATA_BYTES",
    "MIGRATION_BATCH_BYTES",
    "OFFSETS_SEGMENT_BYTES",
    "OFFSETS_TOPIC",
    "SNAPSHOT_KIND",
    "SNAPSHOT_NAME",
    "TOPIC_ID_HEADER",
    "CommittedOffset",
    "OffsetKey",
    "OffsetStore",
    "commit_record",
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
    "offsets_log_config",
    "read_snapshot",
]

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_SEGMENT_BYTES = 1 << 20
"""Segment size of the offsets log (``S`` of the bound in the module docstring): the
cleaner compacts sealed segments only, so the smaller, the tighter the bound; each roll
costs a cleaner check (and, when due, a run over the sealed segments)."""
SNAPSHOT_NAME = "offsets.snapshot"
"""The snapshot of stores written before compaction (read, migrated, never written)."""
SNAPSHOT_KIND = "offsets-snapshot"
MAX_METADATA_BYTES = 4096  # Kafka's offset.metadata.max.bytes
MIGRATION_BATCH_BYTES = 256 * 1024
"""A migration appends the live offsets in batches of about this size (one batch would
pass ``max_message_bytes`` for a store with many thousands of offsets; several are as
safe: the snapshot stays until the last one is appended)."""
_RECORD_OVERHEAD = 32  # a record's length, attributes, deltas, header count (at most)


def offsets_log_config() -> TopicConfig:
    """The offsets log's topic config: compacted, segments of
    :data:`OFFSETS_SEGMENT_BYTES`, an fsync per commit, tombstones kept a day (Kafka's
    ``delete.retention.ms``)."""
    return TopicConfig(
        segment_bytes=OFFSETS_SEGMENT_BYTES,
        flush="always",
        cleanup_policy="compact",
        delete_retention_ms=DEFAULT_DELETE_RETENTION_MS,
    )


def _legacy_snapshot_body(raw: bytes) -> bytes:
    """The JSON of a snapshot written before state files: JSON, then ``crc32c <hex>``."""
    body, sep, trailer = raw.rstrip(b"\n").rpartition(b"\n")
    if not sep or not trailer.startswith(b"crc32c "):
        raise ValueError("no checksum line")
    if trailer[7:].decode("ascii") != f"{crc32c.crc32c(body):08x}":
        raise ValueError("checksum mismatch")
    return body


def read_snapshot(
    fs: FileSystem, path: str
) -> tuple[int, dict[OffsetKey, CommittedOffset]] | None:
    """``(next_offset, offsets)`` of the (pre-compaction) offsets snapshot at ``path``;
    None if there is none.

    Raises:
        CorruptionError: the file is damaged (checksum, JSON or shape), naming ``path``.
    """
    try:
        raw = fs.read_file(path)
    except FileNotFoundError:
        return None
    try:
        body = (
            decode_state(SNAPSHOT_KIND, raw, path) if is_state(raw)
            else _legacy_snapshot_body(raw)
        )
        return _parse_snapshot(body)
    except CorruptionError as err:
        raise CorruptionError(f"offsets snapshot {err}", path, err.position) from err
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as err:
        raise CorruptionError(
            f"offsets snapshot {path} is damaged: {err} (delete it to rebuild committed "
            f"offsets from the log, if the log still holds them all)",
            path,
        ) from err


def _parse_snapshot(body: bytes) -> tuple[int, dict[OffsetKey, CommittedOffset]]:
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("offsets"), list):
        raise ValueError("not a snapshot object")
    applied = data["next_offset"]
    if type(applied) is not int or applied < 0:
        raise ValueError(f"next_offset {applied!r}")
    offsets: dict[OffsetKey, CommittedOffset] = {}
    for row in data["offsets"]:
        g, t, p, o, m, ts, *rest = row
        tid = rest[0] if rest else None
        if not (isinstance(g, str) and isinstance(t, str) and isinstance(m, str)
                and type(p) is int and type(o) is int and type(ts) is int
                and len(rest) <= 1 and (tid is None or isinstance(tid, str))):
            raise ValueError(f"row {row!r}")
        offsets[(g, t, p)] = CommittedOffset(o, m, ts, tid)
    return applied, offsets


def commit_record(timestamp: int, key: OffsetKey, committed: CommittedOffset) -> RecordInput:
    """The offsets-log record of ``committed`` for ``key`` (group, topic, partition):
    Kafka's key and value, and the topic id as a header (when known)."""
    tid = committed.topic_id
    headers = () if tid is None else ((TOPIC_ID_HEADER, tid.encode("ascii")),)
    return (
        timestamp,
        encode_key(*key),
        encode_value(committed.offset, committed.metadata, committed.commit_timestamp),
        headers,
    )


class OffsetStore:
    """Committed offsets of every group, shared by the processes using one store."""

    def __init__(
        self,
        root: str,
        *,
        fs: FileSystem,
        clock: Clock,
        topic_id_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self._fs = fs
        self._clock = clock
        self._topic_id_of = topic_id_of  # the current id of a topic, for commits without one
        self._directory = os.path.join(root, f"{OFFSETS_TOPIC}-0")
        self._log = PartitionLog(self._directory, offsets_log_config(), fs=fs, clock=clock)
        self._lock = threading.Lock()
        self._snapshot_lock = fs.lock_file(os.path.join(self._directory, ".snapshot.lock"))
        self._offsets: dict[OffsetKey, CommittedOffset] = {}
        self._applied = 0  # the next log offset to apply
        self._caught_up_ms = clock.now_ms()  # when the view last held the whole log
        self._active_base = self._log.active_segment.base_offset  # to notice rolls
        try:
            legacy = self._load()
            if legacy and not fs.read_only:
                self._migrate()
        except BaseException:
            self._log.close()
            self._snapshot_lock.close()
            raise

    # ------------------------------------------------------------------ loading

    def _snapshot_path(self) -> str:
        return os.path.join(self._directory, SNAPSHOT_NAME)

    def _read_snapshot(self) -> tuple[int, dict[OffsetKey, CommittedOffset]] | None:
        return read_snapshot(self._fs, self._snapshot_path())

    def _load(self) -> bool:
        """Start from the legacy snapshot if there is one (True), else from the log start
        (then catch up replays the whole log)."""
        found = self._read_snapshot()
        if found is None:
            # A log starting past 0 without a snapshot: a migrated store (or a legacy one
            # whose snapshot was lost before its migration: see the module docstring).
            self._applied, self._offsets = self._log.log_start_offset, {}
            return False
        self._applied, self._offsets = found
        return True

    def _migrate(self) -> None:
        """Fold the legacy snapshot into the log, then delete it (module docstring)."""
        with self._lock:
            self._snapshot_lock.acquire()  # one process at a time; the others wait here
            try:
                if not self._fs.exists(self._snapshot_path()):
                    return  # another process migrated since this one read the snapshot
                self._catch_up()
                now = self._clock.now_ms()
                batch: list[RecordInput] = []
                size = 0
                for key, committed in sorted(self._offsets.items()):
                    record = commit_record(now, key, committed)
                    batch.append(record)
                    size += _RECORD_OVERHEAD + sum(
                        len(part) for part in (record[1], record[2]) if part is not None
                    ) + sum(len(name) + len(value or b"") + 8 for name, value in record[3])
                    if size >= MIGRATION_BATCH_BYTES:
                        self._log.append_records(batch)
                        batch, size = [], 0
                if batch:
                    self._log.append_records(batch)
                self._catch_up()  # this process's own records: the same offsets again
                self._fs.unlink(self._snapshot_path())
                self._fs.fsync_dir(self._directory)
                self._active_base = self._log.active_segment.base_offset
                log.info(
                    "%s: migrated %d committed offsets from the snapshot into the "
                    "compacted log", self._directory, len(self._offsets),
                )
            finally:
                self._snapshot_lock.release()

    # ------------------------------------------------------------------ reading

    def _catch_up(self) -> None:
        """Apply the commit records appended (by any process) since the last call."""
        now = self._clock.now_ms()
        if now - self._caught_up_ms >= self._log.config.delete_retention_ms // 2:
            self._load()  # tombstones this view has not read may be cleaned away by now
        reloaded = False
        while True:
            try:
                records = self._log.read_records(self._applied)
            except OffsetOutOfRangeError as err:
                # The log start moved past what this process applied (a process of an
                # earlier version snapshotted, or records were deleted by hand: then
                # its snapshot must cover them), or a legacy snapshot covers more than
                # the log holds (the log lost its end).
                found = None if reloaded else self._read_snapshot()
                if found is None or not (
                    err.log_start_offset <= found[0] <= err.log_end_offset
                ):
                    raise CorruptionError(
                        f"committed offsets: applied up to log offset {self._applied}, "
                        f"but the offsets log holds [{err.log_start_offset}, "
                        f"{err.log_end_offset}) and no offsets snapshot covers the "
                        f"difference (the committed offsets it held are gone)",
                        self._directory,
                    ) from err
                self._applied, self._offsets = found
                reloaded = True
                continue
            if not records:
                self._caught_up_ms = now
                return
            for record in records:
                if record.key is None:
                    continue
                try:
                    key = decode_key(record.key)
                except (ValueError, struct.error, UnicodeDecodeError):
                    continue  # a group-metadata record or a newer version: not ours
                if record.value is None:
                    self._offsets.pop(key, None)
                else:
                    try:
                        found_value = decode_value(record.value)
                        for name, raw in record.headers:
                            if name == TOPIC_ID_HEADER and raw is not None:
                                found_value = found_value._replace(
                                    topic_id=raw.decode("ascii")
                                )
                    except (ValueError, struct.error, UnicodeDecodeError):
                        continue
                    self._offsets[key] = found_value
            self._applied = records[-1].offset + 1

    def committed(self, group: str, tp: TopicPartition) -> CommittedOffset | None:
        with self._lock:
            self._catch_up()
            return self._offsets.get((group, tp.topic, tp.partition))

    def group_offsets(self, group: str) -> dict[TopicPartition, CommittedOffset]:
        with self._lock:
            self._catch_up()
            return {
                TopicPartition(t, p): c for (g, t, p), c in self._offsets.items() if g == group
            }

    def groups(self) -> list[str]:
        with self._lock:
            self._catch_up()
            return sorted({g for g, _, _ in self._offsets})

    # ------------------------------------------------------------------ writing

    def commit(
        self,
        group: str,
        offsets: dict[TopicPartition, tuple[int, str]],
        topic_ids: Mapping[str, str | None] | None = None,
    ) -> None:
        """Commit ``{tp: (offset, metadata)}`` for ``group``, durably, in one batch;
        ``topic_ids`` names the incarnation of each topic the offsets belong to (default:
        the topic as it is now)."""
        now = self._clock.now_ms()
        ids = dict(topic_ids or {})
        if self._topic_id_of is not None:
            for topic in {tp.topic for tp in offsets} - set(ids):
                ids[topic] = self._topic_id_of(topic)
        records: list[RecordInput] = []
        changes: list[tuple[OffsetKey, CommittedOffset | None]] = []
        for tp, (offset, metadata) in offsets.items():
            if len(metadata.encode("utf-8")) > MAX_METADATA_BYTES:
                raise InvalidRecordError(
                    f"commit metadata of {len(metadata)} characters is over "
                    f"{MAX_METADATA_BYTES} bytes (Kafka's offset.metadata.max.bytes)"
                )
            if offset < 0:
                raise InvalidRecordError(f"cannot commit offset {offset} for {tp}: it is < 0")
            key = (group, tp.topic, tp.partition)
            committed = CommittedOffset(offset, metadata, now, ids.get(tp.topic))
            records.append(commit_record(now, key, committed))
            changes.append((key, committed))
        if records:
            self._append(records, changes)

    def delete(self, group: str, tps: list[TopicPartition]) -> None:
        """Forget ``group``'s committed offsets for ``tps`` (tombstones)."""
        self._delete([(group, tp.topic, tp.partition) for tp in tps])

    def delete_topic(self, topic: str) -> None:
        """Forget every group's committed offsets for ``topic`` (it was deleted)."""
        with self._lock:
            self._catch_up()
            keys = [k for k in self._offsets if k[1] == topic]
        self._delete(sorted(keys))

    def _delete(self, keys: list[OffsetKey]) -> None:
        now = self._clock.now_ms()
        records: list[RecordInput] = [(now, encode_key(*k), None, ()) for k in keys]
        if records:
            self._append(records, [(k, None) for k in keys])

    def _append(
        self,
        records: list[RecordInput],
        changes: list[tuple[OffsetKey, CommittedOffset | None]],
    ) -> None:
        """Append ``records`` (one batch) and apply them: ``changes`` says what each one
        does (None: a tombstone). When this view had applied everything up to the batch,
        they are applied from memory; else (another process or thread appended first)
        the log is read up to its end, this batch included."""
        now = self._clock.now_ms()
        result = self._log.append_records(records)
        with self._lock:
            if self._applied == result.base_offset and now - self._caught_up_ms < (
                self._log.config.delete_retention_ms // 2
            ):
                for key, committed in changes:
                    if committed is None:
                        self._offsets.pop(key, None)
                    else:
                        self._offsets[key] = committed
                self._applied = result.last_offset + 1
                self._caught_up_ms = now  # nothing came between: the view is whole
            elif self._applied <= result.last_offset:
                self._catch_up()
        self._compact_if_rolled()

    def _compact_if_rolled(self) -> None:
        """After a roll (this process's or another's), let the cleaner run if it is due.
        The commit is durable already: a failed run is logged, not raised (the next roll
        tries again; a damaged segment also fails the next open)."""
        base = self._log.active_segment.base_offset
        if base == self._active_base:
            return
        self._active_base = base
        try:
            self._log.compact()
        except LogstoreError as err:
            log.warning("%s: compacting the committed offsets failed: %s", self._directory, err)

    def close(self) -> None:
        try:
            self._log.close()
        finally:  # a damaged log must not leak the files and locks
            self._snapshot_lock.close()
