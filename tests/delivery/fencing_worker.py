"""One group member for the fencing test: fetch, "process" (a short sleep, during which
the test may SIGSTOP it), commit; every step goes to a ledger, one line each, written
with ``os.write`` on an ``O_APPEND`` file so a SIGSTOP or SIGKILL never tears a line::

    a|r|l NS P...      assigned / revoked / lost partitions P...
    f NS P O           fetched (and handled) record P/O
    c NS P O           committed O (the next offset to read) for partition P
    e NS NAME          a group error NAME (fenced: typed, by poll or commit)

NS is ``time.monotonic_ns()`` (one clock for every process of the machine).

    python fencing_worker.py consumer|membership DATA LEDGER STOP MAX_POLL_MS

``consumer`` drives the public API (``store.consumer(..., max_poll_interval_ms=...)``);
``membership`` drives :class:`~logstore.client.membership.Membership` over a real
:class:`~logstore.groups.GroupCoordinator` and the store's offsets log (the same
scenario on the group layer alone). The worker stops when the file STOP exists.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

import logstore
from logstore.errors import GroupError
from logstore.types import (
    CommittedOffset,
    ConsumerRecord,
    GroupMember,
    JoinResult,
    SystemClock,
    TopicMetadata,
    TopicPartition,
)

TOPIC = "t"
GROUP = "g"
PROCESS_S = 0.1
MAX_RECORDS = 10


class Ledger:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, *lines: str) -> None:
        if lines:
            os.write(self.fd, "".join(f"{line}\n" for line in lines).encode())

    def event(self, kind: str, tps: Iterable[TopicPartition]) -> None:
        self.write(f"{kind} {time.monotonic_ns()} " + " ".join(str(tp.partition) for tp in tps))


def run_consumer(data: str, ledger: Ledger, stop: str, max_poll_ms: int) -> None:
    with logstore.open(data) as store, store.consumer(  # type: ignore[call-arg]
        [TOPIC], group_id=GROUP, auto_offset_reset="earliest", enable_auto_commit=False,
        max_poll_records=MAX_RECORDS * 4, max_poll_interval_ms=max_poll_ms,
        session_timeout_ms=10_000, heartbeat_interval_ms=100,
        on_assign=lambda tps: ledger.event("a", tps),
        on_revoke=lambda tps: ledger.event("r", tps),
    ) as consumer:
        while not os.path.exists(stop):
            try:
                records = consumer.poll(timeout_ms=100)
                handle(ledger, records)
                time.sleep(PROCESS_S)  # processing: the test's SIGSTOP lands here
                if records:
                    consumer.commit()
                    ledger.write(*(f"c {time.monotonic_ns()} {tp.partition} "
                                   f"{consumer.position(tp)}" for tp in consumer.assignment()))
            except GroupError as err:
                ledger.write(f"e {time.monotonic_ns()} {type(err).__name__}")


def handle(ledger: Ledger, records: Sequence[ConsumerRecord]) -> None:
    now = time.monotonic_ns()
    ledger.write(*(f"f {now} {r.partition} {r.offset}" for r in records))


class StoreBackend:
    """The group and offset methods of the Backend over a coordinator and the store."""

    def __init__(self, store: logstore.Store) -> None:
        from logstore.groups import GroupCoordinator

        self.store = store
        self.coordinator = GroupCoordinator(store.path, store.fs, SystemClock())

    def topic_metadata(self, topic: str) -> TopicMetadata:
        t = self.store.refresh_topic(topic)
        return TopicMetadata(topic, t.topic_id, t.num_partitions, "murmur3", 1 << 20)

    def join_group(self, group: str, member_id: str, **kwargs: object) -> JoinResult | None:
        return self.coordinator.join(group, member_id, **kwargs)  # type: ignore[arg-type]

    def sync_group(self, group: str, member_id: str, generation: int,
                   assignments: Mapping[str, bytes], *, wait_ms: int = 0) -> bytes | None:
        return self.coordinator.sync(group, member_id, generation, assignments, wait_ms=wait_ms)

    def heartbeat(self, group: str, member_id: str, generation: int) -> None:
        self.coordinator.heartbeat(group, member_id, generation)

    def leave_group(self, group: str, member_id: str) -> None:
        self.coordinator.leave(group, member_id)

    def fetch(self, positions: Mapping[TopicPartition, int], member: GroupMember
              ) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.coordinator.check(member)
        return {tp: self.store.topic(tp.topic).partition(tp.partition).read_records(
            p, MAX_RECORDS, record_type=ConsumerRecord, topic_partition=tp)
            for tp, p in positions.items()}

    def committed_offsets(self, group: str, tps: Iterable[TopicPartition]
                          ) -> dict[TopicPartition, CommittedOffset]:
        found = {tp: self.store.offsets.committed(group, tp) for tp in tps}
        return {tp: c for tp, c in found.items() if c is not None}

    def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, tuple[int, str]],
                       member: GroupMember) -> None:
        with self.coordinator.fenced(member):
            self.store.offsets.commit(group, dict(offsets),
                                      {TOPIC: self.store.topic(TOPIC).topic_id})


def run_membership(data: str, ledger: Ledger, stop: str, max_poll_ms: int) -> None:
    from logstore.client.membership import Membership

    with logstore.open(data) as store:
        backend = StoreBackend(store)
        membership = Membership(
            backend, GROUP, f"member-{os.getpid()}", assignor="sticky",  # type: ignore[arg-type]
            session_timeout_ms=10_000, max_poll_interval_ms=max_poll_ms,
            heartbeat_interval_ms=100,
        )
        membership.subscribe([TOPIC])
        positions: dict[TopicPartition, int] = {}

        def commit(tps: Iterable[TopicPartition]) -> None:
            chosen = {tp: (positions[tp], "") for tp in tps if tp in positions}
            member = membership.member
            if chosen and member is not None:
                backend.commit_offsets(GROUP, chosen, member)
                ledger.write(*(f"c {time.monotonic_ns()} {tp.partition} {o}"
                               for tp, (o, _) in chosen.items()))

        def on_assign(tps: list[TopicPartition]) -> None:
            ledger.event("a", tps)
            committed = backend.committed_offsets(GROUP, tps)
            positions.update({tp: committed[tp].offset if tp in committed else 0 for tp in tps})

        def on_revoke(tps: list[TopicPartition]) -> None:
            ledger.event("r", tps)
            commit(tps)
            for tp in tps:
                positions.pop(tp, None)

        def on_lost(tps: list[TopicPartition]) -> None:
            ledger.event("l", tps)
            for tp in tps:
                positions.pop(tp, None)

        while not os.path.exists(stop):
            try:
                membership.poll(on_revoke=on_revoke, on_assign=on_assign, on_lost=on_lost,
                                wait_ms=100)
                member = membership.member
                records: list[ConsumerRecord] = []
                if member is not None and positions:
                    for tp, got in backend.fetch(dict(positions), member).items():
                        if got:
                            positions[tp] = got[-1].offset + 1
                            records += got
                handle(ledger, records)
                time.sleep(PROCESS_S)  # processing: the test's SIGSTOP lands here
                if records:
                    commit(list(positions))
            except GroupError as err:
                ledger.write(f"e {time.monotonic_ns()} {type(err).__name__}")
                if not membership.transient(err) and membership.member is not None:
                    membership.lose(err, on_lost=on_lost)  # a fetch or commit was fenced
        membership.leave(on_revoke=on_revoke)
        backend.coordinator.close()


def main() -> None:
    mode, data, ledger_path, stop, max_poll_ms = sys.argv[1:6]
    run = run_consumer if mode == "consumer" else run_membership
    run(data, Ledger(ledger_path), stop, int(max_poll_ms))


if __name__ == "__main__":
    main()
