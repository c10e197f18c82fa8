"""Produce keyed records with each client library (its default settings, then idempotent
with each codec) and read them back with the same library, on the real Kafka broker and
on ``logstore serve``: every record exactly once, with its key, value, headers and
timestamp; a key always in one partition, in order; the codec and the producer id in the
batches the server stored."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace

import pytest

import logstore
from logstore.records.batch import COMPRESSION_MASK
from logstore.types import Compression
from tests.wire.clients import Can, WireClient
from tests.wire.helpers import PYTESTMARK, create_topic, needs, stored_batches, unique
from tests.wire.model import Got, Headers, Rec
from tests.wire.targets import LogstoreTarget, Target

pytestmark = PYTESTMARK

PARTITIONS = 3
RECORDS = 30
KEYS = 6
VARIANTS = ["defaults", "gzip", "snappy", "lz4", "zstd"]
"""defaults: the library's own settings (codec none); a codec: idempotent, acks=all."""


def _records(client: WireClient, now_ms: int) -> list[Rec]:
    """Keyed, compressible (so no client falls back to an uncompressed batch) records;
    where the client can: per-record headers (an ``id``, an empty value, a null value)
    and timestamps, a record without a key and one without a value (a tombstone)."""
    if not client.can(Can.PRODUCE_DETAILS):  # kcat: text lines, the same headers
        return [Rec(f"key-{i % KEYS}".encode(),
                    f"{client.name}-{i:03d} ".encode() + b"payload, payload, payload " * 4,
                    (("source", b"kcat"), ("empty", b"x"))) for i in range(RECORDS)]
    out = []
    for i in range(RECORDS):
        value = f"{client.name}-{i:03d} ".encode() + b"payload, payload, payload " * 4
        headers: Headers = (("id", str(i).encode()), ("empty", b""))
        if i % 3 == 0 and client.null_header_values:
            headers += (("null", None),)
        out.append(Rec(None if i == 0 else f"key-{i % KEYS}".encode(),
                       None if i == 1 else value, headers, now_ms - 60_000 + i * 7))
    return out


def _ident(r: Rec | Got) -> bytes | None:
    """Which record this is: its ``id`` header, else (kcat) its value."""
    return dict(r.headers).get("id", r.value)


@pytest.mark.parametrize("variant", VARIANTS)
@needs(Can.PRODUCE, Can.CONSUME)
def test_produced_records_come_back_exactly_once(
    target: Target, client: WireClient, variant: str
) -> None:
    topic = unique("records")
    create_topic(target, topic, PARTITIONS)
    codec = None if variant == "defaults" else variant
    idempotent = None if variant == "defaults" else True
    before = int(time.time() * 1000)
    sent = _records(client, before)
    delivered = client.produce(target.bootstrap, topic, sent, compression=codec,
                               idempotent=idempotent)
    after = int(time.time() * 1000)
    got = client.consume(target.bootstrap, topic, PARTITIONS, RECORDS)

    # every record exactly once, as sent
    assert len({(g.partition, g.offset) for g in got}) == len(got), "a record came twice"
    assert sorted((g.content for g in got), key=repr) == sorted(
        ((r.key, r.value, r.headers) for r in sent), key=repr)
    by_id = {_ident(g): g for g in got}
    for r in sent:
        if r.timestamp is not None:
            assert by_id[_ident(r)].timestamp == r.timestamp
        else:
            assert before - 1000 <= by_id[_ident(r)].timestamp <= after + 1000
    if delivered is not None:  # the acknowledged offsets are where the records are
        assert [(by_id[_ident(r)].partition, by_id[_ident(r)].offset) for r in sent] == (
            delivered)
    _assert_keys_in_one_partition_in_order(got, sent)
    if isinstance(target, LogstoreTarget):  # the embedded API reads the same records
        with logstore.open(target.data_dir) as store:
            embedded = [
                Got(p, r.offset, r.key, r.value, tuple(r.headers), r.timestamp)
                for p in range(PARTITIONS) for r in store.read(topic, p, 0)
            ]
        assert sorted(embedded) == sorted(replace(g, leader_epoch=-1) for g in got)

    # what the server stored: the producer's codec, and producer ids when idempotent
    expect_idempotent = client.default_idempotent if idempotent is None else idempotent
    codec_id = Compression.parse(codec or "none")
    for partition in range(PARTITIONS):
        batches = stored_batches(target, topic, partition)
        records = [g for g in got if g.partition == partition]
        assert sum(h.last_offset_delta + 1 for h, _ in batches) == len(records)
        sequence = 0
        for header, _ in batches:
            assert header.attributes & COMPRESSION_MASK == codec_id, header
            if expect_idempotent:
                assert header.producer_id >= 0 and header.base_sequence == sequence, header
                sequence += header.last_offset_delta + 1
            else:  # (aiokafka writes base sequence 0 even so: only the id tells)
                assert header.producer_id == -1, header


def _assert_keys_in_one_partition_in_order(got: list[Got], sent: list[Rec]) -> None:
    order = {_ident(r): i for i, r in enumerate(sent)}
    partitions: dict[bytes | None, set[int]] = defaultdict(set)
    for g in got:
        if g.key is not None:  # a record without a key goes anywhere
            partitions[g.key].add(g.partition)
    assert all(len(p) == 1 for p in partitions.values()), dict(partitions)
    for partition in {g.partition for g in got}:
        in_partition = sorted(g for g in got if g.partition == partition)
        assert [g.offset for g in in_partition] == list(range(len(in_partition)))
        for key in {g.key for g in in_partition} - {None}:
            sequence = [order[_ident(g)] for g in in_partition if g.key == key]
            assert sequence == sorted(sequence), f"key {key!r} out of order"
