"""An idempotent consumer: a side effect outside the log (a "charge" row in SQLite) done
once per order id, though the consumer group delivers the orders twice (issue 16).

    .venv/bin/python examples/idempotent_consumer.py [--data-dir DIR]

The first consumer handles every order but stops before committing its offsets (as if it
crashed); the second one is handed the same orders again and skips them, because their
ids were marked processed in the same SQLite transaction as the charge.
Without ``--data-dir`` it runs on a fresh store in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import logstore
from logstore.patterns.idempotent import MESSAGE_ID, ProcessedKeys, record_id


def consume(store: logstore.Store, keys: ProcessedKeys, commit: bool) -> tuple[int, int]:
    """Handle every order once; returns (delivered, charged)."""
    conn = keys.connect()
    delivered = charged = 0
    with store.consumer(["orders"], group_id="billing", auto_offset_reset="earliest",
                        enable_auto_commit=False, consumer_timeout_ms=500) as consumer:
        for record in consumer:
            delivered += 1
            with keys.once(record_id(record), conn) as first:  # one transaction
                if first:
                    conn.execute(
                        "INSERT INTO charges (order_id, amount) VALUES (?, ?)",
                        (record_id(record), int(record.value or b"0")),
                    )
                    charged += 1
            if commit:
                consumer.commit()
    conn.close()
    return delivered, charged


def run(data_dir: str) -> None:
    with logstore.open(data_dir) as store, ProcessedKeys(
        os.path.join(data_dir, "billing-keys.sqlite")
    ) as keys:
        store.create_topic("orders", partitions=2, exist_ok=True)
        setup = keys.connect()
        setup.execute("CREATE TABLE IF NOT EXISTS charges (order_id TEXT, amount INTEGER)")
        setup.commit()
        with store.producer() as producer:
            for i in range(20):
                producer.send("orders", b"%d" % (10 * i), headers={MESSAGE_ID: b"order-%d" % i})
        print("20 orders sent, each with a message id header")

        delivered, charged = consume(store, keys, commit=False)
        print(f"first consumer:  {delivered} delivered, {charged} charged, "
              "stopped before committing (as if it crashed)")
        delivered_again, charged_again = consume(store, keys, commit=True)
        print(f"second consumer: {delivered_again} delivered again, {charged_again} charged")
        rows, total = setup.execute("SELECT COUNT(*), SUM(amount) FROM charges").fetchone()
        setup.close()
        print(f"charges table:   {rows} rows, total {total} (each order charged once)")
        assert delivered_again == delivered and charged_again == 0 and rows == charged
    print("idempotent consumer worked: redelivered orders were not charged twice")


def main() -> None:
    parser = argparse.ArgumentParser(description="an idempotent consumer")
    parser.add_argument("--data-dir", help="the store (default: a fresh temporary one)")
    args = parser.parse_args()
    if args.data_dir:
        run(args.data_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(tmp)


if __name__ == "__main__":
    main()
