"""What the mirror tests share (tests/unit/patterns/test_mirror.py,
tests/integration/test_mirror.py): filling a source, reading a topic back whole, and
what a consumer group has left to read."""

from __future__ import annotations

from collections.abc import Sequence

import logstore
from logstore.client.backend import Backend
from logstore.config import READ_COMMITTED
from logstore.types import Header, TopicPartition

Content = tuple[int, bytes | None, bytes | None, tuple[Header, ...]]
"""A record as the mirror must keep it: timestamp, key, value, headers."""

T0 = 1_700_000_000_000


def fill(
    store: logstore.Store, topic: str, count: int, *, start: int = 0, **sends: object
) -> None:
    """Send ``count`` records numbered from ``start``: keys ``k<i % 97>`` (every 50th
    null), values ``v<i>`` (every 40th null), headers on every third, timestamps T0 + i."""
    with store.producer(**sends) as producer:  # type: ignore[arg-type]
        for i in range(start, start + count):
            producer.send(
                topic,
                None if i % 40 == 39 else b"v%d" % i,
                key=None if i % 50 == 49 else b"k%d" % (i % 97),
                headers=[("n", b"%d" % i), ("null", None)] if i % 3 == 0 else None,
                timestamp=T0 + i,
            )


def dump(backend: Backend, topic: str, offsets: dict[int, int] | None = None,
         wait_ms: int = 0) -> dict[int, list[Content]]:
    """Every partition's records (``read_committed``), from ``offsets[p]`` (default 0),
    up to its end (a fetch that waits ``wait_ms`` and finds nothing ends it early: the
    last offsets are transaction markers; a Kafka cluster's fetch needs a wait)."""
    partitions = backend.topic_metadata(topic).partitions
    out: dict[int, list[Content]] = {}
    for p in range(partitions):
        tp = TopicPartition(topic, p)
        position = (offsets or {}).get(p, 0)
        end = backend.offset_range(tp, READ_COMMITTED)[1]
        rows: list[Content] = []
        while position < end:
            got = backend.fetch({tp: position}, max_records=5000, max_bytes=64 << 20,
                                max_wait_ms=wait_ms, isolation_level=READ_COMMITTED,
                                ).get(tp, [])
            assert isinstance(got, list), got
            got = [r for r in got if r.offset >= position]
            if not got:
                break
            rows += [(r.timestamp, r.key, r.value, tuple(r.headers)) for r in got]
            position = got[-1].offset + 1
        out[p] = rows
    return out


def counts(rows: dict[int, list[Content]]) -> dict[int, int]:
    return {p: len(r) for p, r in rows.items()}


def committed(backend: Backend, group: str, topic: str) -> dict[int, int]:
    return {tp.partition: c.offset for tp, c in backend.committed_offsets(group).items()
            if tp.topic == topic}


def rest_of_group(
    backend: Backend, group: str, topic: str, wait_ms: int = 0
) -> dict[int, list[Content]]:
    """What ``group`` has left to read of ``topic``: each partition's records from its
    committed offset on."""
    return dump(backend, topic, committed(backend, group, topic), wait_ms)


def consume_half(store: logstore.Store, group: str, topics: Sequence[str], count: int) -> int:
    """Consume about ``count`` records as ``group`` and commit; returns how many."""
    seen = 0
    with store.consumer(list(topics), group_id=group, auto_offset_reset="earliest",
                        enable_auto_commit=False, isolation_level=READ_COMMITTED) as consumer:
        while seen < count:
            seen += len(consumer.poll(timeout_ms=200, max_records=min(500, count - seen)))
        consumer.commit()
    return seen
