"""The differential wire suite's fixtures: ``target`` (the real Kafka broker and
``logstore serve``, each started once per session and shared by every test: tests use
fresh topic and group names) and ``client`` (a Kafka client library, parametrized by the
test with ``indirect=True``).

When a test fails, the part of the target's log written during the test is attached to
its report (the logstore server's whole log stays in the session's temp dir).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_broker import KafkaBroker
from tests.wire.clients import WireClient
from tests.wire.helpers import CREATED
from tests.wire.targets import KafkaTarget, LogstoreTarget, Target

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.admin import KafkaAdminClient

TARGETS = ["kafka", "logstore"]
_LOG_START = pytest.StashKey[dict[Path, int]]()


@pytest.fixture(scope="session")
def kafka_target(kafka_broker: KafkaBroker) -> Iterator[KafkaTarget]:
    target = KafkaTarget(kafka_broker)
    yield target
    _delete_created_topics(target)


def _delete_created_topics(target: KafkaTarget) -> None:
    """Delete the topics this session made on the broker (best effort)."""
    admin = KafkaAdminClient(bootstrap_servers=target.bootstrap, client_id="wire-cleanup")
    try:
        ours = sorted(CREATED & set(admin.list_topics()))
        if ours:
            admin.delete_topics(ours, raise_errors=False)
    except Exception as exc:  # a cleanup: the session's result stands
        print(f"wire tests: could not delete their topics from Kafka: {exc!r}", file=sys.stderr)
    finally:
        admin.close()


@pytest.fixture(scope="session")
def logstore_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogstoreTarget]:
    base = tmp_path_factory.mktemp("logstore-serve")
    server = LogstoreTarget(base / "data", base / "serve.log")
    yield server
    server.stop()


@pytest.fixture(scope="session", params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    """Each server in turn (the same object for the whole session)."""
    found: Target = request.getfixturevalue(f"{request.param}_target")
    return found


@pytest.fixture
def client(request: pytest.FixtureRequest) -> WireClient:
    """The client library the test is parametrized with (``indirect=True``); skipped
    when it cannot run here (a failure under CI=true)."""
    lib: WireClient = request.param
    reason = lib.unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{lib.name} cannot run under CI=true: {reason}", pytrace=False)
        pytest.skip(f"{lib.name}: {reason}")
    return lib


# -- the target's log on failure --------------------------------------------------------


def _log_of(item: pytest.Item) -> Path | None:
    funcargs = getattr(item, "funcargs", {})
    found = funcargs.get("target")
    return found.log_file if isinstance(found, Target) else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    log = _log_of(item)
    if log is not None:
        try:
            item.stash[_LOG_START] = {log: log.stat().st_size}
        except OSError:
            item.stash[_LOG_START] = {log: 0}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for log, start in item.stash.get(_LOG_START, {}).items():
        try:
            with log.open("rb") as handle:
                handle.seek(start)
                text = handle.read().decode(errors="replace")
        except OSError as exc:
            text = f"(cannot read: {exc})"
        lines = text.splitlines()
        if len(lines) > 150:
            lines = [f"... {len(lines) - 150} earlier lines ...", *lines[-150:]]
        report.sections.append((f"server log during the test ({log})", "\n".join(lines)))
