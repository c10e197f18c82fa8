"""The per-partition checkpoint: recovery point, log start offset and clean-shutdown flag.

One small state file (:mod:`~logstore.storage.statefile`, kind ``checkpoint``) named
``checkpoint`` in each partition directory, always replaced atomically (temp file, fsync,
rename, fsync of the directory)::

    logstore-state 1 checkpoint
    recovery_point 1200
    log_start_offset 0
    clean 1
    crc32c 5c9e1a0b

(the fields in this order, one ``name value`` line each). Checkpoints written by earlier
versions (the same lines under ``logstore-partition-checkpoint 1``) are read too; only the
new format is written. The checkpoint is advisory: a damaged one (:func:`decode_checkpoint` raises
:class:`~logstore.errors.CorruptionError` naming it) is ignored by :func:`read_checkpoint`
with a WARNING, and the partition then recovers from its segments alone.

Kafka keeps these facts in three files per log directory (``recovery-point-offset-
checkpoint``, ``log-start-offset-checkpoint`` and ``.kafka_cleanshutdown``); here each
partition has its own, so a partition opens, recovers and closes independently, and the
three facts change together in one rename.

* ``recovery_point``: every offset below it is known to be fsynced; after a crash only
  segments from the one holding it onwards are rescanned. It moves here on roll, flush and
  close; the partition ``head`` carries it further, to the last fsynced append (see
  ``synced_recovery_point`` in ``log.py``).
* ``log_start_offset``: the first offset readers may see (moved by retention and
  ``delete_records``).
* ``clean``: 1 when the partition was closed cleanly and nothing was written since; it is
  set to 0 before the first write after an open.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import crc32c

from logstore.errors import CorruptionError
from logstore.storage.files import FileSystem
from logstore.storage.statefile import decode_state, encode_state, is_state

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint"
CHECKPOINT_KIND = "checkpoint"
_LEGACY_MAGIC = "logstore-partition-checkpoint 1"


class Checkpoint(NamedTuple):
    recovery_point: int
    log_start_offset: int
    clean: bool


_FIELDS = (b"recovery_point ", b"log_start_offset ", b"clean ")


def encode_checkpoint(cp: Checkpoint) -> bytes:
    """The bytes of checkpoint ``cp`` (a state file)."""
    payload = (
        f"recovery_point {cp.recovery_point}\nlog_start_offset {cp.log_start_offset}\n"
        f"clean {int(cp.clean)}"
    )
    return encode_state(CHECKPOINT_KIND, payload.encode("ascii"))


def write_checkpoint(fs: FileSystem, directory: str, cp: Checkpoint) -> None:
    fs.write_file_atomic(os.path.join(directory, CHECKPOINT_NAME), encode_checkpoint(cp))


def decode_checkpoint(data: bytes, path: str) -> Checkpoint:
    """The checkpoint in ``data`` (the bytes of file ``path``, either format), checked.

    Raises:
        CorruptionError: it is damaged (naming ``path``).
    """
    if is_state(data):
        lines = decode_state(CHECKPOINT_KIND, data, path).split(b"\n")
        try:
            if len(lines) != 3 or not all(map(bytes.startswith, lines, _FIELDS)):
                raise ValueError("unexpected layout")
            point, start, clean = (line.split(b" ", 1)[1] for line in lines)
            if clean not in (b"0", b"1"):
                raise ValueError(f"clean {clean!r}")
            cp = Checkpoint(int(point), int(start), clean == b"1")
        except ValueError as err:
            raise CorruptionError(f"checkpoint {path} is damaged: {err}", path, 0) from err
    else:
        cp = _decode_legacy(data, path)
    if cp.recovery_point < 0 or cp.log_start_offset < 0:
        raise CorruptionError(f"checkpoint {path} is damaged: a negative offset", path, 0)
    return cp


def _legacy_body(cp: Checkpoint) -> str:
    return (
        f"{_LEGACY_MAGIC}\nrecovery_point {cp.recovery_point}\n"
        f"log_start_offset {cp.log_start_offset}\nclean {int(cp.clean)}\n"
    )


def _decode_legacy(data: bytes, path: str) -> Checkpoint:
    """A checkpoint in the text format of earlier versions."""
    try:
        lines = data.decode("ascii").split("\n")
        if lines[0] != _LEGACY_MAGIC or len(lines) != 6 or lines[5] != "":
            raise ValueError("unexpected layout")
        fields = dict(line.split(" ", 1) for line in lines[1:5])
        cp = Checkpoint(
            int(fields["recovery_point"]), int(fields["log_start_offset"]), fields["clean"] == "1"
        )
        if fields["crc32c"] != f"{crc32c.crc32c(_legacy_body(cp).encode()):08x}":
            raise ValueError("CRC mismatch")
    except (ValueError, KeyError) as err:  # UnicodeDecodeError is a ValueError
        raise CorruptionError(f"checkpoint {path} is damaged: {err}", path, 0) from err
    return cp


def read_checkpoint(fs: FileSystem, directory: str) -> Checkpoint | None:
    """The checkpoint, or None if it is missing or damaged (then the caller recovers all;
    a damaged one is a WARNING naming it)."""
    path = os.path.join(directory, CHECKPOINT_NAME)
    try:
        return decode_checkpoint(fs.read_file(path), path)
    except FileNotFoundError:
        return None
    except CorruptionError as err:
        log.warning("ignoring damaged checkpoint %s (%s): recovering everything", path, err)
        return None
