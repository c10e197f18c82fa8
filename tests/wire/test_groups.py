"""A consumer group of two members of the same library: both get a share of the
partitions, every record produced meanwhile is consumed once by the member that owns its
partition, commits land, and ListGroups/DescribeGroups tell the state, the members and
their assignments while they are in the group and after they left."""

from __future__ import annotations

import threading

from tests.wire.clients import Can, WireClient, by_name
from tests.wire.clients.base import TRANSIENT_GROUP_ERRORS
from tests.wire.differences import expect
from tests.wire.helpers import PYTESTMARK, create_topic, needs, unique
from tests.wire.model import GroupInfo, MemberControl, Rec, wait_for
from tests.wire.targets import Target

pytestmark = PYTESTMARK

PARTITIONS = 4
RECORDS = 40
JOIN_TIMEOUT_S = 30.0
CONSUME_TIMEOUT_S = 20.0


def _admin_for(client: WireClient) -> WireClient:
    """Who lists and describes the group: the library itself, else confluent-kafka
    (kcat has no group admin)."""
    return client if client.can(Can.GROUP_ADMIN) else by_name("confluent-kafka")


@needs(Can.GROUP, Can.PRODUCE)
def test_group_of_two_shares_partitions_and_commits(target: Target, client: WireClient) -> None:
    topic, group = unique("group"), unique("g")
    create_topic(target, topic, PARTITIONS)
    admin = _admin_for(client)
    members = [MemberControl(), MemberControl()]
    threads = [threading.Thread(target=_member, args=(client, target, topic, group, m),
                                name=f"{client.name}-member-{i}")
               for i, m in enumerate(members)]
    for t in threads:
        t.start()
    try:
        wait_for("both members to have disjoint shares of all partitions",
                 lambda: _settled(members), JOIN_TIMEOUT_S)
        sent = [Rec(f"key-{i % 8}".encode(), f"value-{i}".encode()) for i in range(RECORDS)]
        client.produce(target.bootstrap, topic, sent)
        wait_for(f"{RECORDS} records", lambda: sum(m.count() for m in members) >= RECORDS,
                 CONSUME_TIMEOUT_S)
        shares = [m.assigned for m in members]

        # described while both are in the group
        info = admin.describe_group(target.bootstrap, group, topic)
        assert info.state == "Stable" and info.protocol_type == "consumer"
        assert info.protocol in ("range", "roundrobin", "sticky", "cooperative-sticky")
        assert info.assignments() == sorted(shares, key=sorted)
        for m in info.members:
            assert m.member_id and m.client_id.startswith("wire-")
            expect(target.name, "DescribeGroups.members.client_host", m.client_host,
                   "/127.0.0.1")
        _expect_authorized(target, info)
        listed = admin.list_groups(target.bootstrap)
        assert group in listed
        expect(target.name, "ListGroups.group_state", listed[group],
               "Stable" if admin.name != "aiokafka" else None)
    finally:
        for m in members:
            m.stop.set()
        for t in threads:
            t.join(timeout=30)
    for m in members:
        assert m.error is None, m.error

    # each record once, from the member owning its partition
    got = [r for m in members for r in m.records]
    assert sorted(g.value for g in got) == sorted(r.value for r in sent)
    assert len({(g.partition, g.offset) for g in got}) == RECORDS
    for m, share in zip(members, shares, strict=True):
        assert {r.partition for r in m.records} <= share
    ends = {p: 1 + max(g.offset for g in got if g.partition == p)
            for p in {g.partition for g in got}}
    assert admin.committed(target.bootstrap, group, topic, PARTITIONS) == ends

    # described after both left
    wait_for("the group to be empty",
             lambda: admin.describe_group(target.bootstrap, group, topic).state == "Empty", 15)
    after = admin.describe_group(target.bootstrap, group, topic)
    assert after.members == () and after.protocol_type == "consumer"
    listed = admin.list_groups(target.bootstrap)
    expect(target.name, "ListGroups.group_state", listed[group],
           "Empty" if admin.name != "aiokafka" else None)


def _member(client: WireClient, target: Target, topic: str, group: str,
            ctl: MemberControl) -> None:
    try:
        client.run_member(target.bootstrap, topic, group, ctl)
    except BaseException as exc:  # reported by the test
        ctl.error = exc
    finally:
        ctl.done.set()


def _settled(members: list[MemberControl]) -> bool:
    for m in members:
        if m.error is not None:
            raise AssertionError(f"a member failed: {m.error!r}") from m.error
    a, b = (m.assigned for m in members)
    return bool(a) and bool(b) and not a & b and a | b == frozenset(range(PARTITIONS))


def _expect_authorized(target: Target, info: GroupInfo) -> None:
    if info.authorized_operations is not None:
        expect(target.name, "DescribeGroups.authorized_operations",
               info.authorized_operations,
               frozenset({"READ", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}))


@needs(Can.GROUP_ADMIN)
def test_describe_a_group_nobody_joined(target: Target, client: WireClient) -> None:
    group = unique("nobody")
    answers = []

    def answered() -> bool:  # past a coordinator still loading (a broker just restarted)
        answers.append(client.describe_group(target.bootstrap, group, "none"))
        return answers[-1].error not in TRANSIENT_GROUP_ERRORS

    wait_for(f"an answer about {group}", answered, 15, every_s=0.2)
    info = answers[-1]
    # DescribeGroups v6 (kafka-python asks it of Kafka) answers GROUP_ID_NOT_FOUND; before
    # v6 Kafka answers the state Dead and no error
    kafka_v6 = client.name == "kafka-python"
    expect(target.name, "DescribeGroups(unknown group).error", info.error,
           "GROUP_ID_NOT_FOUND" if kafka_v6 else None)
    if info.error is None:
        assert (info.state, info.members, info.protocol_type) == ("Dead", (), "")
    assert client.committed(target.bootstrap, unique("nobody"), "none", 1) == {}
