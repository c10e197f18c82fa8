"""``logstore bench produce|consume``: throughput and latency, like kafka-producer-perf-test."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Measure produce and consume throughput and latency on this store."""
