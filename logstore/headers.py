"""Names of the record headers logstore's messaging patterns write (base layer: the
clients, the share-group coordinator and the patterns all use them).

Header values are UTF-8 text; numbers are decimal (``"42"``), timestamps are ms since the
epoch. Kafka itself names none of these; they follow the shape of Kafka Connect's and
Spring Kafka's dead-letter headers under one ``logstore.`` prefix.
"""

from __future__ import annotations

DLQ_ORIGINAL_TOPIC = "logstore.dlq.original.topic"
DLQ_ORIGINAL_PARTITION = "logstore.dlq.original.partition"
DLQ_ORIGINAL_OFFSET = "logstore.dlq.original.offset"
DLQ_ORIGINAL_TIMESTAMP = "logstore.dlq.original.timestamp"
DLQ_ERROR_CLASS = "logstore.dlq.error.class"
DLQ_ERROR_MESSAGE = "logstore.dlq.error.message"
DLQ_ATTEMPTS = "logstore.dlq.attempts"
"""How many times the record was delivered to a handler before it was dead-lettered."""

DLQ_HEADERS = (
    DLQ_ORIGINAL_TOPIC, DLQ_ORIGINAL_PARTITION, DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_TIMESTAMP, DLQ_ERROR_CLASS, DLQ_ERROR_MESSAGE, DLQ_ATTEMPTS,
)
"""Every dead-letter header: a re-drive to the original topic drops these."""

DLQ_SUFFIX = ".dlq"
"""A topic's dead-letter topic is named ``<topic>.dlq`` unless told otherwise."""


def dead_letter_topic(topic: str) -> str:
    """The default dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX
