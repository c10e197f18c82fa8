"""The APIs the server implements, request headers and response framing.

Framing (https://kafka.apache.org/protocol#protocol_common): every request and response
is an int32 size then that many bytes. A request starts with header v1::

    api_key int16 | api_version int16 | correlation_id int32 | client_id nullable string

(only flexible versions use header v2, with tagged fields after it: none is implemented
here). A response starts with header v0, the correlation id alone.

No I/O happens here.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from logstore.server.protocol.admin_messages import (
    CREATE_PARTITIONS,
    CREATE_TOPICS,
    DELETE_GROUPS,
    DELETE_TOPICS,
    DESCRIBE_CONFIGS,
    DESCRIBE_GROUPS,
    INIT_PRODUCER_ID,
    LIST_GROUPS,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
)
from logstore.server.protocol.codec import MalformedRequestError, Out, Reader
from logstore.server.protocol.messages import (
    API_VERSIONS,
    FETCH,
    FIND_COORDINATOR,
    HEARTBEAT,
    JOIN_GROUP,
    LEAVE_GROUP,
    LIST_OFFSETS,
    METADATA,
    OFFSET_COMMIT,
    OFFSET_FETCH,
    PRODUCE,
    SYNC_GROUP,
    Api,
)
from logstore.server.protocol.txn_messages import (
    ADD_OFFSETS_TO_TXN,
    ADD_PARTITIONS_TO_TXN,
    END_TXN,
    TXN_OFFSET_COMMIT,
)

APIS: dict[int, Api] = {
    api.key: api
    for api in (
        PRODUCE, FETCH, LIST_OFFSETS, METADATA, OFFSET_COMMIT, OFFSET_FETCH,
        FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP, DESCRIBE_GROUPS,
        LIST_GROUPS, SASL_HANDSHAKE, API_VERSIONS, CREATE_TOPICS, DELETE_TOPICS,
        INIT_PRODUCER_ID, ADD_PARTITIONS_TO_TXN, ADD_OFFSETS_TO_TXN, END_TXN,
        TXN_OFFSET_COMMIT, DESCRIBE_CONFIGS, SASL_AUTHENTICATE, CREATE_PARTITIONS,
        DELETE_GROUPS,
    )
}
"""Every implemented API by key, in Kafka's key order."""

_HEADER = struct.Struct(">hhi")
_CORRELATION = struct.Struct(">i")
_SIZE = struct.Struct(">i")


class RequestHeader(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_at: int
    """Where the body starts in the frame."""


def parse_header(frame: bytes | memoryview) -> RequestHeader:
    """The header of a request frame (without its size prefix).

    Raises:
        MalformedRequestError: the frame is shorter than a header or its client id is
            not a string.
    """
    if len(frame) < _HEADER.size + 2:
        raise MalformedRequestError(
            f"request of {len(frame)} bytes is shorter than a request header (10 bytes)"
        )
    api_key, api_version, correlation_id = _HEADER.unpack_from(frame, 0)
    r = Reader(frame, _HEADER.size)
    client_id = r.string(nullable=True)
    return RequestHeader(api_key, api_version, correlation_id, client_id, r.pos)


def frame_response(correlation_id: int, body: Out) -> Out:
    """The chunks of a response: size, header v0, then ``body``'s chunks."""
    size = 4 + sum(len(chunk) for chunk in body)
    return [_SIZE.pack(size) + _CORRELATION.pack(correlation_id), *body]


SASL_APIS = frozenset({SASL_HANDSHAKE.key, SASL_AUTHENTICATE.key})


def supported_versions(*, sasl: bool) -> list[dict[str, int]]:
    """ApiVersions' ``api_keys`` entries: every API with the versions advertised (the
    SASL ones only where the server asks clients to authenticate)."""
    return [
        {
            "api_key": api.key,
            "min_version": api.min_version if api.advertised_min is None else api.advertised_min,
            "max_version": api.max_version,
        }
        for api in APIS.values()
        if sasl or api.key not in SASL_APIS
    ]


__all__ = [
    "APIS",
    "SASL_APIS",
    "Api",
    "MalformedRequestError",
    "RequestHeader",
    "frame_response",
    "parse_header",
    "supported_versions",
]
