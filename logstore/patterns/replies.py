"""The headers and errors of request-reply (:mod:`logstore.patterns.request_reply`, which
re-exports every name here). No I/O happens here.

Header values are UTF-8 text (the partition in decimal), as in :mod:`logstore.headers`.
The names follow Spring Kafka's ``kafka_correlationId``, ``kafka_replyTopic`` and
``kafka_replyPartition`` under logstore's ``logstore.`` prefix.
"""

from __future__ import annotations

from logstore.errors import LogstoreError
from logstore.types import ConsumerRecord

__all__ = [
    "CORRELATION_ID", "ERROR", "ERROR_CLASS", "REPLY_PARTITION", "REPLY_TOPIC",
    "REQUEST_REPLY_HEADERS", "RemoteHandlerError", "RequestReplyError", "RequestTimeoutError",
    "header_text",
]

CORRELATION_ID = "logstore.correlation.id"
"""Request and reply: the request's id (32 hex digits), copied onto its reply."""
REPLY_TOPIC = "logstore.reply.topic"
"""Request: the topic to send the reply to."""
REPLY_PARTITION = "logstore.reply.partition"
"""Request: the partition of the reply topic to send the reply to (absent: any)."""
ERROR = "logstore.reply.error"
"""Reply: the handler raised; the exception's text."""
ERROR_CLASS = "logstore.reply.error.class"
"""Reply: the class name of the exception the handler raised."""
REQUEST_REPLY_HEADERS = (CORRELATION_ID, REPLY_TOPIC, REPLY_PARTITION, ERROR, ERROR_CLASS)


class RequestReplyError(LogstoreError):
    """A request got no usable reply. ``.correlation_id`` and ``.topic`` name it."""

    def __init__(self, message: str, correlation_id: str, topic: str) -> None:
        super().__init__(message)
        self.correlation_id = correlation_id
        self.topic = topic


class RequestTimeoutError(RequestReplyError, TimeoutError):
    """No reply came within ``.timeout_ms``; a reply that comes later is dropped."""

    def __init__(self, correlation_id: str, topic: str, timeout_ms: int) -> None:
        super().__init__(
            f"request {correlation_id} to topic {topic!r}: no reply within {timeout_ms} ms "
            f"(is a Responder running on {topic!r}? raise timeout_ms if it is slow)",
            correlation_id,
            topic,
        )
        self.timeout_ms = timeout_ms


class RemoteHandlerError(RequestReplyError):
    """The responder's handler raised: ``.error_class``, ``.error_message``, and the
    error reply itself (``.reply``)."""

    def __init__(self, topic: str, reply: ConsumerRecord) -> None:
        cid = header_text(reply, CORRELATION_ID) or "?"
        self.error_class = header_text(reply, ERROR_CLASS) or "Exception"
        self.error_message = header_text(reply, ERROR) or ""
        super().__init__(
            f"request {cid} to topic {topic!r}: the responder's handler raised "
            f"{self.error_class}: {self.error_message}",
            cid,
            topic,
        )
        self.reply = reply


def header_text(record: ConsumerRecord, name: str) -> str | None:
    """The last value of header ``name`` as text, or None if absent (or null)."""
    found: bytes | None = None
    for key, value in record.headers:
        if key == name:
            found = value
    return None if found is None else found.decode("utf-8", "replace")
