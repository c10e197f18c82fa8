"""A process of the cross-process compaction test (``test_compaction_processes.py``).

    python -m tests.integration.compaction_worker write DATA TOPIC NAME COUNT KEYS
    python -m tests.integration.compaction_worker compact DATA TOPIC STOPFILE
    python -m tests.integration.compaction_worker read DATA TOPIC STOPFILE [SLOW]

``write`` appends COUNT updates ``NAME:<seq>`` over KEYS keys (one record per append,
fsynced). ``compact`` runs the cleaner on partition 0 over and over until STOPFILE
exists. ``read`` is a consumer without a group that starts at offset 0 and reads until
STOPFILE exists and it has caught up with the log end (SLOW: 10 records a poll and a
pause after each, so the cleaner removes records ahead of it); it checks every record:
offsets strictly increase, and a key's sequence numbers from one writer never go back.
Each prints one JSON line at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time

import logstore


def write(data: str, topic: str, name: str, count: int, keys: int) -> dict[str, object]:
    with logstore.open(data, maintenance=False) as store:
        for seq in range(count):
            store.append(topic, f"{name}:{seq}".encode(), key=b"k%d" % (seq % keys))
    return {"written": count}


def compact(data: str, topic: str, stop: str) -> dict[str, object]:
    runs = changed = 0
    with logstore.open(data, maintenance=False) as store:
        plog = store.partition(topic, 0)
        while not os.path.exists(stop):
            stats = plog.compact(force=True)
            runs += 1
            if stats is not None and stats.records_out < stats.records_in:
                changed += 1
            time.sleep(0.005)
    return {"runs": runs, "changed": changed}


def read(data: str, topic: str, stop: str, slow: bool) -> dict[str, object]:
    problems: list[str] = []
    seen = 0
    last_offset = -1
    last_seq: dict[tuple[bytes | None, str], int] = {}
    with logstore.open(data, maintenance=False) as store, store.consumer() as consumer:
        tp = logstore.TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        while True:
            stopping = os.path.exists(stop)
            records = consumer.poll(timeout_ms=50, max_records=10 if slow else 200)
            if slow:
                time.sleep(0.02)
            for r in records:
                seen += 1
                if r.offset <= last_offset:
                    problems.append(f"offset {r.offset} after {last_offset}")
                last_offset = r.offset
                writer, seq = (r.value or b"").decode().split(":")
                key = (r.key, writer)
                if int(seq) <= last_seq.get(key, -1):
                    problems.append(f"{r.key!r} from {writer}: {seq} after {last_seq[key]}")
                last_seq[key] = int(seq)
            end = store.partition(topic, 0).log_end_offset
            if stopping and not records and consumer.position(tp) >= end:
                break
    return {"seen": seen, "problems": problems[:10], "position": last_offset + 1}


def main() -> None:
    mode, data, topic, *rest = sys.argv[1:]
    if mode == "write":
        out = write(data, topic, rest[0], int(rest[1]), int(rest[2]))
    elif mode == "compact":
        out = compact(data, topic, rest[0])
    else:
        out = read(data, topic, rest[0], len(rest) > 1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
