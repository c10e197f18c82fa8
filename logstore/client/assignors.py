"""Partition assignors: who in a consumer group reads which partitions. Pure functions.

Each takes the members' subscriptions, the partition count of every topic, and (for
``sticky``) the previous assignment, and returns every member's partitions. Members are
ordered by id, as Kafka's assignors order them, so every member computing an assignment
from the same inputs gets the same answer.

* ``range``: per topic, partitions in order split into contiguous ranges; the first
  ``n % c`` members get one extra (Kafka's ``RangeAssignor``).
* ``roundrobin``: every subscribed partition of every topic dealt in turn to the members
  subscribed to its topic (``RoundRobinAssignor``).
* ``sticky``: balanced like round-robin, but a member keeps what it owned before when it
  can, so a rebalance moves as few partitions as possible (``StickyAssignor``, eager).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set

from logstore.types import TopicPartition

Assignment = dict[str, list[TopicPartition]]
Assignor = Callable[
    [Mapping[str, Set[str]], Mapping[str, int], Mapping[str, list[TopicPartition]]], Assignment
]


def range_assign(
    subscriptions: Mapping[str, Set[str]],
    partitions: Mapping[str, int],
    previous: Mapping[str, list[TopicPartition]] | None = None,
) -> Assignment:
    result: Assignment = {m: [] for m in sorted(subscriptions)}
    for topic in sorted(partitions):
        members = sorted(m for m, topics in subscriptions.items() if topic in topics)
        if not members:
            continue
        count = partitions[topic]
        share, extra = divmod(count, len(members))
        start = 0
        for i, member in enumerate(members):
            n = share + (1 if i < extra else 0)
            result[member] += [TopicPartition(topic, p) for p in range(start, start + n)]
            start += n
    return result


def roundrobin_assign(
    subscriptions: Mapping[str, Set[str]],
    partitions: Mapping[str, int],
    previous: Mapping[str, list[TopicPartition]] | None = None,
) -> Assignment:
    members = sorted(subscriptions)
    result: Assignment = {m: [] for m in members}
    if not members:
        return result
    turn = 0
    for topic in sorted(partitions):
        for p in range(partitions[topic]):
            for _ in range(len(members)):
                member = members[turn % len(members)]
                turn += 1
                if topic in subscriptions[member]:
                    result[member].append(TopicPartition(topic, p))
                    break
    return result


def sticky_assign(
    subscriptions: Mapping[str, Set[str]],
    partitions: Mapping[str, int],
    previous: Mapping[str, list[TopicPartition]] | None = None,
) -> Assignment:
    members = sorted(subscriptions)
    result: Assignment = {m: [] for m in members}
    if not members:
        return result
    every = [
        TopicPartition(t, p)
        for t in sorted(partitions)
        if any(t in subscriptions[m] for m in members)
        for p in range(partitions[t])
    ]
    valid = set(every)
    taken: set[TopicPartition] = set()
    # 1. keep what each live member owned, if it still exists and is still subscribed
    for member in members:
        for tp in (previous or {}).get(member, []):
            if tp in valid and tp not in taken and tp.topic in subscriptions[member]:
                result[member].append(tp)
                taken.add(tp)
    # 2. trim members above their fair share, so the result is balanced
    floor_share, extra = divmod(len(every), len(members))
    by_size = sorted(members, key=lambda m: (-len(result[m]), m))
    for rank, member in enumerate(by_size):
        quota = floor_share + (1 if rank < extra else 0)
        while len(result[member]) > quota:
            taken.discard(result[member].pop())
    # 3. hand out the rest, each to the subscribed member holding the fewest
    for tp in every:
        if tp in taken:
            continue
        candidates = [m for m in members if tp.topic in subscriptions[m]]
        member = min(candidates, key=lambda m: (len(result[m]), m))
        result[member].append(tp)
        taken.add(tp)
    for member in members:
        result[member].sort()
    return result


ASSIGNORS: dict[str, Assignor] = {
    "range": range_assign,
    "roundrobin": roundrobin_assign,
    "sticky": sticky_assign,
}
