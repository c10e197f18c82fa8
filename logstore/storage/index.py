"""Sparse offset and time indexes of one segment, in Kafka's on-disk format.

``.index``: 8-byte entries, big-endian ``relativeOffset int32, position int32``: the last
offset of an appended batch (relative to the segment's base offset) and the byte position
in ``.log`` where that batch starts. Lookup: the greatest entry with offset <= target.

``.timeindex``: 12-byte entries, big-endian ``timestamp int64, relativeOffset int32``: the
largest timestamp seen up to that offset. Entries only ever grow in timestamp.

Both are derived data: neither is checksummed, and a missing or inconsistent index is
rebuilt from its ``.log``. Kafka preallocates and memory-maps them; here the entries live
in two ``array``s in memory (4-8 bytes an entry) and appends go to the file's end, so the
files never hold preallocated zeros to trim.

Knows byte layouts and files, not logs.
"""

from __future__ import annotations

import bisect
import itertools
import struct
import sys
from array import array

from logstore.errors import CorruptIndexError
from logstore.storage.files import FileHandle, FileSystem

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")
_SWAP = sys.byteorder == "little"


def _is_increasing(values: array[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


class OffsetIndex:
    """The ``.index`` of a segment: relative offset -> byte position."""

    entry_size = OFFSET_ENTRY.size

    def __init__(self, fs: FileSystem, path: str, base_offset: int, max_entries: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max_entries
        self._handle: FileHandle = fs.open(path, create=True)
        self.offsets: array[int] = array("i")
        self.positions: array[int] = array("i")

    def load(self, log_size: int) -> None:
        """Read the file into memory, checking it against a log of ``log_size`` bytes.

        Raises:
            CorruptIndexError: odd size, entries out of order, or positions past the log.
        """
        data = self._handle.read_all()
        if len(data) % self.entry_size:
            raise CorruptIndexError(
                f"index {self.path} has {len(data)} bytes, not a multiple of {self.entry_size}",
                self.path,
                len(data) - len(data) % self.entry_size,
            )
        flat = array("i", data)
        if _SWAP:
            flat.byteswap()
        offsets, positions = flat[0::2], flat[1::2]
        if not (_is_increasing(offsets) and _is_increasing(positions)):
            raise CorruptIndexError(f"index {self.path} entries are not increasing", self.path)
        if offsets and (offsets[0] < 0 or positions[0] < 0 or positions[-1] >= log_size):
            raise CorruptIndexError(
                f"index {self.path} points at position {positions[-1]} of a log of "
                f"{log_size} bytes",
                self.path,
            )
        self.offsets, self.positions = offsets, positions

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def is_full(self) -> bool:
        return len(self.offsets) >= self.max_entries

    @property
    def last_offset(self) -> int | None:
        return self.base_offset + self.offsets[-1] if self.offsets else None

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        if self.offsets and relative <= self.offsets[-1]:
            return  # Kafka only indexes increasing offsets
        self._handle.append(OFFSET_ENTRY.pack(relative, position))
        self.offsets.append(relative)
        self.positions.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """``(offset, position)`` of the greatest entry <= ``offset``, else ``(base, 0)``."""
        i = bisect.bisect_right(self.offsets, offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self.offsets[i], self.positions[i]

    def truncate_to_position(self, position: int) -> None:
        """Drop every entry pointing at ``position`` or beyond."""
        keep = bisect.bisect_left(self.positions, position)
        self._truncate(keep)

    def _truncate(self, keep: int) -> None:
        if keep < len(self.offsets):
            del self.offsets[keep:]
            del self.positions[keep:]
            self._handle.truncate(keep * self.entry_size)

    def reset(self) -> None:
        self._truncate(0)
        self._handle.truncate(0)

    def fsync(self) -> None:
        self._handle.fsync()

    def close(self) -> None:
        self._handle.close()


class TimeIndex:
    """The ``.timeindex`` of a segment: max timestamp so far -> relative offset."""

    entry_size = TIME_ENTRY.size

    def __init__(self, fs: FileSystem, path: str, base_offset: int, max_entries: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max_entries
        self._handle: FileHandle = fs.open(path, create=True)
        self.timestamps: array[int] = array("q")
        self.offsets: array[int] = array("i")

    def load(self, next_offset: int) -> None:
        """Read the file, checking its offsets lie below ``next_offset``.

        Raises:
            CorruptIndexError: odd size, entries out of order, or offsets past the log.
        """
        data = self._handle.read_all()
        if len(data) % self.entry_size:
            raise CorruptIndexError(
                f"time index {self.path} has {len(data)} bytes, not a multiple of "
                f"{self.entry_size}",
                self.path,
                len(data) - len(data) % self.entry_size,
            )
        timestamps: array[int] = array("q")
        offsets: array[int] = array("i")
        for ts, rel in TIME_ENTRY.iter_unpack(data):
            timestamps.append(ts)
            offsets.append(rel)
        if not _is_increasing(timestamps) or any(
            a > b for a, b in itertools.pairwise(offsets)
        ):
            raise CorruptIndexError(f"time index {self.path} is not increasing", self.path)
        if offsets and (offsets[0] < 0 or self.base_offset + offsets[-1] >= next_offset):
            raise CorruptIndexError(
                f"time index {self.path} names offset {self.base_offset + offsets[-1]}, past "
                f"the segment's end {next_offset}",
                self.path,
            )
        self.timestamps, self.offsets = timestamps, offsets

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def is_full(self) -> bool:
        return len(self.timestamps) >= self.max_entries

    @property
    def last_entry(self) -> tuple[int, int] | None:
        if not self.timestamps:
            return None
        return self.timestamps[-1], self.base_offset + self.offsets[-1]

    def append(self, timestamp: int, offset: int) -> None:
        """Add an entry if ``timestamp`` is larger than the last one (Kafka's rule)."""
        if self.timestamps and timestamp <= self.timestamps[-1]:
            return
        relative = offset - self.base_offset
        if self.offsets and relative < self.offsets[-1]:
            return
        self._handle.append(TIME_ENTRY.pack(timestamp, relative))
        self.timestamps.append(timestamp)
        self.offsets.append(relative)

    def lookup(self, timestamp: int) -> int:
        """Offset of the greatest entry with timestamp <= ``timestamp``, else the base."""
        i = bisect.bisect_right(self.timestamps, timestamp) - 1
        if i < 0:
            return self.base_offset
        return self.base_offset + self.offsets[i]

    def truncate_to_offset(self, offset: int) -> None:
        """Drop every entry naming ``offset`` or beyond."""
        keep = bisect.bisect_left(self.offsets, offset - self.base_offset)
        if keep < len(self.offsets):
            del self.timestamps[keep:]
            del self.offsets[keep:]
            self._handle.truncate(keep * self.entry_size)

    def reset(self) -> None:
        del self.timestamps[:]
        del self.offsets[:]
        self._handle.truncate(0)

    def fsync(self) -> None:
        self._handle.fsync()

    def close(self) -> None:
        self._handle.close()
