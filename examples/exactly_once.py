"""Exactly-once consume-transform-produce with a transactional producer (issue 16).

    .venv/bin/python examples/exactly_once.py [--data-dir DIR]

Orders are read from ``orders`` (read_committed, group ``billing``), each is turned into
an invoice in ``invoices``, and the invoices and the input offsets commit in one
transaction. Half-way, the worker "crashes" with a transaction open (its records are
written, not committed); a new instance with the same transactional id fences it, the
open transaction is aborted, and the new instance carries on from the last committed
offsets. A read_committed reader then sees every invoice exactly once.

Without ``--data-dir`` it runs on a fresh store in a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile

import logstore
from logstore import Consumer, ProducerFencedError, TopicPartition, TransactionalProducer

ORDERS = 40


def worker(store: logstore.Store, *, crash_after: int | None = None) -> int:
    """Process orders until none is left (or "crash" after ``crash_after`` transactions,
    leaving the last one open); returns the transactions committed."""
    producer = TransactionalProducer(store, "billing-worker")
    producer.init_transactions()  # fences an older instance, aborts its open transaction
    consumer = Consumer(
        store, ["orders"], group_id="billing", auto_offset_reset="earliest",
        enable_auto_commit=False, isolation_level="read_committed", max_poll_records=5,
    )
    committed = 0
    while True:
        records = consumer.poll(timeout_ms=200)
        if not records:
            break
        producer.begin_transaction()
        for r in records:
            producer.send("invoices", b"invoice for " + (r.value or b""), key=r.key)
        producer.send_offsets_to_transaction(
            {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records},
            consumer.group_metadata(),
        )
        if crash_after is not None and committed == crash_after:
            producer.flush()  # the records are in the log, the transaction still open
            print(f"worker 1 crashes with a transaction of {len(records)} invoices open")
            consumer.close()
            return committed  # (the producer is simply abandoned, as by a crash)
        producer.commit_transaction()
        committed += 1
    consumer.close()
    producer.close()
    return committed


def run(data_dir: str) -> None:
    with logstore.open(data_dir) as store:
        store.create_topic("orders", partitions=2, exist_ok=True)
        store.create_topic("invoices", partitions=2, exist_ok=True)
        with logstore.Producer(store) as producer:
            for i in range(ORDERS):
                producer.send("orders", b"order-%d" % i, key=b"customer-%d" % (i % 7))
        first = worker(store, crash_after=3)
        print(f"worker 1 committed {first} transactions")
        zombie = TransactionalProducer(store, "billing-worker")
        zombie.init_transactions()
        second = worker(store)  # fences `zombie` too: init_transactions() bumps the epoch
        print(f"worker 2 committed {second} transactions")
        try:
            zombie.begin_transaction()
            zombie.send("invoices", b"duplicate", key=b"x")
            zombie.commit_transaction()
            print("the zombie committed: exactly-once is broken")
        except ProducerFencedError:
            print("a zombie instance with the same transactional id was fenced")

        reader = Consumer(store, auto_offset_reset="earliest", isolation_level="read_committed")
        reader.assign([TopicPartition("invoices", p) for p in range(2)])
        invoices: list[bytes] = []
        while batch := reader.poll(timeout_ms=200):
            invoices += [r.value or b"" for r in batch]
        reader.close()
        raw = sum(store.topic("invoices").partition(p).log_end_offset for p in range(2))
        expected = sorted(b"invoice for order-%d" % i for i in range(ORDERS))
        print(f"{len(invoices)} invoices read_committed ({raw} offsets in the log, "
              f"aborted records and transaction markers included)")
        if sorted(invoices) != expected:
            raise SystemExit("invoices differ from the orders: exactly-once is broken")
        print("exactly-once worked: every order has exactly one invoice")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="a store directory (default: a temporary one)")
    args = parser.parse_args()
    if args.data_dir:
        run(args.data_dir)
        return
    with tempfile.TemporaryDirectory(prefix="logstore-eos-") as tmp:
        run(tmp)


if __name__ == "__main__":
    main()
