"""Several real processes on one store: concurrent appends, tailing readers, and writers
killed with SIGKILL in the middle of an append."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import logstore
from tests.integration.workers import rows, start


def _rows_acks(output: str) -> list[tuple[int, int, str]]:
    return rows(output, "ack")


def _all_records(data: Path, topic: str) -> dict[int, list[logstore.Record]]:
    out: dict[int, list[logstore.Record]] = {}
    with logstore.open(data) as store:
        for info in store.describe_topic(topic).partitions:
            records: list[logstore.Record] = []
            offset = info.log_start_offset
            while offset < info.log_end_offset:
                batch = store.read(topic, info.partition, offset)
                records += batch
                offset = batch[-1].offset + 1
            out[info.partition] = records
    return out


def test_processes_append_concurrently_without_losing_or_duplicating(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 4, flush="never", segment_bytes=4096)
    workers = [start("append", data, "t", f"w{i}", 600, 7) for i in range(3)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers)

    acks = [a for out in outputs for a in _rows_acks(out)]
    assert len(acks) == 1800
    stored = _all_records(data, "t")
    for partition, records in stored.items():
        offsets = [r.offset for r in records]
        assert offsets == list(range(len(records))), partition  # contiguous, no gaps
    by_position = {(p, r.offset): (r.value or b"").decode() for p, rs in stored.items() for r in rs}
    assert len(by_position) == 1800
    for partition, offset, value in acks:  # every acknowledged record is where it was acked
        assert by_position[(partition, offset)] == value
    assert Counter(by_position.values()).most_common(1)[0][1] == 1  # no duplicates
    # per-key order: within a worker, a key's records appear in send order
    for records in stored.values():
        last: dict[str, int] = {}
        for r in records:
            worker, seq = (r.value or b"").decode().split(":")
            key = f"{worker}/{r.key!r}"
            assert int(seq) > last.get(key, -1)
            last[key] = int(seq)


def test_reader_process_sees_appends_of_writer_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 1, flush="never")
    reader = start("tail", data, "t", 0, 500)
    writer = start("append", data, "t", "w", 500, 1)
    writer.communicate(timeout=120)
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    seen = [line.split() for line in out.splitlines() if line.startswith("rec ")]
    assert [int(s[1]) for s in seen] == list(range(500))
    assert [s[2] for s in seen] == [f"w:{i}" for i in range(500)]


def test_writer_killed_mid_append_leaves_no_torn_record_and_blocks_no_one(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 1, flush="never", segment_bytes=8192)
    rng = random.Random(1234)
    acked: list[tuple[int, int, str]] = []
    survivor = start("append", data, "t", "steady", 400, 3)  # keeps the partition open
    for round_ in range(12):
        victim = start("append", data, "t", f"v{round_}", 100_000, rng.choice([1, 5, 50]))
        time.sleep(rng.uniform(0.005, 0.08))
        victim.send_signal(signal.SIGKILL)
        out, _ = victim.communicate(timeout=60)
        acked += _rows_acks(out)
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    acked += _rows_acks(out)

    # a new process appends after all that, and everything acknowledged is intact
    after = start("append", data, "t", "after", 10, 1)
    out, _ = after.communicate(timeout=60)
    acked += _rows_acks(out)
    records = _all_records(data, "t")[0]
    assert [r.offset for r in records] == list(range(len(records)))
    values = {r.offset: (r.value or b"").decode() for r in records}
    for _, offset, value in acked:
        assert values[offset] == value
    assert len(set(values.values())) == len(values)
    assert os.path.exists(data / "t-0" / "head")


def test_bytes_a_dead_writer_left_are_invisible_and_cut_by_the_next_writer(
    tmp_path: Path, caplog: object
) -> None:
    """Two logs on one directory behave like two processes (separate descriptors and
    locks). A third writer "died" after writing half a batch: readers never see it, and
    the next append cuts it off."""
    from logstore.config import TopicConfig
    from logstore.records import encode_batch

    directory = str(tmp_path / "p")
    config = TopicConfig(flush="never")
    a = logstore.PartitionLog(directory, config)
    b = logstore.PartitionLog(directory, config)
    a.append_records([(1, b"k", b"v%d" % i, ()) for i in range(3)])
    torn = encode_batch([(2, b"k", b"torn", ())], base_offset=3)[:40]
    with open(os.path.join(directory, "00000000000000000000.log"), "ab") as f:
        f.write(torn)

    assert [r.value for r in b.read_records(0)] == [b"v0", b"v1", b"v2"]
    assert b.log_end_offset == 3
    result = b.append_records([(3, b"k", b"after", ())])
    assert result.base_offset == 3
    assert [r.value for r in a.read_records(0)] == [b"v0", b"v1", b"v2", b"after"]
    a.close()
    b.close()
    again = logstore.PartitionLog(directory, config)
    assert again.was_clean
    assert [r.value for r in again.read_records(0)] == [b"v0", b"v1", b"v2", b"after"]
    again.close()


def test_producer_process_killed_mid_batch_leaves_store_usable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", 2, flush="interval")
    other = start("produce", data, "t", "other", 3000)
    for i in range(5):
        victim = start("produce", data, "t", f"victim{i}", 200_000)
        time.sleep(0.05 + 0.02 * i)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err  # the other producer went on
    acks = _rows_acks(out)
    assert len(acks) == 3000
    stored = _all_records(data, "t")  # the store opens; every partition reads cleanly
    values = {(p, r.offset): (r.value or b"").decode() for p, rs in stored.items() for r in rs}
    for partition, records in stored.items():
        assert [r.offset for r in records] == list(range(len(records))), partition
    for partition, offset, value in acks:
        assert values[(partition, offset)] == value
