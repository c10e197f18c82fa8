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
    "cleanup.policy", "compression.type", "flush.messages", "flush.ms",
    "index.interval.bytes", "max.message.bytes", "message.timestamp.type",
    "min.insync.replicas", "preallocate", "retention.bytes", "retention.ms", "segment.bytes",
    "segment.index.bytes", "segment.ms", "unclean.leader.election.enable",
    "logstore.partitioner",
})


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
    "DescribeConfigs(topic).names": Difference(
        kafka="the 37 topic configs of Kafka 4.4 (KAFKA_TOPIC_CONFIGS)",
        logstore=LOGSTORE_TOPIC_CONFIGS,
        why="logstore describes the settings it has (15 of Kafka's names, with Kafka's "
            "defaults, plus its own logstore.partitioner); Kafka's compaction, "
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
