"""Byte compatibility both ways between Kafka clients, the real broker and logstore.

(a) A Kafka client's batches are stored as the client built them, by the real broker and
    by ``logstore serve`` alike (only the base offset and the partition leader epoch are
    the server's to set), and read back byte-identical through the embedded API (the
    served store opened in this process while the server runs; the broker's partition
    directory copied and opened as a :class:`logstore.PartitionLog`).
(b) Records the embedded API wrote are read through ``logstore serve`` by every Kafka
    client library exactly as the embedded API reads them.
(c) Segment files the real broker wrote (several segments, with its offset and time
    indexes) are readable by the embedded store: the same records, found by offset and
    by timestamp.
(d) A partition directory logstore wrote, swapped into the broker's log dir for a topic
    of the same name (the broker stopped; its own ``partition.metadata`` kept), is served
    by the broker: the same records at the same offsets.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore.records.batch import COMPRESSION_MASK
from logstore.types import Compression, TopicPartition
from tests.wire.clients import Can, WireClient, by_name
from tests.wire.differences import expect
from tests.wire.helpers import PYTESTMARK, create_topic, needs, stored_batches, unique
from tests.wire.model import Rec
from tests.wire.targets import KafkaTarget, LogstoreTarget, Target

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatchBuilder

pytestmark = PYTESTMARK

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 3
SEGMENT_FILES = ("*.log", "*.index", "*.timeindex")


def _records(n: int, now_ms: int, tag: str = "") -> list[Rec]:
    return [
        Rec(f"key-{i % 4}".encode(), f"{tag}value-{i:04d} ".encode() + b"lorem ipsum " * 6,
            (("trace", f"t-{i}".encode()), ("flag", b"")), now_ms - 30_000 + i)
        for i in range(n)
    ]


def _content(r: Any) -> tuple[Any, ...]:
    """(offset, timestamp, key, value, headers) of a Record, a Got or a sent Rec."""
    return (r.offset, r.timestamp, r.key, r.value, tuple((k, bytes(v)) for k, v in r.headers))


def _sent_by_partition(sent: list[Rec], delivered: list[tuple[int, int]]
                       ) -> dict[int, list[tuple[Any, ...]]]:
    out: dict[int, list[tuple[Any, ...]]] = {}
    for r, (p, o) in sorted(zip(sent, delivered, strict=True), key=lambda x: x[1]):
        out.setdefault(p, []).append((o, r.timestamp, r.key, r.value, r.headers))
    return out


@pytest.fixture
def built_batches(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every record batch kafka-python builds in this process, as it built it."""
    built: list[bytes] = []
    original = DefaultRecordBatchBuilder.build

    def build(self: Any) -> Any:
        buffer = original(self)
        built.append(bytes(buffer))
        return buffer

    monkeypatch.setattr(DefaultRecordBatchBuilder, "build", build)
    return built


def _without_server_fields(batch: bytes) -> bytes:
    """A batch without baseOffset (bytes 0-7) and partitionLeaderEpoch (12-15), which
    the server sets (neither is covered by the CRC)."""
    return batch[8:12] + batch[16:]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_client_batches_are_stored_as_sent(
    target: Target, codec: str, built_batches: list[bytes], tmp_path: Path
) -> None:
    topic = unique(f"bytes-{codec}")
    create_topic(target, topic, PARTITIONS)
    sent = _records(40, int(time.time() * 1000))
    delivered = by_name("kafka-python").produce(target.bootstrap, topic, sent,
                                                compression=None if codec == "none" else codec)
    assert delivered is not None

    stored = [b for p in range(PARTITIONS) for _, b in stored_batches(target, topic, p)]
    assert sorted(_without_server_fields(b) for b in stored) == sorted(
        _without_server_fields(b) for b in built_batches)
    for p in range(PARTITIONS):
        for header, _ in stored_batches(target, topic, p):
            assert header.attributes & COMPRESSION_MASK == Compression.parse(codec)
            expect(target.name, "stored batch partitionLeaderEpoch",
                   header.partition_leader_epoch, 0)

    # and the embedded API reads the stored records as they were sent
    expected = _sent_by_partition(sent, delivered)
    for p, records in expected.items():
        assert [_content(r) for r in _embedded_read(target, topic, p, tmp_path)] == records


def _embedded_read(target: Target, topic: str, partition: int, tmp_path: Path) -> list[Any]:
    if isinstance(target, LogstoreTarget):
        # the store the server is serving, opened by this process too
        with logstore.open(target.data_dir) as store:
            return _read_all(store.partition(topic, partition))
    copy = tmp_path / f"{topic}-{partition}"
    _copy_segments(target.partition_dir(topic, partition), copy)
    with logstore.PartitionLog(str(copy)) as log:
        return _read_all(log)


def _read_all(log: logstore.PartitionLog) -> list[Any]:
    out: list[Any] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        records = log.read_records(offset)
        assert records, f"nothing read at offset {offset} of {log.log_end_offset}"
        out += records
        offset = records[-1].offset + 1
    return out


def _copy_segments(source: Path, dest: Path, patterns: tuple[str, ...] = SEGMENT_FILES
                   ) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for pattern in patterns:
        for path in source.glob(pattern):
            shutil.copyfile(path, dest / path.name)


# -- (b) the embedded API writes, Kafka clients read through logstore serve -------------


@pytest.fixture(scope="module")
def embedded_topic(logstore_target: LogstoreTarget) -> Iterator[tuple[str, list[Any]]]:
    """A topic the embedded API wrote (one batch per codec and partition, text records
    with headers and timestamps), with the records as the embedded API reads them."""
    topic = unique("embedded")
    now = int(time.time() * 1000)
    with logstore.open(logstore_target.data_dir) as store:
        store.create_topic(topic, partitions=PARTITIONS, partitioner="murmur2")
        for codec in CODECS:
            store.append_many(
                topic,
                [(r.value, r.key, list(r.headers), i % PARTITIONS, r.timestamp)
                 for i, r in enumerate(_records(12, now, tag=f"{codec}-"))],
                compression=codec,
            )
        with store.producer(idempotent=True, compression="zstd") as producer:
            for r in _records(9, now, tag="producer-"):
                producer.send(topic, r.value, key=r.key, headers=list(r.headers),
                              timestamp=r.timestamp)
        records = [(p, r) for p in range(PARTITIONS) for r in store.read(topic, p, 0)]
    yield topic, records


@needs(Can.CONSUME)
def test_kafka_clients_read_what_the_embedded_api_wrote(
    logstore_target: LogstoreTarget, client: WireClient, embedded_topic: tuple[str, list[Any]]
) -> None:
    topic, records = embedded_topic
    got = client.consume(logstore_target.bootstrap, topic, PARTITIONS, len(records))
    assert sorted((g.partition, *_content(g)) for g in got) == sorted(
        (p, *_content(r)) for p, r in records)


# -- (c) the broker's segment files, read by the embedded store --------------------------


def test_broker_segment_files_are_readable_by_the_embedded_store(
    kafka_target: KafkaTarget, tmp_path: Path
) -> None:
    topic = unique("segments")
    create_topic(kafka_target, topic, 1, **{"segment.bytes": str(1 << 20),
                                             "index.interval.bytes": "4096"})
    base = int(time.time() * 1000) - 100_000
    # small compressed batches, then 1.8 MB of incompressible records (two segments at
    # least); timestamps rise with the offsets
    sent: list[Rec] = []
    for codec in ("lz4", "zstd", None, None):
        count = 30 if codec else 450
        batch = [Rec(f"key-{i % 7}".encode(),
                     (b"text " * 40) if codec else os.urandom(2000),
                     (("i", str(len(sent) + i).encode()),), base + len(sent) + i)
                 for i in range(count)]
        by_name("kafka-python").produce(kafka_target.bootstrap, topic, batch, compression=codec)
        sent += batch

    copy = tmp_path / f"{topic}-0"
    _copy_segments(kafka_target.partition_dir(topic, 0), copy)
    assert len(list(copy.glob("*.log"))) >= 2, "the broker rolled no segment"
    with logstore.PartitionLog(str(copy)) as log:
        assert (log.log_start_offset, log.log_end_offset) == (0, len(sent))
        records = _read_all(log)
        assert [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in records] == [
            (i, r.timestamp, r.key, r.value, r.headers) for i, r in enumerate(sent)]
        for offset in (0, 95, 500, len(sent) - 1):  # found through the offset index
            assert log.read_records(offset, 1)[0].offset == offset
        for offset in (0, 45, 400, len(sent) - 1):  # found through the time index
            assert log.offset_for_timestamp(sent[offset].timestamp or 0) == offset


# -- (d) logstore's partition directory, served by the broker ----------------------------


@pytest.mark.parametrize("indexes", [True, False], ids=["with-indexes", "logs-only"])
def test_broker_serves_a_partition_directory_logstore_wrote(
    kafka_target: KafkaTarget, tmp_path: Path, indexes: bool
) -> None:
    """with-indexes: the broker takes logstore's files as they are, its offset and time
    indexes included; logs-only: the broker finds no index and recovers each segment
    (validating every batch, CRC included) and rebuilds the indexes."""
    topic = unique("swapped")
    create_topic(kafka_target, topic, 1, **{"index.interval.bytes": "256"})
    now = int(time.time() * 1000)
    with logstore.open(tmp_path / "store") as store:
        store.create_topic(topic, partitions=1, segment_bytes=4096, index_interval_bytes=256)
        for codec in CODECS:
            store.append_many(
                topic,
                [(r.value, r.key, list(r.headers), 0, r.timestamp)
                 for r in _records(20, now, tag=f"{codec}-")],
                compression=codec,
            )
        written = _read_all(store.partition(topic, 0))
        assert len(written) == 100
        ours = tmp_path / "store" / f"{topic}-0"
        assert len(list(ours.glob("*.log"))) >= 2, "logstore rolled no segment"

    def swap(target: Target) -> None:
        partition = target.partition_dir(topic, 0)
        for pattern in (*SEGMENT_FILES, "*.snapshot"):
            for path in partition.glob(pattern):
                path.unlink()
        _copy_segments(ours, partition, SEGMENT_FILES if indexes else ("*.log",))

    kafka_target.restart(while_stopped=swap)
    if not indexes:  # the broker's indexes of the sealed segments are logstore's, byte for byte
        active = max(ours.glob("*.log")).stem
        for path in ours.glob("*index"):
            if path.stem != active:
                rebuilt = kafka_target.partition_dir(topic, 0) / path.name
                assert rebuilt.read_bytes() == path.read_bytes(), path.name
    got = by_name("kafka-python").consume(kafka_target.bootstrap, topic, 1, len(written))
    assert [_content(g) for g in got] == [_content(r) for r in written]
    assert {TopicPartition(topic, g.partition) for g in got} == {TopicPartition(topic, 0)}
