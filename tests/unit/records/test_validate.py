"""check_batch_records agrees with the decoder: a batch it accepts decodes (into the
records encoded), and a record set the decoder refuses, it refuses too."""

from __future__ import annotations

import struct

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.errors import CorruptRecordError
from logstore.records import encode_batch, scan
from logstore.records.batch import HEADER_SIZE
from logstore.records.decode import decode_batch_records
from logstore.records.validate import check_batch_records
from logstore.types import Compression
from tests.strategies import compressions, record_inputs

_CRC_AT = 17  # the CRC field; it covers the bytes from attributes (21) to the end


def _with_crc(data: bytearray) -> bytes:
    data[_CRC_AT : _CRC_AT + 4] = struct.pack(">I", crc32c.crc32c(bytes(data[21:])))
    return bytes(data)


@settings(max_examples=60)
@given(records=record_inputs(large_payloads=False), codec=compressions())
def test_every_encoded_batch_passes(records: list, codec: Compression) -> None:
    data = encode_batch(records, compression=codec)
    header = next(scan(data))
    check_batch_records(data, header, verify=True)


@settings(max_examples=300)
@given(
    records=record_inputs(max_size=5, large_payloads=False),
    at=st.integers(0, 10_000),
    xor=st.integers(1, 255),
)
def test_a_damaged_record_set_is_refused_where_the_decoder_refuses_it(
    records: list, at: int, xor: int
) -> None:
    data = bytearray(encode_batch(records))
    at = HEADER_SIZE + at % (len(data) - HEADER_SIZE)
    data[at] ^= xor
    damaged = _with_crc(data)  # a right CRC over wrong records: only the walk can tell
    header = next(scan(damaged))
    try:
        decoded = decode_batch_records(damaged, header, verify=False)
    except CorruptRecordError:
        with pytest.raises(CorruptRecordError):
            check_batch_records(damaged, header)
        return
    consecutive = [r.offset for r in decoded] == list(range(len(decoded)))
    if consecutive and len(decoded) == header.records_count:
        check_batch_records(damaged, header)  # the decoder's records: accepted
    else:
        with pytest.raises(CorruptRecordError):
            check_batch_records(damaged, header)


def test_a_wrong_record_count_is_refused() -> None:
    data = bytearray(encode_batch([(0, None, b"a", ()), (0, None, b"b", ())]))
    data[57:61] = struct.pack(">i", 3)  # recordsCount
    damaged = _with_crc(data)
    with pytest.raises(CorruptRecordError, match="position 0"):
        check_batch_records(damaged, next(scan(damaged)))


def test_a_bad_crc_is_refused_with_verify() -> None:
    data = bytearray(encode_batch([(0, None, b"a", ())]))
    data[-1] ^= 1
    with pytest.raises(CorruptRecordError):
        check_batch_records(bytes(data), next(scan(bytes(data), verify=False)), verify=True)
