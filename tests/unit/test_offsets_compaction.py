"""The committed-offsets log stays bounded however many commits are made (issue 15).

The bound (``logstore/metadata.py``'s docstring): with segment size ``S``
(:data:`~logstore.metadata.OFFSETS_SEGMENT_BYTES`, 1 MiB) and live records of total size
``L`` (each as a one-record batch), the offsets log's ``.log`` files hold at most
``2·S + 2·L`` bytes. Here one group commits 1,000,000 times (one partition, the offset
varying), and 20,000 times 50 partitions (1,000,000 records too), through
:class:`~logstore.metadata.OffsetStore` on a file system whose fsyncs do nothing (the bound
is about sizes; ``flush="always"`` would otherwise make this a disk benchmark), under
``/dev/shm`` where there is one. The size is
checked after every commit (the log's segment sizes) and against the files on disk after
every roll; after a reopen every committed offset reads back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstore import metadata
from logstore.metadata import OFFSETS_TOPIC, SNAPSHOT_NAME, OffsetStore, commit_record
from logstore.records import encode_batch
from logstore.records.offsets_schema import OffsetKey
from logstore.storage.files import FileHandle, FileSystem
from logstore.types import CommittedOffset, TopicPartition
from tests.conftest import FakeClock

GROUP = "billing-service"
TOPIC = "orders"
TOPIC_ID = "Vtt-ZgTqtExqh9VavWsKjQ"
RETAINED_SLACK = 8
"""Bytes a record kept alone from a larger batch may take over a fresh one-record batch
(its offset delta is no longer 0: a varint of up to a few bytes more)."""


class NoSyncFS(FileSystem):
    """Real files without fsync (nothing here loses power)."""

    def _fsync(self, handle: FileHandle) -> None:
        pass

    def _fsync_dir(self, path: str) -> None:
        pass


def live_size(offsets: dict[OffsetKey, CommittedOffset]) -> int:
    """``L``: every live offset's record as a batch of its own."""
    return sum(
        len(encode_batch([commit_record(c.commit_timestamp, key, c)], base_offset=0))
        + RETAINED_SLACK
        for key, c in offsets.items()
    )


def log_files_size(directory: str) -> int:
    return sum(
        os.path.getsize(os.path.join(directory, n))
        for n in os.listdir(directory) if n.endswith(".log")
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory when there is one (a million appends write 150 MB)."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        path = tempfile.mkdtemp(prefix="logstore-offsets-", dir=shm)
        try:
            yield Path(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path


def commit_many(scratch: Path, commits: int, per_commit: int, keys: int) -> str:
    """``commits`` commits of ``per_commit`` partitions each, taking turns over ``keys``
    partitions (the offset: 7 times the commit's number, plus the partition)."""
    root = str(scratch / "store")
    os.mkdir(root)
    directory = os.path.join(root, f"{OFFSETS_TOPIC}-0")
    clock = FakeClock()
    fs = NoSyncFS()
    segment = metadata.OFFSETS_SEGMENT_BYTES
    tps = [TopicPartition(TOPIC, p) for p in range(keys)]
    store = OffsetStore(root, fs=fs, clock=clock, topic_id_of=lambda _: TOPIC_ID)
    plog = store._log
    assert plog.config.segment_bytes == segment
    # every record has the same size (only the offsets and the clock vary, fixed-width)
    sample = {(GROUP, tp.topic, tp.partition): CommittedOffset(0, "", clock.now, TOPIC_ID)
              for tp in tps}
    live = live_size(sample)
    bound = 2 * segment + 2 * live
    expected: dict[TopicPartition, int] = {}
    largest = rolls = 0
    base = plog.active_segment.base_offset
    started = time.perf_counter()
    try:
        for i in range(commits):
            clock.advance(1)
            chosen = [tps[(i * per_commit + j) % keys] for j in range(per_commit)]
            offsets = {tp: i * 7 + tp.partition for tp in chosen}
            store.commit(GROUP, {tp: (o, "") for tp, o in offsets.items()})
            expected.update(offsets)
            size = plog.size_bytes
            largest = max(largest, size)
            assert size <= bound, f"commit {i}: the offsets log holds {size} > {bound} bytes"
            if plog.active_segment.base_offset != base:
                base = plog.active_segment.base_offset
                rolls += 1
                assert log_files_size(directory) == size  # one process: the files agree
        seconds = time.perf_counter() - started
        state = plog.compaction_state()
    finally:
        store.close()
    reopened = OffsetStore(root, fs=fs, clock=clock)
    try:
        found = reopened.group_offsets(GROUP)
        assert {tp: c.offset for tp, c in found.items()} == expected
        assert {(c.metadata, c.topic_id) for c in found.values()} == {("", TOPIC_ID)}
        assert reopened.groups() == [GROUP]
    finally:
        reopened.close()
    assert not os.path.exists(os.path.join(directory, SNAPSHOT_NAME))
    # a run once the dirty section outgrows the clean one: every L/S + 1 rolls at most
    assert rolls > 50 and state.runs >= rolls // (live // segment + 2), (rolls, state)
    return (
        f"offsets compaction: {commits:,} commits of {per_commit} of {keys} partition(s), "
        f"S = {segment:,}: {seconds:.1f} s ({commits / seconds:,.0f}/s), {rolls} rolls, "
        f"{state.runs} cleaner runs, {state.bytes_reclaimed / 1e6:,.0f} MB reclaimed; "
        f"largest log {largest:,} bytes, bound 2*S + 2*L = {bound:,} (L = {live:,}); at "
        f"the end "
        f"{log_files_size(directory):,}"
    )


@pytest.mark.soak  # 45 s; the default run holds the bound with the two below
def test_a_million_commits_of_one_partition_stay_under_the_bound(scratch: Path) -> None:
    print(commit_many(scratch, 1_000_000, 1, 1))


@pytest.mark.slow  # (a storage bound: the pure-Python codec pass leaves it out)
def test_a_million_records_in_commits_of_50_partitions_stay_under_the_bound(
    scratch: Path,
) -> None:
    print(commit_many(scratch, 20_000, 50, 50))


@pytest.mark.slow  # (a storage bound: the pure-Python codec pass leaves it out)
def test_many_live_offsets_in_small_segments_stay_under_the_bound(
    scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live records larger than a segment (2,000 partitions' offsets, 64 KiB segments):
    the clean section is most of the log, and the ``2·L`` term of the bound is what
    holds."""
    monkeypatch.setattr(metadata, "OFFSETS_SEGMENT_BYTES", 64 << 10)
    print(commit_many(scratch, 60_000, 10, 2_000))
