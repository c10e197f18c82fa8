"""The idempotent consumer: do a side effect outside the log once per message id, however
often the message is delivered.

A consumer group delivers at least once: a crash between handling a record and
committing its offset hands the record out again. :class:`ProcessedKeys` remembers which
message ids were processed, so the repeat is recognised::

    keys = ProcessedKeys("data/billing.keys")
    for record in consumer:
        with keys.once(record_id(record)) as first:
            if first:
                charge_card(record)          # the side effect
        consumer.commit()

**Where the marks live: SQLite** (a file the caller names, e.g. beside the store's data
directory), rather than a compacted topic keyed by id. Three reasons: (1) with ``conn``,
checking and marking is one ``INSERT OR IGNORE`` under SQLite's write lock, so two
processes racing on one id cannot both see it as new (without ``conn`` the check comes
before the side effect and the mark after it: two processes handling the same id at the
same moment, say a member still working on a partition the group just gave to another,
may both see it as new), where a topic would need every process to replay the whole
topic into memory and still race between check and append; (2) a side effect that
is itself a SQLite write can share the mark's transaction (:meth:`ProcessedKeys.once`
with ``conn``), which closes the crash window completely; (3) the bound (expiry and
size) is one indexed ``DELETE``, with no cleaner to wait for.

**The crash window, honestly.** Without a shared transaction the order is: side effect,
then mark (committed at once, fsynced by SQLite), then the consumer's commit. A crash
*after* the mark repeats nothing: the replayed record finds its mark. A crash *between
the side effect and the mark* repeats the side effect on replay: at-least-once remains for
that instant, unless the side effect is idempotent itself or commits together with the
mark. ``once(id, conn)`` does the latter for side effects in SQLite: the mark is written
in the caller's transaction on ``conn`` and committed with it, so either both happened or
neither did (exactly once). If the body raises, nothing is marked (and ``conn`` is rolled
back), so the next delivery tries again.

**The bound.** Marks older than ``ttl_ms`` (default 7 days) and the oldest beyond
``max_keys`` (default 1,000,000) are deleted (every ``prune_every`` marks, and on open). A
message replayed after its mark expired is processed again: choose ``ttl_ms`` longer than
the longest replay you expect (a ``reset_offsets`` to a week ago needs more than a week).

**Outside the I/O seam.** The marks file is SQLite's: SQLite reads and writes it
itself, not through :mod:`logstore.storage.files`, so the fault-injection tests of the
store do not cover it (SQLite's own are the reference). It lives where the caller names
it, not in a store's directory.

Message ids: :func:`record_id` takes a header the producer set (a business id, the same
on a re-send), else ``topic/partition/offset`` (the same on a redelivery, but not for a
record produced twice, nor after the topic is deleted and created again).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Self, TypeVar

from logstore.errors import InvalidConfigError, LogstoreError, StoreClosedError
from logstore.types import ConsumerRecord

__all__ = ["MESSAGE_ID", "ProcessedKeys", "ProcessedKeysError", "record_id"]

MESSAGE_ID = "logstore.message.id"
"""The header :func:`record_id` reads by default: a producer's id for the message."""
DEFAULT_TTL_MS = 7 * 24 * 3600 * 1000
DEFAULT_MAX_KEYS = 1_000_000
DEFAULT_PRUNE_EVERY = 1000
TABLE = "logstore_processed_keys"

T = TypeVar("T")


class ProcessedKeysError(LogstoreError):
    """The processed-key database could not be used (``.filename``)."""

    def __init__(self, message: str, filename: str) -> None:
        super().__init__(message)
        self.filename = filename


def record_id(record: ConsumerRecord, header: str | None = MESSAGE_ID) -> str:
    """The message id of ``record``: header ``header``'s value if present (UTF-8), else
    ``"<topic>/<partition>/<offset>"``."""
    if header is not None:
        for key, value in record.headers:
            if key == header and value is not None:
                return value.decode("utf-8", "replace")
    return f"{record.topic}/{record.partition}/{record.offset}"


class ProcessedKeys:
    """Marks of processed message ids in a SQLite database, shared by any number of
    processes. Not thread-safe: one per thread (each has its own connection). Use as a
    context manager.

    Args:
        filename: the SQLite file (made if missing). The table is ``logstore_processed_keys``;
            the caller's own tables may live in the same file (see :meth:`once`).
        ttl_ms: marks older than this are forgotten (None: never).
        max_keys: at most this many marks are kept, the newest (None: no bound).
        prune_every: delete expired and surplus marks after this many new marks.
        clock: milliseconds since the epoch (a seam for tests).
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        ttl_ms: int | None = DEFAULT_TTL_MS,
        max_keys: int | None = DEFAULT_MAX_KEYS,
        prune_every: int = DEFAULT_PRUNE_EVERY,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if (ttl_ms is not None and ttl_ms <= 0) or (max_keys is not None and max_keys <= 0):
            raise InvalidConfigError(
                f"ttl_ms={ttl_ms} and max_keys={max_keys} must be positive (or None: no bound)"
            )
        if prune_every < 1:
            raise InvalidConfigError(f"prune_every={prune_every} must be >= 1")
        self.filename = os.fspath(filename)
        self.ttl_ms = ttl_ms
        self.max_keys = max_keys
        self.prune_every = prune_every
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._since_prune = 0
        self._closed = False
        self._conn = self.connect()
        self._ensure_table(self._conn)
        self.prune()

    # ------------------------------------------------------------------ connections

    def connect(self) -> sqlite3.Connection:
        """A new connection to the database (for the caller's own tables: pass it to
        :meth:`once` so the side effect and the mark commit together). Autocommit off
        (Python's default): the caller commits."""
        try:
            conn = sqlite3.connect(self.filename, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a mark is durable once committed
        except sqlite3.Error as err:
            raise ProcessedKeysError(
                f"cannot open processed-key database {self.filename!r}: {err} (check the "
                f"path and its permissions)",
                self.filename,
            ) from err
        return conn

    @staticmethod
    def _ensure_table(conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} "
            "(id TEXT PRIMARY KEY, marked_ms INTEGER NOT NULL) WITHOUT ROWID"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_marked ON {TABLE} (marked_ms)")
        conn.commit()

    def _check_same_database(self, conn: sqlite3.Connection) -> None:
        files = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
        # (names compared as written, made absolute: no file system call here)
        if not files or os.path.abspath(files[0]) != os.path.abspath(self.filename):
            raise InvalidConfigError(
                f"once(id, conn): conn is on {files[0] if files else '?'!r}, not on "
                f"{self.filename!r}: open it with keys.connect() so the side effect and "
                f"the mark share one transaction"
            )

    # ------------------------------------------------------------------ marks

    @contextlib.contextmanager
    def once(self, message_id: str, conn: sqlite3.Connection | None = None) -> Iterator[bool]:
        """``with keys.once(id) as first: if first: side_effect()``.

        ``first`` is False if ``id`` was marked processed before. Without ``conn``, the id is
        marked (and committed) when the block ends without an exception; a crash inside
        the block marks nothing. With ``conn`` (from :meth:`connect`), the mark is written
        at once in ``conn``'s transaction, which commits when the block ends (so the side
        effect's writes on ``conn`` and the mark commit together) or rolls back if it
        raises; a second process waits for that transaction (SQLite's write lock covers
        the whole database, whatever the id: keep such blocks short). Only the ``conn``
        form keeps two processes handling the same id at once from both seeing it as new.
        """
        self._check_open()
        if conn is None:
            first = not self.seen(message_id)
            yield first
            if first:
                self.mark(message_id)
            return
        self._check_same_database(conn)
        try:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO {TABLE} (id, marked_ms) VALUES (?, ?)",
                (message_id, self._clock()),
            )
            yield cursor.rowcount == 1
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        self._count_new(cursor.rowcount)

    def process_once(
        self, message_id: str, fn: Callable[[], T], conn: sqlite3.Connection | None = None
    ) -> tuple[bool, T | None]:
        """Call ``fn()`` unless ``message_id`` was processed; returns ``(called, result)``."""
        with self.once(message_id, conn) as first:
            return (True, fn()) if first else (False, None)

    def seen(self, message_id: str) -> bool:
        """Whether ``message_id`` is marked processed."""
        self._check_open()
        row = self._conn.execute(f"SELECT 1 FROM {TABLE} WHERE id = ?", (message_id,))
        return row.fetchone() is not None

    def mark(self, message_id: str) -> bool:
        """Mark ``message_id`` processed (committed durably); False if it already was."""
        self._check_open()
        with self._conn:
            cursor = self._conn.execute(
                f"INSERT OR IGNORE INTO {TABLE} (id, marked_ms) VALUES (?, ?)",
                (message_id, self._clock()),
            )
        self._count_new(cursor.rowcount)
        return cursor.rowcount == 1

    def __len__(self) -> int:
        self._check_open()
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])

    def _count_new(self, added: int) -> None:
        self._since_prune += max(0, added)
        if self._since_prune >= self.prune_every:
            self.prune()

    def prune(self) -> int:
        """Delete expired marks and the oldest beyond ``max_keys``; returns how many."""
        self._check_open()
        self._since_prune = 0
        deleted = 0
        with self._conn:
            if self.ttl_ms is not None:
                deleted += self._conn.execute(
                    f"DELETE FROM {TABLE} WHERE marked_ms < ?", (self._clock() - self.ttl_ms,)
                ).rowcount
            if self.max_keys is not None:
                deleted += self._conn.execute(
                    f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} "
                    "ORDER BY marked_ms DESC, id DESC LIMIT -1 OFFSET ?)",
                    (self.max_keys,),
                ).rowcount
        return deleted

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"ProcessedKeys({self.filename!r}) is closed")

    def close(self) -> None:
        """Close the database connection. Idempotent."""
        if not self._closed:
            self._closed = True
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
