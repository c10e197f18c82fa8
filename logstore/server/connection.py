"""One client connection: frames in, responses out, in order.

A connection answers its requests one at a time, in the order they came (Kafka does the
same: clients pipeline requests and match answers by order and correlation id). Frames
are read straight into a buffer of their own size (an :class:`asyncio.BufferedProtocol`:
no read-ahead buffer that keeps the size of the largest request a connection ever sent),
and reading stops from the end of one frame until its response is written, so a
connection holds at most one request and one response in memory, each bounded:

* a request's size is checked against ``max_request_bytes`` before its body is read,
  and its bytes are taken from the server-wide ``max_queued_bytes`` budget first (a
  request that does not fit waits, unread, in the client's socket);
* a fetch answer is at most ``max_inflight_bytes``, and the next request is read only
  once the socket has taken the response (the transport's write buffer drained).

Timeouts: a connection idle for ``idle_timeout_ms`` is closed; once a request's first
byte arrived, the rest must arrive within ``request_timeout_ms`` (a slow-loris client is
cut off). A frame that does not decode closes its connection with a logged reason; the
server carries on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
from typing import Any, cast

from logstore.server import instrument
from logstore.server.context import ServerContext
from logstore.server.handlers import HANDLERS, groups, meta
from logstore.server.handlers.sasl import UNAUTHENTICATED_APIS, SaslSession
from logstore.server.protocol.apis import (
    APIS,
    SASL_APIS,
    RequestHeader,
    frame_response,
    parse_header,
)
from logstore.server.protocol.codec import INT16, MalformedRequestError, Obj, Out
from logstore.server.protocol.codes import ErrorCode
from logstore.server.protocol.messages import API_VERSIONS

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
_LARGE_CHUNK = 64 * 1024
"""Response chunks at least this large are written without joining them to the rest."""


class ByteBudget:
    """The request bytes all connections may hold at once: a reader takes a request's
    size before reading its body and gives it back once the request is answered.
    Requests that do not fit wait in arrival order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def take(self, n: int) -> None:
        if not self._waiting and self.used + n <= self.limit:
            self.used += n
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((n, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give(n)  # granted just as it was cancelled
            raise

    def give(self, n: int) -> None:
        self.used -= n
        while self._waiting and self.used + self._waiting[0][0] <= self.limit:
            size, waiter = self._waiting.popleft()
            if not waiter.done():
                self.used += size
                waiter.set_result(None)


class Connection(asyncio.BufferedProtocol):
    """Serves one client connection until it closes, errs or the server stops."""

    def __init__(self, ctx: ServerContext, budget: ByteBudget, registry: set[Connection]) -> None:
        self.ctx = ctx
        self.budget = budget
        self.registry = registry
        self.transport: asyncio.Transport | None = None
        self.host = self.peer = "?"
        self.busy = False
        """Whether a request is being read past its size or handled (a graceful stop lets
        it finish)."""
        self.closing = False
        self._size_buf = bytearray(4)
        self._frame: bytearray | None = None
        self._got = 0
        self._taken = 0  # budget bytes held for the frame being read or handled
        self._timer: asyncio.TimerHandle | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._task: asyncio.Task[None] | None = None
        self.sasl: SaslSession

    # ------------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not asyncio.Transport subclasses, so no check)
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.host = peer[0] if isinstance(peer, tuple) else str(peer or "")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.sasl = SaslSession(self.ctx, self.peer)
        self.registry.add(self)
        if self.ctx.metrics is not None:
            self.ctx.metrics.connection_opened()
        self._await_frame()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._frame is None:
            return memoryview(self._size_buf)[self._got :]
        return memoryview(self._frame)[self._got :]

    def buffer_updated(self, nbytes: int) -> None:
        self._got += nbytes
        if self._frame is None:
            if self._got == nbytes:  # the first bytes of a request: it must now arrive
                self.busy = True
                self._arm(self.ctx.config.request_timeout_ms, "a request took longer than "
                          f"{self.ctx.config.request_timeout_ms} ms to arrive")
            if self._got == 4:
                self._size_known(_SIZE.unpack(self._size_buf)[0])
        elif self._got == len(self._frame):
            self._pause()
            self._disarm()
            frame, self._frame = self._frame, None
            self._task = asyncio.ensure_future(self._answer(frame))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.registry and self.ctx.metrics is not None:
            self.ctx.metrics.connection_closed()
        self._disarm()
        self._writable.set()
        self.registry.discard(self)
        self._frame = None
        if self._task is None and self._taken:
            self._release()

    # ------------------------------------------------------------------ reading

    def _await_frame(self) -> None:
        """Ready for the next request: its size first."""
        self.busy = False
        self._got = 0
        self._frame = None
        if self.closing:
            self.close()
            return
        self._arm(self.ctx.config.idle_timeout_ms, f"idle for {self.ctx.config.idle_timeout_ms} ms")
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _size_known(self, size: int) -> None:
        limit = self.ctx.config.max_request_bytes
        if not 0 < size <= limit:
            log.warning("closing the connection from %s: malformed request: request size %d "
                        "is outside 1..%d (max_request_bytes)", self.peer, size, limit)
            self.close()
            return
        self._pause()
        self._disarm()  # waiting for room in the budget is not the client's delay
        self._task = asyncio.ensure_future(self._take_budget(size))

    async def _take_budget(self, size: int) -> None:
        await self.budget.take(size)
        self._taken = size
        self._task = None
        if self.transport is None or self.transport.is_closing():
            self._release()
            return
        self._frame = bytearray(size)
        self._got = 0
        self._arm(self.ctx.config.request_timeout_ms, "a request took longer than "
                  f"{self.ctx.config.request_timeout_ms} ms to arrive")
        self.transport.resume_reading()

    def _release(self) -> None:
        taken, self._taken = self._taken, 0
        if taken:
            self.budget.give(taken)

    def _pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _arm(self, timeout_ms: int, why: str) -> None:
        self._disarm()
        self._timer = self.ctx.loop.call_later(timeout_ms / 1000, self._timed_out, why)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, why: str) -> None:
        log.info("closing the connection from %s: %s", self.peer, why)
        self.close()

    def close(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ answering

    async def _answer(self, frame: bytearray) -> None:
        try:
            await self._handle(memoryview(frame))
            await self._writable.wait()
        except MalformedRequestError as err:
            log.warning("closing the connection from %s: malformed request: %s", self.peer, err)
            self.close()
        except Exception:
            log.exception("closing the connection from %s after an internal error", self.peer)
            self.close()
        finally:
            self._task = None
            self._release()
        if self.transport is not None and not self.transport.is_closing():
            self._await_frame()

    async def _handle(self, frame: memoryview) -> None:
        header = parse_header(frame)
        started = time.monotonic()
        api = APIS.get(header.api_key)
        if header.api_key == API_VERSIONS.key and not API_VERSIONS.supports(header.api_version):
            # Kafka answers an ApiVersions it does not know at v0, listing what it supports
            body = API_VERSIONS.response.encode(meta.unsupported_api_versions(self.ctx), 0)
            self._send(header, body)
            return
        if api is None or not api.supports(header.api_version) or (
            api.key in SASL_APIS and not self.ctx.sasl
        ):
            log.info(
                "%s sent API key %d v%d, which this server does not implement: answering "
                "UNSUPPORTED_VERSION", self.peer, header.api_key, header.api_version,
            )
            out: Out = []
            INT16.write(out, ErrorCode.UNSUPPORTED_VERSION, False, 0)
            self._send(header, out)
            return
        if not self.sasl.authenticated and api.key not in UNAUTHENTICATED_APIS:
            log.warning("closing the connection from %s: %s request before authenticating "
                        "(SASL is required)", self.peer, api.name)
            self.close()
            return
        request = api.request.decode(frame, header.api_version, header.body_at)
        response: Obj | None = None
        try:
            response = await self._dispatch(header, request)
        finally:
            if self.ctx.metrics is not None:
                self._count(api.key, api.name, request, response, started)
        if response is not None:
            self._send(header, api.response.encode(response, header.api_version))
        if self.sasl.failed:
            self.close()  # after the answer: the client learns why
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s v%d in %.1f ms", self.peer, api.name, header.api_version,
                      (time.monotonic() - started) * 1000)

    def _count(
        self, key: int, name: str, request: Obj, response: Obj | None, started: float
    ) -> None:
        metrics = self.ctx.metrics
        assert metrics is not None
        error = (response is None and key != 0) or instrument.failed(response)
        metrics.observe_request(name, time.monotonic() - started, error)
        instrument.count_response(metrics, key, request, response)

    async def _dispatch(self, header: RequestHeader, request: Obj) -> Any:
        if header.api_key == 17:
            return self.sasl.handshake(request)
        if header.api_key == 36:
            return await self.sasl.authenticate(request)
        if header.api_key == 11:
            client = (header.client_id or "", self.host)
            return await groups.join_group(self.ctx, header.api_version, request, client)
        return await HANDLERS[header.api_key](self.ctx, header.api_version, request)

    def _send(self, header: RequestHeader, body: Out) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        # Small chunks are joined; a large one (a fetch's records, as stored) is handed to
        # the socket as it is rather than copied into one joined buffer first.
        small: list[bytes | memoryview] = []
        for chunk in frame_response(header.correlation_id, body):
            if len(chunk) < _LARGE_CHUNK:
                small.append(chunk)
                continue
            if small:
                transport.write(b"".join(small))
                small = []
            transport.write(chunk)
        if small:
            transport.write(b"".join(small))
