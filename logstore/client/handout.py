"""Which records a consumer has handed to the application: the bookkeeping behind
positions when records are handed out one at a time (iteration, ``async for``).

A consumer's *position* in a partition is the offset after the last record handed to the
application. ``poll()`` hands out a whole list at once; iteration hands out one record per
step, and the application may commit, seek, pause or poll between two steps. Iteration
hands each partition's run of fetched records out through a list iterator (at C speed)
and derives the position lazily from how far the iterator got (:meth:`Handout.in_flight`),
so a record costs nothing extra to hand out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from logstore.types import ConsumerRecord, TopicPartition

Run = tuple[TopicPartition, list[ConsumerRecord]]
"""Records of one partition from one fetch, in offset order."""


class Handout:
    """The records fetched for one-at-a-time hand-out, and the one in flight.

    ``positions`` is the consumer's own dict: :meth:`settle` writes into it.
    """

    def __init__(self, positions: dict[TopicPartition, int]) -> None:
        self.positions = positions
        # Partitions whose fetched records may still be handed out (a seek, pause, poll
        # or rebalance since the fetch drops them).
        self.fetchable: set[TopicPartition] = set()
        self._run: tuple[TopicPartition, list[ConsumerRecord], Any] | None = None
        self._single: ConsumerRecord | None = None  # the asyncio twin's last record

    def allow(self, runs: list[Run]) -> None:
        """Records of ``runs`` (just fetched) may be handed out."""
        self.fetchable.update(tp for tp, _ in runs)

    def start(self, tp: TopicPartition, run: list[ConsumerRecord]) -> Iterator[ConsumerRecord]:
        """The iterator that hands out ``run`` (the caller does ``yield from`` it, then
        calls :meth:`finish`); :meth:`end` stops it early."""
        it = iter(run)
        self._run = (tp, run, it)
        return it

    def finish(self, it: Iterator[ConsumerRecord]) -> None:
        """The application came back after the last record of the run ``it`` handed
        out: it handled it (unless :meth:`end` stopped the run)."""
        if self._run is not None and self._run[2] is it:
            tp, run, _ = self._run
            self.positions[tp] = run[-1].offset + 1
            self._run = None

    def hand_out_one(self, record: ConsumerRecord) -> None:
        """``record`` is handed out (the asyncio twin, one record at a time)."""
        self.settle()
        self.positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self._single = record

    def came_back(self) -> None:
        """The application asked for the next record: it handled the one in flight."""
        self.settle()
        self._single = None

    def in_flight(self) -> tuple[TopicPartition, ConsumerRecord] | None:
        """The last record handed out, if the application has not come back for the next
        one yet (it may be handling it still)."""
        if self._run is not None:
            tp, run, it = self._run
            index = len(run) - it.__length_hint__() - 1
            return (tp, run[index]) if index >= 0 else None
        if self._single is not None:
            record = self._single
            return TopicPartition(record.topic, record.partition), record
        return None

    def settle(self) -> None:
        """Write the position after the last record handed out into ``positions``."""
        found = self.in_flight()
        if found is not None:
            self.positions[found[0]] = found[1].offset + 1

    def end(self, *tps: TopicPartition) -> None:
        """Settle the position, and hand out nothing more of the records fetched from
        ``tps`` (every partition if none are named)."""
        self.settle()
        if tps:
            self.fetchable.difference_update(tps)
        else:
            self.fetchable.clear()
        if self._run is not None and (not tps or self._run[0] in tps):
            _, run, it = self._run
            it.__setstate__(len(run))  # exhausted: ``yield from`` ends at the next step
            self._run = None
        record = self._single
        if record is not None and (
            not tps or TopicPartition(record.topic, record.partition) in tps
        ):
            self._single = None
