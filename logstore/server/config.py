"""The wire server's settings, with Kafka's broker setting each one follows.

No I/O happens here.
"""

from __future__ import annotations

import dataclasses

from logstore.errors import InvalidConfigError

DEFAULT_PORT = 9092
DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_IDLE_TIMEOUT_MS = 600_000  # Kafka's connections.max.idle.ms
DEFAULT_REQUEST_TIMEOUT_MS = 30_000
DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_QUEUED_BYTES = 512 * 1024 * 1024  # Kafka's queued.max.request.bytes is unbounded
DEFAULT_GROUP_MIN_SESSION_TIMEOUT_MS = 6_000  # Kafka's group.min.session.timeout.ms
DEFAULT_GROUP_MAX_SESSION_TIMEOUT_MS = 1_800_000  # Kafka's group.max.session.timeout.ms


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How ``logstore serve`` listens and what it allows.

    Attributes:
        host: the address to bind (127.0.0.1 unless told otherwise: a store is not
            exposed to the network by accident).
        port: the port to bind (0: any free port; :attr:`Server.port` says which).
        advertised_host: the address clients are told to connect to (Metadata,
            FindCoordinator); default ``host`` (or 127.0.0.1 when binding 0.0.0.0/::).
        advertised_port: likewise; default the bound port.
        node_id: this broker's id in Metadata (Kafka's ``node.id``).
        max_request_bytes: a request larger than this closes its connection before any
            of it is read into memory (Kafka's ``socket.request.max.bytes``).
        max_connections: connections beyond this are closed at once (Kafka's
            ``max.connections``).
        idle_timeout_ms: a connection that sends no request for this long is closed
            (Kafka's ``connections.max.idle.ms``).
        request_timeout_ms: once a request's first byte arrived, the rest must arrive
            within this (a slow-loris client is cut off).
        max_inflight_bytes: the most response bytes one connection may have queued to a
            reader that does not read (and the cap on one fetch answer): beyond it the
            server stops reading that connection's requests.
        max_queued_bytes: the most request bytes all connections together may hold in
            memory; a request waits for room before its body is read.
        auto_create_topics: a Metadata request for a missing topic creates it, with
            ``default_partitions`` partitions (Kafka's ``auto.create.topics.enable``,
            ``num.partitions``).
        group_min_session_timeout_ms, group_max_session_timeout_ms: the session timeouts
            JoinGroup accepts (Kafka's ``group.min/max.session.timeout.ms``).
        tls_certfile, tls_keyfile: serve TLS with this certificate chain and key (PEM);
            None: plaintext (Kafka's SSL / SASL_SSL listeners).
        tls_cafile: with TLS, require clients to present a certificate signed by these
            CAs (Kafka's ``ssl.client.auth=required``).
        sasl_mechanisms: require SASL authentication with one of these ("PLAIN",
            "SCRAM-SHA-256") before any request but ApiVersions; empty: none (Kafka's
            SASL_PLAINTEXT / SASL_SSL listeners).
        users_file: the users and their credentials SASL checks (``logstore users add``).
        metrics_host, metrics_port: serve Prometheus metrics over HTTP there (port None:
            no metrics endpoint).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    advertised_host: str | None = None
    advertised_port: int | None = None
    node_id: int = 1
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    auto_create_topics: bool = True
    default_partitions: int = 1
    group_min_session_timeout_ms: int = DEFAULT_GROUP_MIN_SESSION_TIMEOUT_MS
    group_max_session_timeout_ms: int = DEFAULT_GROUP_MAX_SESSION_TIMEOUT_MS
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_cafile: str | None = None
    sasl_mechanisms: tuple[str, ...] = ()
    users_file: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        positive = (
            "max_request_bytes", "max_connections", "idle_timeout_ms", "request_timeout_ms",
            "max_inflight_bytes", "max_queued_bytes", "default_partitions",
            "group_min_session_timeout_ms", "group_max_session_timeout_ms",
        )
        for name in positive:
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise InvalidConfigError(f"server setting {name}={value!r} must be a positive int")
        if type(self.port) is not int or not 0 <= self.port <= 65535:
            raise InvalidConfigError(f"server port {self.port!r} is not a port (use 0..65535)")
        if self.sasl_mechanisms and self.users_file is None:
            raise InvalidConfigError(
                f"SASL ({', '.join(self.sasl_mechanisms)}) needs a users file (make one with "
                f"'logstore users add NAME')"
            )
        if (self.tls_keyfile or self.tls_cafile) and not self.tls_certfile:
            raise InvalidConfigError("a TLS key or CA file without a certificate (--tls-cert)")
        if self.max_queued_bytes < self.max_request_bytes:
            raise InvalidConfigError(
                f"max_queued_bytes={self.max_queued_bytes} is smaller than max_request_bytes="
                f"{self.max_request_bytes}: the largest request could never be read"
            )

    def advertised(self, bound_port: int) -> tuple[str, int]:
        """The ``(host, port)`` clients are told to connect to."""
        host = self.advertised_host or self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return host, self.advertised_port or bound_port
