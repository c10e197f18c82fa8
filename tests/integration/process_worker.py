"""A worker process for the multi-process tests: appends or tails, reporting on stdout.

    python process_worker.py append DIR TOPIC WORKER_ID COUNT [BATCH]
        appends COUNT records (value b"<worker>:<seq>", key b"k<seq % 7>") in batches of
        BATCH, printing "ack <partition> <offset> <value>" per record once acknowledged
    python process_worker.py produce DIR TOPIC WORKER_ID COUNT
        sends COUNT records through a Producer (key b"k<seq % 13>"), then flushes;
        prints "ack <partition> <offset> <value>" for each
    python process_worker.py consume DIR TOPIC GROUP IDLE_MS [SESSION_MS] [COMMIT_EVERY]
        a group member: prints "rec <partition> <offset> <value>" for each record, commits
        every COMMIT_EVERY records (printing "commit"), and stops after IDLE_MS without
        records
    python process_worker.py tail DIR TOPIC PARTITION COUNT
        reads until COUNT records were seen, printing "rec <offset> <value> <latency_us>"
        (latency from the timestamp the writer put in the record to when it was read)
    python process_worker.py send-until DIR TOPIC WORKER_ID STOP_FILE MAX_AGE_MS
        sends records (key b"k<seq % 13>") one at a time through a Producer until
        STOP_FILE exists; prints "ack <partition> <offset> <value> <sent_ns> <acked_ns>"
        (time.monotonic_ns() before send() and after result()) for each acknowledged
        record and "err <value> <error class> <monotonic_ns>" for each refused one
    python process_worker.py read-until DIR TOPIC STOP_FILE MAX_AGE_MS
        reads every partition of TOPIC (assign(), no group) from the beginning, printing
        "rec <partition> <offset> <value>" per record and "err <error class>" per typed
        error of a poll, until STOP_FILE exists and a second passed without records
    python process_worker.py member DIR TOPIC GROUP STOP_FILE MAX_AGE_MS
        a group member (commits every 50 records) printing "rec <partition> <offset>
        <value>" per record and "assigned <monotonic_ns> <p,p,...>" per partitions gained, until
        STOP_FILE exists and a second passed without records
    python process_worker.py echo LINE...
        prints "ready" and each LINE in one write and flush, then exits (for the tests of
        the helpers that read workers' output)

Run as a separate program (not multiprocessing) so each worker is a real, independent
process: separate descriptors, locks and page-cache views of the store.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

import logstore
from logstore.types import TopicPartition


def append(directory: str, topic: str, worker: str, count: int, batch: int) -> None:
    out = sys.stdout
    with logstore.open(directory) as store:
        out.write("ready\n")
        out.flush()
        seq = 0
        while seq < count:
            n = min(batch, count - seq)
            records = [
                (f"{worker}:{seq + i}".encode(), f"k{(seq + i) % 7}".encode(), None, None, None)
                for i in range(n)
            ]
            metas = store.append_many(topic, records)
            out.write(
                "".join(
                    f"ack {m.partition} {m.offset} {r[0].decode()}\n"
                    for m, r in zip(metas, records, strict=True)
                )
            )
            out.flush()
            seq += n


def tail(directory: str, topic: str, partition: int, count: int) -> None:
    out = sys.stdout
    with logstore.open(directory) as store:
        log = store.partition(topic, partition)
        out.write("ready\n")
        out.flush()
        offset = 0
        seen = 0
        deadline = time.monotonic() + 60
        while seen < count and time.monotonic() < deadline:
            records = log.read_records(offset) if offset < log.log_end_offset else []
            if not records:
                log.refresh()
                if offset >= log.log_end_offset:
                    time.sleep(0.0002)
                continue
            now_us = time.time_ns() // 1000
            for r in records:
                latency = now_us - r.timestamp * 1000
                out.write(f"rec {r.offset} {(r.value or b'').decode()} {latency}\n")
            out.flush()
            seen += len(records)
            offset = records[-1].offset + 1


def produce(directory: str, topic: str, worker: str, count: int) -> None:
    out = sys.stdout
    with logstore.open(directory) as store, store.producer(linger_ms=2) as producer:
        out.write("ready\n")
        out.flush()
        futures = []
        for seq in range(count):
            value = f"{worker}:{seq}".encode()
            futures.append((value, producer.send(topic, value, key=f"k{seq % 13}".encode())))
        producer.flush()
        for value, future in futures:
            meta = future.result()
            out.write(f"ack {meta.partition} {meta.offset} {value.decode()}\n")
        out.flush()


def consume(
    directory: str, topic: str, group: str, idle_ms: int, session_ms: int, commit_every: int
) -> None:
    out = sys.stdout
    with logstore.open(directory) as store, store.consumer(
        [topic],
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=session_ms,
        consumer_timeout_ms=idle_ms,
    ) as consumer:
        out.write("ready\n")
        out.flush()
        since_commit = 0
        for record in consumer:
            out.write(f"rec {record.partition} {record.offset} {(record.value or b'').decode()}\n")
            since_commit += 1
            if since_commit >= commit_every:
                out.flush()
                consumer.commit()
                out.write("commit\n")
                since_commit = 0
            out.flush()
        consumer.commit()
        out.write("commit\n")
        out.flush()


def send_until(directory: str, topic: str, worker: str, stop: str, max_age_ms: int) -> None:
    out = sys.stdout
    with logstore.open(directory) as store, store.producer(
        linger_ms=0, metadata_max_age_ms=max_age_ms
    ) as producer:
        out.write("ready\n")
        out.flush()
        seq = 0
        while not os.path.exists(stop):
            value = f"{worker}:{seq}"
            seq += 1
            sent = time.monotonic_ns()
            try:
                meta = producer.send(topic, value.encode(), key=f"k{seq % 13}".encode()).result()
            except logstore.LogstoreError as err:
                out.write(f"err {value} {type(err).__name__} {time.monotonic_ns()}\n")
                out.flush()
                time.sleep(0.005)
                continue
            acked = time.monotonic_ns()
            out.write(f"ack {meta.partition} {meta.offset} {value} {sent} {acked}\n")
            out.flush()


def read_until(directory: str, topic: str, stop: str, max_age_ms: int) -> None:
    out = sys.stdout
    with logstore.open(directory) as store, store.consumer(
        auto_offset_reset="earliest", metadata_max_age_ms=max_age_ms
    ) as consumer:
        consumer.assign(
            [TopicPartition(topic, p) for p in range(store.topic(topic).num_partitions)]
        )
        out.write("ready\n")
        out.flush()
        idle_since = time.monotonic()
        while not (os.path.exists(stop) and time.monotonic() - idle_since > 1):
            try:
                records = consumer.poll(timeout_ms=50)
            except logstore.LogstoreError as err:
                out.write(f"err {type(err).__name__}\n")
                out.flush()
                time.sleep(0.01)
                continue
            if records:
                idle_since = time.monotonic()
            _print_records(out, records)


def _print_records(out: TextIO, records: list[logstore.ConsumerRecord]) -> None:
    out.write("".join(f"rec {r.partition} {r.offset} {(r.value or b'').decode()}\n"
                      for r in records))
    out.flush()


def member(directory: str, topic: str, group: str, stop: str, max_age_ms: int) -> None:
    out = sys.stdout

    made: list[logstore.Consumer] = []  # callbacks run in the constructor too

    def assigned(gained: list[TopicPartition]) -> None:
        taken = ",".join(str(tp.partition) for tp in gained)
        out.write(f"assigned {time.monotonic_ns()} {taken}\n")
        out.flush()

    def revoked(_: list[TopicPartition]) -> None:
        out.flush()
        if made:
            made[0].commit()

    with logstore.open(directory) as store, store.consumer(
        [topic],
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=3000,
        metadata_max_age_ms=max_age_ms,
        on_assign=assigned,
        on_revoke=revoked,
    ) as consumer:
        made.append(consumer)
        out.write("ready\n")
        out.flush()
        idle_since = time.monotonic()
        since_commit = 0
        while not (os.path.exists(stop) and time.monotonic() - idle_since > 1):
            records = consumer.poll(timeout_ms=50)
            if records:
                idle_since = time.monotonic()
            _print_records(out, records)
            since_commit += len(records)
            if since_commit >= 50:
                consumer.commit()
                since_commit = 0
        consumer.commit()


def echo(lines: list[str]) -> None:
    sys.stdout.write("".join(f"{line}\n" for line in ["ready", *lines]))
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    if argv[0] == "echo":
        echo(argv[1:])
    elif argv[0] == "append":
        batch = int(argv[5]) if len(argv) > 5 else 1
        append(argv[1], argv[2], argv[3], int(argv[4]), batch)
    elif argv[0] == "produce":
        produce(argv[1], argv[2], argv[3], int(argv[4]))
    elif argv[0] == "consume":
        session = int(argv[5]) if len(argv) > 5 else 3000
        every = int(argv[6]) if len(argv) > 6 else 50
        consume(argv[1], argv[2], argv[3], int(argv[4]), session, every)
    elif argv[0] == "send-until":
        send_until(argv[1], argv[2], argv[3], argv[4], int(argv[5]))
    elif argv[0] == "read-until":
        read_until(argv[1], argv[2], argv[3], int(argv[4]))
    elif argv[0] == "member":
        member(argv[1], argv[2], argv[3], argv[4], int(argv[5]))
    elif argv[0] == "tail":
        tail(argv[1], argv[2], int(argv[3]), int(argv[4]))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
