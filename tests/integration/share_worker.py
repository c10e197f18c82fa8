"""A share-group worker process for tests/integration/test_share_groups.py.

    python share_worker.py work DIR TOPIC GROUP LOCK_MS ATTEMPTS STOP_FILE MAX_RECORDS DELAY_MS
            [POISON]
        explicit acknowledgement: for each record prints "rec <partition> <offset> <value>
        <delivery_count>", accepts it (or, for the value POISON, releases it with a
        ValueError), commits, then prints "ack <partition> <offset> <value>" per accepted
        record and "fail <partition> <offset> <error class>" per refused
        acknowledgement; stops (closing the consumer) once STOP_FILE exists
    python share_worker.py hold DIR TOPIC GROUP LOCK_MS ATTEMPTS MAX_RECORDS
        takes up to MAX_RECORDS records, prints their "rec" lines and "holding", then
        sleeps without acknowledging anything (until killed)

Each poll's lines are written at once and flushed.
"""

from __future__ import annotations

import os
import sys
import time

import logstore
from logstore.client.share import AcknowledgeType, ShareConsumer


def work(args: list[str]) -> None:
    directory, topic, group, lock_ms, attempts, stop_file, max_records, delay = args[:8]
    poison = args[8] if len(args) > 8 else None
    with logstore.open(directory) as store:
        consumer = ShareConsumer(
            store, group, [topic], lock_timeout_ms=int(lock_ms),
            max_delivery_attempts=int(attempts), max_records=int(max_records),
            acknowledgement_mode="explicit",
        )
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        while not os.path.exists(stop_file):
            lines = []
            accepted = []
            for r in consumer.poll(100):
                value = (r.value or b"").decode()
                lines.append(f"rec {r.partition} {r.offset} {value} {r.delivery_count}\n")
                if value == poison:
                    consumer.acknowledge(r, AcknowledgeType.RELEASE,
                                         ValueError(f"poison (attempt {r.delivery_count})"))
                else:
                    consumer.acknowledge(r)
                    accepted.append(r)
            if accepted and int(delay):
                time.sleep(int(delay) / 1000)  # the handler's work
            failed = {(e.partition, e.offset): type(e).__name__  # type: ignore[attr-defined]
                      for e in consumer.commit()}
            for r in accepted:
                if (r.partition, r.offset) not in failed:
                    lines.append(f"ack {r.partition} {r.offset} {(r.value or b'').decode()}\n")
            lines += [f"fail {p} {o} {name}\n" for (p, o), name in failed.items()]
            if lines:
                sys.stdout.write("".join(lines))
                sys.stdout.flush()
        consumer.close()


def hold(args: list[str]) -> None:
    directory, topic, group, lock_ms, attempts, max_records = args[:6]
    with logstore.open(directory) as store:
        consumer = ShareConsumer(
            store, group, [topic], lock_timeout_ms=int(lock_ms),
            max_delivery_attempts=int(attempts), max_records=int(max_records),
        )
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        got = consumer.poll(10_000)
        sys.stdout.write("".join(
            f"rec {r.partition} {r.offset} {(r.value or b'').decode()} {r.delivery_count}\n"
            for r in got
        ) + "holding\n")
        sys.stdout.flush()
        while True:
            time.sleep(60)


if __name__ == "__main__":
    {"work": work, "hold": hold}[sys.argv[1]](sys.argv[2:])
