"""Kafka's error codes, and which one each logstore error is on the wire.

Codes from Kafka's ``clients/src/main/java/org/apache/kafka/common/protocol/Errors.java``
(https://kafka.apache.org/protocol#protocol_error_codes). Only this module maps errors to
codes (group errors carry theirs as ``kafka_code``).

No I/O happens here.
"""

from __future__ import annotations

import enum

from logstore.errors import (
    CorruptRecordError,
    GroupNotEmptyError,
    InvalidConfigError,
    InvalidRecordError,
    InvalidTopicError,
    LogFailedError,
    LogstoreError,
    OffsetOutOfRangeError,
    PartitionLimitError,
    PartitionNotFoundError,
    RecordTooLargeError,
    StorageError,
    StoreClosedError,
    TopicExistsError,
    TopicNotFoundError,
)


class ErrorCode(enum.IntEnum):
    """The codes the server answers with."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    LEADER_NOT_AVAILABLE = 5
    REQUEST_TIMED_OUT = 7
    MESSAGE_TOO_LARGE = 10
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REPLICA_ASSIGNMENT = 39
    INVALID_CONFIG = 40
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    INVALID_TRANSACTION_TIMEOUT = 50
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    KAFKA_STORAGE_ERROR = 56
    SASL_AUTHENTICATION_FAILED = 58
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    MEMBER_ID_REQUIRED = 79
    FENCED_INSTANCE_ID = 82
    INVALID_RECORD = 87
    UNSTABLE_OFFSET_COMMIT = 88
    PRODUCER_FENCED = 90


_BY_TYPE: tuple[tuple[type[LogstoreError], ErrorCode], ...] = (
    # most specific first: PartitionLimitError is an InvalidConfigError
    (PartitionLimitError, ErrorCode.INVALID_PARTITIONS),
    (OffsetOutOfRangeError, ErrorCode.OFFSET_OUT_OF_RANGE),
    (TopicNotFoundError, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    (PartitionNotFoundError, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    (TopicExistsError, ErrorCode.TOPIC_ALREADY_EXISTS),
    (InvalidTopicError, ErrorCode.INVALID_TOPIC_EXCEPTION),
    (RecordTooLargeError, ErrorCode.MESSAGE_TOO_LARGE),
    (CorruptRecordError, ErrorCode.CORRUPT_MESSAGE),
    (InvalidRecordError, ErrorCode.INVALID_RECORD),
    (GroupNotEmptyError, ErrorCode.NON_EMPTY_GROUP),
    (InvalidConfigError, ErrorCode.INVALID_CONFIG),
    (StorageError, ErrorCode.KAFKA_STORAGE_ERROR),
    (LogFailedError, ErrorCode.KAFKA_STORAGE_ERROR),
    (StoreClosedError, ErrorCode.KAFKA_STORAGE_ERROR),
)


def code_of(error: BaseException) -> ErrorCode:
    """The Kafka error code a request that raised ``error`` is answered with."""
    kafka_code = getattr(error, "kafka_code", None)
    if isinstance(error, LogstoreError) and isinstance(kafka_code, int) and kafka_code >= 0:
        return ErrorCode(kafka_code) if kafka_code in _KNOWN else ErrorCode.UNKNOWN_SERVER_ERROR
    for kind, code in _BY_TYPE:
        if isinstance(error, kind):
            return code
    return ErrorCode.UNKNOWN_SERVER_ERROR


_KNOWN = frozenset(int(c) for c in ErrorCode)
