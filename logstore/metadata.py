"""Committed consumer-group offsets, kept in an internal log plus a snapshot.

Every commit appends records to the internal partition log ``__consumer_offsets-0`` in
Kafka's own ``__consumer_offsets`` schema (so the bytes read like Kafka's; the codec is
:mod:`logstore.records.offsets_schema`). A commit record also carries a ``topic_id``
header: the id of the topic incarnation the offset was committed against. An offset of a
deleted and re-created topic thus never applies to the new one. Opening replays only what
follows the latest snapshot: ``__consumer_offsets-0/offsets.snapshot`` holds every live
offset and the log offset it covers, written atomically every ``SNAPSHOT_EVERY`` commit
records and when a store closes; the log below it is then deleted. So opening costs time
in proportion to the live offsets plus a bounded tail, not to the whole commit history.

The snapshot is a :mod:`~logstore.storage.statefile` of kind ``offsets-snapshot`` whose
payload is JSON: ``{"version": 2, "next_offset": N, "offsets": [[group, topic,
partition, offset, metadata, commit_timestamp, topic_id], ...]}``. Snapshots written by
earlier versions (the same JSON followed by a ``crc32c <hex>`` line) are read too.

Several processes share the log like any partition; each keeps its own in-memory view and
catches up by reading the records other processes appended.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Callable, Mapping

import crc32c

from logstore.config import TopicConfig
from logstore.errors import CorruptionError, InvalidRecordError, OffsetOutOfRangeError
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
from logstore.storage.statefile import decode_state, is_state, write_state
from logstore.types import Clock, CommittedOffset, TopicPartition

__all__ = [  # the schema's names stay importable from here
    "MAX_METADATA_BYTES",
    "OFFSETS_TOPIC",
    "SNAPSHOT_EVERY",
    "SNAPSHOT_KIND",
    "SNAPSHOT_NAME",
    "TOPIC_ID_HEADER",
    "CommittedOffset",
    "OffsetKey",
    "OffsetStore",
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
    "read_snapshot",
]

OFFSETS_TOPIC = "__consumer_offsets"
SNAPSHOT_NAME = "offsets.snapshot"
SNAPSHOT_KIND = "offsets-snapshot"
SNAPSHOT_EVERY = 10_000
MAX_METADATA_BYTES = 4096  # Kafka's offset.metadata.max.bytes
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
    """``(next_offset, offsets)`` of the offsets snapshot at ``path``; None if there is none.

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
        self._log = PartitionLog(
            self._directory, TopicConfig(segment_bytes=16 * 1024 * 1024, flush="always"),
            fs=fs, clock=clock,
        )
        self._lock = threading.Lock()
        self._snapshot_lock = fs.lock_file(os.path.join(self._directory, ".snapshot.lock"))
        self._offsets: dict[OffsetKey, CommittedOffset] = {}
        self._applied = 0  # the next log offset to apply
        self._since_snapshot = 0
        try:
            self._load_snapshot()
        except BaseException:
            self._log.close()
            self._snapshot_lock.close()
            raise

    # ------------------------------------------------------------------ snapshot

    def _snapshot_path(self) -> str:
        return os.path.join(self._directory, SNAPSHOT_NAME)

    def _read_snapshot(self) -> tuple[int, dict[OffsetKey, CommittedOffset]] | None:
        return read_snapshot(self._fs, self._snapshot_path())

    def _load_snapshot(self) -> None:
        found = self._read_snapshot()
        if found is None:
            start = self._log.log_start_offset
            if start > 0:
                # the log below its start was dropped because a snapshot held it
                raise CorruptionError(
                    f"offsets snapshot {self._snapshot_path()} is missing, but the offsets "
                    f"log starts at {start}: the committed offsets it held are gone "
                    f"(restore the file from a copy)",
                    self._snapshot_path(),
                )
            found = (start, {})
        self._applied, self._offsets = found[0], found[1]

    def snapshot(self) -> None:
        """Write every live offset to the snapshot and drop the log it replaces."""
        with self._lock:
            self._snapshot_lock.acquire()  # one process at a time, never backwards
            try:
                self._catch_up()
                try:
                    current = self._read_snapshot()
                except CorruptionError:
                    current = None  # replaced below by a good one
                if current is not None and current[0] >= self._applied:
                    self._since_snapshot = 0
                    return
                rows = [
                    [g, t, p, c.offset, c.metadata, c.commit_timestamp, c.topic_id]
                    for (g, t, p), c in sorted(self._offsets.items())
                ]
                body = json.dumps(
                    {"version": 2, "next_offset": self._applied, "offsets": rows}
                ).encode()
                write_state(self._fs, self._snapshot_path(), SNAPSHOT_KIND, body)
                self._log.delete_records(min(self._applied, self._log.log_end_offset))
                self._since_snapshot = 0
            finally:
                self._snapshot_lock.release()

    # ------------------------------------------------------------------ reading

    def _catch_up(self) -> None:
        """Apply the commit records appended (by any process) since the last call."""
        reloaded = False
        while True:
            try:
                records = self._log.read_records(self._applied)
            except OffsetOutOfRangeError as err:
                if reloaded:
                    raise CorruptionError(
                        f"committed offsets: the snapshot covers the log up to {self._applied} "
                        f"but the log starts at {err.log_start_offset}",
                        self._directory,
                    ) from err
                # another process snapshotted and dropped what we had not applied yet
                self._load_snapshot()
                reloaded = True
                continue
            if not records:
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
                        found = decode_value(record.value)
                        for name, raw in record.headers:
                            if name == TOPIC_ID_HEADER and raw is not None:
                                found = found._replace(topic_id=raw.decode("ascii"))
                    except (ValueError, struct.error, UnicodeDecodeError):
                        continue
                    self._offsets[key] = found
            self._applied = records[-1].offset + 1
            self._since_snapshot += len(records)

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
        for tp, (offset, metadata) in offsets.items():
            if len(metadata.encode("utf-8")) > MAX_METADATA_BYTES:
                raise InvalidRecordError(
                    f"commit metadata of {len(metadata)} characters is over "
                    f"{MAX_METADATA_BYTES} bytes (Kafka's offset.metadata.max.bytes)"
                )
            if offset < 0:
                raise InvalidRecordError(f"cannot commit offset {offset} for {tp}: it is < 0")
            key = encode_key(group, tp.topic, tp.partition)
            tid = ids.get(tp.topic)
            headers = () if tid is None else ((TOPIC_ID_HEADER, tid.encode("ascii")),)
            records.append((now, key, encode_value(offset, metadata, now), headers))
        if records:
            self._append(records)

    def delete(self, group: str, tps: list[TopicPartition]) -> None:
        """Forget ``group``'s committed offsets for ``tps`` (tombstones)."""
        now = self._clock.now_ms()
        records: list[RecordInput] = [
            (now, encode_key(group, tp.topic, tp.partition), None, ()) for tp in tps
        ]
        if records:
            self._append(records)

    def delete_topic(self, topic: str) -> None:
        """Forget every group's committed offsets for ``topic`` (it was deleted)."""
        with self._lock:
            self._catch_up()
            keys = [k for k in self._offsets if k[1] == topic]
        now = self._clock.now_ms()
        records: list[RecordInput] = [(now, encode_key(*k), None, ()) for k in sorted(keys)]
        if records:
            self._append(records)

    def _append(self, records: list[RecordInput]) -> None:
        self._log.append_records(records)
        with self._lock:
            self._catch_up()
            due = self._since_snapshot >= SNAPSHOT_EVERY
        if due:
            self.snapshot()

    def close(self) -> None:
        try:
            with self._lock:
                self._catch_up()
                due = self._since_snapshot > 0
            if due and not self._log.closed:
                self.snapshot()
        finally:  # a damaged log must not leak the files and locks
            try:
                self._log.close()
            finally:
                self._snapshot_lock.close()
