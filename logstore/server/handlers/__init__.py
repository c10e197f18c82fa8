"""One handler per API: ``async (ctx, version, request) -> response`` (None: no response,
as for a Produce with acks=0). Handlers call the backend in worker threads
(:meth:`~logstore.server.context.ServerContext.run`) and turn its errors into Kafka
error codes (:mod:`logstore.server.protocol.codes`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from logstore.server.context import ServerContext
from logstore.server.handlers import data, groups, meta, txn
from logstore.server.protocol.codec import Obj

Handler = Callable[[ServerContext, int, Obj], Awaitable[Obj | None]]

HANDLERS: dict[int, Handler] = {
    0: data.produce,
    1: data.fetch,
    2: data.list_offsets,
    3: meta.metadata,
    8: groups.offset_commit,
    9: groups.offset_fetch,
    10: meta.find_coordinator,
    # 11 JoinGroup takes the client's id and host too: see Connection
    12: groups.heartbeat,
    13: groups.leave_group,
    14: groups.sync_group,
    15: groups.describe_groups,
    16: groups.list_groups,
    18: meta.api_versions,
    19: meta.create_topics,
    20: meta.delete_topics,
    22: txn.init_producer_id,
    24: txn.add_partitions_to_txn,
    25: txn.add_offsets_to_txn,
    26: txn.end_txn,
    28: txn.txn_offset_commit,
    32: meta.describe_configs,
    37: meta.create_partitions,
    42: groups.delete_groups,
}
"""Handlers by API key (SASL's 17 and 36 are the connection's own)."""

__all__ = ["HANDLERS", "Handler", "data", "groups", "meta", "txn"]
