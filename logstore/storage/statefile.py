"""One checksummed format for logstore's small state files.

Registry entries, group state, offsets snapshots and the like are small files replaced
as a whole. Each is written atomically (temp file, fsync, rename, fsync of the directory,
by :meth:`~logstore.storage.files.FileSystem.write_file_atomic`) and checked on every
read, so a damaged or foreign file is a :class:`~logstore.errors.CorruptionError` naming
it, never a wrong value. The format stays readable with ``cat``::

    logstore-state 1 <kind>
    <payload: any bytes, usually JSON>
    crc32c 1a2b3c4d

The first line names the format version and what the file holds (``kind``: a reader
asking for a ``topic`` refuses a ``group-state`` file copied over it). The last line is
the CRC-32C (Castagnoli, as in Kafka's batches) of every byte before it, in lower-case
hex. The payload is what lies between the first newline and the newline that ends it
(added by the writer, so any payload round-trips exactly).

A file's bytes that do not start with the magic line are not this format: readers of
files that earlier versions of logstore wrote otherwise (plain JSON, a text checkpoint)
test :func:`is_state` and fall back to their old reader; writers write only this format.

No I/O happens here except in :func:`write_state` and :func:`read_state`, which go
through the :class:`~logstore.storage.files.FileSystem` seam.
"""

from __future__ import annotations

import re

import crc32c

from logstore.errors import CorruptionError, InvalidConfigError
from logstore.storage.files import FileSystem

MAGIC = b"logstore-state 1 "
_KIND = re.compile(r"[a-z][a-z0-9-]{0,39}")
_CRC_LINE = re.compile(rb"crc32c ([0-9a-f]{8})\n\Z")
_CRC_LINE_SIZE = len(b"crc32c 00000000\n")


def _check_kind(kind: str) -> bytes:
    if not _KIND.fullmatch(kind):
        raise InvalidConfigError(f"state file kind {kind!r} is not a short lower-case name")
    return kind.encode("ascii")


def encode_state(kind: str, payload: bytes) -> bytes:
    """The bytes of a state file of ``kind`` holding ``payload``."""
    body = MAGIC + _check_kind(kind) + b"\n" + payload + b"\n"
    return body + b"crc32c %08x\n" % crc32c.crc32c(body)


def decode_state(kind: str, data: bytes, path: str) -> bytes:
    """The payload of state file ``path`` (its bytes ``data``), checked.

    Raises:
        CorruptionError: ``data`` is not a state file of ``kind`` (another kind, another
            program's file, torn, or with a bad CRC); the message names ``path``.
    """
    header = MAGIC + kind.encode("ascii", "replace") + b"\n"
    if not data.startswith(header):
        _check_kind(kind)  # a bad kind is the caller's error, not the file's
    if not data.startswith(MAGIC):
        raise CorruptionError(
            f"{path} is not a logstore state file (it does not start with "
            f"{MAGIC.decode().strip()!r}; restore it from a backup or remove it)",
            path,
            0,
        )
    if not data.startswith(header):
        found = data[len(MAGIC) : data.find(b"\n", 0, 64)].decode("ascii", "replace")
        raise CorruptionError(
            f"{path} holds {found!r} state, not {kind!r} (a file was copied or renamed "
            f"over it; restore it from a backup)",
            path,
            0,
        )
    crc_at = len(data) - _CRC_LINE_SIZE
    match = _CRC_LINE.match(data, crc_at) if crc_at > len(header) else None
    if match is None:
        raise CorruptionError(
            f"{path} is torn or truncated: its last line is not its CRC-32C (restore it "
            f"from a backup or remove it)",
            path,
            max(0, crc_at),
        )
    expected = int(match.group(1), 16)
    actual = crc32c.crc32c(data[:crc_at])
    if actual != expected:
        raise CorruptionError(
            f"{path} fails its CRC-32C check (stored {expected:08x}, computed "
            f"{actual:08x}): its bytes are not what was written (restore it from a "
            f"backup or remove it)",
            path,
            crc_at,
        )
    return data[len(header) : crc_at - 1]


def is_state(data: bytes) -> bool:
    """Whether ``data`` is (the start of) a state file rather than another format (files
    written by earlier versions of logstore, before this format, are read by their own
    readers)."""
    return data.startswith(MAGIC)


def looks_like_damaged_state(data: bytes) -> bool:
    """Whether ``data``, which :func:`is_state` refused, still looks like a state file:
    the start of the magic line (a file cut short) or a CRC line at its end (a damaged
    first line). A reader that falls back to an older format uses it to call such a file
    damaged rather than foreign."""
    if data and MAGIC.startswith(data[: len(MAGIC)]):
        return True
    crc_at = len(data) - _CRC_LINE_SIZE
    return crc_at >= 0 and _CRC_LINE.match(data, crc_at) is not None


def write_state(
    fs: FileSystem, path: str, kind: str, payload: bytes, *, tmp: str | None = None
) -> None:
    """Replace state file ``path`` atomically: a crash leaves the old or the new one
    (``tmp``: the temporary file's name, by default ``~<name>.tmp`` beside it)."""
    fs.write_file_atomic(path, encode_state(kind, payload), tmp=tmp)


def read_state(fs: FileSystem, path: str, kind: str) -> bytes:
    """The payload of state file ``path``, checked.

    Raises:
        FileNotFoundError: there is no such file.
        CorruptionError: it is damaged or not a ``kind`` state file (naming ``path``).
        StorageError: it cannot be read.
    """
    return decode_state(kind, fs.read_file(path), path)
