"""Markers of the client tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "groups: needs the consumer-group protocol (logstore.client.membership and a "
        "backend's group coordinator); select with -m groups",
    )
