"""Child programs for the kill -9 and concurrency reliability tests (issue 5 (a), (e)).

Run as a separate program so every worker is a real process: its own descriptors, locks
and page-cache view of the store, killed with a real SIGKILL.

    python crash_worker.py run DIR --seed S --run R [--ops N] [--kill-at I]
                                   [--linger-ms MS] [--close] [--step-clock]
        The crash workload. Prints "opening", opens the store, creates (exist_ok) the
        topic, opens every partition and the committed offsets (so any recovery happens
        before) and prints "ready". Then, N times (forever without --ops), one of:
        store.append, store.append_many, a Producer (send, flush, future.result()), a
        group consumer reading and committing its positions, or a direct
        store.offsets.commit. After each call returns it prints one line per
        acknowledged record, "a PARTITION OFFSET DIGEST RUN SEQ", or per acknowledged
        commit, "c GROUP P:OFFSET,P:OFFSET...", and flushes. With --close it closes the
        store at the end and prints "io COUNT" (the I/O operations it made) and "done".
        --kill-at I (or LOGSTORE_KILL_AT=I) SIGKILLs the process itself just before its
        I/O operation number I, after printing "killat I KIND PATH". --step-clock uses
        a clock that moves 1 ms per reading, so the operations are the same every run.
    python crash_worker.py serve SOCKET_FD
        A fork server for the kill loops (saves Python's ~0.3 s start per cycle): reads a
        JSON command and a pipe from the Unix socket, forks a child that runs the crash
        workload with the pipe as stdout, answers "pid PID", reaps it and answers
        "exit PID CODE".
    python crash_worker.py write DIR --writer W --count N --seed S
        A concurrent writer: N records by append, append_many and a Producer; prints the
        ack lines, then "done".
    python crash_worker.py tail DIR --reader R --expect N --seed S [--timeout T]
        A tailing reader: reads every partition up to its current end until N records
        were seen; checks each payload, that offsets run on per partition with no gap,
        and at the end that a sample of what it saw reads back unchanged. Prints "bad ..."
        lines, "view P COUNT SHA256" per partition and a "summary ..." line.
    python crash_worker.py hold DIR [--exclusive] [--append]
        Opens the store, prints "ready" and keeps it open (appending with --append) until
        killed.

Payloads verify themselves: ``LSR1 RUN SEQ SHA256 BODY``, the hash covering run, seq,
key and body, so a torn, foreign or phantom record is recognised without the ledger.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import IO, Any

import logstore
from logstore.storage.files import Buffer, FileHandle, FileSystem
from logstore.types import TopicPartition

TOPIC = "crash"
PARTITIONS = 4
SEGMENT_BYTES = 16 * 1024
MAX_BODY = 8 * 1024
GROUP_CONSUMER = "gc"  # a Consumer (assign + group_id) commits its positions
GROUP_DIRECT = "gd"  # store.offsets.commit with offsets chosen at random, never backwards
GROUPS = (GROUP_CONSUMER, GROUP_DIRECT)
CONC_TOPIC = "conc"
CONC_PARTITIONS = 3
CONC_SEGMENT_BYTES = 32 * 1024
CONC_MAX_BODY = 2048
MAGIC = b"LSR1"


# ---------------------------------------------------------------------- payloads


def _key_mark(key: bytes | None) -> bytes:
    return b"-" if key is None else b"+%d:" % len(key) + key


def make_value(run: int, seq: int, key: bytes | None, body: bytes) -> bytes:
    """A self-verifying record value for record ``seq`` of worker run ``run``."""
    h = hashlib.sha256(b"%d %d " % (run, seq) + _key_mark(key) + body).hexdigest()
    return b"%s %d %d %s %s" % (MAGIC, run, seq, h.encode(), body)


def check_value(key: bytes | None, value: bytes | None) -> tuple[int, int]:
    """``(run, seq)`` of a payload made by :func:`make_value`.

    Raises:
        ValueError: the record is not one of ours, or its body or key was changed.
    """
    if value is None:
        raise ValueError("null value")
    parts = value.split(b" ", 4)
    if len(parts) != 5 or parts[0] != MAGIC:
        raise ValueError(f"not a test payload: {value[:40]!r}")
    run, seq = int(parts[1]), int(parts[2])
    want = hashlib.sha256(b"%d %d " % (run, seq) + _key_mark(key) + parts[4]).hexdigest()
    if parts[3].decode("ascii", "replace") != want:
        raise ValueError(f"payload of run {run} seq {seq} fails its sha256")
    return run, seq


def digest(key: bytes | None, value: bytes | None) -> str:
    """What an ack line names a record by: a hash of its key and value."""
    h = hashlib.blake2b(digest_size=12)
    h.update(_key_mark(key))
    h.update(b"-" if value is None else b"+" + value)
    return h.hexdigest()


def ack_line(meta: logstore.RecordMetadata, key: bytes | None, value: bytes, run: int,
             seq: int) -> str:
    """The line that tells the parent a record is acknowledged."""
    return f"a {meta.partition} {meta.offset} {digest(key, value)} {run} {seq}\n"


def commit_line(group: str, offsets: dict[TopicPartition, int]) -> str:
    return f"c {group} " + ",".join(f"{tp.partition}:{o}" for tp, o in offsets.items()) + "\n"


def random_record(
    rng: random.Random, run: int, seq: int, max_body: int
) -> tuple[bytes | None, bytes]:
    roll = rng.random()
    key = None if roll < 0.3 else (b"" if roll < 0.35 else b"k%d" % rng.randrange(50))
    body = rng.randbytes(rng.randint(0, max_body))
    return key, make_value(run, seq, key, body)


# ---------------------------------------------------------------------- KillAt


class KillAtFS(FileSystem):
    """The real file system, counting every operation that changes the disk (writes,
    truncates, fsyncs, directory fsyncs, renames, unlinks, mkdir/rmdir and creating
    opens); at operation ``kill_at`` it SIGKILLs its own process before doing it."""

    def __init__(self, kill_at: int | None, out: IO[str]) -> None:
        self.kill_at = kill_at
        self.count = 0
        self._out = out
        self._mutex = threading.Lock()

    def _tick(self, kind: str, path: str) -> None:
        with self._mutex:
            i = self.count
            self.count += 1
        if i == self.kill_at:
            self._out.write(f"killat {i} {kind} {path}\n")
            self._out.flush()
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # SIGKILL cannot be caught: never reached

    def _open(self, path: str, flags: int) -> int:
        if flags & os.O_CREAT:
            self._tick("create", path)
        return super()._open(path, flags)

    def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
        self._tick("write", handle.path)
        return super()._pwritev(handle, parts, position)

    def _ftruncate(self, handle: FileHandle, size: int) -> None:
        self._tick("truncate", handle.path)
        super()._ftruncate(handle, size)

    def _fsync(self, handle: FileHandle) -> None:
        self._tick("fsync", handle.path)
        super()._fsync(handle)

    def _fsync_dir(self, path: str) -> None:
        self._tick("fsync_dir", path)
        super()._fsync_dir(path)

    def _rename(self, src: str, dst: str) -> None:
        self._tick("rename", f"{src}->{dst}")
        super()._rename(src, dst)

    def _unlink(self, path: str) -> None:
        self._tick("unlink", path)
        super()._unlink(path)

    def _mkdir(self, path: str) -> None:
        self._tick("mkdir", path)
        super()._mkdir(path)

    def _rmdir(self, path: str) -> None:
        self._tick("rmdir", path)
        super()._rmdir(path)


# ---------------------------------------------------------------------- crash workload


class StepClock:
    """A clock that moves 1 ms per reading: with it the workload's I/O operations are
    the same on every run (time-index entries depend on timestamps), as the KillAt sweep
    needs."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._mutex = threading.Lock()

    def now_ms(self) -> int:
        with self._mutex:
            self._now += 1
            return self._now


def workload(
    directory: str,
    *,
    seed: int,
    run: int,
    ops: int | None = None,
    kill_at: int | None = None,
    linger_ms: int = 0,
    close: bool = False,
    step_clock: bool = False,
    out: IO[str],
) -> None:
    rng = random.Random(seed)
    fs = KillAtFS(kill_at, out)
    out.write("opening\n")
    out.flush()
    store = logstore.open(directory, fs=fs, clock=StepClock() if step_clock else None)
    store.create_topic(
        TOPIC, PARTITIONS, exist_ok=True, segment_bytes=SEGMENT_BYTES, flush="always"
    )
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    logs = [store.partition(TOPIC, p) for p in range(PARTITIONS)]  # recovery happens here
    offsets = store.offsets
    direct = {tp: c.offset for tp, c in offsets.group_offsets(GROUP_DIRECT).items()}
    consumer = store.consumer(
        group_id=GROUP_CONSUMER, auto_offset_reset="earliest", enable_auto_commit=False
    )
    consumer.assign(tps)
    producer = store.producer(linger_ms=linger_ms)
    out.write("ready\n")
    out.flush()
    seq = 0
    step = 0
    while ops is None or step < ops:
        step += 1
        roll = rng.random()
        lines: list[str] = []
        if roll < 0.35:  # store.append, to a chosen partition or by key
            key, value = random_record(rng, run, seq, MAX_BODY)
            partition = rng.randrange(PARTITIONS) if rng.random() < 0.8 else None
            meta = store.append(TOPIC, value, key=key, partition=partition)
            lines.append(ack_line(meta, key, value, run, seq))
            seq += 1
        elif roll < 0.6:  # store.append_many: one batch per partition
            items = []
            for _ in range(rng.randint(1, 5)):
                key, value = random_record(rng, run, seq, MAX_BODY // 2)
                items.append((seq, key, value, rng.randrange(PARTITIONS)))
                seq += 1
            metas = store.append_many(TOPIC, [(v, k, None, p, None) for _, k, v, p in items])
            for (s, key, value, _), meta in zip(items, metas, strict=True):
                lines.append(ack_line(meta, key, value, run, s))
        elif roll < 0.85:  # a Producer: send, flush, then each future's result
            sent = []
            for _ in range(rng.randint(1, 6)):
                key, value = random_record(rng, run, seq, MAX_BODY // 2)
                partition = rng.randrange(PARTITIONS) if rng.random() < 0.7 else None
                future = producer.send(TOPIC, value, key, partition=partition)
                sent.append((seq, key, value, future))
                seq += 1
            producer.flush()
            for s, key, value, future in sent:
                meta = future.result(timeout=30)
                lines.append(ack_line(meta, key, value, run, s))
        elif roll < 0.95:  # a group consumer reads on and commits its positions
            for record in consumer.poll(timeout_ms=0, max_records=rng.randint(1, 40)):
                try:
                    check_value(record.key, record.value)
                except ValueError as err:
                    lines.append(f"bad {record.partition} {record.offset} {err}\n")
            chosen = {tp: consumer.position(tp) for tp in tps}
            consumer.commit(chosen)
            lines.append(commit_line(GROUP_CONSUMER, chosen))
        else:  # store.offsets.commit: a random offset between the last commit and the end
            chosen = {}
            for tp, plog in zip(tps, logs, strict=True):
                if rng.random() < 0.6:
                    plog.refresh()
                    chosen[tp] = rng.randint(direct.get(tp, 0), plog.log_end_offset)
            if chosen:
                offsets.commit(GROUP_DIRECT, {tp: (o, "") for tp, o in chosen.items()})
                direct.update(chosen)
                lines.append(commit_line(GROUP_DIRECT, chosen))
        if lines:
            out.write("".join(lines))
            out.flush()
    if close:
        producer.close()
        consumer.close()
        store.close()
        out.write(f"io {fs.count}\ndone\n")
        out.flush()


def serve(sock_fd: int) -> None:
    """The fork server: one child at a time, commands and pipes over a SEQPACKET socket."""
    sock = socket.socket(fileno=sock_fd)
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 2)
        if not msg:
            return
        cmd = json.loads(msg)
        pid = os.fork()
        if pid == 0:  # the child: stdout is the parent's pipe
            code = 70
            try:
                sock.close()
                os.dup2(fds[0], 1)
                os.close(fds[0])
                if len(fds) > 1:
                    os.dup2(fds[1], 2)
                    os.close(fds[1])
                out = open(1, "w", closefd=False, encoding="utf-8")  # noqa: SIM115
                workload(cmd["directory"], out=out, **cmd["options"])
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sock.send(f"pid {pid}".encode())
        _, status = os.waitpid(pid, 0)
        sock.send(f"exit {pid} {os.waitstatus_to_exitcode(status)}".encode())


# ---------------------------------------------------------------------- concurrency


def write(directory: str, writer: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    out = sys.stdout
    run = 1000 + writer
    linger_ms = rng.choice([0, 2])
    with logstore.open(directory) as store, store.producer(linger_ms=linger_ms) as producer:
        out.write("ready\n")
        out.flush()
        seq = 0
        while seq < count:
            lines = []
            roll = rng.random()
            if roll < 0.4:
                key, value = random_record(rng, run, seq, CONC_MAX_BODY)
                partition = rng.randrange(CONC_PARTITIONS)
                meta = store.append(CONC_TOPIC, value, key=key, partition=partition)
                lines.append(ack_line(meta, key, value, run, seq))
                seq += 1
            elif roll < 0.7:
                items = []
                for _ in range(min(rng.randint(1, 8), count - seq)):
                    key, value = random_record(rng, run, seq, CONC_MAX_BODY)
                    items.append((seq, key, value, rng.randrange(CONC_PARTITIONS)))
                    seq += 1
                metas = store.append_many(
                    CONC_TOPIC, [(v, k, None, p, None) for _, k, v, p in items]
                )
                for (s, key, value, _), meta in zip(items, metas, strict=True):
                    lines.append(ack_line(meta, key, value, run, s))
            else:
                sent = []
                for _ in range(min(rng.randint(1, 8), count - seq)):
                    key, value = random_record(rng, run, seq, CONC_MAX_BODY)
                    sent.append((seq, key, value, producer.send(
                        CONC_TOPIC, value, key, partition=rng.randrange(CONC_PARTITIONS))))
                    seq += 1
                producer.flush()
                for s, key, value, future in sent:
                    meta = future.result(timeout=60)
                    lines.append(ack_line(meta, key, value, run, s))
            out.write("".join(lines))
            out.flush()
    out.write("done\n")
    out.flush()


def tail(directory: str, reader: int, expect: int, seed: int, timeout: float) -> None:
    """Read every partition up to its current end, again and again, checking all seen.

    An error from a read is reported ("bad error ...") and the reader goes on with a
    freshly opened store, from where it was, as an application would."""
    rng = random.Random(seed)
    out = sys.stdout
    bad: list[str] = []
    seen: dict[int, list[str]] = {p: [] for p in range(CONC_PARTITIONS)}  # digests by offset
    last: dict[tuple[int, int], int] = {}  # (partition, writer run) -> last seq seen
    tps = [TopicPartition(CONC_TOPIC, p) for p in range(CONC_PARTITIONS)]
    how = "consumer.poll" if reader % 3 == 0 else "store.read"

    def open_store() -> tuple[logstore.Store, Any]:
        store = logstore.open(directory)
        if how == "store.read":
            return store, None
        consumer = store.consumer(auto_offset_reset="earliest", enable_auto_commit=False)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, len(seen[tp.partition]))
        return store, consumer

    store, consumer = open_store()
    out.write("ready\n")
    out.flush()
    deadline = time.monotonic() + timeout
    total = polls = errors = 0
    while sum(map(len, seen.values())) < expect and time.monotonic() < deadline:
        batch: list[tuple[int, Any]] = []
        p = -1
        try:
            if consumer is not None:
                batch = [(r.partition, r) for r in consumer.poll(timeout_ms=5)]
            else:
                for p in range(CONC_PARTITIONS):
                    pos = len(seen[p])
                    records = store.read(CONC_TOPIC, p, pos, max_records=rng.randint(1, 300))
                    if records and records[0].offset != pos:
                        bad.append(
                            f"bad read: reader {reader} asked partition {p} for offset {pos} "
                            f"and got {len(records)} records from offset {records[0].offset}"
                        )
                    batch += [(p, r) for r in records]
        except logstore.LogstoreError as err:
            where = f"{p}:{len(seen[p])}" if p >= 0 else "a partition"
            bad.append(
                f"bad error: reader {reader} ({how}) reading {where}: "
                f"{type(err).__name__}: {err}"
            )
            errors += 1
            if errors > 200:
                break
            if consumer is not None:
                consumer.close()
            store.close()
            store, consumer = open_store()
            continue
        polls += 1
        if not batch:
            time.sleep(0.001)
            continue
        for p, r in batch:
            expected_offset = len(seen[p])
            if r.offset != expected_offset:
                bad.append(
                    f"bad gap: reader {reader} ({how}) got {p}:{r.offset} where "
                    f"{p}:{expected_offset} was next"
                )
                if r.offset < expected_offset:
                    continue  # already seen: not appended again
            try:
                run, seq = check_value(r.key, r.value)
            except ValueError as err:
                bad.append(f"bad payload: reader {reader} ({how}) at {p}:{r.offset}: {err}")
                run, seq = -1, -1
            if run >= 0:
                if seq <= last.get((p, run), -1):
                    bad.append(
                        f"bad order: reader {reader} ({how}) at {p}:{r.offset}: writer run "
                        f"{run} seq {seq} after seq {last[(p, run)]}"
                    )
                last[(p, run)] = seq
            while len(seen[p]) < r.offset:
                seen[p].append("?")
            seen[p].append(digest(r.key, r.value))
            total += 1
    # what was seen must still be there, unchanged
    rechecked = 0
    for p in range(CONC_PARTITIONS):
        n = len(seen[p])
        sample = range(n) if n <= 400 else rng.sample(range(n), 400)
        for offset in sample:
            if seen[p][offset] == "?":
                continue  # never read (a gap, reported above)
            records = store.read(CONC_TOPIC, p, offset, max_records=1)
            if not records or records[0].offset != offset:
                bad.append(f"bad vanished: reader {reader} saw {p}:{offset} earlier")
            elif digest(records[0].key, records[0].value) != seen[p][offset]:
                bad.append(f"bad changed: {p}:{offset} is not what reader {reader} saw")
            rechecked += 1
    if consumer is not None:
        consumer.close()
    store.close()
    for line in bad[:50]:
        out.write(line + "\n")
    for p in range(CONC_PARTITIONS):
        view = hashlib.sha256("".join(seen[p]).encode()).hexdigest()
        out.write(f"view {p} {len(seen[p])} {view}\n")
    out.write(
        f"summary reader={reader} read={total} bad={len(bad)} errors={errors} "
        f"rechecked={rechecked} polls={polls}\n"
    )
    out.flush()


def hold(directory: str, exclusive: bool, append: bool) -> None:
    out = sys.stdout
    store = logstore.open(directory, exclusive=exclusive)
    out.write("ready\n")
    out.flush()
    seq = 0
    rng = random.Random(seq)
    while True:
        if append:
            key, value = random_record(rng, 999, seq, 512)
            meta = store.append(CONC_TOPIC, value, key=key, partition=seq % CONC_PARTITIONS)
            out.write(ack_line(meta, key, value, 999, seq))
            out.flush()
            seq += 1
        else:
            time.sleep(0.05)


# ---------------------------------------------------------------------- main


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="crash_worker.py")
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("run")
    p.add_argument("directory")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--ops", type=int, default=None)
    p.add_argument("--kill-at", type=int, default=None)
    p.add_argument("--linger-ms", type=int, default=0)
    p.add_argument("--close", action="store_true")
    p.add_argument("--step-clock", action="store_true")
    p = sub.add_parser("serve")
    p.add_argument("sock_fd", type=int)
    p = sub.add_parser("write")
    p.add_argument("directory")
    p.add_argument("--writer", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p = sub.add_parser("tail")
    p.add_argument("directory")
    p.add_argument("--reader", type=int, required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--timeout", type=float, default=120.0)
    p = sub.add_parser("hold")
    p.add_argument("directory")
    p.add_argument("--exclusive", action="store_true")
    p.add_argument("--append", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "run":
        kill_at = args.kill_at
        if kill_at is None and os.environ.get("LOGSTORE_KILL_AT"):
            kill_at = int(os.environ["LOGSTORE_KILL_AT"])
        workload(
            args.directory, seed=args.seed, run=args.run, ops=args.ops, kill_at=kill_at,
            linger_ms=args.linger_ms, close=args.close, step_clock=args.step_clock,
            out=sys.stdout,
        )
    elif args.mode == "serve":
        serve(args.sock_fd)
    elif args.mode == "write":
        write(args.directory, args.writer, args.count, args.seed)
    elif args.mode == "tail":
        tail(args.directory, args.reader, args.expect, args.seed, args.timeout)
    else:
        hold(args.directory, args.exclusive, args.append)


if __name__ == "__main__":
    main(sys.argv[1:])
