"""Sparse offset and time indexes of one segment, in Kafka's on-disk format.

``.index``: 8-byte entries, big-endian ``relativeOffset int32, position int32``: the last
offset of an appended batch (relative to the segment's base offset) and the byte position
in ``.log`` where that batch starts. Lookup: the greatest entry with offset <= target.

``.timeindex``: 12-byte entries, big-endian ``timestamp int64, relativeOffset int32``: the
largest timestamp seen up to that offset. Entries only ever grow in timestamp.

Both are derived data: neither is checksummed, and a missing or inconsistent index is
rebuilt from its ``.log``. Kafka preallocates and memory-maps them; here the entries live
in two ``array``s in memory (4-8 bytes an entry), loaded on the first lookup, and appends go
to the file's end, so the files never hold preallocated zeros to trim. Opening a segment
reads only the last entry (:meth:`check_tail`), so open time does not grow with the index.

Knows byte layouts and files, not logs.
"""

from __future__ import annotations

import abc
import bisect
import operator
import struct
import sys
from array import array
from itertools import islice

from logstore.errors import CorruptIndexError
from logstore.storage.files import FileHandle, FileSystem

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")
_SWAP = sys.byteorder == "little"


def _increasing(values: array[int], *, strict: bool = True) -> bool:
    op = operator.lt if strict else operator.le
    return all(map(op, values, islice(values, 1, None)))


class _Index(abc.ABC):
    """What both indexes share: a file of fixed-size entries, loaded lazily."""

    entry: struct.Struct
    kind: str

    def __init__(self, fs: FileSystem, path: str, base_offset: int, max_entries: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max_entries
        self._handle: FileHandle = fs.open(path, create=True)
        self._count = self._handle.size // self.entry.size
        self._last: tuple[int, int] | None = None  # the last entry as stored (relative)
        self._loaded = self._count == 0  # an empty file has nothing to load
        self._bound: int | None = None
        self._keys: array[int] = array(self._key_type)
        self._values: array[int] = array(self._value_type)

    _key_type = "i"
    _value_type = "i"

    def _corrupt(self, why: str, position: int | None = None) -> CorruptIndexError:
        return CorruptIndexError(f"{self.kind} {self.path} {why}", self.path, position)

    def _check_size(self) -> None:
        size = self._handle.size
        if size % self.entry.size:
            raise self._corrupt(
                f"has {size} bytes, not a multiple of {self.entry.size}",
                size - size % self.entry.size,
            )

    @abc.abstractmethod
    def _check_last(self, last: tuple[int, int], bound: int) -> None:
        """Raise CorruptIndexError if ``last`` cannot be this segment's last entry."""

    def check_tail(self, bound: int) -> None:
        """Check the file's size and last entry against ``bound`` (log size for the offset
        index, next offset for the time index) without reading the rest.

        Raises:
            CorruptIndexError: the file cannot belong to this segment.
        """
        self._check_size()
        self._bound = bound
        if self._count:
            raw = self._handle.pread(self.entry.size, (self._count - 1) * self.entry.size)
            last: tuple[int, int] = self.entry.unpack(raw)
            self._check_last(last, bound)
            self._last = last

    def load(self, bound: int | None) -> None:
        """Read every entry into memory and check them (increasing, within ``bound``, if
        given).

        Raises:
            CorruptIndexError: odd size, entries out of order, or past the segment's end.
        """
        self._check_size()
        self._bound = bound
        data = self._handle.read_all()
        keys, values = self._parse(data)
        if not (_increasing(keys) and _increasing(values, strict=self._values_strict)):
            raise self._corrupt("entries are not increasing")
        if keys:
            if bound is not None:
                self._check_last((keys[-1], values[-1]), bound)
            if values[0] < 0 or (self._keys_nonnegative and keys[0] < 0):
                raise self._corrupt("starts with a negative entry")
        self._keys, self._values = keys, values
        self._count = len(keys)
        self._last = (keys[-1], values[-1]) if keys else None
        self._loaded = True

    _values_strict = True
    _keys_nonnegative = True

    @abc.abstractmethod
    def _parse(self, data: bytes) -> tuple[array[int], array[int]]:
        """Split the file's bytes into the two columns."""

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load(self._bound)

    def __len__(self) -> int:
        return self._count

    @property
    def is_full(self) -> bool:
        return self._count >= self.max_entries

    def _append(self, key: int, value: int) -> None:
        self._handle.append(self.entry.pack(key, value))
        # The bound checked the file's tail when the segment was opened; entries appended
        # since are valid by construction, and checking them against that old bound at a
        # later lazy load would take a healthy index for a damaged one.
        self._bound = None
        self._count += 1
        self._last = (key, value)
        if self._loaded:
            self._keys.append(key)
            self._values.append(value)

    def _truncate_entries(self, keep: int) -> None:
        if keep < self._count:
            self._handle.truncate(keep * self.entry.size)
            del self._keys[keep:]
            del self._values[keep:]
            self._count = keep
            self._last = (self._keys[-1], self._values[-1]) if keep else None

    def cut_to(self, count: int) -> None:
        """Drop entries past the first ``count`` that the file holds (another process's
        unfinished append)."""
        self._handle.refresh_size()
        if self._handle.size > count * self.entry.size:
            self._handle.truncate(count * self.entry.size)

    def adopt(self, count: int) -> None:
        """Take the first ``count`` entries of the file as this index (another process
        appended or cut entries)."""
        if count == self._count and self._handle.size >= count * self.entry.size:
            return
        self._bound = None  # entries committed by another process's appends (see _append)
        self._handle.size = max(self._handle.size, count * self.entry.size)
        if self._loaded:
            have = len(self._keys)
            if count < have:
                del self._keys[count:]
                del self._values[count:]
            elif count > have:
                size = self.entry.size
                keys, values = self._parse(self._handle.pread((count - have) * size, have * size))
                self._keys += keys
                self._values += values
        self._count = count
        self._last = None
        if count:
            raw = self._handle.pread(self.entry.size, (count - 1) * self.entry.size)
            self._last = self.entry.unpack(raw)

    def reset(self) -> None:
        """Drop every entry (before a rebuild)."""
        self._handle.truncate(0)
        self._keys, self._values = array(self._key_type), array(self._value_type)
        self._count = 0
        self._last = None
        self._loaded = True

    def fsync(self) -> None:
        self._handle.fsync()

    def close(self) -> None:
        self._handle.close()


class OffsetIndex(_Index):
    """The ``.index`` of a segment: relative offset -> byte position."""

    entry = OFFSET_ENTRY
    entry_size = OFFSET_ENTRY.size
    kind = "index"

    def _parse(self, data: bytes) -> tuple[array[int], array[int]]:
        flat = array("i", data)
        if _SWAP:
            flat.byteswap()
        return flat[0::2], flat[1::2]

    def _check_last(self, last: tuple[int, int], bound: int) -> None:
        relative, position = last
        if relative < 0 or position < 0 or position >= bound:
            raise self._corrupt(
                f"points at position {position} of a log of {bound} bytes"
            )

    @property
    def last_offset(self) -> int | None:
        return None if self._last is None else self.base_offset + self._last[0]

    @property
    def last_position(self) -> int:
        return 0 if self._last is None else self._last[1]

    @property
    def offsets(self) -> array[int]:
        """Relative offsets of every entry (loads the index)."""
        self._ensure_loaded()
        return self._keys

    @property
    def positions(self) -> array[int]:
        self._ensure_loaded()
        return self._values

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        if self._last is not None and relative <= self._last[0]:
            return  # Kafka only indexes increasing offsets
        self._append(relative, position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """``(offset, position)`` of the greatest entry <= ``offset``, else ``(base, 0)``."""
        self._ensure_loaded()
        i = bisect.bisect_right(self._keys, offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self._keys[i], self._values[i]

    def truncate_to_position(self, position: int) -> None:
        """Drop every entry pointing at ``position`` or beyond."""
        self._ensure_loaded()
        self._truncate_entries(bisect.bisect_left(self._values, position))


class TimeIndex(_Index):
    """The ``.timeindex`` of a segment: max timestamp so far -> relative offset."""

    entry = TIME_ENTRY
    entry_size = TIME_ENTRY.size
    kind = "time index"
    _key_type = "q"
    _values_strict = False  # offsets may repeat (the final entry of a sealed segment)
    _keys_nonnegative = False  # timestamps before 1970 are legal

    def _parse(self, data: bytes) -> tuple[array[int], array[int]]:
        count = len(data) // TIME_ENTRY.size
        flat = struct.unpack(">" + "qi" * count, data)
        return array("q", flat[0::2]), array("i", flat[1::2])

    def _check_last(self, last: tuple[int, int], bound: int) -> None:
        _, relative = last
        if relative < 0 or self.base_offset + relative >= bound:
            raise self._corrupt(
                f"names offset {self.base_offset + relative}, past the segment's end {bound}"
            )

    @property
    def timestamps(self) -> array[int]:
        self._ensure_loaded()
        return self._keys

    @property
    def offsets(self) -> array[int]:
        self._ensure_loaded()
        return self._values

    @property
    def last_entry(self) -> tuple[int, int] | None:
        """``(timestamp, absolute offset)`` of the last entry, if any."""
        if self._last is None:
            return None
        return self._last[0], self.base_offset + self._last[1]

    def append(self, timestamp: int, offset: int) -> None:
        """Add an entry if ``timestamp`` is larger than the last one (Kafka's rule)."""
        relative = offset - self.base_offset
        if self._last is not None and (
            timestamp <= self._last[0] or relative < self._last[1]
        ):
            return
        self._append(timestamp, relative)

    def lookup(self, timestamp: int) -> int:
        """Offset of the greatest entry with timestamp <= ``timestamp``, else the base."""
        self._ensure_loaded()
        i = bisect.bisect_right(self._keys, timestamp) - 1
        if i < 0:
            return self.base_offset
        return self.base_offset + self._values[i]

    def truncate_to_offset(self, offset: int) -> None:
        """Drop every entry naming ``offset`` or beyond."""
        self._ensure_loaded()
        self._truncate_entries(bisect.bisect_left(self._values, offset - self.base_offset))
