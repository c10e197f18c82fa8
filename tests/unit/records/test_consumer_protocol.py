"""Kafka's consumer protocol bytes (logstore.records.consumer_protocol): golden bytes of
every version (as Kafka's schemas define them; cross-checked with kafka-python's
encoder), round trips, forward compatibility and malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstore.errors import InvalidRecordError
from logstore.records.consumer_protocol import (
    Assignment,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from logstore.types import TopicPartition

TP = TopicPartition
FULL = Subscription(["a", "bb"], b"u", [TP("a", 2)], 5, "r1")
GOLDEN_SUBSCRIPTION = {
    0: "000000000002000161000262620000000175",
    1: "000100000002000161000262620000000175000000010001610000000100000002",
    2: "00020000000200016100026262000000017500000001000161000000010000000200000005",
    3: "0003000000020001610002626200000001750000000100016100000001000000020000000500027231",
}


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_subscription_golden_bytes_of_every_version(version: int) -> None:
    data = bytes.fromhex(GOLDEN_SUBSCRIPTION[version])
    assert encode_subscription(FULL, version) == data
    decoded = decode_subscription(data)
    assert list(decoded.topics) == ["a", "bb"] and decoded.user_data == b"u"
    assert list(decoded.owned_partitions) == ([TP("a", 2)] if version >= 1 else [])
    assert decoded.generation_id == (5 if version >= 2 else -1)
    assert decoded.rack_id == ("r1" if version >= 3 else None)


def test_subscription_v1_is_the_default_with_null_user_data() -> None:
    data = encode_subscription(Subscription(["t"], None, [TP("t", 1), TP("t", 0)]))
    assert data.hex() == "000100000001000174ffffffff00000001000174000000020000000000000001"


def test_assignment_golden_bytes() -> None:
    data = encode_assignment(Assignment([TP("t", 3), TP("t", 0)]))
    assert data.hex() == "000000000001000174000000020000000000000003ffffffff"
    v3 = bytes.fromhex("0003000000010001740000000200000000000000030000000178")
    assert encode_assignment(Assignment([TP("t", 0), TP("t", 3)], b"x"), 3) == v3
    assert decode_assignment(v3) == Assignment([TP("t", 0), TP("t", 3)], b"x")
    assert decode_assignment(b"") == Assignment([])


def test_consumer_protocol_matches_kafka_python() -> None:
    meta = pytest.importorskip("kafka.protocol.consumer.metadata")
    sub = meta.ConsumerProtocolSubscription
    theirs = sub(version=1, topics=["x", "y"], user_data=b"",
                 owned_partitions=[sub.TopicPartition(topic="y", partitions=[4, 7])]).encode()
    assert decode_subscription(theirs) == Subscription(["x", "y"], b"", [TP("y", 4), TP("y", 7)])
    asg = meta.ConsumerProtocolAssignment.decode(
        encode_assignment(Assignment([TP("x", 1), TP("y", 0)])))
    assert asg.partitions() == [("x", 1), ("y", 0)]


def test_decode_reads_a_newer_version_as_the_newest_known() -> None:
    data = bytearray(bytes.fromhex(GOLDEN_SUBSCRIPTION[3]) + b"\x00\x00extra")
    data[1] = 9
    assert decode_subscription(bytes(data)).rack_id == "r1"


@pytest.mark.parametrize("cut", [1, 3, 7, 12, 20, 30])
def test_decode_truncated_bytes_is_an_invalid_record_error(cut: int) -> None:
    with pytest.raises(InvalidRecordError, match="truncated"):
        decode_subscription(bytes.fromhex(GOLDEN_SUBSCRIPTION[3])[:cut])


def test_decode_garbage_is_an_invalid_record_error() -> None:
    with pytest.raises(InvalidRecordError):
        decode_subscription(b"\xff\xff")
    with pytest.raises(InvalidRecordError):
        decode_assignment(b"\x00\x00\x7f\xff\xff\xff")
    with pytest.raises(InvalidRecordError):
        encode_subscription(FULL, 4)


names = st.text(alphabet="abc.-_", min_size=1, max_size=5)
tps = st.lists(st.builds(TP, names, st.integers(0, 50)), unique=True, max_size=6)


@given(st.lists(names, max_size=4), st.none() | st.binary(max_size=8), tps)
def test_subscription_round_trips(topics: list[str], user_data: bytes | None,
                                  owned: list[TopicPartition]) -> None:
    decoded = decode_subscription(encode_subscription(Subscription(topics, user_data, owned)))
    assert list(decoded.topics) == topics and decoded.user_data == user_data
    assert sorted(decoded.owned_partitions) == sorted(owned)


@given(tps, st.none() | st.binary(max_size=8))
def test_assignment_round_trips(partitions: list[TopicPartition], user_data: bytes | None) -> None:
    decoded = decode_assignment(encode_assignment(Assignment(partitions, user_data)))
    assert sorted(decoded.partitions) == sorted(partitions) and decoded.user_data == user_data
