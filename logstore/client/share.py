"""The share consumer: a member of a share group, taking records one by one from
partitions it shares with the group's other members (Kafka's ``KafkaShareConsumer``,
KIP-932's "queues for Kafka").

Where a classic consumer group gives each partition to one member and tracks one offset
per partition, a share group hands out **records**: several members (threads or
processes) take records of the same partition at once, each record locked for the
group's ``lock_timeout_ms`` and acknowledged on its own:

* ``ACCEPT``: done;
* ``RELEASE``: give it back, to be delivered again (to any member);
* ``REJECT``: never deliver it again (it goes to the dead-letter topic).

A record not acknowledged within its lock timeout (its member crashed, or is too slow)
becomes available again. Each delivery counts; a record that comes back after its
``max_delivery_attempts``-th delivery, or is rejected, is **archived** and appended to the
dead-letter topic (``<topic>.dlq`` unless the group names one) with the headers of
:mod:`logstore.headers` (original topic, partition, offset, timestamp, error class and
message of the last release or reject that gave one, else ``LockTimeout``, attempts).

Acknowledgement modes:

* ``"implicit"`` (the default): every record a ``poll()`` returned and the application
  did not acknowledge itself is accepted at the next ``poll()``, ``commit()`` or
  ``close()``; leaving a ``with`` block by an exception releases them instead.
* ``"explicit"``: the application acknowledges every record; ``poll()`` raises
  :class:`ShareConsumerStateError` while records of the last poll are unacknowledged;
  ``close()`` releases them.

Acknowledgements are sent by the next ``poll()`` or by ``commit()``. A refused one (the
lock expired first, the record is another member's: a ``ShareAcknowledgeError``) does
not stop the others: ``commit()`` returns the refused ones' errors, and ``poll()`` keeps
them in :attr:`ShareConsumer.failed_acknowledgements`.

Group settings (``lock_timeout_ms``, ``max_delivery_attempts``, ``dead_letter_topic``,
``max_record_locks``) are the group's, persisted at its first use; None (the default)
takes the group's, and a value that differs raises ``ShareGroupConfigError`` (an
:class:`~logstore.errors.InvalidConfigError`).
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self

from logstore.client.backend import Backend, resolve_backend
from logstore.errors import InvalidConfigError, LogstoreError, StoreClosedError
from logstore.types import Header, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store

__all__ = ["AcknowledgeType", "ShareConsumer", "ShareConsumerStateError", "ShareRecord"]

log = logging.getLogger(__name__)

AcknowledgementMode = Literal["implicit", "explicit"]
DEFAULT_MAX_RECORDS = 500  # Kafka's max.poll.records


_FAILED_KEPT = 1000
"""How many refused acknowledgements a consumer keeps for the application to read."""

class AcknowledgeType(enum.IntEnum):
    """How a record is acknowledged (Kafka's ``AcknowledgeType``, wire numbers)."""

    ACCEPT = 1
    """Processed: never delivered again."""
    RELEASE = 2
    """Not processed: deliver it again (it counts as a delivery)."""
    REJECT = 3
    """Cannot be processed: never deliver it again (dead-lettered)."""


class ShareRecord(NamedTuple):
    """A record as a share consumer receives it: a ConsumerRecord's fields and how many
    times it was delivered (1 the first time)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header]
    delivery_count: int


class ShareConsumerStateError(LogstoreError):
    """The share consumer was used out of turn: an acknowledgement of a record it did not
    deliver (or acknowledged already), or, in explicit mode, a poll while records of the
    last one are unacknowledged."""


_Key = tuple[TopicPartition, int]


class ShareConsumer:
    """A member of share group ``group`` reading ``topics``. Not thread-safe: one per
    thread (any number per process, and processes).

    Args:
        store: the open store (or another :class:`~logstore.client.backend.Backend`).
        group: the share group.
        topics: the topics to take records from (all of their partitions).
        lock_timeout_ms: how long a delivered record stays locked (group setting;
            default 30000).
        max_delivery_attempts: deliveries before a record is dead-lettered (group
            setting; default 5).
        dead_letter_topic: where dead letters go (group setting; default ``<topic>.dlq``).
        max_record_locks: in-flight records per partition (group setting; default 200).
        max_records: the most records one ``poll()`` returns.
        acknowledgement_mode: "implicit" or "explicit" (module docstring).
        member_id: this member's id (default: a fresh one).

    Raises:
        ShareGroupConfigError: a group setting differs from the group's.
        InvalidConfigError: a bad argument.
    """

    def __init__(
        self,
        store: Store | Backend,
        group: str,
        topics: Sequence[str],
        *,
        lock_timeout_ms: int | None = None,
        max_delivery_attempts: int | None = None,
        dead_letter_topic: str | None = None,
        max_record_locks: int | None = None,
        max_records: int = DEFAULT_MAX_RECORDS,
        acknowledgement_mode: AcknowledgementMode = "implicit",
        member_id: str | None = None,
    ) -> None:
        if acknowledgement_mode not in ("implicit", "explicit"):
            raise InvalidConfigError(
                f"acknowledgement_mode={acknowledgement_mode!r}: use 'implicit' or 'explicit'"
            )
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise InvalidConfigError(f"max_records={max_records!r}: use an int >= 1")
        if isinstance(topics, str) or not topics:
            raise InvalidConfigError(f"topics={topics!r}: name one or more topics in a list")
        self._backend = resolve_backend(store)
        self.group = group
        self.topics = list(topics)
        self.member_id = member_id or f"share-{uuid.uuid4().hex}"
        self.max_records = max_records
        self.acknowledgement_mode: AcknowledgementMode = acknowledgement_mode
        self.settings: dict[str, Any] = self._backend.share_join(
            group, lock_timeout_ms=lock_timeout_ms,
            max_delivery_attempts=max_delivery_attempts,
            dead_letter_topic=dead_letter_topic, max_record_locks=max_record_locks,
        )
        """The group's settings (as persisted at its first use)."""
        for topic in self.topics:
            self._backend.topic_metadata(topic)  # TopicNotFoundError now, not at poll
        self._delivered: dict[_Key, ShareRecord] = {}
        self._acks: dict[_Key, tuple[ShareRecord, AcknowledgeType, str | None, str | None]] = {}
        self.failed_acknowledgements: deque[LogstoreError] = deque(maxlen=_FAILED_KEPT)
        """The last refusals of acknowledgements a poll sent (the newest
        :data:`_FAILED_KEPT`; clear it once read)."""
        """Acknowledgements a ``poll()`` sent that were refused (the application may
        read and clear it)."""
        self._closed = False

    # ------------------------------------------------------------------ records

    def poll(self, timeout_ms: int = 0) -> list[ShareRecord]:
        """Send the pending acknowledgements and take up to ``max_records`` records (one
        request, as Kafka's ShareFetch), waiting up to ``timeout_ms`` for some.

        Raises:
            ShareConsumerStateError: explicit mode, and records of the last poll are
                not acknowledged.
            StoreClosedError: the consumer is closed.
        """
        self._check_open()
        if self._delivered:
            if self.acknowledgement_mode == "explicit":
                raise ShareConsumerStateError(
                    f"share consumer {self.member_id!r}: {len(self._delivered)} record(s) "
                    f"of the last poll are not acknowledged (explicit mode: acknowledge "
                    f"each record before polling again)"
                )
            self._acknowledge_delivered(AcknowledgeType.ACCEPT)
        acks = self._pending()
        got, errors = self._backend.share_acquire(
            self.group, self.member_id, self.topics, max_records=self.max_records,
            wait_ms=timeout_ms, acks=acks,
        )
        self._acks.clear()  # only once sent: a failed request (StorageError) keeps them
        self.failed_acknowledgements.extend(self._refused(errors))
        records = [ShareRecord(*record, count) for record, count in got]
        for record in records:
            self._delivered[(TopicPartition(record.topic, record.partition), record.offset)] = (
                record
            )
        return records

    def acknowledge(
        self,
        record: ShareRecord,
        type: AcknowledgeType = AcknowledgeType.ACCEPT,  # Kafka's name
        error: BaseException | str | None = None,
    ) -> None:
        """Acknowledge ``record`` (sent by the next ``poll()`` or ``commit()``).
        ``error`` (an exception, or a message) is what a dead letter's error headers will
        say if this release or reject ends the record's deliveries.

        Raises:
            ShareConsumerStateError: this consumer did not deliver ``record``, or it was
                acknowledged already.
        """
        self._check_open()
        kind = AcknowledgeType(type)  # (checked before the record leaves ``held``)
        key = (TopicPartition(record.topic, record.partition), record.offset)
        held = self._delivered.get(key)
        if held is None or held.delivery_count != record.delivery_count:
            raise ShareConsumerStateError(
                f"share consumer {self.member_id!r}: {record.topic}-{record.partition} "
                f"offset {record.offset} was not delivered by its last poll, or is "
                f"acknowledged already"
            )
        error_class: str | None
        message: str | None
        if isinstance(error, BaseException):
            error_class, message = error.__class__.__qualname__, str(error)
        elif error is not None:
            error_class, message = "Error", error
        else:
            error_class = message = None
        del self._delivered[key]
        self._acks[key] = (held, kind, error_class, message)

    def commit(self) -> list[LogstoreError]:
        """Send the pending acknowledgements now (in implicit mode, the records of the
        last poll not acknowledged are accepted first). Returns the refused ones'
        errors (ShareAcknowledgeError); the others are applied and durable."""
        self._check_open()
        if self.acknowledgement_mode == "implicit":
            self._acknowledge_delivered(AcknowledgeType.ACCEPT)
        return self._send()

    @property
    def held(self) -> list[ShareRecord]:
        """Records delivered and not acknowledged yet."""
        return list(self._delivered.values())

    def _acknowledge_delivered(self, kind: AcknowledgeType) -> None:
        for key, record in self._delivered.items():
            self._acks[key] = (record, kind, None, None)
        self._delivered.clear()

    def _pending(self) -> list[tuple[TopicPartition, int, int, int, str | None, str | None]]:
        return [
            (tp, offset, record.delivery_count, int(kind), error_class, message)
            for (tp, offset), (record, kind, error_class, message) in self._acks.items()
        ]

    def _send(self) -> list[LogstoreError]:
        if not self._acks:
            return []
        errors = self._backend.share_acknowledge(self.group, self.member_id, self._pending())
        self._acks.clear()  # only once sent: a failed send (StorageError) keeps them
        return self._refused(errors)

    def _refused(self, errors: list[LogstoreError]) -> list[LogstoreError]:
        for err in errors:
            log.warning("share group %r: acknowledgement refused: %s", self.group, err)
        return errors

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"share consumer {self.member_id!r} is closed")

    def close(self, *, release: bool | None = None) -> None:
        """Send pending acknowledgements and leave: records delivered and not
        acknowledged are accepted (implicit mode) or released (explicit mode, or
        ``release=True``). Idempotent."""
        if self._closed:
            return
        if release is None:
            release = self.acknowledgement_mode == "explicit"
        self._acknowledge_delivered(
            AcknowledgeType.RELEASE if release else AcknowledgeType.ACCEPT
        )
        try:
            self._send()
        finally:
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(release=True if exc_type is not None else None)
