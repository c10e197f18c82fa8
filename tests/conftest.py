"""Shared fixtures and Hypothesis profiles.

Profiles: ``ci`` (selected when CI=true: derandomized, more examples, no deadline) and
``dev`` (the default: fewer examples for a quick local run). Pick one explicitly with
``HYPOTHESIS_PROFILE=...``.

Under pytest-xdist (``-n N``; ``./dev test`` runs so) with ``--dist loadgroup`` or the
default ``load``, the tests marked ``xdist_group(name)`` run one after another in one
worker, and the others spread over the workers test by test (xdist's loadgroup). xdist
finds a test's group in its node id, which it suffixes with ``@name``; on pytest 9.2 that
suffix no longer takes (xdist 3.8 sets ``item._nodeid``), so here the workers write each
grouped test's group to a file the controller names, and the controller's scheduler reads
the groups from there.
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
from hypothesis import HealthCheck, settings

import logstore
from logstore.config import TopicConfig

pytest_plugins = ["tests.kafka_fixture"]  # the real Kafka broker fixture (tests/kafka_broker.py)

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev")
)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tiny_config() -> TopicConfig:
    """Segments of a few hundred bytes and dense indexes, so rolls happen constantly."""
    return TopicConfig(segment_bytes=600, index_interval_bytes=100, flush="never")


@pytest.fixture
def store(tmp_path: os.PathLike[str], clock: FakeClock) -> Iterator[logstore.Store]:
    with logstore.open(os.path.join(tmp_path, "store"), clock=clock) as s:
        yield s


# -- pytest-xdist: the tests of an xdist_group run in one worker ---------------------------

_GROUPS_KEY = "logstore_xdist_groups_file"
_GROUPS_FILE = pytest.StashKey[Path]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller, once per worker: where the worker writes the tests' groups."""
    path = node.config.stash.get(_GROUPS_FILE, None)
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="logstore-xdist-groups-")) / "groups.json"
        node.config.stash[_GROUPS_FILE] = path
    node.workerinput[_GROUPS_KEY] = str(path)


@pytest.hookimpl(trylast=True)  # after every hook that adds marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", None)
    if not isinstance(workerinput, dict) or _GROUPS_KEY not in workerinput:
        return
    groups = {}
    for item in items:
        names = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                 for mark in item.iter_markers("xdist_group")}
        if names:
            groups[item.nodeid] = "@" + "_".join(sorted(names))
    path = Path(workerinput[_GROUPS_KEY])
    tmp = path.with_name(f"{path.name}.{workerinput.get('workerid', os.getpid())}")
    tmp.write_text(json.dumps(groups))
    tmp.replace(path)  # every worker collects the same tests: the same groups


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist controller: loadgroup's scheduler, for ``--dist loadgroup`` and ``load``
    (a test that shares a server with others of its group must not run beside them)."""
    if config.getvalue("dist") not in ("load", "loadgroup") or _GROUPS_FILE not in config.stash:
        return None
    from xdist.scheduler import LoadGroupScheduling

    path = config.stash[_GROUPS_FILE]

    class MarkedGroupScheduling(LoadGroupScheduling):
        """loadgroup, with the groups the workers wrote to ``path``."""

        groups: dict[str, str] | None = None

        def schedule(self) -> None:
            if self.groups is None:  # all workers have collected (and written) by now
                try:
                    self.groups = json.loads(path.read_text())
                except (OSError, ValueError):
                    self.groups = {}
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            group = (self.groups or {}).get(nodeid)
            return group if group is not None else super()._split_scope(nodeid)

    return MarkedGroupScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    path = config.stash.get(_GROUPS_FILE, None)
    if path is not None:
        shutil.rmtree(path.parent, ignore_errors=True)
