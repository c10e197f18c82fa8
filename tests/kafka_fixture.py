"""pytest plugin: ``kafka_broker``, a real Apache Kafka 4.4.0 broker for the session.

Register it with ``pytest_plugins = ["tests.kafka_fixture"]`` in ``tests/conftest.py`` (or
``-p tests.kafka_fixture`` on the command line); it also registers the ``kafka`` marker.
Mark the tests that use it ``@pytest.mark.kafka`` (``-m "not kafka"`` leaves them out).

A broker already running (``./dev kafka start``) is reused and left running; one this
session starts is stopped when the session ends. No java, no mvn, or jars Maven cannot
resolve: the tests are skipped with the reason, except under ``CI=true``, where that is a
failure (a missing broker must not pass CI silently). A broker that has its jars but does
not start is always an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.kafka_broker import (
    KafkaBroker,
    KafkaUnavailableError,
    ensure_jars,
    java_available,
    launched_here,
    start,
    stop,
)

MARKER = "kafka: needs a real Apache Kafka broker (Java 17 + Maven once; tests/kafka_fixture.py)"
_registered = False


def pytest_configure(config: pytest.Config) -> None:
    global _registered
    _registered = True
    if not any(line.split(":")[0].strip() == "kafka" for line in config.getini("markers")):
        config.addinivalue_line("markers", MARKER)


def registered() -> bool:
    """Whether pytest loaded this module as a plugin (so ``kafka_broker`` exists)."""
    return _registered


def _unavailable() -> str | None:
    reason = java_available()
    if reason is not None:
        return reason
    try:
        ensure_jars()
    except KafkaUnavailableError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A running single-node Kafka broker; connect to ``kafka_broker.bootstrap``."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no Kafka broker under CI=true: {reason}", pytrace=False)
        pytest.skip(f"no Kafka broker: {reason.splitlines()[0]}")
    broker = start()  # returns the running broker when there is one
    yield broker
    if launched_here(broker):
        stop(broker)
