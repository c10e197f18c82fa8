"""confluent-kafka (librdkafka) for the Kafka-cluster backend: the import, and its
errors as logstore's.

confluent-kafka is an optional dependency (the ``kafka`` extra, also in ``test``): a
store on a data directory never needs it; :func:`confluent` names the extra when it is
missing.
"""

from __future__ import annotations

from typing import Any, NoReturn

from logstore.errors import (
    ClusterError,
    FencedInstanceIdError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InvalidConfigError,
    InvalidRecordError,
    InvalidTopicError,
    LogstoreError,
    PartitionNotFoundError,
    RebalanceInProgressError,
    RecordTooLargeError,
    TopicExistsError,
    TopicNotFoundError,
    UnknownMemberIdError,
    UnsupportedOperationError,
)

try:
    import confluent_kafka as _confluent_kafka
    import confluent_kafka.admin  # noqa: F401  (the admin submodule, as an attribute)
except ImportError:  # pragma: no cover - installed with the kafka and test extras
    _confluent_kafka = None  # type: ignore[assignment]


def confluent() -> Any:
    """The confluent_kafka module.

    Raises:
        UnsupportedOperationError: it is not installed (the message says how).
    """
    if _confluent_kafka is None:  # pragma: no cover
        raise UnsupportedOperationError(
            "a kafka:// backend needs confluent-kafka: pip install 'logstore[kafka]'"
        )
    return _confluent_kafka


def unsupported(what: str, instead: str) -> NoReturn:
    """Raise UnsupportedOperationError: ``what`` cannot be done on a Kafka cluster
    through the backend (``instead`` names the way round)."""
    raise UnsupportedOperationError(f"{what} is not available on a Kafka cluster ({instead})")


LEADER_MOVING = frozenset({
    "NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
})
"""The codes (``ClusterError.code``) that say a partition's leader is changing (a new
partition's first election, a broker restarting): worth asking again shortly."""

COORDINATOR_MOVING = frozenset({
    "NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE", "COORDINATOR_LOAD_IN_PROGRESS",
})
"""The codes that say a group's coordinator is moving or still loading (a new cluster's
``__consumer_offsets`` being made, a broker restarting): Kafka's clients ask again."""


def kafka_error(err: Any, what: str) -> LogstoreError:
    """The logstore error for librdkafka's ``err`` (a KafkaError) while doing ``what``."""
    ck = confluent()
    k = ck.KafkaError
    code = err.code()
    text = f"{what}: {err.str()}"
    if code in (k.UNKNOWN_TOPIC_OR_PART, k._UNKNOWN_TOPIC, k.UNKNOWN_TOPIC_ID):
        return TopicNotFoundError(text)
    if code == k._UNKNOWN_PARTITION:
        return PartitionNotFoundError(text)
    if code == k.TOPIC_ALREADY_EXISTS:
        return TopicExistsError(text)
    if code == k.TOPIC_EXCEPTION:
        return InvalidTopicError(text)
    if code in (k.INVALID_CONFIG, k.INVALID_PARTITIONS, k.INVALID_REPLICATION_FACTOR,
                k.INVALID_REQUEST, k.POLICY_VIOLATION):
        return InvalidConfigError(text)
    if code in (k.MSG_SIZE_TOO_LARGE, k.RECORD_LIST_TOO_LARGE):
        too_large = RecordTooLargeError(-1, -1)
        too_large.args = (f"{text} (send smaller records or raise the topic's "
                          f"max.message.bytes)",)
        return too_large
    if code in (k.INVALID_RECORD, k.INVALID_MSG):
        return InvalidRecordError(text)
    if code == k.NON_EMPTY_GROUP:
        return GroupNotEmptyError(text)
    if code == k.ILLEGAL_GENERATION:
        return IllegalGenerationError(text)
    if code == k.UNKNOWN_MEMBER_ID:
        return UnknownMemberIdError(text)
    if code == k.REBALANCE_IN_PROGRESS:
        return RebalanceInProgressError(text)
    if code == k.FENCED_INSTANCE_ID:
        return FencedInstanceIdError(text)
    return ClusterError(text, err.name())
