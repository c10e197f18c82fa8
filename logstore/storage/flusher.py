"""The background flusher: fsyncs of ``flush="interval"`` partitions, off the append path.

With ``flush="interval"`` an append does not wait for an fsync: it asks the flusher (one
daemon thread per process, started on first use, as Kafka's log flusher is a scheduled
task of the broker) to sync the partition once ``flush_ms`` has passed since its last
sync. The append then returns after its ``write``, so an fsync taking milliseconds (a
busy disk) never shows up in a producer's latency, and records written in the meantime
share the next fsync.

The partition decides whether a sync is due by its own clock
(:meth:`PartitionLog._background_flush`); the flusher only keeps the times at which to
ask it, on the monotonic clock.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Protocol

log = logging.getLogger(__name__)


class Flushable(Protocol):
    def _background_flush(self) -> None: ...


class Flusher:
    """Calls ``_background_flush()`` of the partitions that asked, when they asked for."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[tuple[float, int, Flushable]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def request(self, target: Flushable, delay_s: float) -> None:
        """Call ``target._background_flush()`` in ``delay_s`` seconds (from the flusher's
        thread)."""
        due = time.monotonic() + max(0.0, delay_s)
        with self._cond:
            heapq.heappush(self._queue, (due, next(self._seq), target))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="logstore-flusher", daemon=True
                )
                self._thread.start()
            elif self._queue[0][2] is target:  # now the earliest: wake the thread
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._queue and self._queue[0][0] <= now:
                        _, _, target = heapq.heappop(self._queue)
                        break
                    wait = self._queue[0][0] - now if self._queue else None
                    self._cond.wait(wait)
            try:
                target._background_flush()
            except Exception:  # the partition records a failed sync itself
                log.exception("background flush of %r failed", target)


FLUSHER = Flusher()
"""The process's flusher."""
