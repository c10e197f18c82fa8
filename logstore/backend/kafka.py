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

import contextlib
import itertools
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from logstore.backend.kafka_groups import KafkaMembership
from logstore.backend.rdkafka import confluent, kafka_error, leader_moving
from logstore.config import READ_COMMITTED, READ_UNCOMMITTED, TopicConfig
from logstore.errors import (
    ClusterError,
    InvalidConfigError,
    InvalidRecordError,
    LogstoreError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    RecordTooLargeError,
    StoreClosedError,
    TopicNotFoundError,
    UnknownMemberIdError,
    UnsupportedOperationError,
)
from logstore.kafka_configs import known_names, to_kafka, to_topic_config
from logstore.records import decode_batch_records, scan
from logstore.records.consumer_protocol import Assignment, encode_assignment
from logstore.types import (
    AppendResult,
    CommittedOffset,
    Compression,
    ConsumerRecord,
    FetchResult,
    GroupInfo,
    GroupMember,
    JoinResult,
    MemberInfo,
    OffsetAndTimestamp,
    SystemClock,
    TopicMetadata,
    TopicPartition,
)

if TYPE_CHECKING:
    from logstore.types import Clock

SCHEME = "kafka://"
PARTITIONER_SETTING = "logstore.partitioner"
TIMEOUT_SETTING = "logstore.request.timeout.ms"
DEFAULT_PARTITIONER = "murmur2"
"""Keys map to partitions as Kafka's Java client maps them (murmur2), so that logstore's
producers and every other client of the cluster agree; ``logstore.partitioner=murmur3``
in the address keeps an embedded store's layout (a topic mirrored from one, say)."""
DEFAULT_TIMEOUT_MS = 30_000
_MAX_FETCH_SESSIONS = 32
_SESSION_IDLE_S = 60.0
_UNASKED_S = 30.0
"""A fetch session stops reading a partition nobody asked it for in this long."""
_BUFFERED_MAX = 20_000
"""A fetch session pauses a partition with this many records read ahead and not asked
for (a reader paused it, or reads others first), resuming it at half."""
_APPENDED_KEPT = 10_000
"""How many partitions' last appends (per producer) the backend remembers, to answer a
retried one without sending it again."""
_APPEND_METADATA_TTL_S = 1.0
_CATCH_UP_S = 1.0
"""How long a fetch that does not wait may still wait for records the partition has but
librdkafka has not fetched yet (its first fetch after an assign or a seek)."""
_COMPRESSION = {
    Compression.NONE: "none",
    Compression.GZIP: "gzip",
    Compression.SNAPPY: "snappy",
    Compression.LZ4: "lz4",
    Compression.ZSTD: "zstd",
}

Record = tuple[int, "bytes | None", "bytes | None", Any]


def parse_kafka_url(url: str) -> tuple[str, dict[str, str]]:
    """``(bootstrap_servers, settings)`` of ``kafka://host:port[,host:port...][?k=v&...]``.

    Raises:
        InvalidConfigError: not a kafka:// address, no broker, a broker without a numeric
            port, or a query that is not ``name=value`` pairs (the message names it).
    """
    if not url.startswith(SCHEME):
        raise InvalidConfigError(f"{url!r} is not a Kafka address (kafka://host:port,...)")
    rest = url[len(SCHEME):]
    hosts, _, query = rest.partition("?")
    hosts = hosts.rstrip("/")
    brokers = [h.strip() for h in hosts.split(",") if h.strip()]
    if not brokers:
        raise InvalidConfigError(f"{url!r} names no broker (kafka://host:port,...)")
    for broker in brokers:
        host, sep, port = broker.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidConfigError(
                f"broker {broker!r} in {url!r} is not host:port (e.g. localhost:9092)"
            )
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidConfigError(
            f"the settings {query!r} in {url!r} are not name=value pairs joined by &"
        ) from None
    settings = dict(pairs)
    if "bootstrap.servers" in settings:
        raise InvalidConfigError(
            f"{url!r} sets bootstrap.servers twice (the brokers go before the ?)"
        )
    return ",".join(brokers), settings


def is_kafka_url(target: object) -> bool:
    """Whether ``target`` is a ``kafka://`` address (else: a data directory)."""
    return isinstance(target, str) and target.startswith(SCHEME)


def _unsupported(what: str, instead: str) -> NoReturn:
    raise UnsupportedOperationError(f"{what} is not available on a Kafka cluster ({instead})")


class KafkaBackend:
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
        self._producer: Any = None
        self._poller: threading.Thread | None = None
        self._sessions: list[_FetchSession] = []
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

    # ------------------------------------------------------------------ produce

    def init_producer_id(
        self, transactional_id: str | None = None, transaction_timeout_ms: int = 0
    ) -> tuple[int, int]:
        """A producer id for the backend's own de-duplication of retried appends (the
        records reach Kafka through librdkafka's idempotent producer, whose id is its
        own)."""
        if transactional_id is not None:
            _unsupported("a transactional producer", "use confluent_kafka.Producer with "
                         "transactional.id, or an embedded store")
        return next(self._producer_ids), 0

    def add_partitions_to_txn(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported("a transaction", "use confluent_kafka.Producer with transactional.id")

    def txn_offset_commit(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported("a transaction", "use confluent_kafka.Producer with transactional.id")

    def end_txn(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported("a transaction", "use confluent_kafka.Producer with transactional.id")

    def _producer_client(self) -> Any:
        with self._lock:
            self._check_open()
            if self._producer is None:
                ck = confluent()
                try:
                    self._producer = ck.Producer(self.client_settings(**{
                        "enable.idempotence": "true",
                        "acks": "all",
                        "linger.ms": "1",
                        "message.max.bytes": "1000000000",
                    }))
                except ck.KafkaException as exc:
                    raise InvalidConfigError(
                        f"Kafka settings refused: {exc.args[0].str()}"
                    ) from None
                self._poller = threading.Thread(
                    target=self._poll_deliveries, name="logstore-kafka-deliveries", daemon=True
                )
                self._poller.start()
            return self._producer

    def _poll_deliveries(self) -> None:
        while not self._closed:
            producer = self._producer
            if producer is None:
                return
            producer.poll(0.05)

    def append(
        self,
        tp: TopicPartition,
        records: Sequence[Record],
        *,
        topic_id: str | None,
        compression: Compression = Compression.NONE,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
        transactional: bool = False,
    ) -> AppendResult:
        """Send ``records`` to ``tp`` and wait for their delivery reports. A retry of the
        batch ``(producer_id, base_sequence)`` last written to ``tp`` is answered, not
        sent again (the producer retries a batch whose outcome it did not learn)."""
        if transactional:
            _unsupported("a transactional append", "use confluent_kafka.Producer")
        if not records:
            raise InvalidRecordError("an append needs at least one record")
        if producer_id >= 0:
            with self._lock:
                done = self._appended.get((tp, producer_id))
            if done is not None and done[0] == base_sequence and done[1] == len(records):
                return done[2]
        meta = self._append_metadata(tp.topic)
        if (topic_id is not None and meta.topic_id != topic_id) or not (
            0 <= tp.partition < meta.partitions
        ):
            meta = self._append_metadata(tp.topic, fresh=True)  # it may have just changed
        if topic_id is not None and meta.topic_id != topic_id:
            raise TopicNotFoundError(
                f"topic {tp.topic!r} was deleted and created again since the records were "
                f"sent (they are not written into the new topic; send them again)"
            )
        if not 0 <= tp.partition < meta.partitions:
            raise PartitionNotFoundError(
                f"topic {tp.topic!r} has no partition {tp.partition} "
                f"(it has {meta.partitions})"
            )
        result = self._send(tp, records, meta)
        if producer_id >= 0:
            with self._lock:
                self._appended.pop((tp, producer_id), None)  # to the end: the newest
                self._appended[(tp, producer_id)] = (base_sequence, len(records), result)
                while len(self._appended) > _APPENDED_KEPT:  # the oldest producers' first
                    del self._appended[next(iter(self._appended))]
        return result

    def _append_metadata(self, topic: str, *, fresh: bool = False) -> TopicMetadata:
        """Topic ``topic``'s metadata for checking an append, asked at most every
        :data:`_APPEND_METADATA_TTL_S` (two admin requests per batch would halve a
        producer's throughput), and again before an append is refused."""
        now = time.monotonic()
        with self._lock:
            cached = self._append_meta.get(topic)
        if cached is not None and not fresh and now - cached[0] < _APPEND_METADATA_TTL_S:
            return cached[1]
        meta = self.topic_metadata(topic)
        with self._lock:
            self._append_meta[topic] = (now, meta)
        return meta

    def _send(
        self, tp: TopicPartition, records: Sequence[Record], meta: TopicMetadata
    ) -> AppendResult:
        ck = confluent()
        producer = self._producer_client()
        size = sum(len(k or b"") + len(v or b"") + 64 for _, k, v, _ in records)
        if size > meta.max_message_bytes and len(records) == 1:
            raise RecordTooLargeError(size, meta.max_message_bytes)
        delivery = _Delivery(len(records))
        for index, (timestamp, key, value, headers) in enumerate(records):
            callback = delivery.callback(index)
            while True:
                try:
                    producer.produce(
                        tp.topic, value, key, partition=tp.partition, timestamp=timestamp,
                        headers=list(headers) or None, on_delivery=callback,
                    )
                    break
                except BufferError:  # librdkafka's queue is full: let it drain
                    producer.poll(0.01)
                except ck.KafkaException as exc:
                    delivery.fail(kafka_error(exc.args[0], f"sending to {tp.topic}-{tp.partition}"))
                    break
        if not delivery.event.wait(self.timeout_s + 300):
            raise ClusterError(f"{tp.topic}-{tp.partition}: no delivery report", "_TIMED_OUT")
        if delivery.error is not None:
            raise delivery.error
        offsets = delivery.offsets
        contiguous = all(b == a + 1 for a, b in itertools.pairwise(offsets))
        return AppendResult(
            offsets[0], offsets[-1], delivery.log_append_time, len(offsets),
            offsets=None if contiguous else tuple(offsets),
        )

    def append_batch(self, tp: TopicPartition, batch: bytes) -> AppendResult:
        meta = self.topic_metadata(tp.topic)
        records = [
            (r.timestamp, r.key, r.value, tuple(r.headers))
            for header in scan(batch, verify=True)
            for r in decode_batch_records(batch, header, verify=False)
        ]
        if not records:
            raise InvalidRecordError(f"no whole record batch in {len(batch)} bytes")
        return self._send(tp, records, meta)

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

    def _session(self, positions: Mapping[TopicPartition, int], isolation: str) -> _FetchSession:
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
                best = _FetchSession(self, isolation)
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
        _unsupported("reading stored batches", "the wire server serves data directories; "
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
                    TopicPartition(key.topic, key.partition): future.result(self.timeout_s)
                    for key, future in futures.items()
                }
            except ck.KafkaException as exc:
                err = exc.args[0]
                if not leader_moving(err) or time.monotonic() > deadline:
                    raise kafka_error(err, what) from None
            except TimeoutError:
                raise ClusterError(f"{what}: no answer from {self.bootstrap_servers} within "
                                   f"{self.timeout_s:g} s", "_TIMED_OUT") from None
            time.sleep(0.02)

    # ------------------------------------------------------------------ offsets

    def committed_offsets(
        self, group: str, tps: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        self._check_open()
        ck = confluent()
        asked = None if tps is None else [ck.TopicPartition(t.topic, t.partition) for t in tps]
        if asked == []:
            return {}
        request = ck.ConsumerGroupTopicPartitions(group, asked)
        futures = self._admin.list_consumer_group_offsets([request], require_stable=True,
                                                          request_timeout=self.timeout_s)
        answer = self._wait(futures[group], f"the offsets of group {group!r}")
        ids: dict[str, str | None] = {}
        out = {}
        for found in answer.topic_partitions:
            if found.offset >= 0 and found.error is None:
                if found.topic not in ids:
                    ids[found.topic] = self._topic_id(found.topic)
                out[TopicPartition(found.topic, found.partition)] = CommittedOffset(
                    found.offset, found.metadata or "", -1, ids[found.topic]
                )
        return out

    def _topic_id(self, topic: str) -> str | None:
        """The id of ``topic`` as it is now (None: there is none). A Kafka group
        coordinator deletes a deleted topic's offsets, so the offsets it answers belong
        to the topic's current incarnation: they carry its id."""
        try:
            return str(self._describe(topic).topic_id)
        except TopicNotFoundError:
            return None

    def commit_offsets(
        self,
        group: str,
        offsets: Mapping[TopicPartition, tuple[int, str]],
        *,
        member: GroupMember | None = None,
    ) -> None:
        """Commit as ``member`` (through its librdkafka consumer: fenced by the broker's
        generation check) or, with none, as an administrator (Kafka refuses that while the
        group has live members: :class:`~logstore.errors.UnknownMemberIdError`)."""
        self._check_open()
        if not offsets:
            return
        if member is not None:
            with self._lock:
                owner = self._members.get(member.member_id)
            if owner is None:
                raise UnknownMemberIdError(
                    f"member {member.member_id!r} of group {group!r} is not one of this "
                    f"process's consumers (it left or was removed)"
                )
            owner.commit(offsets, member.generation)
            return
        ck = confluent()
        request = ck.ConsumerGroupTopicPartitions(group, [
            ck.TopicPartition(tp.topic, tp.partition, offset, metadata=metadata)
            for tp, (offset, metadata) in offsets.items()
        ])
        futures = self._admin.alter_consumer_group_offsets([request],
                                                           request_timeout=self.timeout_s)
        answer = self._wait(futures[group], f"committing offsets of group {group!r}")
        for tp in answer.topic_partitions:
            if tp.error is not None:
                raise kafka_error(tp.error, f"committing {tp.topic}-{tp.partition} of "
                                            f"group {group!r}")

    def delete_offsets(self, group: str, tps: Iterable[TopicPartition]) -> NoReturn:
        _unsupported("deleting a group's offsets of some partitions",
                     "delete the whole group, or reset its offsets")

    # ------------------------------------------------------------------ groups

    def managed_membership(self, group: str, member_id: str, **options: Any) -> KafkaMembership:
        """A member of ``group`` run by librdkafka's consumer (the clients use it instead
        of the classic group requests, which librdkafka speaks itself)."""
        self._check_open()
        return KafkaMembership(self, group, member_id, **options)

    def register_member(self, member_id: str, membership: KafkaMembership | None) -> None:
        """Route commits of ``member_id`` to ``membership`` (None: forget it)."""
        with self._lock:
            if membership is None:
                self._members.pop(member_id, None)
            else:
                self._members[member_id] = membership

    def join_group(self, *args: Any, **kwargs: Any) -> JoinResult | None:
        _unsupported("the JoinGroup request", "consumers join through librdkafka")

    def sync_group(self, *args: Any, **kwargs: Any) -> bytes | None:
        _unsupported("the SyncGroup request", "consumers join through librdkafka")

    def heartbeat(self, group: str, member_id: str, generation: int) -> None:
        _unsupported("the Heartbeat request", "consumers join through librdkafka")

    def group_changed(self, group: str, member_id: str, generation: int) -> bool:
        return False

    def leave_group(self, group: str, member_id: str) -> None:
        _unsupported("the LeaveGroup request", "consumers leave through librdkafka")

    def describe_group(self, group: str) -> GroupInfo:
        self._check_open()
        ck = confluent()
        futures = self._admin.describe_consumer_groups([group], request_timeout=self.timeout_s)
        try:
            found = futures[group].result(timeout=self.timeout_s)
        except ck.KafkaException as exc:
            if exc.args[0].code() == ck.KafkaError.GROUP_ID_NOT_FOUND:
                return GroupInfo(group, "Dead", "", "", -1, None, ())
            raise kafka_error(exc.args[0], f"describing group {group!r}") from None
        state = _STATES.get(found.state.name, found.state.name.title())
        members = []
        for member in found.members:
            parts = member.assignment.topic_partitions if member.assignment else []
            by_topic: dict[str, list[int]] = {}  # (a topic's partitions, as librdkafka lists them)
            for part in parts:
                by_topic.setdefault(part.topic, []).append(part.partition)
            members.append(MemberInfo(
                member.member_id,
                member.group_instance_id,
                b"",
                encode_assignment(Assignment(sorted(
                    TopicPartition(t, p) for t, ps in by_topic.items() for p in ps
                ))),
            ))
        if state == "Dead" and not members:
            return GroupInfo(group, "Dead", "", "", -1, None, ())
        return GroupInfo(
            group, state, "consumer" if members or state != "Empty" else "",
            found.partition_assignor or "", -1, None, tuple(members),
        )

    def list_groups(self) -> list[str]:
        self._check_open()
        future = self._admin.list_consumer_groups(request_timeout=self.timeout_s)
        answer = self._wait(future, "listing groups")
        return sorted(g.group_id for g in answer.valid)

    def delete_group(self, group: str) -> None:
        self._check_open()
        ck = confluent()
        futures = self._admin.delete_consumer_groups([group], request_timeout=self.timeout_s)
        try:
            futures[group].result(timeout=self.timeout_s)
        except ck.KafkaException as exc:
            if exc.args[0].code() == ck.KafkaError.GROUP_ID_NOT_FOUND:
                return
            raise kafka_error(exc.args[0], f"deleting group {group!r}") from None

    def close(self) -> None:
        """Flush what the producer holds, close every consumer this backend made."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sessions, self._sessions = self._sessions, []
            members = list(self._members.values())
            producer = self._producer
        for membership in members:
            membership.close()
        for session in sessions:
            session.close()
        if producer is not None:
            producer.flush(self.timeout_s)
        if self._poller is not None:
            self._poller.join(1)

    def __enter__(self) -> KafkaBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- share groups: not on a Kafka cluster through this backend

    def share_join(self, group: str, **kwargs: Any) -> dict[str, Any]:
        _unsupported("a share group", "Kafka 4.1+'s KafkaShareConsumer serves them")

    def share_acquire(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported("a share group", "Kafka 4.1+'s KafkaShareConsumer serves them")

    def share_acknowledge(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported("a share group", "Kafka 4.1+'s KafkaShareConsumer serves them")

    def describe_share_group(self, group: str) -> dict[str, Any]:
        _unsupported("a share group", "Kafka 4.1+'s KafkaShareConsumer serves them")

    def list_share_groups(self) -> list[str]:
        return []


_STATES = {
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "STABLE": "Stable",
    "EMPTY": "Empty",
    "DEAD": "Dead",
    "UNKNOWN": "Unknown",
}
"""librdkafka's ConsumerGroupState names, as Kafka's DescribeGroups spells them."""


class _Delivery:
    """The delivery reports of one append's records."""

    def __init__(self, count: int) -> None:
        self.offsets = [-1] * count
        self.pending = count
        self.error: LogstoreError | None = None
        self.log_append_time = -1
        self.event = threading.Event()
        self._lock = threading.Lock()

    def callback(self, index: int) -> Callable[[Any, Any], None]:
        def delivered(err: Any, msg: Any) -> None:
            with self._lock:
                if err is not None:
                    self.error = self.error or kafka_error(
                        err, f"sending to {msg.topic()}-{msg.partition()}"
                    )
                else:
                    self.offsets[index] = msg.offset()
                    kind, ts = msg.timestamp()
                    if kind == 2:  # TIMESTAMP_LOG_APPEND_TIME
                        self.log_append_time = ts
                self.pending -= 1
                if self.pending == 0:
                    self.event.set()

        return delivered

    def fail(self, error: LogstoreError) -> None:
        with self._lock:
            self.error = self.error or error
            self.event.set()


class _FetchSession:
    """An assign-mode librdkafka consumer (no group) and where it left off, so that a
    reader asking for the next records keeps what librdkafka prefetched."""

    def __init__(self, backend: KafkaBackend, isolation: str) -> None:
        ck = confluent()
        self.isolation = isolation
        self.consumer = ck.Consumer(backend.client_settings(**{
            "group.id": f"logstore-fetch-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "false",
            "auto.offset.reset": "error",
            "isolation.level": "read_committed" if isolation == READ_COMMITTED
            else "read_uncommitted",
            "fetch.wait.max.ms": "50",
        }))
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.next: dict[TopicPartition, int] = {}
        self.buffered: dict[TopicPartition, deque[ConsumerRecord | _Failure]] = {}
        self.waited: dict[TopicPartition, tuple[int, int]] = {}
        self.asked: dict[TopicPartition, float] = {}
        self.paused: set[TopicPartition] = set()
        self.busy = False
        self.last_used = time.monotonic()

    def continues(self, positions: Mapping[TopicPartition, int]) -> bool:
        """Whether a fetch of ``positions`` goes on where this session left off: every
        partition asked for is assigned here at the offset it will deliver next (a
        reader may ask for fewer partitions than before: those it still has records of
        are left out; their prefetched records stay)."""
        return all(
            tp in self.assigned and self.next.get(tp) == offset
            for tp, offset in positions.items()
        )

    def release(self) -> None:
        self.last_used = time.monotonic()
        self.busy = False

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            self.consumer.close()

    def _aim(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read ``positions`` from the offsets given: partitions new to the session are
        added, those at another offset re-added there (their prefetched records
        dropped), the others left as they are; partitions nobody asked for in
        :data:`_UNASKED_S` are removed."""
        ck = confluent()
        now = time.monotonic()
        stale = [tp for tp in self.assigned
                 if tp not in positions and now - self.asked.get(tp, 0) > _UNASKED_S]
        moved = [tp for tp, offset in positions.items()
                 if tp in self.assigned and self.next.get(tp) != offset]
        for tp in stale + moved:
            self._forget(tp)
        add = [tp for tp in positions if tp not in self.assigned]
        if add:
            self.consumer.incremental_assign(
                [ck.TopicPartition(tp.topic, tp.partition, positions[tp]) for tp in add]
            )
        self.assigned = self.assigned | frozenset(add)
        for tp in add:
            self.next[tp] = positions[tp]

    def fetch(
        self,
        positions: Mapping[TopicPartition, int],
        max_records: int,
        max_bytes: int,
        max_wait_ms: int,
        backend: KafkaBackend,
    ) -> dict[TopicPartition, list[ConsumerRecord] | LogstoreError]:
        for tp in positions:
            if tp.partition < 0:
                raise PartitionNotFoundError(f"{tp.topic} has no partition {tp.partition}")
        now = time.monotonic()
        for tp in positions:
            self.asked[tp] = now
        if not self.continues(positions):
            self._aim(positions)
        out: dict[TopicPartition, list[ConsumerRecord] | LogstoreError] = {}
        self._drain(out, max_records, max_bytes, backend, positions)
        deadline = time.monotonic() + max(0, max_wait_ms) / 1000
        while not out:
            wait = max(0.0, deadline - time.monotonic())
            if wait == 0 and self._behind(positions, backend):
                wait = _CATCH_UP_S  # records exist: librdkafka is fetching them
                deadline = time.monotonic() + wait
            first = self.consumer.poll(wait)
            if first is not None:
                self._take([first, *self.consumer.consume(max_records * len(positions), 0)])
                self._bound()
                self._drain(out, max_records, max_bytes, backend, positions)
            elif time.monotonic() >= deadline:
                break
        return out

    def _behind(self, positions: Mapping[TopicPartition, int], backend: KafkaBackend) -> bool:
        """Whether some partition has records at or after the offset asked for, by the
        high watermark librdkafka last heard (asked once after an assign): an answer
        without records would then only mean librdkafka has not fetched them yet (a
        store answers a fetch that does not wait with the records it has). Waited for
        in vain once (the offsets up to the high watermark hold no record for the
        reader: transaction markers, an aborted transaction), the same position and
        high watermark are not waited for again."""
        ck = confluent()
        for tp, offset in positions.items():
            key = ck.TopicPartition(tp.topic, tp.partition)
            try:
                _, high = self.consumer.get_watermark_offsets(key, cached=True)
                if high < 0:
                    _, high = self.consumer.get_watermark_offsets(
                        key, timeout=backend.timeout_s, cached=False
                    )
            except ck.KafkaException:
                continue
            if offset < high and self.waited.get(tp) != (offset, high):
                self.waited[tp] = (offset, high)
                return True
        return False

    def _take(self, messages: list[Any]) -> None:
        """Queue librdkafka's ``messages`` per partition as records (the hot loop of a
        fetch: one tuple per message, no per-message lookups beyond the partition's)."""
        missing = confluent().TIMESTAMP_NOT_AVAILABLE
        buffered, assigned = self.buffered, self.assigned
        new = tuple.__new__
        queues: dict[tuple[str, int], deque[ConsumerRecord | _Failure] | None] = {}
        for msg in messages:
            key = (msg.topic(), msg.partition())
            if key in queues:
                queue = queues[key]
            else:
                tp = TopicPartition(*key)
                queue = queues[key] = (
                    buffered.setdefault(tp, deque()) if tp in assigned else None
                )
            if queue is None:
                continue
            err = msg.error()
            if err is not None:
                queue.append(_Failure(err))
                continue
            kind, ts = msg.timestamp()
            queue.append(new(ConsumerRecord, (
                key[0], key[1], msg.offset(), -1 if kind == missing else ts,
                msg.key(), msg.value(), msg.headers() or (),
            )))

    def _drain(
        self,
        out: dict[TopicPartition, list[ConsumerRecord] | LogstoreError],
        max_records: int,
        max_bytes: int,
        backend: KafkaBackend,
        asked: Iterable[TopicPartition],
    ) -> None:
        for tp in asked:
            queue = self.buffered.get(tp)
            if not queue:
                continue
            taken: list[ConsumerRecord] = []
            size = 0
            while queue and len(taken) < max_records:
                head = queue[0]
                if isinstance(head, _Failure):
                    if not taken:
                        queue.popleft()
                        out[tp] = head.error(tp, self.next.get(tp, -1), backend)
                        self._forget(tp)
                    break
                record_size = len(head.key or b"") + len(head.value or b"") + 64
                if taken and size + record_size > max_bytes:
                    break
                queue.popleft()
                taken.append(head)
                size += record_size
            if taken:
                out[tp] = taken
                self.next[tp] = taken[-1].offset + 1
                self.waited.pop(tp, None)

    def _forget(self, tp: TopicPartition) -> None:
        """After an error (or when ``tp`` is removed or moved) the position in ``tp`` is
        unknown here: the next fetch of it re-adds it at the offset asked for."""
        self.next.pop(tp, None)
        self.buffered.pop(tp, None)
        self.waited.pop(tp, None)
        self.paused.discard(tp)  # (a partition unassigned is not paused any more)
        if tp in self.assigned:
            self.assigned = self.assigned - {tp}
            self.consumer.incremental_unassign(
                [confluent().TopicPartition(tp.topic, tp.partition)]
            )

    def _bound(self) -> None:
        """Pause the partitions whose records pile up unread here (a reader that stopped
        asking for one, say: paused it), resume those drained to half the bound."""
        ck = confluent()
        full = [tp for tp, q in self.buffered.items()
                if tp not in self.paused and len(q) > _BUFFERED_MAX]
        drained = [tp for tp in self.paused
                   if len(self.buffered.get(tp, ())) <= _BUFFERED_MAX // 2]
        if full:
            self.consumer.pause([ck.TopicPartition(tp.topic, tp.partition) for tp in full])
            self.paused.update(full)
        if drained:
            self.consumer.resume([ck.TopicPartition(tp.topic, tp.partition) for tp in drained])
            self.paused.difference_update(drained)


class _Failure:
    """An error librdkafka reported for one partition, in the order of its records."""

    def __init__(self, err: Any) -> None:
        self.err = err

    def error(self, tp: TopicPartition, offset: int, backend: KafkaBackend) -> LogstoreError:
        ck = confluent()
        code = self.err.code()
        if code in (ck.KafkaError._AUTO_OFFSET_RESET, ck.KafkaError.OFFSET_OUT_OF_RANGE):
            try:
                start, end = backend.offset_range(tp)
            except LogstoreError as err:
                return err
            return OffsetOutOfRangeError(offset, start, end)
        return kafka_error(self.err, f"reading {tp.topic}-{tp.partition}")
