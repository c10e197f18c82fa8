"""Which partition a record goes to. Pure: no I/O, no clock.

* Keyed records: ``murmur3`` (mmh3's 32-bit MurmurHash3, unsigned, modulo the partition
  count) by default, or ``murmur2``: Kafka's Java client's ``Utils.murmur2`` with
  ``toPositive(hash) % partitions``, so keys land where a Kafka cluster's default
  partitioner would put them.
* Null keys are spread evenly, round-robin.
* An explicit partition always wins (the caller checks its range).
"""

from __future__ import annotations

import itertools
from typing import Protocol

import mmh3

from logstore.config import PARTITIONERS
from logstore.errors import InvalidConfigError

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (seed 0x9747b28c) as a signed 32-bit int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


class Partitioner(Protocol):
    """Picks a partition in ``[0, num_partitions)`` for a key."""

    def partition(self, key: bytes | None, num_partitions: int) -> int: ...


class KeyHashPartitioner:
    """Hash of the key for keyed records; round-robin for null keys."""

    def __init__(self, algorithm: str = "murmur3") -> None:
        if algorithm not in PARTITIONERS:
            raise InvalidConfigError(
                f"unknown partitioner {algorithm!r} (use one of: {', '.join(PARTITIONERS)})"
            )
        self.algorithm = algorithm
        self._counter = itertools.count()

    def partition(self, key: bytes | None, num_partitions: int) -> int:
        if key is None:
            return next(self._counter) % num_partitions
        if self.algorithm == "murmur2":
            return (murmur2(key) & 0x7FFFFFFF) % num_partitions
        return int(mmh3.hash(key, signed=False)) % num_partitions
