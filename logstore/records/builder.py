"""The records of one batch as a producer gathers them: appends that are atomic without
the caller taking a lock.

A producer appends each record to its partition's open :class:`BatchBuilder` and a
writer (the linger thread, ``flush()``, or a sender whose batch filled up) closes the
builder and writes what it holds. ``append`` refuses (returns -1) once the builder is
closed or would grow past its limit, so a record is never added to a batch being
written: the caller then starts a new builder (Kafka's ``RecordAccumulator.tryAppend``
works the same way).

:class:`PyBatchBuilder` is the pure-Python twin: ``append`` and ``close`` take a lock.
The compiled codec (:mod:`logstore.records.accel`) has the same class in C, where each
call is atomic under the interpreter lock, so a record costs one C call and no lock
round trip. Both keep the same records and the same sizes, so a producer splits batches
identically on either. :data:`BatchBuilder` is the one that runs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from logstore.records.accel import codec
from logstore.types import Header


class PyBatchBuilder:
    """Records ``(timestamp, key, value, headers)`` gathered for one batch.

    Args:
        limit: the most ``size`` may reach; the first record is taken whatever its size
            (a record too large for any batch then fails alone, when written).
    """

    __slots__ = ("_lock", "closed", "limit", "records", "size")

    def __init__(self, limit: int) -> None:
        self.records: list[tuple[int, bytes | None, bytes | None, Sequence[Header]]] = []
        self.size = 0
        self.limit = limit
        self.closed = False
        self._lock = threading.Lock()

    def append(
        self,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header],
        size: int,
    ) -> int:
        """Add a record that counts ``size`` bytes; its index, or -1 if the builder is
        closed or ``size`` more would pass the limit (with a record in it already)."""
        with self._lock:
            records = self.records
            if self.closed or (records and self.size + size > self.limit):
                return -1
            records.append((timestamp, key, value, headers))
            self.size += size
            return len(records) - 1

    def close(self) -> int:
        """Take no more records; returns how many it holds."""
        with self._lock:
            self.closed = True
            return len(self.records)

    def __len__(self) -> int:
        return len(self.records)


BatchBuilder: type[Any] = PyBatchBuilder if codec is None else codec.BatchBuilder
"""The builder that runs: the compiled one where it is built, else :class:`PyBatchBuilder`."""
