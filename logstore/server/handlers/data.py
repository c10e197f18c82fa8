"""Produce, Fetch and ListOffsets: the records themselves.

Produce appends each partition's RecordBatch bytes as the client sent them (CRC and
header checked, offsets assigned in place by the log); Fetch answers with the batches as
they are stored, never re-encoded. A fetch with too little to answer waits for an append
(:class:`~logstore.server.context.AppendNotices`), not for a timer.

Transactions: a transactional producer's batches (attribute bit 4) are appended as any
idempotent producer's (the log opens its transaction in the partition); control batches
(transaction markers) are refused with INVALID_RECORD, since only the transaction
coordinator writes them. A ``read_committed`` Fetch (isolation level 1) answers up to
the last stable offset, with the aborted transactions among its batches (the client
drops their records); ListOffsets' latest offset is then the last stable offset too.
"""

from __future__ import annotations

import logging
from typing import Any

from logstore.config import READ_COMMITTED, READ_UNCOMMITTED
from logstore.errors import LogstoreError, OffsetOutOfRangeError, ProducerFencedError
from logstore.server.context import ServerContext
from logstore.server.protocol.codec import Obj
from logstore.server.protocol.codes import ErrorCode, code_of
from logstore.types import TopicPartition

log = logging.getLogger(__name__)

LATEST = -1
EARLIEST = -2
FALLBACK_POLL_S = 0.05
"""How often a waiting fetch looks again when the backend cannot report appends."""


# --------------------------------------------------------------------------- produce


async def produce(ctx: ServerContext, version: int, req: Obj) -> Obj | None:
    work = [
        (TopicPartition(t["name"], p["index"]), p["records"])
        for t in req["topic_data"]
        for p in t["partition_data"]
    ]
    results = await ctx.run(_append_all, ctx, work)
    if req["acks"] == 0:
        return None  # Kafka sends nothing back for acks=0
    responses: dict[str, list[Obj]] = {}
    for (tp, _), answer in zip(work, results, strict=True):
        responses.setdefault(tp.topic, []).append({"index": tp.partition, **answer})
    return {
        "responses": [
            {"name": name, "partition_responses": parts} for name, parts in responses.items()
        ],
    }


def _append_all(ctx: ServerContext, work: list[tuple[TopicPartition, Any]]) -> list[Obj]:
    """Append every partition's batches (in a worker thread); one answer per partition."""
    backend = ctx.backend
    out: list[Obj] = []
    for tp, records in work:
        if records is None or len(records) == 0:
            out.append(_failed(ErrorCode.INVALID_RECORD, "no record batch"))
            continue
        try:
            result = backend.append_batch(tp, records)
            start = result.log_start_offset
            if start < 0:  # a backend that does not say: ask
                start, _ = backend.offset_range(tp)
        except LogstoreError as err:
            code = code_of(err)
            if isinstance(err, ProducerFencedError):  # Produce's word for it, as Kafka's
                code = ErrorCode.INVALID_PRODUCER_EPOCH
            level = logging.DEBUG if code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION else logging.INFO
            log.log(level, "produce to %s-%d refused: %s", tp.topic, tp.partition, err)
            out.append(_failed(code, str(err)))
            continue
        out.append({
            "error_code": 0,
            "base_offset": result.base_offset,
            "log_append_time_ms": -1,  # CreateTime topics: Kafka answers -1
            "log_start_offset": start,
        })
    return out


def _failed(code: ErrorCode, message: str) -> Obj:
    return {"error_code": code, "base_offset": -1, "error_message": message}


# --------------------------------------------------------------------------- fetch


async def fetch(ctx: ServerContext, version: int, req: Obj) -> Obj:
    wanted = [
        (TopicPartition(t["topic"], p["partition"]), p["fetch_offset"], p["partition_max_bytes"])
        for t in req["topics"]
        for p in t["partitions"]
    ]
    isolation = isolation_of(req)
    max_bytes = min(max(req["max_bytes"], 0) or 0x7FFFFFFF, ctx.config.max_inflight_bytes)
    min_bytes = req["min_bytes"]
    deadline = ctx.loop.time() + max(0, req["max_wait_ms"]) / 1000
    tps = [tp for tp, _, _ in wanted]
    while True:
        seen = ctx.appends.snapshot(tps)
        answers, size, failed = await ctx.run(_read_all, ctx, wanted, max_bytes, isolation)
        left = deadline - ctx.loop.time()
        if size >= min_bytes or failed or left <= 0 or not wanted:
            break
        ctx.watch(tps)
        if ctx.notifies:
            await ctx.appends.wait(seen, left)
        else:
            await ctx.appends.wait(seen, min(left, FALLBACK_POLL_S))
    topics: dict[str, list[Obj]] = {}
    for (tp, _, _), answer in zip(wanted, answers, strict=True):
        topics.setdefault(tp.topic, []).append(answer)
    return {
        "error_code": 0,
        "session_id": 0,  # no fetch sessions: every request is a full one
        "responses": [{"topic": name, "partitions": parts} for name, parts in topics.items()],
    }


def isolation_of(req: Obj) -> str:
    """The isolation level a Fetch or ListOffsets asks for (1: ``read_committed``; the
    versions before the field read uncommitted)."""
    return READ_COMMITTED if req.get("isolation_level") == 1 else READ_UNCOMMITTED


def _read_all(
    ctx: ServerContext,
    wanted: list[tuple[TopicPartition, int, int]],
    max_bytes: int,
    isolation: str = READ_UNCOMMITTED,
) -> tuple[list[Obj], int, bool]:
    """Read every partition (in a worker thread): answers in request order, the record
    bytes in all, and whether a partition failed (a fetch with an error answers now)."""
    backend = ctx.backend
    committed = isolation == READ_COMMITTED
    out: list[Obj] = []
    size = 0
    failed = False
    for tp, offset, partition_max in wanted:
        # Kafka answers null aborted transactions to read_uncommitted fetches
        answer: Obj = {"partition_index": tp.partition,
                       "aborted_transactions": [] if committed else None}
        try:
            budget = min(partition_max, max_bytes - size)
            if budget <= 0:
                start, hw = backend.offset_range(tp)
                stable = backend.offset_range(tp, isolation)[1] if committed else hw
                answer.update(high_watermark=hw, last_stable_offset=stable,
                              log_start_offset=start, records=b"")
            else:
                found = backend.fetch_batches(tp, offset, budget, isolation)
                records = found.records
                aborted = found.aborted
                if size and len(records) > budget:
                    records, aborted = b"", ()  # only the first partition may exceed it
                size += len(records)
                answer.update(
                    error_code=0,
                    high_watermark=found.high_watermark,
                    # read_uncommitted readers do not use the LSO: not looked up for
                    # them; -1: a backend without transactions (its LSO is the HW)
                    last_stable_offset=(found.last_stable_offset
                                        if committed and found.last_stable_offset >= 0
                                        else found.high_watermark),
                    log_start_offset=found.log_start_offset,
                    records=records,
                )
                if committed:
                    answer["aborted_transactions"] = [
                        {"producer_id": pid, "first_offset": first} for pid, first in aborted
                    ]
        except OffsetOutOfRangeError as err:
            failed = True
            answer.update(error_code=ErrorCode.OFFSET_OUT_OF_RANGE,
                          high_watermark=err.log_end_offset,
                          last_stable_offset=err.log_end_offset,
                          log_start_offset=err.log_start_offset, records=None)
        except LogstoreError as err:
            failed = True
            answer.update(error_code=code_of(err), high_watermark=-1, last_stable_offset=-1,
                          log_start_offset=-1, records=None)
        out.append(answer)
    return out, size, failed


# --------------------------------------------------------------------------- list offsets


async def list_offsets(ctx: ServerContext, version: int, req: Obj) -> Obj:
    wanted = [
        (t["name"], p["partition_index"], p["timestamp"])
        for t in req["topics"]
        for p in t["partitions"]
    ]
    answers = await ctx.run(_list_all, ctx, wanted, isolation_of(req))
    topics: dict[str, list[Obj]] = {}
    for (name, _, _), answer in zip(wanted, answers, strict=True):
        topics.setdefault(name, []).append(answer)
    return {"topics": [{"name": name, "partitions": parts} for name, parts in topics.items()]}


def _list_all(
    ctx: ServerContext, wanted: list[tuple[str, int, int]], isolation: str
) -> list[Obj]:
    """Answer every partition (in a worker thread); ``read_committed``: the latest
    offset is the last stable offset."""
    backend = ctx.backend
    out: list[Obj] = []
    for name, partition, timestamp in wanted:
        tp = TopicPartition(name, partition)
        answer: Obj = {"partition_index": partition, "timestamp": -1, "offset": -1}
        try:
            if timestamp in (LATEST, EARLIEST):
                start, end = backend.offset_range(tp, isolation)
                answer["offset"] = end if timestamp == LATEST else start
            elif timestamp >= 0:
                found = backend.offset_for_timestamp(tp, timestamp)
                if found is not None:
                    answer.update(offset=found.offset, timestamp=found.timestamp)
            else:
                answer["error_code"] = ErrorCode.INVALID_REQUEST
        except LogstoreError as err:
            answer["error_code"] = code_of(err)
        out.append(answer)
    return out
