"""``kafka://`` addresses: the brokers and the librdkafka settings of a Kafka cluster
(what ``logstore.open`` and ``--bootstrap-server`` take). No I/O happens here."""

from __future__ import annotations

import urllib.parse

from logstore.errors import InvalidConfigError

SCHEME = "kafka://"
PARTITIONER_SETTING = "logstore.partitioner"
TIMEOUT_SETTING = "logstore.request.timeout.ms"
DEFAULT_PARTITIONER = "murmur2"
"""Keys map to partitions as Kafka's Java client maps them (murmur2), so that logstore's
producers and every other client of the cluster agree; ``logstore.partitioner=murmur3``
in the address keeps an embedded store's layout (a topic mirrored from one, say)."""


def parse_kafka_url(url: str) -> tuple[str, dict[str, str]]:
    """``(bootstrap_servers, settings)`` of ``kafka://host:port[,host:port...][?k=v&...]``.

    Raises:
        InvalidConfigError: not a kafka:// address, no broker, a broker without a numeric
            port, or a query that is not ``name=value`` pairs (the message names it).
    """
    if not url.startswith(SCHEME):
        raise InvalidConfigError(f"{url!r} is not a Kafka address (kafka://host:port,...)")
    rest = url[len(SCHEME):]
    hosts, _, query = rest.partition("?")
    hosts = hosts.rstrip("/")
    brokers = [h.strip() for h in hosts.split(",") if h.strip()]
    if not brokers:
        raise InvalidConfigError(f"{url!r} names no broker (kafka://host:port,...)")
    for broker in brokers:
        host, sep, port = broker.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidConfigError(
                f"broker {broker!r} in {url!r} is not host:port (e.g. localhost:9092)"
            )
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidConfigError(
            f"the settings {query!r} in {url!r} are not name=value pairs joined by &"
        ) from None
    settings = dict(pairs)
    if "bootstrap.servers" in settings:
        raise InvalidConfigError(
            f"{url!r} sets bootstrap.servers twice (the brokers go before the ?)"
        )
    return ",".join(brokers), settings


def is_kafka_url(target: object) -> bool:
    """Whether ``target`` is a ``kafka://`` address (else: a data directory)."""
    return isinstance(target, str) and target.startswith(SCHEME)
