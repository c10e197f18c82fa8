"""Kafka's consumer protocol: the bytes consumers exchange through a group coordinator.

A group coordinator treats a member's protocol metadata and its assignment as opaque
bytes; consumers fill them with these two structures (Kafka's
``clients/src/main/resources/common/message/ConsumerProtocolSubscription.json`` and
``ConsumerProtocolAssignment.json``), so embedded consumers and Kafka clients served by
the wire server can share one group. Both start with an int16 version and are not
"flexible" (no tagged fields, no compact encodings)::

    ConsumerProtocolSubscription
      version          int16
      topics           [string]              array: int32 count, string: int16 length
      user_data        nullable bytes        int32 length, -1 for null
      owned_partitions [topic string,        v1+ (KIP-429: cooperative rebalancing)
                        partitions [int32]]
      generation_id    int32                 v2+ (default -1)
      rack_id          nullable string       v3+ (int16 length, -1 for null)

    ConsumerProtocolAssignment
      version              int16             v0..v3 share one layout
      assigned_partitions  [topic string, partitions [int32]]
      user_data            nullable bytes

Encoding writes Subscription v1 (what a cooperative consumer sends) and Assignment v0.
Decoding reads versions 0-3, and a newer version as version 3 (Kafka's rule: later
versions only append fields), ignoring bytes after the fields it knows.

No I/O happens here.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from logstore.errors import InvalidRecordError
from logstore.types import TopicPartition

SUBSCRIPTION_VERSION = 1
ASSIGNMENT_VERSION = 0
HIGHEST_VERSION = 3
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


class Subscription(NamedTuple):
    """What a consumer asks for when it joins (its protocol metadata)."""

    topics: Sequence[str]
    user_data: bytes | None = None
    owned_partitions: Sequence[TopicPartition] = ()
    """What it owns now (v1+): the leader moves only partitions nobody else owns."""
    generation_id: int = -1
    rack_id: str | None = None


class Assignment(NamedTuple):
    """What the leader gives a consumer (its assignment bytes)."""

    partitions: Sequence[TopicPartition]
    user_data: bytes | None = None


# ---------------------------------------------------------------------- encoding


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _INT16.pack(len(data)) + data


def _nullable_bytes(data: bytes | None) -> bytes:
    return _INT32.pack(-1) if data is None else _INT32.pack(len(data)) + data


def _partitions(tps: Iterable[TopicPartition]) -> bytes:
    by_topic: dict[str, list[int]] = defaultdict(list)
    for tp in tps:
        by_topic[tp.topic].append(tp.partition)
    out = [_INT32.pack(len(by_topic))]
    for topic in sorted(by_topic):
        parts = sorted(by_topic[topic])
        out += [_string(topic), _INT32.pack(len(parts)), *(_INT32.pack(p) for p in parts)]
    return b"".join(out)


def encode_subscription(subscription: Subscription, version: int = SUBSCRIPTION_VERSION) -> bytes:
    """``subscription`` as ConsumerProtocolSubscription bytes of ``version`` (0-3)."""
    if not 0 <= version <= HIGHEST_VERSION:
        raise InvalidRecordError(f"ConsumerProtocolSubscription has no version {version}")
    out = [_INT16.pack(version), _INT32.pack(len(subscription.topics))]
    out += [_string(t) for t in subscription.topics]
    out.append(_nullable_bytes(subscription.user_data))
    if version >= 1:
        out.append(_partitions(subscription.owned_partitions))
    if version >= 2:
        out.append(_INT32.pack(subscription.generation_id))
    if version >= 3:
        rack = subscription.rack_id
        out.append(_INT16.pack(-1) if rack is None else _string(rack))
    return b"".join(out)


def encode_assignment(assignment: Assignment, version: int = ASSIGNMENT_VERSION) -> bytes:
    """``assignment`` as ConsumerProtocolAssignment bytes (topics sorted, partitions in
    order)."""
    if not 0 <= version <= HIGHEST_VERSION:
        raise InvalidRecordError(f"ConsumerProtocolAssignment has no version {version}")
    return (
        _INT16.pack(version)
        + _partitions(assignment.partitions)
        + _nullable_bytes(assignment.user_data)
    )


# ---------------------------------------------------------------------- decoding


class _Reader:
    """Reads Kafka's primitive types from a buffer; short input is InvalidRecordError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.at = 0
        self.what = what

    def _take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise InvalidRecordError(
                f"{self.what} is truncated or malformed: {len(self.data)} bytes, needed "
                f"{n} more at position {self.at}"
            )
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def int16(self) -> int:
        return int(_INT16.unpack(self._take(2))[0])

    def int32(self) -> int:
        return int(_INT32.unpack(self._take(4))[0])

    def string(self) -> str:
        raw = self._take(self.int16())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidRecordError(f"{self.what} holds a string that is not UTF-8") from err

    def nullable_string(self) -> str | None:
        n = self.int16()
        if n == -1:
            return None
        self.at -= 2
        return self.string()

    def nullable_bytes(self) -> bytes | None:
        n = self.int32()
        return None if n == -1 else self._take(n)

    def count(self) -> int:
        n = self.int32()
        if n < -1 or n > len(self.data):
            raise InvalidRecordError(f"{self.what} has an array of {n} elements: malformed")
        return max(n, 0)

    def partitions(self) -> list[TopicPartition]:
        out = []
        for _ in range(self.count()):
            topic = self.string()
            out += [TopicPartition(topic, self.int32()) for _ in range(self.count())]
        return out


def decode_subscription(data: bytes) -> Subscription:
    """ConsumerProtocolSubscription bytes of any version.

    Raises:
        InvalidRecordError: the bytes are not one (truncated, a negative version).
    """
    reader = _Reader(bytes(data), "ConsumerProtocolSubscription")
    version = reader.int16()
    if version < 0:
        raise InvalidRecordError(f"ConsumerProtocolSubscription has version {version}")
    topics = [reader.string() for _ in range(reader.count())]
    user_data = reader.nullable_bytes()
    owned = reader.partitions() if version >= 1 else []
    generation = reader.int32() if version >= 2 else -1
    rack = reader.nullable_string() if version >= 3 else None
    return Subscription(topics, user_data, owned, generation, rack)


def decode_assignment(data: bytes) -> Assignment:
    """ConsumerProtocolAssignment bytes of any version (empty bytes: no partitions, as
    a coordinator answers a member the leader gave nothing).

    Raises:
        InvalidRecordError: the bytes are not one.
    """
    if not data:
        return Assignment([])
    reader = _Reader(bytes(data), "ConsumerProtocolAssignment")
    version = reader.int16()
    if version < 0:
        raise InvalidRecordError(f"ConsumerProtocolAssignment has version {version}")
    partitions = reader.partitions()
    return Assignment(partitions, reader.nullable_bytes())
