"""Committed group offsets (logstore.metadata.OffsetStore) against a dict model, under
commits, tombstones, snapshots, restarts of one or both of two stores sharing a root (two
processes), with a tiny ``SNAPSHOT_EVERY`` so snapshots and log deletion happen constantly.

Invariants: every store reads exactly the model (offset, metadata, commit time, group
list); the offsets log never holds ``SNAPSHOT_EVERY`` or more records past the snapshot;
and after a cold open the log below the snapshot is gone, so the offsets read can only
have come from the snapshot plus the tail."""

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
from logstore.metadata import OFFSETS_TOPIC, SNAPSHOT_NAME, read_snapshot
from logstore.storage.files import FileHandle, FileSystem
from logstore.storage.log import PartitionLog
from logstore.types import CommittedOffset, TopicPartition
from tests.conftest import FakeClock

SNAPSHOT_EVERY = 4
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

    def _snapshot_next_offset(self) -> int | None:
        found = read_snapshot(FileSystem(), os.path.join(self._dir(), SNAPSHOT_NAME))
        return None if found is None else found[0]

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
            self.model[(group, tp)] = CommittedOffset(offset, text, self.clock.now)
        self.written += len(entries)

    @rule(which=stores, group=groups, tps=st.lists(partitions, min_size=1, max_size=3))
    def delete(self, which: int, group: str, tps: list[TopicPartition]) -> None:
        self.stores[which].offsets.delete(group, tps)
        for tp in tps:
            self.model.pop((group, tp), None)
        self.written += len(tps)

    @rule(ms=st.integers(1, 10_000))
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule(which=stores)
    def snapshot(self, which: int) -> None:
        self.stores[which].offsets.snapshot()
        start, end = self._bounds()
        assert start == end == self.written
        if self.written:
            assert self._snapshot_next_offset() == self.written

    @rule(which=stores)
    def reopen_one(self, which: int) -> None:
        """One process restarts while the other keeps the store open."""
        self.stores[which].close()
        self.stores[which] = self._open()

    @rule()
    def reopen_both(self) -> None:
        """Every process stops, then the store opens cold: recovery from the snapshot."""
        for s in self.stores:
            s.close()
        if self.written:
            # a close snapshots everything; the log below the snapshot is deleted
            assert self._snapshot_next_offset() == self.written
            bases = [
                int(name[: -len(".log")])
                for name in os.listdir(self._dir())
                if name.endswith(".log")
            ]
            assert min(bases) == self.written
        self.stores = [self._open(), self._open()]
        start, end = self._bounds()
        assert start == end == self.written  # nothing to replay but the snapshot

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
    def tail_past_snapshot_stays_below_snapshot_every(self) -> None:
        start, end = self._bounds()
        assert end == self.written
        assert end - start < SNAPSHOT_EVERY
        if self.written >= SNAPSHOT_EVERY:
            assert start > 0
            assert self._snapshot_next_offset() == start

    def teardown(self) -> None:
        try:
            for s in self.stores:
                s.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def test_offsets_match_model_across_commits_snapshots_and_reopens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metadata, "SNAPSHOT_EVERY", SNAPSHOT_EVERY)
    run_state_machine_as_test(OffsetsMachine, settings=SETTINGS)
