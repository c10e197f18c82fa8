#!/usr/bin/env python3
"""Log compaction benchmark (issue 15): a changelog of 10 million updates over 100,000
keys, compacted.

    .venv/bin/python benchmarks/bench_compaction.py --runs 3     # the full run (~2 min a run)
    .venv/bin/python benchmarks/bench_compaction.py --quick      # smoke run (a few seconds)

Options::

    --runs N         repeat the whole benchmark N times (default 3); the table shows the
                     median of the N runs with their min and max
    --quick          small sizes (200,000 updates over 2,000 keys, 1 MiB segments): a
                     smoke run whose numbers mean little
    --partitions P   partitions of the topic (default 1); the producer spreads the keys
                     by their hash and every partition is compacted in turn
    --out PATH       also write every run's values (and the machine) as JSON to PATH
                     (``--json`` is the same option, as in the other scripts)
    --workdir DIR    where the data goes (default benchmarks/.scratch/; deleted afterwards)
    --profile        run the first cleaner pass of the first run under cProfile and print
                     its top functions to stderr (that pass's timings are then inflated)

Each run, in a fresh store (``logstore.open(path, maintenance=False)``: no background
cleaner thread, the benchmark runs every pass itself): a topic with ``cleanup_policy="compact"``,
``segment_bytes`` 64 MiB and ``flush="never"``; the updates are sent through the public
``Producer`` (defaults: linger 5 ms, 256 KiB batches, idempotent) with keys
``b"key-%06d"`` drawn uniformly at random and values of 80-120 random bytes, about 3% of
them tombstones (null values); then ``PartitionLog.roll()`` so the whole load is sealed and
cleanable (the cleaner never touches the active segment). Measured, with the page cache
warm (the data was just written and fits in RAM), each timed region after ``os.sync()`` and
``gc.collect()``:

* the log bytes (the ``*.log`` files) before and after;
* the **raw read** of the same files: ``os.readv`` into a 1 MiB buffer, file after file
  (the machine's sequential read speed of the same bytes: the baseline of the ratios);
* the **table read**: a consumer (``assign`` + ``seek_to_beginning`` + ``poll``) from the
  log start to the end, building a dict key -> value (a tombstone deletes the key), before
  and after compaction; the result is checked against the expected table (and, with one
  partition, every record's offset against the key's last update);
* the **cleaner**: ``partition.compact(force=True)`` timed by the wall clock, its
  ``CompactionStats`` (bytes and records in and out); MB/s = bytes in (10^6) / seconds;
* a **second pass** after 10% more updates (rolled too): the clean section is recopied,
  the new dirty section mapped and cleaned.

The markdown table goes to stdout, progress to stderr; the exit status is non-zero only if
something breaks (a table read back is not the expected one). Results on the reference
machine: benchmarks/README.md, section "Compaction (issue 15)".
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import itertools
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_WORKDIR,
    Ctx,
    Metric,
    clock,
    cpu_and_memory,
    git_commit,
    print_profile,
    progress,
    quiesced,
    report,
)

import logstore
from logstore import TopicPartition
from logstore.records.accel import ACCELERATED
from logstore.storage.compaction import CompactionStats

HERE = Path(__file__).resolve().parent
LOGSTORE_DIR = Path(logstore.__file__).resolve().parent
MiB = 1 << 20
TOPIC = "changelog"


@dataclass(frozen=True)
class Sizes:
    updates: int
    keys: int
    second_updates: int
    segment_bytes: int
    after_read_repeats: int
    """Reads of the (small) compacted table per run: the run's value is their median."""


FULL = Sizes(10_000_000, 100_000, 1_000_000, 64 * MiB, 5)
QUICK = Sizes(200_000, 2_000, 20_000, 1 * MiB, 3)

VALUE_POOL = 4093  # prime: a key's successive updates do not cycle with the pool
TOMBSTONE_SHARE = 0.03


# --------------------------------------------------------------------------- workload


class Changelog:
    """The updates: key sequence and values, and the table they leave."""

    def __init__(self, sizes: Sizes, seed: int) -> None:
        rng = random.Random(seed)
        self.keys = [b"key-%06d" % i for i in range(sizes.keys)]
        self.pool: list[bytes | None] = [
            None if rng.random() < TOMBSTONE_SHARE else rng.randbytes(rng.randint(80, 120))
            for _ in range(VALUE_POOL)
        ]
        self.rng = rng
        self.sent = 0
        self.last: dict[bytes, int] = {}  # key -> index of its last update

    def value(self, i: int) -> bytes | None:
        return self.pool[i % VALUE_POOL]

    def send(self, producer: Any, count: int) -> tuple[float, int]:
        """Send ``count`` more updates; returns (seconds of send + flush, tombstones)."""
        seq = self.rng.choices(self.keys, k=count)
        first = self.sent
        values = itertools.islice(itertools.cycle(self.pool), first % VALUE_POOL, None)
        tombstones = sum(1 for i in range(first, first + count) if self.value(i) is None)
        send = producer.send
        with quiesced():
            start = clock()
            for key, value in zip(seq, values, strict=False):  # values: endless
                send(TOPIC, value, key)
            producer.flush()
            elapsed = clock() - start
        self.last.update(zip(seq, range(first, first + count), strict=True))
        self.sent += count
        return elapsed, tombstones

    def table(self) -> dict[bytes, bytes]:
        out = {}
        for key, i in self.last.items():
            value = self.value(i)
            if value is not None:
                out[key] = value
        return out


# --------------------------------------------------------------------------- measuring


def partition_dirs(store: Any, partitions: int) -> list[Path]:
    return [Path(store.partition(TOPIC, p).directory) for p in range(partitions)]


def log_bytes(dirs: list[Path]) -> int:
    return sum(f.stat().st_size for d in dirs for f in d.glob("*.log"))


def raw_read(dirs: list[Path]) -> tuple[float, int]:
    """Read every ``*.log`` file of ``dirs`` with ``os.readv`` into a 1 MiB buffer; returns
    (seconds, bytes)."""
    files = [f for d in dirs for f in sorted(d.glob("*.log"))]
    buf = bytearray(MiB)
    total = 0
    with quiesced():
        start = clock()
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                while n := os.readv(fd, [buf]):
                    total += n
            finally:
                os.close(fd)
        elapsed = clock() - start
    return elapsed, total


def read_table(store: Any, partitions: int) -> tuple[float, dict[bytes, bytes], int]:
    """The whole table through a consumer, from the log start to the end: (seconds, key ->
    value, records read)."""
    tps = [TopicPartition(TOPIC, p) for p in range(partitions)]
    ends = {tp: store.partition(TOPIC, tp.partition).log_end_offset for tp in tps}
    table: dict[bytes, bytes] = {}
    count = 0
    with store.consumer(max_poll_records=10_000) as consumer:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        with quiesced():
            start = clock()
            pending = set(tps)
            idle = 0
            pop = table.pop
            while pending:
                records = consumer.poll(max_records=10_000)
                count += len(records)
                for r in records:
                    value = r.value
                    if value is None:
                        pop(r.key, None)
                    else:
                        table[r.key] = value
                if records:
                    idle = 0
                else:
                    idle += 1
                    if idle > 1000:
                        raise AssertionError(
                            f"the consumer stopped short of the end: positions "
                            f"{ {str(tp): consumer.position(tp) for tp in pending} }, "
                            f"ends { {str(tp): ends[tp] for tp in pending} }"
                        )
                pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
            elapsed = clock() - start
    return elapsed, table, count


def check_table(got: dict[bytes, bytes], log: Changelog, what: str) -> None:
    want = log.table()
    if got != want:
        missing = len(want.keys() - got.keys())
        extra = len(got.keys() - want.keys())
        wrong = sum(1 for k in want.keys() & got.keys() if want[k] != got[k])
        raise AssertionError(f"{what}: table read back differs ({missing} keys missing, "
                             f"{extra} extra, {wrong} wrong values)")


def check_offsets(store: Any, log: Changelog, base: int, what: str) -> None:
    """With one partition, update i is at offset base + i: every key's last record (the
    only one left after compaction, tombstones included) must be there."""
    plog = store.partition(TOPIC, 0)
    offset = plog.log_start_offset
    seen: dict[bytes, int] = {}
    end = plog.log_end_offset
    while offset < end:
        records = plog.read_records(offset, max_bytes=MiB)
        if not records:
            break
        for r in records:
            seen[r.key] = r.offset
        offset = records[-1].offset + 1
    want = {k: base + i for k, i in log.last.items()}
    if seen != want:
        wrong = sum(1 for k in want if seen.get(k) != want[k])
        raise AssertionError(f"{what}: {wrong} of {len(want)} keys not at their last offset")


def compact_all(
    store: Any, partitions: int, profile: bool
) -> tuple[float, float, list[CompactionStats]]:
    """``compact(force=True)`` of every partition: (wall seconds, CPU seconds of this
    process, the stats)."""
    stats: list[CompactionStats] = []
    prof = cProfile.Profile() if profile else None
    with quiesced():
        cpu = time.process_time()
        start = clock()
        for p in range(partitions):
            plog = store.partition(TOPIC, p)
            got = prof.runcall(plog.compact, force=True) if prof else plog.compact(force=True)
            if got is None:
                raise AssertionError(f"compact(force=True) of partition {p} did nothing")
            stats.append(got)
        elapsed = clock() - start
        cpu = time.process_time() - cpu
    if prof is not None:
        print_profile(prof, "compact(force=True), first pass", top=25)
    return elapsed, cpu, stats


# --------------------------------------------------------------------------- the benchmark


ROWS: list[tuple[str, str, str]] = [
    # key, case, unit
    ("load_rate", "load: Producer.send() + flush(), flush=\"never\"", "records/s"),
    ("bytes_before", "log bytes before compaction", "MB"),
    ("bytes_after", "log bytes after compaction", "MB"),
    ("bytes_ratio", "bytes after / before", "x"),
    ("records_in", "cleaner pass 1: records in", "records"),
    ("records_out", "cleaner pass 1: records out", "records"),
    ("segments", "cleaner pass 1: segments in", "segments"),
    ("clean_s", "cleaner pass 1: compact(force=True)", "s"),
    ("clean_cpu", "cleaner pass 1: CPU time of the process (process_time)", "s"),
    ("clean_mbs", "cleaner pass 1: throughput (bytes in / s)", "MB/s"),
    ("clean_rps", "cleaner pass 1: records in / s", "records/s"),
    ("raw_before_mbs", "raw os.readv of the log files, before (baseline)", "MB/s"),
    ("clean_vs_raw", "cleaner MB/s / raw read MB/s", "x"),
    ("raw_before_s", "raw read of the uncompacted log files", "s"),
    ("read_before_s", "table read (consumer -> dict), before compaction", "s"),
    ("read_before_rps", "table read, before compaction", "records/s"),
    ("read_before_vs_raw", "table read before / raw read of the same bytes", "x"),
    ("raw_after_s", "raw read of the compacted log files", "ms"),
    ("read_after_s", "table read (consumer -> dict), after compaction", "ms"),
    ("read_after_vs_raw", "table read after / raw read of the same bytes", "x"),
    ("read_speedup", "table read time before / after compaction", "x"),
    ("p2_bytes_in", "cleaner pass 2 (after 10% more updates): bytes in", "MB"),
    ("p2_bytes_out", "cleaner pass 2: bytes out", "MB"),
    ("p2_s", "cleaner pass 2: compact(force=True)", "s"),
    ("p2_cpu", "cleaner pass 2: CPU time of the process", "s"),
    ("p2_mbs", "cleaner pass 2: throughput (bytes in / s)", "MB/s"),
    ("p2_read_s", "table read after pass 2", "ms"),
]


def bench_compaction(ctx: Ctx, partitions: int) -> list[Metric]:
    sizes: Sizes = ctx.sizes
    m = {key: Metric("compaction", case, unit) for key, case, unit in ROWS}
    for run in range(ctx.runs):
        path = ctx.dir(f"compaction-{run}")
        log = Changelog(sizes, seed=15 + run)
        v: dict[str, float] = {}
        # maintenance=False: no background cleaner (logstore.open starts one by default)
        # runs a pass of its own meanwhile; the benchmark runs and times every pass.
        with logstore.open(path, maintenance=False) as store:
            store.create_topic(TOPIC, partitions, cleanup_policy="compact",
                               segment_bytes=sizes.segment_bytes, flush="never")
            dirs = partition_dirs(store, partitions)
            progress(f"run {run + 1}: sending {sizes.updates:,} updates over "
                     f"{sizes.keys:,} keys")
            with store.producer() as producer:
                t, tombstones = log.send(producer, sizes.updates)
            v["load_rate"] = sizes.updates / t
            for p in range(partitions):
                store.partition(TOPIC, p).roll()
            before = log_bytes(dirs)
            v["bytes_before"] = before / 1e6
            progress(f"run {run + 1}: loaded in {t:.1f} s ({sizes.updates / t:,.0f}/s, "
                     f"{tombstones:,} tombstones), {before / 1e6:,.0f} MB in "
                     f"{sum(len(store.partition(TOPIC, p).segments) for p in range(partitions))}"
                     " segments")

            t_raw, n = raw_read(dirs)
            if n != before:
                raise AssertionError(f"raw read {n} bytes, not {before}")
            t_read, table, count = read_table(store, partitions)
            if count != sizes.updates:
                raise AssertionError(f"read {count:,} records before compaction, not "
                                     f"{sizes.updates:,}")
            check_table(table, log, "before compaction")
            del table
            v["raw_before_s"] = t_raw
            v["raw_before_mbs"] = before / 1e6 / t_raw
            v["read_before_s"] = t_read
            v["read_before_rps"] = count / t_read
            v["read_before_vs_raw"] = t_read / t_raw
            progress(f"run {run + 1}: raw read {t_raw:.2f} s ({before / 1e6 / t_raw:,.0f} "
                     f"MB/s), table read {t_read:.2f} s ({count / t_read:,.0f} records/s)")

            t_clean, cpu, stats = compact_all(store, partitions, ctx.profile and run == 0)
            bytes_in = sum(s.bytes_in for s in stats)
            after = log_bytes(dirs)
            v["bytes_after"] = after / 1e6
            v["bytes_ratio"] = after / before
            v["records_in"] = sum(s.records_in for s in stats)
            v["records_out"] = sum(s.records_out for s in stats)
            v["segments"] = sum(s.segments_in for s in stats)
            v["clean_s"] = t_clean
            v["clean_cpu"] = cpu
            v["clean_mbs"] = bytes_in / 1e6 / t_clean
            v["clean_rps"] = v["records_in"] / t_clean
            v["clean_vs_raw"] = v["clean_mbs"] / v["raw_before_mbs"]
            progress(f"run {run + 1}: cleaner pass 1 {t_clean:.2f} s "
                     f"({bytes_in / 1e6 / t_clean:.1f} MB/s, CPU {cpu:.2f} s; stats.seconds "
                     f"{sum(s.seconds for s in stats):.2f}), {stats[0].to_dict()}")
            if bytes_in != before:
                raise AssertionError(f"the cleaner read {bytes_in} bytes, not all {before}")
            if v["records_out"] != len(log.last):
                raise AssertionError(f"{v['records_out']:,} records kept, not one per key "
                                     f"({len(log.last):,})")

            raws, reads = [], []
            for _ in range(sizes.after_read_repeats):
                t_raw, n = raw_read(dirs)
                if n != after:
                    raise AssertionError(f"raw read {n} bytes, not {after}")
                raws.append(t_raw)
                t_read, table, count = read_table(store, partitions)
                reads.append(t_read)
                check_table(table, log, "after compaction")
            t_raw, t_read = sorted(raws)[len(raws) // 2], sorted(reads)[len(reads) // 2]
            if partitions == 1:
                check_offsets(store, log, 0, "after compaction")
            v["raw_after_s"] = t_raw * 1e3
            v["read_after_s"] = t_read * 1e3
            v["read_after_vs_raw"] = t_read / t_raw
            v["read_speedup"] = v["read_before_s"] / t_read
            progress(f"run {run + 1}: after: {after / 1e6:.1f} MB, raw read "
                     f"{t_raw * 1e3:.1f} ms, table read {t_read * 1e3:.1f} ms "
                     f"({count:,} records)")

            with store.producer() as producer:
                log.send(producer, sizes.second_updates)
            for p in range(partitions):
                store.partition(TOPIC, p).roll()
            t_clean, cpu2, stats = compact_all(store, partitions, False)
            bytes_in = sum(s.bytes_in for s in stats)
            v["p2_bytes_in"] = bytes_in / 1e6
            v["p2_bytes_out"] = sum(s.bytes_out for s in stats) / 1e6
            v["p2_s"] = t_clean
            v["p2_cpu"] = cpu2
            v["p2_mbs"] = bytes_in / 1e6 / t_clean
            t_read, table, _ = read_table(store, partitions)
            check_table(table, log, "after the second pass")
            if partitions == 1:
                check_offsets(store, log, 0, "after the second pass")
            v["p2_read_s"] = t_read * 1e3
            progress(f"run {run + 1}: cleaner pass 2 {t_clean:.2f} s "
                     f"({bytes_in / 1e6 / t_clean:.1f} MB/s), {stats[0].to_dict()}")
        shutil.rmtree(path)
        for key, value in v.items():
            m[key].values.append(value)
    ctx.notes.append(
        f"{sizes.updates:,} updates over {sizes.keys:,} keys (b\"key-%06d\", uniform), values "
        f"80-120 random bytes, ~{TOMBSTONE_SHARE:.0%} tombstones; {partitions} partition(s), "
        f"segment_bytes {sizes.segment_bytes // MiB} MiB, flush=\"never\", cleanup_policy="
        f"\"compact\" (delete_retention_ms default 1 day: the tombstones stay); pass 2 after "
        f"{sizes.second_updates:,} more updates; page cache warm"
    )
    return list(m.values())


# --------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "logstore": logstore.__version__,
        "commit": git_commit(LOGSTORE_DIR.parent),
        "logstore_path": str(LOGSTORE_DIR),
        "compiled_codec": ACCELERATED,
        "loadavg_start": os.getloadavg(),
    }
    return info | cpu_and_memory()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--partitions", type=int, default=1, help="partitions (default 1)")
    parser.add_argument("--out", "--json", dest="json", metavar="PATH",
                        help="write the results as JSON here")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR),
                        help="scratch directory (default benchmarks/.scratch)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the first cleaner pass of the first run")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.partitions < 1:
        parser.error("--runs and --partitions must be at least 1")

    info = machine()
    workdir = Path(args.workdir).resolve() / f"compaction-{os.getpid()}"
    ctx = Ctx(args.runs, QUICK if args.quick else FULL, workdir, quick=args.quick,
              profile=args.profile)
    started = datetime.datetime.now().astimezone()
    command = " ".join([".venv/bin/python benchmarks/bench_compaction.py", *argv])
    progress(f"{command}: {ctx.runs} run(s); data in {workdir}; load average "
             f"{' '.join(f'{x:.2f}' for x in info['loadavg_start'])}")
    start = clock()
    try:
        metrics = bench_compaction(ctx, args.partitions)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = clock() - start
    info["loadavg_end"] = os.getloadavg()
    ctx.notes.append("load average (1, 5, 15 min) at the start "
                     f"{' '.join(f'{x:.2f}' for x in info['loadavg_start'])}, at the end "
                     f"{' '.join(f'{x:.2f}' for x in info['loadavg_end'])}")
    where = (f"at commit {info['commit']}" if info["commit"] != "unknown" else
             f"with logstore from {LOGSTORE_DIR} (not a git work tree)")
    if not ACCELERATED:
        where += " (pure-Python codec: the compiled one is not built)"
    report("logstore compaction benchmark", where, metrics, ctx, args, command, started,
           elapsed, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
