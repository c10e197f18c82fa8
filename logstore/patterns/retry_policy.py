"""What a :class:`~logstore.patterns.retry.RetryingConsumer` does with a failed record:
its :class:`RetryPolicy`, the names of its retry topics, and the retry headers a record
carries through them (its *envelope*). No I/O happens here.

A record's life (``max_attempts=4, delays_ms=(1000, 10000), inline_attempts=1``)::

    orders         delivery 1 fails -> orders.retry.1, due in 1 s
    orders.retry.1 delivery 2 fails -> orders.retry.2, due in 10 s
    orders.retry.2 delivery 3 fails -> orders.retry.2 again (the last delay repeats)
    orders.retry.2 delivery 4 fails -> orders.dlq (with the DLQ headers)

With ``inline_attempts=N`` each stage calls the handler up to N times in place (with
exponential backoff and jitter between them) before the record moves on; every call
counts as one delivery towards ``max_attempts``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from logstore import headers as h
from logstore.errors import InvalidConfigError
from logstore.headers import DLQ_HEADERS
from logstore.types import ConsumerRecord, Header

RETRY_PREFIX = "logstore.retry."
RETRY_DUE = "logstore.retry.due"
"""When the record may be delivered again (ms since the epoch)."""
RETRY_ATTEMPTS = "logstore.retry.attempts"
"""How many times the record was delivered to a handler so far."""
RETRY_GROUP = "logstore.retry.group"
"""The consumer group that owns the retry (groups sharing a source topic share its retry
topics; each skips the others' records)."""
RETRY_ORIGINAL_TOPIC = "logstore.retry.original.topic"
RETRY_ORIGINAL_PARTITION = "logstore.retry.original.partition"
RETRY_ORIGINAL_OFFSET = "logstore.retry.original.offset"
RETRY_ORIGINAL_TIMESTAMP = "logstore.retry.original.timestamp"
RETRY_ERROR_CLASS = "logstore.retry.error.class"
RETRY_ERROR_MESSAGE = "logstore.retry.error.message"

MAX_ERROR_MESSAGE_CHARS = 2000
"""An error message in a header is cut to this length."""


class RetryConfigError(InvalidConfigError):
    """A :class:`RetryPolicy` value is out of range."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and when a failed record is tried again.

    Args:
        max_attempts: deliveries (handler calls) in all before the record is
            dead-lettered; 1 dead-letters at the first failure.
        delays_ms: one retry topic per delay (``<topic>.retry.1``, ...): a record that
            failed its stage waits this long in the next one; after the last, the last
            delay repeats. Empty: every retry happens in place.
        inline_attempts: handler calls per stage before the record moves to the next
            retry topic (1: none in place). In-place retries hold up the partition for
            their backoff, so keep them few (0-2 extra) and short.
        backoff_ms, backoff_max_ms: the pause before in-place retry n is a random time
            in ``[0, min(backoff_max_ms, backoff_ms * 2**(n-1))]`` ("full jitter").
        not_retriable: exception classes that go to the dead-letter topic at once.
        dead_letter_topic: where dead letters go (default ``<topic>.dlq``).
        max_poll_records: records one poll takes (the most repeated after a crash).
    """

    max_attempts: int = 4
    delays_ms: tuple[int, ...] = (1000, 10_000, 60_000)
    inline_attempts: int = 1
    backoff_ms: int = 100
    backoff_max_ms: int = 2000
    not_retriable: tuple[type[BaseException], ...] = ()
    dead_letter_topic: str | None = None
    max_poll_records: int = 100
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.inline_attempts < 1 or self.max_poll_records < 1:
            raise RetryConfigError(
                f"max_attempts={self.max_attempts}, inline_attempts={self.inline_attempts} "
                f"and max_poll_records={self.max_poll_records} must be >= 1"
            )
        if any(d < 0 for d in self.delays_ms) or self.backoff_ms < 0 or self.backoff_max_ms < 0:
            raise RetryConfigError(
                f"delays_ms={self.delays_ms}, backoff_ms={self.backoff_ms} and "
                f"backoff_max_ms={self.backoff_max_ms} must be >= 0"
            )
        if not all(isinstance(c, type) and issubclass(c, BaseException)
                   for c in self.not_retriable):
            raise RetryConfigError(
                f"not_retriable={self.not_retriable!r} must be a tuple of exception classes"
            )

    def backoff_s(self, retry: int) -> float:
        """The pause before in-place retry ``retry`` (1, 2, ...), in seconds."""
        cap = min(self.backoff_max_ms, self.backoff_ms * 2 ** min(retry - 1, 30))
        return self.rng.uniform(0, cap) / 1000

    def stage_attempts(self) -> int:
        """Handler calls a record gets in one stage before it moves on: all that are
        left when there are no retry topics."""
        return self.max_attempts if not self.delays_ms else self.inline_attempts

    def next_stage(self, stage: int) -> int:
        """The retry topic (1-based) a record that failed ``stage`` goes to."""
        return min(stage + 1, len(self.delays_ms))

    def delay_ms(self, stage: int) -> int:
        return self.delays_ms[stage - 1]


def retry_topic(topic: str, stage: int) -> str:
    """The name of ``topic``'s retry topic number ``stage`` (1-based)."""
    return f"{topic}.retry.{stage}"


def error_class(err: BaseException) -> str:
    """``err``'s class as a dead letter names it: ``module.QualName`` (builtins bare)."""
    cls = type(err)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def error_message(err: BaseException) -> str:
    text = str(err)
    if len(text) > MAX_ERROR_MESSAGE_CHARS:
        text = text[:MAX_ERROR_MESSAGE_CHARS] + "..."
    return text


class Envelope(NamedTuple):
    """Where a record first came from and how far its retries went."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    headers: tuple[Header, ...]
    """The record's own headers (retry headers dropped)."""
    attempts: int
    due_ms: int
    group: str | None

    @classmethod
    def first(cls, record: ConsumerRecord) -> Envelope:
        """A record read from its source topic, not delivered yet."""
        return cls(record.topic, record.partition, record.offset, record.timestamp,
                   own_headers(record.headers), 0, 0, None)

    @classmethod
    def read(cls, record: ConsumerRecord) -> Envelope:
        """The envelope of a record read from a retry topic. Missing or bad retry headers
        (a record someone else wrote there) make it a first delivery, due now."""
        found = {k: v for k, v in record.headers if k.startswith(RETRY_PREFIX)}
        try:
            return cls(
                _text(found[RETRY_ORIGINAL_TOPIC]),
                int(_text(found[RETRY_ORIGINAL_PARTITION])),
                int(_text(found[RETRY_ORIGINAL_OFFSET])),
                int(_text(found[RETRY_ORIGINAL_TIMESTAMP])),
                own_headers(record.headers),
                int(_text(found[RETRY_ATTEMPTS])),
                int(_text(found[RETRY_DUE])),
                _text(found[RETRY_GROUP]) if found.get(RETRY_GROUP) is not None else None,
            )
        except (KeyError, ValueError, UnicodeDecodeError):
            return cls.first(record)

    def original(self, record: ConsumerRecord) -> ConsumerRecord:
        """``record`` as the handler sees it: as it was read from its source topic."""
        return ConsumerRecord(self.topic, self.partition, self.offset, self.timestamp,
                              record.key, record.value, self.headers)

    def retry_headers(
        self, *, attempts: int, due_ms: int, group: str, err: BaseException
    ) -> list[Header]:
        return [
            *self.headers,
            (RETRY_ORIGINAL_TOPIC, self.topic.encode()),
            (RETRY_ORIGINAL_PARTITION, str(self.partition).encode()),
            (RETRY_ORIGINAL_OFFSET, str(self.offset).encode()),
            (RETRY_ORIGINAL_TIMESTAMP, str(self.timestamp).encode()),
            (RETRY_ATTEMPTS, str(attempts).encode()),
            (RETRY_DUE, str(due_ms).encode()),
            (RETRY_GROUP, group.encode()),
            (RETRY_ERROR_CLASS, error_class(err).encode()),
            (RETRY_ERROR_MESSAGE, error_message(err).encode()),
        ]

    def dead_letter_headers(self, *, attempts: int, err: BaseException) -> list[Header]:
        return [
            *self.headers,
            (h.DLQ_ORIGINAL_TOPIC, self.topic.encode()),
            (h.DLQ_ORIGINAL_PARTITION, str(self.partition).encode()),
            (h.DLQ_ORIGINAL_OFFSET, str(self.offset).encode()),
            (h.DLQ_ORIGINAL_TIMESTAMP, str(self.timestamp).encode()),
            (h.DLQ_ERROR_CLASS, error_class(err).encode()),
            (h.DLQ_ERROR_MESSAGE, error_message(err).encode()),
            (h.DLQ_ATTEMPTS, str(attempts).encode()),
        ]


def own_headers(headers: Sequence[Header]) -> tuple[Header, ...]:
    """``headers`` without the retry and dead-letter headers this pattern adds."""
    return tuple(
        (k, v) for k, v in headers if not k.startswith(RETRY_PREFIX) and k not in DLQ_HEADERS
    )


def _text(value: bytes | None) -> str:
    if value is None:
        raise ValueError("null header")
    return value.decode()
