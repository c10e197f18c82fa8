"""The one batch walker: the batches of a ``.log`` file, in file order, until the first bad one.

:func:`walk_batches` reads a segment file in large chunks and yields each batch's header
(with its position in the file). It stops at the end, or at the first batch that is not
whole and sound, and then says why in :attr:`BatchWalk.stop` (a :class:`WalkStop` with a
:class:`StopReason`, the position and a message). Recovery (index rebuild and the cut of a
torn tail), ``verify``, the clean open's tail scan and ``logstore inspect`` (through
:func:`logstore.storage.verify.walk_log`) all walk with it, so they agree on where a log's
good batches end.

Offsets: with ``expected`` set, each batch's ``baseOffset`` must be the offset after the
previous batch (the CRC does not cover ``baseOffset``, so this is what catches a damaged
one). A segment that declares gaps (:mod:`logstore.storage.gaps`) is walked with
``gaps=True``: offsets must still increase, but may skip.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import NamedTuple

from logstore.errors import CorruptRecordError
from logstore.records import HEADER_SIZE, check_batch, decode_header
from logstore.storage.files import FileHandle
from logstore.types import BatchHeader

CHUNK = 64 * 1024
"""How much the walker reads at a time (a batch larger than that is read whole)."""


class StopReason(enum.Enum):
    """Why a walk stopped before the end of the data."""

    INCOMPLETE = "incomplete"
    """A header or a batch runs past the end: what a torn append leaves."""
    BAD_HEADER = "bad header"
    """An impossible length or a wrong magic byte."""
    BAD_BATCH = "bad batch"
    """A batch that fails its CRC-32C (or has impossible counts or codec)."""
    OFFSETS = "offsets"
    """A ``baseOffset`` that does not follow on from the batch before."""


class WalkStop(NamedTuple):
    """Where and why a walk stopped."""

    reason: StopReason
    position: int
    message: str


class BatchWalk:
    """Iterate for the headers of the good batches; then :attr:`stop` says why the walk
    ended early (None: it reached ``end``), :attr:`end` is the position after the last good
    batch and :attr:`next_offset` the offset after it (``expected`` if there was none)."""

    def __init__(
        self,
        handle: FileHandle,
        start: int,
        end: int,
        *,
        expected: int | None,
        first_ends_at: int | None,
        gaps: bool,
        verify: bool,
    ) -> None:
        self._handle = handle
        self._end = end
        self._first_ends_at = first_ends_at
        self._gaps = gaps
        self._verify = verify
        self.end = start
        self.next_offset = expected
        self.stop: WalkStop | None = None

    def __iter__(self) -> Iterator[BatchHeader]:
        position, end = self.end, self._end
        chunk, chunk_start = b"", position
        step = CHUNK if self._verify else HEADER_SIZE  # without checks: headers only
        while position < end:
            if position - chunk_start + HEADER_SIZE > len(chunk):
                chunk_start = position
                chunk = self._handle.pread(min(step, end - position), position)
            at = position - chunk_start
            header = self._header(chunk, at, position)
            if header is None:
                return
            if self._verify and at + header.size > len(chunk):  # past the chunk: read it whole
                chunk_start, at = position, 0
                chunk = self._handle.pread(header.size, position)
            if not self._sound(chunk, header, at, position):
                return
            self.end = position = position + header.size
            self.next_offset = header.next_offset
            yield header._replace(position=self.end - header.size)

    def _header(self, chunk: bytes, at: int, position: int) -> BatchHeader | None:
        try:
            header = decode_header(chunk, at)
        except CorruptRecordError as err:
            self.stop = WalkStop(StopReason.BAD_HEADER, position, str(err))
            return None
        if header is None or position + header.size > self._end:
            self.stop = WalkStop(
                StopReason.INCOMPLETE,
                position,
                f"incomplete record batch ({self._end - position} bytes at the end)",
            )
            return None
        return header

    def _sound(self, chunk: bytes, header: BatchHeader, at: int, position: int) -> bool:
        """Whether the batch passes its checks (else :attr:`stop` says why)."""
        if self._verify:
            try:
                check_batch(chunk, header._replace(position=at))
            except CorruptRecordError as err:
                self.stop = WalkStop(StopReason.BAD_BATCH, position, str(err))
                return False
        expected = self.next_offset
        if expected is None and self._first_ends_at is not None:
            expected = self._first_ends_at - header.last_offset_delta
        if expected is not None and (
            header.base_offset < expected if self._gaps else header.base_offset != expected
        ):
            self.stop = WalkStop(
                StopReason.OFFSETS,
                position,
                f"record batch at position {position} has base offset {header.base_offset}, "
                f"expected {'at least ' if self._gaps else ''}{expected} (the offsets do not "
                f"follow on)",
            )
            return False
        return True


def walk_batches(
    handle: FileHandle,
    start: int = 0,
    end: int | None = None,
    *,
    expected: int | None = None,
    first_ends_at: int | None = None,
    gaps: bool = False,
    verify: bool = True,
) -> BatchWalk:
    """Walk the batches of ``handle`` from byte ``start`` to ``end`` (default: its size).

    Args:
        expected: the first batch's ``baseOffset`` (None: not checked, unless
            ``first_ends_at`` is given); each later one must follow on.
        first_ends_at: the last offset of the first batch (what an index entry names),
            when its base offset is not known.
        gaps: offsets may skip (a segment that declares gaps), but never go back.
        verify: check each batch's CRC-32C, counts and codec (the walk stops at the first
            that fails); without it only headers and offsets are checked, and only the
            headers are read (one small read a batch: the clean open's tail scan reads
            no record bytes).
    """
    return BatchWalk(
        handle,
        start,
        handle.size if end is None else end,
        expected=expected,
        first_ends_at=first_ends_at,
        gaps=gaps,
        verify=verify,
    )
