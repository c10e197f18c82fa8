"""Stores as logstore wrote them before the offsets log was compacted (issue 15).

Those versions kept ``__consumer_offsets-0/offsets.snapshot`` (every live offset and the
log offset it covers: :mod:`logstore.metadata`'s format, a state file of kind
``offsets-snapshot``) and deleted the offsets log below it. The tests build such stores
themselves: commits made through today's code, then the snapshot written and the log
trimmed as the old ``OffsetStore.snapshot()`` did, and (optionally) commit records appended
past it straight to the partition log (an ``OffsetStore`` would migrate the store).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from logstore.metadata import (
    OFFSETS_TOPIC,
    SNAPSHOT_KIND,
    SNAPSHOT_NAME,
    OffsetStore,
    commit_record,
    encode_key,
    offsets_log_config,
)
from logstore.records import RecordInput
from logstore.records.offsets_schema import OffsetKey
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.storage.statefile import write_state
from logstore.types import Clock, CommittedOffset

Offsets = dict[OffsetKey, CommittedOffset]


def offsets_dir(root: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(root), f"{OFFSETS_TOPIC}-0")


def snapshot_path(root: str | os.PathLike[str]) -> str:
    return os.path.join(offsets_dir(root), SNAPSHOT_NAME)


def snapshot_payload(next_offset: int, offsets: Offsets) -> bytes:
    """The JSON an earlier logstore wrote: version 2, rows sorted by key."""
    rows = [
        [g, t, p, c.offset, c.metadata, c.commit_timestamp, c.topic_id]
        for (g, t, p), c in sorted(offsets.items())
    ]
    return json.dumps({"version": 2, "next_offset": next_offset, "offsets": rows}).encode()


def write_snapshot(
    fs: FileSystem, root: str | os.PathLike[str], next_offset: int, offsets: Offsets
) -> None:
    write_state(fs, snapshot_path(root), SNAPSHOT_KIND, snapshot_payload(next_offset, offsets))


def live_offsets(root: str | os.PathLike[str], fs: FileSystem, clock: Clock) -> Offsets:
    """Every live offset of the (closed) store at ``root``, read by an OffsetStore."""
    store = OffsetStore(os.fspath(root), fs=fs, clock=clock)
    try:
        return {
            (g, tp.topic, tp.partition): c
            for g in store.groups()
            for tp, c in store.group_offsets(g).items()
        }
    finally:
        store.close()


def make_legacy(root: str | os.PathLike[str], fs: FileSystem, clock: Clock) -> Offsets:
    """Turn the committed offsets of the closed store at ``root`` into a legacy store's:
    a snapshot of every live offset at the log end, then the log below it deleted (the old
    ``OffsetStore.snapshot()``). Returns the offsets the snapshot holds."""
    offsets = live_offsets(root, fs, clock)
    plog = PartitionLog(offsets_dir(root), offsets_log_config(), fs=fs, clock=clock)
    try:
        end = plog.log_end_offset
        write_snapshot(fs, root, end, offsets)
        plog.delete_records(end)
    finally:
        plog.close()
    return offsets


def append_legacy_records(
    root: str | os.PathLike[str],
    fs: FileSystem,
    clock: Clock,
    changes: Iterable[tuple[OffsetKey, CommittedOffset | None]],
    *,
    timestamp: int | None = None,
) -> tuple[int, int]:
    """Append commit records (None: a tombstone) past the snapshot in one batch, as a
    process of an earlier version did; returns the batch's (first, last) offsets."""
    now = clock.now_ms() if timestamp is None else timestamp
    records: list[RecordInput] = [
        (now, encode_key(*key), None, ()) if c is None else commit_record(now, key, c)
        for key, c in changes
    ]
    plog = PartitionLog(offsets_dir(root), offsets_log_config(), fs=fs, clock=clock)
    try:
        result = plog.append_records(records)
    finally:
        plog.close()
    return result.base_offset, result.last_offset
