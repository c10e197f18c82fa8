"""Messaging patterns on top of the clients (issue 16): retries and dead letters,
request-reply, priorities, idempotent consumers. They use only :mod:`logstore.client`
(and the base layer), never the storage: they work on any backend."""
