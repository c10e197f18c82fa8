"""Transaction markers: Kafka's control records (kafka.md §1.4).

A control batch (attribute bit 5, and bit 4: markers belong to transactions) holds one
control record whose **key** is ``version int16 (0), type int16`` (0 ABORT, 1 COMMIT) and
whose **value** is the end-transaction marker ``version int16 (0), coordinator_epoch
int32`` ([K] ``ControlRecordType.java``, ``EndTransactionMarker.java``). The batch carries
the producer id and epoch of the transaction it ends, and no sequence (-1).
"""

from __future__ import annotations

import struct
from enum import IntEnum

from logstore.errors import CorruptRecordError
from logstore.records.batch import encode_batch
from logstore.records.decode import decode_batch_records
from logstore.types import BatchHeader

_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")


class ControlType(IntEnum):
    """The type of a control record (Kafka's ``ControlRecordType``; 2-6 are KRaft's)."""

    ABORT = 0
    COMMIT = 1


def encode_marker(
    producer_id: int,
    producer_epoch: int,
    *,
    commit: bool,
    coordinator_epoch: int = 0,
    timestamp: int,
) -> bytes:
    """A control batch ending ``producer_id``'s transaction (COMMIT or ABORT)."""
    kind = ControlType.COMMIT if commit else ControlType.ABORT
    record = (timestamp, _KEY.pack(0, kind), _VALUE.pack(0, coordinator_epoch), ())
    return encode_batch(
        [record],
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
    )


def control_type(buf: bytes | bytearray | memoryview, header: BatchHeader) -> int:
    """The type of the control record in control batch ``header`` of ``buf`` (a
    :class:`ControlType` value, or a KRaft type 2-6 that logstore never writes).

    Raises:
        CorruptRecordError: the batch holds no control record with a well-formed key.
    """
    records = decode_batch_records(buf, header, verify=False, limit=1)
    key = records[0].key if records else None
    if key is None or len(key) < _KEY.size:
        raise CorruptRecordError(
            f"control batch at offset {header.base_offset} has no control record key "
            f"({key!r}): it is damaged",
            None,
            header.position,
        )
    _, kind = _KEY.unpack_from(key)
    return int(kind)
