"""The per-partition checkpoint: recovery point, log start offset and clean-shutdown flag.

One small text file, ``checkpoint``, in each partition directory, always replaced
atomically (temp file, fsync, rename, fsync of the directory)::

    logstore-partition-checkpoint 1
    recovery_point 1200
    log_start_offset 0
    clean 1
    crc32c 5c9e1a0b

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

from logstore.storage.files import FileSystem

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint"
_MAGIC = "logstore-partition-checkpoint 1"


class Checkpoint(NamedTuple):
    recovery_point: int
    log_start_offset: int
    clean: bool


def _body(cp: Checkpoint) -> str:
    return (
        f"{_MAGIC}\nrecovery_point {cp.recovery_point}\n"
        f"log_start_offset {cp.log_start_offset}\nclean {int(cp.clean)}\n"
    )


def write_checkpoint(fs: FileSystem, directory: str, cp: Checkpoint) -> None:
    body = _body(cp)
    crc = crc32c.crc32c(body.encode())
    data = f"{body}crc32c {crc:08x}\n".encode()
    fs.write_file_atomic(os.path.join(directory, CHECKPOINT_NAME), data)


def read_checkpoint(fs: FileSystem, directory: str) -> Checkpoint | None:
    """The checkpoint, or None if it is missing or damaged (then the caller recovers all)."""
    path = os.path.join(directory, CHECKPOINT_NAME)
    try:
        text = fs.read_file(path).decode("ascii")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        log.warning("ignoring damaged checkpoint %s (not ASCII): recovering everything", path)
        return None
    try:
        lines = text.split("\n")
        if lines[0] != _MAGIC or len(lines) != 6 or lines[5] != "":
            raise ValueError("unexpected layout")
        fields = dict(line.split(" ", 1) for line in lines[1:5])
        cp = Checkpoint(
            int(fields["recovery_point"]), int(fields["log_start_offset"]), fields["clean"] == "1"
        )
        if fields["crc32c"] != f"{crc32c.crc32c(_body(cp).encode()):08x}":
            raise ValueError("CRC mismatch")
        if cp.recovery_point < 0 or cp.log_start_offset < 0:
            raise ValueError("negative offset")
    except (ValueError, KeyError) as err:
        log.warning("ignoring damaged checkpoint %s (%s): recovering everything", path, err)
        return None
    return cp
