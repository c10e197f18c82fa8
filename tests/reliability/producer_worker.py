"""Child program of ``test_producer_state.py``: an idempotent producer appending to one
partition until it is SIGKILLed.

    python producer_worker.py DIR --pid P --epoch E --sequence S --seed N
                                  [--flush always|interval|never] [--segment-bytes B]
                                  [--snapshot-every K]

Opens ``PartitionLog(DIR)`` and prints "ready". Then, forever, appends one batch of 1-3
records whose values are ``P:E:N`` (producer id, epoch, sequence), base sequence S, S+c,
...: before each append it prints "s SEQ COUNT" (sent), after it "a SEQ COUNT BASE LAST"
(acknowledged), each line flushed. ``--snapshot-every`` lowers the producer-snapshot
interval so that snapshots inside the active segment are written (and raced) often.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from logstore.config import TopicConfig
from logstore.storage import log as log_module
from logstore.storage import producing
from logstore.storage.log import PartitionLog


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--epoch", type=int, default=0)
    parser.add_argument("--sequence", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flush", default="always")
    parser.add_argument("--segment-bytes", type=int, default=2048)
    parser.add_argument("--snapshot-every", type=int, default=7)
    args = parser.parse_args()
    producing.SNAPSHOT_INTERVAL_BATCHES = args.snapshot_every
    log_module.SNAPSHOT_INTERVAL_BATCHES = args.snapshot_every
    rng = random.Random(args.seed)
    config = TopicConfig(flush=args.flush, segment_bytes=args.segment_bytes)
    plog = PartitionLog(args.directory, config)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    sequence = args.sequence
    while True:
        count = rng.randint(1, 3)
        now = time.time_ns() // 1_000_000  # a producer's state expires a day after this
        records = [
            (now, None, b"%d:%d:%d" % (args.pid, args.epoch, sequence + i), ())
            for i in range(count)
        ]
        out.write(f"s {sequence} {count}\n")
        out.flush()
        result = plog.append_records(
            records, producer_id=args.pid, producer_epoch=args.epoch, base_sequence=sequence
        )
        out.write(f"a {sequence} {count} {result.base_offset} {result.last_offset}\n")
        out.flush()
        sequence += count


if __name__ == "__main__":
    main()
