"""Kafka's ``__consumer_offsets`` record schema: offset-commit keys and values.

Pure functions, bytes in and out, no I/O (the records layer). The layout is Kafka's own
(``OffsetCommitKey`` and ``OffsetCommitValue`` in ``group-coordinator``'s message
definitions, https://github.com/apache/kafka/tree/trunk/group-coordinator/src/main/resources/common/message),
so the internal log reads like Kafka's:

* key, version 1: ``int16 version, string group, string topic, int32 partition``
  (version 0 has the same layout and is read too; version 2 is a group-metadata key,
  which :func:`decode_key` refuses)
* value, version 3: ``int16 version, int64 offset, int32 leader_epoch (-1),
  string metadata, int64 commit_timestamp``; a null value (tombstone) deletes the offset.

``string`` is an int16 length and UTF-8 bytes. A commit record also carries a
:data:`TOPIC_ID_HEADER` header: the id of the topic incarnation the offset was committed
against (Kafka's readers ignore record headers in this topic).

Decoding raises :class:`ValueError` (or :class:`struct.error`,
:class:`UnicodeDecodeError`) on bytes that are not such a key or value: the offsets log
may hold records of other kinds, which its reader skips.
"""

from __future__ import annotations

import struct

from logstore.errors import InvalidRecordError
from logstore.types import CommittedOffset

TOPIC_ID_HEADER = "topic_id"
KEY_VERSION = 1
VALUE_VERSION = 3
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_VALUE_HEAD = struct.Struct(">hqi")  # version, offset, leader epoch
_I64 = struct.Struct(">q")
_MAX_STRING_BYTES = 32767  # an int16 length

OffsetKey = tuple[str, str, int]
"""``(group, topic, partition)``: what an offset-commit key names."""


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > _MAX_STRING_BYTES:
        raise InvalidRecordError(f"string of {len(raw)} bytes is too long for an int16 length")
    return _I16.pack(len(raw)) + raw


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    (length,) = _I16.unpack_from(data, pos)
    pos += 2
    if length < 0 or pos + length > len(data):
        raise ValueError(f"string length {length} overruns the record")
    return data[pos : pos + length].decode("utf-8"), pos + length


def encode_key(group: str, topic: str, partition: int) -> bytes:
    """The key of an offset commit of ``group`` for ``topic``-``partition``."""
    return _I16.pack(KEY_VERSION) + _string(group) + _string(topic) + _I32.pack(partition)


def decode_key(data: bytes) -> OffsetKey:
    """``(group, topic, partition)`` of an offset-commit key.

    Raises:
        ValueError, struct.error, UnicodeDecodeError: ``data`` is not one.
    """
    (version,) = _I16.unpack_from(data, 0)
    if version not in (0, 1):
        raise ValueError(f"offset key version {version} is not an offset commit key")
    group, pos = _read_string(data, 2)
    topic, pos = _read_string(data, pos)
    (partition,) = _I32.unpack_from(data, pos)
    if pos + 4 != len(data):
        raise ValueError("trailing bytes after an offset key")
    return group, topic, partition


def encode_value(offset: int, metadata: str, commit_timestamp: int) -> bytes:
    """The value of an offset commit (leader epoch -1: none)."""
    return (
        _VALUE_HEAD.pack(VALUE_VERSION, offset, -1)
        + _string(metadata)
        + _I64.pack(commit_timestamp)
    )


def decode_value(data: bytes) -> CommittedOffset:
    """The committed offset an offset-commit value holds (``topic_id`` None: it is in
    the record's :data:`TOPIC_ID_HEADER` header).

    Raises:
        ValueError, struct.error, UnicodeDecodeError: ``data`` is not one.
    """
    version, offset, _ = _VALUE_HEAD.unpack_from(data, 0)
    if version != VALUE_VERSION:
        raise ValueError(f"offset value version {version} is not supported")
    metadata, pos = _read_string(data, _VALUE_HEAD.size)
    (timestamp,) = _I64.unpack_from(data, pos)
    return CommittedOffset(offset, metadata, timestamp)
