"""Clients of a store: producers and consumers. They use only the Store's public API."""
