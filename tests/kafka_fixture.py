"""pytest plugin: ``kafka_broker``, a real Apache Kafka 4.4.0 broker for the session.

Register it with ``pytest_plugins = ["tests.kafka_fixture"]`` in ``tests/conftest.py`` (or
``-p tests.kafka_fixture`` on the command line); it also registers the ``kafka`` marker.
Mark the tests that use it ``@pytest.mark.kafka`` (``-m "not kafka"`` leaves them out).

A broker already running (``./dev kafka start``) is reused and left running; one this
session starts is stopped when the session ends. No java, no mvn, or jars Maven cannot
resolve: the tests are skipped with the reason, except under ``CI=true``, where that is a
failure (a missing broker must not pass CI silently). A broker that has its jars but does
not start is always an error.

Under pytest-xdist (``-n``) the workers share one broker: the first worker that needs it
starts it (``start()`` holds a file lock, so the others wait and reuse it), no worker
stops it, and the controller stops it once every worker is done, if a worker of this run
started it (the worker writes it to a file the controller names in its ``workerinput``).
The ``kafka`` tests also get ``xdist_group("kafka")``, so they run one after another in
one worker, as in a serial run (some restart the broker, some reuse topic names; see
tests/conftest.py for the scheduling).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
GROUP_MARKER = "xdist_group(name): tests of one group run in one pytest-xdist worker"
_registered = False
# the controller's file a worker names the broker it launched in (xdist only)
_OWNER_KEY = "logstore_kafka_launched_file"
_OWNER_FILE = pytest.StashKey[Path]()


def _has_marker(config: pytest.Config, name: str) -> bool:
    return any(line.split(":")[0].split("(")[0].strip() == name
               for line in config.getini("markers"))


def pytest_configure(config: pytest.Config) -> None:
    global _registered
    _registered = True
    if not _has_marker(config, "kafka"):
        config.addinivalue_line("markers", MARKER)
    if not _has_marker(config, "xdist_group"):  # xdist registers it; without xdist, inert
        config.addinivalue_line("markers", GROUP_MARKER)


@pytest.hookimpl(tryfirst=True)  # before the hooks that read the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The broker's tests (marked ``kafka``, or asking for ``kafka_broker``) in one group."""
    for item in items:
        if (item.get_closest_marker("kafka") is not None
                or "kafka_broker" in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("kafka"))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller, once per worker: the file a worker that launches the broker
    writes it to (the same for every worker of this run)."""
    path = node.config.stash.get(_OWNER_FILE, None)
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="logstore-kafka-run-")) / "launched.json"
        node.config.stash[_OWNER_FILE] = path
    node.workerinput[_OWNER_KEY] = str(path)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """xdist controller, after every worker ended: stop the broker a worker of this run
    launched (a broker that was running before the run is left alone)."""
    path = config.stash.get(_OWNER_FILE, None)
    if path is None:
        return
    try:
        launched = KafkaBroker.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        launched = None  # no worker launched one
    try:
        if launched is not None:
            stop(launched)  # the broker it became, if a worker restarted it
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def _owner_file(config: pytest.Config) -> Path | None:
    """In an xdist worker: where to name a broker this worker launched; else None."""
    workerinput = getattr(config, "workerinput", None)
    if not isinstance(workerinput, dict) or _OWNER_KEY not in workerinput:
        return None
    return Path(workerinput[_OWNER_KEY])


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
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[KafkaBroker]:
    """A running single-node Kafka broker; connect to ``kafka_broker.bootstrap``."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no Kafka broker under CI=true: {reason}", pytrace=False)
        pytest.skip(f"no Kafka broker: {reason.splitlines()[0]}")
    owner_file = _owner_file(request.config)
    broker = start()  # returns the running broker when there is one (another worker's)
    if owner_file is not None:  # an xdist worker: the controller stops it at the end
        if launched_here(broker):
            tmp = owner_file.with_name(owner_file.name + ".tmp")
            tmp.write_text(json.dumps(broker.to_json()))
            tmp.replace(owner_file)
        yield broker
        return
    yield broker
    if launched_here(broker):
        stop(broker)
