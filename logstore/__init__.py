"""logstore: an embedded, Kafka-format, append-only partitioned log store.

    import logstore
    with logstore.open("data") as store:
        store.create_topic("events", partitions=3, exist_ok=True)
        meta = store.append("events", b"hello", key=b"user-1")
        records = store.read("events", meta.partition, meta.offset)
"""

from logstore.config import TopicConfig
from logstore.errors import (
    CorruptIndexError,
    CorruptionError,
    CorruptRecordError,
    InvalidConfigError,
    InvalidRecordError,
    InvalidTopicError,
    LogFailedError,
    LogstoreError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    RecordTooLargeError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    TopicExistsError,
    TopicNotFoundError,
)
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.store import Store, open
from logstore.topic import PartitionInfo, Topic, TopicDescription
from logstore.types import (
    AppendResult,
    Compression,
    FetchResult,
    Record,
    RecordMetadata,
    TimestampType,
)

__version__ = "0.1.0"

__all__ = [
    "AppendResult",
    "Compression",
    "CorruptIndexError",
    "CorruptRecordError",
    "CorruptionError",
    "FetchResult",
    "FileSystem",
    "InvalidConfigError",
    "InvalidRecordError",
    "InvalidTopicError",
    "LogFailedError",
    "LogstoreError",
    "OffsetOutOfRangeError",
    "PartitionInfo",
    "PartitionLog",
    "PartitionNotFoundError",
    "Record",
    "RecordMetadata",
    "RecordTooLargeError",
    "StorageError",
    "Store",
    "StoreClosedError",
    "StoreLockedError",
    "TimestampType",
    "Topic",
    "TopicConfig",
    "TopicDescription",
    "TopicExistsError",
    "TopicNotFoundError",
    "__version__",
    "open",
]
