"""The share-group methods of :class:`~logstore.backend.local.LocalBackend` (the
``Backend`` seam's "share groups" block), as a mixin: each delegates to the store's
:class:`~logstore.backend.share.ShareCoordinator`, made on first use and closed with the
store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from logstore.backend.share import Ack, ShareCoordinator
from logstore.errors import LogstoreError
from logstore.store import Store
from logstore.types import ConsumerRecord, SystemClock, TopicPartition


class ShareGroupMethods:
    """Mixed into LocalBackend, whose ``_store``, ``_watch_lock`` and ``_appended`` it
    uses."""

    _store: Store
    _watch_lock: threading.Lock
    _appended: Callable[[TopicPartition], None]
    _share_coordinator: ShareCoordinator | None = None

    def _share(self) -> ShareCoordinator:
        found = self._share_coordinator
        if found is None:
            with self._watch_lock:
                found = self._share_coordinator
                if found is None:
                    # lock deadlines on the wall clock every process shares (as groups)
                    found = ShareCoordinator(self._store, SystemClock(), on_append=self._appended)
                    self._store.on_close(found.close)
                    self._share_coordinator = found
        return found

    def share_join(
        self,
        group: str,
        *,
        lock_timeout_ms: int | None = None,
        max_delivery_attempts: int | None = None,
        dead_letter_topic: str | None = None,
        max_record_locks: int | None = None,
    ) -> dict[str, Any]:
        return self._share().join(
            group, lock_timeout_ms=lock_timeout_ms,
            max_delivery_attempts=max_delivery_attempts,
            dead_letter_topic=dead_letter_topic, max_record_locks=max_record_locks,
        ).as_dict()

    def share_acquire(
        self, group: str, member_id: str, topics: Sequence[str], *, max_records: int,
        wait_ms: int = 0, acks: Sequence[Ack] = (),
    ) -> tuple[list[tuple[ConsumerRecord, int]], list[LogstoreError]]:
        records, errors = self._share().acquire(
            group, member_id, topics, max_records=max_records, wait_ms=wait_ms, acks=acks
        )
        return records, list(errors)

    def share_acknowledge(
        self,
        group: str,
        member_id: str,
        acks: Sequence[Ack],
    ) -> list[LogstoreError]:
        return list(self._share().acknowledge(group, member_id, acks))

    def describe_share_group(self, group: str) -> dict[str, Any]:
        return self._share().describe(group)

    def list_share_groups(self) -> list[str]:
        return self._share().list_groups()
