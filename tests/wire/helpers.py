"""What wire tests share besides fixtures: fresh names, topic setup, the client
parametrization, and the batches a server stored (read from its partition directory)."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import pytest

from logstore.records.batch import scan
from logstore.types import BatchHeader
from tests.wire.clients import Can, WireClient, clients_that
from tests.wire.model import wait_for
from tests.wire.targets import Target

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.admin import KafkaAdminClient, NewTopic


KAFKA_PYTHON_SOCKET_LEAK = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <socket.socket fd=\d+, family=\d+, type=\d+, proto=\d+, "
    r"laddr=\('0.0.0.0', \d+\)>:pytest.PytestUnraisableExceptionWarning"
)
"""kafka-python 3.0 leaks the socket of every refused connection attempt
(``kafka/net/inet.py`` ``sock_connect`` raises without closing it), and the garbage
collector's ResourceWarning would fail whichever test it lands in: a client connecting
while a broker restarts gets refused. Only such never-connected sockets are ignored."""
PYTESTMARK = [pytest.mark.kafka, KAFKA_PYTHON_SOCKET_LEAK]
"""Every wire test module's ``pytestmark``."""


CREATED: set[str] = set()
"""Every name :func:`unique` gave in this session (the session deletes those topics from
the Kafka broker at its end: a broker kept running between sessions would otherwise
gather topics, and its restarts slow down with every partition it loads)."""


def unique(prefix: str) -> str:
    """A fresh topic or group name (the servers outlive the test)."""
    name = f"wire-{prefix}-{uuid.uuid4().hex[:10]}"
    CREATED.add(name)
    return name


def create_topic(target: Target, name: str, partitions: int, **configs: str) -> None:
    """Create a topic with kafka-python's admin (tests of other clients need one too),
    and wait until Metadata shows every partition with a leader: Kafka answers
    CreateTopics before its metadata has the topic, and a group leader that assigns
    from metadata without it hands out nothing (kafka-python then waits for its next
    metadata refresh, minutes away)."""
    admin = KafkaAdminClient(bootstrap_servers=target.bootstrap, client_id="wire-setup")
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])

        def ready() -> bool:
            (topic,) = admin.describe_topics([name])
            return topic["error_code"] == 0 and sorted(
                p["partition_index"] for p in topic["partitions"] if p["leader_id"] >= 0
            ) == list(range(partitions))

        wait_for(f"topic {name} in the metadata", ready, 15, every_s=0.05)
    finally:
        admin.close()


def needs(*what: Can) -> pytest.MarkDecorator:
    """Parametrize ``client`` (``indirect``) over the libraries that can do all of
    ``what``, with each library's name as the id."""
    return pytest.mark.parametrize(
        "client", [pytest.param(c, id=c.name) for c in clients_that(*what)], indirect=True
    )


def segment_files(target: Target, topic: str, partition: int) -> list[Path]:
    return sorted(target.partition_dir(topic, partition).glob("*.log"))


def stored_batches(target: Target, topic: str, partition: int) -> list[tuple[BatchHeader, bytes]]:
    """Every batch in the partition's segment files, with its bytes, as the server wrote
    them (a running Kafka broker's files are read as they are: its page cache has them)."""
    out: list[tuple[BatchHeader, bytes]] = []
    for path in segment_files(target, topic, partition):
        data = path.read_bytes()
        for header in scan(data):
            out.append((header, data[header.position: header.position + header.size]))
    return out


__all__ = [
    "PYTESTMARK", "WireClient", "create_topic", "needs", "segment_files", "stored_batches",
    "unique",
]
