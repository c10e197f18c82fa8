"""Static proof that :class:`MemoryBackend` conforms to the Backend Protocol: ``mypy
--strict tests/fakes`` checks this assignment structurally (every method, every
signature). Importing it at run time checks nothing more."""

from __future__ import annotations

from logstore.client.backend import Backend
from tests.fakes.memory_backend import MemoryBackend

backend: Backend = MemoryBackend()
