"""What the web console shows, as plain data: the read model over the backend seam
(topics, partitions, records, groups, dead letters) and the changes it can make (re-drive,
reset offsets, delete), each first as a preview. No web framework here: :mod:`.app`
serves this as JSON.

Everything goes through the clients' :class:`~logstore.client.backend.Backend`, so the
console shows a data directory and a Kafka cluster alike; what only a data directory has
(segment files, sizes, the log cleaner's state) comes from the storage-level store when
there is one (``local``), and is None on a cluster.

Memory is bounded whatever is asked: a page of records holds at most :data:`MAX_LIMIT`
records, each key, value and header cut to :data:`TEXT_LIMIT` characters of text or
:data:`HEX_LIMIT` bytes of hex, and a filtered scan reads at most ``max_scan`` records
per request (the answer says where to go on).
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logstore import headers as h
from logstore.client.admin import describe_group, list_groups, reset_offsets
from logstore.client.backend import Backend
from logstore.errors import (
    GroupError,
    InvalidConfigError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
)
from logstore.kafka_configs import describe as describe_config
from logstore.patterns.dlq import (
    REDRIVE_GROUP,
    DeadLetter,
    execute_redrive,
    find_letters,
    letters_of,
    parse_where,
    plan_redrive,
    redrive_state,
)
from logstore.patterns.retry_policy import own_headers
from logstore.types import ConsumerRecord, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

MAX_LIMIT = 500
"""The most records (or dead letters) one page holds."""
MAX_SCAN = 100_000
"""The most records one filtered request may read."""
TEXT_LIMIT = 64 * 1024
"""Characters of a key, value or header shown as text (the rest is cut)."""
HEX_LIMIT = 4 * 1024
"""Bytes of a binary key, value or header shown as hex."""
FETCH_BYTES = 1 << 20
FETCH_RECORDS = 500


class GroupNotFoundError(GroupError, LookupError):
    """No consumer group of that name (no members and no committed offsets)."""


def payload(data: bytes | None) -> dict[str, Any] | None:
    """How a key, value or header value is shown: JSON (parsed), UTF-8 text, or binary
    (hex); None stays None."""
    if data is None:
        return None
    size = len(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        text = None  # control characters: binary that happens to decode
    if text is None:
        shown = data[:HEX_LIMIT]
        return {"size": size, "encoding": "binary", "text": None, "hex": shown.hex(),
                "truncated": size > len(shown)}
    out: dict[str, Any] = {"size": size, "encoding": "text", "text": text[:TEXT_LIMIT],
                           "hex": None, "truncated": len(text) > TEXT_LIMIT}
    if len(text) <= TEXT_LIMIT and text.lstrip()[:1] in ('{', '['):
        try:
            out["json"] = json.loads(text)
            out["encoding"] = "json"
        except (ValueError, RecursionError):
            pass
    return out


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", errors="backslashreplace")


def record_json(record: ConsumerRecord) -> dict[str, Any]:
    return {
        "offset": record.offset, "timestamp": record.timestamp,
        "key": payload(record.key), "value": payload(record.value),
        "headers": [{"key": k, "value": payload(v)} for k, v in record.headers],
    }


@dataclass(frozen=True)
class RecordFilter:
    """Substrings a record must hold: in its key, its value, and a header (``NAME`` or
    ``NAME=TEXT``) — all that are given."""

    key: str | None = None
    value: str | None = None
    header: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.key or self.value or self.header)

    def matches(self, record: ConsumerRecord) -> bool:
        if self.key and self.key not in _text(record.key):
            return False
        if self.value and self.value not in _text(record.value):
            return False
        if self.header:
            name, sep, wanted = self.header.partition("=")
            return any(k == name and (not sep or wanted in _text(v))
                       for k, v in record.headers)
        return True


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
        self.backend = backend
        self.kind = kind
        self.target = target
        self.local = local
        self._lock = threading.RLock()  # one request to the backend at a time

    # ------------------------------------------------------------------ topics

    def topic_names(self) -> list[str]:
        with self._lock:
            return sorted(self.backend.list_topics())

    def partitions(self, topic: str) -> list[tuple[int, int, int]]:
        """``(partition, start, end)`` of each partition of ``topic``.

        Raises:
            TopicNotFoundError.
        """
        with self._lock:
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
        if self.local is None:
            return None
        try:
            with self._lock:
                return self.local.partition(topic, partition)
        except LookupError:
            return None

    def _size(self, topic: str, partition: int) -> int | None:
        log = self._local_partition(topic, partition)
        return None if log is None else int(log.size_bytes)

    def topic_summary(self, topic: str) -> dict[str, Any]:
        parts = self.partitions(topic)
        with self._lock:
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
        with self._lock:
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
        records = sum(end - start for _, start, end in self.partitions(topic))
        if confirm:
            with self._lock:
                self.backend.delete_topic(topic)
        return {"done": confirm, "topic": topic, "records": records}

    # ------------------------------------------------------------------ records

    def records(
        self, topic: str, partition: int, *, offset: int | None = None,
        timestamp: int | None = None, limit: int = 50,
        where: RecordFilter = RecordFilter(), max_scan: int = 10_000,
    ) -> dict[str, Any]:
        """A page of ``topic``'s ``partition``: from ``offset``, from the first record
        at or after ``timestamp``, or from the start; at most ``limit`` records that
        match ``where``, reading at most ``max_scan`` records.

        Raises:
            TopicNotFoundError, PartitionNotFoundError.
            OffsetOutOfRangeError: ``offset`` outside ``[start, end]``.
            InvalidConfigError: ``limit`` or ``max_scan`` out of bounds.
        """
        if not 1 <= limit <= MAX_LIMIT or not 1 <= max_scan <= MAX_SCAN:
            raise InvalidConfigError(
                f"limit={limit} and max_scan={max_scan} must be within 1..{MAX_LIMIT} and "
                f"1..{MAX_SCAN}")
        tp = TopicPartition(topic, partition)
        start, end = self._range(tp)
        if timestamp is not None:
            with self._lock:
                found = self.backend.offset_for_timestamp(tp, timestamp)
            first = end if found is None else max(found.offset, start)
        elif offset is not None:
            if not start <= offset <= end:
                raise OffsetOutOfRangeError(offset, start, end)
            first = offset
        else:
            first = start
        page: list[dict[str, Any]] = []
        scanned = 0
        position = first
        for record in self._scan(tp, first, end, max_scan):
            scanned += 1
            position = record.offset + 1
            if where.matches(record):
                page.append(record_json(record))
                if len(page) == limit:
                    break
        else:
            if scanned < max_scan:
                position = end  # read to the end (maybe past offsets that hold no record)
        at_end = position >= end
        return {
            "topic": topic, "partition": partition, "start_offset": start, "end_offset": end,
            "from_offset": first, "records": page,
            "next_offset": None if at_end else position,
            "prev_offset": (max(start, first - limit) if first > start and not where.active
                            else None),
            "scanned": scanned,
            "scan_limited": scanned >= max_scan and len(page) < limit and not at_end,
        }

    def _range(self, tp: TopicPartition) -> tuple[int, int]:
        with self._lock:
            count = self.backend.topic_metadata(tp.topic).partitions
            if not 0 <= tp.partition < count:
                raise PartitionNotFoundError(
                    f"topic {tp.topic!r} has no partition {tp.partition} (it has partitions "
                    f"0..{count - 1})")
            return self.backend.offset_range(tp)

    def _scan(
        self, tp: TopicPartition, first: int, end: int, most: int
    ) -> Iterator[ConsumerRecord]:
        """At most ``most`` records of ``tp`` in ``[first, end)``, a bounded fetch at a
        time."""
        offset, seen = first, 0
        while offset < end and seen < most:
            with self._lock:
                answer = self.backend.fetch(
                    {tp: offset}, max_records=min(FETCH_RECORDS, most - seen),
                    max_bytes=FETCH_BYTES)
            found = answer.get(tp, [])
            if isinstance(found, OffsetOutOfRangeError):  # retention moved the start
                offset = self._range(tp)[0]
                if offset <= first:
                    return
                first = offset
                continue
            if isinstance(found, Exception):
                raise found
            if not found:
                return
            for record in found:
                if record.offset >= end or seen >= most:
                    return
                seen += 1
                yield record
            offset = found[-1].offset + 1

    # ------------------------------------------------------------------ groups

    def group_names(self) -> list[str]:
        with self._lock:
            return sorted(list_groups(self.backend))

    def _check_group(self, group: str) -> None:
        if group not in self.group_names():
            raise GroupNotFoundError(
                f"consumer group {group!r} does not exist (no members and no committed "
                f"offsets): see /api/groups for the groups there are")

    def group_lags(self, group: str) -> dict[TopicPartition, int | None]:
        """Each partition's lag (None: nothing committed)."""
        with self._lock:
            d = describe_group(self.backend, group)
        return {TopicPartition(p.topic, p.partition): p.lag for p in d.partitions}

    def group_summaries(self) -> list[dict[str, Any]]:
        out = []
        for name in self.group_names():
            with self._lock:
                d = describe_group(self.backend, name)
            out.append({"name": name, "state": d.state, "members": len(d.members),
                        "lag": d.total_lag,
                        "topics": sorted({p.topic for p in d.partitions})})
        return out

    def group_detail(self, group: str) -> dict[str, Any]:
        self._check_group(group)
        with self._lock:
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
            when = _dt.datetime.fromtimestamp(value / 1000, tz=_dt.UTC)
        with self._lock:
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
            with self._lock:
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
                with self._lock:
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
        """A page of ``topic``'s dead letters from ``cursor`` (``PARTITION:OFFSET``)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidConfigError(f"limit={limit} must be within 1..{MAX_LIMIT}")
        with self._lock:
            partitions = self.backend.topic_metadata(topic).partitions
            after = None if cursor is None else parse_where(cursor, topic, partitions)
            state = redrive_state(self.backend, topic)
            letters: list[DeadLetter] = []
            following = None
            for letter in letters_of(self.backend, topic, after):
                if len(letters) == limit:
                    following = letter.where
                    break
                letters.append(letter)
        return {"topic": topic, "letters": [self._letter(x, state.is_redriven(x))
                                            for x in letters],
                "next_cursor": following}

    @staticmethod
    def _letter(letter: DeadLetter, redriven: bool) -> dict[str, Any]:
        record = letter.record
        return {
            "id": letter.where, "partition": letter.partition, "offset": record.offset,
            "timestamp": record.timestamp, **letter.summary(),
            "key": payload(record.key), "value": payload(record.value),
            "headers": [{"key": k, "value": payload(v)} for k, v in own_headers(record.headers)],
            "redriven": redriven,
        }

    def redrive(
        self, topic: str, *, letters: Sequence[str] | None, target: str | None,
        confirm: bool,
    ) -> dict[str, Any]:
        """Preview (or, with ``confirm``, do) a re-drive of ``letters`` (``P:O`` names;
        None: every letter not re-driven yet) to their original topics or ``target``.

        Raises:
            TopicNotFoundError, PartitionNotFoundError, LetterNotFoundError,
            NotDeadLettersError, InvalidConfigError.
        """
        with self._lock:
            chosen = None
            if letters is not None:
                partitions = self.backend.topic_metadata(topic).partitions
                wheres = [parse_where(x, topic, partitions) for x in letters]
                chosen = find_letters(self.backend, topic, wheres)
            plan = plan_redrive(self.backend, topic, chosen, target)
            if confirm:
                execute_redrive(self.backend, plan)
        return {"done": confirm, "count": len(plan.routes), "routes": plan.counts,
                "skipped": [x.where for x in plan.skipped]}


__all__ = ["REDRIVE_GROUP", "Console", "GroupNotFoundError", "RecordFilter", "payload"]
