"""Kafka's wire protocol: types, the message schemas implemented, error codes. No I/O."""
