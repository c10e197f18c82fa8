"""Worker processes of the messaging-pattern tests (request-reply, idempotent consumer).

    python rr_worker.py respond DATA TOPIC GROUP STOP_FILE
        a Responder (group GROUP) answering "<request value>|<pid>" until STOP_FILE
        exists; prints "ready" once it owns request partitions, "handled <n>" at the end
    python rr_worker.py request DATA TOPIC REPLY_TOPIC PARTITION NAME COUNT
        a Requester reading partition PARTITION of REPLY_TOPIC sends COUNT concurrent
        requests "NAME:<i>" at once and waits for every reply; prints
        "sent <cid> <value>" per request, "reply <cid> <partition> <value>" per reply,
        "error <cid> <class>" per failed request and "dropped <n>" at the end
    python rr_worker.py idem DATA TOPIC GROUP KEYS EFFECTS CRASH_AT MODE
        a consumer of TOPIC (group GROUP) doing one side effect per record once
        (ProcessedKeys in the SQLite file KEYS), committing after each poll; with
        CRASH_AT = n > 0 it SIGKILLs itself at the n-th record of its run. MODE "file":
        the side effect appends "<id>" to the file EFFECTS, and the kill comes after the
        mark, before the commit; MODE "sql": the side effect inserts into table
        effects of KEYS in the mark's transaction (once(id, conn)), and the kill comes
        after the side effect, before that transaction commits. Prints "done <n>" when
        it stops after a second without records.
    python rr_worker.py priority DATA GROUP
        a strict PriorityConsumer of levels "high" and "low" (group GROUP): prints "ready"
        once it owns one partition of each (the other member joined), then
        "rec <topic> <partition> <offset>" per record handed out (committing after each
        poll), and stops after a second without records

Run as separate programs so each is a real, independent process.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import logstore
from logstore.patterns.idempotent import ProcessedKeys, record_id
from logstore.patterns.priority import PriorityConsumer
from logstore.patterns.request_reply import Requester, RequestReplyError, Responder
from logstore.types import ConsumerRecord


def respond(data: str, topic: str, group: str, stop_file: str) -> None:
    pid = str(os.getpid()).encode()

    def handler(record: ConsumerRecord) -> bytes:
        return (record.value or b"") + b"|" + pid

    with logstore.open(data) as store, Responder(store, topic, group, handler) as responder:
        while not responder.assignment():  # joined the group and owns partitions
            responder.poll_once(50)
        print("ready", flush=True)
        while not os.path.exists(stop_file):
            responder.poll_once(50)
        print(f"handled {responder.handled}", flush=True)


def request(data: str, topic: str, reply_topic: str, partition: int, name: str, count: int) -> None:
    with logstore.open(data) as store, Requester(
        store, reply_topic=reply_topic, reply_partition=partition, timeout_ms=25_000
    ) as requester:
        print("ready", flush=True)
        futures = []
        lines = []
        for i in range(count):
            value = f"{name}:{i}"
            futures.append(requester.request_async(topic, value.encode()))
            lines.append(f"sent {futures[-1].correlation_id} {value}")
        for future in futures:
            try:
                reply = future.result()
            except RequestReplyError as err:
                lines.append(f"error {err.correlation_id} {type(err).__name__}")
                continue
            cid = next(v for k, v in reply.headers if k == "logstore.correlation.id")
            assert cid is not None and reply.value is not None
            lines.append(f"reply {cid.decode()} {reply.partition} {reply.value.decode()}")
        lines.append(f"dropped {requester.dropped}")
        print("\n".join(lines), flush=True)


def idem(data: str, topic: str, group: str, keys_file: str, effects: str, crash_at: int,
         mode: str) -> None:
    seen = 0
    with logstore.open(data) as store, ProcessedKeys(keys_file) as keys, store.consumer(
        [topic], group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    ) as consumer:
        conn = keys.connect()
        conn.execute("CREATE TABLE IF NOT EXISTS effects (id TEXT)")  # no key: repeats show
        conn.commit()
        print("ready", flush=True)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            records = consumer.poll(timeout_ms=100, max_records=7)
            if records:
                idle_since = time.monotonic()
            for record in records:
                seen += 1
                rid = record_id(record)
                if mode == "file":
                    with keys.once(rid) as first:
                        if first:
                            with open(effects, "a") as out:
                                out.write(rid + "\n")
                                out.flush()
                                os.fsync(out.fileno())
                else:
                    with keys.once(rid, conn) as first:
                        if first:
                            conn.execute("INSERT INTO effects (id) VALUES (?)", (rid,))
                        if seen == crash_at:  # side effect done, transaction not committed
                            os.kill(os.getpid(), signal.SIGKILL)
                if seen == crash_at:  # processed and marked, offset not committed
                    os.kill(os.getpid(), signal.SIGKILL)
            if records:
                consumer.commit()
        conn.close()
    print(f"done {seen}", flush=True)


def priority(data: str, group: str) -> None:
    with logstore.open(data) as store, PriorityConsumer(store, group, ["high", "low"]) as c:
        while sorted(tp.topic for tp in c.assignment()) != ["high", "low"]:
            c.poll(timeout_ms=20)
        print("ready", flush=True)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            records = c.poll(timeout_ms=100, max_records=10)
            if records:
                idle_since = time.monotonic()
                c.commit()
                lines = [f"rec {r.topic} {r.partition} {r.offset}" for r in records]
                print("\n".join(lines), flush=True)


def main(argv: list[str]) -> None:
    kind, args = argv[0], argv[1:]
    if kind == "respond":
        respond(*args)
    elif kind == "request":
        request(args[0], args[1], args[2], int(args[3]), args[4], int(args[5]))
    elif kind == "priority":
        priority(*args)
    elif kind == "idem":
        idem(*args[:5], int(args[5]), args[6])
    else:
        raise SystemExit(f"unknown worker kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
