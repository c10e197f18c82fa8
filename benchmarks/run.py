#!/usr/bin/env python3
"""logstore benchmarks: ``./dev bench`` (= ``.venv/bin/python benchmarks/run.py``).

Options::

    --runs N       repeat every benchmark N times (default 3); the table shows the median
                   of the N runs with their min and max
    --quick        small sizes: a smoke run (well under 30 s) whose numbers mean little
    --only NAME    run only these benchmarks (comma-separated): append, read, append_1mib,
                   open, random_read
    --json PATH    also write every run's values (and the machine) as JSON to PATH
    --workdir DIR  where the data goes (default benchmarks/.scratch/; deleted afterwards)
    --profile      run each benchmark under cProfile and print its top functions to stderr
                   (the timings are then inflated: use only to see where the time goes)

The markdown table goes to stdout, progress to stderr. The exit status is 0 whether or not
targets are met (a benchmark reports, it does not gate); it is non-zero only when something
fails, e.g. data read back is not what was written. What each benchmark measures, and the
results on the reference machine: benchmarks/README.md.
"""

from __future__ import annotations

import datetime
import functools
import gc
import os
import platform
import random
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    Ctx,
    clock,
    cpu_and_memory,
    git_commit,
    parse_args,
    percentile,
    progress,
    quiesced,
    report,
    run_benchmarks,
)
from common import Metric as CommonMetric

import logstore
from logstore import PartitionLog, TopicConfig
from logstore.records import RecordInput, decode_batches, encode_batch

HERE = Path(__file__).resolve().parent
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
T0_MS = 1_700_000_000_000


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    append_records: int  # records appended per batch size
    append_batch_sizes: tuple[int, ...]
    read_records: int  # records in the partition the read benchmark scans
    append_1mib_bytes: int  # bytes appended (and written raw) per trial
    append_1mib_rounds: int  # interleaved raw/logstore rounds per run (best taken)
    open_segments: tuple[int, ...]  # segment counts of the small-data open cases
    open_active_bytes: int  # data in the active segment of the "much data" case
    open_repeats: int  # opens per run (the run's value is their median)
    random_read_bytes: int  # size of the random-read partition
    random_reads: int  # reads per run


FULL = Sizes(
    append_records=2_000_000,
    append_batch_sizes=(1000, 100, 10),
    read_records=2_000_000,
    append_1mib_bytes=2 * GiB,
    append_1mib_rounds=4,
    open_segments=(10, 1000),
    open_active_bytes=GiB,
    open_repeats=20,
    random_read_bytes=2 * GiB,
    random_reads=1000,
)
QUICK = Sizes(
    append_records=100_000,
    append_batch_sizes=(1000, 100, 10),
    read_records=100_000,
    append_1mib_bytes=128 * MiB,
    append_1mib_rounds=1,
    open_segments=(10, 100),
    open_active_bytes=16 * MiB,
    open_repeats=5,
    random_read_bytes=64 * MiB,
    random_reads=200,
)


# --------------------------------------------------------------------------- results


class Metric(CommonMetric):
    """A row of run.py's table. ``target_op`` is ">=" (higher is better, the default) or
    "<" (lower is better: set it also for rows without a target); the JSON gives the target
    as a number with "target_is" "min" or "max"."""

    def target_json(self) -> dict[str, Any]:
        return {"target": self.target, "target_is": "min" if self.target_op == ">=" else "max"}


# --------------------------------------------------------------------------- helpers


def make_records(count: int, key_size: int, value_size: int, seed: int) -> list[RecordInput]:
    """``count`` distinct records with random keys and values and increasing timestamps."""
    rng = random.Random(seed)
    return [
        (T0_MS + i, rng.randbytes(key_size), rng.randbytes(value_size), ())
        for i in range(count)
    ]


def exact_batch_records(
    target: int, keys: Sequence[bytes], value: bytes
) -> Callable[[int], list[RecordInput]]:
    """A maker of record lists that encode to a batch of exactly ``target`` bytes: records
    ``(keys[i], value)``, the last one's value lengthened to fill the batch. All records of
    a batch share one timestamp (the argument), so the size does not depend on it."""
    count = max(1, min(len(keys), target // (len(value) + 2 * len(keys[0]))))
    fill = len(value)

    def make(timestamp: int) -> list[RecordInput]:
        records: list[RecordInput] = [(timestamp, keys[i], value, ()) for i in range(count)]
        records[-1] = (timestamp, keys[count - 1], b"x" * fill, ())
        return records

    for _ in range(20):
        size = len(encode_batch(make(T0_MS)))
        if size == target:
            return make
        fill += target - size
        if fill < 0:
            break
    raise ValueError(f"cannot encode a batch of exactly {target} bytes")


def drop_page_cache(directory: Path) -> None:
    """Evict ``directory``'s files from the page cache (fsync first: dirty pages stay)."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm_page_cache(directory: Path) -> int:
    """Read every file below ``directory`` once; returns the bytes read."""
    total = 0
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with path.open("rb", buffering=0) as f:
                while chunk := f.read(8 * MiB):
                    total += len(chunk)
    return total


def partition_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.log"))


# --------------------------------------------------------------------------- 1. append


def bench_append(ctx: Ctx) -> list[Metric]:
    """encode + append via PartitionLog.append_records, flush "never", per batch size."""
    total = ctx.sizes.append_records
    pool = make_records(10_000, 16, 100, seed=1)
    metrics: list[Metric] = []
    rates: dict[int, Metric] = {}
    mbps: dict[int, Metric] = {}
    for size in ctx.sizes.append_batch_sizes:
        rates[size] = Metric(
            "append", f"batches of {size}", "records/s",
            target=800_000 if size == 1000 else None,
        )
        mbps[size] = Metric("append", f"batches of {size}", "MB/s (log bytes)")
        metrics += (rates[size], mbps[size])
    for run in range(ctx.runs):
        sizes = list(ctx.sizes.append_batch_sizes)
        if run % 2:
            sizes.reverse()  # alternate the order: no batch size always runs first
        for size in sizes:
            batches = [pool[i : i + size] for i in range(0, len(pool), size)]
            per_cycle = len(pool)
            cycles, rest = divmod(total, per_cycle)
            work = batches * cycles + batches[: rest // size]
            count = sum(len(b) for b in work)
            directory = ctx.dir(f"append-{size}")
            plog = PartitionLog(str(directory), TopicConfig(flush="never"))
            append = plog.append_records
            with quiesced():
                start = clock()
                for batch in work:
                    append(batch)
                elapsed = clock() - start
            written, end = plog.size_bytes, plog.log_end_offset
            plog.close()
            if end != count:
                raise AssertionError(f"appended {count} records, the log ends at {end}")
            shutil.rmtree(directory)
            rates[size].values.append(count / elapsed)
            mbps[size].values.append(written / elapsed / 1e6)
            progress(f"append run {run + 1}: batches of {size}: {count / elapsed:,.0f} "
                     f"records/s ({written / elapsed / 1e6:.0f} MB/s)")
    return metrics


# --------------------------------------------------------------------------- 2. read


def bench_read(ctx: Ctx) -> list[Metric]:
    """Scan a whole partition: read(offset, 1 MiB) + decode_batches (CRC-checked)."""
    total = ctx.sizes.read_records
    pool = make_records(10_000, 16, 100, seed=2)
    directory = ctx.dir("read")
    cfg = TopicConfig(flush="never")
    with PartitionLog(str(directory), cfg) as plog:
        appended = 0
        while appended < total:
            for i in range(0, len(pool), 1000):
                plog.append_records(pool[i : i + 1000])
                appended += 1000
                if appended >= total:
                    break
    size = partition_bytes(directory)
    plog = PartitionLog(str(directory), cfg)
    end = plog.log_end_offset
    warm_page_cache(directory)
    scan_rate = Metric("read", "read(1 MiB) + decode_batches, warm cache", "records/s",
                       target=1_000_000)
    scan_mb = Metric("read", "read(1 MiB) + decode_batches, warm cache", "MB/s (log bytes)")
    rr_rate = Metric("read", "read_records(max_bytes=1 MiB), warm cache", "records/s",
                     target=1_000_000)

    def scan_with_read() -> int:
        offset, count = 0, 0
        read = plog.read
        while offset < end:
            data = read(offset, 1 << 20).records
            records = list(decode_batches(data, verify=True))
            if not records:
                raise AssertionError(f"no records at offset {offset} of {end}")
            count += len(records)
            offset = records[-1].offset + 1
        return count

    def scan_with_read_records() -> int:
        offset, count = 0, 0
        read_records = plog.read_records
        while offset < end:
            records = read_records(offset, max_bytes=1 << 20)
            if not records:
                raise AssertionError(f"no records at offset {offset} of {end}")
            count += len(records)
            offset = records[-1].offset + 1
        return count

    try:
        for run in range(ctx.runs):
            cases: list[tuple[Metric, Callable[[], int]]] = [
                (scan_rate, scan_with_read), (rr_rate, scan_with_read_records)
            ]
            if run % 2:
                cases.reverse()
            for metric, fn in cases:
                with quiesced():
                    start = clock()
                    count = fn()
                    elapsed = clock() - start
                if count != end:
                    raise AssertionError(f"read {count} records, expected {end}")
                metric.values.append(count / elapsed)
                if metric is scan_rate:
                    scan_mb.values.append(size / elapsed / 1e6)
                progress(f"read run {run + 1}: {metric.case}: {count / elapsed:,.0f} records/s")
    finally:
        plog.close()
        shutil.rmtree(directory)
    return [scan_rate, scan_mb, rr_rate]


# --------------------------------------------------------------------------- 3. append_1mib


def bench_append_1mib(ctx: Ctx) -> list[Metric]:
    """Pre-encoded 1 MiB batches via append_batches vs raw 1 MiB os.write, interleaved."""
    total = ctx.sizes.append_1mib_bytes
    rng = random.Random(3)
    keys = [rng.randbytes(16) for _ in range(2000)]
    batch = encode_batch(exact_batch_records(MiB, keys, rng.randbytes(1000))(T0_MS))
    count = total // MiB
    cfg = TopicConfig(max_message_bytes=2 * MiB, flush="never")  # default segment_bytes 1 GiB
    directory = ctx.dir("append_1mib")
    label = {False: "no fsync", True: "final fsync included"}
    raw = {f: Metric("append_1mib", f"raw os.write 1 MiB, {label[f]}, best of rounds", "MiB/s")
           for f in label}
    lsm = {f: Metric("append_1mib", f"append_batches 1 MiB, {label[f]}, best of rounds",
                     "MiB/s") for f in label}
    ratio = {
        f: Metric("append_1mib", f"ratio logstore/raw, {label[f]}", "x", target=0.8)
        for f in label
    }
    slowest = {
        f: Metric("append_1mib", f"slowest single append_batches (a roll, if any), {label[f]}",
                  "ms")
        for f in label
    }
    # Diagnostic: the no-fsync ratio had the roll's fsync of the sealed segment not been
    # in the timed loop (with a final fsync, raw pays for those bytes too: not shown).
    no_roll = Metric("append_1mib", "ratio without the slowest append (diagnostic), no fsync",
                     "x")

    def run_raw(fsync: bool) -> float:
        path = directory / "raw.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with quiesced():
                start = clock()
                for _ in range(count):
                    os.write(fd, batch)
                if fsync:
                    os.fsync(fd)
                elapsed = clock() - start
        finally:
            os.close(fd)
        if path.stat().st_size != count * MiB:
            raise AssertionError("short raw write")
        path.unlink()
        return elapsed

    def run_log(fsync: bool) -> tuple[float, float]:
        logdir = directory / "log"
        plog = PartitionLog(str(logdir), cfg)
        # the write path: these batches were encoded here, so the record decoding that
        # validates untrusted input (validate=True, the default) is left out
        append = functools.partial(plog.append_batches, validate=False)
        worst = 0.0
        try:
            with quiesced():
                start = clock()
                for _ in range(count):
                    t = clock()
                    append(batch)
                    worst = max(worst, clock() - t)
                if fsync:
                    plog.flush()
                elapsed = clock() - start
            if plog.size_bytes != count * MiB:
                raise AssertionError("log holds the wrong number of bytes")
        finally:
            plog.close()
        shutil.rmtree(logdir)
        return elapsed, worst

    rounds = ctx.sizes.append_1mib_rounds
    try:
        for run in range(ctx.runs):
            # Every trial writes 2 GiB of fresh page cache, and on this VM how fast the
            # kernel hands out those pages swings by 10x from one trial to the next
            # (494..6,375 MiB/s for the very same raw loop). Such interference only ever
            # slows a trial down, so each run takes the fastest of `rounds` interleaved
            # trials per side: the best estimate of what each side costs by itself.
            raw_t: dict[bool, list[float]] = {False: [], True: []}
            log_t: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for rnd in range(rounds):
                # ABBA, flipped every round: neither side always goes first or follows the
                # same neighbour.
                order = [(False, "raw"), (False, "log"), (True, "log"), (True, "raw")]
                if (run * rounds + rnd) % 2:
                    order = [(False, "log"), (False, "raw"), (True, "raw"), (True, "log")]
                for fsync, kind in order:
                    if kind == "raw":
                        raw_t[fsync].append(run_raw(fsync))
                    else:
                        log_t[fsync].append(run_log(fsync))
                for fsync, text in label.items():
                    t_raw, (t_log, worst) = raw_t[fsync][-1], log_t[fsync][-1]
                    progress(
                        f"append_1mib run {run + 1} round {rnd + 1}, {text}: raw "
                        f"{count / t_raw:,.0f} MiB/s, logstore {count / t_log:,.0f} MiB/s "
                        f"(slowest append {worst * 1e3:.0f} ms)"
                    )
            for fsync, text in label.items():
                t_raw = min(raw_t[fsync])
                t_log, worst = min(log_t[fsync])
                raw[fsync].values.append(count / t_raw)
                lsm[fsync].values.append(count / t_log)
                ratio[fsync].values.append(t_raw / t_log)
                slowest[fsync].values.append(worst * 1e3)
                if not fsync:
                    no_roll.values.append(t_raw / (t_log - worst))
                progress(f"append_1mib run {run + 1}, {text}, best of {rounds}: raw "
                         f"{count / t_raw:,.0f} MiB/s, logstore {count / t_log:,.0f} MiB/s, "
                         f"ratio {t_raw / t_log:.2f}")
    finally:
        shutil.rmtree(directory)
    out: list[Metric] = []
    for fsync in label:
        out += (raw[fsync], lsm[fsync], ratio[fsync], slowest[fsync])
        if not fsync:
            out.append(no_roll)
    return out


# --------------------------------------------------------------------------- 4. open


def _build_store(path: Path, segments: int, active_bytes: int = 0) -> int:
    """Make a cleanly closed store with one topic "t" (flush "never") whose partition 0 has
    ``segments`` segments of one ~3.2 KB batch each; with ``active_bytes``, the topic then
    gets the default segment_bytes (1 GiB) and the last (active) segment is filled to
    ``active_bytes`` with ~16 KiB batches. Returns the partition's bytes.

    Records have 16-byte keys, 100-byte values and increasing timestamps, so both indexes
    get their usual entries (one per batch of >= 4 KiB, index_interval_bytes)."""
    tiny = make_records(25, 16, 100, seed=4)
    pool = make_records(128, 16, 100, seed=5)
    ts = T0_MS
    with logstore.open(path) as store:
        store.create_topic("t", segment_bytes=4096, flush="never")
        plog = store.partition("t", 0)
        for _ in range(segments):  # each append after the first rolls a 4 KiB segment
            plog.append_records([(ts, k, v, h) for (_, k, v, h) in tiny])
            ts += 1
        if active_bytes:
            store.alter_topic("t", segment_bytes=TopicConfig().segment_bytes)
            while True:
                batch = encode_batch([(ts, k, v, h) for (_, k, v, h) in pool])
                ts += 1
                if plog.active_segment.size + len(batch) > active_bytes:
                    break
                plog.append_batches(batch, validate=False)
        if len(plog.segments) != segments:
            raise AssertionError(f"built {len(plog.segments)} segments, not {segments}")
        size = plog.size_bytes
    return size


def bench_open(ctx: Ctx) -> list[Metric]:
    """Open time of a cleanly closed partition: PartitionLog(...) and Store + partition()."""
    sizes = ctx.sizes
    cases: list[tuple[str, Path, int]] = []
    for n in sizes.open_segments:
        path = ctx.dir(f"open-{n}")
        size = _build_store(path, n)
        cases.append((f"{n} segments, {size / 1e6:.2f} MB", path, n))
    n = sizes.open_segments[0]
    path = ctx.dir(f"open-{n}-big")
    size = _build_store(path, n, sizes.open_active_bytes)
    cases.append((f"{n} segments, {size / 1e6:,.0f} MB (all in the active segment)", path, n))
    ways = ("PartitionLog(dir, config)", "logstore.open(path) + store.partition(t, 0)")
    metrics = {
        (case, way): Metric("open", f"{way}: {case}", "ms", target_op="<")
        for case, _, _ in cases
        for way in ways
    }
    configs = {}
    for _, path, _ in cases:
        with logstore.open(path, create=False) as store:
            configs[path] = store.topic("t").config
    try:
        for run in range(ctx.runs):
            samples: dict[tuple[str, str], list[float]] = {k: [] for k in metrics}
            for rep in range(sizes.open_repeats):
                order = cases if (rep + run) % 2 == 0 else cases[::-1]
                for case, path, nseg in order:
                    gc.collect()
                    start = clock()
                    plog = PartitionLog(str(path / "t-0"), configs[path])
                    elapsed = clock() - start
                    if len(plog.segments) != nseg or not plog.was_clean:
                        raise AssertionError(f"{path}: reopened wrong: {plog!r}")
                    plog.close()
                    samples[case, ways[0]].append(elapsed)
                    gc.collect()
                    start = clock()
                    store = logstore.open(path, create=False)
                    plog = store.partition("t", 0)
                    elapsed = clock() - start
                    if len(plog.segments) != nseg or not plog.was_clean:
                        raise AssertionError(f"{path}: reopened wrong: {plog!r}")
                    store.close()
                    samples[case, ways[1]].append(elapsed)
            for key, values in samples.items():
                metrics[key].values.append(statistics.median(values) * 1e3)
            progress(f"open run {run + 1}: " + "; ".join(
                f"{case} {'log' if way == ways[0] else 'store'} {m.values[-1]:.2f} ms"
                for (case, way), m in metrics.items()))
    finally:
        for _, path, _ in cases:
            shutil.rmtree(path)
    return list(metrics.values())


# --------------------------------------------------------------------------- 5. random_read


def bench_random_read(ctx: Ctx) -> list[Metric]:
    """read_records(offset, max_records=1) at random offsets of a >= 2 GiB partition."""
    sizes = ctx.sizes
    rng = random.Random(5)
    keys = [rng.randbytes(16) for _ in range(2000)]
    value = rng.randbytes(1000)
    directory = ctx.dir("random_read")
    cfg = TopicConfig(max_message_bytes=2 * MiB, flush="never")  # default segment_bytes 1 GiB
    nbatches = -(-sizes.random_read_bytes // MiB)
    make = exact_batch_records(MiB, keys, value)
    per_batch = len(make(T0_MS))
    progress(f"random_read: building {nbatches} MiB ({nbatches * per_batch:,} records of "
             f"~1 KB, {per_batch} a batch)")
    start = clock()
    with PartitionLog(str(directory), cfg) as plog:
        for b in range(nbatches):
            # A fresh batch per append, with its own timestamp (a realistic time index).
            plog.append_batches(encode_batch(make(T0_MS + b)), validate=False)
        end = plog.log_end_offset
        nseg = len(plog.segments)
    size = partition_bytes(directory)
    ctx.notes.append(
        f"random_read partition: {size / 1e9:.2f} GB, {end:,} records, {nseg} segments, "
        f"batches of {per_batch} records (1 MiB each); built in {clock() - start:.1f} s"
    )
    progress(ctx.notes[-1])

    def keyof(offset: int) -> bytes:
        i = offset % per_batch
        return keys[i]

    m: dict[str, Metric] = {}
    for cache in ("warm", "cold"):
        m[f"median {cache}"] = Metric(
            "random_read", f"read_records(o, max_records=1) median, {cache} cache", "ms",
            target=1.0, target_op="<",
        )
        m[f"p99 {cache}"] = Metric(
            "random_read", f"read_records(o, max_records=1) p99, {cache} cache", "ms",
        )
    m["fetch median"] = Metric("random_read", "read(o, 1 MiB) only (no decode) median, warm "
                               "cache", "ms", target_op="<")
    m["reopen"] = Metric("random_read", f"reopen of the {size / 1e9:.1f} GB partition "
                         "(PartitionLog, cold cache)", "ms", target_op="<")

    def random_reads(plog: PartitionLog, seed: int) -> list[float]:
        rnd = random.Random(seed)
        lat: list[float] = []
        read_records = plog.read_records
        for _ in range(sizes.random_reads):
            offset = rnd.randrange(end)
            t = clock()
            records = read_records(offset, max_records=1)
            lat.append(clock() - t)
            if len(records) != 1 or records[0].offset != offset:
                raise AssertionError(f"read_records({offset}) returned {records[:1]!r}")
            if records[0].key != keyof(offset):
                raise AssertionError(f"wrong key at offset {offset}")
        return sorted(lat)

    def random_fetches(plog: PartitionLog, seed: int) -> list[float]:
        rnd = random.Random(seed)
        lat: list[float] = []
        read = plog.read
        for _ in range(sizes.random_reads):
            offset = rnd.randrange(end)
            t = clock()
            data = read(offset, 1 << 20).records
            lat.append(clock() - t)
            if not data:
                raise AssertionError(f"read({offset}) returned nothing")
        return sorted(lat)

    try:
        for run in range(ctx.runs):
            os.sync()
            drop_page_cache(directory)
            gc.collect()
            start = clock()
            plog = PartitionLog(str(directory), cfg)
            m["reopen"].values.append((clock() - start) * 1e3)
            try:
                # Cold first (the cache was just dropped), then warm up and repeat.
                lat = random_reads(plog, seed=1000 + run)
                m["median cold"].values.append(statistics.median(lat) * 1e3)
                m["p99 cold"].values.append(percentile(lat, 99) * 1e3)
                warm_page_cache(directory)
                gc.collect()
                lat = random_reads(plog, seed=2000 + run)
                m["median warm"].values.append(statistics.median(lat) * 1e3)
                m["p99 warm"].values.append(percentile(lat, 99) * 1e3)
                lat = random_fetches(plog, seed=3000 + run)
                m["fetch median"].values.append(statistics.median(lat) * 1e3)
            finally:
                plog.close()
            progress(
                f"random_read run {run + 1}: warm median {m['median warm'].values[-1]:.3f} ms "
                f"(p99 {m['p99 warm'].values[-1]:.3f}), cold median "
                f"{m['median cold'].values[-1]:.3f} ms (p99 {m['p99 cold'].values[-1]:.3f}), "
                f"fetch only {m['fetch median'].values[-1]:.3f} ms, reopen "
                f"{m['reopen'].values[-1]:.2f} ms"
            )
    finally:
        shutil.rmtree(directory)
    return [m[k] for k in ("median warm", "p99 warm", "median cold", "p99 cold",
                           "fetch median", "reopen")]


# --------------------------------------------------------------------------- main

BENCHMARKS: dict[str, Callable[[Ctx], list[Metric]]] = {
    "append": bench_append,
    "read": bench_read,
    "append_1mib": bench_append_1mib,
    "open": bench_open,
    "random_read": bench_random_read,
}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "logstore": logstore.__version__,
        "commit": git_commit(HERE.parent),
    }
    return info | cpu_and_memory()


def main(argv: list[str] | None = None) -> int:
    args, names = parse_args(__doc__, BENCHMARKS, argv)
    workdir = Path(args.workdir).resolve() / f"run-{os.getpid()}"
    ctx = Ctx(args.runs, QUICK if args.quick else FULL, workdir, quick=args.quick)
    started = datetime.datetime.now().astimezone()
    command = " ".join([".venv/bin/python benchmarks/run.py", *(argv or sys.argv[1:])])
    metrics, elapsed = run_benchmarks(ctx, names, BENCHMARKS, command,
                                      profile_each=args.profile)

    info = machine()
    report("logstore benchmarks", f"at commit {info['commit']}", metrics, ctx, args, command,
           started, elapsed, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
