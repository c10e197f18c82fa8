"""Idempotent producers' state in one partition: Kafka's ``ProducerStateManager``.

What a partition remembers of each idempotent producer (a batch with producer id >= 0
and base sequence >= 0 in its RecordBatch header), and the checks an append of such a
batch passes ([K] ``S/ProducerAppendInfo.java`` ``checkProducerEpoch``/``checkSequence``,
``S/ProducerStateEntry.java``, the duplicate check of ``UnifiedLog``'s
``analyzeAndValidateProducerState``; kafka.md §5.1):

* per producer id: its current epoch, the metadata of its last 5 batches
  (``NUM_BATCHES_TO_RETAIN``: first and last sequence, first and last offset, largest
  timestamp) and its last timestamp (the largest timestamp of its last batch);
* a batch equal (same epoch, first and last sequence) to one of those 5 is a duplicate,
  a producer's retry: nothing is written, the original offsets are the answer (no error);
* an epoch below the producer's current one is refused
  (:class:`~logstore.errors.InvalidProducerEpochError`, Kafka's INVALID_PRODUCER_EPOCH);
* a new (higher) epoch must start at sequence 0; in the same epoch the base sequence
  must follow the last one (after ``2**31 - 1`` comes 0); a producer the partition holds
  nothing of (new, expired, or all its batches deleted) may start at any sequence, as in
  Kafka; anything else is :class:`~logstore.errors.OutOfOrderSequenceError`
  (OUT_OF_ORDER_SEQUENCE_NUMBER);
* **transactions** (KIP-98): a transactional batch (attribute bit 4) opens its producer's
  transaction in the partition if none is open (:attr:`ProducerState.ongoing` remembers
  its first offset); a control batch of the producer (a COMMIT or ABORT marker, bit 5)
  closes it, and, with a newer epoch (a transaction aborted because a new instance of
  the producer fenced the old one), sets the producer's epoch, so the old instance's
  batches are refused from then on. The first offset of the oldest open transaction is
  the partition's *first unstable offset*: the last stable offset (LSO) of
  ``read_committed`` readers. An open transaction's producer is never expired;
* memory is bounded: a producer whose last timestamp is ``expiration_ms`` old
  (Kafka's ``producer.id.expiration.ms``, one day) is forgotten, checked when the state
  is loaded and then every 10 minutes (``producer.id.expiration.check.interval.ms``);
  so is one none of whose batches lies at or above the log start (retention or
  ``delete_records`` removed them: Kafka's ``truncateHead``); and at most
  ``MAX_PRODUCERS`` are kept, the least recently used forgotten.

A :class:`ProducerState` covers the log's batches below :attr:`~ProducerState.end_offset`
(Kafka's ``mapEndOffset``). It is saved as a snapshot: a state file
(:mod:`~logstore.storage.statefile`, kind ``producer-snapshot``) named
``<offset>.snapshot`` after the offset it covers up to, holding JSON::

    {"offset": 1200, "producers": [[producer_id, epoch, last_timestamp,
        [[first_sequence, last_sequence, first_offset, last_offset, max_timestamp], ...]],
        ...], "ongoing": [[producer_id, first_offset], ...]}

(``ongoing``: the open transactions, absent when there is none, as in snapshots of
logstore before transactions; a producer whose only news is a marker has no batches).

(producers least recently used first, batches oldest first). Kafka's snapshot keeps one
batch per producer; this one keeps all five, so a retry is recognised after a restart
as before it. :func:`write_snapshot` and :func:`read_snapshot` are the only I/O here,
through the :class:`~logstore.storage.files.FileSystem` seam; when snapshots are written
and how the log replays the batches after one: :mod:`logstore.storage.producing`.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any, NamedTuple

from logstore.errors import (
    CorruptionError,
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
)
from logstore.storage.files import FileSystem, temp_path
from logstore.storage.listing import snapshot_path
from logstore.storage.statefile import encode_state, read_state
from logstore.types import BatchHeader

NUM_BATCHES_TO_RETAIN = 5
"""Batches remembered per producer (Kafka's ``ProducerStateEntry.NUM_BATCHES_TO_RETAIN``):
why an idempotent producer may have at most 5 requests in flight."""
PRODUCER_ID_EXPIRATION_MS = 86_400_000
"""Kafka's ``producer.id.expiration.ms`` default: a producer silent this long is forgotten."""
EXPIRATION_CHECK_INTERVAL_MS = 600_000
"""Kafka's ``producer.id.expiration.check.interval.ms`` default."""
MAX_PRODUCERS = 1024
"""Producers remembered per partition (the least recently used forgotten)."""
SNAPSHOT_KIND = "producer-snapshot"
INT32_MAX = 2**31 - 1
_INT16 = (-(2**15), 2**15 - 1)
_INT64_MAX = 2**63 - 1
TRANSACTIONAL = 0x10
"""The isTransactional bit of a batch's attributes."""


def increment_sequence(sequence: int, increment: int) -> int:
    """``sequence + increment`` in Kafka's sequence space, which wraps from
    ``2**31 - 1`` to 0 (``DefaultRecordBatch.incrementSequence``)."""
    if sequence > INT32_MAX - increment:
        return increment - (INT32_MAX - sequence) - 1
    return sequence + increment


def in_sequence(last: int, following: int) -> bool:
    """Whether sequence ``following`` comes right after ``last`` (Kafka's ``inSequence``)."""
    return following == last + 1 or (following == 0 and last == INT32_MAX)


class BatchMetadata(NamedTuple):
    """What a partition remembers of one batch of a producer."""

    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int
    max_timestamp: int


class ProducerEntry:
    """One producer id's state: its epoch, its last batches (oldest first, at most
    ``NUM_BATCHES_TO_RETAIN``, all of that epoch) and its last timestamp."""

    __slots__ = ("batches", "epoch", "last_timestamp")

    def __init__(
        self, epoch: int, batches: Iterable[BatchMetadata], last_timestamp: int
    ) -> None:
        self.epoch = epoch
        self.batches: deque[BatchMetadata] = deque(batches, NUM_BATCHES_TO_RETAIN)
        self.last_timestamp = last_timestamp

    def add(self, epoch: int, batch: BatchMetadata) -> None:
        """Remember ``batch`` (a new epoch forgets the older epoch's batches)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches.clear()
        self.batches.append(batch)  # the oldest of 5 goes
        self.last_timestamp = batch.max_timestamp

    def __repr__(self) -> str:
        return f"ProducerEntry(epoch={self.epoch}, batches={list(self.batches)})"


class ProducerState:
    """The idempotent producers of one partition, as of :attr:`end_offset`.

    Args:
        end_offset: the offset up to which the log's batches are applied.
        name: what the error messages call the partition (its directory).
        expiration_ms: how long a producer may stay silent before it is forgotten.
        max_producers: how many producers are kept (the least recently used forgotten).
    """

    def __init__(
        self,
        end_offset: int = 0,
        *,
        name: str = "",
        expiration_ms: int = PRODUCER_ID_EXPIRATION_MS,
        max_producers: int = MAX_PRODUCERS,
    ) -> None:
        self.producers: OrderedDict[int, ProducerEntry] = OrderedDict()
        self.end_offset = end_offset
        """Every batch below this offset is applied (Kafka's ``mapEndOffset``)."""
        self.log_start_offset = 0
        """The log start the state was last truncated to (:meth:`truncate_head`)."""
        self.snapshot_offset: int | None = None
        """The offset of the snapshot this state was loaded from or last saved as."""
        self.unsnapshotted = 0
        """Batches applied since then (the log writes a snapshot every so many)."""
        self.checked_expiry_ms: int | None = None
        self.ongoing: dict[int, int] = {}
        """Open transactions: producer id -> the first offset of its transaction here."""
        self.name = name
        self.expiration_ms = expiration_ms
        self.max_producers = max_producers

    # ------------------------------------------------------------------ checks

    def check(self, batch: BatchHeader) -> BatchMetadata | None:
        """Check an idempotent ``batch`` before it is appended: the batch it duplicates
        (its original offsets are the answer; nothing is written), or None (append it).

        Raises:
            InvalidProducerEpochError: its epoch is older than the producer's.
            OutOfOrderSequenceError: its sequence does not follow the producer's last
                one, or a new epoch does not start at 0.
        """
        pid, epoch, first = batch.producer_id, batch.producer_epoch, batch.base_sequence
        entry = self.producers.get(pid)
        if entry is None:
            return None  # nothing known of it: any sequence (Kafka's empty entry)
        if not entry.batches:  # only a marker is known of it: it set the epoch
            if epoch < entry.epoch:
                self._fenced(pid, epoch, entry.epoch)
            return None
        if epoch == entry.epoch and first == entry.batches[-1].last_sequence + 1:
            return None  # the usual case: the next batch (no retained one starts there)
        if epoch == entry.epoch:
            last = increment_sequence(first, batch.last_offset_delta)
            for meta in entry.batches:
                if meta.first_sequence == first and meta.last_sequence == last:
                    return meta
        where = f"partition {self.name}" if self.name else "append"
        if epoch < entry.epoch:
            self._fenced(pid, epoch, entry.epoch)
        if epoch != entry.epoch:
            if first != 0 and entry.epoch != -1:
                raise OutOfOrderSequenceError(
                    f"{where}: batch of producer {pid} refused: its new epoch {epoch} "
                    f"(after epoch {entry.epoch}) starts at sequence {first}, not 0 (a "
                    f"producer starts every new epoch's sequences at 0)",
                    pid,
                )
            return None
        last_sequence = entry.batches[-1].last_sequence if entry.batches else -1
        if entry.epoch != -1 and not in_sequence(last_sequence, first):
            expected = increment_sequence(last_sequence, 1)
            raise OutOfOrderSequenceError(
                f"{where}: batch of producer {pid} (epoch {epoch}) refused: its sequence "
                f"{first} does not follow {last_sequence}, the last sequence the partition "
                f"has from it (expected {expected}: batches were lost or reordered in "
                f"between; the producer must start over with a new producer id or epoch)",
                pid,
            )
        return None

    def _fenced(self, pid: int, epoch: int, current: int) -> None:
        where = f"partition {self.name}" if self.name else "append"
        raise InvalidProducerEpochError(
            f"{where}: batch of producer {pid} refused: its epoch {epoch} is older "
            f"than epoch {current}, which the partition has from that producer id "
            f"(a newer instance of the producer fenced this one; stop this one)",
            pid,
        )

    def check_marker(self, batch: BatchHeader) -> None:
        """Check a transaction marker (control batch) before it is appended.

        Raises:
            InvalidProducerEpochError: its epoch is older than the producer's.
        """
        entry = self.producers.get(batch.producer_id)
        if entry is not None and batch.producer_epoch < entry.epoch:
            self._fenced(batch.producer_id, batch.producer_epoch, entry.epoch)

    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest open transaction (None: none is open)."""
        return min(self.ongoing.values()) if self.ongoing else None

    # ------------------------------------------------------------------ updates

    def append(self, batch: BatchHeader) -> None:
        """Apply idempotent ``batch``, written at its ``base_offset`` (an append, or a
        batch of the log replayed: no checks)."""
        pid, first, delta = batch.producer_id, batch.base_sequence, batch.last_offset_delta
        last = first + delta if first <= INT32_MAX - delta else increment_sequence(first, delta)
        offset = batch.base_offset
        meta = BatchMetadata(first, last, offset, offset + delta, batch.max_timestamp)
        producers = self.producers
        entry = producers.get(pid)
        if entry is None:
            producers[pid] = ProducerEntry(batch.producer_epoch, [meta], batch.max_timestamp)
            if len(producers) > self.max_producers:
                self._evict_one()
        elif entry.epoch == batch.producer_epoch:  # ProducerEntry.add, inlined
            entry.batches.append(meta)
            entry.last_timestamp = batch.max_timestamp
            producers.move_to_end(pid)
        else:
            entry.add(batch.producer_epoch, meta)
            producers.move_to_end(pid)
        if batch.attributes & TRANSACTIONAL and pid not in self.ongoing:
            self.ongoing[pid] = offset
        self.end_offset = offset + delta + 1
        self.unsnapshotted += 1

    def end_transaction(self, batch: BatchHeader) -> None:
        """Apply transaction marker ``batch`` (a control batch), written at its
        ``base_offset``: its producer's transaction here is closed; a newer epoch is
        the producer's from now on."""
        pid, epoch = batch.producer_id, batch.producer_epoch
        self.ongoing.pop(pid, None)
        entry = self.producers.get(pid)
        if entry is None:
            self.producers[pid] = ProducerEntry(epoch, [], batch.max_timestamp)
            if len(self.producers) > self.max_producers:
                self._evict_one()
        else:
            if epoch > entry.epoch:
                entry.epoch = epoch
                entry.batches.clear()
            entry.last_timestamp = max(entry.last_timestamp, batch.max_timestamp)
            self.producers.move_to_end(pid)
        self.end_offset = batch.next_offset
        self.unsnapshotted += 1

    def _evict_one(self) -> None:
        """Forget the least recently used producer without an open transaction."""
        for pid in self.producers:
            if pid not in self.ongoing:
                del self.producers[pid]
                return

    def replay(self, batch: BatchHeader) -> None:
        """Apply any batch of the log, in order (only idempotent data batches change
        what is known of producers)."""
        if batch.producer_id >= 0 and batch.base_sequence >= 0 and not batch.is_control:
            self.append(batch)
        elif batch.is_control and batch.producer_id >= 0:
            self.end_transaction(batch)
        else:
            self.end_offset = batch.next_offset
            self.unsnapshotted += 1

    def advance(self, end_offset: int, batches: int) -> None:
        """``batches`` batches without idempotent producers were appended, up to
        ``end_offset``."""
        self.end_offset = end_offset
        self.unsnapshotted += batches

    def forget(self, end_offset: int) -> None:
        """Forget every producer; the state now covers the log up to ``end_offset`` (for
        a log whose batches cannot be replayed: every producer is then new, and may
        start at any sequence)."""
        self.producers.clear()
        self.ongoing.clear()
        self.end_offset = end_offset

    def truncate_head(self, log_start_offset: int) -> None:
        """Forget the batches below ``log_start_offset`` (deleted from the log), and the
        producers left with none."""
        self.log_start_offset = log_start_offset
        gone = []
        for pid, entry in self.producers.items():
            if not entry.batches or pid in self.ongoing:
                continue  # known by a marker only (expires), or in a transaction
            if entry.batches[-1].last_offset < log_start_offset:
                gone.append(pid)
            elif entry.batches[0].last_offset < log_start_offset:
                kept = [b for b in entry.batches if b.last_offset >= log_start_offset]
                entry.batches = deque(kept, NUM_BATCHES_TO_RETAIN)
        for pid in gone:
            del self.producers[pid]

    def expiry_due(self, now_ms: int) -> bool:
        checked = self.checked_expiry_ms
        return checked is None or now_ms - checked >= EXPIRATION_CHECK_INTERVAL_MS

    def remove_expired(self, now_ms: int) -> None:
        """Forget the producers whose last timestamp is ``expiration_ms`` old or older
        (Kafka's ``isProducerExpired``)."""
        self.checked_expiry_ms = now_ms
        limit = self.expiration_ms
        gone = [
            p for p, e in self.producers.items()
            if now_ms - e.last_timestamp >= limit and p not in self.ongoing
        ]
        for pid in gone:
            del self.producers[pid]

    # ------------------------------------------------------------------ snapshots

    def encode(self) -> bytes:
        """The snapshot payload (JSON) of this state at :attr:`end_offset`."""
        producers = [
            [pid, e.epoch, e.last_timestamp, [list(b) for b in e.batches]]
            for pid, e in self.producers.items()
        ]
        payload: dict[str, Any] = {"offset": self.end_offset, "producers": producers}
        if self.ongoing:
            payload["ongoing"] = [[pid, first] for pid, first in self.ongoing.items()]
        return json.dumps(payload, separators=(",", ":")).encode("ascii")

    @classmethod
    def decode(
        cls,
        payload: bytes,
        offset: int,
        path: str,
        *,
        name: str = "",
        expiration_ms: int = PRODUCER_ID_EXPIRATION_MS,
        max_producers: int = MAX_PRODUCERS,
    ) -> ProducerState:
        """The state a snapshot payload holds (the snapshot of ``offset``, file ``path``).

        Raises:
            CorruptionError: it is not a well-formed snapshot of ``offset`` (naming ``path``).
        """
        state = cls(offset, name=name, expiration_ms=expiration_ms, max_producers=max_producers)
        try:
            data = json.loads(payload)
            if not isinstance(data, dict) or not (
                {"offset", "producers"} <= set(data) <= {"offset", "producers", "ongoing"}
            ):
                raise ValueError("not an object with offset and producers")
            if data["offset"] != offset or type(data["offset"]) is not int:
                raise ValueError(f"it holds offset {data['offset']!r}, its name {offset}")
            for item in _list(data["producers"], "producers"):
                pid, epoch, last_timestamp, batches = _list(item, "producer", 4)
                _int(pid, "producer id", 0, _INT64_MAX)
                _int(epoch, "epoch", *_INT16)
                _int(last_timestamp, "timestamp", -_INT64_MAX, _INT64_MAX)
                metas = [_batch(b, offset) for b in _list(batches, "batches")]
                if not 0 <= len(metas) <= NUM_BATCHES_TO_RETAIN or pid in state.producers:
                    raise ValueError(f"producer {pid} has {len(metas)} batches or repeats")
                state.producers[pid] = ProducerEntry(epoch, metas, last_timestamp)
            for item in _list(data.get("ongoing", []), "ongoing"):
                pid, first = _list(item, "open transaction", 2)
                _int(first, "offset", 0, offset - 1)
                if pid not in state.producers or pid in state.ongoing:
                    raise ValueError(f"open transaction of unknown producer {pid!r}")
                state.ongoing[pid] = first
        except (ValueError, TypeError) as err:  # json.JSONDecodeError is a ValueError
            raise CorruptionError(
                f"producer snapshot {path} is damaged: {err} (it is ignored: the producer "
                f"state is rebuilt from an older snapshot and the log)",
                path,
                0,
            ) from err
        state.snapshot_offset = offset
        return state

    def __repr__(self) -> str:
        return f"ProducerState(end_offset={self.end_offset}, producers={len(self.producers)})"


def _list(value: Any, what: str, length: int | None = None) -> list[Any]:
    if type(value) is not list or (length is not None and len(value) != length):
        raise ValueError(f"{what} is not a list" + (f" of {length}" if length else ""))
    return value


def _int(value: Any, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what} {value!r} is not an integer in [{low}, {high}]")
    return value


def _batch(value: Any, offset: int) -> BatchMetadata:
    first_seq, last_seq, first_offset, last_offset, max_timestamp = _list(value, "batch", 5)
    _int(first_seq, "sequence", 0, INT32_MAX)
    _int(last_seq, "sequence", 0, INT32_MAX)
    _int(first_offset, "offset", 0, offset - 1)
    _int(last_offset, "offset", first_offset, offset - 1)
    _int(max_timestamp, "timestamp", -_INT64_MAX, _INT64_MAX)
    return BatchMetadata(first_seq, last_seq, first_offset, last_offset, max_timestamp)


def write_snapshot(fs: FileSystem, directory: str, state: ProducerState, *, durable: bool) -> str:
    """Replace the snapshot at ``state.end_offset`` with ``state``; return its path.

    Written to ``~<name>.tmp`` and renamed, so a crash leaves the old file or the new
    one; with ``durable`` the file is fsynced before the rename (the caller fsyncs the
    directory). A snapshot that is not durable may be lost or torn by a power cut: its
    CRC then fails and the state is rebuilt from an older one (snapshots are derived
    data, like indexes).
    """
    path = snapshot_path(directory, state.end_offset)
    tmp = temp_path(path)
    with fs.open(tmp, create=True) as handle:
        handle.truncate(0)
        handle.append(encode_state(SNAPSHOT_KIND, state.encode()))
        if durable:
            handle.fsync()
    fs.rename(tmp, path)
    return path


def read_snapshot(
    fs: FileSystem,
    directory: str,
    offset: int,
    *,
    expiration_ms: int = PRODUCER_ID_EXPIRATION_MS,
    max_producers: int = MAX_PRODUCERS,
) -> ProducerState:
    """The state in the snapshot at ``offset`` of partition ``directory``.

    Raises:
        FileNotFoundError: there is no such snapshot.
        CorruptionError: it is damaged (naming it).
        StorageError: it cannot be read.
    """
    path = snapshot_path(directory, offset)
    payload = read_state(fs, path, SNAPSHOT_KIND)
    return ProducerState.decode(
        payload, offset, path, name=directory, expiration_ms=expiration_ms,
        max_producers=max_producers,
    )
