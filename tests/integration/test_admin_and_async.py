"""Group administration and the asyncio front ends."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

import logstore
from logstore import GroupNotEmptyError, TopicPartition


def _filled(tmp_path: Path) -> logstore.Store:
    store = logstore.open(tmp_path / "data")
    store.create_topic("t", 2, flush="never")
    store.append_many("t", [(b"v%d" % i, None, None, i % 2, 1_000 + i) for i in range(20)])
    return store


def test_describe_group_reports_committed_offsets_lag_and_live_owners(tmp_path: Path) -> None:
    with _filled(tmp_path) as store:
        consumer = store.consumer(["t"], group_id="g", auto_offset_reset="earliest")
        consumer.poll(timeout_ms=100, max_records=3)
        consumer.commit()
        described = store.describe_group("g")
        assert described.state == "Stable"
        assert list(described.members) == [consumer.member_id]
        rows = {(p.topic, p.partition): p for p in described.partitions}
        polled, other = sorted(rows.values(), key=lambda p: p.committed is None)
        assert (polled.committed, polled.lag) == (3, 7)
        assert (other.committed, other.lag) == (None, None)  # nothing committed: no lag
        assert all(p.log_end_offset == 10 for p in rows.values())
        assert described.total_lag == 7
        assert {p.owner for p in rows.values()} == {consumer.member_id}
        with pytest.raises(GroupNotEmptyError, match="live member"):
            store.reset_offsets("g", to_earliest=True)
        consumer.close()
        assert store.describe_group("g").state == "Empty"
        assert store.list_groups() == ["g"]


def test_reset_offsets_is_a_dry_run_unless_executed(tmp_path: Path) -> None:
    with _filled(tmp_path) as store:
        both = {TopicPartition("t", 0): (8, ""), TopicPartition("t", 1): (8, "")}
        store.offsets.commit("g", both)
        plan = store.reset_offsets("g", to_earliest=True)
        assert plan == {TopicPartition("t", 0): 0, TopicPartition("t", 1): 0}
        assert store.offsets.committed("g", TopicPartition("t", 0)).offset == 8  # dry run
        assert store.reset_offsets("g", shift_by=-3, execute=True)[TopicPartition("t", 1)] == 5
        assert store.reset_offsets("g", shift_by=100)[TopicPartition("t", 1)] == 10  # clamped
        assert store.reset_offsets("g", to_latest=True)[TopicPartition("t", 0)] == 10
        assert store.reset_offsets("g", to_offset=4)[TopicPartition("t", 0)] == 4
        when = dt.datetime.fromtimestamp(1.010, tz=dt.UTC)  # record timestamp 1010 = value 10
        assert store.reset_offsets("g", to_datetime=when) == {
            TopicPartition("t", 0): 5,
            TopicPartition("t", 1): 5,
        }
        with pytest.raises(logstore.InvalidConfigError, match="exactly one"):
            store.reset_offsets("g", to_earliest=True, to_latest=True)


def test_delete_group_forgets_its_offsets(tmp_path: Path) -> None:
    with _filled(tmp_path) as store:
        with store.consumer(["t"], group_id="g", auto_offset_reset="earliest") as consumer:
            consumer.poll(timeout_ms=100)
            consumer.commit()
        store.delete_group("g")
        assert store.list_groups() == []
        assert store.offsets.group_offsets("g") == {}


def test_async_producer_and_consumer_never_block_the_loop(tmp_path: Path) -> None:
    async def main() -> tuple[int, list[int], int]:
        with logstore.open(tmp_path / "data") as store:
            store.create_topic("t", 1, flush="always")
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)

            tick_task = asyncio.create_task(ticker())
            async with logstore.AsyncProducer(store, linger_ms=0) as producer:
                first = await producer.send("t", b"a")
                pending = [await producer.send_nowait("t", b"v%d" % i) for i in range(50)]
                offsets = [m.offset for m in await asyncio.gather(*pending)]
            async with logstore.AsyncConsumer(
                store, ["t"], group_id="g", auto_offset_reset="earliest", consumer_timeout_ms=200
            ) as consumer:
                seen = [r.offset async for r in consumer]
                await consumer.commit()
            tick_task.cancel()
            assert first.offset == 0
            return ticks, offsets, len(seen)

    ticks, offsets, seen = asyncio.run(main())
    assert offsets == list(range(1, 51))
    assert seen == 51
    assert ticks > 10  # the loop kept running while fsyncs and polls happened
