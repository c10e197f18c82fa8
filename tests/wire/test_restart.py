"""Committed offsets survive a server restart: each library consumes part of a topic in a
group and commits exactly what it handed over; the server is restarted once (for all the
libraries: a clean stop, the same address and data); then each library resumes in the
same group and gets exactly the records it had not committed: none lost, none
redelivered beyond the uncommitted ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.wire.clients import Can, WireClient, by_name, clients_that
from tests.wire.clients.kafka_python import KafkaPythonClient
from tests.wire.differences import expect
from tests.wire.helpers import PYTESTMARK, create_topic, needs, unique
from tests.wire.model import Got, MemberControl, Rec, commit_epochs, wait_for
from tests.wire.targets import Target

pytestmark = PYTESTMARK

PARTITIONS = 2
RECORDS = 24
FIRST = 10
"""Records handed over (and committed) before the restart."""
MEMBER_TIMEOUT_S = 30.0


@dataclass
class BeforeRestart:
    """One library's part before the restart."""

    topic: str = ""
    group: str = ""
    sent: list[Rec] = field(default_factory=list)
    first: list[Got] = field(default_factory=list)
    committed: dict[int, tuple[int, int]] = field(default_factory=dict)
    """OffsetFetch's (offset, leader epoch) per partition, before the restart."""
    error: BaseException | None = None


def _consume_in_group(client: WireClient, target: Target, topic: str, group: str,
                      ctl: MemberControl, until: int) -> None:
    """Run a member until it handed over ``until`` records (then leave ``ctl.stop``)."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            client.run_member(target.bootstrap, topic, group, ctl)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, name=f"{client.name}-resume")
    thread.start()
    try:
        wait_for(f"{until} records in group {group}",
                 lambda: ctl.count() >= until or bool(failed) or not thread.is_alive(),
                 MEMBER_TIMEOUT_S)
        if ctl.limit is not None:
            thread.join(MEMBER_TIMEOUT_S)  # it leaves by itself (kcat: after -c records)
        else:
            ctl.stop.wait(0.5)  # a little longer: records redelivered would show
    finally:
        ctl.stop.set()
        thread.join(MEMBER_TIMEOUT_S)
    if failed:
        raise failed[0]


@pytest.fixture(scope="module")
def before_restart(target: Target) -> Iterator[dict[str, BeforeRestart]]:
    """Every library's first part, then one restart of ``target``."""
    reference = KafkaPythonClient()
    states: dict[str, BeforeRestart] = {}
    for client in clients_that(Can.GROUP):
        state = states[client.name] = BeforeRestart()
        if client.unavailable() is not None:
            continue
        try:
            state.topic, state.group = unique("resume"), unique("resume-g")
            create_topic(target, state.topic, PARTITIONS)
            state.sent = [Rec(f"key-{i % 5}".encode(), f"value-{i}".encode())
                          for i in range(RECORDS)]
            reference.produce(target.bootstrap, state.topic, state.sent)
            ctl = MemberControl(limit=FIRST)
            _consume_in_group(client, target, state.topic, state.group, ctl, FIRST)
            state.first = list(ctl.records)
            state.committed = reference.committed_epochs(target.bootstrap, state.group,
                                                         state.topic)
        except Exception as exc:
            state.error = exc
    target.restart()
    yield states


@needs(Can.GROUP)
def test_committed_offsets_resume_after_restart(
    target: Target, client: WireClient, before_restart: dict[str, BeforeRestart]
) -> None:
    state = before_restart[client.name]
    if state.error is not None:
        raise AssertionError(f"before the restart: {state.error!r}") from state.error
    assert len(state.first) == FIRST
    committed = commit_epochs(state.first)  # what the client committed
    assert {p: o for p, (o, _) in state.committed.items()} == {
        p: o for p, (o, _) in committed.items()}
    expect(target.name, "OffsetFetch.committed_leader_epoch",
           {p: e for p, (_, e) in state.committed.items()},
           {p: e for p, (_, e) in committed.items()})

    ctl = MemberControl()
    _consume_in_group(client, target, state.topic, state.group, ctl, RECORDS - FIRST)
    first = {(g.partition, g.offset) for g in state.first}
    rest = [(g.partition, g.offset) for g in ctl.records]
    assert len(rest) == len(set(rest)), "a record came twice after the restart"
    assert not first & set(rest), "a committed record came again after the restart"
    assert sorted(g.value for g in [*state.first, *ctl.records]) == sorted(
        r.value for r in state.sent)
    ends = {p: 1 + max(o for q, o in first | set(rest) if q == p) for p, _ in first | set(rest)}
    assert by_name("kafka-python").committed(
        target.bootstrap, state.group, state.topic, PARTITIONS) == ends
