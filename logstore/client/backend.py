"""What the clients need from wherever the records live: the backend seam.

:class:`Producer`, :class:`Consumer`, their asyncio twins and group administration talk
to a :class:`Backend` and to nothing else. :class:`~logstore.backend.local.LocalBackend`
serves an embedded store (a data directory); the wire server serves one over Kafka's
protocol, and a Kafka-cluster backend would be one more implementation. The interface is
shaped after the Kafka requests a client sends, so that such an implementation needs
nothing else:

=========================  ==============================================
method                     Kafka request
=========================  ==============================================
``topic_metadata``         Metadata
``create_topic``           CreateTopics
``delete_topic``           DeleteTopics
``add_partitions``         CreatePartitions
``topic_config``           DescribeConfigs (a topic's)
``append``                 Produce (records the client batched)
``append_batch``           Produce (a RecordBatch v2 the caller encoded)
``init_producer_id``       InitProducerId (with a transactional id: fences older instances)
``add_partitions_to_txn``  AddPartitionsToTxn
``txn_offset_commit``      AddOffsetsToTxn + TxnOffsetCommit
``end_txn``                EndTxn (the coordinator writes the markers: WriteTxnMarkers)
``fetch``                  Fetch (``max_wait_ms`` long polling; isolation level)
``fetch_batches``          Fetch (the stored batches, as a broker sends them)
``add_append_listener``    (none: how a server learns of new records to wake fetches)
``offset_range``           ListOffsets (earliest, latest)
``offset_for_timestamp``   ListOffsets (by timestamp)
``committed_offsets``      OffsetFetch
``commit_offsets``         OffsetCommit (generation-fenced)
``delete_offsets``         OffsetDelete
``join_group``             JoinGroup
``sync_group``             SyncGroup
``heartbeat``              Heartbeat
``group_changed``          (none: a local shortcut; False over a network)
``leave_group``            LeaveGroup
``describe_group``         DescribeGroups
``list_groups``            ListGroups
``delete_group``           DeleteGroups
``share_join``             ShareGroupHeartbeat (the share group's settings)
``share_acquire``          ShareFetch (records acquired under a lock; acknowledgements ride on it)
``share_acknowledge``      ShareAcknowledge
``describe_share_group``   ShareGroupDescribe
``list_share_groups``      ListGroups (type share)
=========================  ==============================================

The group methods are Kafka's classic group protocol: the coordinator knows members,
generations and opaque protocol metadata; the group's leader computes the assignment
(:mod:`logstore.client.membership`). Joining and syncing never block longer than
``wait_ms``: ``None`` means "not complete yet, call again" (a rebalance completes once
every member has rejoined), so several members may share one thread.

Errors are the :class:`~logstore.errors.LogstoreError` tree: TopicNotFoundError,
PartitionNotFoundError, OffsetOutOfRangeError (per partition, in ``fetch``'s answer),
StorageError and LogFailedError (retriable by a producer), RebalanceInProgressError,
IllegalGenerationError, UnknownMemberIdError, FencedInstanceIdError (group requests),
GroupNotEmptyError, CommitFailedError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from logstore.backend import backend_for
from logstore.config import DEFAULT_TRANSACTION_TIMEOUT_MS, READ_UNCOMMITTED, TopicConfig
from logstore.errors import LogstoreError
from logstore.store import Store
from logstore.types import (
    AppendResult,
    CommittedOffset,
    Compression,
    ConsumerRecord,
    FetchResult,
    GroupInfo,
    GroupMember,
    Header,
    JoinResult,
    OffsetAndTimestamp,
    TopicMetadata,
    TopicPartition,
)

RecordTuple = tuple[int, "bytes | None", "bytes | None", Sequence[Header]]
"""One record to append: ``(timestamp_ms, key, value, headers)``."""

PartitionFetch = list[ConsumerRecord] | LogstoreError
"""One partition's answer to a fetch: its records from the offset asked for (maybe
none yet), or the error for that partition (e.g. OffsetOutOfRangeError)."""


class Backend(Protocol):
    """The operations clients use. Thread-safe; shared by every client of one store."""

    def now_ms(self) -> int:
        """The backend's clock (ms since the epoch): default record timestamps."""
        ...

    # ------------------------------------------------------------------ metadata

    def topic_metadata(self, topic: str) -> TopicMetadata:
        """Topic ``topic`` as it is now (not cached by the backend: clients cache).

        Raises:
            TopicNotFoundError: there is no such topic.
        """
        ...

    def list_topics(self) -> list[str]:
        """The names of the topics clients may use (not internal ones)."""
        ...

    def create_topic(self, name: str, partitions: int = 1, **config: Any) -> TopicMetadata:
        """Create topic ``name`` with ``partitions`` partitions and ``config`` (the
        :class:`~logstore.config.TopicConfig` fields to set).

        Raises:
            TopicExistsError, InvalidTopicError (a bad name), InvalidConfigError.
        """
        ...

    def delete_topic(self, name: str) -> None:
        """Delete topic ``name`` and its records.

        Raises:
            TopicNotFoundError: there is no such topic.
        """
        ...

    def add_partitions(self, name: str, total: int) -> TopicMetadata:
        """Grow topic ``name`` to ``total`` partitions (partitions are only ever added).

        Raises:
            TopicNotFoundError, InvalidConfigError (``total`` is not larger).
        """
        ...

    def topic_config(self, name: str) -> TopicConfig:
        """Topic ``name``'s whole configuration.

        Raises:
            TopicNotFoundError: there is no such topic.
        """
        ...

    # ------------------------------------------------------------------ produce

    def init_producer_id(
        self,
        transactional_id: str | None = None,
        transaction_timeout_ms: int = DEFAULT_TRANSACTION_TIMEOUT_MS,
    ) -> tuple[int, int]:
        """A new idempotent producer's ``(producer_id, producer_epoch)``. With a
        ``transactional_id``: that id's producer id and a new epoch; older instances of
        it are fenced and their open transaction aborted."""
        ...

    def add_partitions_to_txn(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        tps: Sequence[TopicPartition],
    ) -> None:
        """Add ``tps`` to the producer's open transaction (opening one if none is),
        before it writes there.

        Raises:
            ProducerFencedError, InvalidProducerIdMappingError, TopicNotFoundError.
        """
        ...

    def txn_offset_commit(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        group: str,
        offsets: Mapping[TopicPartition, tuple[int, str]],
        *,
        member: GroupMember | None = None,
    ) -> None:
        """Commit ``group``'s ``offsets`` with the open transaction: visible only if it
        commits. With ``member``: refused if it was fenced from its group (KIP-447).

        Raises:
            ProducerFencedError, InvalidProducerIdMappingError,
            IllegalGenerationError, UnknownMemberIdError.
        """
        ...

    def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, *, commit: bool
    ) -> None:
        """Commit or abort the producer's open transaction: markers in its partitions,
        its offsets committed (a commit), all or nothing.

        Raises:
            ProducerFencedError, InvalidProducerIdMappingError, InvalidTxnStateError.
        """
        ...

    def append(
        self,
        tp: TopicPartition,
        records: Sequence[RecordTuple],
        *,
        topic_id: str | None,
        compression: Compression = Compression.NONE,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
        transactional: bool = False,
    ) -> AppendResult:
        """Append ``records`` to ``tp`` as one batch; a batch whose producer id and
        sequence were already written is not written again (idempotence).
        ``transactional``: in the producer's open transaction (``read_committed``
        readers see it once the transaction commits).

        ``topic_id`` is the incarnation the records were sent to: if the topic was
        deleted (and maybe created again) since, nothing is written.

        Raises:
            TopicNotFoundError: the topic (that incarnation) is gone.
            PartitionNotFoundError, RecordTooLargeError, InvalidRecordError.
            StorageError, LogFailedError: the write failed; nothing was committed, so
                retrying with the same sequence writes the batch once.
        """
        ...

    def append_batch(self, tp: TopicPartition, batch: bytes) -> AppendResult:
        """Append RecordBatch v2 bytes as they are (offsets assigned in place), after
        checking their CRC and header: the wire server's Produce, a mirror's copy."""
        ...

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
    ) -> dict[TopicPartition, PartitionFetch]:
        """Records of each partition from its offset in ``positions`` on: at most
        ``max_records`` and about ``max_bytes`` (at least one batch) per partition.
        Waits up to ``max_wait_ms`` until some partition has a record (the answer may
        omit partitions with none). ``read_committed``: only records below the last
        stable offset, none of aborted transactions.

        Raises:
            IllegalGenerationError, UnknownMemberIdError: ``member`` is not (any longer)
                a member of its group in that generation: it was fenced.
            TopicNotFoundError, PartitionNotFoundError: for the whole request.
        """
        ...

    def fetch_batches(
        self,
        tp: TopicPartition,
        offset: int,
        max_bytes: int,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> FetchResult:
        """The record batches of ``tp`` as stored, from the one holding ``offset`` on, as a
        broker answers a Fetch: about ``max_bytes`` of them, at least one whole batch, and
        maybe the start of one more cut at ``max_bytes`` (the reader drops it and fetches it
        again), with the partition's high watermark and log start offset
        (``read_committed``: up to the last stable offset, with it and the aborted
        transactions among the batches: the reader drops those). The first batch
        may begin before ``offset`` (the reader skips those records). At the high
        watermark the bytes are empty.

        Raises:
            TopicNotFoundError, PartitionNotFoundError.
            OffsetOutOfRangeError: ``offset`` is below the log start or past the end.
        """
        ...

    def add_append_listener(self, listener: Callable[[TopicPartition], None]) -> bool:
        """Call ``listener(tp)`` (from any thread, maybe more than once) after records
        are appended to ``tp``: through this backend, and, for partitions named by
        :meth:`watch_appends`, by other processes. Returns False if the backend cannot
        tell of appends at all (a server on it then polls)."""
        ...

    def watch_appends(self, tps: Iterable[TopicPartition]) -> None:
        """Ask the listeners to hear of appends other processes make to ``tps`` too."""
        ...

    def offset_range(
        self, tp: TopicPartition, isolation_level: str = READ_UNCOMMITTED
    ) -> tuple[int, int]:
        """``(log_start_offset, high_watermark)`` of ``tp`` (``read_committed``: the
        last stable offset instead of the high watermark)."""
        ...

    def offset_for_timestamp(
        self, tp: TopicPartition, timestamp: int
    ) -> OffsetAndTimestamp | None:
        """The first record of ``tp`` with a timestamp >= ``timestamp`` (None: none)."""
        ...

    # ------------------------------------------------------------------ offsets

    def committed_offsets(
        self, group: str, tps: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        """``group``'s committed offsets (of ``tps``, or all), as committed: an offset's
        ``topic_id`` says which incarnation of its topic it belongs to."""
        ...

    def commit_offsets(
        self,
        group: str,
        offsets: Mapping[TopicPartition, tuple[int, str]],
        *,
        member: GroupMember | None = None,
    ) -> None:
        """Commit ``(offset, metadata)`` per partition for ``group``, against the
        topics' current incarnations. With ``member``, atomically with the check that it
        is still a member of that generation.

        Raises:
            IllegalGenerationError, UnknownMemberIdError: ``member`` was fenced; nothing
                was committed.
        """
        ...

    def delete_offsets(self, group: str, tps: Iterable[TopicPartition]) -> None:
        """Forget ``group``'s committed offsets of ``tps``."""
        ...

    # ------------------------------------------------------------------ groups

    def join_group(
        self,
        group: str,
        member_id: str,
        *,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        group_instance_id: str | None = None,
        wait_ms: int = 0,
    ) -> JoinResult | None:
        """Join (or rejoin) ``group`` with ``protocols`` (``(name, metadata)`` in order
        of preference). Starts a rebalance unless the member is already in the current
        generation with the same protocols. Returns the new generation once every member
        has rejoined (or was removed: dead, or silent for its ``rebalance_timeout_ms``),
        else None after ``wait_ms`` (call again).

        Raises:
            FencedInstanceIdError, InvalidConfigError (no protocol in common).
        """
        ...

    def sync_group(
        self,
        group: str,
        member_id: str,
        generation: int,
        assignments: Mapping[str, bytes],
        *,
        wait_ms: int = 0,
    ) -> bytes | None:
        """This member's assignment in ``generation``. The leader passes every member's
        (``assignments``); the others pass none and get None until the leader has
        synced (after ``wait_ms``: call again).

        Raises:
            RebalanceInProgressError: a new rebalance started: rejoin.
            IllegalGenerationError, UnknownMemberIdError: fenced.
        """
        ...

    def heartbeat(self, group: str, member_id: str, generation: int) -> None:
        """Tell the coordinator this member is alive (and polling).

        Raises:
            RebalanceInProgressError: rejoin (give up partitions first).
            IllegalGenerationError, UnknownMemberIdError: fenced: the member lost its
                partitions; rejoin.
        """
        ...

    def group_changed(self, group: str, member_id: str, generation: int) -> bool:
        """Whether the backend can tell without a request that ``group`` moved on from
        ``generation`` (a rebalance started or completed, or the member was removed):
        the member then heartbeats at once instead of at its next heartbeat interval.
        LocalBackend tells with a ``stat``; a backend behind a network answers False
        (it learns of rebalances from heartbeats, as Kafka's clients do)."""
        ...

    def leave_group(self, group: str, member_id: str) -> None:
        """Leave ``group`` (its partitions move to the others at once)."""
        ...

    def describe_group(self, group: str) -> GroupInfo:
        """``group``'s state, generation and members with their metadata and assignment
        (state "Dead" and no members if there is no such group)."""
        ...

    def list_groups(self) -> list[str]:
        """Groups with members or committed offsets."""
        ...

    def delete_group(self, group: str) -> None:
        """Forget an empty group: its offsets and membership.

        Raises:
            GroupNotEmptyError: it has live members.
        """
        ...

    def close(self) -> None:
        """Release what the backend holds for its clients (idempotent)."""
        ...

    # ---- share groups (KIP-932: per-record acknowledgement; logstore.client.share)

    def share_join(
        self,
        group: str,
        *,
        lock_timeout_ms: int | None = None,
        max_delivery_attempts: int | None = None,
        dead_letter_topic: str | None = None,
        max_record_locks: int | None = None,
    ) -> dict[str, Any]:
        """Share group ``group``'s settings (the four keys above), after checking that
        those asked for (None: "the group's") agree; a new group takes them.

        Raises:
            ShareGroupConfigError (an InvalidConfigError): a setting differs.
        """
        ...

    def share_acquire(
        self, group: str, member_id: str, topics: Sequence[str], *, max_records: int,
        wait_ms: int = 0,
        acks: Sequence[tuple[TopicPartition, int, int, int, str | None, str | None]] = (),
    ) -> tuple[list[tuple[ConsumerRecord, int]], list[LogstoreError]]:
        """Apply ``acks`` (as :meth:`share_acknowledge`), then lock up to ``max_records``
        records of ``topics`` for ``member_id`` for the group's lock timeout (Kafka's
        ShareFetch). Returns ``(record, delivery_count)`` each (waiting up to ``wait_ms``
        for some) and the refused acknowledgements' errors."""
        ...

    def share_acknowledge(
        self,
        group: str,
        member_id: str,
        acks: Sequence[tuple[TopicPartition, int, int, int, str | None, str | None]],
    ) -> list[LogstoreError]:
        """Apply ``(tp, offset, delivery_count, type, error_class, error_message)`` acks
        (type: 1 accept, 2 release, 3 reject, Kafka's numbers). Returns the refused ones'
        errors (ShareAcknowledgeError: unknown offset, not held, lock expired); the
        others are applied."""
        ...

    def describe_share_group(self, group: str) -> dict[str, Any]:
        """Settings and per share-partition ``start_offset``, ``end_offset``, counts of
        ``acquired``/``available``/``acknowledged``/``archived`` records and the
        ``oldest_lock_deadline_ms`` (JSON-able; ``known`` False: no such group)."""
        ...

    def list_share_groups(self) -> list[str]:
        """The share groups."""
        ...


def resolve_backend(target: Store | Backend) -> Backend:
    """The backend behind ``target``: a store's :class:`~logstore.backend.LocalBackend`
    (one per store), or ``target`` itself."""
    if isinstance(target, Store):
        return backend_for(target)
    return target
