"""ApiVersions, Metadata, FindCoordinator, topic administration and DescribeConfigs:
everything about the cluster (of one node) rather than records, groups or transactions
(InitProducerId is in :mod:`logstore.server.handlers.txn`)."""

from __future__ import annotations

import logging

from logstore.config import TopicConfig
from logstore.errors import (
    InvalidConfigError,
    LogstoreError,
    TopicExistsError,
    TopicNotFoundError,
)
from logstore.kafka_configs import describe, to_topic_config
from logstore.server.context import ServerContext
from logstore.server.protocol.apis import supported_versions
from logstore.server.protocol.codec import Obj
from logstore.server.protocol.codes import ErrorCode, code_of
from logstore.types import TopicMetadata

log = logging.getLogger(__name__)

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SOURCE_TOPIC = 1  # DYNAMIC_TOPIC_CONFIG
SOURCE_DEFAULT = 5  # DEFAULT_CONFIG
SOURCE_STATIC_BROKER = 4  # STATIC_BROKER_CONFIG


async def api_versions(ctx: ServerContext, version: int, req: Obj) -> Obj:
    return {"error_code": 0, "api_keys": supported_versions(sasl=ctx.sasl)}


def unsupported_api_versions(ctx: ServerContext) -> Obj:
    """The v0 answer to an ApiVersions request of a version the server does not know
    (Kafka answers so, and the client retries with one it lists)."""
    return {"error_code": ErrorCode.UNSUPPORTED_VERSION,
            "api_keys": supported_versions(sasl=ctx.sasl)}


# --------------------------------------------------------------------------- metadata


async def metadata(ctx: ServerContext, version: int, req: Obj) -> Obj:
    requested = req["topics"]
    names = None if requested is None or (version == 0 and not requested) else [
        t["name"] for t in requested
    ]
    create = ctx.config.auto_create_topics and (version < 4 or req["allow_auto_topic_creation"])
    topics = await ctx.run(_describe_topics, ctx, names, create)
    return {
        "brokers": [{"node_id": ctx.node_id, "host": ctx.host, "port": ctx.port, "rack": None}],
        "cluster_id": ctx.cluster_id,
        "controller_id": ctx.node_id,
        "topics": topics,
    }


def _describe_topics(ctx: ServerContext, names: list[str] | None, create: bool) -> list[Obj]:
    backend = ctx.backend
    if names is None:
        names = backend.list_topics()
    out: list[Obj] = []
    for name in names:
        try:
            try:
                meta = backend.topic_metadata(name)
            except TopicNotFoundError:
                if not create:
                    raise
                meta = _auto_create(ctx, name)
        except LogstoreError as err:
            out.append({"error_code": code_of(err), "name": name, "partitions": []})
            continue
        node = ctx.node_id
        out.append({
            "error_code": 0,
            "name": name,
            "is_internal": False,
            "partitions": [
                {"error_code": 0, "partition_index": i, "leader_id": node,
                 "replica_nodes": [node], "isr_nodes": [node], "offline_replicas": []}
                for i in range(meta.partitions)
            ],
        })
    return out


def _auto_create(ctx: ServerContext, name: str) -> TopicMetadata:
    try:
        meta = ctx.backend.create_topic(name, ctx.config.default_partitions)
        log.info("created topic %r (%d partitions) on a client's request", name, meta.partitions)
        return meta
    except TopicExistsError:  # created by another client meanwhile
        return ctx.backend.topic_metadata(name)


KEY_TYPES = (0, 1)
"""FindCoordinator's key types this node coordinates: groups (0) and transactional ids
(1); it is every one's coordinator."""


async def find_coordinator(ctx: ServerContext, version: int, req: Obj) -> Obj:
    key_type = req.get("key_type", 0)
    if key_type not in KEY_TYPES:
        return {"error_code": ErrorCode.INVALID_REQUEST, "node_id": -1, "host": "",
                "port": -1, "error_message": f"unknown coordinator key type {key_type}"}
    return {"error_code": 0, "error_message": None, "node_id": ctx.node_id, "host": ctx.host,
            "port": ctx.port}


# --------------------------------------------------------------------------- topics


async def create_topics(ctx: ServerContext, version: int, req: Obj) -> Obj:
    results = await ctx.run(_create_all, ctx, req["topics"], bool(req.get("validate_only")))
    return {"topics": results}


def _create_all(ctx: ServerContext, topics: list[Obj], validate_only: bool) -> list[Obj]:
    out: list[Obj] = []
    for t in topics:
        name = t["name"]
        code, message = _create_one(ctx, t, validate_only)
        out.append({"name": name, "error_code": code, "error_message": message})
    return out


def _create_one(ctx: ServerContext, t: Obj, validate_only: bool) -> tuple[int, str | None]:
    count = t["num_partitions"]
    replication = t["replication_factor"]
    if t["assignments"]:
        if count != -1 or replication != -1:
            return ErrorCode.INVALID_REQUEST, (
                "both partition assignments and a partition count or replication factor "
                "were given")
        if any(a["broker_ids"] != [ctx.node_id] for a in t["assignments"]):
            return ErrorCode.INVALID_REPLICA_ASSIGNMENT, (
                f"this cluster has one broker, node {ctx.node_id}")
        count = len(t["assignments"])
    if replication not in (-1, 1):
        return ErrorCode.INVALID_REPLICATION_FACTOR, (
            f"Replication factor: {replication} larger than available brokers: 1.")
    if count == -1:
        count = ctx.config.default_partitions
    if count < 1:
        return ErrorCode.INVALID_PARTITIONS, (
            f"Number of partitions must be larger than 0 ({count}).")
    try:
        config = to_topic_config({c["name"]: c["value"] for c in t["configs"]})
        backend = ctx.backend
        if validate_only:
            TopicConfig().replace(**config, partitions=count)
            if t["name"] in backend.list_topics():
                return ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{t['name']}' already exists."
            return 0, None
        backend.create_topic(t["name"], count, **config)
    except LogstoreError as err:
        return code_of(err), str(err)
    return 0, None


async def delete_topics(ctx: ServerContext, version: int, req: Obj) -> Obj:
    return {"responses": await ctx.run(_delete_all, ctx, req["topic_names"])}


def _delete_all(ctx: ServerContext, names: list[str]) -> list[Obj]:
    out: list[Obj] = []
    for name in names:
        try:
            ctx.backend.delete_topic(name)
            out.append({"name": name, "error_code": 0})
        except LogstoreError as err:
            out.append({"name": name, "error_code": code_of(err)})
    return out


async def create_partitions(ctx: ServerContext, version: int, req: Obj) -> Obj:
    results = await ctx.run(_grow_all, ctx, req["topics"], bool(req["validate_only"]))
    return {"results": results}


def _grow_all(ctx: ServerContext, topics: list[Obj], validate_only: bool) -> list[Obj]:
    out: list[Obj] = []
    for t in topics:
        name, count = t["name"], t["count"]
        code: int = 0
        message: str | None = None
        try:
            meta = ctx.backend.topic_metadata(name)
            if count <= meta.partitions:
                code, message = ErrorCode.INVALID_PARTITIONS, (
                    f"Topic currently has {meta.partitions} partitions, which is higher than "
                    f"or equal to the requested {count}.")
            elif not validate_only:
                ctx.backend.add_partitions(name, count)
        except InvalidConfigError as err:
            code, message = ErrorCode.INVALID_PARTITIONS, str(err)
        except LogstoreError as err:
            code, message = code_of(err), str(err)
        out.append({"name": name, "error_code": code, "error_message": message})
    return out


async def describe_configs(ctx: ServerContext, version: int, req: Obj) -> Obj:
    results = await ctx.run(_describe_all, ctx, req["resources"])
    return {"results": results}


def _describe_all(ctx: ServerContext, resources: list[Obj]) -> list[Obj]:
    out: list[Obj] = []
    for res in resources:
        kind, name, keys = res["resource_type"], res["resource_name"], res["configuration_keys"]
        answer: Obj = {"error_code": 0, "error_message": None, "resource_type": kind,
                       "resource_name": name, "configs": []}
        try:
            if kind == RESOURCE_TOPIC:
                entries = [
                    {"name": e.name, "value": e.value, "read_only": e.read_only,
                     "config_source": SOURCE_DEFAULT if e.is_default else SOURCE_TOPIC,
                     "is_sensitive": False, "synonyms": []}
                    for e in describe(ctx.backend.topic_config(name))
                ]
            elif kind == RESOURCE_BROKER:
                entries = [
                    {"name": n, "value": v, "read_only": True,
                     "config_source": SOURCE_STATIC_BROKER, "is_sensitive": False,
                     "synonyms": []}
                    for n, v in _broker_configs(ctx).items()
                ]
            else:
                answer.update(error_code=ErrorCode.INVALID_REQUEST,
                              error_message=f"resource type {kind} is not supported")
                entries = []
            answer["configs"] = [e for e in entries if keys is None or e["name"] in keys]
        except LogstoreError as err:
            answer.update(error_code=code_of(err), error_message=str(err))
        out.append(answer)
    return out


def _broker_configs(ctx: ServerContext) -> dict[str, str]:
    c = ctx.config
    return {
        "node.id": str(c.node_id),
        "auto.create.topics.enable": str(c.auto_create_topics).lower(),
        "num.partitions": str(c.default_partitions),
        "socket.request.max.bytes": str(c.max_request_bytes),
        "connections.max.idle.ms": str(c.idle_timeout_ms),
        "group.min.session.timeout.ms": str(c.group_min_session_timeout_ms),
        "group.max.session.timeout.ms": str(c.group_max_session_timeout_ms),
    }

