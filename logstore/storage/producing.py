"""Idempotent producers in a partition log: their state loaded, kept current, saved.

:class:`ProducerTracking` is the part of :class:`~logstore.storage.log.PartitionLog`
between the reads (:mod:`~logstore.storage.reads`) and the writes (:mod:`~logstore.storage.log`)
that keeps a :class:`~logstore.storage.producers.ProducerState` (Kafka's
``ProducerStateManager``: the rules are in :mod:`~logstore.storage.producers`), as Kafka's
``UnifiedLog``/``LogLoader`` do, adapted to processes that share a partition:

* **Loaded when first needed**, by this log object's first write (under the writer lock,
  with the head applied), never by an open or a read: opening a partition, and every
  reader, cost what they did. A load takes the newest readable snapshot at or below the
  log end (a damaged one is ignored with a WARNING and removed; the one before it is
  tried), drops the producers it holds that are expired, then replays the batch headers
  from its offset to the log end (a header-only walk,
  :func:`~logstore.storage.batches.walk_batches` with ``verify=False``).
* **Kept current**: every append of this log updates it; before each write the batches
  other processes appended since (the head says where the log ends now) are replayed
  the same way, so appends of one producer id through two processes are checked
  against each other. A state more than :data:`SNAPSHOT_INTERVAL_BATCHES` offsets behind
  loads a newer snapshot instead, when there is one.
* **Saved** as ``<offset>.snapshot``: at each roll (the new segment's base offset;
  fsynced unless flush is "never", as the rolled segment is), at a clean close (the log
  end, likewise), and, not fsynced, every :data:`SNAPSHOT_INTERVAL_BATCHES` batches and
  right after a load that found no snapshot. Writing the last two removes the other
  snapshots inside the active segment, so a segment keeps at most one besides the one
  at its base. A snapshot that cannot be written is skipped with a WARNING: snapshots
  are derived data, like indexes.
* **Deleted** as Kafka deletes them: once the recovery point has moved past them, only
  the snapshots from the segment before the active one on are kept (older ones only
  serve a crash that cuts the log back that far, which the recovery point rules out;
  they would also make every open list a thousand more names in a log of a thousand
  segments); with their segments (retention, ``delete_records``: every snapshot below
  the new first segment's base); and, when a load finds them, those past the log end
  (written before a crash lost the offsets they cover). The recovery plan
  (:mod:`~logstore.storage.plan`) removes the last two kinds too when a partition opens
  alone.

Bounds: a load replays at most about :data:`SNAPSHOT_INTERVAL_BATCHES` batches (the
newest snapshot is that close to the log end), except after a power cut that lost the
unsynced newest snapshot (then from the active segment's base, which the recovery scan
has just read anyway). A log without any snapshot (written by an earlier logstore, or
whose snapshots are all damaged) replays only its last
:data:`MAX_REPLAY_WITHOUT_SNAPSHOT` offsets (so at most that many batches) and saves a
snapshot at once: Kafka replays such a log from its start, which for an old log of a
billion one-record batches would add minutes to its first write; producers older than
that window are unknown, and so may start at any sequence (Kafka's rule for producers
it holds nothing of), which is also what the earlier logstore did after any restart.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable

from logstore.errors import CorruptionError, CorruptRecordError, LogstoreError, StorageError
from logstore.storage.batches import walk_batches
from logstore.storage.listing import parse_snapshot_name, snapshot_path
from logstore.storage.producers import ProducerState, read_snapshot, write_snapshot
from logstore.storage.reads import LogReads
from logstore.storage.segment import Segment

log = logging.getLogger("logstore.storage.log")

SNAPSHOT_INTERVAL_BATCHES = 10_000
"""A snapshot is written after this many batches (replaying that many headers takes
about 30 ms), so a load never replays much more."""
MAX_REPLAY_WITHOUT_SNAPSHOT = 10_000
"""How many of its last offsets a log without a snapshot replays (at most that many
batches: the same bound as a log with snapshots)."""


class ProducerTracking(LogReads):
    """The idempotent producers' state of a partition log (see the module docstring)."""

    _producer_state: ProducerState | None
    """None until this log's first write loads it."""
    _snapshots_retired_below: int | None
    """Snapshots below this offset were deleted by :meth:`_retire_snapshots` (None: not yet
    run by this log)."""

    def _producers_at_end(self) -> ProducerState:
        """The producer state, covering every batch below the log end: loaded or caught
        up with other processes' appends first (the writer lock is held)."""
        state = self._caught_up(self._producer_state, self.log_end_offset)
        if state.log_start_offset != self.log_start_offset:
            state.truncate_head(self.log_start_offset)
        self._producer_state = state
        return state

    def _caught_up(
        self, state: ProducerState | None, end: int, *, reader: bool = False
    ) -> ProducerState:
        """``state`` (None: none yet) brought up to ``end``: the batches since replayed,
        or, when it is missing, out of the log's range or more than a snapshot interval
        behind, loaded anew (:meth:`_load_producers`)."""
        if (
            state is None
            or not self._segments[0].base_offset <= state.end_offset <= end
            or end - state.end_offset > SNAPSHOT_INTERVAL_BATCHES
        ):
            return self._load_producers(state, end, reader=reader)
        if state.end_offset < end:
            self._replay_producers(state, end)
        return state

    def _load_producers(
        self, current: ProducerState | None, end: int, *, reader: bool = False
    ) -> ProducerState:
        """The state from the newest readable snapshot at or below ``end`` (or
        ``current``, if that is newer), replayed up to ``end``. A ``reader`` (a
        ``read_committed`` read, without the writer lock) changes no file."""
        first_base = self._segments[0].base_offset
        usable = None
        if current is not None and first_base <= current.end_offset <= end:
            usable = current
        offsets = self._snapshot_offsets()
        if not reader:
            self._remove_snapshots(o for o in offsets if o > end)  # stale: offsets lost since
        state: ProducerState | None = None
        for offset in reversed(offsets):
            if offset > end:
                continue
            if offset < first_base or (usable is not None and offset <= usable.end_offset):
                break
            try:
                state = read_snapshot(self.fs, self.directory, offset)
            except FileNotFoundError:
                continue
            except CorruptionError as err:
                log.warning("ignoring a damaged producer snapshot: %s", err)
                if not reader:
                    self._remove_snapshots([offset])
                continue
            state.remove_expired(self._now())
            break
        fresh = state is None and usable is None
        if state is None:
            state = usable
        if state is None:
            floor = max(first_base, self.log_start_offset)
            start = max(floor, end - MAX_REPLAY_WITHOUT_SNAPSHOT)
            if start > floor:
                log.info(
                    "%s: no producer snapshot: replaying the producer state of the last %d "
                    "offsets only (from offset %d; older producers are unknown)",
                    self.directory, end - start, start,
                )
            state = ProducerState(start, name=self.directory)
            state.checked_expiry_ms = self._now()
        self._replay_producers(state, end)
        if fresh and not reader:
            self._producer_state = state
            self._snapshot_in_segment(durable=False)  # the replay bound applies once
        return state

    def _replay_producers(self, state: ProducerState, end: int) -> None:
        """Apply the batches from ``state.end_offset`` to ``end`` (headers only). Damage
        in the log there makes every producer forgotten (with a WARNING): they are then
        new, so none of their batches is refused for what could not be read."""
        start = state.end_offset
        try:
            i = max(0, bisect.bisect_right(self._bases, start) - 1)
            for seg in self._segments[i:]:
                if start >= end:
                    break
                position, expected = 0, seg.base_offset
                if start > seg.base_offset:
                    found = seg.find_batch(start)
                    if found is None:
                        continue
                    position, expected = found.position, found.base_offset
                self._track_sealed(seg)
                walk = walk_batches(
                    seg.log_file, position, seg.size, expected=expected, gaps=seg.gaps,
                    verify=False,
                )
                for header in walk:
                    state.replay(header)
                if walk.stop is not None:
                    raise CorruptRecordError(
                        f"{seg.log_path}: {walk.stop.message}", seg.log_path, walk.stop.position
                    )
                start = state.end_offset
        except CorruptRecordError as err:
            log.warning(
                "%s: cannot replay the producer state past damage in the log (%s): every "
                "producer is forgotten (their next batches are accepted at any sequence)",
                self.directory, err,
            )
            state.forget(end)
        state.end_offset = end

    # ------------------------------------------------------------------ snapshots

    def _snapshot_offsets(self) -> list[int]:
        names = self.fs.listdir(self.directory)
        return sorted(o for o in map(parse_snapshot_name, names) if o is not None)

    def _listed_snapshots(self) -> list[int]:
        """:meth:`_snapshot_offsets` for housekeeping: a listing that fails is a WARNING
        (and no snapshot is deleted), never a failed write."""
        try:
            return self._snapshot_offsets()
        except StorageError as err:
            log.warning("%s: cannot list the producer snapshots: %s", self.directory, err)
            return []

    def _remove_snapshots(self, offsets: Iterable[int]) -> None:
        """Delete these snapshots (the caller fsyncs the directory if it must)."""
        if self._read_only:
            return
        for offset in offsets:
            try:
                self.fs.unlink(snapshot_path(self.directory, offset), missing_ok=True)
            except StorageError as err:
                log.warning("cannot delete producer snapshot at offset %d: %s", offset, err)

    def _save_producers(self, state: ProducerState, *, durable: bool) -> bool:
        """Write ``state`` as the snapshot at its end offset; False if it was not written
        (a read-only store, already there, or a failure: a WARNING)."""
        if self._read_only or state.snapshot_offset == state.end_offset:
            return False
        try:
            write_snapshot(self.fs, self.directory, state, durable=durable)
        except StorageError as err:
            log.warning(
                "%s: cannot write the producer snapshot at offset %d (%s): a later load "
                "replays from an older one", self.directory, state.end_offset, err,
            )
            return False
        state.snapshot_offset = state.end_offset
        state.unsnapshotted = 0
        return True

    def _snapshot_at_roll(self, sealed: Segment, *, durable: bool) -> None:
        """Before a roll (the new segment's files do not exist yet): save the state at
        its base (the log end; the caller fsyncs the directory), remove this log's
        snapshot inside ``sealed`` and retire the old ones. Never fails the roll."""
        try:
            state = self._producers_at_end()
            previous = state.snapshot_offset
            if (
                self._save_producers(state, durable=durable)
                and previous is not None
                and sealed.base_offset < previous < state.end_offset
            ):
                self._remove_snapshots([previous])
            point = self.log_end_offset if durable else self.recovery_point
            self._retire_snapshots(sealed.base_offset, point)
        except LogstoreError as err:
            log.warning("%s: no producer snapshot at the roll: %s", self.directory, err)

    def _snapshot_in_segment(self, *, durable: bool) -> None:
        """Save the (current) state at the log end, and remove the other snapshots inside
        the active segment."""
        state = self._producer_state
        if state is None or not self._save_producers(state, durable=durable):
            return
        base, end = self.active_segment.base_offset, state.end_offset
        self._remove_snapshots(o for o in self._listed_snapshots() if o > base and o != end)

    def _snapshot_at_close(self) -> None:
        """At a clean close: save the state at the log end, if this log loaded it (else
        another process's snapshots stand). Never fails the close."""
        if self._producer_state is None:
            return
        try:
            self._producers_at_end()
            self._snapshot_in_segment(durable=self.config.flush != "never")
        except LogstoreError as err:
            log.warning("%s: no producer snapshot at close: %s", self.directory, err)

    def _retire_snapshots(self, previous_base: int, recovery_point: int) -> None:
        """Delete the snapshots Kafka no longer keeps (its Log's
        ``deleteSnapshotsAfterRecoveryPointCheckpoint``): those below ``previous_base``
        (the segment before the active one), unless they lie at or above the segment
        before the one holding ``recovery_point`` (a crash may cut the log back to
        there). Called at a roll (before the new segment's files exist, with what the
        segment before the active one and the recovery point will be after it), a
        flush and a clean close; the first call of this log lists the directory, the
        later ones delete only the segment bases newly below."""
        if self._read_only:
            return
        bases = self._bases
        i = bisect.bisect_left(bases, recovery_point) - 1  # Kafka's lowerSegment
        floor = min(previous_base, bases[i] if i >= 0 else recovery_point)
        done = self._snapshots_retired_below
        if done is None:
            self._remove_snapshots(o for o in self._listed_snapshots() if o < floor)
        elif floor > done:
            self._remove_snapshots(
                bases[bisect.bisect_left(bases, done) : bisect.bisect_left(bases, floor)]
            )
        self._snapshots_retired_below = max(floor, done or 0)

    def _retire_snapshots_now(self) -> None:
        """:meth:`_retire_snapshots` after a flush or a clean close."""
        bases = self._bases
        self._retire_snapshots(bases[-2] if len(bases) > 1 else bases[-1], self.recovery_point)

    def _remove_snapshots_below(self, offset: int) -> None:
        """Delete the snapshots below ``offset`` (the first segment's base, after the
        segments below it were deleted)."""
        self._remove_snapshots(o for o in self._listed_snapshots() if o < offset)
        if self._producer_state is not None:
            self._producer_state.truncate_head(self.log_start_offset)
