"""The checks an append makes on the batches it is given, before taking any lock: whole
batches with consistent counts (:func:`check_whole_batches`), and what kind of producer
wrote them (:func:`producer_kind`: plain, idempotent, or a transaction marker)."""

from __future__ import annotations

from collections.abc import Sequence

from logstore.errors import InvalidRecordError
from logstore.records import scan
from logstore.records.validate import check_batch_records
from logstore.types import BatchHeader

CONTROL = 0x20
"""The isControlBatch bit of a batch's attributes."""
TRANSACTIONAL = 0x10
"""The isTransactional bit."""
_TXN_OR_CONTROL = CONTROL | TRANSACTIONAL


def check_whole_batches(buf: memoryview, *, validate: bool) -> list[BatchHeader]:
    """The headers of the whole batches ``buf`` holds, checked (see
    :meth:`~logstore.storage.log.PartitionLog.append_batches`). Control batches are
    refused: only the transaction coordinator writes markers
    (:meth:`~logstore.storage.log.PartitionLog.append_marker`).

    Raises:
        CorruptRecordError, InvalidRecordError.
    """
    headers = list(scan(buf, verify=validate))
    end = headers[-1].position + headers[-1].size if headers else 0
    if not headers or end != len(buf):
        raise InvalidRecordError(
            f"append needs whole record batches: {len(buf) - end} of {len(buf)} bytes "
            f"are not a whole batch"
        )
    for h in headers:
        if h.records_count < 1 or h.last_offset_delta != h.records_count - 1:
            raise InvalidRecordError(
                f"record batch at position {h.position} has {h.records_count} records "
                f"but lastOffsetDelta {h.last_offset_delta} (expected records - 1)"
            )
        if validate:
            check_batch_records(buf, h)
        if h.attributes & CONTROL:
            raise InvalidRecordError(
                f"record batch at position {h.position} is a control batch: transaction "
                f"markers are written by the transaction coordinator, not appended"
            )
    return headers


def producer_kind(headers: Sequence[BatchHeader]) -> tuple[bool, bool]:
    """``(idempotent, marker)`` of an append's batches: an idempotent producer's batch
    (producer id and base sequence >= 0; a transactional one is one too) or a
    transaction marker must come alone.

    Raises:
        InvalidRecordError: such a batch with others, a marker without a producer id, or
            a transactional batch without a sequence.
    """
    first = headers[0]
    idempotent = first.producer_id >= 0 and first.base_sequence >= 0
    marker = bool(first.attributes & CONTROL)
    if len(headers) > 1 and any(
        (h.producer_id >= 0 and h.base_sequence >= 0) or h.attributes & _TXN_OR_CONTROL
        for h in headers
    ):
        raise InvalidRecordError(
            f"append of {len(headers)} record batches refused: one of them is an "
            f"idempotent producer's (producer id and base sequence >= 0) or a "
            f"transaction's, which must come alone (append it by itself, as Kafka "
            f"takes one batch per partition)"
        )
    if marker and first.producer_id < 0:
        raise InvalidRecordError(
            "control batch refused: a transaction marker names its producer id"
        )
    if first.attributes & _TXN_OR_CONTROL and not (idempotent or marker):
        raise InvalidRecordError(
            f"transactional record batch refused: it has no producer id and sequence "
            f"(producer id {first.producer_id}, base sequence {first.base_sequence}); "
            f"a transactional producer is an idempotent one"
        )
    return idempotent, marker
