"""Child processes for the roll-race tests (``test_roll_races.py``, issue 11 point 5).

Usage: ``python churn_worker.py ROLE DATA_DIR OUT_FILE SECONDS [SEED]``. Every line goes
to ``OUT_FILE`` with one plain ``write`` (so a SIGKILL loses no finished line):

* ``roller``: appends to ``t`` partition 0 and, every 1-3 appends, ``delete_records`` up
  to the log end (a roll, then the old active segment deleted). Prints ``ack P O VALUE``.
* ``follower``: follows ``t`` partition 0 from the log start with ``read_records``,
  ``refresh`` and ``offset_for_timestamp``. An ``OffsetOutOfRangeError`` (retention moved
  the log start past it) moves it to the new start; anything else is ``exc``.
* ``producer``: appends to every partition of ``t`` and applies retention every 200
  appends (old segments deleted past 64 KiB a partition); prints ``ack P O VALUE``.
* ``consumer``: a group member running the README loop (handle, then ``commit()``).
  Prints ``h P O`` for each record; an exception prints ``exc ...`` and ends the process
  with status 3.

The offsets log ``__consumer_offsets-0`` has segments of ``OFFSETS_SEGMENT_BYTES``
(lowered here from 1 MiB to 4 KiB): it rolls every 25-40 commits, and the cleaner runs
after each roll, swapping cleaned segments in under the processes reading it (the windows
of the churn run: rolls, and files replaced under readers).
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback

import logstore
import logstore.metadata
from logstore.errors import OffsetOutOfRangeError

TOPIC = "t"
PARTITIONS = 2
SEGMENT_BYTES = 8 * 1024
"""A roll every ~100 records of ~70 bytes (batches of one record)."""
RETENTION_BYTES = 64 * 1024
OFFSETS_SEGMENT_BYTES = 4096
GROUP = "g"


class Out:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(self, text: str) -> None:
        os.write(self.fd, (text + "\n").encode())


def _exc(out: Out, err: BaseException) -> None:
    where = " < ".join(f"{os.path.basename(f.filename)}:{f.lineno}"
                       for f in reversed(traceback.extract_tb(err.__traceback__)[-6:]))
    out.line(f"exc {type(err).__name__}: {err} ({where})".replace("\n", " "))


def setup(data: str) -> None:
    with logstore.open(data) as store:
        store.create_topic(TOPIC, PARTITIONS, segment_bytes=SEGMENT_BYTES,
                           retention_bytes=RETENTION_BYTES, exist_ok=True)


def roller(data: str, out: Out, seconds: float, rng: random.Random) -> None:
    with logstore.open(data) as store:
        plog = store.partition(TOPIC, 0)
        out.line("ready")
        end = time.monotonic() + seconds
        i = rolls = 0
        while time.monotonic() < end:
            meta = store.append(TOPIC, b"r%d" % i, partition=0)
            out.line(f"ack {meta.partition} {meta.offset} r{i}")
            i += 1
            if i % rng.randint(1, 3) == 0:
                plog.delete_records(plog.log_end_offset)
                rolls += 1
        out.line(f"rolls {rolls}")


def follower(data: str, out: Out, seconds: float, rng: random.Random) -> None:
    with logstore.open(data) as store:
        plog = store.partition(TOPIC, 0)
        out.line("ready")
        end = time.monotonic() + seconds
        position = 0
        reads = 0
        while time.monotonic() < end:
            try:
                what = rng.random()
                if what < 0.1:
                    plog.refresh()
                elif what < 0.2:
                    plog.offset_for_timestamp(0)
                else:
                    records = plog.read_records(position, max_records=50)
                    if records:
                        position = records[-1].offset + 1
                    reads += 1
            except OffsetOutOfRangeError as err:
                position = err.log_start_offset
            except Exception as err:  # what the test counts
                _exc(out, err)
        out.line(f"reads {reads}")


def producer(data: str, out: Out, seconds: float, rng: random.Random) -> None:
    with logstore.open(data) as store:
        out.line("ready")
        end = time.monotonic() + seconds
        tag = rng.randrange(1 << 30)
        i = 0
        while time.monotonic() < end:
            value = f"p{tag}-{i}"
            meta = store.append(TOPIC, value.encode(), partition=i % PARTITIONS)
            out.line(f"ack {meta.partition} {meta.offset} {value}")
            i += 1
            if i % 200 == 0:
                store.apply_retention()  # deletes segments past RETENTION_BYTES
            if rng.random() < 0.02:
                time.sleep(0.005)


def consumer(data: str, out: Out, seconds: float, rng: random.Random) -> None:
    try:
        with logstore.open(data) as store, store.consumer(
            [TOPIC], group_id=GROUP, auto_offset_reset="earliest", enable_auto_commit=False,
            consumer_timeout_ms=int(seconds * 1000),
        ) as consumer:
            out.line("ready")
            end = time.monotonic() + seconds
            for record in consumer:
                out.line(f"h {record.partition} {record.offset}")
                try:
                    consumer.commit()
                except logstore.CommitFailedError:
                    # a rebalance moved on under this live member (others joining or
                    # killed): as a Kafka application does, carry on; the next poll
                    # rejoins, and what was not committed is delivered again
                    out.line("refused")
                if time.monotonic() > end:
                    break
    except Exception as err:  # what the test counts
        _exc(out, err)
        sys.exit(3)


ROLES = {"roller": roller, "follower": follower, "producer": producer, "consumer": consumer}


def main() -> None:
    role, data, path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else random.randrange(1 << 30)
    logstore.metadata.OFFSETS_SEGMENT_BYTES = OFFSETS_SEGMENT_BYTES
    out = Out(path)
    if role == "setup":
        setup(data)
        return
    ROLES[role](data, out, seconds, random.Random(seed))
    out.line("done")


if __name__ == "__main__":
    main()
