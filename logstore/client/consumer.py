"""The consumer: reads partitions from a position, alone or as a member of a group.

* ``assign([...])`` reads the given partitions, with no group coordination.
* ``subscribe([...])`` (with a ``group_id``) joins the group: its live members divide
  the topics' partitions (see :mod:`logstore.client.membership`), every group gets every
  record (pub-sub across groups, a work queue within one).

Positions start from the group's committed offset, else ``auto_offset_reset``
("earliest" or "latest"). A partition's *position* is the offset after the last record
**handed to the application** (Kafka's rule): everything one ``poll()`` returns, or, when
iterating, each record as it is yielded, never the rest of what a fetch read ahead.
``commit()`` with no arguments stores the positions in the group's committed offsets;
with ``enable_auto_commit`` they are committed every ``auto_commit_interval_ms`` (before
the next fetch), before a partition is given up in a rebalance, and on close, which gives
at-least-once delivery (a refused auto-commit is logged, as in Kafka, not raised; an
explicit ``commit()`` raises :class:`~logstore.errors.CommitFailedError`, which an
application catches and carries on: its next ``poll()`` rejoins). Leaving a ``with``
block (or an iteration) by an exception does not count the record being handled when the
exception was raised as consumed.

Fencing: a member that stopped polling for longer than ``max_poll_interval_ms`` (a
process paused by SIGSTOP, a loop stuck in the application) is removed from its group,
and its partitions move to the others. When it polls again, ``poll()`` raises
:class:`~logstore.errors.UnknownMemberIdError` (or IllegalGenerationError) once, after
dropping those partitions (``on_lost``, not ``on_revoke``: they are another member's
now), and its ``commit()`` raises :class:`~logstore.errors.CommitFailedError`: it can
neither go on reading them unknowingly nor commit over their new owner. The next
``poll()`` rejoins.

Metadata: see :mod:`logstore.client.topics`. While a topic is deleted and not created
again, ``poll()`` raises TopicNotFoundError.

Delivery recipes:

* at-most-once: ``commit()`` right after ``poll()``, then process.
* at-least-once: process, then ``commit()`` (a crash re-delivers what was not committed).
"""


from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Self

from logstore.client.commits import FENCING_ERRORS
from logstore.client.consumer_core import ConsumerCore
from logstore.client.handout import Run
from logstore.errors import (
    CommitFailedError,
    NoOffsetError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    TopicNotFoundError,
)
from logstore.types import ConsumerRecord, OffsetAndTimestamp, TopicPartition

__all__ = [  # the names this module always offered, wherever they live now
    "CommitFailedError",
    "Consumer",
    "ConsumerRecord",
    "NoOffsetError",
    "OffsetAndTimestamp",
]

_FENCED = FENCING_ERRORS
_WAIT_SLICE_MS = 50  # a waiting poll looks at its group at least this often


class Consumer(ConsumerCore):
    """Reads records. Not thread-safe (like Kafka's consumer): use one per thread.

    Args:
        store: the open store (or another :class:`~logstore.client.backend.Backend`).
        topics: topics to subscribe to (needs ``group_id``), or None to ``assign`` later.
        group_id: the consumer group; committed offsets are kept per group.
        auto_offset_reset: where to start without a committed offset: "earliest",
            "latest" (Kafka's default) or "none" (raise :class:`NoOffsetError`).
        enable_auto_commit: commit returned positions every ``auto_commit_interval_ms``.
        max_poll_records: the most records one ``poll()`` returns.
        fetch_max_bytes: bytes read from one partition per fetch.
        session_timeout_ms: a member whose process died is noticed at once (its lock
            is free); one reached over the network would be dropped after this long.
        heartbeat_interval_ms: how often a member tells the group it is alive (default
            a third of the session timeout).
        max_poll_interval_ms: a member that does not poll for longer than this leaves
            the group, and its partitions move to the others (Kafka's rule; default 5
            minutes). Its next poll raises UnknownMemberIdError, then it rejoins.
        assignor: "range", "roundrobin" or "sticky".
        on_assign, on_revoke: called with the partitions gained or about to be lost in a
            rebalance (commit in ``on_revoke`` to hand over exactly where you are).
        on_lost: called with the partitions lost when this member was fenced (they are
            another member's already: a commit would be refused).
        consumer_timeout_ms: iteration stops after this long without records (None:
            iterate until closed).
        metadata_max_age_ms: look at each topic read at most this often (and at once on
            an unknown partition or a deleted topic): a grown topic is rebalanced, a
            re-created one read in its new incarnation, within it.
        group_instance_id: a static member's id (Kafka's ``group.instance.id``): a new
            member with the same id takes its place.
        isolation_level: "read_uncommitted" (Kafka's default: every record) or
            "read_committed": only records of committed transactions (and those written
            outside transactions), up to the last stable offset; aborted ones skipped.
    """

    # ------------------------------------------------------------------ positions

    def position(self, tp: TopicPartition | tuple[str, int]) -> int:
        """The offset of the next record ``poll()`` returns from ``tp``."""
        tp = TopicPartition(*tp)
        self._check_assigned(tp)
        self.handout.settle()
        if tp not in self._positions:
            self._positions[tp] = self._starts.start(tp)
        return self._positions[tp]

    def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        """Read ``tp`` from ``offset`` next (replay or skip)."""
        tp = TopicPartition(*tp)
        self._check_assigned(tp)
        if offset < 0:
            raise OffsetOutOfRangeError(offset, 0, 0)
        self.handout.end(tp)
        self._positions[tp] = offset
        self._topics.from_start.discard(tp)

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps or tuple(self._assigned):
            self.seek(tp, self._backend.offset_range(TopicPartition(*tp))[0])

    def seek_to_end(self, *tps: TopicPartition) -> None:
        for tp in tps or tuple(self._assigned):
            self.seek(tp, self._starts.end(TopicPartition(*tp))[1])

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """For each partition, the first offset with a timestamp >= the given one (Kafka's
        ListOffsets), or None if there is none."""
        return {
            TopicPartition(*tp): self._backend.offset_for_timestamp(TopicPartition(*tp), ts)
            for tp, ts in timestamps.items()
        }

    def seek_to_timestamp(self, timestamp: int, *tps: TopicPartition) -> None:
        """Replay from ``timestamp`` (ms): every partition (or ``tps``) continues at its
        first record with a timestamp >= it, or at its end if there is none."""
        targets = list(tps or self._assigned)
        found = self.offsets_for_times({tp: timestamp for tp in targets})
        for tp in targets:
            hit = found[tp]
            if hit is None:
                self.seek_to_end(tp)
            else:
                self.seek(tp, hit.offset)

    # ------------------------------------------------------------------ polling

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records from the assigned partitions, waiting up to ``timeout_ms`` for some.

        Every record returned counts as handed to the application: the positions move
        past them (and the next ``commit()`` or auto-commit stores that).

        Raises:
            UnknownMemberIdError, IllegalGenerationError: this member was fenced (see
                the module's docstring); the next poll rejoins.
            TopicNotFoundError: a topic read was deleted.
        """
        out: list[ConsumerRecord] = []
        for tp, run in self.poll_runs(timeout_ms, max_records):
            self._positions[tp] = run[-1].offset + 1
            out += run
        return out

    def poll_runs(self, timeout_ms: int, max_records: int | None) -> list[Run]:
        """Fetch up to ``max_records`` (one run of records per partition), waiting up to
        ``timeout_ms`` for some; the positions do not move (the caller moves them, as
        :meth:`poll` does at once and iteration does record by record)."""
        self._check_open()
        self.handout.end()  # records an iteration fetched before are not handed out now
        limit = max_records or self.max_poll_records
        deadline = time.monotonic() + timeout_ms / 1000
        pause = 0.0001
        while True:
            self._refresh_metadata()
            self._poll_group()
            self._maybe_auto_commit()
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                runs = self._fetch(limit, min(left_ms, _WAIT_SLICE_MS))
            except (TopicNotFoundError, PartitionNotFoundError):
                # deleted, re-created or grown since the last look: look now (raises
                # TopicNotFoundError if a topic read is gone), then fetch again
                self._refresh_metadata(force=True)
                runs = self._fetch(limit, 0)
            except _FENCED as err:
                self._fenced(err)  # raises unless it only raced this member's rebalance
                runs = []
            if runs or time.monotonic() >= deadline:
                return runs
            if not self._fetchable_partitions():  # nothing to wait on in a fetch
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 0.002)

    def _fetchable_partitions(self) -> list[TopicPartition]:
        return [
            tp for tp in self._assigned if tp not in self._paused and self._topics.readable(tp)
        ]

    def _fetch(self, limit: int, wait_ms: int) -> list[Run]:
        membership = self._membership
        return self._fetcher.fetch(
            self._fetchable_partitions(),
            limit,
            wait_ms,
            position=self.position,
            reset=self._reset_out_of_range,
            member=None if membership is None else membership.member,
        )

    def _reset_out_of_range(self, tp: TopicPartition) -> None:
        start, end = self._starts.end(tp)
        self._positions[tp] = self._starts.reset(tp, start, end)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records one at a time. Each record counts as handed out when it is yielded, so
        ``commit()`` in the loop body commits up to and including it, never the records a
        fetch read ahead. If the loop body raises, its record stays in flight, and leaving
        a ``with`` block by that exception does not count it as consumed."""
        limit = self.consumer_timeout_ms
        idle_since = time.monotonic()
        handout = self.handout
        while not self._closed:
            wait_ms = 100
            if limit is not None:
                left = limit - (time.monotonic() - idle_since) * 1000
                if left <= 0:
                    return
                wait_ms = min(wait_ms, max(1, int(left)))
            runs = self.poll_runs(wait_ms, None)
            handout.allow(runs)
            for tp, run in runs:
                if not self.may_hand_out(tp):
                    continue
                it = handout.start(tp, run)
                yield from it
                handout.finish(it)
            if runs:
                idle_since = time.monotonic()  # idle time counts from the last hand-out

    def may_hand_out(self, tp: TopicPartition) -> bool:
        """Whether records fetched for iteration from ``tp`` may still be handed out: not
        once it was sought, paused or revoked, or the consumer polled or closed."""
        return (
            not self._closed
            and tp in self.handout.fetchable
            and tp not in self._paused
            and tp in self._assigned
        )

    def pause(self, *tps: TopicPartition) -> None:
        paused = [TopicPartition(*tp) for tp in tps]
        self.handout.end(*paused)
        self._paused.update(paused)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(TopicPartition(*tp) for tp in tps)

    def paused(self) -> list[TopicPartition]:
        """The partitions :meth:`pause` paused and :meth:`resume` did not resume yet
        (Kafka's ``paused()``)."""
        return sorted(self._paused)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Commit (with auto-commit), leave the group and release partitions. Idempotent."""
        self.close_after(failed=False)

    def close_after(self, *, failed: bool) -> None:
        """Close; ``failed``: an exception escaped while the application handled the
        record in flight, so it was not consumed (neither auto-commit nor the next member
        may skip it)."""
        if self._closed:
            return
        found = self.handout.in_flight()
        self.handout.end()  # an iteration in progress hands out nothing more
        if failed and found is not None:
            self._positions[found[0]] = found[1].offset
        try:
            if self._membership is None:
                if self.enable_auto_commit:
                    self._auto_commit(list(self._assigned))
            else:
                self._membership.leave(on_revoke=self._revoked)
        finally:
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close_after(failed=exc_type is not None)
