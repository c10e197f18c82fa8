"""The mirror (logstore/patterns/mirror*.py, issue 17): the offset map and checkpoint,
batching, and a Mirror between two embedded stores in tmp_path (records, topics,
resuming, crashes between an append and its checkpoint, group translation, follow).
Crashes of real processes and the CLI: tests/integration/test_mirror.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore.backend import backend_for
from logstore.client.backend import Backend
from logstore.client.transactions import TransactionalProducer
from logstore.errors import StorageError
from logstore.patterns import mirror as mirror_module
from logstore.patterns import mirror_offsets
from logstore.patterns.mirror import Mirror, MirrorError, checkpoint_group
from logstore.patterns.mirror_groups import GroupTranslator
from logstore.patterns.mirror_offsets import UNKNOWN, Checkpoint, OffsetMap
from logstore.types import ConsumerRecord, TopicPartition
from tests.mirror_support import T0, committed, consume_half, dump, fill, rest_of_group

TP = TopicPartition("t", 0)


# --------------------------------------------------------------------------- offset map


def fresh(src: int = 0, dst: int = 0) -> OffsetMap:
    return OffsetMap(Checkpoint(src, dst, (src, dst), (src, dst, 0), None))


def test_offset_map_keeps_a_source_without_gaps_as_one_run() -> None:
    m = fresh()
    m.add(range(0, 100), 0)
    m.add(range(100, 250), 100)

    assert m.runs == 1
    assert (m.src_next, m.dst_next) == (250, 250)
    assert [m.translate(s) for s in (0, 1, 99, 100, 249, 250, 251)] == [
        0, 1, 99, 100, 249, 250, None]


def test_offset_map_translates_across_gaps_to_the_next_record() -> None:
    m = fresh(10, 5)
    m.add([10, 11, 12, 20, 21], 5)  # 13..19: markers or aborted records
    m.skip_to(30)  # nothing to copy up to 30

    assert m.runs == 2
    assert [m.translate(s) for s in (0, 10, 12, 13, 19, 20, 21, 22, 29, 30, 31)] == [
        5, 5, 7, 8, 8, 8, 9, 10, 10, 10, None]


def test_offset_map_takes_offsets_that_seem_empty_without_checkpointing_them() -> None:
    m = fresh()
    m.add(range(0, 10), 0)
    m.seems_empty_to(13)  # e.g. three transaction markers

    assert [m.translate(s) for s in (10, 12, 13, 14)] == [10, 10, 10, None]
    assert m.position == 13 and m.checkpoint("id").src_next == 10
    m.add([14], 10)  # a record after all: copying goes on from it
    assert m.translate(14) == 10 and m.translate(15) == 11 and m.position == 15


def test_offset_map_restored_from_its_checkpoint_translates_its_last_run() -> None:
    m = fresh(0, 0)
    m.add(range(0, 10), 0)
    m.add(range(15, 40), 10)
    restored = OffsetMap(Checkpoint.parse(*_committed(m), "t-0"))

    assert restored.checkpoint("id") == m.checkpoint("id")
    assert [restored.translate(s) for s in (0, 15, 39, 40)] == [0, 10, 34, 35]
    assert restored.translate(5) == UNKNOWN  # before the last run: counted on demand
    restored.remember(5, 5)
    assert restored.translate(5) == 5


def _committed(m: OffsetMap) -> tuple[int, str]:
    cp = m.checkpoint("id")
    return cp.src_next, cp.metadata()


def test_offset_map_refuses_records_that_do_not_follow() -> None:
    m = fresh()
    m.add([0, 1], 0)

    with pytest.raises(ValueError, match="do not follow"):
        m.add([5], 7)
    with pytest.raises(ValueError, match="do not follow"):
        m.add([1], 2)


def test_offset_map_drops_its_oldest_runs_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mirror_offsets, "MAX_RUNS", 10)
    m = fresh()
    for i in range(11):
        m.add([2 * i], i)  # every other offset: a run each

    assert m.runs == 6
    assert m.known_from == 10
    assert m.translate(12) == 6 and m.translate(3) == UNKNOWN


def test_checkpoint_metadata_round_trips_and_fits_kafka() -> None:
    cp = Checkpoint(2**62, 2**62 - 5, (3, 0), (2**61, 2**61, 2**60), "AbCdEfGhIjKlMnOpQrStUv")

    assert Checkpoint.parse(cp.src_next, cp.metadata(), "t-0") == cp
    assert len(cp.metadata()) < 4096


@pytest.mark.parametrize("metadata", ["", "{}", "not json", '{"dst": 1, "first": [1]}'])
def test_checkpoint_parse_names_foreign_metadata(metadata: str) -> None:
    with pytest.raises(MirrorError, match=r"checkpoint of t-3 .* not a mirror's"):
        Checkpoint.parse(5, metadata, "t-3")


# --------------------------------------------------------------------------- two stores


@pytest.fixture
def src(tmp_path: Path) -> Iterator[logstore.Store]:
    with logstore.open(tmp_path / "src") as store:
        yield store


@pytest.fixture
def dst(tmp_path: Path) -> Iterator[logstore.Store]:
    with logstore.open(tmp_path / "dst") as store:
        yield store


def mirror(src: logstore.Store, dst: logstore.Store | Backend, **options: Any) -> Mirror:
    options.setdefault("name", "m")
    options.setdefault("from_beginning", True)
    target = dst if not isinstance(dst, logstore.Store) else backend_for(dst)
    return Mirror(backend_for(src), target, **options)


def test_mirror_copies_records_keys_timestamps_headers_and_nulls(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=3)
    fill(src, "t", 500)

    stats = mirror(src, dst, batch_records=64).run()

    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")
    assert stats.copied == 500 and stats.topics_created == ["t"]
    rows = [r for p in dump(backend_for(dst), "t").values() for r in p]
    assert (T0 + 49, None, b"v49", ()) in rows
    assert (T0 + 39, b"k39", None, (("n", b"39"), ("null", None))) in rows
    assert (T0 + 3, b"k3", b"v3", (("n", b"3"), ("null", None))) in rows


def test_mirror_creates_topics_with_partitions_and_changed_config(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("a", partitions=4, retention_ms=3_600_000, max_message_bytes=5000,
                     cleanup_policy="compact", partitioner="murmur2")
    src.create_topic("b-skip", partitions=2)

    mirror(src, dst, topics="a|c").run()

    assert dst.list_topics() == ["a"]
    assert dst.topic("a").config == src.topic("a").config
    assert "__consumer_offsets" not in dst.list_topics()


def test_mirror_halves_batches_the_destination_refuses_as_too_large(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=1, max_message_bytes=1500)
    fill(src, "t", 200)  # ~20-byte records: batches of 10 to 50 fit
    dst.create_topic("t", partitions=1, max_message_bytes=500)

    stats = mirror(src, dst, batch_records=1000).run()

    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")
    assert stats.batches > 200 * 20 // 500
    dst.create_topic("u", partitions=1, max_message_bytes=100)
    src.create_topic("u", partitions=1)
    with src.producer() as producer:
        producer.send("u", b"x" * 200)
    with pytest.raises(MirrorError, match=r"u-0 offset 0: a record of .* max_message_bytes"):
        mirror(src, dst).run()


def test_mirror_grows_a_destination_with_fewer_partitions_and_refuses_more(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=3)
    fill(src, "t", 30)
    dst.create_topic("t", partitions=2)

    stats = mirror(src, dst).run()

    assert stats.partitions_added == {"t": 3}
    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")
    dst.create_topic("u", partitions=5)
    src.create_topic("u", partitions=4)
    with pytest.raises(MirrorError, match="'u' has 5 partitions, the source 4"):
        mirror(src, dst).run()


def test_mirror_starts_at_the_source_end_without_from_beginning(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=2)
    fill(src, "t", 100)

    first = mirror(src, dst, from_beginning=False).run()
    fill(src, "t", 10, start=100)
    second = mirror(src, dst, from_beginning=False).run()

    assert first.copied == 0 and first.started_at_end == ["t"]
    assert second.copied == 10
    rows = sorted(r for p in dump(backend_for(dst), "t").values() for r in p)
    assert [r[0] - T0 for r in rows] == list(range(100, 110))
    with pytest.raises(MirrorError, match="already holds records"):
        mirror(src, dst, name="other").run()


def test_mirror_from_beginning_restarts_a_partition_it_copied_nothing_to(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=1)
    fill(src, "t", 50)
    mirror(src, dst, from_beginning=False).run()

    stats = mirror(src, dst, from_beginning=True).run()

    assert stats.copied == 50
    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")


def test_mirror_resumes_where_it_stopped(src: logstore.Store, dst: logstore.Store) -> None:
    src.create_topic("t", partitions=2)
    fill(src, "t", 300)
    mirror(src, dst).run()
    fill(src, "t", 200, start=300)
    src.create_topic("new", partitions=1)
    fill(src, "new", 5)

    stats = mirror(src, dst, from_beginning=False).run()

    assert stats.copied == 205  # a topic new since the first run: copied from its start
    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")
    assert dump(backend_for(dst), "new") == dump(backend_for(src), "new")
    progress = committed(backend_for(dst), checkpoint_group("m"), "t")
    assert sum(progress.values()) == 500


class CrashAfter:
    """A destination backend that "crashes" (raises) at its ``n``-th append or commit,
    before (``when="before"``) or after doing it."""

    def __init__(self, backend: Backend, n: int, when: str = "after") -> None:
        self._backend = backend
        self._calls = 0
        self.n = n
        self.when = when

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._backend, name)
        if name not in ("append", "commit_offsets"):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls += 1
            if self._calls == self.n and self.when == "before":
                raise KeyboardInterrupt("crash")
            result = found(*args, **kwargs)
            if self._calls == self.n:
                raise KeyboardInterrupt("crash")
            return result

        return call


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13])
@pytest.mark.parametrize("when", ["before", "after"])
def test_mirror_after_a_crash_copies_nothing_twice_and_leaves_nothing_out(
    src: logstore.Store, dst: logstore.Store, n: int, when: str
) -> None:
    src.create_topic("t", partitions=2)
    fill(src, "t", 400)
    with pytest.raises(KeyboardInterrupt):
        mirror(src, CrashAfter(backend_for(dst), n, when), batch_records=50).run()

    stats = mirror(src, dst, batch_records=50).run()

    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")
    assert stats.copied + stats.skipped_on_resume <= 400


class FailingAppends:
    """A destination backend whose appends fail with StorageError ``failures`` times,
    after writing (the worst case: the write happened, the answer was lost)."""

    def __init__(self, backend: Backend, failures: int) -> None:
        self._backend = backend
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def append(self, *args: Any, **kwargs: Any) -> Any:
        result = self._backend.append(*args, **kwargs)
        if self.failures > 0:
            self.failures -= 1
            raise StorageError("the network went away")
        return result


def test_mirror_rides_out_backend_errors_by_starting_again_from_its_checkpoints(
    src: logstore.Store, dst: logstore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mirror_module, "RETRY_FIRST_S", 0.001)
    src.create_topic("t", partitions=2)
    fill(src, "t", 300)

    stats = mirror(src, FailingAppends(backend_for(dst), 3), batch_records=40).run()

    assert stats.restarts == 3
    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")
    fill(src, "t", 200, start=300)
    with pytest.raises(StorageError, match="went away"):  # 3 tries, a batch each
        mirror(src, FailingAppends(backend_for(dst), 99), retries=2, batch_records=10).run()
    stats = mirror(src, dst).run()
    assert stats.copied == 170 and stats.skipped_on_resume == 10  # the last failed batch
    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")


class EmptyAnswers:
    """A source backend whose first ``n`` fetches answer nothing (as a Kafka cluster's
    may before its records arrive)."""

    def __init__(self, backend: Backend, n: int) -> None:
        self._backend = backend
        self.n = n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def fetch(self, positions: Any, **kwargs: Any) -> Any:
        if self.n > 0:
            self.n -= 1
            return {}
        return self._backend.fetch(positions, **kwargs)


@pytest.mark.parametrize("empty", [1, 2, 5])
def test_mirror_never_checkpoints_past_records_an_empty_answer_hid(
    src: logstore.Store, dst: logstore.Store, empty: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mirror_module, "CONFIRM_WAIT_MS", 10)
    src.create_topic("t", partitions=2)
    fill(src, "t", 100)
    src_backend = EmptyAnswers(backend_for(src), empty)

    first = Mirror(src_backend, backend_for(dst), name="m", from_beginning=True).run()
    second = mirror(src, dst).run()  # what the first run ended without, the next copies

    assert first.copied + second.copied == 100
    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")


def test_mirror_refuses_a_destination_someone_else_wrote_to(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=1)
    fill(src, "t", 20)
    mirror(src, dst).run()
    fill(src, "t", 5, start=20)
    with dst.producer() as producer:
        producer.send("t", b"intruder", key=b"x")

    with pytest.raises(MirrorError, match="written by something else"):
        mirror(src, dst).run()


def test_mirror_refuses_a_destination_that_lost_records(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=1)
    fill(src, "t", 20)
    mirror(src, dst).run()
    dst.delete_topic("t")
    dst.create_topic("t", partitions=1)

    stats = mirror(src, dst).run()  # a new incarnation: its checkpoint went with the old

    assert stats.copied == 20


def test_mirror_refuses_a_source_topic_created_again(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=1)
    fill(src, "t", 20)
    mirror(src, dst).run()
    src.delete_topic("t")
    src.create_topic("t", partitions=1)

    with pytest.raises(MirrorError, match="deleted and created again"):
        mirror(src, dst).run()


# --------------------------------------------------------------------------- groups


def test_mirror_translates_a_group_so_its_consumer_resumes_on_the_destination(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=4)
    fill(src, "t", 2000)
    consume_half(src, "g", ["t"], 1000)

    stats = mirror(src, dst, batch_records=128).run()

    assert stats.groups_translated == {"g": len(committed(backend_for(src), "g", "t"))}
    assert rest_of_group(backend_for(dst), "g", "t") == rest_of_group(backend_for(src), "g", "t")
    expected = sorted(
        row[0] for rows in rest_of_group(backend_for(src), "g", "t").values() for row in rows)
    seen: list[ConsumerRecord] = []
    with dst.consumer(["t"], group_id="g", auto_offset_reset="earliest") as consumer:
        deadline = time.monotonic() + 10
        while len(seen) < len(expected) and time.monotonic() < deadline:
            seen += consumer.poll(timeout_ms=200)
        seen += consumer.poll(timeout_ms=100)
    assert sorted(r.timestamp for r in seen) == expected


def aborted_and_committed(store: logstore.Store, topic: str, rounds: int) -> None:
    """Transactions on ``topic``: every other one aborted (gaps for read_committed)."""
    with TransactionalProducer(store, "tx", linger_ms=0) as producer:
        producer.init_transactions()
        for i in range(rounds):
            producer.begin_transaction()
            for j in range(7):
                producer.send(topic, b"%d-%d" % (i, j), key=b"k%d" % j, timestamp=T0 + i)
            if i % 2:
                producer.abort_transaction()
            else:
                producer.commit_transaction()


def test_mirror_translates_exactly_across_transaction_gaps_after_a_restart(
    src: logstore.Store, dst: logstore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mirror_module, "CONFIRM_WAIT_MS", 10)  # a store answers at once
    src.create_topic("t", partitions=1)
    aborted_and_committed(src, "t", 10)
    consume_half(src, "g", ["t"], 14)  # in the middle: offsets with gaps behind
    mirror(src, dst, groups=None).run()
    aborted_and_committed(src, "t", 4)
    counted: list[int] = []
    count = GroupTranslator._count
    monkeypatch.setattr(GroupTranslator, "_count",
                        lambda self, p, offset: counted.append(offset) or count(self, p, offset))

    stats = mirror(src, dst).run()  # a new mirror: its map knows the last run only

    assert counted  # the offset was before the last run: translated by counting
    assert stats.groups_translated == {"g": 1}
    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")
    assert rest_of_group(backend_for(dst), "g", "t") == rest_of_group(backend_for(src), "g", "t")
    assert committed(backend_for(src), "g", "t") != committed(backend_for(dst), "g", "t")


def test_mirror_leaves_groups_with_members_or_further_on_the_destination(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=1)
    fill(src, "t", 100)
    consume_half(src, "busy", ["t"], 50)
    consume_half(src, "ahead", ["t"], 50)
    mirror(src, dst, groups="nothing").run()
    consume_half(dst, "ahead", ["t"], 80)  # its consumers moved and went on

    with dst.consumer(["t"], group_id="busy", enable_auto_commit=False) as member:
        member.poll(timeout_ms=100)  # joined: the group has a live member
        stats = mirror(src, dst).run()

    assert "members on the destination" in stats.groups_skipped["busy"]
    assert committed(backend_for(dst), "busy", "t") == {}
    assert committed(backend_for(dst), "ahead", "t") == {0: 80}
    assert stats.groups_translated == {"ahead": 1}


def test_mirror_does_not_translate_its_own_groups_or_unmatched_ones(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=1)
    fill(src, "t", 10)
    consume_half(src, "g1", ["t"], 5)
    consume_half(src, "h1", ["t"], 5)
    backend_for(src).commit_offsets(checkpoint_group("upstream"), {TP: (3, "{}")})

    stats = mirror(src, dst, groups="g.*").run()

    assert stats.groups_translated == {"g1": 1}
    assert sorted(backend_for(dst).list_groups()) == ["g1", checkpoint_group("m")]


# --------------------------------------------------------------------------- follow


def test_mirror_follows_new_records_and_topics_until_stopped(
    src: logstore.Store, dst: logstore.Store
) -> None:
    src.create_topic("t", partitions=2)
    fill(src, "t", 50)
    stop = threading.Event()
    job = mirror(src, dst, groups_interval_ms=100)
    runner = threading.Thread(target=job.run, kwargs={"follow": True, "stop": stop})
    runner.start()
    try:
        fill(src, "t", 50, start=50)
        src.create_topic("later", partitions=1)
        fill(src, "later", 7)
        deadline = time.monotonic() + 10
        while job.stats.copied < 107 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        runner.join(10)

    assert not runner.is_alive()
    assert dump(backend_for(dst), "t") == dump(backend_for(src), "t")
    assert dump(backend_for(dst), "later") == dump(backend_for(src), "later")


def test_mirror_rejects_bad_patterns(src: logstore.Store, dst: logstore.Store) -> None:
    with pytest.raises(MirrorError, match=r"bad topics pattern '\['"):
        mirror(src, dst, topics="[")
