"""The classic consumer-group protocol and committed offsets over the wire.

Wire members are members of the same groups embedded consumers join: the backend's
coordinator is shared (members over the wire live by heartbeat deadline, embedded ones
by their process). JoinGroup and SyncGroup answer once the rebalance completes (or the
leader synced): the handler asks the coordinator again every :data:`GROUP_POLL_S`
meanwhile, in a worker thread, without holding the connection's other requests (a
connection's requests are answered in order anyway, as Kafka does).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from logstore.errors import (
    InvalidConfigError,
    LogstoreError,
    TopicNotFoundError,
    UnknownMemberIdError,
    UnstableOffsetCommitError,
)
from logstore.server.context import ServerContext
from logstore.server.protocol.codec import Obj
from logstore.server.protocol.codes import ErrorCode, code_of
from logstore.types import GroupMember, JoinResult, TopicPartition

log = logging.getLogger(__name__)

GROUP_POLL_S = 0.02
"""How often a pending JoinGroup or SyncGroup asks the coordinator again."""
GROUP_WAIT_MS = 0
"""How long one ask may block its worker thread: not at all (the waiting is done in the
event loop, so many members joining at once do not hold the worker threads that
produce and fetch need)."""
GROUP_OPERATIONS = (3, 6, 8, 10, 11)
"""What a client may do to a group, as Kafka's AclOperation codes (READ, DELETE,
DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS): Kafka without an authorizer grants them all,
and DescribeGroups v3+ reports them when asked."""
AUTHORIZED_GROUP_OPERATIONS = sum(1 << op for op in GROUP_OPERATIONS)
NOT_ASKED = -(2**31)
"""AuthorizedOperations when the client did not ask (Kafka's INT32_MIN)."""


def _group_error(err: LogstoreError) -> ErrorCode:
    if isinstance(err, InvalidConfigError):
        return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    return code_of(err)


async def _until(
    ctx: ServerContext, deadline_s: float, attempt: Callable[[], Any]
) -> Any:
    """Call ``attempt`` (in a worker) until it answers (not None) or the deadline."""
    while True:
        found = await ctx.run(attempt)
        if found is not None or ctx.loop.time() >= deadline_s:
            return found
        await asyncio.sleep(GROUP_POLL_S)


# --------------------------------------------------------------------------- membership


async def join_group(ctx: ServerContext, version: int, req: Obj, client: tuple[str, str]) -> Obj:
    group, member_id = req["group_id"], req["member_id"]
    fail: Obj = {"generation_id": -1, "protocol_name": "", "leader": "", "member_id": member_id,
                 "members": []}
    if not group:
        return {**fail, "error_code": ErrorCode.INVALID_GROUP_ID}
    session = req["session_timeout_ms"]
    cfg = ctx.config
    if not cfg.group_min_session_timeout_ms <= session <= cfg.group_max_session_timeout_ms:
        return {**fail, "error_code": ErrorCode.INVALID_SESSION_TIMEOUT}
    rebalance = req["rebalance_timeout_ms"] if version >= 1 else session
    instance = req.get("group_instance_id")
    if not member_id:
        member_id = f"{client[0] or 'member'}-{uuid.uuid4()}"
        if version >= 4 and instance is None:
            # Kafka 2.2+: the client learns its id first, then joins with it
            return {**fail, "error_code": ErrorCode.MEMBER_ID_REQUIRED, "member_id": member_id}
    ctx.members[(group, member_id)] = client
    protocols = [(p["name"], p["metadata"]) for p in req["protocols"]]

    def attempt() -> JoinResult | None:
        return ctx.backend.join_group(
            group, member_id, protocol_type=req["protocol_type"], protocols=protocols,
            session_timeout_ms=session, rebalance_timeout_ms=rebalance,
            group_instance_id=instance, wait_ms=GROUP_WAIT_MS,
        )

    deadline = ctx.loop.time() + rebalance / 1000 + 5
    try:
        result: JoinResult | None = await _until(ctx, deadline, attempt)
    except LogstoreError as err:
        return {**fail, "error_code": _group_error(err)}
    if result is None:
        return {**fail, "error_code": ErrorCode.REBALANCE_IN_PROGRESS}
    members: list[Obj] = []
    if result.members:
        instances = await ctx.run(_instance_ids, ctx, group)
        members = [
            {"member_id": m, "group_instance_id": instances.get(m), "metadata": meta}
            for m, meta in result.members
        ]
    return {
        "error_code": 0, "generation_id": result.generation, "protocol_name": result.protocol,
        "leader": result.leader, "member_id": member_id, "members": members,
    }


def _instance_ids(ctx: ServerContext, group: str) -> dict[str, str | None]:
    return {m.member_id: m.group_instance_id for m in ctx.backend.describe_group(group).members}


async def sync_group(ctx: ServerContext, version: int, req: Obj) -> Obj:
    group, member_id, generation = req["group_id"], req["member_id"], req["generation_id"]
    assignments = {a["member_id"]: a["assignment"] for a in req["assignments"]}

    def attempt() -> bytes | None:
        return ctx.backend.sync_group(group, member_id, generation, assignments,
                                      wait_ms=GROUP_WAIT_MS)

    deadline = ctx.loop.time() + ctx.config.group_max_session_timeout_ms / 1000
    try:
        assignment = await _until(ctx, deadline, attempt)
    except LogstoreError as err:
        return {"error_code": _group_error(err), "assignment": b""}
    if assignment is None:
        return {"error_code": ErrorCode.REBALANCE_IN_PROGRESS, "assignment": b""}
    return {"error_code": 0, "assignment": assignment}


async def heartbeat(ctx: ServerContext, version: int, req: Obj) -> Obj:
    try:
        await ctx.run(ctx.backend.heartbeat, req["group_id"], req["member_id"],
                      req["generation_id"])
    except LogstoreError as err:
        return {"error_code": _group_error(err)}
    return {"error_code": 0}


async def leave_group(ctx: ServerContext, version: int, req: Obj) -> Obj:
    group = req["group_id"]
    if version < 3:
        leaving = [{"member_id": req["member_id"], "group_instance_id": None}]
    else:
        leaving = req["members"]
    answers = await ctx.run(_leave_all, ctx, group, leaving)
    top = next((a["error_code"] for a in answers if a["error_code"]), 0) if version < 3 else 0
    return {"error_code": top, "members": answers}


def _leave_all(ctx: ServerContext, group: str, leaving: list[Obj]) -> list[Obj]:
    out: list[Obj] = []
    for m in leaving:
        member_id, instance = m["member_id"], m["group_instance_id"]
        code: int = 0
        try:
            if not member_id and instance is not None:
                found = [x.member_id for x in ctx.backend.describe_group(group).members
                         if x.group_instance_id == instance]
                if not found:
                    raise _unknown_member(group, instance)
                member_id = found[0]
            ctx.backend.leave_group(group, member_id)
            ctx.members.pop((group, member_id), None)
        except LogstoreError as err:
            code = _group_error(err)
        out.append({"member_id": m["member_id"], "group_instance_id": instance, "error_code": code})
    return out


def _unknown_member(group: str, who: str) -> LogstoreError:
    return UnknownMemberIdError(f"no member {who!r} in group {group!r}", group)


# --------------------------------------------------------------------------- offsets


async def offset_commit(ctx: ServerContext, version: int, req: Obj) -> Obj:
    group = req["group_id"]
    generation, member_id = req["generation_id_or_member_epoch"], req["member_id"]
    offsets = {
        TopicPartition(t["name"], p["partition_index"]):
            (p["committed_offset"], p["committed_metadata"] or "")
        for t in req["topics"]
        for p in t["partitions"]
    }
    codes = await ctx.run(_commit, ctx, group, generation, member_id, offsets)
    return {
        "topics": [
            {
                "name": t["name"],
                "partitions": [
                    {"partition_index": p["partition_index"],
                     "error_code": codes[TopicPartition(t["name"], p["partition_index"])]}
                    for p in t["partitions"]
                ],
            }
            for t in req["topics"]
        ],
    }


def _commit(
    ctx: ServerContext,
    group: str,
    generation: int,
    member_id: str,
    offsets: dict[TopicPartition, tuple[int, str]],
) -> dict[TopicPartition, int]:
    """Error code per partition of one OffsetCommit (in a worker thread)."""
    backend = ctx.backend
    codes: dict[TopicPartition, int] = {}
    known: dict[TopicPartition, tuple[int, str]] = {}
    for tp, value in offsets.items():
        try:
            meta = backend.topic_metadata(tp.topic)
            if not 0 <= tp.partition < meta.partitions:
                raise TopicNotFoundError(f"topic {tp.topic!r} has no partition {tp.partition}")
            known[tp] = value
        except LogstoreError as err:
            codes[tp] = code_of(err)
    member = None
    try:
        if generation >= 0 or member_id:
            member = GroupMember(group, member_id, generation)
        elif backend.describe_group(group).members:
            # a commit from outside the group while it has members (Kafka: only an
            # empty group takes commits without a generation)
            raise _unknown_member(group, member_id)
        backend.commit_offsets(group, known, member=member)
    except LogstoreError as err:
        code = _group_error(err)
        return {tp: codes.get(tp, code) for tp in offsets}
    return {tp: codes.get(tp, 0) for tp in offsets}


async def offset_fetch(ctx: ServerContext, version: int, req: Obj) -> Obj:
    group = req["group_id"]
    wanted = None if req["topics"] is None else [
        TopicPartition(t["name"], p) for t in req["topics"] for p in t["partition_indexes"]
    ]
    try:
        found = await ctx.run(_committed, ctx, group, wanted)
    except UnstableOffsetCommitError as err:
        # an open transaction holds offsets of the group: the client asks again later
        # (Kafka: per partition, v7+ with require_stable; v2+ carry a top-level code too)
        log.debug("offsets of group %r are unstable: %s", group, err)
        return _unstable(wanted)
    except LogstoreError as err:
        return {"error_code": code_of(err), "topics": []}
    topics: dict[str, list[Obj]] = {}
    for tp in wanted if wanted is not None else sorted(found):
        offset, metadata = found.get(tp, (-1, ""))
        topics.setdefault(tp.topic, []).append({
            "partition_index": tp.partition, "committed_offset": offset,
            "metadata": metadata, "error_code": 0,
        })
    return {
        "error_code": 0,
        "topics": [{"name": name, "partitions": parts} for name, parts in topics.items()],
    }


def _unstable(wanted: list[TopicPartition] | None) -> Obj:
    """OffsetFetch's answer while a transaction holds the group's offsets: every
    partition asked with UNSTABLE_OFFSET_COMMIT (all of them: the top-level code)."""
    code = ErrorCode.UNSTABLE_OFFSET_COMMIT
    topics: dict[str, list[Obj]] = {}
    for tp in wanted or ():
        topics.setdefault(tp.topic, []).append({
            "partition_index": tp.partition, "committed_offset": -1, "metadata": "",
            "error_code": code,
        })
    return {
        "error_code": code if wanted is None else 0,
        "topics": [{"name": name, "partitions": parts} for name, parts in topics.items()],
    }


def _committed(
    ctx: ServerContext, group: str, wanted: list[TopicPartition] | None
) -> dict[TopicPartition, tuple[int, str]]:
    """``group``'s offsets that belong to the topics as they are now (an offset committed
    against a deleted topic of the same name does not count)."""
    backend = ctx.backend
    ids: dict[str, str | None] = {}
    out: dict[TopicPartition, tuple[int, str]] = {}
    for tp, c in backend.committed_offsets(group, wanted).items():
        if tp.topic not in ids:
            try:
                ids[tp.topic] = backend.topic_metadata(tp.topic).topic_id
            except TopicNotFoundError:
                ids[tp.topic] = "\0missing"
        if c.topic_id is None or c.topic_id == ids[tp.topic]:
            out[tp] = (c.offset, c.metadata)
    return out


# --------------------------------------------------------------------------- admin


async def describe_groups(ctx: ServerContext, version: int, req: Obj) -> Obj:
    operations = AUTHORIZED_GROUP_OPERATIONS if req.get("include_authorized_operations") else (
        NOT_ASKED)
    return {"groups": await ctx.run(_describe_all, ctx, req["groups"], operations)}


def _describe_all(ctx: ServerContext, groups: list[str], operations: int) -> list[Obj]:
    out: list[Obj] = []
    for group in groups:
        try:
            info = ctx.backend.describe_group(group)
        except LogstoreError as err:
            out.append({"error_code": code_of(err), "group_id": group, "group_state": "Dead",
                        "protocol_type": "", "protocol_data": "", "members": []})
            continue
        members = []
        for m in info.members:
            client_id, host = ctx.members.get((group, m.member_id), ("", ""))
            members.append({
                "member_id": m.member_id, "group_instance_id": m.group_instance_id,
                "client_id": client_id, "client_host": _client_host(host),
                "member_metadata": m.metadata, "member_assignment": m.assignment,
            })
        out.append({
            "error_code": 0, "group_id": group, "group_state": info.state,
            "protocol_type": info.protocol_type,
            "protocol_data": info.protocol if info.state == "Stable" else "",
            "members": members, "authorized_operations": operations,
        })
    return out


def _client_host(host: str) -> str:
    """A member's address as Kafka reports it: Java's ``InetAddress.toString()`` of an
    unresolved address, ``/127.0.0.1`` (empty for a member that did not join over the
    wire)."""
    return f"/{host}" if host else ""


async def list_groups(ctx: ServerContext, version: int, req: Obj) -> Obj:
    return {"error_code": 0, "groups": await ctx.run(_list, ctx)}


def _list(ctx: ServerContext) -> list[Obj]:
    backend = ctx.backend
    return [
        {"group_id": g, "protocol_type": backend.describe_group(g).protocol_type}
        for g in backend.list_groups()
    ]


async def delete_groups(ctx: ServerContext, version: int, req: Obj) -> Obj:
    return {"results": await ctx.run(_delete_all, ctx, req["groups_names"])}


def _delete_all(ctx: ServerContext, groups: list[str]) -> list[Obj]:
    out: list[Obj] = []
    for group in groups:
        code: int = 0
        try:
            if group not in ctx.backend.list_groups():
                code = ErrorCode.GROUP_ID_NOT_FOUND
            else:
                ctx.backend.delete_group(group)
        except LogstoreError as err:
            code = code_of(err)
        out.append({"group_id": group, "error_code": code})
    return out
