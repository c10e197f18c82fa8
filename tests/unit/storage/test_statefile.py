"""The checksummed small-state-file format (logstore.storage.statefile)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstore.errors import CorruptionError, InvalidConfigError
from logstore.storage.files import FileSystem
from logstore.storage.statefile import decode_state, encode_state, read_state, write_state

FS = FileSystem()


def test_the_file_reads_as_text_with_its_kind_and_crc() -> None:
    data = encode_state("topic", b'{"name": "a"}')
    lines = data.decode().splitlines()
    assert lines[0] == "logstore-state 1 topic"
    assert lines[1] == '{"name": "a"}'
    assert lines[2].startswith("crc32c ") and len(lines[2]) == len("crc32c ") + 8


@given(st.binary(max_size=300))
def test_any_payload_round_trips(payload: bytes) -> None:
    assert decode_state("group-state", encode_state("group-state", payload), "f") == payload


@given(st.binary(min_size=0, max_size=60), st.data())
def test_any_flipped_byte_is_a_corruption_error_naming_the_file(
    payload: bytes, data: st.DataObject
) -> None:
    encoded = bytearray(encode_state("topic", payload))
    at = data.draw(st.integers(0, len(encoded) - 1))
    bit = data.draw(st.integers(0, 7))
    encoded[at] ^= 1 << bit
    with pytest.raises(CorruptionError) as err:
        decode_state("topic", bytes(encoded), "/d/__topics/a")
    assert err.value.path == "/d/__topics/a"
    assert "/d/__topics/a" in str(err.value)


@given(st.binary(max_size=60), st.data())
def test_a_truncated_file_is_a_corruption_error(payload: bytes, data: st.DataObject) -> None:
    encoded = encode_state("topic", payload)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(CorruptionError, match="f"):
        decode_state("topic", encoded[:cut], "f")


def test_another_kind_is_refused_by_name() -> None:
    with pytest.raises(CorruptionError, match="holds 'group-state' state, not 'topic'"):
        decode_state("topic", encode_state("group-state", b"{}"), "f")


def test_a_foreign_file_is_refused() -> None:
    with pytest.raises(CorruptionError, match="not a logstore state file"):
        decode_state("topic", b'{"name": "a"}', "f")


def test_a_bad_kind_name_is_a_typed_error() -> None:
    with pytest.raises(InvalidConfigError, match="kind 'Topic'"):
        encode_state("Topic", b"")


def test_write_then_read_through_the_seam(tmp_path: Path) -> None:
    path = str(tmp_path / "state")
    write_state(FS, path, "checkpoint", b"one")
    write_state(FS, path, "checkpoint", b"two")
    assert read_state(FS, path, "checkpoint") == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # no temporary left


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_state(FS, str(tmp_path / "none"), "topic")
