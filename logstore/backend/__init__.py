"""Backends: what serves the clients' :class:`~logstore.client.backend.Backend` seam.

:class:`~logstore.backend.local.LocalBackend` serves an embedded store.
"""

from logstore.backend.local import LocalBackend, backend_for

__all__ = ["LocalBackend", "backend_for"]
