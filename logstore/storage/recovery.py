"""Opening a partition alone: loading its segments and recovering them after a crash.

Recovery on open:

1. Leftover temporary files (:func:`~logstore.storage.listing.is_leftover`) and index
   files without a ``.log`` are removed. No other name is ever touched.
2. Segments wholly below the checkpointed log start offset are deleted (a crash in the
   middle of retention).
3. Clean shutdown (checkpoint ``clean 1``): only the last segment's index tail is read.
   Otherwise every segment from the one holding the recovery point onwards is rescanned
   with CRC checks, its indexes rebuilt, and the log cut at the first incomplete or corrupt
   batch (a WARNING names file, position and bytes dropped); later segments are deleted, so
   offsets stay contiguous. The recovery point is the higher of the checkpoint's and the
   head's (:func:`synced_recovery_point`: with flush "always", the last acknowledged
   append), and nothing below it is ever cut: a bad batch there is a
   :class:`~logstore.errors.CorruptRecordError` naming file and position, and the files
   stay as they are.
4. Segments before the recovery point are trusted; if reading one finds damage, that is a
   :class:`~logstore.errors.CorruptRecordError` naming file and position, never a silent
   truncation.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import os

from logstore.errors import CorruptRecordError
from logstore.storage.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from logstore.storage.files import FileSystem
from logstore.storage.head import HEAD_NAME, HEAD_SIZE, unpack_head
from logstore.storage.listing import read_listing
from logstore.storage.logbase import LogState
from logstore.storage.segment import Segment

log = logging.getLogger("logstore.storage.log")


def synced_recovery_point(fs: FileSystem, directory: str, cp: Checkpoint | None) -> int:
    """The offset below which every record of the partition in ``directory`` is known to
    be fsynced: the checkpoint's recovery point, or the head's when that is higher.

    The checkpoint moves only on roll, flush and close. After every fsync of the active
    segment (each append with flush "always") the recovery point moves to the log end and
    the head is rewritten *after* that fsync, so whatever head content survives a crash
    (a kill, or a power cut: its in-place write is kept, lost or torn, and a torn head
    fails its CRC) never names offsets that were not synced. Without a readable
    checkpoint nothing is trusted (0): deleting the checkpoint accepts a loss.
    """
    if cp is None:
        return 0
    point = cp.recovery_point
    try:
        head = unpack_head(fs.read_file(os.path.join(directory, HEAD_NAME))[:HEAD_SIZE])
    except FileNotFoundError:
        head = None
    if head is not None:
        point = max(point, head.recovery_point)
    return point


class Recovery(LogState):
    """How a partition log loads and recovers its segments when it opens alone."""

    def _load(self) -> None:
        fs = self.fs
        try:
            names = fs.listdir(self.directory)
        except FileNotFoundError:
            if not self._read_only:
                raise
            names = []  # read-only: the missing directory reads as an empty partition
        listing = read_listing(names)
        logs = listing.logs
        if not self._read_only:
            self._remove(listing.leftovers, "removing leftover file %s")
            self._remove(listing.orphans, "removing index without a log: %s")
        cp = read_checkpoint(fs, self.directory)
        self.was_clean = cp is not None and cp.clean
        self.log_start_offset = cp.log_start_offset if cp else (logs[0] if logs else 0)
        self.recovery_point = synced_recovery_point(fs, self.directory, cp)
        segments = [Segment(fs, self.directory, base, self.config) for base in logs]
        try:
            self._load_segments(segments, cp)
        except BaseException:
            for seg in segments:  # a failed open leaves no file open
                with contextlib.suppress(Exception):
                    seg.close_files()
            raise

    def _remove(self, names: list[str], message: str) -> None:
        for name in names:
            path = os.path.join(self.directory, name)
            log.info(message, path)
            self.fs.unlink(path, missing_ok=True)

    def _load_segments(self, segments: list[Segment], cp: Checkpoint | None) -> None:
        fs = self.fs
        for seg, nxt in itertools.pairwise(segments):
            seg.next_offset = nxt.base_offset
        # A crash during retention can leave segments wholly below the log start offset.
        while len(segments) > 1 and segments[1].base_offset <= self.log_start_offset:
            gone = segments.pop(0)
            if self._read_only:
                gone.close_files()
            else:
                gone.delete()
        if not segments:
            base = self.log_start_offset
            segments.append(Segment.create(fs, self.directory, base, self.config, self._now()))
            self.recovery_point = base
            self.was_clean = True
            if not self._read_only:  # read-only: the empty segment lives in memory only
                write_checkpoint(fs, self.directory, Checkpoint(base, base, clean=True))
        elif self.was_clean:
            segments[-1].load_active()
        else:
            segments = self._recover(segments)
        if segments[-1].created_ms is None:
            # Kafka measures segment_ms from the load time when records carry no timestamp.
            segments[-1].created_ms = self._now()
        self._set_segments(segments)
        self.log_start_offset = max(self.log_start_offset, segments[0].base_offset)
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)
        if self.recovery_point > self.log_end_offset:
            # every offset below the recovery point was fsynced: a log that ends before it
            # lost synced records (a file cut short), which is never repaired silently
            active = segments[-1]
            raise CorruptRecordError(
                f"{active.log_path}: the log ends at offset {self.log_end_offset} (position "
                f"{active.size}), but the checkpoint says offsets up to "
                f"{self.recovery_point - 1} were synced: records are missing (restore the "
                f"partition from a copy, or delete its checkpoint file to accept the loss)",
                active.log_path,
                active.size,
            )
        self._last_flush_ms = self._now()

    def _recover(self, segments: list[Segment]) -> list[Segment]:
        bases = [s.base_offset for s in segments]
        first = max(0, bisect.bisect_right(bases, self.recovery_point) - 1)
        for i in range(first, len(segments)):
            seg = segments[i]
            dropped = seg.recover(self.recovery_point)
            is_last = i == len(segments) - 1
            if not is_last and seg.next_offset < self.recovery_point:
                # cut at a batch boundary before the recovery point: synced records are
                # gone, and the later segments are not deleted to cover it up
                raise CorruptRecordError(
                    f"{seg.log_path}: the segment ends at offset {seg.next_offset} (position "
                    f"{seg.size}), but offsets up to {self.recovery_point - 1} were synced: "
                    f"records are missing (restore the partition from a copy, or delete "
                    f"its checkpoint file to accept the loss)",
                    seg.log_path,
                    seg.size,
                )
            self.recovered_bytes += dropped
            # a producer retrying a batch that reached the log before a crash or failed
            # fsync must find it, not write it twice
            self._producers.update(seg.producer_batches)
            if not is_last and (dropped or seg.next_offset != segments[i + 1].base_offset):
                for later in segments[i + 1 :]:
                    if self._read_only:
                        log.warning(
                            "ignoring %s: it follows data lost in %s (the store is read-only: "
                            "the file stays)",
                            later.log_path,
                            seg.log_path,
                        )
                        later.close_files()
                        continue
                    log.warning(
                        "deleting %s: it follows data lost in %s", later.log_path, seg.log_path
                    )
                    later.delete()
                del segments[i + 1 :]
                if not self._read_only:
                    self.fs.fsync_dir(self.directory)
                break
        for seg in segments[:-1]:
            seg.close_files()  # reopened lazily, like every sealed segment
        return segments
