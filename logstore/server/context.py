"""What every request handler shares: the backend, the settings, the thread pool the
backend's blocking calls run in, and the append notices that wake waiting fetches.

Threads: the event loop never calls the backend itself (its calls read and write files,
take locks, fsync); :meth:`ServerContext.run` hands each call to a small thread pool.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from logstore.client.backend import Backend
from logstore.server.config import ServerConfig
from logstore.server.metrics import ServerMetrics
from logstore.server.users import UserStore
from logstore.types import TopicPartition

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
log = logging.getLogger(__name__)

MAX_MEMBERS = 100_000
"""Group members whose client id and host the server remembers (the oldest forgotten
first: a member that timed out never says it left)."""


class BoundedDict(collections.OrderedDict[K, V]):
    """A dict that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)

WORKER_THREADS = 8
"""Backend calls in flight at once (file I/O and fsync release the GIL)."""


class AppendNotices:
    """Wakes fetches waiting for records: the backend reports an append to a partition
    (from any thread); waiters registered on that partition are woken in the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._counts: dict[TopicPartition, int] = {}
        self._waiters: dict[TopicPartition, set[asyncio.Future[None]]] = {}

    def report(self, tp: TopicPartition) -> None:
        """Called by the backend, from any thread, after an append to ``tp``."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._appended, tp)

    def _appended(self, tp: TopicPartition) -> None:
        self._counts[tp] = self._counts.get(tp, 0) + 1
        for waiter in self._waiters.pop(tp, ()):
            if not waiter.done():
                waiter.set_result(None)

    def snapshot(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The append counts of ``tps`` now: :meth:`wait` returns at once if any moved
        since (no append between a read and the wait is missed)."""
        return {tp: self._counts.get(tp, 0) for tp in tps}

    async def wait(self, seen: dict[TopicPartition, int], timeout_s: float) -> bool:
        """Wait until a partition of ``seen`` has an append after the snapshot, or
        ``timeout_s`` passed. Returns whether an append happened."""
        if any(self._counts.get(tp, 0) != n for tp, n in seen.items()):
            return True
        waiter: asyncio.Future[None] = self._loop.create_future()
        for tp in seen:
            self._waiters.setdefault(tp, set()).add(waiter)
        try:
            await asyncio.wait_for(waiter, max(0.0, timeout_s))
            return True
        except TimeoutError:
            return False
        finally:
            for tp in seen:
                waiting = self._waiters.get(tp)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[tp]


class ServerContext:
    """The state shared by every connection of one server."""

    def __init__(
        self,
        backend: Backend,
        config: ServerConfig,
        loop: asyncio.AbstractEventLoop,
        bound_port: int,
        cluster_id: str,
        users: UserStore | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.loop = loop
        self.host, self.port = config.advertised(bound_port)
        self.node_id = config.node_id
        self.cluster_id = cluster_id
        self.users = users
        self.metrics = metrics
        """Where requests, records and connections are counted (None: not at all)."""
        self.sasl = bool(config.sasl_mechanisms)
        """Whether clients must authenticate (SASL) before their requests are served."""
        self.pool = concurrent.futures.ThreadPoolExecutor(
            WORKER_THREADS, thread_name_prefix="logstore-serve"
        )
        self.appends = AppendNotices(loop)
        self.notifies = backend.add_append_listener(self.appends.report)
        self.members: BoundedDict[tuple[str, str], tuple[str, str]] = BoundedDict(MAX_MEMBERS)
        """(group, member id) -> (client id, client host) of members that joined here:
        DescribeGroups reports them, as Kafka does."""

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the worker pool."""
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        return await self.loop.run_in_executor(self.pool, call)

    def watch(self, tps: Iterable[TopicPartition]) -> None:
        """Hear of appends other processes make to ``tps`` (the backend watches each
        partition once, and again after it was deleted and created again)."""
        self.pool.submit(self._watch, list(tps))

    def _watch(self, tps: list[TopicPartition]) -> None:
        try:
            self.backend.watch_appends(tps)
        except Exception as err:  # a topic deleted meanwhile: the fetch answers that
            log.debug("not watching %s: %s", tps, err)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
