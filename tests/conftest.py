"""Shared fixtures and Hypothesis profiles.

Profiles: ``ci`` (selected when CI=true: derandomized, more examples, no deadline) and
``dev`` (the default: fewer examples for a quick local run). Pick one explicitly with
``HYPOTHESIS_PROFILE=...``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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
