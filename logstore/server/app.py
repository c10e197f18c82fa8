"""The server: listen, accept connections (up to a limit), stop gracefully.

:class:`Server` serves any :class:`~logstore.client.backend.Backend`; :func:`serve` runs
one on a data directory (the ``logstore serve`` command): it opens the store, serves it
through a :class:`~logstore.backend.local.LocalBackend` whose group members live by
heartbeat deadline, and on SIGTERM or SIGINT stops accepting, lets the requests being
handled finish, and closes the store cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import ssl
import uuid
from collections.abc import Coroutine
from typing import Any

from logstore.backend.local import LocalBackend
from logstore.client.backend import Backend
from logstore.errors import InvalidConfigError
from logstore.server.config import ServerConfig
from logstore.server.connection import ByteBudget, Connection
from logstore.server.context import ServerContext
from logstore.server.instrument import lag_samples
from logstore.server.metrics import ServerMetrics, start_metrics_server
from logstore.server.users import load_users
from logstore.store import Store

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
"""How long a stop waits for requests being handled to finish."""


class Server:
    """A Kafka wire-protocol server over ``backend``. Start it in a running loop.

    Args:
        backend: what serves the records, offsets and groups.
        config: where to listen and the limits.
        cluster_id: the cluster id Metadata reports (stable for one store).
    """

    def __init__(self, backend: Backend, config: ServerConfig, *, cluster_id: str) -> None:
        self.backend = backend
        self.config = config
        self.cluster_id = cluster_id
        self._server: asyncio.Server | None = None
        self._ctx: ServerContext | None = None
        self._connections: set[Connection] = set()
        self._budget: ByteBudget | None = None
        self._stopped = asyncio.Event()
        self._metrics_server: asyncio.Server | None = None
        self.metrics: ServerMetrics | None = None

    @property
    def port(self) -> int:
        """The port bound (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start accepting.

        Raises:
            UsersFileError: the users file (SASL) is missing or damaged.
            OSError: the address cannot be bound, or the TLS files cannot be read.
        """
        loop = asyncio.get_running_loop()
        cfg = self.config
        users = load_users(cfg.users_file) if cfg.sasl_mechanisms and cfg.users_file else None
        self._budget = ByteBudget(cfg.max_queued_bytes)
        self._server = await loop.create_server(
            self._new_connection, cfg.host, cfg.port, reuse_address=True,
            ssl=tls_context(cfg),
        )
        metrics = None
        if cfg.metrics_port is not None:
            backend = self.backend
            metrics = ServerMetrics(lambda: lag_samples(backend))
            self._metrics_server = await start_metrics_server(
                metrics, cfg.metrics_host, cfg.metrics_port
            )
            log.info("serving Prometheus metrics on http://%s:%d/metrics", cfg.metrics_host,
                     self._metrics_server.sockets[0].getsockname()[1])
        self.metrics = metrics
        self._ctx = ServerContext(
            self.backend, cfg, loop, self.port, self.cluster_id, users, metrics
        )
        log.info(
            "serving Kafka clients on %s:%d (%s%s)", cfg.host, self.port,
            "SASL_SSL" if cfg.sasl_mechanisms and cfg.tls_certfile else
            "SSL" if cfg.tls_certfile else
            "SASL_PLAINTEXT" if cfg.sasl_mechanisms else "PLAINTEXT",
            f": {', '.join(cfg.sasl_mechanisms)}" if cfg.sasl_mechanisms else "",
        )

    def _new_connection(self) -> asyncio.BaseProtocol:
        assert self._ctx is not None and self._budget is not None
        if len(self._connections) >= self.config.max_connections:
            return _Refused(len(self._connections), self.metrics)
        return Connection(self._ctx, self._budget, self._connections)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop accepting, let requests being handled finish (up to ``grace_s``), then
        close every connection."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            conn.closing = True
            if not conn.busy:
                conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while any(c.busy for c in self._connections):
            if loop.time() >= deadline:
                log.warning("stopping with %d requests unfinished",
                            sum(c.busy for c in self._connections))
                break
            await asyncio.sleep(0.01)
        for conn in list(self._connections):
            conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        if self._metrics_server is not None:
            self._metrics_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._metrics_server.wait_closed(), 2)
        if self._ctx is not None:
            self._ctx.close()
        self._server = None
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


class _Refused(asyncio.Protocol):
    """A connection beyond ``max_connections``: closed at once, with a log line."""

    def __init__(self, count: int, metrics: ServerMetrics | None) -> None:
        self.count = count
        self.metrics = metrics

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        log.warning("refusing a connection from %s: %d connections already (max_connections)",
                    transport.get_extra_info("peername"), self.count)
        if self.metrics is not None:
            self.metrics.connection_refused("max_connections")
        transport.close()


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context (None: plaintext): TLS 1.2 or later, with the client
    certificate required when ``tls_cafile`` is given."""
    if config.tls_certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=config.tls_cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_certfile, config.tls_keyfile)
    context.verify_mode = ssl.CERT_REQUIRED if config.tls_cafile else ssl.CERT_NONE
    return context


def cluster_id_for(path: str) -> str:
    """A stable cluster id for the store at ``path`` (22 characters, as Kafka's)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "logstore:" + os.path.abspath(path)).hex[:22]


async def serve_backend(
    backend: Backend, config: ServerConfig, cluster_id: str, *, ready: asyncio.Event | None = None
) -> None:
    """Serve ``backend`` until SIGTERM or SIGINT (or the task is cancelled)."""
    server = Server(backend, config, cluster_id=cluster_id)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        log.info("stopping: finishing the requests in progress")
    finally:
        await server.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)


def serve(store: Store, config: ServerConfig, *, event_loop: str = "auto") -> None:
    """Serve the open ``store`` until SIGTERM/SIGINT (``logstore serve``), then close it.

    Clients over the wire and embedded clients in other processes share it: topics,
    records, groups and committed offsets are the same either way.
    """
    backend = LocalBackend(store, member_liveness="deadline")
    try:
        _run(serve_backend(backend, config, cluster_id_for(store.path)), event_loop)
    finally:
        backend.close()
        store.close()


EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def _run(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run ``main`` on uvloop ("auto": where it is installed; a faster event loop) or on
    asyncio's own.

    Raises:
        InvalidConfigError: ``event_loop`` is unknown, or "uvloop" is not installed.
    """
    if event_loop not in EVENT_LOOPS:
        raise InvalidConfigError(
            f"event loop {event_loop!r} is unknown (use one of: {', '.join(EVENT_LOOPS)})"
        )
    installed = importlib.util.find_spec("uvloop") is not None
    if event_loop == "uvloop" and not installed:
        raise InvalidConfigError("event loop 'uvloop' is not installed (pip install uvloop)")
    if event_loop == "asyncio" or not installed:
        asyncio.run(main)
    else:
        importlib.import_module("uvloop").run(main)
