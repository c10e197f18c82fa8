"""The public facade exports what it should, sorted (httpx's rule)."""

from __future__ import annotations

import logstore


def test_all_is_sorted_and_complete() -> None:
    names = [n for n in logstore.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in logstore.__all__:
        assert hasattr(logstore, name), name


def test_every_error_derives_from_logstore_error() -> None:
    for name in logstore.__all__:
        obj = getattr(logstore, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, logstore.LogstoreError), name
