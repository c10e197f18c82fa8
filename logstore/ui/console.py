"""What the web console shows, as plain data: the read model over the backend seam
(topics, partitions, records, groups, dead letters) and the changes it can make (re-drive,
reset offsets, delete), each first as a preview. No web framework here: :mod:`.app`
serves this as JSON.

Everything goes through the clients' :class:`~logstore.client.backend.Backend`, so the
console shows a data directory and a Kafka cluster alike; what only a data directory has
(segment files, sizes, the log cleaner's state) comes from the storage-level store when
there is one (``local``), and is None on a cluster. The record browser is
:mod:`.browse`; how a record is shown, :mod:`.payloads`.

The sampler's thread and the request threads share one Console: each call to the backend
(and to the local store) is made under one lock (:class:`Serialized`), one at a time,
and never a whole page or re-drive under it, so a long request does not stop the others.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from logstore import headers as h
from logstore.client.admin import describe_group, list_groups, reset_offsets
from logstore.client.backend import Backend
from logstore.errors import GroupError, InvalidConfigError, ReadOnlyStoreError
from logstore.kafka_configs import describe as describe_config
from logstore.patterns.dlq import (
    DeadLetter,
    execute_redrive,
    find_letters,
    letters_of,
    parse_where,
    plan_redrive,
    preview_redrive_all,
    redrive_all,
    redrive_state,
)
from logstore.patterns.retry_policy import own_headers
from logstore.types import TopicPartition

from .browse import MAX_LIMIT, PAGE_CHARS, records_page
from .payloads import MAX_HEADERS, NO_FILTER, RecordFilter, payload, shown_size

if TYPE_CHECKING:
    from logstore.store import Store

INTERNAL_PREFIX = "__"
"""Kafka's internal topics (``__consumer_offsets``...): shown, never deleted from here."""


class GroupNotFoundError(GroupError, LookupError):
    """No consumer group of that name (no members and no committed offsets)."""


class Serialized:
    """``target`` with every method call made under ``lock``, one at a time: what the
    console's threads call the backend (and the local store) through."""

    def __init__(self, target: object, lock: threading.RLock) -> None:
        self._target = target
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        with self._lock:  # a property's getter runs here
            found = getattr(self._target, name)
        if not callable(found):
            return found
        method = cast(Callable[..., Any], found)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


class Console:
    """The console's view of one store.

    Args:
        backend: the clients' seam to the store (a data directory's or a cluster's).
        kind: ``"local"`` or ``"kafka"``.
        target: the data directory or the cluster's address, as shown.
        local: the storage-level store of a data directory (segments, sizes, the
            cleaner's state), or None.
    """

    def __init__(
        self, backend: Backend, *, kind: str, target: str, local: Store | None = None
    ) -> None:
        self._lock = threading.RLock()
        self.backend = cast(Backend, Serialized(backend, self._lock))
        self.kind = kind
        self.target = target
        self._local = local
        self.groups_unavailable: str | None = None
        """Why the groups cannot be read (a store opened read-only), else None."""

    # ------------------------------------------------------------------ topics

    def topic_names(self) -> list[str]:
        return sorted(self.backend.list_topics())

    def partitions(self, topic: str) -> list[tuple[int, int, int]]:
        """``(partition, start, end)`` of each partition of ``topic``.

        Raises:
            TopicNotFoundError.
        """
        count = self.backend.topic_metadata(topic).partitions
        return [(p, *self.backend.offset_range(TopicPartition(topic, p)))
                for p in range(count)]

    def end_offsets(self) -> dict[TopicPartition, int]:
        """Every partition's log end (high watermark), topics deleted meanwhile left out."""
        out = {}
        for name in self.topic_names():
            try:
                for p, _, end in self.partitions(name):
                    out[TopicPartition(name, p)] = end
            except LookupError:
                continue
        return out

    def _local_partition(self, topic: str, partition: int) -> Any:
        if self._local is None:
            return None
        try:
            with self._lock:
                return Serialized(self._local.partition(topic, partition), self._lock)
        except LookupError:
            return None

    def _size(self, topic: str, partition: int) -> int | None:
        log = self._local_partition(topic, partition)
        return None if log is None else int(log.size_bytes)

    def topic_summary(self, topic: str) -> dict[str, Any]:
        parts = self.partitions(topic)
        config = self.backend.topic_config(topic)
        sizes = [self._size(topic, p) for p, _, _ in parts]
        return {
            "name": topic, "partitions": len(parts),
            "records": sum(end - start for _, start, end in parts),
            "size_bytes": None if None in sizes else sum(s or 0 for s in sizes),
            "cleanup_policy": config.cleanup_policy,
            "dead_letter": topic.endswith(h.DLQ_SUFFIX),
        }

    def topic_detail(self, topic: str) -> dict[str, Any]:
        parts = self.partitions(topic)
        config = self.backend.topic_config(topic)
        rows = []
        for p, start, end in parts:
            log = self._local_partition(topic, p)
            segments = compaction = size = None
            if log is not None:
                with self._lock:
                    size = int(log.size_bytes)
                    segments = [
                        {"base_offset": s.base_offset, "next_offset": s.next_offset,
                         "size_bytes": s.size, "max_timestamp": s.max_timestamp}
                        for s in log.segments
                    ]
                    if config.compact:
                        state = log.compaction_state()
                        compaction = {k: v for k, v in state.to_dict().items()
                                      if k != "cleanable_end"}
            rows.append({"partition": p, "start_offset": start, "end_offset": end,
                         "records": end - start, "size_bytes": size, "segments": segments,
                         "compaction": compaction})
        sizes = [r["size_bytes"] for r in rows]
        return {
            "name": topic, "partitions": rows,
            "config": {e.name: e.value for e in describe_config(config)},
            "records": sum(r["records"] for r in rows),
            "size_bytes": None if None in sizes else sum(sizes),
            "dead_letter": topic.endswith(h.DLQ_SUFFIX),
        }

    def delete_topic(self, topic: str, *, confirm: bool) -> dict[str, Any]:
        if topic.startswith(INTERNAL_PREFIX):
            raise InvalidConfigError(
                f"{topic!r} is an internal topic (its name starts with "
                f"{INTERNAL_PREFIX!r}): the console does not delete it")
        records = sum(end - start for _, start, end in self.partitions(topic))
        if confirm:
            self.backend.delete_topic(topic)
        return {"done": confirm, "topic": topic, "records": records}

    # ------------------------------------------------------------------ records

    def records(
        self, topic: str, partition: int, *, offset: int | None = None,
        timestamp: int | None = None, limit: int = 50,
        where: RecordFilter = NO_FILTER, max_scan: int = 10_000,
    ) -> dict[str, Any]:
        """A page of the record browser: :func:`.browse.records_page`."""
        return records_page(self.backend, topic, partition, offset=offset,
                            timestamp=timestamp, limit=limit, where=where, max_scan=max_scan)

    # ------------------------------------------------------------------ groups

    def group_names(self) -> list[str]:
        """The groups; none on a store opened read-only (its groups' files are not
        read then: :attr:`groups_unavailable` says so)."""
        try:
            return sorted(list_groups(self.backend))
        except ReadOnlyStoreError as err:
            self.groups_unavailable = str(err)
            return []

    def _check_group(self, group: str) -> None:
        if group not in self.group_names():
            raise GroupNotFoundError(
                f"consumer group {group!r} does not exist (no members and no committed "
                f"offsets): see /api/groups for the groups there are")

    def group_lags(self, group: str) -> dict[TopicPartition, int | None]:
        """Each partition's lag (None: nothing committed)."""
        d = describe_group(self.backend, group)
        return {TopicPartition(p.topic, p.partition): p.lag for p in d.partitions}

    def group_summaries(self) -> list[dict[str, Any]]:
        out = []
        for name in self.group_names():
            d = describe_group(self.backend, name)
            out.append({"name": name, "state": d.state, "members": len(d.members),
                        "lag": d.total_lag,
                        "topics": sorted({p.topic for p in d.partitions})})
        return out

    def group_detail(self, group: str) -> dict[str, Any]:
        self._check_group(group)
        d = describe_group(self.backend, group)
        return {
            "name": group, "state": d.state, "generation": d.generation,
            "members": [{"member_id": m, "partitions": [
                {"topic": tp.topic, "partition": tp.partition} for tp in tps]}
                for m, tps in sorted(d.members.items())],
            "partitions": [
                {"topic": p.topic, "partition": p.partition, "committed": p.committed,
                 "end_offset": p.log_end_offset, "lag": p.lag, "member": p.owner}
                for p in d.partitions],
            "lag": d.total_lag,
        }

    def reset_group(
        self, group: str, *, to: str, value: int | None, topics: Sequence[str] | None,
        confirm: bool,
    ) -> dict[str, Any]:
        """Preview (or, with ``confirm``, commit) new offsets for an inactive group.

        Raises:
            GroupNotFoundError, GroupNotEmptyError, TopicNotFoundError,
            InvalidConfigError: ``to`` unknown, or ``value`` missing or given in vain.
        """
        self._check_group(group)
        needs_value = to in ("offset", "timestamp")
        if to not in ("earliest", "latest", "offset", "timestamp"):
            raise InvalidConfigError(
                f"to={to!r} is not earliest, latest, offset or timestamp")
        if needs_value != (value is not None):
            raise InvalidConfigError(
                f"to={to!r} {'needs' if needs_value else 'takes no'} value")
        when = None
        if to == "timestamp" and value is not None:
            try:
                when = _dt.datetime.fromtimestamp(value / 1000, tz=_dt.UTC)
            except (ValueError, OverflowError, OSError):
                raise InvalidConfigError(
                    f"timestamp {value} (ms) is not a time this console can reset to "
                    f"(give one before year 10000)") from None
        before = {TopicPartition(p.topic, p.partition): p.committed
                  for p in describe_group(self.backend, group).partitions}
        after = reset_offsets(
            self.backend, group, topics=topics, to_earliest=to == "earliest",
            to_latest=to == "latest", to_datetime=when,
            to_offset=value if to == "offset" else None, execute=confirm)
        return {"done": confirm, "offsets": [
            {"topic": tp.topic, "partition": tp.partition, "from": before.get(tp), "to": o}
            for tp, o in sorted(after.items())]}

    def delete_group(self, group: str, *, confirm: bool) -> dict[str, Any]:
        self._check_group(group)
        if confirm:
            self.backend.delete_group(group)
        return {"done": confirm, "group": group}

    # ------------------------------------------------------------------ dead letters

    def dead_letter_topics(self) -> list[dict[str, Any]]:
        out = []
        for name in self.topic_names():
            if not name.endswith(h.DLQ_SUFFIX):
                continue
            try:
                parts = self.partitions(name)
                state = redrive_state(self.backend, name)
            except LookupError:
                continue
            records = sum(end - start for _, start, end in parts)
            redriven = sum(state.redriven_count(p, start, end) for p, start, end in parts)
            out.append({"name": name, "records": records, "redriven": redriven,
                        "pending": records - redriven})
        return out

    def dead_letters(
        self, topic: str, *, cursor: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """A page of ``topic``'s dead letters from ``cursor`` (``PARTITION:OFFSET``): at
        most ``limit``, and about :data:`~.browse.PAGE_CHARS` characters."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidConfigError(f"limit={limit} must be within 1..{MAX_LIMIT}")
        partitions = self.backend.topic_metadata(topic).partitions
        after = None if cursor is None else parse_where(cursor, topic, partitions)
        state = redrive_state(self.backend, topic)
        page: list[dict[str, Any]] = []
        chars = 0
        following = None
        for letter in letters_of(self.backend, topic, after):
            if len(page) == limit or chars >= PAGE_CHARS:
                following = letter.where
                break
            shown = self._letter(letter, state.is_redriven(letter))
            chars += shown_size(shown)
            page.append(shown)
        return {"topic": topic, "letters": page, "next_cursor": following}

    @staticmethod
    def _letter(letter: DeadLetter, redriven: bool) -> dict[str, Any]:
        record = letter.record
        headers = list(own_headers(record.headers))
        return {
            "id": letter.where, "partition": letter.partition, "offset": record.offset,
            "timestamp": record.timestamp, **letter.summary(),
            "key": payload(record.key), "value": payload(record.value),
            "headers": [{"key": k, "value": payload(v)} for k, v in headers[:MAX_HEADERS]],
            "headers_total": len(headers),
            "redriven": redriven,
        }

    def redrive(
        self, topic: str, *, letters: Sequence[str] | None, target: str | None,
        confirm: bool, through: Mapping[int, int] | None = None,
    ) -> dict[str, Any]:
        """Preview (or, with ``confirm``, do) a re-drive of ``letters`` (``P:O`` names;
        None: every letter not re-driven yet, below ``through`` when given: a preview
        answers it as ``confirm_with``, so the confirmed re-drive sends exactly the
        letters the preview counted) to their original topics or ``target``.

        Raises:
            TopicNotFoundError, PartitionNotFoundError, LetterNotFoundError,
            NotDeadLettersError, InvalidConfigError.
        """
        if letters is None:
            run = redrive_all if confirm else preview_redrive_all
            done = run(self.backend, topic, target, through=through)
            return {"done": confirm, "count": done.count, "routes": done.counts,
                    "skipped": [],
                    "confirm_with": {"through": {str(p): o for p, o in done.through.items()}}}
        partitions = self.backend.topic_metadata(topic).partitions
        wheres = [parse_where(x, topic, partitions) for x in letters]
        plan = plan_redrive(self.backend, topic, find_letters(self.backend, topic, wheres),
                            target)
        if confirm:
            execute_redrive(self.backend, plan)
        return {"done": confirm, "count": len(plan.routes), "routes": plan.counts,
                "skipped": [x.where for x in plan.skipped]}


__all__ = ["Console", "GroupNotFoundError", "Serialized"]
