"""A mirror's consumer-group translation (MirrorMaker 2's checkpoints): the committed
offsets of the source's groups, moved to the destination so that a group's consumers can
switch to the destination and resume where they stopped.

Each committed offset ``S`` of a mirrored partition becomes the destination offset of the
first copied record at or after ``S`` (``OffsetMap.translate`` of
:mod:`logstore.patterns.mirror_offsets`: exact, so the consumer re-reads nothing and skips
nothing). An offset the mirror has not
copied up to yet is left for a later pass. The commit's metadata is copied as it is.

As MirrorMaker 2 does, a group with members on the destination is skipped (Kafka refuses
commits from outside an active group, and its consumers own their offsets), and a
destination offset is never moved backwards: a group whose consumers already run on the
destination and got further keeps its own offsets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from logstore.client.backend import Backend
from logstore.config import READ_COMMITTED
from logstore.errors import LogstoreError, UnstableOffsetCommitError
from logstore.patterns.mirror_offsets import (
    LOOK_WAIT_MS,
    UNKNOWN,
    MirroredPartition,
    MirrorStats,
    read_one,
    same_record,
)
from logstore.types import ConsumerRecord, TopicPartition

__all__ = ["GROUP_PREFIX", "GroupTranslator", "checkpoint_group"]

log = logging.getLogger(__name__)

GROUP_PREFIX = "logstore-mirror."
"""The mirrors' own groups (never translated): ``logstore-mirror.<name>``."""
COUNT_BATCH = 10_000
_IDLE = ("Empty", "Dead")  # group states in which the destination takes our commits


def checkpoint_group(name: str) -> str:
    """The destination group that keeps mirror ``name``'s progress."""
    return GROUP_PREFIX + name


class GroupTranslator:
    """Translates the groups matching ``groups`` (None: none) from ``src`` to ``dst``,
    noting what it did in ``stats``."""

    def __init__(
        self, src: Backend, dst: Backend, groups: re.Pattern[str] | None, stats: MirrorStats
    ) -> None:
        self.src = src
        self.dst = dst
        self.groups = groups
        self.stats = stats

    def sync(self, parts: Mapping[TopicPartition, MirroredPartition]) -> None:
        """One pass over the source's groups."""
        if self.groups is None or not parts:
            return
        for group in sorted(self.src.list_groups()):
            if group.startswith(GROUP_PREFIX) or not self.groups.fullmatch(group):
                continue
            try:
                self._sync_group(group, parts)
            except UnstableOffsetCommitError:
                self.stats.groups_skipped[group] = "a transaction holds its offsets"

    def _sync_group(self, group: str, parts: Mapping[TopicPartition, MirroredPartition]) -> None:
        translated: dict[TopicPartition, tuple[int, str]] = {}
        for tp, committed in self.src.committed_offsets(group).items():
            p = parts.get(tp)
            if p is None or committed.topic_id not in (None, p.source_id):
                continue  # not mirrored, or committed to an earlier incarnation
            offset = p.map.translate(committed.offset)
            if offset == UNKNOWN:
                offset = self._count(p, committed.offset)
            if offset is not None:
                translated[tp] = (offset, committed.metadata)
        if not translated:
            return
        state = self.dst.describe_group(group).state
        if state not in _IDLE:
            self.stats.groups_skipped[group] = (
                f"it has members on the destination ({state}); stop them to translate it"
            )
            return
        ahead = self.dst.committed_offsets(group, translated)
        commit = {
            tp: value for tp, value in translated.items()
            if tp not in ahead or ahead[tp].offset < value[0]
            or ahead[tp].topic_id not in (None, parts[tp].dst_topic_id)
        }
        if commit:
            self.dst.commit_offsets(group, commit)
        self.stats.groups_translated[group] = len(translated)
        self.stats.groups_skipped.pop(group, None)

    def _count(self, p: MirroredPartition, offset: int) -> int | None:
        """Translate ``offset``, below what ``p``'s offset map knows (copied before a
        restart, in a source with gaps), by counting the source's records from it up to
        where the map knows, then check that the destination record found is the copy of
        the source's. None: the source no longer has them (retention), or they changed
        since they were copied (compaction): not translated."""
        tp, target = p.tp, p.map.known_from
        count, position = 0, offset
        first: ConsumerRecord | None = None
        while position < target:
            got = self.src.fetch({tp: position}, max_records=COUNT_BATCH, max_bytes=1 << 20,
                                 max_wait_ms=LOOK_WAIT_MS, isolation_level=READ_COMMITTED,
                                 ).get(tp)
            if isinstance(got, LogstoreError):
                return None
            records = [r for r in got or () if position <= r.offset < target]
            if not records:
                break
            first = first or records[0]
            count += len(records)
            position = records[-1].offset + 1
        base = p.map.translate(target)
        if base is None or base == UNKNOWN:
            return None
        dst = base - count
        if first is not None:
            found = read_one(self.dst, tp, dst)
            if found is None or not same_record(found, first):
                log.warning("%s-%d: offset %d not translated: the source changed since it "
                            "was copied", tp.topic, tp.partition, offset)
                return None
        p.map.remember(offset, dst)
        return dst
