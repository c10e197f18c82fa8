"""Request-reply over logstore topics: a Requester sends requests and waits for replies,
two Responders in one consumer group answer them (issue 16).

    .venv/bin/python examples/request_reply.py [--data-dir DIR]

Without ``--data-dir`` it runs on a fresh store in a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import logstore
from logstore.patterns.request_reply import (
    RemoteHandlerError,
    Requester,
    RequestTimeoutError,
    Responder,
    header_text,
)
from logstore.types import ConsumerRecord


def price(record: ConsumerRecord) -> tuple[bytes, dict[str, bytes]]:
    """The service: the price of an item (raises for an unknown one)."""
    prices = {b"apple": 3, b"pear": 4, b"plum": 2}
    if record.value not in prices:
        raise KeyError(f"no price for {record.value!r}")
    return str(prices[record.value]).encode(), {"currency": b"EUR"}


def run(data_dir: str) -> None:
    with logstore.open(data_dir) as store:
        store.create_topic("prices", partitions=2, exist_ok=True)
        store.create_topic("quiet", partitions=1, exist_ok=True)  # nobody answers here
        with Responder(store, "prices", "price-service", price).start(), Responder(
            store, "prices", "price-service", price
        ).start(), Requester(store, timeout_ms=10_000) as requester:
            print(f"requester reads its replies from {requester.reply_topic!r}")
            started = time.monotonic()
            reply = requester.request("prices", b"apple")
            took = (time.monotonic() - started) * 1000
            print(
                f"request b'apple' -> reply {reply.value!r} "
                f"({header_text(reply, 'currency')}) in {took:.1f} ms"
            )

            futures = [requester.request_async("prices", item) for item in
                       (b"pear", b"plum") * 50]
            values = [f.result().value for f in futures]
            print(f"100 requests in flight at once -> {len(values)} replies, "
                  f"{values.count(b'4')} x b'4' and {values.count(b'2')} x b'2'")
            assert values == [b"4", b"2"] * 50

            try:
                requester.request("prices", b"kiwi")
            except RemoteHandlerError as err:
                print(f"request b'kiwi' -> error reply: {err.error_class}: {err.error_message}")

            try:
                requester.request("quiet", b"anyone?", timeout_ms=200)
            except RequestTimeoutError as err:
                print(f"request to 'quiet' -> timed out: {err}")
    print("request-reply worked: every request got its own reply")


def main() -> None:
    parser = argparse.ArgumentParser(description="request-reply over logstore topics")
    parser.add_argument("--data-dir", help="the store (default: a fresh temporary one)")
    args = parser.parse_args()
    if args.data_dir:
        run(args.data_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(tmp)


if __name__ == "__main__":
    main()
