"""A RetryingConsumer worker process for tests/integration/test_retry_processes.py.

    python retry_worker.py DIR TOPIC GROUP LEDGER IDLE_MS

Handles TOPIC's records in GROUP: a value starting with ``poison`` always fails, one
starting with ``flaky`` fails its first delivery; every other delivery appends
``handled <value>`` to the LEDGER file (one ``write`` of an O_APPEND file: a SIGKILL
never tears a line). Prints "ready" once it is a member, and exits after IDLE_MS idle.
"""

from __future__ import annotations

import os
import sys
import time

import logstore
from logstore.patterns.retry import RetryingConsumer
from logstore.patterns.retry_policy import RetryPolicy
from logstore.types import ConsumerRecord


def main(directory: str, topic: str, group: str, ledger: str, idle_ms: int) -> None:
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    policy = RetryPolicy(max_attempts=3, delays_ms=(50, 100), max_poll_records=20)
    with logstore.open(directory) as store:
        running: list[RetryingConsumer] = []  # the handler asks it for the attempt

        def handle(record: ConsumerRecord) -> None:
            value = (record.value or b"").decode()
            if value.startswith("poison"):
                raise ValueError(f"poison {value}")
            if value.startswith("flaky") and running[0].current_attempt == 1:
                raise TimeoutError(f"flaky {value}")
            time.sleep(0.001)  # some work: a kill lands mid-run
            os.write(fd, f"handled {value}\n".encode())

        with RetryingConsumer(store, group, [topic], handle, policy) as consumer:
            running.append(consumer)
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            stats = consumer.run(idle_ms=idle_ms)
        sys.stdout.write(f"done {stats.handled} {stats.retried} {stats.dead_lettered}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
