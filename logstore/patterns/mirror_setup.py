"""How a mirror sets up the partitions it copies (:mod:`logstore.patterns.mirror`): the
destination topics (created with the source's partition count and configuration, or
grown), each partition's checkpoint (read, or a first one written before anything is
copied), and, after a crash, the records appended after the last checkpoint (counted
against the source, not copied again)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from logstore.client.backend import Backend
from logstore.config import READ_COMMITTED, TopicConfig
from logstore.errors import LogstoreError, TopicNotFoundError
from logstore.patterns.mirror_offsets import (
    LOOK_WAIT_MS,
    Checkpoint,
    MirroredPartition,
    MirrorError,
    MirrorStats,
    OffsetMap,
    read_one,
    same_record,
)
from logstore.types import ConsumerRecord, TopicMetadata, TopicPartition

__all__ = ["DEFAULT_BATCH_BYTES", "MirrorSetup"]

DEFAULT_BATCH_BYTES = 1 << 20
"""Bytes a fetch asks for per partition."""


class MirrorSetup:
    """The part of :class:`~logstore.patterns.mirror.Mirror` that finds the topics to
    copy and sets up their partitions (its base class)."""

    src: Backend
    dst: Backend
    group: str
    topics: re.Pattern[str]
    from_beginning: bool
    batch_records: int
    stats: MirrorStats
    _parts: dict[TopicPartition, MirroredPartition]
    _discovered: bool

    def discover(self) -> None:
        """Find the source topics to mirror and set up their partitions: create or grow
        the destination topics, read the checkpoints, reconcile after a crash."""
        # a topic is new (copied from its start) unless seen on a mirror's very first run
        first = not self._discovered and not self.dst.committed_offsets(self.group)
        self._discovered = True
        new: list[MirroredPartition] = []
        for topic in sorted(self.src.list_topics()):
            if topic.startswith("__") or not self.topics.fullmatch(topic):
                continue
            try:
                src_meta = self.src.topic_metadata(topic)
                known = sum(1 for tp in self._parts if tp.topic == topic)
                if known == src_meta.partitions:
                    continue
                created = len(self.stats.topics_created)
                dst_meta = self._ensure_topic(src_meta)
            except TopicNotFoundError:
                continue  # deleted meanwhile
            created = len(self.stats.topics_created) > created
            new.extend(self._setup(src_meta, dst_meta, new_topic=not first, created=created))
        self._checkpoint(new)

    def _ensure_topic(self, src_meta: TopicMetadata) -> TopicMetadata:
        name, count = src_meta.name, src_meta.partitions
        try:
            dst_meta = self.dst.topic_metadata(name)
        except TopicNotFoundError:
            config = _changed_config(self.src.topic_config(name))
            dst_meta = self.dst.create_topic(name, count, **config)
            self.stats.topics_created.append(name)
            return dst_meta
        if dst_meta.partitions > count:
            raise MirrorError(
                f"destination topic {name!r} has {dst_meta.partitions} partitions, the "
                f"source {count}: a mirror copies partition i to partition i, so it needs "
                f"as many (delete the destination topic, or mirror elsewhere)"
            )
        if dst_meta.partitions < count:
            dst_meta = self.dst.add_partitions(name, count)
            self.stats.partitions_added[name] = count
        return dst_meta

    def _setup(
        self, src_meta: TopicMetadata, dst_meta: TopicMetadata, *, new_topic: bool,
        created: bool,
    ) -> list[MirroredPartition]:
        """Set up the partitions of a topic the mirror does not copy yet; returns those
        whose checkpoint must be committed now."""
        name = src_meta.name
        tps = [TopicPartition(name, i) for i in range(src_meta.partitions)
               if TopicPartition(name, i) not in self._parts]
        # a topic just created holds nothing yet (and a Kafka broker may not answer
        # for its partitions for a moment)
        committed = {} if created else self.dst.committed_offsets(self.group, tps)
        resumed = any(TopicPartition(name, i) in committed
                      for i in range(src_meta.partitions))
        from_start = self.from_beginning or new_topic or resumed
        if not from_start and tps:
            self.stats.started_at_end.append(name)
        out = []
        for tp in tps:
            dst_start, dst_end = (0, 0) if created else self.dst.offset_range(tp)
            src_start, src_end = self.src.offset_range(tp, READ_COMMITTED)
            found = committed.get(tp)
            if found is not None and found.topic_id not in (None, dst_meta.topic_id):
                found = None  # an earlier incarnation of the destination topic
            if found is None:
                if dst_end > dst_start:
                    raise MirrorError(
                        f"destination {name}-{tp.partition} already holds records "
                        f"(offsets {dst_start}..{dst_end - 1}) this mirror did not write: "
                        f"a mirror copies into new or empty topics only (delete the "
                        f"destination topic, or pick the --name of the mirror that wrote it)"
                    )
                start = src_start if from_start else src_end
                cp = Checkpoint(start, dst_end, (start, dst_end), (start, dst_end, 0),
                                src_meta.topic_id)
            else:
                cp = Checkpoint.parse(found.offset, found.metadata, f"{name}-{tp.partition}")
                self._check_resume(cp, src_meta, tp, dst_end)
                if self.from_beginning and cp.first[1] == cp.dst_next == dst_end:
                    # nothing copied yet (it started at the end): from the start after all
                    cp = Checkpoint(src_start, dst_end, (src_start, dst_end),
                                    (src_start, dst_end, 0), src_meta.topic_id)
                    found = None
            part = MirroredPartition(
                tp, dst_meta.topic_id, src_meta.topic_id, OffsetMap(cp), src_end, src_end,
                done=cp.src_next >= src_end,
            )
            self._parts[tp] = part
            if found is None:
                out.append(part)  # its first checkpoint, before anything is copied
            elif dst_end > cp.dst_next:
                self._reconcile(part, dst_end - cp.dst_next)
                part.done = part.map.src_next >= part.stop
                out.append(part)
        return out

    def _check_resume(
        self, cp: Checkpoint, src_meta: TopicMetadata, tp: TopicPartition, dst_end: int
    ) -> None:
        where = f"{tp.topic}-{tp.partition}"
        if cp.source_id not in (None, src_meta.topic_id) and src_meta.topic_id is not None:
            raise MirrorError(
                f"source topic {tp.topic!r} was deleted and created again since the mirror "
                f"copied it (topic id {cp.source_id}, now {src_meta.topic_id}): delete the "
                f"destination topic to mirror the new one"
            )
        if dst_end < cp.dst_next:
            raise MirrorError(
                f"destination {where} ends at offset {dst_end}, but the mirror had copied "
                f"up to {cp.dst_next}: records were deleted or lost there (truncated, or "
                f"not flushed before a power loss); delete the destination topic to mirror "
                f"it afresh"
            )

    def _reconcile(self, p: MirroredPartition, excess: int) -> None:
        """The destination holds ``excess`` records past the checkpoint (appended just
        before a crash): account for that many source records without copying them."""
        tp, need = p.tp, excess
        last: ConsumerRecord | None = None
        while need > 0:
            got = self._fetch({tp: p.map.src_next}, LOOK_WAIT_MS,
                              min(need, self.batch_records)).get(tp)
            if isinstance(got, LogstoreError) or not got:
                raise MirrorError(
                    f"destination {tp.topic}-{tp.partition} holds {excess} records past the "
                    f"mirror's checkpoint, but the source has only {excess - need} after "
                    f"offset {p.map.src_next}: the destination was written by something "
                    f"else; a mirror must be the only writer of its destination topics"
                )
            got = [r for r in got if r.offset >= p.map.src_next][:need]
            p.map.add([r.offset for r in got], p.map.dst_next)
            need -= len(got)
            last = got[-1]
        self.stats.skipped_on_resume += excess
        if last is not None:
            dst_last = read_one(self.dst, tp, p.map.dst_next - 1)
            if dst_last is None or not same_record(dst_last, last):
                raise MirrorError(
                    f"destination {tp.topic}-{tp.partition} offset {p.map.dst_next - 1} is "
                    f"not the copy of source offset {last.offset}: the destination was "
                    f"written by something else; a mirror must be its only writer"
                )

    def _fetch(
        self, positions: dict[TopicPartition, int], wait_ms: int, max_records: int = 0
    ) -> dict[TopicPartition, list[ConsumerRecord] | LogstoreError]:
        return self.src.fetch(
            positions, max_records=max_records or self.batch_records,
            max_bytes=DEFAULT_BATCH_BYTES, max_wait_ms=wait_ms,
            isolation_level=READ_COMMITTED,
        )

    def _checkpoint(self, parts: Iterable[MirroredPartition]) -> None:
        offsets = {}
        for p in parts:
            cp = p.map.checkpoint(p.source_id)
            offsets[p.tp] = (cp.src_next, cp.metadata())
        if offsets:
            self.dst.commit_offsets(self.group, offsets)


def _changed_config(config: TopicConfig) -> dict[str, object]:
    """The fields of ``config`` that differ from the defaults (partitions aside)."""
    default = TopicConfig()
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name != "partitions" and getattr(config, f.name) != getattr(default, f.name)
    }
