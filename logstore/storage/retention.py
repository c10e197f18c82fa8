"""Retention as a cleaner strategy: which of a log's oldest segments go.

A :class:`Cleaner` has one method, :meth:`Cleaner.clean`, that looks at a partition's
segments (oldest first) and says how many of the oldest to delete; the log deletes them
(moving its log start first, so a crash in between leaves segments the next open
deletes). :class:`DeleteCleaner` is ``cleanup.policy=delete``: by time
(``retention_ms``) and by size (``retention_bytes``). A compacting cleaner, which
rewrites segments instead, will be another implementation (jocko's
``Cleaner.Clean(segments)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from logstore.config import TopicConfig
from logstore.storage.segment import Segment


class Cleaner(Protocol):
    """A retention policy."""

    def clean(self, segments: Sequence[Segment], now_ms: int) -> int:
        """How many of the oldest ``segments`` to delete (never the active, last one
        unless it is empty: the log rolls first)."""
        ...


class DeleteCleaner:
    """Delete whole old segments past ``retention_ms`` or ``retention_bytes``, oldest
    first, stopping at the first one to keep.

    Args:
        config: read on every call (a reconfigured topic takes effect at once).
        mtime_ms: the modification time of a file, for segments without timestamps.
    """

    def __init__(self, config: Callable[[], TopicConfig], mtime_ms: Callable[[str], int]):
        self._config = config
        self._mtime_ms = mtime_ms

    def clean(self, segments: Sequence[Segment], now_ms: int) -> int:
        cfg = self._config()
        count = 0
        total = sum(s.size for s in segments)
        for seg in segments:
            if seg.size == 0:
                break
            by_time = cfg.retention_ms >= 0 and now_ms - self._largest_timestamp(seg) > (
                cfg.retention_ms
            )
            by_size = cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes
            if not (by_time or by_size):
                break
            total -= seg.size
            count += 1
        return count

    def _largest_timestamp(self, seg: Segment) -> int:
        largest = seg.largest_timestamp()
        if largest >= 0:
            return largest
        return self._mtime_ms(seg.log_path)
