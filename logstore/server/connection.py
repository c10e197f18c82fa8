"""One client connection: frames in, responses out, in order.

A connection answers its requests one at a time, in the order they came (Kafka does the
same: clients pipeline requests and match answers by order and correlation id). While
one request is handled, the next ones wait in the socket's buffer (asyncio stops reading
a connection whose buffer is full), so a connection holds at most one request and one
response in memory, each bounded:

* a request's size is checked against ``max_request_bytes`` before its body is read,
  and its bytes are taken from the server-wide ``max_queued_bytes`` budget first;
* a fetch answer is at most ``max_inflight_bytes``; a response is written, then the
  connection waits until the socket drained before it reads the next request.

Timeouts: a connection idle for ``idle_timeout_ms`` is closed; once a request's first
byte arrived, the rest must arrive within ``request_timeout_ms`` (a slow-loris client is
cut off). A frame that does not decode closes its connection with a logged reason; the
server carries on.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any

from logstore.server.context import ServerContext
from logstore.server.handlers import HANDLERS, groups, meta
from logstore.server.protocol.apis import APIS, RequestHeader, frame_response, parse_header
from logstore.server.protocol.codec import INT16, MalformedRequestError, Obj, Out
from logstore.server.protocol.codes import ErrorCode
from logstore.server.protocol.messages import API_VERSIONS

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")


class ByteBudget:
    """The request bytes all connections may hold at once: a reader takes a request's
    size before reading its body and gives it back once the request is answered."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = asyncio.Condition()

    async def take(self, n: int) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + n <= self.limit)
            self.used += n

    async def give(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


class Connection:
    """Serves one client connection until it closes, errs or the server stops."""

    def __init__(
        self,
        ctx: ServerContext,
        budget: ByteBudget,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.ctx = ctx
        self.budget = budget
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.host = peer[0] if isinstance(peer, tuple) else str(peer or "")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.busy = False
        """Whether a request is being handled (a graceful stop lets it finish)."""
        self.closing = False

    async def serve(self) -> None:
        try:
            while not self.closing:
                frame = await self._read_frame()
                if frame is None:
                    return
                self.busy = True
                try:
                    await self._handle(frame)
                finally:
                    self.busy = False
                    await self.budget.give(len(frame))
        except MalformedRequestError as err:
            log.warning("closing the connection from %s: malformed request: %s", self.peer, err)
        except TimeoutError as err:
            log.info("closing the connection from %s: %s", self.peer, err or "timed out")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except Exception:
            log.exception("closing the connection from %s after an internal error", self.peer)
        finally:
            self.writer.close()

    async def _read_frame(self) -> memoryview | None:
        """The next request frame (its bytes after the size), or None at a clean end."""
        cfg = self.ctx.config
        try:
            async with asyncio.timeout(cfg.idle_timeout_ms / 1000):
                first = await self.reader.read(1)
        except TimeoutError:
            raise TimeoutError(f"idle for {cfg.idle_timeout_ms} ms") from None
        if not first:
            return None
        try:
            async with asyncio.timeout(cfg.request_timeout_ms / 1000):
                size = _SIZE.unpack(first + await self.reader.readexactly(3))[0]
                if not 0 < size <= cfg.max_request_bytes:
                    raise MalformedRequestError(
                        f"request size {size} is outside 1..{cfg.max_request_bytes} "
                        f"(max_request_bytes)"
                    )
                await self.budget.take(size)
                try:
                    body = await self.reader.readexactly(size)
                except BaseException:
                    await self.budget.give(size)
                    raise
        except TimeoutError:
            raise TimeoutError(
                f"a request took longer than {cfg.request_timeout_ms} ms to arrive"
            ) from None
        return memoryview(body)

    async def _handle(self, frame: memoryview) -> None:
        header = parse_header(frame)
        started = time.monotonic()
        api = APIS.get(header.api_key)
        if header.api_key == API_VERSIONS.key and not API_VERSIONS.supports(header.api_version):
            # Kafka answers an ApiVersions it does not know at v0, listing what it supports
            body = API_VERSIONS.response.encode(meta.unsupported_api_versions(), 0)
            await self._send(header, body)
            return
        if api is None or not api.supports(header.api_version):
            log.info(
                "%s sent API key %d v%d, which this server does not implement: answering "
                "UNSUPPORTED_VERSION", self.peer, header.api_key, header.api_version,
            )
            out: Out = []
            INT16.write(out, ErrorCode.UNSUPPORTED_VERSION, False, 0)
            await self._send(header, out)
            return
        request = api.request.decode(frame, header.api_version, header.body_at)
        response = await self._dispatch(header, request)
        if response is not None:
            await self._send(header, api.response.encode(response, header.api_version))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s v%d in %.1f ms", self.peer, api.name, header.api_version,
                      (time.monotonic() - started) * 1000)

    async def _dispatch(self, header: RequestHeader, request: Obj) -> Any:
        if header.api_key == 11:
            client = (header.client_id or "", self.host)
            return await groups.join_group(self.ctx, header.api_version, request, client)
        return await HANDLERS[header.api_key](self.ctx, header.api_version, request)

    async def _send(self, header: RequestHeader, body: Out) -> None:
        self.writer.writelines(frame_response(header.correlation_id, body))
        await self.writer.drain()
