"""The Kafka wire-protocol server: any Kafka client, in any language, on a store.

``logstore serve`` runs :func:`serve`; tests and embedders start a :class:`Server` on
any :class:`~logstore.client.backend.Backend` in their own event loop.
"""

from logstore.server.app import Server, cluster_id_for, serve, serve_backend
from logstore.server.config import ServerConfig

__all__ = ["Server", "ServerConfig", "cluster_id_for", "serve", "serve_backend"]
