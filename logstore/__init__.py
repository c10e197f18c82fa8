"""logstore: an embedded, Kafka-format, append-only partitioned log store.

    import logstore
    with logstore.open("data") as store:
        store.create_topic("events", partitions=3, exist_ok=True)
        meta = store.append("events", b"hello", key=b"user-1")
        records = store.read("events", meta.partition, meta.offset)
"""

from logstore.client.admin import GroupDescription, PartitionLag
from logstore.client.aio import AsyncConsumer, AsyncProducer
from logstore.client.batches import RecordFuture
from logstore.client.consumer import Consumer
from logstore.client.producer import Producer
from logstore.client.share import (
    AcknowledgeType,
    ShareConsumer,
    ShareConsumerStateError,
    ShareRecord,
)
from logstore.client.transactions import TransactionalProducer
from logstore.cluster import KafkaStore
from logstore.config import TopicConfig
from logstore.embedded import Store, open
from logstore.errors import (
    ClusterError,
    CommitFailedError,
    CorruptIndexError,
    CorruptionError,
    CorruptRecordError,
    FencedInstanceIdError,
    GroupError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InvalidConfigError,
    InvalidProducerEpochError,
    InvalidProducerIdMappingError,
    InvalidRecordError,
    InvalidTopicError,
    InvalidTxnStateError,
    LockExpiredError,
    LogFailedError,
    LogstoreError,
    NoOffsetError,
    NotAStoreError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    PartitionLimitError,
    PartitionNotFoundError,
    ProducerFencedError,
    ProducerStateError,
    ReadOnlyStoreError,
    RebalanceInProgressError,
    RecordNotHeldError,
    RecordTooLargeError,
    ShareAcknowledgeError,
    ShareGroupConfigError,
    ShareGroupError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    TopicExistsError,
    TopicNotFoundError,
    TransactionAbortableError,
    TransactionError,
    UnknownMemberIdError,
    UnknownShareRecordError,
    UnstableOffsetCommitError,
    UnsupportedOperationError,
)
from logstore.storage.compaction import CompactionState, CompactionStats
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.topic import PartitionInfo, Topic, TopicDescription
from logstore.types import (
    AppendResult,
    Compression,
    ConsumerRecord,
    FetchResult,
    OffsetAndTimestamp,
    Record,
    RecordMetadata,
    TimestampType,
    TopicPartition,
)
from logstore.verify import StoreReport, verify_store

__version__ = "0.1.0"

__all__ = [
    "AcknowledgeType",
    "AppendResult",
    "AsyncConsumer",
    "AsyncProducer",
    "ClusterError",
    "CommitFailedError",
    "CompactionState",
    "CompactionStats",
    "Compression",
    "Consumer",
    "ConsumerRecord",
    "CorruptIndexError",
    "CorruptRecordError",
    "CorruptionError",
    "FencedInstanceIdError",
    "FetchResult",
    "FileSystem",
    "GroupDescription",
    "GroupError",
    "GroupNotEmptyError",
    "IllegalGenerationError",
    "InvalidConfigError",
    "InvalidProducerEpochError",
    "InvalidProducerIdMappingError",
    "InvalidRecordError",
    "InvalidTopicError",
    "InvalidTxnStateError",
    "KafkaStore",
    "LockExpiredError",
    "LogFailedError",
    "LogstoreError",
    "NoOffsetError",
    "NotAStoreError",
    "OffsetAndTimestamp",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "PartitionInfo",
    "PartitionLag",
    "PartitionLimitError",
    "PartitionLog",
    "PartitionNotFoundError",
    "Producer",
    "ProducerFencedError",
    "ProducerStateError",
    "ReadOnlyStoreError",
    "RebalanceInProgressError",
    "Record",
    "RecordFuture",
    "RecordMetadata",
    "RecordNotHeldError",
    "RecordTooLargeError",
    "ShareAcknowledgeError",
    "ShareConsumer",
    "ShareConsumerStateError",
    "ShareGroupConfigError",
    "ShareGroupError",
    "ShareRecord",
    "StorageError",
    "Store",
    "StoreClosedError",
    "StoreLockedError",
    "StoreReport",
    "TimestampType",
    "Topic",
    "TopicConfig",
    "TopicDescription",
    "TopicExistsError",
    "TopicNotFoundError",
    "TopicPartition",
    "TransactionAbortableError",
    "TransactionError",
    "TransactionalProducer",
    "UnknownMemberIdError",
    "UnknownShareRecordError",
    "UnstableOffsetCommitError",
    "UnsupportedOperationError",
    "__version__",
    "open",
    "verify_store",
]
