"""Where each mirrored record went: the source → destination offset map of one partition,
the checkpoint that keeps a mirror's progress (:mod:`logstore.patterns.mirror`), and the
state a mirror keeps per partition and per run.

A mirror copies a source partition's records, in order, one for one, into the destination
partition of the same number, and is that partition's only writer. So the records with
source offsets ``s_0 < s_1 < ...`` (from where the mirror started) sit at destination
offsets ``d_0, d_0 + 1, ...``. Source offsets may have gaps (records compacted away,
transaction markers, aborted transactions: a ``read_committed`` read skips them);
destination offsets have none. :class:`OffsetMap` keeps that correspondence as *runs*:
``(src, dst, count)``, the source offsets ``src .. src + count - 1`` are all records and
went to ``dst .. dst + count - 1``. A source without gaps is a single run, however long;
each gap starts a new one. This is MirrorMaker 2's "offset sync", kept for every batch
and merged while contiguous.

**Translating a consumer group's offset** (MirrorMaker 2's checkpoints): a committed
offset ``S`` means "the next record to read is the first one at or after ``S``"; on the
destination that record is at :meth:`OffsetMap.translate` ``(S)``, exact (not only the
start of its batch): a consumer resumes on the destination with nothing skipped and
nothing read twice. Offsets past what the mirror copied are not translated (None).

**The checkpoint** (:class:`Checkpoint`) is a committed offset of the mirror's own group
on the destination: the offset is the next source offset to copy; its metadata (JSON,
well under Kafka's 4096 bytes) holds the matching destination offset, where mirroring
started, and the last run, so a restarted mirror still translates exactly any offset in
that run (the whole partition, for a source without gaps). An offset between where the
mirror started and the last run (a source with gaps, after a restart) is
:data:`UNKNOWN`: the mirror then counts the source's records to find it
(:meth:`logstore.patterns.mirror.Mirror.sync_groups`).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from logstore.client.backend import Backend
from logstore.config import READ_COMMITTED, READ_UNCOMMITTED
from logstore.errors import LogstoreError
from logstore.types import ConsumerRecord, TopicPartition

__all__ = [
    "LOOK_WAIT_MS", "UNKNOWN", "Checkpoint", "MirrorError", "MirrorStats", "MirroredPartition",
    "OffsetMap", "read_one", "same_record",
]

MAX_RUNS = 10_000
"""Runs kept per partition (a run costs about 100 bytes). Past that the oldest half is
dropped: offsets in it become :data:`UNKNOWN` (counted on demand)."""

UNKNOWN: Final = -1
"""What :meth:`OffsetMap.translate` answers for an offset the map no longer knows (copied
before a restart, inside a source with gaps)."""


class MirrorError(LogstoreError):
    """A mirror cannot go on: the destination was written by someone else, a topic's
    partitions do not match, the source lost records the mirror still needs, ..."""


@dataclass(frozen=True)
class Checkpoint:
    """A mirror's durable progress in one partition.

    Attributes:
        src_next: the next source offset to copy (every record below it was copied).
        dst_next: the destination offset the next copied record gets.
        first: ``(src, dst)`` where mirroring started: source records below ``src`` were
            never copied; the first copied record went to ``dst``.
        run: the last run ``(src, dst, count)`` (``count`` 0: nothing copied yet); the
            source offsets from ``src + count`` to ``src_next`` hold no records.
        source_id: the source topic's incarnation (Kafka's topic id) that was copied.
    """

    src_next: int
    dst_next: int
    first: tuple[int, int]
    run: tuple[int, int, int]
    source_id: str | None

    def metadata(self) -> str:
        """The commit metadata that carries everything but ``src_next``."""
        return json.dumps(
            {"v": 1, "dst": self.dst_next, "first": list(self.first), "run": list(self.run),
             "src_id": self.source_id},
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, src_next: int, metadata: str, where: str) -> Checkpoint:
        """The checkpoint committed as ``(src_next, metadata)``.

        Raises:
            MirrorError: ``metadata`` is not a mirror's (``where`` names the partition).
        """
        try:
            found = json.loads(metadata)
            first = (int(found["first"][0]), int(found["first"][1]))
            s, d, n = (int(x) for x in found["run"])
            source_id = found.get("src_id")
            return cls(src_next, int(found["dst"]), first, (s, d, n),
                       None if source_id is None else str(source_id))
        except (ValueError, TypeError, KeyError, IndexError) as err:
            raise MirrorError(
                f"the mirror checkpoint of {where} has metadata {metadata[:80]!r}, which is "
                f"not a mirror's ({err}): was its group committed to by something else? "
                f"Pick another --name, or delete the group on the destination to start over"
            ) from err


class OffsetMap:
    """Source → destination offsets of one partition's mirrored records (see the module
    docstring). Not thread-safe."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.src_next = checkpoint.src_next
        self.dst_next = checkpoint.dst_next
        self.first = checkpoint.first
        s, d, n = checkpoint.run
        self._runs: list[list[int]] = [[s, d, n]] if n > 0 else []
        self._starts: list[int] = [s] if n > 0 else []  # run sources, for bisect
        # every copied record at or above known_from is in a run (and gaps are real)
        self.known_from = s if n > 0 else checkpoint.src_next
        self._counted: dict[int, int] = {}  # source offset -> destination (counted)
        self.idle_to = 0  # see seems_empty_to

    def checkpoint(self, source_id: str | None) -> Checkpoint:
        """The progress to commit now."""
        run = tuple(self._runs[-1]) if self._runs else (self.src_next, self.dst_next, 0)
        s, d, n = run
        return Checkpoint(self.src_next, self.dst_next, self.first, (s, d, n), source_id)

    @property
    def runs(self) -> int:
        """How many runs the map holds (1 for a source without gaps)."""
        return len(self._runs)

    def add(self, src_offsets: Sequence[int], dst_base: int) -> None:
        """Record that the source records at ``src_offsets`` (ascending, all at or above
        :attr:`src_next`) were written at ``dst_base, dst_base + 1, ...``."""
        if not src_offsets:
            return
        if dst_base != self.dst_next or src_offsets[0] < self.src_next:
            raise ValueError(
                f"records from source offset {src_offsets[0]} at destination {dst_base} do "
                f"not follow the mirrored ones (source {self.src_next}, destination "
                f"{self.dst_next})"
            )
        count = len(src_offsets)
        if src_offsets[-1] - src_offsets[0] == count - 1:  # contiguous: one run at most
            self._extend(src_offsets[0], dst_base, count)
        else:
            for i, offset in enumerate(src_offsets):
                self._extend(offset, dst_base + i, 1)
        self.src_next = src_offsets[-1] + 1
        self.dst_next = dst_base + count

    def _extend(self, src: int, dst: int, count: int) -> None:
        last = self._runs[-1] if self._runs else None
        if last is not None and last[0] + last[2] == src and last[1] + last[2] == dst:
            last[2] += count
            return
        self._runs.append([src, dst, count])
        self._starts.append(src)
        if len(self._runs) > MAX_RUNS:
            drop = MAX_RUNS // 2
            del self._runs[:drop]
            del self._starts[:drop]
            self.known_from = self._starts[0]

    def skip_to(self, src_next: int) -> None:
        """The source offsets from :attr:`src_next` to ``src_next`` hold no records to
        copy (a record past them was read, or retention deleted them): certain, so
        checkpointed."""
        self.src_next = max(self.src_next, src_next)

    def seems_empty_to(self, end: int) -> None:
        """The source offsets from :attr:`src_next` to ``end`` seem to hold no records to
        copy (transaction markers, aborted transactions: fetches found none). Not
        certain (a Kafka fetch may answer before its records arrive), so not
        checkpointed: it only lets :meth:`translate` take offsets up to ``end`` (were
        records there after all, a consumer would read them twice, never skip them)."""
        self.idle_to = max(self.idle_to, end)

    @property
    def position(self) -> int:
        """Where copying stands, for the lag: :attr:`src_next`, or past offsets that
        seem to hold no records."""
        return max(self.src_next, self.idle_to)

    def translate(self, offset: int) -> int | None:
        """The destination offset matching source offset ``offset`` (that of the first
        copied record at or after it); None if the mirror has not copied that far yet;
        :data:`UNKNOWN` if the map does not know (count with :meth:`remember`)."""
        if offset > max(self.src_next, self.idle_to):
            return None
        if offset >= self.src_next:
            return self.dst_next
        if offset <= self.first[0]:
            return self.first[1]
        if offset < self.known_from:
            return self._counted.get(offset, UNKNOWN)
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0:
            s, d, n = self._runs[i]
            if offset < s + n:
                return d + (offset - s)
        if i + 1 < len(self._runs):
            return self._runs[i + 1][1]
        return self.dst_next

    def remember(self, offset: int, dst: int) -> None:
        """Keep a translation found by counting (below :attr:`known_from`)."""
        if len(self._counted) >= MAX_RUNS:
            self._counted.clear()
        self._counted[offset] = dst


@dataclass
class MirroredPartition:
    """The state of one partition a mirror copies (the same partition on both sides)."""

    tp: TopicPartition
    dst_topic_id: str | None
    source_id: str | None
    """The source topic's incarnation."""
    map: OffsetMap
    stop: int
    """Without ``follow``: copy up to here (the source's end at the start)."""
    end: int
    """The source's end as last seen (for the lag)."""
    done: bool = False


@dataclass
class MirrorStats:
    """What a mirror run did."""

    copied: int = 0
    batches: int = 0
    elapsed_s: float = 0.0
    topics_created: list[str] = field(default_factory=list)
    partitions_added: dict[str, int] = field(default_factory=dict)
    skipped_on_resume: int = 0
    """Source records found already in the destination on restart (written just before a
    crash, after the last checkpoint): not copied again."""
    started_at_end: list[str] = field(default_factory=list)
    """Topics whose partitions started at the source's end (no ``from_beginning``)."""
    lost_to_retention: int = 0
    """Source offsets deleted (retention) before the mirror could copy them."""
    groups_translated: dict[str, int] = field(default_factory=dict)
    """Group -> partitions whose offsets are translated on the destination (last pass)."""
    groups_skipped: dict[str, str] = field(default_factory=dict)
    """Group -> why it was not translated (members on the destination, ...)."""
    restarts: int = 0
    """Backend errors the run rode out by starting again from its checkpoints."""


LOOK_WAIT_MS = 2000
"""How long a fetch that expects records waits for them: a Kafka cluster's fetch may
answer before they arrive; a store's answers at once."""


def read_one(
    backend: Backend, tp: TopicPartition, offset: int, *, committed: bool = False
) -> ConsumerRecord | None:
    """The record at ``offset`` of ``tp`` (None: there is none)."""
    got = backend.fetch({tp: offset}, max_records=1, max_bytes=1 << 20,
                        max_wait_ms=LOOK_WAIT_MS,
                        isolation_level=READ_COMMITTED if committed else READ_UNCOMMITTED)
    records = got.get(tp)
    if not isinstance(records, list):
        return None
    return next((r for r in records if r.offset == offset), None)


def same_record(a: ConsumerRecord, b: ConsumerRecord) -> bool:
    """Whether ``a`` and ``b`` hold the same timestamp, key, value and headers."""
    return (a.timestamp, a.key, a.value, tuple(a.headers)) == (
        b.timestamp, b.key, b.value, tuple(b.headers))
