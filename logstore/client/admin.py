"""Consumer-group administration: list, describe (with lag), reset offsets, delete.

What ``kafka-consumer-groups.sh`` does, on a store: offsets come from the offsets log,
live members and their partitions from the group's files.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from logstore.client.group import GROUPS_DIR, GroupFiles, group_dir_name, group_from_dir_name
from logstore.errors import GroupNotEmptyError, InvalidConfigError
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
    state: str  # "Stable" (live members) or "Empty"
    generation: int
    members: dict[str, list[TopicPartition]]
    partitions: list[PartitionLag]

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)


def list_groups(store: Store) -> list[str]:
    """Groups with committed offsets or a membership record."""
    names = set(store.offsets.groups())
    root = os.path.join(store.path, GROUPS_DIR)
    if store.fs.is_dir(root):
        names.update(group_from_dir_name(n) for n in store.fs.listdir(root))
    return sorted(names)


def _live_members(store: Store, group: str) -> tuple[int, dict[str, list[TopicPartition]]]:
    root = os.path.join(store.path, GROUPS_DIR, group_dir_name(group))
    if not store.fs.is_dir(root):
        return 0, {}
    files = GroupFiles(store.path, group, store.fs)
    try:
        state = files.read_state()
        live = {m: state.assignment.get(m, []) for m in state.members if files.is_alive(m)}
        return state.generation, live
    finally:
        files.close()


def current_offsets(store: Store, group: str) -> dict[TopicPartition, CommittedOffset]:
    """``group``'s committed offsets that belong to the topics as they are now (not to a
    deleted topic of the same name, nor to one that no longer exists)."""
    out = {}
    for tp, c in store.offsets.group_offsets(group).items():
        if store.has_topic(tp.topic) and store.topic(tp.topic).topic_id == c.topic_id:
            out[tp] = c
    return out


def describe_group(store: Store, group: str) -> GroupDescription:
    """Members, assignment, committed offsets, log ends and lag of every partition the
    group has offsets for or is assigned."""
    generation, members = _live_members(store, group)
    committed = store.offsets.group_offsets(group)
    owners = {tp: m for m, tps in members.items() for tp in tps}
    rows = []
    for tp in sorted(set(committed) | set(owners)):
        if not store.has_topic(tp.topic):
            continue
        plog = store.partition(tp.topic, tp.partition)
        plog.refresh()
        end = plog.log_end_offset
        c = committed.get(tp)
        stale = None
        if c is not None and c.topic_id != store.topic(tp.topic).topic_id:
            stale, c = c.offset, None
        offset = None if c is None else c.offset
        lag = None if offset is None else max(0, end - offset)
        rows.append(
            PartitionLag(tp.topic, tp.partition, offset, end, lag, owners.get(tp), stale)
        )
    return GroupDescription(group, "Stable" if members else "Empty", generation, members, rows)


def _targets(
    store: Store, group: str, topics: Iterable[str] | None
) -> list[TopicPartition]:
    if topics is None:
        return sorted(current_offsets(store, group))
    out = []
    for name in topics:
        out += [TopicPartition(name, p) for p in range(store.topic(name).num_partitions)]
    return out


def reset_offsets(
    store: Store,
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
    _, members = _live_members(store, group)
    if members:
        raise GroupNotEmptyError(
            f"group {group!r} has {len(members)} live member(s) ({', '.join(sorted(members))}); "
            f"stop them before resetting its offsets"
        )
    committed = current_offsets(store, group)
    result: dict[TopicPartition, int] = {}
    for tp in _targets(store, group, topics):
        plog = store.partition(tp.topic, tp.partition)
        plog.refresh()
        start, end = plog.log_start_offset, plog.log_end_offset
        if to_earliest:
            new = start
        elif to_latest:
            new = end
        elif to_datetime is not None:
            found = plog.offset_for_timestamp(int(to_datetime.timestamp() * 1000))
            new = end if found is None else found
        elif to_offset is not None:
            new = to_offset
        else:
            current = committed.get(tp)
            base = current.offset if current is not None else end
            new = base + (shift_by or 0)
        result[tp] = min(max(new, start), end)
    if execute and result:
        ids = {tp.topic: store.topic(tp.topic).topic_id for tp in result}
        store.offsets.commit(group, {tp: (o, "") for tp, o in result.items()}, ids)
    return result


def delete_group(store: Store, group: str) -> None:
    """Forget an inactive group: its committed offsets and membership files.

    Raises:
        GroupNotEmptyError: the group has live members.
    """
    _, members = _live_members(store, group)
    if members:
        raise GroupNotEmptyError(
            f"group {group!r} has live members ({', '.join(sorted(members))}); stop them "
            f"before deleting it"
        )
    store.offsets.delete(group, list(store.offsets.group_offsets(group)))
    root = os.path.join(store.path, GROUPS_DIR, group_dir_name(group))
    if store.fs.is_dir(root):
        store.fs.rmtree(root)
