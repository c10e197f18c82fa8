"""The web console's HTTP side: the JSON API (FastAPI, with its OpenAPI document at
``/openapi.json``), the live lag stream (server-sent events) and the page itself
(``static/``), over a :class:`~.console.Console`.

Safety, for a console bound to a local port:

* changes are two-step and off by default: a change endpoint without ``"confirm": true``
  answers what it *would* do and changes nothing; with it, it needs the console started
  with ``--allow-writes`` (else 403 ``read_only``);
* a request whose ``Host`` is not the console's own address (or localhost) is refused
  (DNS rebinding: another site's page cannot reach the console through a name of its
  own), and a change whose ``Origin`` is another site's is refused (cross-site requests);
* every value a request carries is checked (types and bounds by FastAPI from the
  signatures, names and offsets by the console): bad input is a 4xx with
  ``{"error": code, "message": sentence}``, and nothing it names is ever a file path:
  topics and groups are looked up through the backend, static files come only from
  ``static/``;
* every answer carries a Content-Security-Policy (the page's own scripts only, no
  framing by other sites) and ``nosniff``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from logstore import headers as h
from logstore.errors import (
    ClusterError,
    GroupNotEmptyError,
    InvalidConfigError,
    InvalidTopicError,
    LogstoreError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    ReadOnlyStoreError,
    TopicNotFoundError,
    UnsupportedOperationError,
)
from logstore.patterns.dlq import LetterNotFoundError, NotDeadLettersError

from .browse import MAX_LIMIT, MAX_SCAN
from .console import Console, GroupNotFoundError
from .payloads import RecordFilter
from .sampler import Sampler, lag_event

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
KEEPALIVE_S = 15.0
SECURITY_HEADERS = {
    # the page's own script and styles only (a record's value is text, never markup, and
    # could not run if it were); no framing by another site (a click there must not
    # confirm a change here)
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
NAME_MAX = 249  # Kafka's longest topic name; group names get the same bound here

class ReadOnlyConsoleError(LogstoreError):
    """A change was confirmed on a console started without ``--allow-writes``."""


# (error type, HTTP status, code) — the first that matches wins, so subclasses first
ERRORS: list[tuple[type[Exception], int, str]] = [
    (ReadOnlyConsoleError, 403, "read_only"),
    (TopicNotFoundError, 404, "topic_not_found"),
    (PartitionNotFoundError, 404, "partition_not_found"),
    (GroupNotFoundError, 404, "group_not_found"),
    (LetterNotFoundError, 404, "letter_not_found"),
    (OffsetOutOfRangeError, 400, "offset_out_of_range"),
    (NotDeadLettersError, 400, "not_dead_letters"),
    (GroupNotEmptyError, 409, "group_not_empty"),
    (ReadOnlyStoreError, 403, "read_only"),
    (UnsupportedOperationError, 400, "unsupported"),
    (InvalidTopicError, 422, "invalid_request"),
    (InvalidConfigError, 422, "invalid_request"),
    (ClusterError, 503, "cluster_unavailable"),
]


def _hostname(host_header: str) -> str:
    """The name in a ``Host`` header, lower-cased ("" if it is malformed)."""
    try:
        return (urllib.parse.urlsplit(f"//{host_header}").hostname or "").lower()
    except ValueError:  # "[::1", say
        return ""


def _netloc(origin: str) -> str | None:
    """``host:port`` of an ``Origin`` header, lower-cased (None if it is malformed)."""
    try:
        return urllib.parse.urlsplit(origin).netloc.lower()
    except ValueError:
        return None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _message(err: Exception) -> str:
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


# ---------------------------------------------------------------------- request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfirmBody(_Body):
    confirm: bool = Field(False, description="false: only say what would change")


class RedriveBody(_Body):
    letters: list[Annotated[str, Field(max_length=40)]] | None = Field(
        None, max_length=MAX_LIMIT,
        description="Dead letters to re-drive, as PARTITION:OFFSET")
    all: bool = Field(False, description="Every dead letter not re-driven yet")
    to: Annotated[str, Field(min_length=1, max_length=NAME_MAX)] | None = Field(
        None, description="Send them to this topic instead of their original one")
    through: dict[Annotated[str, Field(pattern=r"^[0-9]{1,7}$")],
                  Annotated[int, Field(ge=0, le=2**63 - 1)]] | None = Field(
        None, max_length=100_000,
        description='With "all": only letters below these offsets (partition: offset), '
                    "as a preview's confirm_with says")
    confirm: bool = Field(False, description="false: only say what would be re-driven")


class ResetBody(_Body):
    to: str = Field(..., pattern="^(earliest|latest|offset|timestamp)$")
    value: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = Field(
        None, description="The offset (to=offset) or Unix time in ms (to=timestamp)")
    topics: list[Annotated[str, Field(min_length=1, max_length=NAME_MAX)]] | None = Field(
        None, max_length=1000, description="Only these topics (default: every one the "
                                           "group has offsets for)")
    confirm: bool = Field(False, description="false: only say what the offsets would be")


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]


# ---------------------------------------------------------------------- the app


def create_app(
    console: Console, sampler: Sampler, *, allow_writes: bool = False,
    host: str = "127.0.0.1", allowed_hosts: Iterable[str] = (),
    stopping: threading.Event | None = None,
) -> FastAPI:
    """The console's ASGI app.

    Args:
        host: the address it is bound to. A request's ``Host`` must name it, localhost,
            one of ``allowed_hosts``, or, when it is a wildcard (``0.0.0.0``, ``::``),
            this machine's name or any IP address (a DNS-rebinding page comes by a name
            of its own, never by an address).
        stopping: set when the server is stopping: event streams end.
    """
    try:
        version = metadata.version("logstore")
    except metadata.PackageNotFoundError:
        version = "unknown"
    app = FastAPI(
        title="logstore console", version=version, docs_url=None, redoc_url=None,
        description="The JSON API under `logstore ui`'s pages: topics, records, consumer "
                    "groups and their lag, dead letters. Errors are "
                    "`{\"error\": code, \"message\": sentence}` with a 4xx status. Changes "
                    "(POST) without `\"confirm\": true` only preview; confirmed, they need "
                    "`logstore ui --allow-writes`.",
    )
    stopping = stopping or threading.Event()
    wildcard = host in WILDCARD_HOSTS
    allowed = {x.strip("[]").lower() for x in (*LOCAL_HOSTS, host, *allowed_hosts)}
    if wildcard:
        allowed |= {socket.gethostname().lower(), socket.getfqdn().lower()}

    def host_allowed(name: str) -> bool:
        if name in allowed:
            return True
        if not wildcard:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------ guards

    @app.middleware("http")
    async def check_origin(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host_header = request.headers.get("host", "")
        if not host_allowed(_hostname(host_header)):
            return _error(400, "host_not_allowed",
                          f"Host {host_header!r} is not this console's address: open it as "
                          f"http://127.0.0.1 or http://localhost (or start logstore ui "
                          f"with --allowed-host that name)")
        origin = request.headers.get("origin")
        if (request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None
                and _netloc(origin) != host_header.lower()):
            return _error(403, "origin_not_allowed",
                          f"a change from the page at {origin!r} is refused: only the "
                          f"console's own page may make changes")
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(LogstoreError)
    async def logstore_error(request: Request, err: LogstoreError) -> JSONResponse:
        for kind, status, code in ERRORS:
            if isinstance(err, kind):
                return _error(status, code, _message(err))
        return _error(400, "invalid_request", _message(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        for e in err.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "request"
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        return _error(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return _error(err.status_code, code, f"{request.method} {request.url.path}: "
                                             f"{err.detail}")

    def check_writes(confirm: bool) -> None:
        if confirm and not allow_writes:
            raise ReadOnlyConsoleError(
                "this console is read-only: start it with 'logstore ui --allow-writes' to "
                "make changes (without \"confirm\": true a request only previews)")

    # ------------------------------------------------------------------ store, topics

    @app.get("/api/store", tags=["store"])
    def store_info() -> dict[str, Any]:
        """What the console shows: a data directory or a Kafka cluster."""
        return {"kind": console.kind, "target": console.target, "allow_writes": allow_writes,
                "version": version, "sample_interval_s": sampler.interval,
                "dead_letter_suffix": h.DLQ_SUFFIX,
                "groups_unavailable": console.groups_unavailable}

    @app.get("/api/topics", tags=["topics"])
    def topics() -> dict[str, Any]:
        """Every topic: partitions, records, size (a data directory's), produce rate."""
        out = []
        for name in console.topic_names():
            try:
                row = console.topic_summary(name)
            except TopicNotFoundError:  # deleted meanwhile
                continue
            row["produce_rate"] = sampler.produce_rate(name)
            out.append(row)
        return {"topics": out}

    @app.get("/api/topics/{topic}", tags=["topics"])
    def topic(topic: Name) -> dict[str, Any]:
        """A topic's partitions (offsets, segments), config and compaction state."""
        out = console.topic_detail(topic)
        out["produce_rate"] = sampler.produce_rate(topic)
        return out

    @app.post("/api/topics/{topic}/delete", tags=["topics"])
    def delete_topic(topic: Name, body: ConfirmBody) -> dict[str, Any]:
        """Delete a topic and its records (preview without confirm)."""
        check_writes(body.confirm)
        return console.delete_topic(topic, confirm=body.confirm)

    @app.get("/api/topics/{topic}/records", tags=["records"])
    def records(
        topic: Name,
        partition: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        offset: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
        timestamp: Annotated[int | None, Query(
            ge=0, le=2**63 - 1, description="Unix time in ms: from the first record at "
                                            "or after it")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
        key: Annotated[str | None, Query(max_length=1000)] = None,
        value: Annotated[str | None, Query(max_length=1000)] = None,
        header: Annotated[str | None, Query(
            max_length=1000, description="NAME (has it) or NAME=TEXT (its value holds "
                                         "TEXT)")] = None,
        max_scan: Annotated[int, Query(ge=1, le=MAX_SCAN)] = 10_000,
    ) -> dict[str, Any]:
        """A page of one partition's records, from an offset or a time, filtered by
        substrings of key, value or a header."""
        if offset is not None and timestamp is not None:
            raise InvalidConfigError("give offset or timestamp, not both")
        return console.records(
            topic, partition, offset=offset, timestamp=timestamp, limit=limit,
            where=RecordFilter(key or None, value or None, header or None),
            max_scan=max_scan)

    # ------------------------------------------------------------------ groups

    @app.get("/api/groups", tags=["groups"])
    def groups() -> dict[str, Any]:
        """Every consumer group: state, members, total lag."""
        return {"groups": console.group_summaries()}

    @app.get("/api/groups/{group}", tags=["groups"])
    def group(group: Name) -> dict[str, Any]:
        """A group's members, assignment, and per partition its committed offset, log
        end and lag."""
        return console.group_detail(group)

    @app.get("/api/groups/{group}/lag", tags=["groups"])
    def group_lag(group: Name) -> dict[str, Any]:
        """The group's lag per partition over the console's history (columns: one
        time per sample)."""
        if not any(group in s.lags for s in sampler.samples()):
            console.group_detail(group)  # 404 if there is no such group
        return sampler.lag_history(group)

    @app.get("/api/groups/{group}/lag/stream", tags=["groups"],
             response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def group_lag_stream(
        request: Request, group: Name,
        max_events: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    ) -> StreamingResponse:
        """Server-sent events: ``event: lag`` with the group's lag at each sample (the
        latest first), until the client goes (or after ``max_events``)."""
        if not any(group in s.lags for s in sampler.samples()):
            await asyncio.to_thread(console.group_detail, group)  # 404 if none
        return StreamingResponse(
            _lag_events(request, sampler, group, max_events, stopping),
            media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.post("/api/groups/{group}/reset-offsets", tags=["groups"])
    def reset_group(group: Name, body: ResetBody) -> dict[str, Any]:
        """New committed offsets for an inactive group (preview without confirm)."""
        check_writes(body.confirm)
        return console.reset_group(group, to=body.to, value=body.value,
                                   topics=body.topics, confirm=body.confirm)

    @app.post("/api/groups/{group}/delete", tags=["groups"])
    def delete_group(group: Name, body: ConfirmBody) -> dict[str, Any]:
        """Forget an inactive group (preview without confirm)."""
        check_writes(body.confirm)
        return console.delete_group(group, confirm=body.confirm)

    # ------------------------------------------------------------------ dead letters

    @app.get("/api/dead-letters", tags=["dead letters"])
    def dead_letter_topics() -> dict[str, Any]:
        """The dead-letter topics (names ending in .dlq) with how many letters are
        pending and re-driven."""
        return {"topics": console.dead_letter_topics()}

    @app.get("/api/topics/{topic}/dead-letters", tags=["dead letters"])
    def dead_letters(
        topic: Name,
        cursor: Annotated[str | None, Query(
            max_length=40, description="PARTITION:OFFSET to start at (a page's "
                                       "next_cursor)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    ) -> dict[str, Any]:
        """A page of a dead-letter topic's letters: where each came from, attempts,
        error, and whether it was re-driven."""
        return console.dead_letters(topic, cursor=cursor, limit=limit)

    @app.post("/api/topics/{topic}/dead-letters/redrive", tags=["dead letters"])
    def redrive(topic: Name, body: Annotated[RedriveBody, Body()]) -> dict[str, Any]:
        """Send dead letters back to their original topic (or ``to``), remembered so
        they are not sent twice (preview without confirm)."""
        if body.all == (body.letters is not None):  # both, or neither
            raise InvalidConfigError('give either "letters": ["PARTITION:OFFSET", ...] or '
                                     '"all": true')
        check_writes(body.confirm)
        if body.through is not None and not body.all:
            raise InvalidConfigError('"through" goes with "all": true')
        through = None if body.through is None else {
            int(p): o for p, o in body.through.items()}
        return console.redrive(topic, letters=None if body.all else body.letters,
                               target=body.to, confirm=body.confirm, through=through)

    # ------------------------------------------------------------------ the page

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    return app


async def _lag_events(
    request: Request, sampler: Sampler, group: str, most: int | None,
    stopping: threading.Event,
) -> AsyncIterator[str]:
    sent = 0
    latest = sampler.latest()
    seq = 0 if latest is None else latest.seq - 1  # the latest first
    quiet = 0.0
    poll = min(0.25, sampler.interval / 4)
    while most is None or sent < most:
        sample = sampler.latest()
        if sample is not None and sample.seq > seq:
            seq = sample.seq
            event = lag_event(sample, group)
            if event is not None:
                yield f"event: lag\ndata: {json.dumps(event)}\n\n"
                sent += 1
                quiet = 0.0
                continue
        if stopping.is_set() or await request.is_disconnected():
            return
        await asyncio.sleep(poll)
        quiet += poll
        if quiet >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet = 0.0
