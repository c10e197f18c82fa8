"""Where Kafka's answer and logstore's differ, in a field a client reads: the one table.

Every wire test states Kafka's answer (what the real broker gives, which the same test
checks on the ``kafka`` target) and calls :func:`expect` with what the target answered.
On the ``logstore`` target a field listed in :data:`KNOWN_DIFFERENCES` must give the
answer the table documents instead; any other difference fails, and so does an entry
that no longer differs (logstore now answers like Kafka: remove the entry).

No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LONG_MAX = str(2**63 - 1)

KAFKA_TOPIC_CONFIGS = frozenset({
    "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
    "compression.zstd.level", "delete.retention.ms", "errors.deadletterqueue.group.enable",
    "file.delete.delay.ms", "flush.messages", "flush.ms",
    "follower.replication.throttled.replicas", "index.interval.bytes",
    "leader.replication.throttled.replicas", "local.retention.bytes", "local.retention.ms",
    "max.compaction.lag.ms", "max.decompressed.message.bytes", "max.message.bytes",
    "message.timestamp.after.max.ms", "message.timestamp.before.max.ms",
    "message.timestamp.type", "min.cleanable.dirty.ratio", "min.compaction.lag.ms",
    "min.insync.replicas", "preallocate", "remote.copy.lag.bytes", "remote.copy.lag.ms",
    "remote.log.copy.disable", "remote.log.delete.on.disable", "remote.storage.enable",
    "retention.bytes", "retention.ms", "segment.bytes", "segment.index.bytes",
    "segment.jitter.ms", "segment.ms", "unclean.leader.election.enable",
})
"""The topic configs Kafka 4.4's DescribeConfigs lists (every one, defaults included)."""

LOGSTORE_TOPIC_CONFIGS = frozenset({
    "cleanup.policy", "compression.type", "delete.retention.ms", "flush.messages", "flush.ms",
    "max.compaction.lag.ms", "min.cleanable.dirty.ratio", "min.compaction.lag.ms",
    "index.interval.bytes", "max.message.bytes", "message.timestamp.type",
    "min.insync.replicas", "preallocate", "retention.bytes", "retention.ms", "segment.bytes",
    "segment.index.bytes", "segment.ms", "unclean.leader.election.enable",
    "logstore.partitioner",
})


KAFKA_API_VERSIONS = {
    0: (0, 13), 1: (4, 18), 2: (1, 11), 3: (0, 13), 8: (2, 10), 9: (1, 10), 10: (0, 6),
    11: (0, 9), 12: (0, 4), 13: (0, 5), 14: (0, 5), 15: (0, 6), 16: (0, 5), 17: (0, 1),
    18: (0, 5), 19: (2, 7), 20: (1, 6), 21: (0, 2), 22: (0, 5), 23: (2, 4), 24: (0, 5),
    25: (0, 4), 26: (0, 5), 27: (1, 2), 28: (0, 6), 29: (1, 3), 30: (1, 3), 31: (1, 3),
    32: (1, 4), 33: (0, 2), 34: (1, 2), 35: (1, 5), 36: (0, 2), 37: (0, 3), 38: (1, 3),
    39: (1, 2), 40: (1, 2), 41: (1, 3), 42: (0, 3), 43: (0, 2), 44: (0, 1), 45: (0, 1),
    46: (0, 0), 47: (0, 0), 48: (0, 1), 49: (0, 1), 50: (0, 0), 51: (0, 0), 55: (0, 2),
    57: (0, 2), 60: (0, 2), 61: (0, 0), 64: (0, 0), 65: (0, 0), 66: (0, 2), 68: (0, 1),
    69: (0, 1), 74: (0, 1), 75: (0, 0), 76: (1, 1), 77: (1, 1), 78: (1, 2), 79: (1, 2),
    80: (0, 1), 81: (0, 0), 83: (0, 0), 84: (0, 0), 85: (0, 1), 86: (0, 0), 87: (0, 1),
    88: (0, 1), 89: (0, 1), 90: (0, 1), 91: (0, 0), 92: (0, 0), 93: (0, 0), 94: (0, 0),
}
"""{API key: (min, max)} in Kafka 4.4's ApiVersions answer (without SASL listeners)."""

LOGSTORE_API_VERSIONS = {
    0: (0, 8), 1: (4, 11), 2: (1, 5), 3: (0, 6), 8: (2, 7), 9: (1, 5), 10: (0, 2), 11: (0, 5),
    12: (0, 3), 13: (0, 3), 14: (0, 3), 15: (0, 4), 16: (0, 2), 18: (0, 2), 19: (2, 4),
    20: (1, 3), 22: (0, 1), 24: (0, 2), 25: (0, 2), 26: (0, 2), 28: (0, 2), 32: (1, 3),
    37: (0, 1), 42: (0, 1),
}
"""What ``logstore serve`` (without SASL) advertises: the last non-flexible version of
each API it implements (Produce from v0, as Kafka 4 does, for librdkafka's codec checks)."""


@dataclass(frozen=True)
class Difference:
    """One field where logstore's answer is not Kafka's.

    ``logstore``: logstore's answer, or a function of Kafka's answer giving it.
    """

    kafka: str
    logstore: Any
    why: str

    def logstore_answer(self, kafka_answer: Any) -> Any:
        if callable(self.logstore):
            fn: Callable[[Any], Any] = self.logstore
            return fn(kafka_answer)
        return self.logstore


KNOWN_DIFFERENCES: dict[str, Difference] = {
    "ApiVersions.api_keys": Difference(
        kafka="77 APIs up to their latest versions (KAFKA_API_VERSIONS), flexible ones too",
        logstore=LOGSTORE_API_VERSIONS,
        why="logstore implements the 24 APIs a producer (transactional too), a consumer "
            "group and topic admin need, each up to its last non-flexible version (no "
            "tagged fields, compact encodings or header v2); clients negotiate down. "
            "Missing that clients may use: OffsetForLeaderEpoch (23; not asked, since "
            "Metadata v6 carries no leader epochs), DeleteRecords (21), "
            "AlterConfigs/IncrementalAlterConfigs (33, 44), DescribeCluster (60), "
            "DescribeTransactions/ListTransactions (65, 66) and KIP-848 groups (68, 69).",
    ),
    "kafka-python's inferred broker version": Difference(
        kafka="(4, 3): the newest release kafka-python knows, from Kafka 4.4's ApiVersions",
        logstore=(2, 4),
        why="kafka-python infers a broker release from the ApiVersions ranges; logstore's "
            "(Produce v8, Fetch v11, ...) first match Kafka 2.4. It then uses fetch sessions "
            "(which logstore answers sessionless) and the versions above, and no feature "
            "the tests use needs more.",
    ),
    "DescribeConfigs(topic).names": Difference(
        kafka="the 37 topic configs of Kafka 4.4 (KAFKA_TOPIC_CONFIGS)",
        logstore=LOGSTORE_TOPIC_CONFIGS,
        why="logstore describes the settings it has (19 of Kafka's names, with Kafka's "
            "defaults, plus its own logstore.partitioner); Kafka's "
            "remote-storage, compression-level, replication-throttle and timestamp-bound "
            "settings have no counterpart, so they are not listed rather than invented.",
    ),
    "DescribeConfigs(topic).flush.messages": Difference(
        kafka=f"{LONG_MAX} (DEFAULT_CONFIG): no fsync per message",
        logstore=("1", "DEFAULT_CONFIG"),
        why="logstore's default flush policy is 'always' (every append is fsynced before it "
            "is acknowledged: an acknowledged record is never lost), which is Kafka's "
            "flush.messages=1.",
    ),
    "DescribeConfigs(topic).min.insync.replicas": Difference(
        kafka="1 (DYNAMIC_DEFAULT_BROKER_CONFIG): KRaft bootstraps a cluster-wide default",
        logstore=("1", "DEFAULT_CONFIG"),
        why="logstore has one copy of each partition and no cluster-level dynamic configs: "
            "the same value, reported as a plain default.",
    ),
    "DescribeConfigs(topic).cleanup.policy": Difference(
        kafka="delete (DYNAMIC_TOPIC_CONFIG) when CreateTopics gave it, even at its default",
        logstore=("delete", "DEFAULT_CONFIG"),
        why="logstore keeps a topic's settings, not which of them the creator gave: a "
            "setting equal to the default is described as the default (one that differs is "
            "DYNAMIC_TOPIC_CONFIG, as on Kafka).",
    ),
    "OffsetFetch.committed_leader_epoch": Difference(
        kafka="the leader epoch the consumer committed with the offset (OffsetCommit v6+)",
        logstore=lambda kafka: dict.fromkeys(kafka, -1),
        why="logstore's group store keeps a committed offset and its metadata, not the "
            "leader epoch: OffsetFetch answers -1 (unknown), so a resuming client skips "
            "KIP-320 truncation checks (logstore has no OffsetForLeaderEpoch to answer "
            "them, and one copy of each partition: no truncation).",
    ),
    "DescribeGroups(unknown group).error": Difference(
        kafka="GROUP_ID_NOT_FOUND when the client asks DescribeGroups v6+ (kafka-python); "
              "state Dead and no error before v6",
        logstore=None,
        why="logstore implements the non-flexible DescribeGroups v0-4, where Kafka too "
            "answers an unknown group with the state Dead and no error.",
    ),
    "ListGroups.group_state": Difference(
        kafka="the group's state (Stable, Empty): ListGroups v4+ carries it",
        logstore=None,
        why="logstore implements the non-flexible ListGroups v0-2 (no state field); the "
            "clients that ask v4+ of Kafka report no state for a logstore group. "
            "DescribeGroups gives the state on both.",
    ),
}
"""Field -> how logstore's answer differs from Kafka's, and why."""


def expect(target: str, field: str, actual: Any, kafka_answer: Any) -> None:
    """Assert ``actual`` (what ``target`` answered for ``field``) is Kafka's answer, or,
    on logstore, the answer :data:`KNOWN_DIFFERENCES` documents for that field."""
    diff = KNOWN_DIFFERENCES.get(field)
    if target == "kafka" or diff is None:
        assert actual == kafka_answer, (
            f"{field}: {target} answered {actual!r}, Kafka's answer is {kafka_answer!r}"
            + ("" if target == "kafka" else " (a difference KNOWN_DIFFERENCES does not name)")
        )
        return
    want = diff.logstore_answer(kafka_answer)
    if want != kafka_answer:
        assert actual != kafka_answer, (
            f"{field}: logstore now answers like Kafka ({actual!r}): remove the entry from "
            f"KNOWN_DIFFERENCES"
        )
    assert actual == want, (
        f"{field}: logstore answered {actual!r}; KNOWN_DIFFERENCES says {want!r} "
        f"(Kafka: {kafka_answer!r})"
    )
