"""A work queue: four worker processes share ONE partition through a share group.

A classic consumer group gives each partition to one member, so one partition means one
worker. A share group (Kafka's KIP-932, "queues for Kafka") hands out records instead:
each worker takes a few jobs at a time from the same partition, each job locked for the
group's lock timeout and acknowledged on its own. A job that fails is released and
delivered again (to any worker); after ``max_delivery_attempts`` deliveries it goes to
the dead-letter topic ``emails.dlq`` with headers saying where it came from and why.

Here one job is poison: every worker fails on it. It is delivered 3 times, then
dead-lettered, while the other jobs are each processed exactly once.

    python examples/work_queue.py [--data-dir DIR] [--jobs N]
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time

import logstore
from logstore import headers
from logstore.client.share import AcknowledgeType, ShareConsumer

TOPIC, GROUP, WORKERS, ATTEMPTS = "emails", "mailers", 4, 3
POISON = b"job-13 (malformed address)"


def worker(data_dir: str, name: str) -> None:
    """Take jobs until none came for a second; print "done <offset>" per job sent."""
    with logstore.open(data_dir) as store, ShareConsumer(
        store, GROUP, [TOPIC], lock_timeout_ms=5_000, max_delivery_attempts=ATTEMPTS,
        max_records=3, acknowledgement_mode="explicit",
    ) as consumer:
        while records := consumer.poll(timeout_ms=1_000):
            for record in records:
                if record.value == POISON:
                    print(f"{name}: failed {record.value.decode()} "
                          f"(delivery {record.delivery_count})", flush=True)
                    consumer.acknowledge(record, AcknowledgeType.RELEASE,
                                         ValueError("malformed address"))
                else:
                    time.sleep(0.02)  # "sending the email"
                    consumer.acknowledge(record)
            refused = {getattr(err, "offset", None) for err in consumer.commit()}
            print("".join(f"done {r.offset}\n" for r in records
                          if r.value != POISON and r.offset not in refused), end="", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the store (default: a fresh temporary one)")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.data_dir, args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(args.data_dir or tmp, args.jobs)


def run(data_dir: str, jobs: int) -> None:
    with logstore.open(data_dir) as store:
        store.create_topic(TOPIC, 1, exist_ok=True)
        values = [POISON if i == 13 else f"job-{i}".encode() for i in range(jobs)]
        store.append_many(TOPIC, [(v, None, None, None, None) for v in values])
    print(f"produced {jobs} jobs to {TOPIC!r} (ONE partition), job-13 is poison")
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--data-dir", data_dir, "--worker", f"worker-{n}"],
            stdout=subprocess.PIPE, text=True,
        )
        for n in range(WORKERS)
    ]
    done: collections.Counter[int] = collections.Counter()
    for n, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            sys.exit(f"worker-{n} failed (exit status {proc.returncode})")
        mine = [int(line.split()[1]) for line in out.splitlines() if line.startswith("done ")]
        done.update(mine)
        print(f"worker-{n}: sent {len(mine)} emails")
        print("".join(f"  {line}\n" for line in out.splitlines() if "failed" in line), end="")
    with logstore.open(data_dir) as store:
        dead = store.read(f"{TOPIC}.dlq", 0, 0)
    print(f"{len(done)} jobs sent, each exactly once: "
          f"{set(done) == set(range(jobs)) - {13} and max(done.values()) == 1}")
    for record in dead:
        h = {k: (v or b"").decode() for k, v in record.headers}
        print(f"dead letter in {TOPIC}.dlq: {record.value!r} from "
              f"{h[headers.DLQ_ORIGINAL_TOPIC]}-{h[headers.DLQ_ORIGINAL_PARTITION]} offset "
              f"{h[headers.DLQ_ORIGINAL_OFFSET]}, after {h[headers.DLQ_ATTEMPTS]} deliveries: "
              f"{h[headers.DLQ_ERROR_CLASS]}: {h[headers.DLQ_ERROR_MESSAGE]}")
    ok = set(done) == set(range(jobs)) - {13} and len(dead) == 1
    print("work queue OK" if ok else "work queue FAILED")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
