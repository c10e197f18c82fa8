"""A slow group member for the live-lag browser test: consumes a topic a few records at a
time and commits after each poll, so the group's lag falls over a few seconds.

    python slow_consumer.py DIR TOPIC GROUP BATCH PAUSE_S

Prints "ready" once it has joined the group and "done <count>" when the group has no lag
left (every record of the topic consumed and committed).
"""

from __future__ import annotations

import sys
import time

import logstore
from logstore.types import TopicPartition


def main(data: str, topic: str, group: str, batch: int, pause_s: float) -> None:
    with logstore.open(data) as store:
        info = store.describe_topic(topic).partitions
        ends = {TopicPartition(topic, p.partition): p.log_end_offset for p in info}
        with store.consumer([topic], group_id=group, auto_offset_reset="earliest",
                            enable_auto_commit=False) as consumer:
            consumed = 0
            announced = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                records = consumer.poll(timeout_ms=200, max_records=batch)
                if not announced and consumer.assignment():
                    print("ready", flush=True)
                    announced = True
                if records:
                    consumed += len(records)
                    consumer.commit()
                    time.sleep(pause_s)
                if all((consumer.committed(tp) or 0) >= end for tp, end in ends.items()):
                    break
            print(f"done {consumed}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
