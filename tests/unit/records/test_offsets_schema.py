"""Kafka's ``__consumer_offsets`` schema (logstore.records.offsets_schema): golden bytes,
worked out by hand from Kafka's OffsetCommitKey (v1) and OffsetCommitValue (v3)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstore import metadata
from logstore.errors import InvalidRecordError
from logstore.records import offsets_schema
from logstore.records.offsets_schema import (
    TOPIC_ID_HEADER,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from logstore.types import CommittedOffset

KEY = bytes.fromhex(
    "0001"  # version 1
    "0002" "6731"  # group "g1"
    "0006" "6576656e7473"  # topic "events"
    "00000003"  # partition 3
)
VALUE = bytes.fromhex(
    "0003"  # version 3
    "000000000000002a"  # offset 42
    "ffffffff"  # leader epoch -1
    "0001" "6d"  # metadata "m"
    "000001a229f12800"  # commit timestamp 1796000000000
)


def test_offset_commit_key_golden_bytes() -> None:
    assert encode_key("g1", "events", 3) == KEY
    assert decode_key(KEY) == ("g1", "events", 3)


def test_offset_commit_value_golden_bytes() -> None:
    assert encode_value(42, "m", 1_796_000_000_000) == VALUE
    assert decode_value(VALUE) == CommittedOffset(42, "m", 1_796_000_000_000)


def test_a_version_0_key_is_read_and_a_group_metadata_key_is_not() -> None:
    assert decode_key(b"\x00\x00" + KEY[2:]) == ("g1", "events", 3)
    with pytest.raises(ValueError, match="version 2"):
        decode_key(b"\x00\x02\x00\x02g1")


@pytest.mark.parametrize(
    "data", [KEY[:-1], KEY + b"\x00", b"\x00\x01\x7f\xffg1", b""],
    ids=["short", "trailing", "overrun", "empty"],
)
def test_a_malformed_key_raises_value_or_struct_error(data: bytes) -> None:
    with pytest.raises((ValueError, struct.error)):
        decode_key(data)


def test_another_value_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version 1"):
        decode_value(b"\x00\x01" + VALUE[2:])


def test_a_string_over_an_int16_length_is_an_invalid_record_error() -> None:
    with pytest.raises(InvalidRecordError, match="32768 bytes"):
        encode_key("g" * 32768, "t", 0)


@given(st.text(max_size=40), st.text(max_size=40), st.integers(-(2**31), 2**31 - 1))
def test_keys_round_trip(group: str, topic: str, partition: int) -> None:
    assert decode_key(encode_key(group, topic, partition)) == (group, topic, partition)


@given(st.integers(0, 2**63 - 1), st.text(max_size=40), st.integers(0, 2**63 - 1))
def test_values_round_trip(offset: int, meta: str, timestamp: int) -> None:
    assert decode_value(encode_value(offset, meta, timestamp)) == CommittedOffset(
        offset, meta, timestamp
    )


def test_the_schema_is_still_importable_from_metadata() -> None:
    for name in ("encode_key", "decode_key", "encode_value", "decode_value", "OffsetKey"):
        assert getattr(metadata, name) is getattr(offsets_schema, name)
    assert metadata.TOPIC_ID_HEADER == TOPIC_ID_HEADER == "topic_id"
