"""The backend that serves a Kafka cluster: the same clients, records on real brokers.

:class:`KafkaBackend` implements :class:`logstore.client.backend.Backend` on
confluent-kafka (librdkafka), so a program written against an embedded store
(``Producer``, ``Consumer``, the admin calls, the CLI) runs unchanged against a cluster
once it opens ``kafka://host:9092,host2:9092?security.protocol=SASL_SSL&...`` instead of a
directory (:func:`parse_kafka_url`; every query parameter is a librdkafka setting, passed
to every client the backend makes, except ``logstore.*`` ones, which are the backend's).

How each part of the seam is served:

* **Metadata and topics**: the admin client (DescribeTopics, DescribeConfigs,
  CreateTopics, DeleteTopics, CreatePartitions). Topic configs are translated both ways by
  :mod:`logstore.kafka_configs`. Automatic topic creation is switched off in every client
  (``allow.auto.create.topics=false``): a send to a missing topic fails as it does on a
  store.
* **Produce**: one idempotent librdkafka producer (``enable.idempotence=true``,
  ``acks=all``) shared by every client of the backend; an ``append`` waits for the
  delivery reports of its records and answers their offsets (a batch that librdkafka sent
  in several requests may not be contiguous: :attr:`AppendResult.offsets`).
* **Fetch**: a small pool of assign-mode consumers (no group), one per concurrent reader;
  a reader that asks for the offsets the previous fetch left off at keeps librdkafka's
  prefetched records, any other offset re-assigns (a seek).
* **Groups**: librdkafka's own group membership (:mod:`logstore.backend.kafka_groups`),
  which the consumer uses instead of :mod:`logstore.client.membership` because the
  backend offers :meth:`KafkaBackend.managed_membership`; commits of a member go through
  its librdkafka consumer (fenced by the broker's generation check); commits without a
  member, offset listings, group listings, descriptions and deletion go through the
  admin client (Kafka refuses to change the offsets of a group with live members, as
  ``groups reset-offsets`` does on a store).

What it cannot do (the documented differences, README "Kafka cluster backend"): the
classic group requests themselves (``join_group``, ``sync_group``, ``heartbeat``:
librdkafka speaks them), transactions through this seam, share groups, raw batch reads
(``fetch_batches``: the wire server serves local stores only), ``delete_offsets``;
each raises :class:`~logstore.errors.UnsupportedOperationError` naming the way round.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from logstore.backend.kafka_fetch import FetchSession
from logstore.backend.kafka_group_requests import KafkaGroupRequests
from logstore.backend.kafka_groups import KafkaMembership
from logstore.backend.kafka_produce import KafkaProducing
from logstore.backend.kafka_url import (
    DEFAULT_PARTITIONER,
    PARTITIONER_SETTING,
    SCHEME,
    TIMEOUT_SETTING,
    is_kafka_url,
    parse_kafka_url,
)
from logstore.backend.rdkafka import LEADER_MOVING, confluent, kafka_error, unsupported
from logstore.config import READ_COMMITTED, READ_UNCOMMITTED, TopicConfig
from logstore.errors import (
    ClusterError,
    InvalidConfigError,
    LogstoreError,
    StoreClosedError,
    TopicNotFoundError,
)
from logstore.kafka_configs import known_names, to_kafka, to_topic_config
from logstore.types import (
    AppendResult,
    Compression,
    ConsumerRecord,
    FetchResult,
    GroupMember,
    OffsetAndTimestamp,
    SystemClock,
    TopicMetadata,
    TopicPartition,
)

if TYPE_CHECKING:
    from logstore.types import Clock

__all__ = ["SCHEME", "KafkaBackend", "is_kafka_url", "parse_kafka_url"]

DEFAULT_TIMEOUT_MS = 30_000
_MAX_FETCH_SESSIONS = 32
_SESSION_IDLE_S = 60.0


class KafkaBackend(KafkaProducing, KafkaGroupRequests):
    """The :class:`~logstore.client.backend.Backend` of a Kafka cluster. Thread-safe.

    Args:
        bootstrap_servers: ``host:port,...`` of some brokers.
        settings: librdkafka settings for every client it makes (security, timeouts,
            ``client.id``...), and the backend's own ``logstore.partitioner`` (how
            producers map keys: ``murmur2``, Kafka's, by default) and
            ``logstore.request.timeout.ms`` (how long an admin request may take).
        clock: the source of default record timestamps.

    Raises:
        InvalidConfigError: a setting librdkafka refuses (checked when the first client
            is made) or a bad ``logstore.*`` value.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        settings: Mapping[str, str] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        ck = confluent()
        settings = dict(settings or {})
        self._partitioner = settings.pop(PARTITIONER_SETTING, DEFAULT_PARTITIONER)
        if self._partitioner not in ("murmur2", "murmur3"):
            raise InvalidConfigError(
                f"{PARTITIONER_SETTING}={self._partitioner!r} (use murmur2 or murmur3)"
            )
        timeout = settings.pop(TIMEOUT_SETTING, str(DEFAULT_TIMEOUT_MS))
        if not timeout.isdigit() or int(timeout) < 1:
            raise InvalidConfigError(f"{TIMEOUT_SETTING}={timeout!r} is not a positive integer")
        self.timeout_s = int(timeout) / 1000
        unknown = sorted(k for k in settings if k.startswith("logstore."))
        if unknown:
            raise InvalidConfigError(
                f"unknown setting {unknown[0]!r} (logstore's own: {PARTITIONER_SETTING}, "
                f"{TIMEOUT_SETTING})"
            )
        self.bootstrap_servers = bootstrap_servers
        self._base = {
            **settings,
            "bootstrap.servers": bootstrap_servers,
            "allow.auto.create.topics": "false",
        }
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._admin = ck.admin.AdminClient({
                k: v for k, v in self._base.items() if k != "allow.auto.create.topics"
            })
        except ck.KafkaException as exc:
            raise InvalidConfigError(f"Kafka settings refused: {exc.args[0].str()}") from None
        self._producers: dict[Compression, Any] = {}
        self._poller: threading.Thread | None = None
        self._sessions: list[FetchSession] = []
        self._members: dict[str, KafkaMembership] = {}
        self._producer_ids = itertools.count(1)
        self._appended: dict[tuple[TopicPartition, int], tuple[int, int, AppendResult]] = {}
        self._append_meta: dict[str, tuple[float, TopicMetadata]] = {}

    # ------------------------------------------------------------------ plumbing

    def client_settings(self, **overrides: str) -> dict[str, str]:
        """The librdkafka settings for a new client of this backend (with ``overrides``)."""
        return {**self._base, **overrides}

    def now_ms(self) -> int:
        return self._clock.now_ms()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the Kafka backend of {self.bootstrap_servers} is closed")

    def _wait(self, future: Any, what: str) -> Any:
        ck = confluent()
        try:
            return future.result(timeout=self.timeout_s)
        except ck.KafkaException as exc:
            raise kafka_error(exc.args[0], what) from None
        except TimeoutError:
            raise ClusterError(
                f"{what}: no answer from {self.bootstrap_servers} within {self.timeout_s:g} s",
                "_TIMED_OUT",
            ) from None

    # ------------------------------------------------------------------ metadata

    def topic_metadata(self, topic: str) -> TopicMetadata:
        self._check_open()
        description = self._describe(topic)
        config = self._configs(topic)
        return TopicMetadata(
            topic,
            str(description.topic_id),
            len(description.partitions),
            self._partitioner,
            int(config.get("max.message.bytes", "1048588")),
            keyed_only="compact" in config.get("cleanup.policy", "delete"),
        )

    def _describe(self, topic: str) -> Any:
        ck = confluent()
        if not topic or any(c in topic for c in "\x00/\\"):
            raise TopicNotFoundError(
                f"unknown topic {topic!r} on {self.bootstrap_servers} (create it first)"
            )
        futures = self._admin.describe_topics(ck.TopicCollection([topic]),
                                              request_timeout=self.timeout_s)
        try:
            return self._wait(futures[topic], f"topic {topic!r}")
        except TopicNotFoundError:
            raise TopicNotFoundError(
                f"unknown topic {topic!r} on {self.bootstrap_servers} (create it first)"
            ) from None

    def _configs(self, topic: str, *, dynamic_only: bool = False) -> dict[str, str]:
        ck = confluent()
        resource = ck.admin.ConfigResource(ck.admin.ResourceType.TOPIC, topic)
        futures = self._admin.describe_configs([resource], request_timeout=self.timeout_s)
        entries = self._wait(futures[resource], f"the configs of topic {topic!r}")
        dynamic = ck.admin.ConfigSource.DYNAMIC_TOPIC_CONFIG.value
        return {
            name: entry.value
            for name, entry in entries.items()
            if entry.value is not None and (not dynamic_only or entry.source == dynamic)
        }

    def list_topics(self) -> list[str]:
        self._check_open()
        ck = confluent()
        try:
            metadata = self._admin.list_topics(timeout=self.timeout_s)
        except ck.KafkaException as exc:
            raise kafka_error(exc.args[0], "listing topics") from None
        return sorted(name for name in metadata.topics if not name.startswith("__"))

    def create_topic(self, name: str, partitions: int = 1, **config: Any) -> TopicMetadata:
        self._check_open()
        ck = confluent()
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise InvalidConfigError(f"partitions={partitions!r} must be a positive integer")
        partitioner = config.get("partitioner", self._partitioner)
        if partitioner != self._partitioner:
            raise InvalidConfigError(
                f"partitioner={partitioner!r}: on a Kafka cluster every topic's keys map "
                f"as the backend's {PARTITIONER_SETTING} says ({self._partitioner!r}; set "
                f"it in the kafka:// address)"
            )
        new = ck.admin.NewTopic(name, partitions, -1, config=to_kafka(config))
        futures = self._admin.create_topics([new], request_timeout=self.timeout_s)
        self._wait(futures[name], f"creating topic {name!r}")
        return self._until_visible(name, lambda meta: meta.partitions >= partitions)

    def _until_visible(
        self, name: str, ready: Callable[[TopicMetadata], bool]
    ) -> TopicMetadata:
        """Topic ``name``'s metadata once every broker answers with the change (Kafka
        propagates metadata asynchronously: a client asking at once may not see it)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                meta = self.topic_metadata(name)
                if ready(meta):
                    spec = confluent().admin.OffsetSpec.latest()
                    self._list_offsets(  # every partition has a leader that answers
                        {TopicPartition(name, p): spec for p in range(meta.partitions)},
                        f"the new partitions of topic {name!r}",
                    )
                    return meta
            except TopicNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"topic {name!r}: the change did not show within "
                                   f"{self.timeout_s:g} s", "_TIMED_OUT")
            time.sleep(0.02)

    def delete_topic(self, name: str) -> None:
        self._check_open()
        futures = self._admin.delete_topics([name], request_timeout=self.timeout_s)
        self._wait(futures[name], f"deleting topic {name!r}")
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            try:
                self._describe(name)
            except TopicNotFoundError:
                return
            time.sleep(0.02)

    def add_partitions(self, name: str, total: int) -> TopicMetadata:
        self._check_open()
        ck = confluent()
        current = self.topic_metadata(name).partitions
        if total <= current:
            raise InvalidConfigError(
                f"topic {name!r} has {current} partitions; {total} would not add any "
                f"(partitions are only ever added)"
            )
        futures = self._admin.create_partitions([ck.admin.NewPartitions(name, total)],
                                                request_timeout=self.timeout_s)
        self._wait(futures[name], f"adding partitions to topic {name!r}")
        return self._until_visible(name, lambda meta: meta.partitions >= total)

    def alter_topic(self, name: str, **changes: Any) -> TopicConfig:
        """Set ``changes`` (TopicConfig fields) on topic ``name`` (Kafka's
        IncrementalAlterConfigs: the other settings stay); returns its config.

        Raises:
            TopicNotFoundError; InvalidConfigError: a field Kafka has no name for or
                refuses, or ``partitions`` (grown with :meth:`add_partitions`).
        """
        self._check_open()
        ck = confluent()
        if "partitions" in changes:
            raise InvalidConfigError(
                "partitions are added with add_partitions ('topics add-partitions'), not altered"
            )
        if changes.get("partitioner", self._partitioner) != self._partitioner:
            raise InvalidConfigError(
                f"partitioner={changes['partitioner']!r}: on a Kafka cluster it is the "
                f"backend's {PARTITIONER_SETTING} ({self._partitioner!r})"
            )
        self._describe(name)  # TopicNotFoundError
        entries = [
            ck.admin.ConfigEntry(k, v, incremental_operation=ck.admin.AlterConfigOpType.SET)
            for k, v in to_kafka(changes).items()
        ]
        if entries:
            resource = ck.admin.ConfigResource(ck.admin.ResourceType.TOPIC, name,
                                               incremental_configs=entries)
            futures = self._admin.incremental_alter_configs([resource],
                                                            request_timeout=self.timeout_s)
            self._wait(futures[resource], f"altering topic {name!r}")
        return self.topic_config(name)

    def topic_config(self, name: str) -> TopicConfig:
        """Topic ``name``'s settings that logstore knows (those set on the topic; Kafka's
        broker defaults are not logstore's, so they are left at logstore's defaults)."""
        self._check_open()
        self._describe(name)  # TopicNotFoundError
        known = set(known_names())
        settings = {k: v for k, v in self._configs(name, dynamic_only=True).items()
                    if k in known}
        fields = to_topic_config(settings)
        fields["partitioner"] = self._partitioner
        return TopicConfig().replace(**fields)

    # ------------------------------------------------------------------ fetch

    def fetch(
        self,
        positions: Mapping[TopicPartition, int],
        *,
        max_records: int,
        max_bytes: int,
        max_wait_ms: int = 0,
        member: GroupMember | None = None,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> dict[TopicPartition, list[ConsumerRecord] | LogstoreError]:
        self._check_open()
        if not positions:
            return {}
        session = self._session(positions, isolation_level)
        try:
            return session.fetch(positions, max_records, max_bytes, max_wait_ms, self)
        finally:
            session.release()

    def _session(self, positions: Mapping[TopicPartition, int], isolation: str) -> FetchSession:
        """A free fetch session for ``positions``: the one that left off there (a reader
        goes on), else one that reads none of these partitions (they are added to it),
        else a new one; at the most sessions, the least recently used is re-aimed."""
        wanted = frozenset(positions)
        with self._lock:
            self._check_open()
            free = [s for s in self._sessions if not s.busy and s.isolation == isolation]
            best = next((s for s in free if s.continues(positions)), None)
            best = best or next((s for s in free if not s.assigned & wanted), None)
            if best is None and (len(self._sessions) < _MAX_FETCH_SESSIONS or not free):
                self._drop_idle_locked()
                best = FetchSession(self, isolation)
                self._sessions.append(best)
            if best is None:
                best = min(free, key=lambda s: s.last_used)
            best.busy = True
            return best

    def _drop_idle_locked(self) -> None:
        now = time.monotonic()
        for session in [s for s in self._sessions if not s.busy
                        and now - s.last_used > _SESSION_IDLE_S]:
            self._sessions.remove(session)
            session.close()

    def fetch_batches(self, *args: Any, **kwargs: Any) -> FetchResult:
        unsupported("reading stored batches", "the wire server serves data directories; "
                     "Kafka clients can use the cluster directly")

    def add_append_listener(self, listener: Callable[[TopicPartition], None]) -> bool:
        return False

    def watch_appends(self, tps: Iterable[TopicPartition]) -> None:
        return None

    def offset_range(
        self, tp: TopicPartition, isolation_level: str = READ_UNCOMMITTED
    ) -> tuple[int, int]:
        self._check_open()
        spec = confluent().admin.OffsetSpec
        what = f"the offsets of {tp.topic}-{tp.partition}"
        start = self._list_offsets({tp: spec.earliest()}, what, isolation_level)[tp].offset
        end = self._list_offsets({tp: spec.latest()}, what, isolation_level)[tp].offset
        return start, end

    def offset_for_timestamp(
        self, tp: TopicPartition, timestamp: int
    ) -> OffsetAndTimestamp | None:
        self._check_open()
        spec = confluent().admin.OffsetSpec.for_timestamp(timestamp)
        found = self._list_offsets(
            {tp: spec}, f"the offset of {tp.topic}-{tp.partition} at {timestamp}"
        )[tp]
        if found.offset < 0:
            return None
        return OffsetAndTimestamp(found.offset, found.timestamp)

    def _list_offsets(
        self, specs: Mapping[TopicPartition, Any], what: str,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> dict[TopicPartition, Any]:
        """Kafka's ListOffsets for ``specs``, asked again while a partition's leader is
        moving (just created, a broker restarting: NOT_LEADER_OR_FOLLOWER for some tens
        of milliseconds), up to the request timeout."""
        ck = confluent()
        level = ck.IsolationLevel.READ_COMMITTED if isolation_level == READ_COMMITTED \
            else ck.IsolationLevel.READ_UNCOMMITTED
        deadline = time.monotonic() + self.timeout_s
        while True:
            futures = self._admin.list_offsets(
                {ck.TopicPartition(tp.topic, tp.partition): spec for tp, spec in specs.items()},
                isolation_level=level, request_timeout=self.timeout_s,
            )
            try:
                return {
                    TopicPartition(key.topic, key.partition): self._wait(future, what)
                    for key, future in futures.items()
                }
            except ClusterError as err:
                if err.code not in LEADER_MOVING or time.monotonic() > deadline:
                    raise
            time.sleep(0.02)

    def close(self) -> None:
        """Flush what the producer holds, close every consumer this backend made."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sessions, self._sessions = self._sessions, []
            members = list(self._members.values())
            producers = list(self._producers.values())
        for membership in members:
            membership.close()
        for session in sessions:
            session.close()
        for producer in producers:
            producer.flush(self.timeout_s)
        if self._poller is not None:
            self._poller.join(1)

    def __enter__(self) -> KafkaBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
