"""Kafka transactions (KIP-98) over the wire: InitProducerId with a transactional id,
AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn, served by the backend's
transaction coordinator (:mod:`logstore.transactions` for an embedded store).

This node is every transactional id's coordinator (FindCoordinator key type 1, answered
in :mod:`logstore.server.handlers.meta`), and every group's. The coordinator's errors
carry their Kafka code (``kafka_code``), with one translation Kafka makes too: clients
of the versions before PRODUCER_FENCED (90) existed read INVALID_PRODUCER_EPOCH (47)
instead, which they handle the same way (the producer was fenced: close it).
"""

from __future__ import annotations

import logging

from logstore.errors import InvalidConfigError, LogstoreError
from logstore.server.context import ServerContext
from logstore.server.protocol.codec import Obj
from logstore.server.protocol.codes import ErrorCode, code_of
from logstore.types import TopicPartition

log = logging.getLogger(__name__)

INIT_PRODUCER_ID = 22
FENCED_SINCE = {INIT_PRODUCER_ID: 4, 24: 2, 25: 2, 26: 2, 28: 3}
"""API key -> the first version whose clients know PRODUCER_FENCED (Kafka's JSON
definitions: "Version N adds the support for new error code PRODUCER_FENCED";
TxnOffsetCommit's never say: its versions served here, v0-2, all get the older code)."""


def txn_error(err: LogstoreError, api_key: int, version: int) -> ErrorCode:
    """The code a transaction request that raised ``err`` is answered with."""
    if isinstance(err, InvalidConfigError) and api_key == INIT_PRODUCER_ID:
        return ErrorCode.INVALID_TRANSACTION_TIMEOUT  # the only setting it carries
    code = code_of(err)
    if code == ErrorCode.PRODUCER_FENCED and version < FENCED_SINCE[api_key]:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code


def _refused(what: str, txn_id: str | None, err: LogstoreError, code: ErrorCode) -> None:
    log.info("%s of transactional id %r refused (%s): %s", what, txn_id, code.name, err)


async def init_producer_id(ctx: ServerContext, version: int, req: Obj) -> Obj:
    """A producer id and epoch: a new one for an idempotent producer, or the
    transactional id's with the next epoch (older instances fenced, their open
    transaction aborted)."""
    txn_id: str | None = req["transactional_id"]
    fail: Obj = {"producer_id": -1, "producer_epoch": -1}
    if txn_id == "":
        return {**fail, "error_code": ErrorCode.INVALID_REQUEST}  # as Kafka: null or a name
    timeout_ms: int = req["transaction_timeout_ms"]
    try:
        if txn_id is None:
            producer_id, epoch = await ctx.run(ctx.backend.init_producer_id)
        else:
            producer_id, epoch = await ctx.run(ctx.backend.init_producer_id, txn_id, timeout_ms)
    except LogstoreError as err:
        code = txn_error(err, INIT_PRODUCER_ID, version)
        _refused("InitProducerId", txn_id, err, code)
        return {**fail, "error_code": code}
    return {"error_code": 0, "producer_id": producer_id, "producer_epoch": epoch}


async def add_partitions_to_txn(ctx: ServerContext, version: int, req: Obj) -> Obj:
    """Record the partitions the producer is about to write to in its transaction
    (opening one): all of them or none, so one code for every partition."""
    txn_id = req["v3_and_below_transactional_id"]
    topics = req["v3_and_below_topics"]
    tps = [TopicPartition(t["name"], p) for t in topics for p in t["partitions"]]
    code = ErrorCode.NONE
    try:
        await ctx.run(
            ctx.backend.add_partitions_to_txn, txn_id, req["v3_and_below_producer_id"],
            req["v3_and_below_producer_epoch"], tps)
    except LogstoreError as err:
        code = txn_error(err, 24, version)
        _refused("AddPartitionsToTxn", txn_id, err, code)
    return {
        "results_by_topic_v3_and_below": [
            {"name": t["name"], "results_by_partition": [
                {"partition_index": p, "partition_error_code": code} for p in t["partitions"]
            ]}
            for t in topics
        ],
    }


async def add_offsets_to_txn(ctx: ServerContext, version: int, req: Obj) -> Obj:
    """The transaction will commit offsets of ``group_id``: the producer is checked and
    the group's offsets count as unstable from now until the transaction ends (the
    offsets themselves come with TxnOffsetCommit)."""
    txn_id, group = req["transactional_id"], req["group_id"]
    if not group:
        return {"error_code": ErrorCode.INVALID_GROUP_ID}
    try:
        await ctx.run(
            ctx.backend.txn_offset_commit, txn_id, req["producer_id"], req["producer_epoch"],
            group, {})
    except LogstoreError as err:
        code = txn_error(err, 25, version)
        _refused("AddOffsetsToTxn", txn_id, err, code)
        return {"error_code": code}
    return {"error_code": 0}


async def txn_offset_commit(ctx: ServerContext, version: int, req: Obj) -> Obj:
    """Commit the group's offsets with the transaction (visible once it commits). v0-2
    name no group member, so there is no KIP-447 generation check (``member=None``)."""
    txn_id, group, topics = req["transactional_id"], req["group_id"], req["topics"]
    offsets = {
        TopicPartition(t["name"], p["partition_index"]): (
            p["committed_offset"], p["committed_metadata"] or "")
        for t in topics
        for p in t["partitions"]
    }
    code = ErrorCode.NONE
    if not group:
        code = ErrorCode.INVALID_GROUP_ID
    else:
        try:
            await ctx.run(
                ctx.backend.txn_offset_commit, txn_id, req["producer_id"],
                req["producer_epoch"], group, offsets, member=None)
        except LogstoreError as err:
            code = txn_error(err, 28, version)
            _refused("TxnOffsetCommit", txn_id, err, code)
    return {
        "topics": [
            {"name": t["name"], "partitions": [
                {"partition_index": p["partition_index"], "error_code": code}
                for p in t["partitions"]
            ]}
            for t in topics
        ],
    }


async def end_txn(ctx: ServerContext, version: int, req: Obj) -> Obj:
    """Commit or abort the transaction: markers in its partitions, its offsets."""
    txn_id = req["transactional_id"]
    try:
        await ctx.run(
            ctx.backend.end_txn, txn_id, req["producer_id"], req["producer_epoch"],
            commit=bool(req["committed"]))
    except LogstoreError as err:
        code = txn_error(err, 26, version)
        _refused("EndTxn", txn_id, err, code)
        return {"error_code": code}
    return {"error_code": 0}
