"""A thin ``Backend``-shaped object for group tests: the group methods delegate to a real
:class:`~logstore.groups.GroupCoordinator` one-to-one (as ``LocalBackend`` does), topics
and committed offsets live in memory, and fetches and commits are fenced by the
coordinator (``check`` and ``fenced``). Plus :class:`Reader`, a minimal consumer loop
over :class:`~logstore.client.membership.Membership`: what the ``Consumer`` does with it
(positions from committed offsets, commit in ``on_revoke``, drop positions in
``on_lost``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from logstore.client.membership import Membership
from logstore.errors import GroupError, TopicNotFoundError
from logstore.groups import GroupCoordinator
from logstore.types import (
    CommittedOffset,
    GroupInfo,
    GroupMember,
    JoinResult,
    TopicMetadata,
    TopicPartition,
)


class GroupBackend:
    """The group, metadata, fetch and offset methods of ``Backend`` over a coordinator."""

    def __init__(
        self,
        coordinator: GroupCoordinator,
        partitions: dict[str, int],
        offsets: dict[tuple[str, TopicPartition], int] | None = None,
        records: int = 1000,
        commits: list[tuple[str, TopicPartition, int]] | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.partitions = partitions  # shared between "processes": edit to grow a topic
        self.offsets = {} if offsets is None else offsets
        self.records = records  # every partition holds offsets [0, records)
        self.commits = [] if commits is None else commits  # every commit, in order

    def now_ms(self) -> int:
        return 0

    def topic_metadata(self, topic: str) -> TopicMetadata:
        if topic not in self.partitions:
            raise TopicNotFoundError(f"unknown topic {topic!r}")
        return TopicMetadata(topic, None, self.partitions[topic], "murmur3", 1 << 20)

    def join_group(
        self, group: str, member_id: str, *, protocol_type: str,
        protocols: Sequence[tuple[str, bytes]], session_timeout_ms: int,
        rebalance_timeout_ms: int, group_instance_id: str | None = None, wait_ms: int = 0,
    ) -> JoinResult | None:
        return self.coordinator.join(
            group, member_id, protocol_type=protocol_type, protocols=protocols,
            session_timeout_ms=session_timeout_ms, rebalance_timeout_ms=rebalance_timeout_ms,
            group_instance_id=group_instance_id, wait_ms=wait_ms,
        )

    def sync_group(self, group: str, member_id: str, generation: int,
                   assignments: Mapping[str, bytes], *, wait_ms: int = 0) -> bytes | None:
        return self.coordinator.sync(group, member_id, generation, assignments, wait_ms=wait_ms)

    def heartbeat(self, group: str, member_id: str, generation: int) -> None:
        self.coordinator.heartbeat(group, member_id, generation)

    def group_changed(self, group: str, member_id: str, generation: int) -> bool:
        return self.coordinator.changed(GroupMember(group, member_id, generation))

    def leave_group(self, group: str, member_id: str) -> None:
        self.coordinator.leave(group, member_id)

    def describe_group(self, group: str) -> GroupInfo:
        return self.coordinator.describe(group)

    def list_groups(self) -> list[str]:
        return self.coordinator.list_groups()

    def delete_group(self, group: str) -> None:
        self.coordinator.delete(group)

    def fetch(self, positions: Mapping[TopicPartition, int], *, max_records: int,
              member: GroupMember | None = None) -> dict[TopicPartition, list[int]]:
        """Offsets of the records from each position on (a record is its offset)."""
        if member is not None:
            self.coordinator.check(member)
        return {tp: list(range(p, min(p + max_records, self.records)))
                for tp, p in positions.items()}

    def committed_offsets(self, group: str, tps: Iterable[TopicPartition] | None = None
                          ) -> dict[TopicPartition, CommittedOffset]:
        return {tp: CommittedOffset(o, "", 0) for (g, tp), o in self.offsets.items()
                if g == group and (tps is None or tp in set(tps))}

    def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, tuple[int, str]],
                       *, member: GroupMember | None = None) -> None:
        def write() -> None:
            for tp, (offset, _) in offsets.items():
                self.offsets[(group, tp)] = offset
                self.commits.append((group, tp, offset))

        if member is None:
            write()
        else:
            with self.coordinator.fenced(member):
                write()


class Reader:
    """A consumer loop over a Membership: fetch what it owns (fenced), hand records to
    ``handled``, commit positions in ``on_revoke`` and on :meth:`commit`."""

    def __init__(self, backend: GroupBackend, membership: Membership, group: str = "g") -> None:
        self.backend = backend
        self.membership = membership
        self.group = group
        self.positions: dict[TopicPartition, int] = {}
        self.handled: list[tuple[TopicPartition, int]] = []
        self.events: list[tuple[str, list[TopicPartition]]] = []
        self.errors: list[GroupError] = []

    def on_revoke(self, tps: list[TopicPartition]) -> None:
        self.events.append(("revoke", tps))
        self.commit(tps)
        for tp in tps:
            self.positions.pop(tp, None)

    def on_assign(self, tps: list[TopicPartition]) -> None:
        self.events.append(("assign", tps))
        committed = self.backend.committed_offsets(self.group, tps)
        for tp in tps:
            self.positions[tp] = committed[tp].offset if tp in committed else 0

    def on_lost(self, tps: list[TopicPartition]) -> None:
        self.events.append(("lost", tps))
        for tp in tps:
            self.positions.pop(tp, None)

    def step(self, *, fetch: int = 0) -> None:
        """One consumer poll: membership, then fetch up to ``fetch`` records a partition
        and hand them out. A fencing error is recorded, not raised."""
        try:
            self.membership.poll(on_revoke=self.on_revoke, on_assign=self.on_assign,
                                 on_lost=self.on_lost)
            if fetch and self.membership.member is not None and self.positions:
                got = self.backend.fetch(dict(self.positions), max_records=fetch,
                                         member=self.membership.member)
                for tp, offsets in got.items():
                    self.handled += [(tp, o) for o in offsets]
                    if offsets:
                        self.positions[tp] = offsets[-1] + 1
        except GroupError as err:
            self.errors.append(err)
            if not self.membership.transient(err) and self.membership.member is not None:
                self.membership.lose(err, on_lost=self.on_lost)

    def commit(self, tps: Iterable[TopicPartition] | None = None) -> None:
        chosen = {tp: (self.positions[tp], "") for tp in (tps or list(self.positions))
                  if tp in self.positions}
        if chosen:
            self.backend.commit_offsets(self.group, chosen, member=self.membership.member)
