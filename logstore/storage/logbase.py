"""The state every part of a :class:`~logstore.storage.log.PartitionLog` shares.

A partition log is one class built bottom-up from parts, each in its own module and
using only the parts below it: :class:`LogState` here (the attributes they share and the
small helpers all of them use), :mod:`~logstore.storage.recovery` (open and crash
recovery), :mod:`~logstore.storage.sharing` (the head file, the writer lock, following
other processes), :mod:`~logstore.storage.reads` (read, read_records, offset lookups),
:mod:`~logstore.storage.producing` (idempotent producers' state and its snapshots) and
:mod:`~logstore.storage.log` (append, roll, flush, retention, close), with the cleaner
strategy in :mod:`~logstore.storage.retention`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from logstore.config import TopicConfig
from logstore.errors import LogFailedError, ReadOnlyStoreError, StoreClosedError
from logstore.storage.checkpoint import Checkpoint, write_checkpoint
from logstore.storage.files import FileHandle, FileSystem
from logstore.storage.head import Head
from logstore.storage.locks import LockFile
from logstore.storage.segment import Segment
from logstore.types import Clock

MAX_OPEN_SEALED_SEGMENTS = 16
"""Sealed segments keep their files open after a read, up to this many per log (LRU)."""


class LogState:
    """The attributes of a partition log (set by ``PartitionLog.__init__``) and the
    helpers every part uses."""

    directory: str
    config: TopicConfig
    fs: FileSystem
    clock: Clock
    _lock: threading.RLock
    _segments: list[Segment]
    _bases: list[int]
    _open_sealed: OrderedDict[int, Segment]
    _closed: bool
    _failed: str | None
    _marked_dirty: bool
    _last_flush_ms: int
    recovery_point: int
    log_start_offset: int
    recovered_bytes: int
    was_clean: bool
    _read_only: bool
    _writer: LockFile
    _presence: LockFile
    _head_file: FileHandle
    _head_seen: Head | None
    _generation: int

    def _set_segments(self, segments: list[Segment]) -> None:
        self._segments = segments
        self._bases = [s.base_offset for s in segments]

    def _now(self) -> int:
        return self.clock.now_ms()

    def _mark_dirty(self) -> None:
        """Before the first write after an open, record that the log is not clean."""
        if not self._marked_dirty:
            self._write_checkpoint(clean=False)
            self._marked_dirty = True

    def _write_checkpoint(self, *, clean: bool) -> None:
        write_checkpoint(
            self.fs,
            self.directory,
            Checkpoint(self.recovery_point, self.log_start_offset, clean),
        )

    # ------------------------------------------------------------------ properties

    @property
    def log_end_offset(self) -> int:
        """The offset the next appended record will get."""
        return self._segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        """What readers may see: everything appended (there are no replicas to wait for)."""
        return self._segments[-1].next_offset

    @property
    def active_segment(self) -> Segment:
        return self._segments[-1]

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failed(self) -> bool:
        """Whether a write or fsync failed: the log refuses writes until reopened (what
        the failed append left past the committed end is cut off by the next writer)."""
        return self._failed is not None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"partition log {self.directory} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(
                f"cannot write to partition {self.directory}: its store is open read-only "
                f"(nothing is written; open the store without read_only=True, with write "
                f"access, to append, roll, flush or delete)",
                self.directory,
            )
        if self._failed is not None:
            raise LogFailedError(
                f"partition log {self.directory} refuses writes after an earlier failure "
                f"({self._failed}); close and reopen the store to recover"
            )

    def _track_sealed(self, seg: Segment) -> None:
        if seg is self._segments[-1]:
            return
        self._open_sealed[seg.base_offset] = seg
        self._open_sealed.move_to_end(seg.base_offset)
        while len(self._open_sealed) > MAX_OPEN_SEALED_SEGMENTS:
            _, oldest = self._open_sealed.popitem(last=False)
            oldest.close_files()
