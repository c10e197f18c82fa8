"""Committed group offsets (logstore.metadata.OffsetStore) against a dict model, under
commits, tombstones, clock jumps past ``delete_retention_ms``, forced cleaner runs and
restarts of one or both of two stores sharing a root (two processes), with tiny offsets-log
segments so rolls and compaction happen constantly.

Invariants: every store reads exactly the model (offset, metadata, commit time, group
list); the offsets log's ``.log`` files stay under ``2·S + 2·L`` (the bound of
``logstore/metadata.py``; ``L`` here: per key ever written, its largest record as a batch
of its own); the log start never moves; no snapshot is ever written; and after a cold
open the offsets read come from the compacted log alone."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

import logstore
from logstore import metadata
from logstore.config import DEFAULT_DELETE_RETENTION_MS
from logstore.metadata import OFFSETS_TOPIC, SNAPSHOT_NAME, commit_record, encode_key
from logstore.records import RecordInput, encode_batch
from logstore.storage.files import FileHandle, FileSystem
from logstore.storage.log import PartitionLog
from logstore.types import CommittedOffset, TopicPartition
from tests.conftest import FakeClock

SEGMENT_BYTES = 512
RETAINED_SLACK = 8  # a record kept alone from a larger batch: its offset delta's varint
SETTINGS = settings(
    settings.default,
    # ~25 steps of real file I/O each: the ci profile's 200 examples take well under a minute
    stateful_step_count=25,
    deadline=None,
    phases=[p for p in settings.default.phases if p is not Phase.explain],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class NoSyncFS(FileSystem):
    """Real files without fsync: nothing here crashes the machine, and fsync is slow."""

    def _fsync(self, handle: FileHandle) -> None:
        pass

    def _fsync_dir(self, path: str) -> None:
        pass


FS = NoSyncFS()
Key = tuple[str, TopicPartition]

groups = st.sampled_from(["g1", "g2", "grüppe"])
partitions = st.builds(TopicPartition, st.sampled_from(["t", "u"]), st.integers(0, 2))
offsets = st.integers(0, 1_000) | st.sampled_from([2**31, 2**63 - 1])
texts = st.text(alphabet="abé", max_size=3)
stores = st.integers(0, 1)


class OffsetsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="offsets-sm-")
        self.path = os.path.join(self.root, "store")
        self.clock = FakeClock()
        self.stores = [self._open(), self._open()]
        self.model: dict[Key, CommittedOffset] = {}
        self.written = 0  # records ever appended to the offsets log
        self.largest: dict[tuple[str, str, int], int] = {}  # per key: its largest record
        self.runs = 0

    def _open(self) -> logstore.Store:
        return logstore.open(self.path, fs=FS, clock=self.clock)

    def _dir(self) -> str:
        return os.path.join(self.path, f"{OFFSETS_TOPIC}-0")

    def _bounds(self) -> tuple[int, int]:
        """(log start, log end) of the offsets log, seen by a third process."""
        for s in self.stores:
            _ = s.offsets  # each store has the log open, so this handle only joins
        plog = PartitionLog(self._dir(), fs=FS)
        try:
            return plog.log_start_offset, plog.log_end_offset
        finally:
            plog.close()

    def _note(self, key: tuple[str, str, int], record: RecordInput) -> None:
        size = len(encode_batch([record], base_offset=0)) + RETAINED_SLACK
        self.largest[key] = max(self.largest.get(key, 0), size)

    # ------------------------------------------------------------------ rules

    @rule(
        which=stores,
        group=groups,
        entries=st.dictionaries(partitions, st.tuples(offsets, texts), min_size=1, max_size=4),
    )
    def commit(
        self, which: int, group: str, entries: dict[TopicPartition, tuple[int, str]]
    ) -> None:
        self.stores[which].offsets.commit(group, entries)
        for tp, (offset, text) in entries.items():
            committed = CommittedOffset(offset, text, self.clock.now)
            self.model[(group, tp)] = committed
            key = (group, tp.topic, tp.partition)
            self._note(key, commit_record(self.clock.now, key, committed))
        self.written += len(entries)

    @rule(which=stores, group=groups, tps=st.lists(partitions, min_size=1, max_size=3))
    def delete(self, which: int, group: str, tps: list[TopicPartition]) -> None:
        self.stores[which].offsets.delete(group, tps)
        for tp in tps:
            self.model.pop((group, tp), None)
            key = (group, tp.topic, tp.partition)
            self._note(key, (self.clock.now, encode_key(*key), None, ()))
        self.written += len(tps)

    @rule(ms=st.integers(1, 10_000) | st.just(DEFAULT_DELETE_RETENTION_MS + 1))
    def advance_clock(self, ms: int) -> None:
        """Past ``delete_retention_ms``, the next cleaner run drops every tombstone."""
        self.clock.advance(ms)

    @rule(which=stores)
    def compact(self, which: int) -> None:
        """A cleaner run whether due or not (the stores run it after rolls by themselves)."""
        if self.stores[which].offsets._log.compact(force=True) is not None:
            self.runs += 1

    @rule(which=stores)
    def reopen_one(self, which: int) -> None:
        """One process restarts while the other keeps the store open."""
        self.stores[which].close()
        self.stores[which] = self._open()

    @rule()
    def reopen_both(self) -> None:
        """Every process stops, then the store opens cold: the log alone is replayed."""
        for s in self.stores:
            s.close()
        assert not os.path.exists(os.path.join(self._dir(), SNAPSHOT_NAME))
        self.stores = [self._open(), self._open()]

    # ------------------------------------------------------------------ invariants

    @invariant()
    def every_store_reads_the_model(self) -> None:
        expected_groups = sorted({g for g, _ in self.model})
        for s in self.stores:
            assert s.offsets.groups() == expected_groups
            for group in ["g1", "g2", "grüppe"]:
                expected = {tp: c for (g, tp), c in self.model.items() if g == group}
                assert s.offsets.group_offsets(group) == expected
            for (group, tp), c in self.model.items():
                assert s.offsets.committed(group, tp) == c

    @invariant()
    def the_log_stays_under_the_bound_and_keeps_its_offsets(self) -> None:
        start, end = self._bounds()
        assert (start, end) == (0, self.written)
        size = sum(
            os.path.getsize(os.path.join(self._dir(), n))
            for n in os.listdir(self._dir()) if n.endswith(".log")
        )
        assert size <= 2 * SEGMENT_BYTES + 2 * sum(self.largest.values())
        assert not os.path.exists(os.path.join(self._dir(), SNAPSHOT_NAME))

    def teardown(self) -> None:
        try:
            for s in self.stores:
                s.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def test_offsets_match_model_across_commits_compaction_and_reopens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metadata, "OFFSETS_SEGMENT_BYTES", SEGMENT_BYTES)
    run_state_machine_as_test(OffsetsMachine, settings=SETTINGS)
