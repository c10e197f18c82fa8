"""The per-partition checkpoint file (logstore.storage.checkpoint).

Written as a state file (logstore.storage.statefile); the text format of earlier versions
(``_text``, "legacy") is still read. CRCs are recomputed with kafka-python's pure-Python
CRC-32C, not the ``crc32c`` package the module uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest

from logstore.errors import CorruptionError
from logstore.storage.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    decode_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from logstore.storage.files import Buffer, FileHandle, FileSystem

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record._crc32c import crc as kafka_python_crc32c

FS = FileSystem()
MAGIC = "logstore-partition-checkpoint 1"


def _state(payload: str, kind: str = "checkpoint") -> bytes:
    body = f"logstore-state 1 {kind}\n{payload}\n".encode()
    return body + b"crc32c %08x\n" % kafka_python_crc32c(body)


def _text(recovery_point: int, log_start_offset: int, clean: str, crc: str | None = None) -> str:
    body = (
        f"{MAGIC}\nrecovery_point {recovery_point}\nlog_start_offset {log_start_offset}\n"
        f"clean {clean}\n"
    )
    if crc is None:
        crc = f"{kafka_python_crc32c(body.encode()):08x}"
    return f"{body}crc32c {crc}\n"


@pytest.mark.parametrize(
    "cp",
    [
        Checkpoint(0, 0, False),
        Checkpoint(1200, 0, True),
        Checkpoint(2**63 - 1, 2**62, True),
    ],
)
def test_checkpoint_round_trips(tmp_path: Path, cp: Checkpoint) -> None:
    write_checkpoint(FS, str(tmp_path), cp)
    assert read_checkpoint(FS, str(tmp_path)) == cp


def test_checkpoint_file_is_a_state_file_in_the_documented_format(tmp_path: Path) -> None:
    write_checkpoint(FS, str(tmp_path), Checkpoint(1200, 7, True))
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == _state(
        "recovery_point 1200\nlog_start_offset 7\nclean 1"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]  # no .tmp left


def test_read_checkpoint_reads_the_legacy_text_format(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_NAME).write_text(_text(55, 3, "0"))
    assert read_checkpoint(FS, str(tmp_path)) == Checkpoint(55, 3, False)
    write_checkpoint(FS, str(tmp_path), Checkpoint(56, 3, False))  # rewritten: new format
    assert (tmp_path / CHECKPOINT_NAME).read_bytes().startswith(b"logstore-state 1 checkpoint")


_GOOD = "recovery_point 10\nlog_start_offset 0\nclean 1"


@pytest.mark.parametrize(
    "content",
    [
        _state(_GOOD)[:-3],  # torn
        _state(_GOOD).replace(b"point 10", b"point 11"),  # CRC no longer matches
        _state(_GOOD, kind="topic"),
        _state("recovery_point 10\nlog_start_offset 0"),
        _state(_GOOD + "\nextra 1"),
        _state("log_start_offset 0\nrecovery_point 10\nclean 1"),
        _state("recovery_point 10\nlog_start_offset 0\nclean yes"),
        _state("recovery_point -1\nlog_start_offset 0\nclean 1"),
        _state("recovery_point 1.5\nlog_start_offset 0\nclean 1"),
        _state("recovery_point\nlog_start_offset 0\nclean 1"),
        _state("not a checkpoint"),
    ],
    ids=["torn", "crc", "other-kind", "missing-field", "extra-field", "reordered",
         "bad-flag", "negative", "float", "no-value", "garbage"],
)
def test_a_damaged_checkpoint_is_a_corruption_error_naming_it_and_read_as_none(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(content)
    with pytest.raises(CorruptionError) as err:
        decode_checkpoint(content, str(path))
    assert err.value.path == str(path) and str(path) in str(err.value)
    assert read_checkpoint(FS, str(tmp_path)) is None  # advisory: recover from segments
    assert f"ignoring damaged checkpoint {path}" in caplog.text


def test_read_checkpoint_returns_none_when_missing(tmp_path: Path) -> None:
    assert read_checkpoint(FS, str(tmp_path)) is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00" * 64,
        b"\xff\xfe garbage \x80",
        b"hello world\n",
        _text(10, 0, "1", crc="00000000").encode(),
        _text(10, 0, "1").encode()[:-1],  # last newline cut
        _text(10, 0, "1").encode()[:40],  # torn write
        _text(10, 0, "1").replace("recovery_point 10", "recovery_point 11").encode(),
        _text(10, 0, "1").replace(MAGIC, "logstore-partition-checkpoint 2").encode(),
        (_text(10, 0, "1") + "extra 1\n").encode(),
        _text(-1, 0, "1").encode(),  # valid CRC, negative offset
        _text(10, -5, "1").encode(),
        _text(10, 0, "yes").encode(),
        _text(10, 0, "1").replace("recovery_point 10", "recovery_point ten").encode(),
    ],
    ids=[
        "empty",
        "zeros",
        "not-ascii",
        "garbage",
        "wrong-crc",
        "no-final-newline",
        "torn",
        "changed-value",
        "wrong-magic",
        "extra-line",
        "negative-recovery-point",
        "negative-log-start",
        "bad-clean-flag",
        "not-a-number",
    ],
)
def test_read_checkpoint_returns_none_when_damaged(tmp_path: Path, content: bytes) -> None:
    (tmp_path / CHECKPOINT_NAME).write_bytes(content)
    assert read_checkpoint(FS, str(tmp_path)) is None


class _RecordingFS(FileSystem):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
        self.events.append(("write", handle.path))
        return super()._pwritev(handle, parts, position)

    def _fsync(self, handle: FileHandle) -> None:
        self.events.append(("fsync", handle.path))
        super()._fsync(handle)

    def _rename(self, src: str, dst: str) -> None:
        self.events.append(("rename", f"{src} -> {dst}"))
        super()._rename(src, dst)

    def _fsync_dir(self, path: str) -> None:
        self.events.append(("fsync_dir", path))
        super()._fsync_dir(path)


def test_write_checkpoint_replaces_file_atomically(tmp_path: Path) -> None:
    fs = _RecordingFS()
    path = str(tmp_path / CHECKPOINT_NAME)
    tmp = str(tmp_path / f"~{CHECKPOINT_NAME}.tmp")  # "~": a name no user file has
    write_checkpoint(fs, str(tmp_path), Checkpoint(1, 0, False))
    fs.events.clear()

    write_checkpoint(fs, str(tmp_path), Checkpoint(2, 0, True))

    assert fs.events == [
        ("write", tmp),
        ("fsync", tmp),
        ("rename", f"{tmp} -> {path}"),
        ("fsync_dir", str(tmp_path)),
    ]
    assert read_checkpoint(FS, str(tmp_path)) == Checkpoint(2, 0, True)
