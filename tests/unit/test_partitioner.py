"""Key -> partition placement (logstore.partitioner; kafka.md §7.1).

murmur2 is checked against Kafka's own test vectors (``UtilsTest.testMurmur2`` in the Java
client, and the 1000-partition placements kafka-python took from the Java partitioner) and
against kafka-python's ``kafka.partitioner.default.murmur2`` and ``DefaultPartitioner``.
"""

from __future__ import annotations

import collections
import warnings

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.partitioner import KeyHashPartitioner, murmur2

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.partitioner.default import DefaultPartitioner
    from kafka.partitioner.default import murmur2 as kafka_python_murmur2

SETTINGS = settings(deadline=None, max_examples=300)
KEYS = st.binary(max_size=64) | st.text(max_size=40).map(str.encode)


class _Cluster:
    """The three ClusterMetadata methods kafka-python's DefaultPartitioner calls."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def _kafka_python_partition(key: bytes, partitions: int) -> int:
    return int(DefaultPartitioner().partition("t", key, key, None, None, _Cluster(partitions)))


# Kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java testMurmur2
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka_java_test_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


# kafka-python test_partitioner.py: placements "compared with output from Kafka's
# org.apache.kafka.clients.producer.Partitioner" over 1000 partitions
@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_murmur2_partitioner_matches_java_placement_over_1000_partitions(
    key: bytes, partition: int
) -> None:
    assert KeyHashPartitioner("murmur2").partition(key, 1000) == partition


def test_murmur2_returns_signed_32_bit_int() -> None:
    values = [murmur2(bytes([i]) * (i % 9)) for i in range(256)]
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values)


@SETTINGS
@given(key=KEYS)
def test_murmur2_matches_kafka_python(key: bytes) -> None:
    assert murmur2(key) & 0xFFFFFFFF == kafka_python_murmur2(key)


@SETTINGS
@given(key=KEYS, partitions=st.integers(1, 1000))
def test_murmur2_partitioner_places_keys_like_kafka_python_default_partitioner(
    key: bytes, partitions: int
) -> None:
    expected = _kafka_python_partition(key, partitions)
    assert KeyHashPartitioner("murmur2").partition(key, partitions) == expected


@SETTINGS
@given(key=KEYS, partitions=st.integers(1, 1000))
def test_murmur3_partitioner_uses_unsigned_mmh3_modulo_partitions(
    key: bytes, partitions: int
) -> None:
    expected = mmh3.hash(key, signed=False) % partitions
    assert KeyHashPartitioner("murmur3").partition(key, partitions) == expected
    assert KeyHashPartitioner().partition(key, partitions) == expected  # the default


def test_murmur3_partitioner_uses_unsigned_hash_when_signed_hash_negative() -> None:
    key = next(k for k in (b"k%d" % i for i in range(1000)) if mmh3.hash(k) < 0)
    unsigned = mmh3.hash(key, signed=False)
    assert unsigned == mmh3.hash(key) + 2**32
    assert KeyHashPartitioner("murmur3").partition(key, 7) == unsigned % 7


@SETTINGS
@given(key=KEYS, partitions=st.integers(1, 64), algorithm=st.sampled_from(["murmur2", "murmur3"]))
def test_key_hash_partitioner_places_same_key_on_same_partition(
    key: bytes, partitions: int, algorithm: str
) -> None:
    first = KeyHashPartitioner(algorithm)
    placed = first.partition(key, partitions)
    assert 0 <= placed < partitions
    first.partition(None, partitions)  # null keys in between change nothing
    assert first.partition(key, partitions) == placed
    assert KeyHashPartitioner(algorithm).partition(key, partitions) == placed  # new instance


@pytest.mark.parametrize("algorithm", ["murmur2", "murmur3"])
@pytest.mark.parametrize("partitions", [1, 2, 3, 7, 16])
def test_key_hash_partitioner_spreads_null_keys_round_robin(
    algorithm: str, partitions: int
) -> None:
    partitioner = KeyHashPartitioner(algorithm)
    placed = [partitioner.partition(None, partitions) for _ in range(5 * partitions)]
    for window in range(5):
        chunk = placed[window * partitions : (window + 1) * partitions]
        assert sorted(chunk) == list(range(partitions))  # each partition once per round
    assert placed[partitions:] == placed[:-partitions]  # the same order every round
    assert collections.Counter(placed) == dict.fromkeys(range(partitions), 5)


def test_key_hash_partitioner_treats_empty_key_as_a_key_not_null() -> None:
    partitioner = KeyHashPartitioner("murmur2")
    assert {partitioner.partition(b"", 1000) for _ in range(5)} == {681}


def test_key_hash_partitioner_raises_value_error_when_algorithm_unknown() -> None:
    with pytest.raises(ValueError, match="crc32"):
        KeyHashPartitioner("crc32")
