"""``logstore serve``: the store over Kafka's wire protocol, for any Kafka client."""

from __future__ import annotations

import logging

import click

from logstore.server import ServerConfig, serve
from logstore.server.auth import MECHANISMS

from .common import user_errors
from .datadir import open_store
from .users import users_file_option


@click.command("serve")
@click.option("--data-dir", default=None, help="The store's directory (default: the global "
              "--data-dir).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (0.0.0.0 for every interface: the store is then "
              "reachable from the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=9092, show_default=True,
              help="The port to listen on (0: any free one, printed at start).")
@click.option("--advertised-host", default=None,
              help="The host clients are told to connect to (default: --host).")
@click.option("--max-connections", type=click.IntRange(1), default=1000, show_default=True,
              help="Connections beyond this are closed at once (Kafka's max.connections).")
@click.option("--max-request-bytes", type=click.IntRange(1), default=100 * 1024 * 1024,
              show_default=True, help="A larger request closes its connection before it is "
              "read (Kafka's socket.request.max.bytes).")
@click.option("--max-queued-bytes", type=click.IntRange(1), default=512 * 1024 * 1024,
              show_default=True, help="The most request bytes all connections together hold "
              "in memory; further requests wait unread (Kafka's queued.max.request.bytes).")
@click.option("--idle-timeout-ms", type=click.IntRange(1), default=600_000, show_default=True,
              help="Close a connection that sends nothing for this long "
              "(Kafka's connections.max.idle.ms).")
@click.option("--request-timeout-ms", type=click.IntRange(1), default=30_000, show_default=True,
              help="Close a connection whose request takes longer than this to arrive once "
              "it started (a slow client).")
@click.option("--no-auto-create-topics", is_flag=True,
              help="Refuse Metadata requests for missing topics instead of creating them "
              "(Kafka's auto.create.topics.enable=false).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve TLS with this certificate chain (PEM); with --sasl, SASL_SSL.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The certificate's private key (PEM), if not in --tls-cert.")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Require client certificates signed by these CAs (mutual TLS).")
@click.option("--sasl", "sasl", multiple=True,
              type=click.Choice(list(MECHANISMS), case_sensitive=False),
              help="Require SASL authentication with this mechanism (repeat for several), "
              "against --users-file.")
@users_file_option
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics at http://--metrics-host:PORT/metrics.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--event-loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto",
              show_default=True, help="auto: uvloop where it is installed, else asyncio's.")
@click.option("-v", "--verbose", count=True, help="Log more (-v: each connection, -vv: debug).")
@click.pass_obj
@user_errors
def serve_command(
    global_data_dir: str,
    data_dir: str | None,
    host: str,
    port: int,
    advertised_host: str | None,
    max_connections: int,
    max_request_bytes: int,
    max_queued_bytes: int,
    idle_timeout_ms: int,
    request_timeout_ms: int,
    no_auto_create_topics: bool,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    sasl: tuple[str, ...],
    users_file: str,
    metrics_port: int | None,
    metrics_host: str,
    event_loop: str,
    verbose: int,
) -> None:
    """Serve the store to Kafka clients (kafka-python, aiokafka, confluent-kafka, kcat,
    Java...) until SIGTERM or Ctrl-C.

    \b
    Examples:
      logstore serve                        # 127.0.0.1:9092, the store in ./data
      kcat -b 127.0.0.1:9092 -L             # in another terminal
      logstore users add alice && logstore serve --sasl SCRAM-SHA-256 --tls-cert c.pem
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("logstore.server").setLevel(min(level, logging.INFO))
    config = ServerConfig(
        host=host, port=port, advertised_host=advertised_host,
        max_connections=max_connections, max_request_bytes=max_request_bytes,
        max_queued_bytes=max(max_request_bytes, max_queued_bytes),
        idle_timeout_ms=idle_timeout_ms, request_timeout_ms=request_timeout_ms,
        auto_create_topics=not no_auto_create_topics,
        tls_certfile=tls_cert, tls_keyfile=tls_key, tls_cafile=tls_ca,
        sasl_mechanisms=tuple(m.upper() for m in sasl), users_file=users_file if sasl else None,
        metrics_host=metrics_host, metrics_port=metrics_port,
    )
    store = open_store(data_dir or global_data_dir)
    serve(store, config, event_loop=event_loop)
