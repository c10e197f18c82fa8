"""Consumer-group administration: list, describe (with lag), reset offsets, delete.

What ``kafka-consumer-groups.sh`` does, through the backend seam: committed offsets and
the group's members come from the backend (on an embedded store, its offsets log and
group coordinator), each member's partitions from its assignment in Kafka's consumer
protocol.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from logstore.client.backend import Backend, resolve_backend
from logstore.errors import GroupNotEmptyError, InvalidConfigError, TopicNotFoundError
from logstore.records.consumer_protocol import decode_assignment
from logstore.types import CommittedOffset, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store


class PartitionLag(NamedTuple):
    topic: str
    partition: int
    committed: int | None
    log_end_offset: int
    lag: int | None
    owner: str | None
    stale_offset: int | None = None
    """An offset committed against a deleted topic of the same name: ignored (consumers
    start from ``auto_offset_reset``), shown so the user sees why."""


class GroupDescription(NamedTuple):
    group: str
    state: str
    """"Empty" (no live members), or Kafka's name of the group's state: "Stable",
    "PreparingRebalance" or "CompletingRebalance"."""
    generation: int
    members: dict[str, list[TopicPartition]]
    partitions: list[PartitionLag]

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)


def list_groups(store: Store | Backend) -> list[str]:
    """Groups with committed offsets or members."""
    return resolve_backend(store).list_groups()


def _live_members(backend: Backend, group: str) -> tuple[str, int, dict[str, list[TopicPartition]]]:
    """The group's state, generation, and each live member's partitions."""
    info = backend.describe_group(group)
    members = {
        m.member_id: sorted(decode_assignment(m.assignment).partitions) for m in info.members
    }
    return info.state, info.generation, members


def current_offsets(store: Store | Backend, group: str) -> dict[TopicPartition, CommittedOffset]:
    """``group``'s committed offsets that belong to the topics as they are now (not to a
    deleted topic of the same name, nor to one that no longer exists)."""
    backend = resolve_backend(store)
    ids: dict[str, str | None] = {}
    out = {}
    for tp, c in backend.committed_offsets(group).items():
        if tp.topic not in ids:
            ids[tp.topic] = _topic_id(backend, tp.topic)
        if ids[tp.topic] is not _MISSING and ids[tp.topic] == c.topic_id:
            out[tp] = c
    return out


_MISSING = "\0missing"  # no topic has this id


def _topic_id(backend: Backend, name: str) -> str | None:
    try:
        return backend.topic_metadata(name).topic_id
    except TopicNotFoundError:
        return _MISSING


def describe_group(store: Store | Backend, group: str) -> GroupDescription:
    """Members, assignment, committed offsets, log ends and lag of every partition the
    group has offsets for or is assigned."""
    backend = resolve_backend(store)
    state, generation, members = _live_members(backend, group)
    committed = backend.committed_offsets(group)
    owners = {tp: m for m, tps in members.items() for tp in tps}
    ids: dict[str, str | None] = {}
    rows = []
    for tp in sorted(set(committed) | set(owners)):
        if tp.topic not in ids:
            ids[tp.topic] = _topic_id(backend, tp.topic)
        if ids[tp.topic] is _MISSING:
            continue
        end = backend.offset_range(tp)[1]
        c = committed.get(tp)
        stale = None
        if c is not None and c.topic_id != ids[tp.topic]:
            stale, c = c.offset, None
        offset = None if c is None else c.offset
        lag = None if offset is None else max(0, end - offset)
        rows.append(
            PartitionLag(tp.topic, tp.partition, offset, end, lag, owners.get(tp), stale)
        )
    shown = state if members else "Empty"
    return GroupDescription(group, shown, generation, members, rows)


def _targets(
    backend: Backend, group: str, topics: Iterable[str] | None
) -> list[TopicPartition]:
    if topics is None:
        return sorted(current_offsets(backend, group))
    out = []
    for name in topics:
        out += [TopicPartition(name, p) for p in range(backend.topic_metadata(name).partitions)]
    return out


def reset_offsets(
    store: Store | Backend,
    group: str,
    *,
    topics: Iterable[str] | None = None,
    to_earliest: bool = False,
    to_latest: bool = False,
    to_datetime: _dt.datetime | None = None,
    to_offset: int | None = None,
    shift_by: int | None = None,
    execute: bool = False,
) -> dict[TopicPartition, int]:
    """Compute (and with ``execute``, commit) new offsets for an inactive group: exactly
    one of the ``to_*``/``shift_by`` options. Returns the new offset of each partition.

    Raises:
        GroupNotEmptyError: the group has live members.
        InvalidConfigError: not exactly one option.
    """
    chosen = [to_earliest, to_latest, to_datetime is not None, to_offset is not None,
              shift_by is not None]
    if sum(chosen) != 1:
        raise InvalidConfigError(
            "reset_offsets needs exactly one of to_earliest, to_latest, to_datetime, "
            "to_offset, shift_by"
        )
    backend = resolve_backend(store)
    _, _, members = _live_members(backend, group)
    if members:
        raise GroupNotEmptyError(
            f"group {group!r} has {len(members)} live member(s) ({', '.join(sorted(members))}); "
            f"stop them before resetting its offsets",
            group,
        )
    committed = current_offsets(backend, group)
    result: dict[TopicPartition, int] = {}
    for tp in _targets(backend, group, topics):
        start, end = backend.offset_range(tp)
        if to_earliest:
            new = start
        elif to_latest:
            new = end
        elif to_datetime is not None:
            found = backend.offset_for_timestamp(tp, int(to_datetime.timestamp() * 1000))
            new = end if found is None else found.offset
        elif to_offset is not None:
            new = to_offset
        else:
            current = committed.get(tp)
            base = current.offset if current is not None else end
            new = base + (shift_by or 0)
        result[tp] = min(max(new, start), end)
    if execute and result:
        backend.commit_offsets(group, {tp: (o, "") for tp, o in result.items()})
    return result


def delete_group(store: Store | Backend, group: str) -> None:
    """Forget an inactive group: its committed offsets and membership.

    Raises:
        GroupNotEmptyError: the group has live members.
    """
    resolve_backend(store).delete_group(group)
