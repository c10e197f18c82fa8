"""The wire server's metrics, and an opt-in HTTP endpoint that serves them to Prometheus.

* :class:`ServerMetrics` declares the server's metrics under the ``logstore_`` prefix
  (in a :class:`~logstore.server.prometheus.MetricsRegistry`) and gives the server one
  call per event (a request, a produce, a fetch, a connection). Consumer-group lag is
  not tracked here: a callback the server passes in is asked for it at scrape time.
* :func:`start_metrics_server` is a minimal HTTP/1.1 server (asyncio streams) that
  answers ``GET /metrics``. A scrape renders in a thread, since the lag callback reads
  files; overlapping scrapes share one render.

What this module does not know: the Kafka protocol, the store, topics or groups beyond
the label values and counts the server passes in. It reads and writes no files.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple

from logstore.server.prometheus import CONTENT_TYPE, Labels, MetricsRegistry

log = logging.getLogger(__name__)

DEFAULT_HTTP_TIMEOUT_S = 10.0
"""The time a client has to send its request, and to read the answer."""
DEFAULT_MAX_HEAD_BYTES = 8 * 1024
"""The most bytes a request line and its headers may take."""
DEFAULT_MAX_HTTP_CONNECTIONS = 32


# --------------------------------------------------------------------------- the server's


class LagSample(NamedTuple):
    """One group's position on one partition, as the lag callback reports it."""

    group: str
    topic: str
    partition: int
    committed_offset: int
    """The group's committed offset (negative: none; no lag is reported then)."""
    log_end_offset: int
    """The partition's log end offset (the next offset to be written)."""


class ServerMetrics:
    """The metrics of one ``logstore serve``, and a hook per event for the server.

    Hooks are cheap (a lock and a dict update per metric) and may be called from any
    thread. They raise ``ValueError`` only on a caller's bug: a negative count, or a
    label value that is not a ``str``.
    ``lag_source``, if given, is called at every scrape, in the scrape's thread (it may
    read files); a failure is logged and counted in ``logstore_scrape_errors_total``,
    and that scrape shows no lag series while every other metric still renders.
    """

    def __init__(self, lag_source: Callable[[], Iterable[LagSample]] | None = None) -> None:
        self.registry = r = MetricsRegistry()
        self._lag_source = lag_source
        self._lag_failing = False
        self._scrape_lock = threading.Lock()
        self.requests = r.counter("logstore_requests_total", "Requests handled, by API.", ["api"])
        self.request_errors = r.counter(
            "logstore_request_errors_total", "Requests answered with an error, by API.", ["api"]
        )
        self.request_seconds = r.histogram(
            "logstore_request_seconds", "Time from a request read to its response, by API.",
            ["api"],
        )
        self.produce_bytes = r.counter(
            "logstore_produce_bytes_total", "Record batch bytes appended by Produce.", ["topic"]
        )
        self.produce_records = r.counter(
            "logstore_produce_records_total", "Records appended by Produce.", ["topic"]
        )
        self.fetch_bytes = r.counter(
            "logstore_fetch_bytes_total", "Record batch bytes returned by Fetch.", ["topic"]
        )
        self.fetch_records = r.counter(
            "logstore_fetch_records_total", "Records returned by Fetch.", ["topic"]
        )
        self.connections = r.gauge("logstore_connections", "Client connections open now.")
        self.connections_accepted = r.counter(
            "logstore_connections_accepted_total", "Client connections accepted."
        )
        self.connections_refused = r.counter(
            "logstore_connections_refused_total", "Client connections closed at once, by reason.",
            ["reason"],
        )
        group_partition = ["group", "topic", "partition"]
        self.group_lag = r.gauge(
            "logstore_consumer_group_lag",
            "Records after a group's committed offset (log end - committed, never negative).",
            group_partition,
        )
        self.group_committed = r.gauge(
            "logstore_consumer_group_committed_offset", "A group's committed offset.",
            group_partition,
        )
        self.log_end = r.gauge(
            "logstore_log_end_offset",
            "The next offset to be written, of partitions some group committed on.",
            ["topic", "partition"],
        )
        self.scrape_errors = r.counter(
            "logstore_scrape_errors_total",
            "Metrics callbacks (consumer group lag, ...) that failed during a scrape.",
        )

    # ----------------------------------------------------------------- hooks

    def observe_request(self, api: str, seconds: float, error: bool = False) -> None:
        """A request to ``api`` (its name, e.g. ``"Produce"``) took ``seconds``."""
        labels = (api,)
        self.requests.inc(labels)
        self.request_seconds.observe(seconds, labels)
        if error:
            self.request_errors.inc(labels)

    def produced(self, topic: str, records: int, size_bytes: int) -> None:
        """Produce appended ``records`` records in ``size_bytes`` batch bytes to ``topic``."""
        labels = (topic,)
        self.produce_records.inc(labels, records)
        self.produce_bytes.inc(labels, size_bytes)

    def fetched(self, topic: str, records: int, size_bytes: int) -> None:
        """Fetch returned ``records`` records in ``size_bytes`` batch bytes of ``topic``."""
        labels = (topic,)
        self.fetch_records.inc(labels, records)
        self.fetch_bytes.inc(labels, size_bytes)

    def connection_opened(self) -> None:
        """A client connection was accepted."""
        self.connections_accepted.inc()
        self.connections.inc()

    def connection_closed(self) -> None:
        """An accepted connection ended (call once per :meth:`connection_opened`)."""
        self.connections.dec()

    def connection_refused(self, reason: str) -> None:
        """A connection was closed at once, e.g. ``"max_connections"``."""
        self.connections_refused.inc((reason,))

    def forget_topic(self, topic: str) -> None:
        """Drops a deleted topic's series (so a topic churn does not grow the scrape)."""
        for metric in (self.produce_bytes, self.produce_records, self.fetch_bytes,
                       self.fetch_records):
            metric.forget("topic", topic)

    # ----------------------------------------------------------------- scrape

    def render(self) -> str:
        """Every metric in the text format. Blocking: it calls the lag callback, so an
        event loop calls it in a thread. Scrapes run one at a time."""
        with self._scrape_lock:
            self._refresh_lag()
            return self.registry.render(self._callback_failed)

    def _callback_failed(self, name: str, error: BaseException) -> None:
        self.scrape_errors.inc()

    def _refresh_lag(self) -> None:
        if self._lag_source is None:
            return
        lag: dict[Labels, float] = {}
        committed: dict[Labels, float] = {}
        log_end: dict[Labels, float] = {}
        try:
            for s in self._lag_source():
                partition = (s.topic, str(s.partition))
                log_end[partition] = max(s.log_end_offset, log_end.get(partition, 0))
                if s.committed_offset >= 0:
                    key = (s.group, *partition)
                    committed[key] = s.committed_offset
                    lag[key] = max(0, s.log_end_offset - s.committed_offset)
        except Exception:
            # this scrape shows no lag series (Prometheus marks them stale), not old values
            self.scrape_errors.inc()
            lag, committed, log_end = {}, {}, {}
            level = logging.DEBUG if self._lag_failing else logging.WARNING
            log.log(level, "metrics: the consumer group lag callback failed", exc_info=True)
            self._lag_failing = True
        else:
            if self._lag_failing:
                log.info("metrics: the consumer group lag callback works again")
            self._lag_failing = False
        self.group_lag.replace(lag)
        self.group_committed.replace(committed)
        self.log_end.replace(log_end)


# --------------------------------------------------------------------------- HTTP


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    414: "URI Too Long", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
}
_INDEX = b"logstore metrics: GET /metrics (Prometheus text format 0.0.4)\n"


def _response(status: int, body: bytes, content_type: str, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    if status == 405:
        head += "Allow: GET, HEAD\r\n"
    return (head + "\r\n").encode("ascii") + (b"" if head_only else body)


class _Endpoint:
    """Serves one HTTP request per connection; concurrent scrapes share one render."""

    def __init__(
        self, metrics: ServerMetrics, timeout_s: float, max_head_bytes: int, max_connections: int
    ) -> None:
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._max_head_bytes = max_head_bytes
        self._max_connections = max_connections
        self._open = 0
        self._render: asyncio.Future[bytes] | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self._max_connections:
            writer.close()
            return
        self._open += 1
        try:
            await self._serve(reader, writer)
            await self._close(writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            writer.transport.abort()  # the client went away, or does not read its answer
        except asyncio.CancelledError:
            # The server is stopping. The task ends normally: Python 3.11's start_server
            # logs a handler task that ends cancelled as an error.
            writer.transport.abort()
        except Exception:
            log.exception("metrics: an HTTP request failed")
            writer.transport.abort()
        finally:
            self._open -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                method, target = await self._read_head(reader)
            status, body, content_type = await self._answer(method, target)
        except TimeoutError:
            return  # a slow or silent client: dropped
        except _HttpError as err:
            method, status, body, content_type = "GET", err.status, b"", "text/plain"
        writer.write(_response(status, body, content_type, head_only=method == "HEAD"))
        async with asyncio.timeout(self._timeout_s):
            await writer.drain()

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        """The method and target of the request line; the headers are read and ignored."""
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as err:
            raise _HttpError(414) from err
        total = len(line)
        while True:
            try:
                header = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as err:
                raise _HttpError(431) from err
            total += len(header)
            if total > self._max_head_bytes:
                raise _HttpError(431)
            if header == b"\r\n":
                break
        parts = line[:-2].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _HttpError(400)
        return parts[0], parts[1]

    async def _answer(self, method: str, target: str) -> tuple[int, bytes, str]:
        path = target.split("?", 1)[0]
        if path not in ("/", "/metrics"):
            return 404, b"not found; try /metrics\n", "text/plain"
        if method not in ("GET", "HEAD"):
            return 405, b"", "text/plain"
        if path == "/":
            return 200, _INDEX, "text/plain; charset=utf-8"
        try:
            return 200, await self._scrape(), CONTENT_TYPE
        except TimeoutError:
            log.warning("metrics: a scrape took over %s s", self._timeout_s)
            return 503, b"the scrape timed out\n", "text/plain"
        except Exception:
            log.exception("metrics: rendering the metrics failed")
            return 500, b"rendering the metrics failed\n", "text/plain"

    async def _scrape(self) -> bytes:
        """The rendered metrics: a render in a thread, shared by scrapes that overlap it
        (so a hanging lag callback holds one thread, not one per scrape)."""
        if self._render is None or self._render.done():
            self._render = asyncio.ensure_future(asyncio.to_thread(self._render_bytes))
            # every scrape waiting for it may have timed out: the error is seen here
            self._render.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.wait_for(asyncio.shield(self._render), self._timeout_s)

    def _render_bytes(self) -> bytes:
        return self._metrics.render().encode("utf-8", "replace")

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            async with asyncio.timeout(self._timeout_s):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            writer.transport.abort()  # a client that does not read its response


async def start_metrics_server(
    metrics: ServerMetrics,
    host: str,
    port: int,
    *,
    timeout_s: float = DEFAULT_HTTP_TIMEOUT_S,
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    max_connections: int = DEFAULT_MAX_HTTP_CONNECTIONS,
) -> asyncio.Server:
    """Serves ``metrics`` over HTTP/1.1 on ``host:port`` (0: any free port; the returned
    server's ``sockets`` say which) until the server is closed.

    ``GET /metrics`` answers the text format (HEAD too), ``/`` a pointer to it, other
    paths 404 and other methods 405; one request per connection. A request whose line
    or headers exceed ``max_head_bytes`` is refused (414, 431); a client that has not
    sent its request within ``timeout_s``, or does not read the answer within it, is
    dropped; connections beyond ``max_connections`` are closed at once.
    """
    endpoint = _Endpoint(metrics, timeout_s, max_head_bytes, max_connections)
    return await asyncio.start_server(endpoint.handle, host, port, limit=max_head_bytes)
