"""The partition head: the live state processes sharing a partition agree on.

Several processes may append to and read one partition at once (no server). They take
``.writer.lock`` (``flock``, exclusive) around every change, and after each change the
writer rewrites ``head``: one small record, in place, with no fsync::

    magic "LSH1" | generation q | active_base_offset q | log_end_offset q | active_size q
    | max_timestamp q | offset_of_max_timestamp q | first_batch_timestamp q
    | created_ms q | log_start_offset q | recovery_point q
    | bytes_since_index_entry i | index_entries i | time_index_entries i | crc32c I

``active_size`` is the byte length of the active segment's whole, committed batches:
readers never read past it, so a batch being written, or left half-written by a writer
killed mid-append, is never visible; the next writer cuts such bytes off (and the index
entries past ``index_entries``). ``generation`` grows whenever the set of segments
changes (roll, retention, ``delete_records``), telling other processes to list the
directory again.

The head describes a running system. After a crash the first process to open the
partition recovers it from the segments and the checkpoint as usual, then writes a fresh
head; of the old head it uses only ``recovery_point`` (when the checkpoint is readable):
the writer rewrites the head after each append's fsync, so its recovery point is the
synced end of the active segment (with flush "always", the last acknowledged append),
which recovery must not cut below (``synced_recovery_point`` in ``log.py``). The head is
never fsynced: a crash may leave an older head (a lower recovery point, so less is
protected, never more) or a torn one (its CRC fails and it is ignored).

No I/O here: packing and unpacking only.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import crc32c

HEAD_NAME = "head"
WRITER_LOCK_NAME = ".writer.lock"
OPEN_LOCK_NAME = ".open.lock"
_MAGIC = b"LSH1"
_BODY = struct.Struct(">4sqqqqqqqqqqiii")
_CRC = struct.Struct(">I")
HEAD_SIZE = _BODY.size + _CRC.size


class Head(NamedTuple):
    generation: int
    active_base_offset: int
    log_end_offset: int
    active_size: int
    max_timestamp: int
    offset_of_max_timestamp: int
    first_batch_timestamp: int  # -1: none
    created_ms: int
    log_start_offset: int
    recovery_point: int
    bytes_since_index_entry: int
    index_entries: int
    time_index_entries: int


def pack_head(head: Head) -> bytes:
    body = _BODY.pack(_MAGIC, *head)
    return body + _CRC.pack(crc32c.crc32c(body))


def unpack_head(data: bytes) -> Head | None:
    """The head in ``data``, or None if it is missing, short or fails its CRC (a reader
    racing a writer's in-place rewrite sees that; it simply reads again)."""
    if len(data) < HEAD_SIZE:
        return None
    body = data[: _BODY.size]
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    if crc != crc32c.crc32c(body):
        return None
    fields = _BODY.unpack(body)
    if fields[0] != _MAGIC:
        return None
    return Head(*fields[1:])
