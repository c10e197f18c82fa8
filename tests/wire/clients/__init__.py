"""The client libraries the wire suite drives, each behind :class:`WireClient`."""

from __future__ import annotations

from tests.wire.clients.aio import AioKafkaClient
from tests.wire.clients.base import Can, WireClient
from tests.wire.clients.confluent import ConfluentClient
from tests.wire.clients.kafka_python import KafkaPythonClient
from tests.wire.clients.kcat import KcatClient

CLIENTS: tuple[WireClient, ...] = (
    KafkaPythonClient(), AioKafkaClient(), ConfluentClient(), KcatClient(),
)


def clients_that(*what: Can) -> list[WireClient]:
    """The clients able to do all of ``what`` (a test is parametrized over them)."""
    return [c for c in CLIENTS if c.can(*what)]


def by_name(name: str) -> WireClient:
    return next(c for c in CLIENTS if c.name == name)


__all__ = ["CLIENTS", "Can", "WireClient", "by_name", "clients_that"]
