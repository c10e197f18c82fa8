"""Mirror topics and consumer groups from one store to another (issue 17): ``logstore
mirror SRC DST``, Kafka's MirrorMaker 2 for logstore.

Both sides are :class:`~logstore.client.backend.Backend` objects (an embedded store's, a
Kafka cluster's): the mirror uses only that seam. It

* creates each source topic matching ``topics`` on the destination, with the source's
  partition count and configuration (what differs from the defaults), or grows an
  existing one to the source's partition count;
* copies every record of partition *i* to partition *i*, with its key, value, timestamp
  and headers, as the source's ``read_committed`` readers see them (no aborted
  transactions, no markers), in batches of at most ``batch_records`` records that fit the
  destination topic's ``max_message_bytes``;
* translates the committed offsets of the source's consumer groups matching ``groups`` to
  the destination (MirrorMaker 2's checkpoints), so a consumer of the group that moves
  to the destination resumes exactly where it stopped: see
  :mod:`logstore.patterns.mirror_offsets`.

**Progress, exactly once, without files of its own.** The mirror's progress in each
partition is a committed offset of its own group on the *destination*,
``logstore-mirror.<name>`` (:func:`checkpoint_group`): the next source offset to copy,
with the matching destination offset in the commit's metadata. It is committed after
every round of appends (one batch per partition at most). A mirror killed between an
append and its checkpoint finds, on restart, more records in the destination partition
than the checkpoint says; it skips exactly that many source records after the checkpoint
(counting records, not offsets: source offsets may have gaps), so nothing is copied twice
and nothing is left out. This needs the mirror to be **the only writer of its destination
topics**: a record another producer appends there is detected (the next append lands at
an unexpected offset, or a restart finds records it cannot account for) and stops the
mirror with :class:`~logstore.patterns.mirror_offsets.MirrorError`.

**Where a partition starts** when the mirror has no progress in it: at the source's end
(records produced from now on), or with ``from_beginning`` at its log start (everything).
That is what the flag means to every Kafka user (``kafka-console-consumer``, kcat; and
MirrorMaker 1 started at the end too); MirrorMaker 2 always copies everything, but a flag
named ``--from-beginning`` that is the default would mislead. Progress, once there is
some, is always resumed: the flag never copies a record twice. A partition where the
mirror has copied nothing yet (it started at the end, and nothing came) does start over
from the beginning with the flag, so forgetting it on the first run costs nothing. A
partition that appears while the mirror runs (a new topic, added partitions), or a new
partition of a topic the mirror copies already, starts at its beginning whatever the
flag: its records are all new. So does a topic first seen on a later run of a mirror
(with progress already): it appeared since the mirror started.

Not mirrored: internal topics (``__`` names), the mirror groups of other mirrors
(``logstore-mirror.*``), topic config changes after creation, topic deletions, ACLs, and
share groups. Topics keep their names (MirrorMaker 2's ``source.`` prefix is not added):
two mirrors into one destination must copy different topics.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from logstore.client.backend import Backend
from logstore.config import READ_COMMITTED
from logstore.errors import (
    LogFailedError,
    LogstoreError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
    TopicNotFoundError,
)
from logstore.patterns.mirror_groups import GROUP_PREFIX, GroupTranslator, checkpoint_group
from logstore.patterns.mirror_offsets import (
    MirroredPartition,
    MirrorError,
    MirrorStats,
)
from logstore.patterns.mirror_setup import MirrorSetup
from logstore.types import Compression, ConsumerRecord, TopicPartition

__all__ = ["GROUP_PREFIX", "Mirror", "MirrorError", "MirrorProgress", "MirrorStats",
           "checkpoint_group"]

log = logging.getLogger(__name__)

DEFAULT_BATCH_RECORDS = 2000
DEFAULT_GROUPS_INTERVAL_MS = 5000
FOLLOW_WAIT_MS = 500
CONFIRM_WAIT_MS = 1000
DEFAULT_RETRIES = 5
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


class MirrorProgress(NamedTuple):
    """What a progress callback sees: records copied so far by this run, seconds since
    it started, and the lag (source records not copied yet, summed over partitions)."""

    copied: int
    elapsed_s: float
    lag: int
    partitions: int


class Mirror(MirrorSetup):
    """Copies topics and translates group offsets from ``src`` to ``dst`` (see the
    module docstring).

    Args:
        src, dst: the two backends (an embedded store's: ``backend_for(store)``).
        name: names the mirror's checkpoint group on ``dst`` (:func:`checkpoint_group`):
            the same name resumes, another starts afresh.
        topics: a regular expression the whole topic name must match.
        groups: a regular expression the whole group name must match (None: translate
            no groups).
        from_beginning: partitions without progress start at the source's log start
            instead of its end.
        batch_records: records per append at most (and per partition per round).
        compression: of the batches written to ``dst``.
        groups_interval_ms: with ``follow``, how often groups are translated, topics
            looked for, and idle partitions' ends checked.
        retries: backend errors in a row the run rides out (see :meth:`run`).
    """

    def __init__(
        self,
        src: Backend,
        dst: Backend,
        *,
        name: str,
        topics: str = ".*",
        groups: str | None = ".*",
        from_beginning: bool = False,
        batch_records: int = DEFAULT_BATCH_RECORDS,
        compression: Compression = Compression.NONE,
        groups_interval_ms: int = DEFAULT_GROUPS_INTERVAL_MS,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        if batch_records < 1:
            raise MirrorError(f"batch_records={batch_records} must be >= 1")
        self.src = src
        self.dst = dst
        self.name = name
        self.group = checkpoint_group(name)
        self.topics = _regex(topics, "topics")
        self.groups = None if groups is None else _regex(groups, "groups")
        self.from_beginning = from_beginning
        self.batch_records = batch_records
        self.compression = compression
        self.groups_interval_s = groups_interval_ms / 1000
        self.retries = retries
        self.stats = MirrorStats()
        self._groups = GroupTranslator(src, dst, self.groups, self.stats)
        self._parts: dict[TopicPartition, MirroredPartition] = {}
        self._discovered = False
        self._empty_rounds = 0  # rounds in a row whose answer held no record
        self._started = False  # a first discovery went through

    # ------------------------------------------------------------------ running

    def sync_groups(self) -> None:
        """Translate the source groups' committed offsets to the destination once
        (:mod:`logstore.patterns.mirror_groups`)."""
        self._groups.sync(self._parts)

    def run(
        self,
        *,
        follow: bool = False,
        stop: threading.Event | None = None,
        on_progress: Callable[[MirrorProgress], None] | None = None,
        progress_interval_s: float = 0.5,
    ) -> MirrorStats:
        """Copy until the source ends observed at the start are reached (``follow``: until
        ``stop`` is set), translating groups at the start, every ``groups_interval_ms``
        with ``follow``, and at the end. Every round of appends is checkpointed, so
        ``stop`` (or a crash) loses nothing.

        A backend's :class:`~logstore.errors.StorageError` (a failed write or read, a
        Kafka cluster's :class:`~logstore.errors.ClusterError`) or LogFailedError starts
        the mirror again from its checkpoints, as a new process would, after 0.5 s, 1 s,
        2 s ... (at most 10 s); after ``retries`` of them in a row with nothing copied in
        between, or before the first setup went through, the error is raised.

        Raises:
            MirrorError: the destination does not fit (see the module docstring).
            LogstoreError: a backend's error: run again to resume.
        """
        stop = stop or threading.Event()
        started = time.monotonic()
        failures, copied = 0, 0
        while True:
            try:
                self._run(follow, stop, on_progress, progress_interval_s, started)
                break
            except (StorageError, LogFailedError) as err:  # a MirrorError is neither
                failures = 1 if self.stats.copied > copied else failures + 1
                copied = self.stats.copied
                if failures > self.retries or not self._started:
                    raise  # (never reached both sides: a wrong address, say, fails fast)
                delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (failures - 1))
                log.warning("mirror %s: %s; starting again from its checkpoints in %.1f s",
                            self.name, err, delay)
                self.stats.restarts += 1
                if stop.wait(delay):
                    break  # asked to stop: what was copied is checkpointed
                self._parts.clear()  # as a new process would: from the checkpoints
                self._discovered = False
                self._empty_rounds = 0
        self.stats.elapsed_s = time.monotonic() - started
        if on_progress is not None:
            on_progress(self.progress(started))
        return self.stats

    def _run(
        self,
        follow: bool,
        stop: threading.Event,
        on_progress: Callable[[MirrorProgress], None] | None,
        progress_interval_s: float,
        started: float,
    ) -> None:
        self.discover()
        self._started = True
        self.sync_groups()
        next_pass = next_progress = time.monotonic()
        next_pass += self.groups_interval_s
        while not stop.is_set():
            if not follow and all(p.done for p in self._parts.values()):
                break
            self._round(follow)
            now = time.monotonic()
            if follow and now >= next_pass:
                self.discover()
                self._refresh_ends()
                self.sync_groups()
                next_pass = now + self.groups_interval_s
            if on_progress is not None and now >= next_progress:
                on_progress(self.progress(started))
                next_progress = now + progress_interval_s
        self.sync_groups()

    def progress(self, started: float) -> MirrorProgress:
        """Where the run is: the lag is against the source's ends as last seen (at the
        start; with ``follow``, every ``groups_interval_ms``)."""
        lag = sum(max(0, p.end - p.map.position) for p in self._parts.values())
        return MirrorProgress(
            self.stats.copied, time.monotonic() - started, lag, len(self._parts)
        )

    def _refresh_ends(self) -> None:
        for p in list(self._parts.values()):
            with contextlib.suppress(TopicNotFoundError):
                p.end = self.src.offset_range(p.tp, READ_COMMITTED)[1]

    def _round(self, follow: bool) -> None:
        """One fetch of every partition still to copy, its appends, one checkpoint.

        The last offsets of a partition may hold no record to copy (transaction
        markers, aborted transactions): two rounds in a row that found no record in any
        partition (the second waiting ``CONFIRM_WAIT_MS`` for one) end a run without
        ``follow``. Those offsets are not checkpointed as passed (a Kafka fetch may
        answer before its records arrive: better to look again next time than to skip
        records), only taken as empty for the lag and for translating group offsets
        (``OffsetMap.seems_empty_to``). One partition missing from an answer says
        nothing (a Kafka fetch answers the partitions whose records arrived first)."""
        active = [p for p in self._parts.values() if follow or not p.done]
        if not active:
            time.sleep(FOLLOW_WAIT_MS / 1000)  # follow, and no topic matches yet
            return
        wait = FOLLOW_WAIT_MS if follow else CONFIRM_WAIT_MS if self._empty_rounds else 0
        try:
            answer = self._fetch({p.tp: p.map.src_next for p in active}, wait)
        except TopicNotFoundError:
            self._forget_deleted()
            return
        dirty = []
        for p in active:
            got = answer.get(p.tp)
            if isinstance(got, OffsetOutOfRangeError):
                self._out_of_range(p, got)
                dirty.append(p)
            elif isinstance(got, LogstoreError):
                raise got
            elif got and (got := [r for r in got if r.offset >= p.map.src_next]):
                beyond = not follow and got[-1].offset >= p.stop
                if beyond:  # without follow: up to the stop only
                    got = [r for r in got if r.offset < p.stop]
                self._copy(p, got)
                if beyond:
                    p.map.skip_to(p.stop)
                dirty.append(p)
                p.done = not follow and p.map.src_next >= p.stop
        self._empty_rounds = 0 if dirty else self._empty_rounds + 1
        if self._empty_rounds >= 2:
            for p in active:
                p.map.seems_empty_to(p.end)
                p.done = not follow
        self._checkpoint(dirty)

    def _copy(self, p: MirroredPartition, records: Sequence[ConsumerRecord]) -> None:
        """Append ``records`` to ``p`` on the destination: batches of ``batch_records``,
        halved while the destination refuses one as over its ``max_message_bytes``
        (nothing of it written: sizes are not estimated up front, which would cost a
        look at every record)."""
        size = self.batch_records
        pending = [records[i:i + size] for i in range(0, len(records), size)]
        while pending:
            chunk = pending.pop(0)
            rows = [(r.timestamp, r.key, r.value, r.headers) for r in chunk]
            try:
                result = self.dst.append(p.tp, rows, topic_id=p.dst_topic_id,
                                         compression=self.compression)
            except RecordTooLargeError as err:
                if len(chunk) == 1:
                    raise MirrorError(
                        f"cannot copy {p.tp.topic}-{p.tp.partition} offset {chunk[0].offset}: "
                        f"a record of {err.size} bytes is over the destination topic's "
                        f"max_message_bytes ({err.limit}); raise it on the destination, or "
                        f"mirror with compression"
                    ) from err
                if self.dst.offset_range(p.tp)[1] != p.map.dst_next:
                    raise  # part of it was written: a restart accounts for that part
                half = len(chunk) // 2
                pending[:0] = [chunk[:half], chunk[half:]]
                continue
            if (result.base_offset != p.map.dst_next
                    or result.last_offset - result.base_offset + 1 != len(chunk)):
                raise MirrorError(
                    f"destination {p.tp.topic}-{p.tp.partition}: the mirror's records "
                    f"landed at offset {result.base_offset}, not {p.map.dst_next}: "
                    f"something else writes to this topic; a mirror must be the only "
                    f"writer of its destination topics"
                )
            p.map.add([r.offset for r in chunk], result.base_offset)
            self.stats.copied += len(chunk)
            self.stats.batches += 1

    def _out_of_range(self, p: MirroredPartition, err: OffsetOutOfRangeError) -> None:
        position = p.map.src_next
        if position < err.log_start_offset:
            log.warning(
                "%s-%d: source offsets %d..%d were deleted (retention) before the mirror "
                "copied them", p.tp.topic, p.tp.partition, position, err.log_start_offset - 1,
            )
            self.stats.lost_to_retention += err.log_start_offset - position
            p.map.skip_to(err.log_start_offset)
            return
        raise MirrorError(
            f"source {p.tp.topic}-{p.tp.partition} ends at offset {err.log_end_offset}, "
            f"before the mirror's position {position}: it lost records the mirror copied "
            f"(truncated, or deleted and created again); delete the destination topic "
            f"to mirror it afresh"
        )

    def _forget_deleted(self) -> None:
        existing = set(self.src.list_topics())
        for tp in [tp for tp in self._parts if tp.topic not in existing]:
            log.warning("source topic %r was deleted: no longer mirrored", tp.topic)
            del self._parts[tp]


def _regex(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise MirrorError(f"bad {what} pattern {pattern!r}: {err}") from err
