"""Share groups (KIP-932, "queues for Kafka") as data: one share-partition's state machine.

A share group lets several members take records of the **same partition** at once and
acknowledge each record on its own. Per share-partition the group keeps:

* the **share-partition start offset** (SPSO): every record below it is finished;
* the **share-partition end offset** (SPEO): the next offset of the partition log to
  hand out for the first time; ``SPEO - SPSO`` (the in-flight window) is at most the
  group's ``max_record_locks``;
* per record in ``[SPSO, SPEO)``: its state, its delivery count, its lock deadline and
  holder (while acquired), and the last error a member gave when it released or
  rejected it.

Record states and transitions (Kafka's)::

    Available --acquire--> Acquired --accept--> Acknowledged
        ^                      |  --reject--> Archived
        +---release/expiry-----+  (release or lock expiry at the delivery limit: Archived)

Acquiring increments the delivery count; a record whose count reached the group's
``max_delivery_attempts`` is archived when it comes back (released or lock expired)
instead of becoming available: no record is ever delivered more often than that. Archived
records are the dead letters (the coordinator appends them to the dead-letter topic).
The SPSO only moves over finished (acknowledged or archived) records, and records below
it are forgotten.

Unlike Kafka, the acquired state (holder, deadline) is persisted too: there is no
broker holding it in memory; every process reads the state from the share-group state
log, so a member's lock outlives the member, and a killed member's records come back
when their locks expire.

Encoding (values of the compacted ``__share_group_state`` log): JSON, versioned::

    key    ["p", group, topic, partition]       a share-partition's state
    value  {"v": 1, "spso": S, "speo": E,
            "r": [[offset, state, delivery_count, deadline_ms, holder, expired,
                   error_class, error_message], ...]}
    key    ["g", group]                         the group's settings
    value  {"v": 1, "lock_timeout_ms": ..., "max_delivery_attempts": ...,
            "dead_letter_topic": ... | null, "max_record_locks": ...}

No I/O happens here: times are arguments.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from logstore.errors import (
    InvalidConfigError,
    LockExpiredError,
    RecordNotHeldError,
    ShareAcknowledgeError,
    ShareGroupConfigError,
    UnknownShareRecordError,
)

STATE_VERSION = 1
DEFAULT_LOCK_TIMEOUT_MS = 30_000  # Kafka's group.share.record.lock.duration.ms
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5  # Kafka's group.share.delivery.count.limit
DEFAULT_MAX_RECORD_LOCKS = 200  # Kafka's group.share.partition.max.record.locks
LOCK_TIMEOUT_ERROR = ("LockTimeout", "lock timeout")
"""The dead letter's error when no member gave one: its last lock expired."""
REJECTED_ERROR = ("Rejected", "rejected without an error")
RELEASED_ERROR = ("Released", "released without an error")


class RecordState(enum.IntEnum):
    """A record's state in its share-partition (Kafka's numbers)."""

    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVED = 4


class AckType(enum.IntEnum):
    """Acknowledge types, as on Kafka's wire (ShareAcknowledge)."""

    ACCEPT = 1
    RELEASE = 2
    REJECT = 3


FINISHED = (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)
_STATES = {int(s): s for s in RecordState}  # decoding: faster than RecordState(n)


# ---------------------------------------------------------------------------- errors


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class ShareSettings:
    """A share group's settings (Kafka's group configs), fixed at its first use."""

    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    dead_letter_topic: str | None = None
    """None: each topic's records go to ``<topic>.dlq``."""
    max_record_locks: int = DEFAULT_MAX_RECORD_LOCKS

    def __post_init__(self) -> None:
        for name, low in (
            ("lock_timeout_ms", 1), ("max_delivery_attempts", 1), ("max_record_locks", 1)
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidConfigError(
                    f"share group setting {name}={value!r} is invalid: use an int >= {low}"
                )

    def as_dict(self) -> dict[str, Any]:
        return {
            "lock_timeout_ms": self.lock_timeout_ms,
            "max_delivery_attempts": self.max_delivery_attempts,
            "dead_letter_topic": self.dead_letter_topic,
            "max_record_locks": self.max_record_locks,
        }

    def encode(self) -> bytes:
        return json.dumps({"v": STATE_VERSION, **self.as_dict()}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ShareSettings:
        body = _decode_versioned(raw)
        return cls(
            body["lock_timeout_ms"], body["max_delivery_attempts"],
            body["dead_letter_topic"], body["max_record_locks"],
        )

    def merged(self, group: str, **asked: Any) -> ShareSettings:
        """These settings, after checking that ``asked`` (None: "the group's") agrees.

        Raises:
            ShareGroupConfigError: naming the setting, the group's value and the asked one.
        """
        for name, value in asked.items():
            if value is not None and value != getattr(self, name):
                raise ShareGroupConfigError(
                    f"share group {group!r} has {name}={getattr(self, name)!r}, not "
                    f"{value!r} (settings are the group's, fixed at its first use: pass "
                    f"None to take the group's, or use another group)",
                    group,
                )
        return self


def _decode_versioned(raw: bytes) -> dict[str, Any]:
    body = json.loads(raw)
    if not isinstance(body, dict) or body.get("v") != STATE_VERSION:
        raise ValueError(f"share-group state of an unknown version: {raw[:40]!r}")
    return body


# ---------------------------------------------------------------------------- keys


def partition_key(group: str, topic: str, partition: int) -> bytes:
    return json.dumps(["p", group, topic, partition], separators=(",", ":")).encode()


def settings_key(group: str) -> bytes:
    return json.dumps(["g", group], separators=(",", ":")).encode()


def decode_key(raw: bytes) -> tuple[str, str, str, int]:
    """``("p", group, topic, partition)`` or ``("g", group, "", -1)``.

    Raises:
        ValueError: not a share-group state key.
    """
    parts = json.loads(raw)
    if isinstance(parts, list) and parts[:1] == ["p"] and len(parts) == 4:
        return "p", str(parts[1]), str(parts[2]), int(parts[3])
    if isinstance(parts, list) and parts[:1] == ["g"] and len(parts) == 2:
        return "g", str(parts[1]), "", -1
    raise ValueError(f"not a share-group state key: {raw[:60]!r}")


# ---------------------------------------------------------------------------- records


@dataclass(slots=True)
class InFlight:
    """One record of the in-flight window."""

    state: RecordState
    delivery_count: int = 0
    deadline_ms: int = 0
    holder: str | None = None
    """The member holding it while acquired; afterwards the last one that did."""
    expired: bool = False
    """Its last lock expired (the holder did not answer in time)."""
    error: tuple[str, str] | None = None
    """``(class, message)`` of the last release or reject that gave one."""


class Archived(NamedTuple):
    """A record archived by a transition: a dead letter to write."""

    offset: int
    delivery_count: int
    error_class: str
    error_message: str


class Acquired(NamedTuple):
    offset: int
    delivery_count: int


@dataclass(slots=True)
class SharePartitionState:
    """One share-partition: SPSO, SPEO and the in-flight records between them (offsets
    missing from ``records`` are not records: gaps of a compacted or trimmed log)."""

    start_offset: int = 0
    end_offset: int = 0
    records: dict[int, InFlight] = field(default_factory=dict)

    @classmethod
    def starting_at(cls, offset: int) -> SharePartitionState:
        return cls(offset, offset, {})

    def copy(self) -> SharePartitionState:
        return SharePartitionState(self.start_offset, self.end_offset, {
            o: InFlight(r.state, r.delivery_count, r.deadline_ms, r.holder, r.expired, r.error)
            for o, r in self.records.items()
        })

    # ------------------------------------------------------------------ queries

    def room(self, settings: ShareSettings) -> int:
        """How many new offsets the window may still take."""
        return max(0, settings.max_record_locks - (self.end_offset - self.start_offset))

    def available(self) -> list[int]:
        return sorted(o for o, r in self.records.items() if r.state is RecordState.AVAILABLE)

    def count(self, state: RecordState) -> int:
        return sum(1 for r in self.records.values() if r.state is state)

    def oldest_lock_deadline_ms(self) -> int | None:
        deadlines = [r.deadline_ms for r in self.records.values()
                     if r.state is RecordState.ACQUIRED]
        return min(deadlines) if deadlines else None

    def summary(self, now_ms: int, settings: ShareSettings) -> dict[str, int | None]:
        """Offsets and record counts as of ``now_ms`` (locks past their deadline count
        as available), and the oldest lock's deadline and age."""
        expired = sum(1 for r in self.records.values()
                      if r.state is RecordState.ACQUIRED and r.deadline_ms <= now_ms)
        oldest = self.oldest_lock_deadline_ms()
        return {
            "start_offset": self.start_offset, "end_offset": self.end_offset,
            "acquired": self.count(RecordState.ACQUIRED) - expired,
            "available": self.count(RecordState.AVAILABLE) + expired,
            "acknowledged": self.count(RecordState.ACKNOWLEDGED),
            "archived": self.count(RecordState.ARCHIVED),
            "oldest_lock_deadline_ms": oldest,
            "oldest_lock_age_ms": None if oldest is None
            else now_ms - (oldest - settings.lock_timeout_ms),
        }

    def held_by(self, member: str) -> list[int]:
        return sorted(o for o, r in self.records.items()
                      if r.state is RecordState.ACQUIRED and r.holder == member)

    # ------------------------------------------------------------------ transitions

    def expire(self, now_ms: int, settings: ShareSettings) -> list[Archived]:
        """Return every record whose lock expired by ``now_ms`` (available again, or
        archived at the delivery limit)."""
        archived = []
        for offset, rec in sorted(self.records.items()):
            if rec.state is RecordState.ACQUIRED and rec.deadline_ms <= now_ms:
                rec.expired = True
                found = self._come_back(offset, rec, settings)
                if found is not None:
                    archived.append(found)
        self._advance()
        return archived

    def acquire(
        self, member: str, now_ms: int, settings: ShareSettings, max_records: int
    ) -> list[Acquired]:
        """Lock up to ``max_records`` available records (lowest offsets first) for
        ``member``."""
        out = []
        for offset in self.available()[:max_records]:
            out.append(self._lock(offset, self.records[offset], member, now_ms, settings))
        return out

    def acquire_new(
        self, offsets: Iterable[int], next_end: int, member: str, now_ms: int,
        settings: ShareSettings,
    ) -> list[Acquired]:
        """Lock ``offsets`` (records read from the log at the end offset, ascending) for
        ``member``, moving the end offset to ``next_end`` (past them and any gap)."""
        out = []
        for offset in offsets:
            if offset < self.end_offset:
                raise ValueError(f"offset {offset} is below the end offset {self.end_offset}")
            rec = self.records[offset] = InFlight(RecordState.AVAILABLE)
            out.append(self._lock(offset, rec, member, now_ms, settings))
        self.end_offset = max(self.end_offset, next_end)
        return out

    def pass_empty(self, next_end: int) -> None:
        """Offsets up to ``next_end`` hold no record to hand out (control batches, a
        compacted stretch): move the end offset, and the start over them if nothing
        unfinished is before."""
        if next_end > self.end_offset:
            self.end_offset = next_end
            self._advance()

    def acknowledge(
        self, group: str, topic: str, partition: int, member: str, offset: int,
        delivery_count: int, ack: AckType, error: tuple[str, str] | None, now_ms: int,
        settings: ShareSettings,
    ) -> Archived | None:
        """Apply ``member``'s acknowledgement of ``offset`` (as delivered the
        ``delivery_count``-th time). Returns the dead letter if it archived the record.

        Raises:
            UnknownShareRecordError, RecordNotHeldError, LockExpiredError.
        """
        def refuse(kind: type[ShareAcknowledgeError], why: str) -> ShareAcknowledgeError:
            return kind(
                f"share group {group!r}: cannot {ack.name.lower()} {topic}-{partition} "
                f"offset {offset} for member {member!r}: {why}", group, topic, partition,
                offset,
            )

        rec = self.records.get(offset)
        if offset < self.start_offset:
            raise refuse(RecordNotHeldError, "it is finished already (acknowledged or "
                         "archived; the group's start offset is past it)")
        if rec is None:
            raise refuse(UnknownShareRecordError, f"the group never handed it out (its "
                         f"in-flight records are [{self.start_offset}, {self.end_offset}))")
        if delivery_count != rec.delivery_count:
            if 0 < delivery_count < rec.delivery_count:
                raise refuse(LockExpiredError, f"its lock expired; it was delivered "
                             f"{rec.delivery_count} times since (state {rec.state.name})")
            raise refuse(RecordNotHeldError, f"it was not delivered a "
                         f"{delivery_count}th time (delivery count {rec.delivery_count})")
        if rec.holder != member:
            raise refuse(RecordNotHeldError, f"member {rec.holder!r} holds it")
        if rec.state is not RecordState.ACQUIRED:
            if rec.expired:
                raise refuse(LockExpiredError, f"its lock expired (now {rec.state.name})")
            raise refuse(RecordNotHeldError, f"it is {rec.state.name} already")
        if rec.deadline_ms <= now_ms:
            raise refuse(LockExpiredError, f"its lock expired at {rec.deadline_ms} (now "
                         f"{now_ms}; acknowledge within lock_timeout_ms)")
        if error is not None:
            rec.error = error
        archived: Archived | None = None
        if ack is AckType.ACCEPT:
            rec.state = RecordState.ACKNOWLEDGED
        elif ack is AckType.REJECT:
            rec.state = RecordState.ARCHIVED
            archived = self._dead_letter(offset, rec, REJECTED_ERROR)
        else:
            archived = self._come_back(offset, rec, settings, RELEASED_ERROR)
        rec.deadline_ms = 0
        self._advance()
        return archived

    def release_member(self, member: str, settings: ShareSettings) -> list[Archived]:
        """Release every record ``member`` holds (it left)."""
        archived = []
        for offset in self.held_by(member):
            found = self._come_back(offset, self.records[offset], settings)
            if found is not None:
                archived.append(found)
        self._advance()
        return archived

    def skip_to(self, offset: int) -> None:
        """Forget records below ``offset`` (the log no longer holds them)."""
        if offset <= self.start_offset:
            return
        for gone in [o for o in self.records if o < offset]:
            del self.records[gone]
        self.start_offset = offset
        self.end_offset = max(self.end_offset, offset)
        self._advance()

    def forget(self, offset: int) -> None:
        """Drop record ``offset`` from the window (the log no longer holds it)."""
        self.records.pop(offset, None)
        self._advance()

    # ------------------------------------------------------------------ helpers

    def _lock(
        self, offset: int, rec: InFlight, member: str, now_ms: int, settings: ShareSettings
    ) -> Acquired:
        rec.state = RecordState.ACQUIRED
        rec.delivery_count += 1
        rec.deadline_ms = now_ms + settings.lock_timeout_ms
        rec.holder = member
        rec.expired = False
        return Acquired(offset, rec.delivery_count)

    def _come_back(
        self, offset: int, rec: InFlight, settings: ShareSettings,
        default: tuple[str, str] = LOCK_TIMEOUT_ERROR,
    ) -> Archived | None:
        """The record returns from Acquired: available, or archived at the limit."""
        rec.deadline_ms = 0
        if rec.delivery_count >= settings.max_delivery_attempts:
            rec.state = RecordState.ARCHIVED
            return self._dead_letter(offset, rec, default)
        rec.state = RecordState.AVAILABLE
        return None

    @staticmethod
    def _dead_letter(offset: int, rec: InFlight, default: tuple[str, str]) -> Archived:
        error_class, message = rec.error or default
        return Archived(offset, rec.delivery_count, error_class, message)

    def _advance(self) -> None:
        """Move the SPSO over finished records (and gaps), forgetting them: amortised
        O(1), as it stops at the first unfinished record."""
        offset, records = self.start_offset, self.records
        while offset < self.end_offset:
            if not records:  # only gaps left: jump over them at once
                offset = self.end_offset
                break
            rec = records.get(offset)
            if rec is not None:
                if rec.state not in FINISHED:
                    break
                del records[offset]
            offset += 1
        self.start_offset = offset

    # ------------------------------------------------------------------ encoding

    def encode(self) -> bytes:
        rows = [
            [o, int(r.state), r.delivery_count, r.deadline_ms, r.holder, int(r.expired),
             *(r.error or (None, None))]
            for o, r in sorted(self.records.items())
        ]
        return json.dumps(
            {"v": STATE_VERSION, "spso": self.start_offset, "speo": self.end_offset,
             "r": rows}, separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> SharePartitionState:
        """Raises ValueError (or KeyError, TypeError) on a value it cannot read."""
        body = _decode_versioned(raw)
        records = {}
        for o, state, count, deadline, holder, expired, err_cls, err_msg in body["r"]:
            error = None if err_cls is None else (str(err_cls), str(err_msg))
            records[int(o)] = InFlight(
                _STATES[state], int(count), int(deadline), holder, bool(expired), error
            )
        return cls(int(body["spso"]), int(body["speo"]), records)
