"""Administration, group listing, producer-id and SASL messages (the data path and the
group protocol are in :mod:`logstore.server.protocol.messages`, written the same way).

No I/O happens here.
"""

from __future__ import annotations

from logstore.server.protocol.codec import BOOL, BYTES, INT8, INT16, INT32, INT64, STRING, Field
from logstore.server.protocol.messages import INT32S, STRINGS, Api, _a, _s

F = Field

CREATE_TOPICS = Api(
    19, "CreateTopics", 2, 4,
    _s(
        "CreateTopicsRequest",
        F("Topics", _a(
            "CreatableTopic",
            F("Name", STRING),
            F("NumPartitions", INT32),
            F("ReplicationFactor", INT16),
            F("Assignments", _a(
                "CreatableReplicaAssignment", F("PartitionIndex", INT32), F("BrokerIds", INT32S),
            )),
            F("Configs", _a(
                "CreatableTopicConfig", F("Name", STRING), F("Value", STRING, nullable="0+"),
            )),
        )),
        F("timeoutMs", INT32, default=60000),
        F("validateOnly", BOOL, "1+"),
    ),
    _s(
        "CreateTopicsResponse",
        F("ThrottleTimeMs", INT32, "2+"),
        F("Topics", _a(
            "CreatableTopicResult",
            F("Name", STRING),
            F("ErrorCode", INT16),
            F("ErrorMessage", STRING, "1+", "0+"),
        )),
    ),
)

DELETE_TOPICS = Api(
    20, "DeleteTopics", 1, 3,
    _s("DeleteTopicsRequest", F("TopicNames", STRINGS, "0-5"), F("TimeoutMs", INT32)),
    _s(
        "DeleteTopicsResponse",
        F("ThrottleTimeMs", INT32, "1+"),
        F("Responses", _a("DeletableTopicResult", F("Name", STRING), F("ErrorCode", INT16))),
    ),
)

CREATE_PARTITIONS = Api(
    37, "CreatePartitions", 0, 1,
    _s(
        "CreatePartitionsRequest",
        F("Topics", _a(
            "CreatePartitionsTopic",
            F("Name", STRING),
            F("Count", INT32),
            F("Assignments", _a("CreatePartitionsAssignment", F("BrokerIds", INT32S)),
              nullable="0+"),
        )),
        F("TimeoutMs", INT32),
        F("ValidateOnly", BOOL),
    ),
    _s(
        "CreatePartitionsResponse",
        F("ThrottleTimeMs", INT32),
        F("Results", _a(
            "CreatePartitionsTopicResult",
            F("Name", STRING),
            F("ErrorCode", INT16),
            F("ErrorMessage", STRING, nullable="0+"),
        )),
    ),
)

DESCRIBE_CONFIGS = Api(
    32, "DescribeConfigs", 1, 3,
    _s(
        "DescribeConfigsRequest",
        F("Resources", _a(
            "DescribeConfigsResource",
            F("ResourceType", INT8),
            F("ResourceName", STRING),
            F("ConfigurationKeys", STRINGS, nullable="0+"),
        )),
        F("IncludeSynonyms", BOOL, "1+"),
        F("IncludeDocumentation", BOOL, "3+"),
    ),
    _s(
        "DescribeConfigsResponse",
        F("ThrottleTimeMs", INT32),
        F("Results", _a(
            "DescribeConfigsResult",
            F("ErrorCode", INT16),
            F("ErrorMessage", STRING, nullable="0+"),
            F("ResourceType", INT8),
            F("ResourceName", STRING),
            F("Configs", _a(
                "DescribeConfigsResourceResult",
                F("Name", STRING),
                F("Value", STRING, nullable="0+"),
                F("ReadOnly", BOOL),
                F("ConfigSource", INT8, "1+", default=-1),
                F("IsSensitive", BOOL),
                F("Synonyms", _a(
                    "DescribeConfigsSynonym",
                    F("Name", STRING, "1+"),
                    F("Value", STRING, "1+", "0+"),
                    F("Source", INT8, "1+"),
                ), "1+"),
                F("ConfigType", INT8, "3+"),
                F("Documentation", STRING, "3+", "0+"),
            )),
        )),
    ),
)

LIST_GROUPS = Api(
    16, "ListGroups", 0, 2,
    _s("ListGroupsRequest"),
    _s(
        "ListGroupsResponse",
        F("ThrottleTimeMs", INT32, "1+"),
        F("ErrorCode", INT16),
        F("Groups", _a("ListedGroup", F("GroupId", STRING), F("ProtocolType", STRING))),
    ),
)

DESCRIBE_GROUPS = Api(
    15, "DescribeGroups", 0, 4,
    _s(
        "DescribeGroupsRequest",
        F("Groups", STRINGS),
        F("IncludeAuthorizedOperations", BOOL, "3+"),
    ),
    _s(
        "DescribeGroupsResponse",
        F("ThrottleTimeMs", INT32, "1+"),
        F("Groups", _a(
            "DescribedGroup",
            F("ErrorCode", INT16),
            F("GroupId", STRING),
            F("GroupState", STRING),
            F("ProtocolType", STRING),
            F("ProtocolData", STRING),
            F("Members", _a(
                "DescribedGroupMember",
                F("MemberId", STRING),
                F("GroupInstanceId", STRING, "4+", "4+"),
                F("ClientId", STRING),
                F("ClientHost", STRING),
                F("MemberMetadata", BYTES),
                F("MemberAssignment", BYTES),
            )),
            F("AuthorizedOperations", INT32, "3+", default=-(2**31)),
        )),
    ),
)

DELETE_GROUPS = Api(
    42, "DeleteGroups", 0, 1,
    _s("DeleteGroupsRequest", F("GroupsNames", STRINGS)),
    _s(
        "DeleteGroupsResponse",
        F("ThrottleTimeMs", INT32),
        F("Results", _a("DeletableGroupResult", F("GroupId", STRING), F("ErrorCode", INT16))),
    ),
)

INIT_PRODUCER_ID = Api(
    22, "InitProducerId", 0, 1,
    _s(
        "InitProducerIdRequest",
        F("TransactionalId", STRING, nullable="0+"),
        F("TransactionTimeoutMs", INT32),
    ),
    _s(
        "InitProducerIdResponse",
        F("ThrottleTimeMs", INT32),
        F("ErrorCode", INT16),
        F("ProducerId", INT64, default=-1),
        F("ProducerEpoch", INT16),
    ),
)

SASL_HANDSHAKE = Api(
    # v0 would send the tokens after it unframed (not as SaslAuthenticate requests): every
    # client this project tests speaks v1
    17, "SaslHandshake", 1, 1,
    _s("SaslHandshakeRequest", F("Mechanism", STRING)),
    _s("SaslHandshakeResponse", F("ErrorCode", INT16), F("Mechanisms", STRINGS)),
)

SASL_AUTHENTICATE = Api(
    36, "SaslAuthenticate", 0, 1,
    _s("SaslAuthenticateRequest", F("AuthBytes", BYTES)),
    _s(
        "SaslAuthenticateResponse",
        F("ErrorCode", INT16),
        F("ErrorMessage", STRING, nullable="0+"),
        F("AuthBytes", BYTES),
        F("SessionLifetimeMs", INT64, "1+"),
    ),
)
