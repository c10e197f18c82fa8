"""The exceptions logstore raises. Every one derives from :class:`LogstoreError`.

::

    LogstoreError
    ├── StoreClosedError
    ├── StoreLockedError
    ├── InvalidConfigError        (also ValueError)
    ├── InvalidTopicError         (also ValueError)
    ├── InvalidRecordError        (also ValueError)
    ├── TopicNotFoundError        (also KeyError)
    ├── TopicExistsError
    ├── PartitionNotFoundError    (also KeyError)
    ├── OffsetOutOfRangeError     .offset .log_start_offset .log_end_offset
    ├── NoOffsetError             (no committed offset, auto_offset_reset="none")
    ├── RecordTooLargeError       .size .limit
    ├── StorageError              .path .errno  (an OSError while reading or writing a file)
    │   ├── NotAStoreError        .found  (a non-empty directory without store.json)
    │   └── ReadOnlyStoreError    (a write to a store opened read_only=True)
    ├── LogFailedError            (an earlier write or fsync failed; reopen the store)
    ├── GroupError                .group  (consumer-group coordination; .kafka_code)
    │   ├── RebalanceInProgressError  (rejoin the group)
    │   ├── IllegalGenerationError    (a request from an older generation: fenced)
    │   ├── UnknownMemberIdError      (not (any longer) a member: fenced)
    │   ├── FencedInstanceIdError     (another member took this group.instance.id)
    │   ├── GroupNotEmptyError        (live members; stop them first)
    │   ├── CommitFailedError         (partitions this member does not own any longer)
    │   └── ShareGroupError           (a share-group request refused)
    │       ├── ShareGroupConfigError      (also InvalidConfigError: settings differ)
    │       └── ShareAcknowledgeError      .topic .partition .offset
    │           ├── UnknownShareRecordError
    │           ├── RecordNotHeldError
    │           └── LockExpiredError
    ├── ProducerStateError        .producer_id  (an idempotent batch refused; .kafka_code)
    │   ├── InvalidProducerEpochError  (an older epoch than the partition has seen: fenced)
    │   └── OutOfOrderSequenceError    (a sequence that does not follow the producer's last)
    ├── TransactionError          .transactional_id  (a transaction request refused; .kafka_code)
    │   ├── ProducerFencedError        (a newer instance took the transactional id: stop)
    │   ├── InvalidTxnStateError       (not allowed in the transaction's state)
    │   ├── InvalidProducerIdMappingError  (the producer id is not the transactional id's)
    │   ├── TransactionAbortableError  (a send in the transaction failed: abort it)
    │   └── UnstableOffsetCommitError  (a transaction holds offsets of the group: retry)
    └── CorruptionError           .path .position
        ├── CorruptRecordError
        └── CorruptIndexError     (indexes are rebuilt automatically on open)

Messages read "what failed: why (what to do)" and name the values involved.
No I/O happens here.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Sequence
from typing import Self

READ_ONLY_ERRNOS = frozenset({_errno.EROFS, _errno.EACCES, _errno.EPERM})
"""What ``errno`` a write refused by a read-only mount or missing permissions carries."""


class LogstoreError(Exception):
    """Root of every error logstore raises."""


class StoreClosedError(LogstoreError):
    """The store, log or segment was used after ``close()``."""


class StoreLockedError(LogstoreError):
    """Another ``Store`` (in this or another process) holds the data directory's lock."""


class InvalidConfigError(LogstoreError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class PartitionLimitError(InvalidConfigError):
    """A topic would have more partitions than the store allows (``max_partitions``), or
    than any topic may have (``hard``)."""

    def __init__(self, message: str, topic: str, count: int, limit: int, hard: bool) -> None:
        super().__init__(message)
        self.topic = topic
        self.count = count
        self.limit = limit
        self.hard = hard


class InvalidTopicError(LogstoreError, ValueError):
    """A topic name breaks Kafka's naming rule."""


class InvalidRecordError(LogstoreError, ValueError):
    """A record or batch given to the API is malformed (not a corruption on disk)."""


class TopicNotFoundError(LogstoreError, KeyError):
    """The topic does not exist."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class TopicExistsError(LogstoreError):
    """The topic already exists (pass ``exist_ok=True`` to ignore)."""


class PartitionNotFoundError(LogstoreError, KeyError):
    """The topic has no such partition."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OffsetOutOfRangeError(LogstoreError):
    """An offset lies outside ``[log_start_offset, log_end_offset]``."""

    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int) -> None:
        super().__init__(
            f"offset {offset} is out of range: the log holds offsets "
            f"[{log_start_offset}, {log_end_offset}) (seek to a valid offset, or reset "
            f"to earliest/latest)"
        )
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class NoOffsetError(LogstoreError):
    """A consumer has no committed offset for a partition and ``auto_offset_reset`` is
    "none": seek first."""


class RecordTooLargeError(LogstoreError):
    """A record batch is larger than the topic's ``max_message_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"record batch of {size} bytes exceeds max_message_bytes={limit} "
            f"(send smaller records or raise the topic's max_message_bytes)"
        )
        self.size = size
        self.limit = limit


class StorageError(LogstoreError):
    """An operating-system error while touching a file of the store (``errno`` is the
    ``OSError``'s, when there was one)."""

    def __init__(self, message: str, path: str | None = None, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno

    @property
    def refused_write(self) -> bool:
        """Whether the OS refused a write: a read-only mount or missing permissions
        (EROFS, EACCES, EPERM). A store may still open ``read_only=True`` then."""
        return self.errno in READ_ONLY_ERRNOS


class NotAStoreError(StorageError):
    """The directory is not empty and holds no store marker (``store.json``).

    Nothing was written there. Making a store in such a directory needs an explicit
    ``init=True`` (``logstore --init`` on the command line): :meth:`message` words the
    error for either.
    """

    def __init__(self, path: str, found: Sequence[str], flag: str = "init=True") -> None:
        self.found = tuple(found)
        super().__init__(self.message(path, self.found, flag), path)

    @staticmethod
    def message(path: str, found: Sequence[str], flag: str) -> str:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        return (
            f"{path} is not a logstore store: it is not empty ({shown}) and has no "
            f"store.json; nothing was written there (use an empty or new directory, or "
            f"pass {flag} to make a store in this one)"
        )

    def reworded(self, flag: str) -> str:
        """The message, naming ``flag`` (such as ``--init``) as the way to go ahead."""
        return self.message(self.path or "", self.found, flag)


class ReadOnlyStoreError(StorageError):
    """A write (or anything that needs one) on a store opened ``read_only=True``."""


class LogFailedError(LogstoreError):
    """A write or fsync failed earlier; the log refuses further writes until reopened.

    After a failed fsync the kernel may have dropped the dirty pages, so retrying and
    acknowledging would risk losing data silently (PostgreSQL's "fsyncgate").
    """


class ClusterError(StorageError):
    """A request to a Kafka cluster failed: no broker answered in time, or one answered
    with an error logstore has no more precise type for. ``code`` is Kafka's (librdkafka's)
    error name, e.g. ``"_TRANSPORT"`` or ``"NOT_LEADER_OR_FOLLOWER"``. A producer retries
    it, as it retries a failed write to a local store."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class UnsupportedOperationError(LogstoreError):
    """What was asked cannot be done on this backend: a local-only tool (``inspect``,
    ``verify``) on a Kafka cluster, or a feature one backend lacks (the message names the
    alternative)."""


class GroupError(LogstoreError):
    """A consumer-group request the coordinator refused. ``kafka_code`` is Kafka's error
    code for it (the wire server answers with it)."""

    kafka_code = -1

    def __init__(self, message: str, group: str | None = None) -> None:
        super().__init__(message)
        self.group = group


class RebalanceInProgressError(GroupError):
    """The group is rebalancing: the member must rejoin (Kafka's REBALANCE_IN_PROGRESS)."""

    kafka_code = 27


class IllegalGenerationError(GroupError):
    """A request carried an older generation than the group's: the member was fenced
    (Kafka's ILLEGAL_GENERATION); it must rejoin before it fetches or commits again."""

    kafka_code = 22


class UnknownMemberIdError(GroupError):
    """The member is not (any longer) in the group: it left, or was removed after missing
    its session or poll deadline (Kafka's UNKNOWN_MEMBER_ID); it must rejoin."""

    kafka_code = 25


class FencedInstanceIdError(GroupError):
    """Another member joined with this member's ``group_instance_id`` (Kafka's
    FENCED_INSTANCE_ID)."""

    kafka_code = 82


class GroupNotEmptyError(GroupError):
    """The group has live members; stop them before resetting or deleting its offsets."""

    kafka_code = 68


class CommitFailedError(GroupError):
    """A commit for partitions this consumer does not own (any longer): after a rebalance
    another member reads them, and only it may commit their offsets."""

    kafka_code = 22


class TransactionError(LogstoreError):
    """A transaction request the transaction coordinator (or the producer) refused.
    ``kafka_code`` is Kafka's error code for it (the wire server answers with it)."""

    kafka_code = -1

    def __init__(self, message: str, transactional_id: str | None = None) -> None:
        super().__init__(message)
        self.transactional_id = transactional_id


class ProducerFencedError(TransactionError):
    """A newer producer with the same transactional id initialised (or the
    transaction timed out and was aborted): this one must stop (Kafka's
    PRODUCER_FENCED / INVALID_PRODUCER_EPOCH)."""

    kafka_code = 90


class InvalidTxnStateError(TransactionError):
    """The request does not fit the transaction's state, e.g. a commit of an aborted
    transaction or a send outside one (Kafka's INVALID_TXN_STATE)."""

    kafka_code = 48


class InvalidProducerIdMappingError(TransactionError):
    """The producer id is not the one the transactional id has (Kafka's
    INVALID_PRODUCER_ID_MAPPING): call ``init_transactions()`` first."""

    kafka_code = 49


class TransactionAbortableError(TransactionError):
    """A record sent in the transaction could not be written: the transaction can only
    be aborted (``abort_transaction()``), then tried again."""

    kafka_code = 48


class UnstableOffsetCommitError(TransactionError):
    """A transaction still open holds offsets of this group for these partitions
    (Kafka's UNSTABLE_OFFSET_COMMIT, KIP-447): retry once it ends."""

    kafka_code = 88


class ShareGroupError(GroupError):
    """A share-group request the coordinator refused."""


class ShareGroupConfigError(ShareGroupError, InvalidConfigError):
    """A member asked for settings that differ from the share group's (they are the
    group's, fixed when it is first used)."""


class ShareAcknowledgeError(ShareGroupError):
    """An acknowledgement refused (Kafka's INVALID_RECORD_STATE); others of the same
    request were applied. ``.topic``, ``.partition``, ``.offset`` name the record."""

    kafka_code = 121

    def __init__(
        self, message: str, group: str, topic: str, partition: int, offset: int
    ) -> None:
        super().__init__(message, group)
        self.topic = topic
        self.partition = partition
        self.offset = offset


class UnknownShareRecordError(ShareAcknowledgeError):
    """The group never handed out that offset (past its end offset, or not a record)."""


class RecordNotHeldError(ShareAcknowledgeError):
    """Another member holds the record, or it is finished (acknowledged or archived)."""


class LockExpiredError(ShareAcknowledgeError):
    """The member's lock on the record expired: it is available again, was delivered
    again (maybe to another member) or archived."""


class CorruptionError(LogstoreError):
    """Bytes on disk are not what was written."""

    def __init__(self, message: str, path: str | None = None, position: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.position = position

    def with_position(self, position: int) -> Self:
        """A copy of this error at ``position`` (errors from a buffer name positions in
        it; the storage layer moves them to file positions)."""
        return type(self)(str(self), self.path, position)


class CorruptRecordError(CorruptionError):
    """A record batch fails its size, magic or CRC-32C check."""


class CorruptIndexError(CorruptionError):
    """An offset or time index is inconsistent with its log (rebuilt on open)."""


class ProducerStateError(LogstoreError):
    """A partition refused an idempotent producer's batch: its producer id, epoch and
    sequence do not fit what the partition holds from that producer (Kafka's
    ``ProducerStateManager`` checks). Nothing was written. ``kafka_code`` is Kafka's
    error code for it (the wire server answers with it)."""

    kafka_code = -1

    def __init__(self, message: str, producer_id: int | None = None) -> None:
        super().__init__(message)
        self.producer_id = producer_id


class InvalidProducerEpochError(ProducerStateError):
    """The batch carries an older producer epoch than the partition has seen from that
    producer id: a newer instance of the producer took over (Kafka's
    INVALID_PRODUCER_EPOCH)."""

    kafka_code = 47


class OutOfOrderSequenceError(ProducerStateError):
    """The batch's base sequence does not follow the last sequence the partition holds
    from that producer (or a new epoch does not start at 0): batches were lost or
    reordered in between (Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER)."""

    kafka_code = 45
