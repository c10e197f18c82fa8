"""The Kafka requests and responses the server speaks, at the versions it implements.

Each schema is written field by field as Kafka's JSON message definition has it
(``clients/src/main/resources/common/message/<Name>Request.json``); a unit test compares
every field, type, version range and nullability with those definitions for every
version implemented here. Only non-flexible versions are implemented (the highest below
each API's first flexible version, reference ``kafka.md`` §6.5): every client this
project tests (kafka-python, aiokafka, librdkafka and so confluent-kafka and kcat) speaks
them, and clients that prefer newer versions negotiate down through ApiVersions.

No I/O happens here.
"""

from __future__ import annotations

from dataclasses import dataclass

from logstore.server.protocol.codec import (
    BOOL,
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    Array,
    Field,
    Struct,
)

F = Field


@dataclass(frozen=True)
class Api:
    """One API: its key, the versions implemented and advertised, and its schemas."""

    key: int
    name: str
    min_version: int
    max_version: int
    request: Struct
    response: Struct
    advertised_min: int | None = None
    """The lowest version ApiVersions advertises, when it differs from ``min_version``
    (Produce: Kafka 4 advertises v0 but refuses v0-2, which librdkafka before 2.11.1
    needs to enable compression: reference §6.4 item 4)."""

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


def _s(name: str, *fields: Field) -> Struct:
    return Struct(name, *fields)


def _a(name: str, *fields: Field) -> Array:
    return Array(Struct(name, *fields))


INT32S = Array(INT32)
STRINGS = Array(STRING)

API_VERSIONS = Api(
    18, "ApiVersions", 0, 2,
    _s("ApiVersionsRequest"),
    _s(
        "ApiVersionsResponse",
        F("ErrorCode", INT16),
        F("ApiKeys", _a("ApiVersion", F("ApiKey", INT16), F("MinVersion", INT16),
                        F("MaxVersion", INT16))),
        F("ThrottleTimeMs", INT32, "1+"),
    ),
)

METADATA = Api(
    3, "Metadata", 0, 6,
    _s(
        "MetadataRequest",
        F("Topics", _a("MetadataRequestTopic", F("Name", STRING)), nullable="1+"),
        F("AllowAutoTopicCreation", BOOL, "4+", default=True),
    ),
    _s(
        "MetadataResponse",
        F("ThrottleTimeMs", INT32, "3+"),
        F("Brokers", _a(
            "MetadataResponseBroker", F("NodeId", INT32), F("Host", STRING),
            F("Port", INT32), F("Rack", STRING, "1+", "1+"),
        )),
        F("ClusterId", STRING, "2+", "2+"),
        F("ControllerId", INT32, "1+", default=-1),
        F("Topics", _a(
            "MetadataResponseTopic",
            F("ErrorCode", INT16),
            F("Name", STRING),
            F("IsInternal", BOOL, "1+"),
            F("Partitions", _a(
                "MetadataResponsePartition",
                F("ErrorCode", INT16),
                F("PartitionIndex", INT32),
                F("LeaderId", INT32),
                F("ReplicaNodes", INT32S),
                F("IsrNodes", INT32S),
                F("OfflineReplicas", INT32S, "5+"),
            )),
        )),
    ),
)

PRODUCE = Api(
    0, "Produce", 3, 8,
    _s(
        "ProduceRequest",
        F("TransactionalId", STRING, "3+", "3+"),
        F("Acks", INT16),
        F("TimeoutMs", INT32),
        F("TopicData", _a(
            "TopicProduceData",
            F("Name", STRING),
            F("PartitionData", _a(
                "PartitionProduceData", F("Index", INT32), F("Records", RECORDS, nullable="0+"),
            )),
        )),
    ),
    _s(
        "ProduceResponse",
        F("Responses", _a(
            "TopicProduceResponse",
            F("Name", STRING),
            F("PartitionResponses", _a(
                "PartitionProduceResponse",
                F("Index", INT32),
                F("ErrorCode", INT16),
                F("BaseOffset", INT64),
                F("LogAppendTimeMs", INT64, "2+", default=-1),
                F("LogStartOffset", INT64, "5+", default=-1),
                F("RecordErrors", _a(
                    "BatchIndexAndErrorMessage",
                    F("BatchIndex", INT32, "8+"),
                    F("BatchIndexErrorMessage", STRING, "8+", "8+"),
                ), "8+"),
                F("ErrorMessage", STRING, "8+", "8+"),
            )),
        )),
        F("ThrottleTimeMs", INT32, "1+"),
    ),
    advertised_min=0,
)

FETCH = Api(
    1, "Fetch", 4, 11,
    _s(
        "FetchRequest",
        F("ReplicaId", INT32, default=-1),
        F("MaxWaitMs", INT32),
        F("MinBytes", INT32),
        F("MaxBytes", INT32, "3+", default=0x7FFFFFFF),
        F("IsolationLevel", INT8, "4+"),
        F("SessionId", INT32, "7+"),
        F("SessionEpoch", INT32, "7+", default=-1),
        F("Topics", _a(
            "FetchTopic",
            F("Topic", STRING),
            F("Partitions", _a(
                "FetchPartition",
                F("Partition", INT32),
                F("CurrentLeaderEpoch", INT32, "9+", default=-1),
                F("FetchOffset", INT64),
                F("LogStartOffset", INT64, "5+", default=-1),
                F("PartitionMaxBytes", INT32),
            )),
        )),
        F("ForgottenTopicsData", _a(
            "ForgottenTopic", F("Topic", STRING, "7+"), F("Partitions", INT32S, "7+"),
        ), "7+"),
        F("RackId", STRING, "11+"),
    ),
    _s(
        "FetchResponse",
        F("ThrottleTimeMs", INT32, "1+"),
        F("ErrorCode", INT16, "7+"),
        F("SessionId", INT32, "7+"),
        F("Responses", _a(
            "FetchableTopicResponse",
            F("Topic", STRING),
            F("Partitions", _a(
                "PartitionData",
                F("PartitionIndex", INT32),
                F("ErrorCode", INT16),
                F("HighWatermark", INT64),
                F("LastStableOffset", INT64, "4+", default=-1),
                F("LogStartOffset", INT64, "5+", default=-1),
                F("AbortedTransactions", _a(
                    "AbortedTransaction",
                    F("ProducerId", INT64, "4+"), F("FirstOffset", INT64, "4+"),
                ), "4+", "4+"),
                F("PreferredReadReplica", INT32, "11+", default=-1),
                F("Records", RECORDS, nullable="0+"),
            )),
        )),
    ),
)

LIST_OFFSETS = Api(
    2, "ListOffsets", 1, 5,
    _s(
        "ListOffsetsRequest",
        F("ReplicaId", INT32),
        F("IsolationLevel", INT8, "2+"),
        F("Topics", _a(
            "ListOffsetsTopic",
            F("Name", STRING),
            F("Partitions", _a(
                "ListOffsetsPartition",
                F("PartitionIndex", INT32),
                F("CurrentLeaderEpoch", INT32, "4+", default=-1),
                F("Timestamp", INT64),
            )),
        )),
    ),
    _s(
        "ListOffsetsResponse",
        F("ThrottleTimeMs", INT32, "2+"),
        F("Topics", _a(
            "ListOffsetsTopicResponse",
            F("Name", STRING),
            F("Partitions", _a(
                "ListOffsetsPartitionResponse",
                F("PartitionIndex", INT32),
                F("ErrorCode", INT16),
                F("Timestamp", INT64, "1+", default=-1),
                F("Offset", INT64, "1+", default=-1),
                F("LeaderEpoch", INT32, "4+", default=-1),
            )),
        )),
    ),
)

FIND_COORDINATOR = Api(
    10, "FindCoordinator", 0, 2,
    _s("FindCoordinatorRequest", F("Key", STRING), F("KeyType", INT8, "1+")),
    _s(
        "FindCoordinatorResponse",
        F("ThrottleTimeMs", INT32, "1+"),
        F("ErrorCode", INT16),
        F("ErrorMessage", STRING, "1+", "1+"),
        F("NodeId", INT32),
        F("Host", STRING),
        F("Port", INT32),
    ),
)

JOIN_GROUP = Api(
    11, "JoinGroup", 0, 5,
    _s(
        "JoinGroupRequest",
        F("GroupId", STRING),
        F("SessionTimeoutMs", INT32),
        F("RebalanceTimeoutMs", INT32, "1+", default=-1),
        F("MemberId", STRING),
        F("GroupInstanceId", STRING, "5+", "5+"),
        F("ProtocolType", STRING),
        F("Protocols", _a("JoinGroupRequestProtocol", F("Name", STRING), F("Metadata", BYTES))),
    ),
    _s(
        "JoinGroupResponse",
        F("ThrottleTimeMs", INT32, "2+"),
        F("ErrorCode", INT16),
        F("GenerationId", INT32, default=-1),
        F("ProtocolName", STRING),
        F("Leader", STRING),
        F("MemberId", STRING),
        F("Members", _a(
            "JoinGroupResponseMember",
            F("MemberId", STRING),
            F("GroupInstanceId", STRING, "5+", "5+"),
            F("Metadata", BYTES),
        )),
    ),
)

SYNC_GROUP = Api(
    14, "SyncGroup", 0, 3,
    _s(
        "SyncGroupRequest",
        F("GroupId", STRING),
        F("GenerationId", INT32),
        F("MemberId", STRING),
        F("GroupInstanceId", STRING, "3+", "3+"),
        F("Assignments", _a(
            "SyncGroupRequestAssignment", F("MemberId", STRING), F("Assignment", BYTES),
        )),
    ),
    _s(
        "SyncGroupResponse",
        F("ThrottleTimeMs", INT32, "1+"),
        F("ErrorCode", INT16),
        F("Assignment", BYTES),
    ),
)

HEARTBEAT = Api(
    12, "Heartbeat", 0, 3,
    _s(
        "HeartbeatRequest",
        F("GroupId", STRING),
        F("GenerationId", INT32),
        F("MemberId", STRING),
        F("GroupInstanceId", STRING, "3+", "3+"),
    ),
    _s("HeartbeatResponse", F("ThrottleTimeMs", INT32, "1+"), F("ErrorCode", INT16)),
)

LEAVE_GROUP = Api(
    13, "LeaveGroup", 0, 3,
    _s(
        "LeaveGroupRequest",
        F("GroupId", STRING),
        F("MemberId", STRING, "0-2"),
        F("Members", _a(
            "MemberIdentity",
            F("MemberId", STRING, "3+"),
            F("GroupInstanceId", STRING, "3+", "3+"),
        ), "3+"),
    ),
    _s(
        "LeaveGroupResponse",
        F("ThrottleTimeMs", INT32, "1+"),
        F("ErrorCode", INT16),
        F("Members", _a(
            "MemberResponse",
            F("MemberId", STRING, "3+"),
            F("GroupInstanceId", STRING, "3+", "3+"),
            F("ErrorCode", INT16, "3+"),
        ), "3+"),
    ),
)

OFFSET_COMMIT = Api(
    8, "OffsetCommit", 2, 7,
    _s(
        "OffsetCommitRequest",
        F("GroupId", STRING),
        F("GenerationIdOrMemberEpoch", INT32, "1+", default=-1),
        F("MemberId", STRING, "1+"),
        F("GroupInstanceId", STRING, "7+", "7+"),
        F("RetentionTimeMs", INT64, "2-4", default=-1),
        F("Topics", _a(
            "OffsetCommitRequestTopic",
            F("Name", STRING),
            F("Partitions", _a(
                "OffsetCommitRequestPartition",
                F("PartitionIndex", INT32),
                F("CommittedOffset", INT64),
                F("CommittedLeaderEpoch", INT32, "6+", default=-1),
                F("CommittedMetadata", STRING, nullable="0+"),
            )),
        )),
    ),
    _s(
        "OffsetCommitResponse",
        F("ThrottleTimeMs", INT32, "3+"),
        F("Topics", _a(
            "OffsetCommitResponseTopic",
            F("Name", STRING),
            F("Partitions", _a(
                "OffsetCommitResponsePartition", F("PartitionIndex", INT32), F("ErrorCode", INT16),
            )),
        )),
    ),
)

OFFSET_FETCH = Api(
    9, "OffsetFetch", 1, 5,
    _s(
        "OffsetFetchRequest",
        F("GroupId", STRING),
        F("Topics", _a(
            "OffsetFetchRequestTopic", F("Name", STRING), F("PartitionIndexes", INT32S),
        ), nullable="2+"),
    ),
    _s(
        "OffsetFetchResponse",
        F("ThrottleTimeMs", INT32, "3+"),
        F("Topics", _a(
            "OffsetFetchResponseTopic",
            F("Name", STRING),
            F("Partitions", _a(
                "OffsetFetchResponsePartition",
                F("PartitionIndex", INT32),
                F("CommittedOffset", INT64),
                F("CommittedLeaderEpoch", INT32, "5+", default=-1),
                F("Metadata", STRING, nullable="0+"),
                F("ErrorCode", INT16),
            )),
        )),
        F("ErrorCode", INT16, "2+"),
    ),
)
