"""How a partition log follows its flush policy after an append.

``flush="always"``: the append fsyncs before it returns. ``flush="interval"``: it asks
the process's flusher (:mod:`logstore.storage.flusher`) to sync once ``flush_ms`` has
passed since the last sync, and returns after its ``write``: an fsync taking
milliseconds never shows in a producer's latency, and records written meanwhile share
the next sync (Kafka's ``flush.ms`` is applied by a background task the same way).
``flush="never"``: only rolls and a clean close sync.
"""

from __future__ import annotations

import logging
import time

from logstore.errors import StorageError
from logstore.storage.flusher import FLUSHER
from logstore.storage.logbase import LogState

_MIN_FLUSH_RECHECK_MS = 10
log = logging.getLogger(__name__)


class IntervalFlushing(LogState):
    """The flush policy part of a partition log."""

    _flush_due: float | None  # when the flusher was asked to call (monotonic s)

    def _flush_per_policy(self, now: int) -> None:
        policy = self.config.flush
        if policy == "always":
            self.active_segment.log_file.fsync()
            self._last_flush_ms = now
            # Every offset appended so far is now synced (older segments were synced when
            # they rolled). The head written after this append carries the new recovery
            # point, so recovery after a crash never cuts what was acknowledged.
            self.recovery_point = self.log_end_offset
        elif policy == "interval":
            # off the append path: the flusher thread syncs once flush_ms has passed
            wait_ms = max(0, self._last_flush_ms + self.config.flush_ms - now)
            self._request_flush(wait_ms)

    def _request_flush(self, wait_ms: int) -> None:
        """Have the flusher call :meth:`_background_flush` in ``wait_ms`` (unless it
        is asked to sooner already)."""
        due = time.monotonic() + wait_ms / 1000
        if self._flush_due is None or due < self._flush_due:
            self._flush_due = due
            FLUSHER.request(self, wait_ms / 1000)

    def _background_flush(self) -> None:
        """The flusher's call (``flush="interval"``): fsync the active segment if
        ``flush_ms`` has passed since the last sync by this log's clock (else ask again
        later), without holding the log's lock during the fsync, so appends go on. The
        recovery point moves to the end the sync covers (older segments were synced when
        they rolled). A failed fsync fails the log, as a failed append does: pages the
        kernel could not write may be gone, so nothing more is acknowledged until the
        store is reopened (and recovery looks at what is really on disk)."""
        with self._lock:
            self._flush_due = None
            if self._closed or self._failed is not None or self._read_only:
                return
            if self.config.flush != "interval" or self.recovery_point >= self.log_end_offset:
                return
            now = self._now()
            wait_ms = self._last_flush_ms + self.config.flush_ms - now
            if wait_ms > 0:  # not due by this log's clock (a clock set by hand, a new flush_ms)
                self._request_flush(max(wait_ms, _MIN_FLUSH_RECHECK_MS))
                return
            self._last_flush_ms = now
            end = self.log_end_offset
            handle = self.active_segment.log_file
        try:
            handle.fsync()
        except StorageError as err:
            with self._lock:  # a segment closed (or rolled, and synced) meanwhile: no harm
                if not self._closed and handle is self.active_segment.log_file:
                    self._failed = f"a background fsync failed: {err}"
                    log.error("partition %s failed: %s", self.directory, self._failed)
            return
        with self._lock:
            self.recovery_point = max(self.recovery_point, end)
