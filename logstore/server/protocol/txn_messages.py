"""The transaction coordinator's messages (KIP-98): AddPartitionsToTxn, AddOffsetsToTxn,
EndTxn and TxnOffsetCommit, at their non-flexible versions (v0-2 each; v3 is the first
flexible one). InitProducerId and FindCoordinator, which transactions use too, are in
:mod:`logstore.server.protocol.admin_messages` and :mod:`~logstore.server.protocol.messages`.

Written as the other schemas (field by field as Kafka's JSON definitions have them; a
unit test compares them). No I/O happens here.
"""

from __future__ import annotations

from logstore.server.protocol.codec import BOOL, INT16, INT32, INT64, STRING, Field
from logstore.server.protocol.messages import INT32S, Api, _a, _s

F = Field

ADD_PARTITIONS_TO_TXN = Api(
    24, "AddPartitionsToTxn", 0, 2,
    _s(
        "AddPartitionsToTxnRequest",
        # v4+ (brokers only) batch several transactions; clients send one, under these names
        F("V3AndBelowTransactionalId", STRING, "0-3"),
        F("V3AndBelowProducerId", INT64, "0-3"),
        F("V3AndBelowProducerEpoch", INT16, "0-3"),
        F("V3AndBelowTopics", _a(
            "AddPartitionsToTxnTopic", F("Name", STRING), F("Partitions", INT32S),
        ), "0-3"),
    ),
    _s(
        "AddPartitionsToTxnResponse",
        F("ThrottleTimeMs", INT32),
        F("ResultsByTopicV3AndBelow", _a(
            "AddPartitionsToTxnTopicResult",
            F("Name", STRING),
            F("ResultsByPartition", _a(
                "AddPartitionsToTxnPartitionResult",
                F("PartitionIndex", INT32),
                F("PartitionErrorCode", INT16),
            )),
        ), "0-3"),
    ),
)

ADD_OFFSETS_TO_TXN = Api(
    25, "AddOffsetsToTxn", 0, 2,
    _s(
        "AddOffsetsToTxnRequest",
        F("TransactionalId", STRING),
        F("ProducerId", INT64),
        F("ProducerEpoch", INT16),
        F("GroupId", STRING),
    ),
    _s("AddOffsetsToTxnResponse", F("ThrottleTimeMs", INT32), F("ErrorCode", INT16)),
)

END_TXN = Api(
    26, "EndTxn", 0, 2,
    _s(
        "EndTxnRequest",
        F("TransactionalId", STRING),
        F("ProducerId", INT64),
        F("ProducerEpoch", INT16),
        F("Committed", BOOL),
    ),
    _s("EndTxnResponse", F("ThrottleTimeMs", INT32), F("ErrorCode", INT16)),
)

TXN_OFFSET_COMMIT = Api(
    28, "TxnOffsetCommit", 0, 2,
    _s(
        "TxnOffsetCommitRequest",
        F("TransactionalId", STRING),
        F("GroupId", STRING),
        F("ProducerId", INT64),
        F("ProducerEpoch", INT16),
        F("Topics", _a(
            "TxnOffsetCommitRequestTopic",
            F("Name", STRING),
            F("Partitions", _a(
                "TxnOffsetCommitRequestPartition",
                F("PartitionIndex", INT32),
                F("CommittedOffset", INT64),
                F("CommittedLeaderEpoch", INT32, "2+", default=-1),
                F("CommittedMetadata", STRING, nullable="0+"),
            )),
        )),
    ),
    _s(
        "TxnOffsetCommitResponse",
        F("ThrottleTimeMs", INT32),
        F("Topics", _a(
            "TxnOffsetCommitResponseTopic",
            F("Name", STRING),
            F("Partitions", _a(
                "TxnOffsetCommitResponsePartition",
                F("PartitionIndex", INT32),
                F("ErrorCode", INT16),
            )),
        )),
    ),
)

__all__ = ["ADD_OFFSETS_TO_TXN", "ADD_PARTITIONS_TO_TXN", "END_TXN", "TXN_OFFSET_COMMIT"]
