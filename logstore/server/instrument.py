"""What the server counts for its metrics endpoint, read off requests and responses after
they were handled (the handlers themselves know nothing of metrics), and the consumer-lag
samples the endpoint computes at scrape time.

No I/O happens here except in :func:`lag_samples` (backend calls, run by the endpoint in
a thread).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

from logstore.client.backend import Backend
from logstore.errors import LogstoreError
from logstore.server.metrics import LagSample, ServerMetrics
from logstore.server.protocol.codec import Obj

log = logging.getLogger(__name__)

_BATCH_LENGTH_AT = 8  # int32 batchLength after the int64 baseOffset
_RECORDS_COUNT_AT = 57  # int32 recordsCount, the last field of a v2 batch header
_INT32 = struct.Struct(">i")


def records_in(data: bytes | memoryview | None) -> int:
    """How many records the whole RecordBatch v2 batches in ``data`` hold (by their
    headers; a torn last batch is not counted)."""
    if not data:
        return 0
    count = pos = 0
    end = len(data)
    while pos + _RECORDS_COUNT_AT + 4 <= end:
        size = 12 + _INT32.unpack_from(data, pos + _BATCH_LENGTH_AT)[0]
        if size < _RECORDS_COUNT_AT + 4 or pos + size > end:
            break
        count += _INT32.unpack_from(data, pos + _RECORDS_COUNT_AT)[0]
        pos += size
    return count


def count_response(
    metrics: ServerMetrics, api_key: int, request: Obj, response: Obj | None
) -> None:
    """Count the records a Produce wrote or a Fetch returned."""
    if api_key == 0:
        answered = {
            (t["name"], p["index"]): p["error_code"]
            for t in (response or {}).get("responses", ())
            for p in t["partition_responses"]
        }
        for t in request["topic_data"]:
            for p in t["partition_data"]:
                if response is None or answered.get((t["name"], p["index"])) == 0:
                    data = p["records"]
                    metrics.produced(t["name"], records_in(data), len(data or b""))
    elif api_key == 1 and response is not None:
        for t in response["responses"]:
            for p in t["partitions"]:
                data = p.get("records")
                if data:
                    metrics.fetched(t["topic"], records_in(data), len(data))


def failed(response: Obj | None) -> bool:
    """Whether a response carries an error (its own, or every partition's)."""
    if response is None:
        return False
    return bool(response.get("error_code"))


def lag_samples(backend: Backend) -> Iterator[LagSample]:
    """Every group's committed offset and its partition's log end, per partition."""
    ends: dict[tuple[str, int], int] = {}
    ids: dict[str, str | None] = {}
    for group in backend.list_groups():
        try:
            committed = backend.committed_offsets(group)
        except LogstoreError as err:
            log.debug("no lag for group %r: %s", group, err)
            continue
        for tp, c in committed.items():
            if tp.topic not in ids:
                try:
                    ids[tp.topic] = backend.topic_metadata(tp.topic).topic_id
                except LogstoreError:
                    ids[tp.topic] = "\0gone"
            if c.topic_id is not None and c.topic_id != ids[tp.topic]:
                continue  # committed against a deleted topic of the same name
            key = (tp.topic, tp.partition)
            if key not in ends:
                try:
                    ends[key] = backend.offset_range(tp)[1]
                except LogstoreError:
                    ends[key] = -1  # the topic is gone: no lag to report
            if ends[key] >= 0:
                yield LagSample(group, tp.topic, tp.partition, c.offset, ends[key])
