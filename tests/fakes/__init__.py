"""Test doubles for logstore's seams.

:class:`~tests.fakes.memory_backend.MemoryBackend` is a complete in-memory implementation
of the clients' :class:`~logstore.client.backend.Backend` Protocol, written from its
docstrings and Kafka's semantics, not from logstore's storage: the client tests run on it
and on :class:`~logstore.backend.LocalBackend` alike, which proves the seam is complete.
"""

from tests.fakes.memory_backend import MemoryBackend

__all__ = ["MemoryBackend"]
