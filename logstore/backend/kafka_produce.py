"""The produce side of :class:`~logstore.backend.kafka.KafkaBackend`: librdkafka's
idempotent producers (one per compression codec in use, shared by every client of the
backend), appends that wait for their records' delivery reports, and the backend's own
answer to a retried append."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from logstore.backend.rdkafka import confluent, kafka_error, unsupported
from logstore.errors import (
    ClusterError,
    InvalidConfigError,
    InvalidRecordError,
    LogstoreError,
    PartitionNotFoundError,
    RecordTooLargeError,
    TopicNotFoundError,
)
from logstore.records import decode_batch_records, scan
from logstore.types import AppendResult, Compression, TopicMetadata, TopicPartition

APPENDED_KEPT = 10_000
"""How many partitions' last appends (per producer) the backend remembers, to answer a
retried one without sending it again."""
APPEND_METADATA_TTL_S = 1.0
"""An append checks its topic against metadata at most this old (asked again before it
refuses one): two admin requests per batch would halve a producer's throughput."""
COMPRESSION = {
    Compression.NONE: "none",
    Compression.GZIP: "gzip",
    Compression.SNAPPY: "snappy",
    Compression.LZ4: "lz4",
    Compression.ZSTD: "zstd",
}
"""librdkafka's ``compression.type`` of each codec."""

Record = tuple[int, "bytes | None", "bytes | None", Any]


class KafkaProducing:
    """The produce requests of :class:`~logstore.backend.kafka.KafkaBackend`."""

    _lock: threading.Lock
    _closed: bool
    timeout_s: float
    _producers: dict[Compression, Any]
    _poller: threading.Thread | None
    _producer_ids: itertools.count[int]
    _appended: dict[tuple[TopicPartition, int], tuple[int, int, AppendResult]]
    _append_meta: dict[str, tuple[float, TopicMetadata]]

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

        def client_settings(self, **overrides: str) -> dict[str, str]: ...

        def topic_metadata(self, topic: str) -> TopicMetadata: ...

    def init_producer_id(
        self, transactional_id: str | None = None, transaction_timeout_ms: int = 0
    ) -> tuple[int, int]:
        """A producer id for the backend's own de-duplication of retried appends (the
        records reach Kafka through librdkafka's idempotent producer, whose id is its
        own)."""
        if transactional_id is not None:
            unsupported("a transactional producer", "use confluent_kafka.Producer with "
                         "transactional.id, or an embedded store")
        return next(self._producer_ids), 0

    def add_partitions_to_txn(self, *args: Any, **kwargs: Any) -> NoReturn:
        unsupported("a transaction", "use confluent_kafka.Producer with transactional.id")

    def txn_offset_commit(self, *args: Any, **kwargs: Any) -> NoReturn:
        unsupported("a transaction", "use confluent_kafka.Producer with transactional.id")

    def end_txn(self, *args: Any, **kwargs: Any) -> NoReturn:
        unsupported("a transaction", "use confluent_kafka.Producer with transactional.id")

    def _producer_client(self, compression: Compression) -> Any:
        """The backend's librdkafka producer for ``compression`` (a setting of a whole
        librdkafka producer, so one per codec in use), made at first use."""
        with self._lock:
            self._check_open()
            producer = self._producers.get(compression)
            if producer is None:
                ck = confluent()
                try:
                    producer = ck.Producer(self.client_settings(**{
                        "enable.idempotence": "true",
                        "acks": "all",
                        "linger.ms": "1",
                        "message.max.bytes": "1000000000",
                        "compression.type": COMPRESSION[compression],
                    }))
                except ck.KafkaException as exc:
                    raise InvalidConfigError(
                        f"Kafka settings refused: {exc.args[0].str()}"
                    ) from None
                self._producers[compression] = producer
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll_deliveries, name="logstore-kafka-deliveries", daemon=True
                )
                self._poller.start()
            return producer

    def _poll_deliveries(self) -> None:
        """Serve the producers' delivery reports (the appends wait for them)."""
        while not self._closed:
            producers = list(self._producers.values())
            for producer in producers:
                producer.poll(0.05 / len(producers))

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
            unsupported("a transactional append", "use confluent_kafka.Producer")
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
        result = self._send(tp, records, meta, compression)
        if producer_id >= 0:
            with self._lock:
                self._appended.pop((tp, producer_id), None)  # to the end: the newest
                self._appended[(tp, producer_id)] = (base_sequence, len(records), result)
                while len(self._appended) > APPENDED_KEPT:  # the oldest producers' first
                    del self._appended[next(iter(self._appended))]
        return result

    def _append_metadata(self, topic: str, *, fresh: bool = False) -> TopicMetadata:
        """Topic ``topic``'s metadata for checking an append, asked at most every
        :data:`APPEND_METADATA_TTL_S` (two admin requests per batch would halve a
        producer's throughput), and again before an append is refused."""
        now = time.monotonic()
        with self._lock:
            cached = self._append_meta.get(topic)
        if cached is not None and not fresh and now - cached[0] < APPEND_METADATA_TTL_S:
            return cached[1]
        meta = self.topic_metadata(topic)
        with self._lock:
            self._append_meta[topic] = (now, meta)
        return meta

    def _send(
        self, tp: TopicPartition, records: Sequence[Record], meta: TopicMetadata,
        compression: Compression = Compression.NONE,
    ) -> AppendResult:
        ck = confluent()
        producer = self._producer_client(compression)
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
