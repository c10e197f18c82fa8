"""Retries, delayed retry topics and a dead-letter topic (logstore.patterns.retry).

A payments handler fails on some records: one fails twice and then works (a flaky
downstream), one always fails (a poison record). The RetryingConsumer retries them
through ``payments.retry.1`` and ``payments.retry.2`` (after 200 and 400 ms) without
holding up the other records, and dead-letters the poison record after 3 deliveries.

    .venv/bin/python examples/retry_dead_letter.py [--data-dir DIR]

Then ``logstore --data-dir DIR dlq list payments.dlq`` shows the dead letter, and
``logstore --data-dir DIR dlq redrive payments.dlq --all`` sends it back.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import logstore
from logstore import headers as h
from logstore.patterns.retry import RetryingConsumer, RetryPolicy
from logstore.types import ConsumerRecord


class FlakyDownstreamError(Exception):
    """What the payment service raises while it is down."""


def main(data_dir: str) -> int:
    start = time.monotonic()
    deliveries: dict[bytes, int] = {}

    def elapsed() -> str:
        return f"{(time.monotonic() - start) * 1000:6.0f} ms"

    def charge(record: ConsumerRecord) -> None:
        value = record.value or b""
        deliveries[value] = deliveries.get(value, 0) + 1
        if value == b"pay-poison" or (value == b"pay-flaky" and deliveries[value] <= 2):
            print(f"{elapsed()}  failed  {value.decode()} (delivery {deliveries[value]})")
            if value == b"pay-poison":
                raise ValueError("card number is not a number")
            raise FlakyDownstreamError("payment service down")
        print(f"{elapsed()}  handled {value.decode()} (delivery {deliveries[value]})")

    with logstore.open(data_dir) as store:
        store.create_topic("payments", partitions=1, exist_ok=True)
        with store.producer() as producer:
            for value in [b"pay-flaky", b"pay-poison", b"pay-1", b"pay-2", b"pay-3"]:
                producer.send("payments", value, key=value, headers={"source": b"shop"})
        print("sent 5 payments: pay-flaky fails twice, pay-poison always fails")

        policy = RetryPolicy(max_attempts=3, delays_ms=(200, 400))
        with RetryingConsumer(store, "charges", ["payments"], charge, policy) as consumer:
            stats = consumer.run(idle_ms=300)
        print(f"done: {stats.handled} handled, {stats.retried} sent to retry topics, "
              f"{stats.dead_lettered} dead-lettered")

        dead = store.read("payments.dlq", 0, 0)
        for record in dead:
            def header(name: str, record: logstore.Record = record) -> str:
                return next((v.decode() for k, v in record.headers if k == name and v), "-")

            print(f"dead letter: {(record.value or b'').decode()} from "
                  f"{header(h.DLQ_ORIGINAL_TOPIC)}-{header(h.DLQ_ORIGINAL_PARTITION)}@"
                  f"{header(h.DLQ_ORIGINAL_OFFSET)} after {header(h.DLQ_ATTEMPTS)} "
                  f"deliveries: {header(h.DLQ_ERROR_CLASS)}: {header(h.DLQ_ERROR_MESSAGE)}")
    ok = (
        stats.dead_lettered == 1 and stats.handled == 4
        and [r.value for r in dead] == [b"pay-poison"] and deliveries[b"pay-flaky"] == 3
    )
    print("OK: the flaky payment was retried until it worked, the poison one is in "
          "payments.dlq" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="a store directory (default: a fresh temporary one)")
    args = parser.parse_args()
    if args.data_dir:
        raise SystemExit(main(args.data_dir))
    with tempfile.TemporaryDirectory() as tmp:
        raise SystemExit(main(tmp))
