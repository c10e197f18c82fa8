"""Priorities: one logical queue whose levels are topics, read by one consumer group.

:class:`PriorityConsumer` subscribes one :class:`~logstore.client.consumer.Consumer` to
every level's topic (highest first), so the group's members (threads or processes)
share each level's partitions as any group does, and ``commit()`` commits every level.

At each ``poll()`` it looks at each level's **backlog** (the assigned partitions' log end
offsets minus the positions) and hands records out by the policy:

* ``mode="strict"``: a level's records only while no higher level has a backlog, as seen
  at that poll. A high record that arrives while a poll runs is handed out from the next
  poll on, before any more lower ones.
* ``mode="weighted"``: while several levels have a backlog, they share the hand-out in
  proportion to their ``weights``, by smooth weighted round-robin (nginx's): each pick
  adds every eligible level's weight to its credit, takes the level with the most credit
  and charges it the eligible weights' sum. Weights 3:1 hand out H H L H, H H L H, ...;
  a level with a backlog is never starved, and a level without one gives its share to
  the others. The credits carry over from poll to poll.

Records are fetched from the chosen level only (the others are paused); records fetched
and not handed out are given back (the partition is sought back to the first of them), so
a position never passes a record the application did not get, not even in the middle of a
poll (when a rebalance may commit it).

Limits: the backlog counts offsets, so on a compacted topic (gaps) a level may look fuller
than it is; its fetch then comes back short and the level sits out the rest of that poll.
Priorities hold per member: two members of the group each follow the policy for the
partitions they own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

from logstore.client.backend import Backend, resolve_backend
from logstore.client.consumer import Consumer
from logstore.errors import InvalidConfigError
from logstore.types import ConsumerRecord, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

__all__ = ["MODES", "PriorityConsumer", "SmoothWeightedRoundRobin"]

MODES = ("strict", "weighted")
DEFAULT_WEIGHTS = (8, 3, 1)


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round-robin over ``len(weights)`` choices."""

    def __init__(self, weights: Sequence[int]) -> None:
        self.weights = list(weights)
        self.credit = [0] * len(weights)

    def pick(self, eligible: Sequence[int]) -> int:
        """The next choice among ``eligible`` (indexes; not empty)."""
        total = 0
        best = eligible[0]
        for i in eligible:
            self.credit[i] += self.weights[i]
            total += self.weights[i]
            if self.credit[i] > self.credit[best]:
                best = i
        self.credit[best] -= total
        return best

    def unpick(self, chosen: int, eligible: Sequence[int]) -> None:
        """Undo :meth:`pick` (it chose ``chosen`` among ``eligible``)."""
        for i in eligible:
            self.credit[i] -= self.weights[i]
        self.credit[chosen] += sum(self.weights[i] for i in eligible)


class PriorityConsumer:
    """A consumer of priority levels (topics, highest first). Not thread-safe (one per
    thread, like a Consumer); use as a context manager.

    Args:
        store: the open store (or another backend).
        group: the consumer group (required: offsets are committed per level).
        levels: the levels' topics, highest priority first.
        mode: "strict" or "weighted".
        weights: one positive weight per level (weighted mode; default 8, 3, 1 for three
            levels, else all 1).
        options: passed to the :class:`~logstore.client.consumer.Consumer`
            (``auto_offset_reset`` defaults to "earliest", ``enable_auto_commit`` to False).
    """

    def __init__(
        self,
        store: Store | Backend,
        group: str,
        levels: Sequence[str],
        *,
        mode: str = "strict",
        weights: Sequence[int] | None = None,
        **options: Any,
    ) -> None:
        levels = list(levels)
        if not levels or len(set(levels)) != len(levels):
            raise InvalidConfigError(
                f"levels={levels!r}: give one topic per level, each once, highest first"
            )
        if mode not in MODES:
            raise InvalidConfigError(f"mode={mode!r} is not one of {MODES}")
        if weights is None:
            weights = DEFAULT_WEIGHTS if len(levels) == 3 else (1,) * len(levels)
        weights = list(weights)
        if len(weights) != len(levels) or any(w < 1 for w in weights):
            raise InvalidConfigError(
                f"weights={weights!r}: give one positive integer per level ({len(levels)})"
            )
        self.group = group
        self.levels = levels
        self.mode = mode
        self.weights = weights
        self._level_of = {topic: i for i, topic in enumerate(levels)}
        self._backend = resolve_backend(store)
        options.setdefault("auto_offset_reset", "earliest")
        options.setdefault("enable_auto_commit", False)
        self.consumer = Consumer(self._backend, levels, group_id=group, **options)
        """The consumer underneath (for ``position``, ``committed``, ``assignment``...)."""
        self._rr = SmoothWeightedRoundRobin(weights)

    # ------------------------------------------------------------------ polling

    def backlogs(self) -> list[int]:
        """Per level, the records not yet handed out in this member's partitions."""
        out = [0] * len(self.levels)
        for tp in self.consumer.assignment():
            end = self._backend.offset_range(tp)[1]
            out[self._level_of[tp.topic]] += max(0, end - self.consumer.position(tp))
        return out

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Up to ``max_records`` records, in the order the policy hands them out, waiting
        up to ``timeout_ms`` for some if no level has a backlog. The positions move past
        the records returned, and no further."""
        limit = max_records or self.consumer.max_poll_records
        buffers: list[deque[ConsumerRecord]] = [deque() for _ in self.levels]
        handed: dict[TopicPartition, int] = {}  # the offset after the last handed out
        backlog = self.backlogs()
        if not any(backlog):
            self._take(None, limit, timeout_ms, buffers, handed)  # every level: wait
            backlog = [len(b) for b in buffers]
        out: list[ConsumerRecord] = []
        while len(out) < limit:
            eligible = [i for i, n in enumerate(backlog) if n > 0]
            if not eligible:
                break
            level = eligible[0] if self.mode == "strict" else self._rr.pick(eligible)
            if not buffers[level] and not self._take(
                level, self._chunk(level, limit - len(out)), 0, buffers, handed
            ):  # the backlog overstated it (offset gaps): the level sits out this poll
                if self.mode != "strict":
                    self._rr.unpick(level, eligible)
                backlog[level] = 0
                continue
            record = buffers[level].popleft()
            out.append(record)
            backlog[level] -= 1
            handed[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self._seek(handed)
        return out

    def _chunk(self, level: int, left: int) -> int:
        if self.mode == "strict":
            return left
        share = -(-left * self.weights[level] // sum(self.weights))  # ceil
        return max(1, min(left, share))

    def _take(
        self,
        level: int | None,
        limit: int,
        timeout_ms: int,
        buffers: list[deque[ConsumerRecord]],
        handed: dict[TopicPartition, int],
    ) -> int:
        """Fetch from ``level``'s partitions (None: every level's) into ``buffers``;
        returns how many records came.

        Between fetches every position stays at the first record not handed out yet, so
        a rebalance in a fetch (whose ``on_revoke`` or auto-commit commits positions)
        never commits past a record the application did not get."""
        self._seek({
            tp: offset for tp, offset in handed.items()
            if level is None or self._level_of[tp.topic] == level
        })  # go on after what was handed out (the level's buffer is empty)
        consumer = self.consumer
        already = set(consumer.paused())  # the application's own pauses stay
        others = [
            tp for tp in consumer.assignment()
            if level is not None and self._level_of[tp.topic] != level and tp not in already
        ]
        consumer.pause(*others)
        try:
            records = consumer.poll(timeout_ms=timeout_ms, max_records=limit)
        finally:
            consumer.resume(*others)
        first: dict[TopicPartition, int] = {}
        for record in records:
            buffers[self._level_of[record.topic]].append(record)
            first.setdefault(TopicPartition(record.topic, record.partition), record.offset)
        self._seek(first)  # not handed out yet
        return len(records)

    def _seek(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        assigned = set(self.consumer.assignment())
        for tp, offset in offsets.items():
            if tp in assigned:  # else revoked in a fetch: its new owner starts over
                self.consumer.seek(tp, offset)

    # ------------------------------------------------------------------ the rest

    def commit(self) -> None:
        """Commit the positions of every level (what ``poll()`` handed out)."""
        self.consumer.commit()

    def assignment(self) -> list[TopicPartition]:
        return self.consumer.assignment()

    def close(self) -> None:
        """Close the consumer (leaving the group). Idempotent."""
        self.consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.consumer.close_after(failed=exc_type is not None)
