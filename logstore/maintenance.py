"""Background maintenance of an open store: retention and compaction, on a thread.

What Kafka's broker does on its own (the log cleaner threads, the retention check every
``log.retention.check.interval.ms``), a logstore process does for the stores it opens:
:func:`logstore.open` starts one daemon :class:`Maintenance` thread per store opened with
write access (``maintenance=False`` turns it off; ``logstore maintain`` runs the same
loop in a process of its own). Every ``interval_ms`` (15 s: Kafka's cleaner backoff) it
aborts the transactions open past their timeout (Kafka's transaction coordinator does
so every 10 s), runs the cleaner on each partition of the compacted topics that is due
(:meth:`~logstore.storage.log.PartitionLog.compact`), and every ``retention_check_ms``
(5 minutes, Kafka's default) it applies retention to the topics whose policy deletes
and which set ``retention_ms`` or ``retention_bytes``. ``flush="interval"`` fsyncs have
their own thread (:mod:`logstore.storage.flusher`), as Kafka's log flusher.

**Several processes.** Every process with the store open for writing runs its own
thread; they need no coordination beyond what storage already has: the cleaner of a
partition runs in one process at a time (its ``.cleaner.lock`` flock, taken without
waiting: a process finding it held skips the partition until its next turn), and
retention deletes under the partition's writer lock, so a second process applying it
finds nothing left to delete. Which process cleans is whichever gets there first; a
process that exits mid-run leaves nothing half-done (an unfinished swap is finished by
the next one, see :mod:`logstore.storage.swap`).

Errors never stop the thread: a partition whose run fails is logged (WARNING) and tried
again at the next turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from logstore.errors import InvalidConfigError, LogstoreError, StoreClosedError
from logstore.storage.compaction import CompactionStats
from logstore.storage.log import PartitionLog
from logstore.transactions import transactions_for

if TYPE_CHECKING:
    from logstore.store import Store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_MS = 15_000
"""How often the thread looks for partitions to compact (Kafka's log.cleaner.backoff.ms)."""
DEFAULT_RETENTION_CHECK_MS = 300_000
"""How often it applies retention (Kafka's log.retention.check.interval.ms)."""


class MaintenanceReport(NamedTuple):
    """What one turn did."""

    compacted: dict[tuple[str, int], CompactionStats]
    segments_deleted: int
    failures: int
    transactions_ended: int = 0
    """Transactions aborted at their timeout, or finished after their process died."""


def _partitions(store: Store, *, compacted: bool) -> Iterator[tuple[str, int, PartitionLog]]:
    for topic in store.topics_snapshot():
        config = topic.config
        wanted = (
            config.compact if compacted
            else config.delete and (config.retention_ms >= 0 or config.retention_bytes >= 0)
        )
        if not wanted:
            continue
        for p in range(topic.num_partitions):
            yield topic.name, p, topic.partition(p)


def apply_retention(store: Store) -> int:
    """Apply every topic's retention now; returns how many segments were deleted."""
    store.check_writable("apply retention")
    return sum(plog.apply_retention() for _, _, plog in _partitions(store, compacted=False))


def compact_topic(
    store: Store, name: str, *, force: bool = True, roll: bool = False
) -> dict[int, CompactionStats | None]:
    """Run the cleaner on every partition of topic ``name`` now: ``force`` (the default)
    cleans whatever is cleanable, else only partitions that are due; ``roll`` first
    seals each active segment (which is never cleaned) so that everything written so
    far can be. Returns each partition's run (None: nothing to clean, or another process
    is cleaning it).

    Raises:
        InvalidConfigError: the topic is not compacted.
        TopicNotFoundError, ReadOnlyStoreError: as for writes.
    """
    store.check_writable(f"compact topic {name!r}")
    topic = store.topic(name)
    if not topic.config.compact:
        raise InvalidConfigError(
            f"topic {name!r} has cleanup_policy={topic.config.cleanup_policy!r}: only "
            f"compacted topics are compacted (alter it with cleanup_policy=compact or "
            f"compact,delete first)"
        )
    runs: dict[int, CompactionStats | None] = {}
    for p in range(topic.num_partitions):
        plog = topic.partition(p)
        if roll:
            plog.roll()
        runs[p] = plog.compact(force=force)
    return runs


def maintain_once(
    store: Store, *, retention: bool = True, stop: threading.Event | None = None
) -> MaintenanceReport:
    """One turn: compact the partitions that are due, then (with ``retention``) apply
    retention; ``stop`` set ends it between two partitions. Failures are logged and
    counted, not raised."""
    compacted: dict[tuple[str, int], CompactionStats] = {}
    failures = deleted = ended = 0
    try:
        ended = transactions_for(store).abort_expired()
    except StoreClosedError:
        raise
    except (LogstoreError, OSError) as err:
        failures += 1
        log.warning("aborting timed-out transactions failed (tried again later): %s", err)
    for name, p, plog in _partitions(store, compacted=True):
        if stop is not None and stop.is_set():
            break
        try:
            stats = plog.compact()
        except StoreClosedError:
            raise
        except (LogstoreError, OSError) as err:
            failures += 1
            log.warning("compaction of %s-%d failed (tried again later): %s", name, p, err)
            continue
        if stats is not None:
            compacted[(name, p)] = stats
            log.info("compacted %s-%d: %s", name, p, stats)
    if retention:
        for name, p, plog in _partitions(store, compacted=False):
            if stop is not None and stop.is_set():
                break
            try:
                deleted += plog.apply_retention()
            except StoreClosedError:
                raise
            except (LogstoreError, OSError) as err:
                failures += 1
                log.warning("retention of %s-%d failed (tried again later): %s", name, p, err)
    return MaintenanceReport(compacted, deleted, failures, ended)


class Maintenance:
    """The maintenance thread of one store (see the module docstring).

    Args:
        store: a store opened with write access.
        interval_ms: between compaction turns.
        retention_check_ms: between retention turns.
    """

    def __init__(
        self,
        store: Store,
        *,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        retention_check_ms: int = DEFAULT_RETENTION_CHECK_MS,
    ) -> None:
        self._store = store
        self._interval = interval_ms / 1000
        self._retention_every = retention_check_ms / 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"logstore-maintenance {store.path}", daemon=True
        )
        self.turns = 0

    def start(self) -> Maintenance:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread: a turn under way ends after the partition it is at; waits up
        to ``timeout`` seconds for that (a daemon thread: a long cleaner run left going
        fails at its swap once the store is closed, which leaves nothing half-done)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        next_retention = time.monotonic() + self._retention_every
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            due = now >= next_retention
            if due:
                next_retention = now + self._retention_every
            try:
                maintain_once(self._store, retention=due, stop=self._stop)
            except StoreClosedError:
                return
            except Exception:  # the thread must outlive any one failure
                log.exception("store maintenance turn failed (tried again later)")
            self.turns += 1


__all__ = [
    "DEFAULT_INTERVAL_MS",
    "DEFAULT_RETENTION_CHECK_MS",
    "Maintenance",
    "MaintenanceReport",
    "apply_retention",
    "compact_topic",
    "maintain_once",
]
