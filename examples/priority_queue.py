"""A priority queue over logstore topics: three levels (high, mid, low), each a topic,
read by one PriorityConsumer, first in strict mode, then weighted 8:3:1 (issue 16).

    .venv/bin/python examples/priority_queue.py [--data-dir DIR]

Without ``--data-dir`` it runs on a fresh store in a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile

import logstore
from logstore.patterns.priority import PriorityConsumer

LEVELS = ["jobs.high", "jobs.mid", "jobs.low"]


def fill(store: logstore.Store, per_level: int) -> None:
    with store.producer() as producer:
        for topic in reversed(LEVELS):  # the lowest level is written first
            for i in range(per_level):
                producer.send(topic, f"{topic}:{i}".encode())


def first_letters(consumer: PriorityConsumer, count: int) -> str:
    out = ""
    while len(out) < count:
        out += "".join(r.topic[5] for r in consumer.poll(timeout_ms=500, max_records=24))
    consumer.commit()
    return out[:count]


def run(data_dir: str) -> None:
    with logstore.open(data_dir) as store:
        for topic in LEVELS:
            store.create_topic(topic, partitions=2, exist_ok=True)
        fill(store, 120)
        print("120 jobs on each level (h, m, l), the low ones written first")

        with PriorityConsumer(store, "strict-workers", LEVELS, mode="strict") as strict:
            order = first_letters(strict, 360)
        print(f"strict:   {order[:48]}... {order[-24:]}")
        assert order == "h" * 120 + "m" * 120 + "l" * 120

        with PriorityConsumer(
            store, "weighted-workers", LEVELS, mode="weighted", weights=(8, 3, 1)
        ) as weighted:
            order = first_letters(weighted, 48)
        counts = {level: order.count(level) for level in "hml"}
        print(f"weighted: {order} -> {counts} (8:3:1, low never starved)")
        assert counts == {"h": 32, "m": 12, "l": 4}
    print("priority queue worked: strict served every higher job first, weighted shared 8:3:1")


def main() -> None:
    parser = argparse.ArgumentParser(description="a priority queue over logstore topics")
    parser.add_argument("--data-dir", help="the store (default: a fresh temporary one)")
    args = parser.parse_args()
    if args.data_dir:
        run(args.data_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(tmp)


if __name__ == "__main__":
    main()
