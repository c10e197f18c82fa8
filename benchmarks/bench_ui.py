#!/usr/bin/env python3
"""Web console (issue 18): what ``logstore ui``'s JSON API costs against a bare
``backend.fetch`` loop over the same partition, measured in the same run.

    .venv/bin/python benchmarks/bench_ui.py --runs 5           # the full run (~2-3 min)
    .venv/bin/python benchmarks/bench_ui.py --quick --runs 1   # smoke run (a few seconds)
    .venv/bin/python benchmarks/bench_ui.py --quick --runs 1 --profile   # + cProfile top

Options::

    --runs N       repeat every case N times (default 3); the table shows the median, min
                   and max, and the median of the per-run ratios to the case's baseline
    --records N    records in the browsed partition (default 200,000; --quick 20,000)
    --quick        small sizes (also fewer repetitions of the per-request cases)
    --workdir DIR  where the data directories go (default: a temporary directory)
    --profile      after the runs, cProfile one walk of the partition through
                   ``Console.records`` plus the response's serialisation and the client's
                   parse (what a page costs on the server and the client, without the
                   ASGI/HTTP layers), top functions to stderr

The data directories are made with the public API (``logstore.open(path)``, a producer,
topic defaults): one topic of one partition holding N records with 16-byte text keys
(``order-0000000042``) and 200-byte JSON values (an order: id, customer, status, items,
total, a filler note); and, for the sampler, 50 topics x 4 partitions (10 records each)
with 20 groups, each with committed offsets on 5 topics (20 partitions). Both are then
reopened with ``maintenance=False``, as ``logstore ui`` opens a store.

The transports, each over the same store and the same partition:

* *direct*: ``Console.records(...)`` called in this process (the page as a dict: the
  reads and each record's rendering, no JSON text, no HTTP);
* *TestClient*: ``GET /api/topics/T/records`` through Starlette's TestClient on
  ``create_app(console, sampler)`` (FastAPI's validation and serialisation, the ASGI
  stack, httpx in process, ``response.json()``);
* *HTTP*: the same GET to a real ``logstore --data-dir D ui --port 0`` process (uvicorn)
  over loopback, one keep-alive ``http.client`` connection (opened again when uvicorn
  closed it, idle for 5 s between cases), ``json.loads`` of the body.

What is measured, in this order in every run:

1. baseline: the partition read from offset 0 to its end by a bare loop of
   ``backend.fetch({tp: offset}, max_records=500, max_bytes=1 MiB)`` (the browser's own
   fetch size), counting records: records/s, the median of 6 walks per run (3 before
   the page walks, 3 after them, each 3 after an untimed one: a walk takes 50-200 ms,
   so a moment of the shared machine's noise, or the first walk after other work,
   moves one walk a lot).
2. pages: the partition walked page after page (``limit=500``, from ``next_offset``
   until it is null), every record of it checked to arrive once: records/s per
   transport, and its ratio to the baseline of the same run.
3. nomatch scan: ``value=nomatch&max_scan=100000`` from offset 0, then from each
   ``next_offset``, until the end: records scanned (``scanned``) per second, vs the
   baseline.
4. previous page: one page of 500 from the middle of the partition, unfiltered (so the
   answer carries ``prev_offset``: a backward read of 500 records), and the same page
   filtered by a substring every value holds (``value="id":``: the same 500 records, no
   ``prev_offset``); median of M requests each, alternating; the ratio unfiltered /
   filtered is what the backward read adds. Beside it, for scale: one
   ``backend.fetch`` of the same 500 records, and where a page's time goes outside the
   console (pydantic's ``dump_json`` of the page, as FastAPI serialises a
   ``dict[str, Any]`` answer, and the client's ``json.loads`` of it).
5. sampler: one ``Sampler.sample_now()`` on the 50-topic store (median of M calls per
   run), beside its two halves' floor: ``Console.end_offsets()`` alone, and a bare
   ``backend.offset_range`` of the 200 partitions.

Timings are wall clock (``time.perf_counter``), each walk, and each series of M
requests or calls, after ``os.sync()`` and ``gc.collect()`` (not before every request:
a collection just before a millisecond-long request makes it slower, the allocator's
freed memory gone). The ``logstore ui`` process runs its sampler every 2 s (its
default) meanwhile, on a store of one topic.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import http.client
import json
import logging
import os
import platform
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import clock, cpu_and_memory, fmt, git_commit, print_profile, progress, quiesced

import logstore
from logstore.backend import backend_for
from logstore.types import TopicPartition

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOPIC = "orders"
LIMIT = 500
FETCH_BYTES = 1 << 20
NOMATCH_SCAN = 100_000
EVERY_RECORD = '"id":'  # a substring of every value: a filter that keeps the whole page
SAMPLER_TOPICS, SAMPLER_PARTITIONS, SAMPLER_GROUPS, GROUP_TOPICS = 50, 4, 20, 5

Get = Callable[[str], dict[str, Any]]
"""A transport: GET this path (with its query), the answer's JSON."""


# --------------------------------------------------------------------------- data


def value_of(i: int) -> bytes:
    """A 200-byte JSON order."""
    doc: dict[str, Any] = {
        "id": i, "customer": f"customer-{i % 9973:05d}",
        "status": ("new", "paid", "shipped")[i % 3],
        "items": [{"sku": f"sku-{i * 7 % 1000:04d}", "qty": i % 5 + 1, "price": 12.5}],
        "total": 12.5 * (i % 5 + 1), "note": "",
    }
    pad = 200 - len(json.dumps(doc, separators=(",", ":")))
    doc["note"] = ("lorem ipsum dolor sit amet " * 8)[:max(0, pad)]
    return json.dumps(doc, separators=(",", ":")).encode()


def fill_browser(path: Path, records: int) -> None:
    with logstore.open(path) as store:
        store.create_topic(TOPIC, partitions=1)
        with store.producer() as producer:
            for i in range(records):
                producer.send(TOPIC, value_of(i), key=b"order-%010d" % i, partition=0)


def fill_sampler(path: Path) -> None:
    with logstore.open(path) as store:
        for t in range(SAMPLER_TOPICS):
            store.create_topic(f"topic-{t:02d}", partitions=SAMPLER_PARTITIONS)
        with store.producer() as producer:
            for t in range(SAMPLER_TOPICS):
                for p in range(SAMPLER_PARTITIONS):
                    for i in range(10):
                        producer.send(f"topic-{t:02d}", value_of(i), key=b"k%d" % i,
                                      partition=p)
        backend = backend_for(store)
        for g in range(SAMPLER_GROUPS):
            offsets = {
                TopicPartition(f"topic-{(g * GROUP_TOPICS + j) % SAMPLER_TOPICS:02d}", p):
                    (g % 10, "")
                for j in range(GROUP_TOPICS) for p in range(SAMPLER_PARTITIONS)}
            backend.commit_offsets(f"group-{g:02d}", offsets)


def batch_layout(backend: Any) -> list[int]:
    """Records per batch of the browsed partition, from the batches' v2 headers (the
    producer's batching decides what a fetch decodes: a fetch decodes whole batches)."""
    tp = TopicPartition(TOPIC, 0)
    sizes: list[int] = []
    offset = 0
    while True:
        data = backend.fetch_batches(tp, offset, 8 << 20).records
        pos, last = 0, None
        while pos + 61 <= len(data):  # baseOffset, batchLength ... lastOffsetDelta at 23
            base, length = struct.unpack_from(">qi", data, pos)
            if pos + 12 + length > len(data):
                break  # cut at max_bytes: fetched again
            delta = struct.unpack_from(">i", data, pos + 23)[0]
            sizes.append(delta + 1)
            last = base + delta
            pos += 12 + length
        if last is None:
            return sizes
        offset = last + 1


# --------------------------------------------------------------------------- transports


def records_path(**params: Any) -> str:
    query = {"partition": 0, "limit": LIMIT, **params}
    return f"/api/topics/{TOPIC}/records?{urllib.parse.urlencode(query)}"


def direct_get(console: Any) -> Get:
    """Console.records with the query's parameters (what the endpoint calls)."""
    from logstore.ui.payloads import RecordFilter

    def get(path: str) -> dict[str, Any]:
        q = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
             .items()}
        page: dict[str, Any] = console.records(
            TOPIC, int(q["partition"]), offset=int(q["offset"]) if "offset" in q else None,
            limit=int(q["limit"]), where=RecordFilter(value=q.get("value")),
            max_scan=int(q.get("max_scan", 10_000)))
        return page

    return get


def client_get(client: Any) -> Get:
    def get(path: str) -> dict[str, Any]:
        answer = client.get(path)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:500]}")
        doc: dict[str, Any] = answer.json()
        return doc

    return get


def http_get(conn: http.client.HTTPConnection) -> Get:
    """GET on one keep-alive connection, opened again when the server closed it (uvicorn
    closes a connection idle for 5 s: between the cases)."""

    def get(path: str) -> dict[str, Any]:
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            conn.request("GET", path)
            answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"GET {path}: {answer.status} {body[:500]!r}")
        doc: dict[str, Any] = json.loads(body)
        return doc

    return get


@contextmanager
def ui_process(data: Path, workdir: Path) -> Iterator[tuple[str, int]]:
    """A ``logstore --data-dir DATA ui --port 0`` process: its (host, port) until exit."""
    exe = Path(sys.executable).with_name("logstore")
    command = [str(exe)] if exe.exists() else [shutil.which("logstore") or "logstore"]
    err_path = workdir / "ui.stderr"
    with err_path.open("w") as err:
        proc = subprocess.Popen([*command, "--data-dir", str(data), "ui", "--port", "0"],
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if "http://" not in line:
            raise RuntimeError(f"logstore ui did not start: {line!r}\n"
                               f"{err_path.read_text()[-3000:]}")
        url = urllib.parse.urlsplit(line[line.index("http://"):].split()[0])
        assert url.hostname is not None and url.port is not None
        yield url.hostname, url.port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


# --------------------------------------------------------------------------- cases


def fetch_walk(backend: Any, end: int) -> float:
    """The baseline: records/s of a bare fetch loop over the partition."""
    tp = TopicPartition(TOPIC, 0)
    with quiesced():
        start = clock()
        offset = seen = 0
        while offset < end:
            found = backend.fetch({tp: offset}, max_records=LIMIT, max_bytes=FETCH_BYTES)[tp]
            if isinstance(found, Exception):
                raise found
            if not found:
                break
            seen += len(found)
            offset = found[-1].offset + 1
        elapsed = clock() - start
    if seen != end:
        raise RuntimeError(f"fetch loop read {seen} records of {end}")
    return seen / elapsed


def fetch_walks(backend: Any, end: int, n: int) -> list[float]:
    """``n`` timed fetch walks after an untimed one: the first walk after other work
    runs at 0.3-0.7x of the next ones (the allocator's pools and the caches taken by
    that work), and the walks are short, where the page walks are long enough for it
    not to matter."""
    fetch_walk(backend, end)
    return [fetch_walk(backend, end) for _ in range(n)]


def page_walk(get: Get, end: int) -> float:
    """Records/s of the browser walked page after page, each record once, in order."""
    with quiesced():
        start = clock()
        offset: int | None = 0
        expected = 0
        while offset is not None:
            page = get(records_path(offset=offset))
            records = page["records"]
            if records and (records[0]["offset"] != expected
                            or records[-1]["offset"] != expected + len(records) - 1):
                raise RuntimeError(f"page at {offset} is not the records {expected}...")
            expected += len(records)
            offset = page["next_offset"]
        elapsed = clock() - start
    if expected != end:
        raise RuntimeError(f"the pages held {expected} records of {end}")
    return end / elapsed


def nomatch_walk(get: Get, end: int) -> float:
    """Records scanned per second by a filter that matches nothing, to the end."""
    with quiesced():
        start = clock()
        offset: int | None = 0
        scanned = 0
        while offset is not None:
            page = get(records_path(offset=offset, value="nomatch", max_scan=NOMATCH_SCAN))
            if page["records"]:
                raise RuntimeError("the nomatch filter matched a record")
            scanned += page["scanned"]
            offset = page["next_offset"]
        elapsed = clock() - start
    if scanned != end:
        raise RuntimeError(f"the nomatch scan read {scanned} records of {end}")
    return scanned / elapsed


def prev_cost(get: Get, mid: int, reps: int) -> tuple[float, float]:
    """Median seconds of the page at ``mid`` unfiltered (prev_offset computed) and filtered
    to every record (none computed), alternating."""
    plain: list[float] = []
    filtered: list[float] = []
    unfiltered_path = records_path(offset=mid)
    filtered_path = records_path(offset=mid, value=EVERY_RECORD)
    with quiesced():  # once: a gc.collect() before each request would slow it
        for _ in range(reps):
            for path, times in ((unfiltered_path, plain), (filtered_path, filtered)):
                start = clock()
                page = get(path)
                times.append(clock() - start)
                records = page["records"]
                if (len(records) != LIMIT or records[0]["offset"] != mid
                        or page["prev_offset"] != (None if times is filtered
                                                   else mid - LIMIT)):
                    raise RuntimeError(f"unexpected page at {mid}: {len(records)} records, "
                                       f"prev_offset {page['prev_offset']}")
    return statistics.median(plain), statistics.median(filtered)


def page_parts(backend: Any, console: Any, mid: int, reps: int) -> dict[str, float]:
    """Median seconds, for the page of 500 at ``mid``: a bare fetch of its records, the
    page's serialisation as FastAPI does it for a ``dict[str, Any]`` answer (pydantic's
    validate + dump_json), and the client's json.loads of that text."""
    from pydantic import TypeAdapter

    adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
    tp = TopicPartition(TOPIC, 0)
    page = console.records(TOPIC, 0, offset=mid, limit=LIMIT)
    body = adapter.dump_json(adapter.validate_python(page))
    steps: dict[str, Callable[[], object]] = {
        "fetch": lambda: backend.fetch({tp: mid}, max_records=LIMIT, max_bytes=FETCH_BYTES),
        "dump_json": lambda: adapter.dump_json(adapter.validate_python(page)),
        "json.loads": lambda: json.loads(body),
    }
    return median_times(steps, reps)


def median_times(steps: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Each step's median time over ``reps`` calls (quiesced once: see prev_cost)."""
    out: dict[str, float] = {}
    for name, step in steps.items():
        times = []
        with quiesced():
            for _ in range(reps):
                start = clock()
                step()
                times.append(clock() - start)
        out[name] = statistics.median(times)
    return out


def sampler_cost(sampler: Any, console: Any, backend: Any, reps: int) -> dict[str, float]:
    tps = [TopicPartition(f"topic-{t:02d}", p)
           for t in range(SAMPLER_TOPICS) for p in range(SAMPLER_PARTITIONS)]
    sample = sampler.sample_now()
    if len(sample.ends) != len(tps) or len(sample.lags) != SAMPLER_GROUPS:
        raise RuntimeError(f"the sample has {len(sample.ends)} partitions and "
                           f"{len(sample.lags)} groups")
    steps: dict[str, Callable[[], object]] = {
        "sample_now": sampler.sample_now,
        "end_offsets": console.end_offsets,
        "offset_range": lambda: [backend.offset_range(tp) for tp in tps],
    }
    return median_times(steps, reps)


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    versus: str = ""
    """What ``ratios`` compare with ("" : no ratio)."""

    def add(self, value: float, ratio: float | None = None) -> None:
        self.values.append(value)
        if ratio is not None:
            self.ratios.append(ratio)


class Results:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def add(self, name: str, unit: str, value: float, ratio: float | None = None,
            versus: str = "") -> None:
        row = self.rows.setdefault(name, Row(name, unit, versus=versus))
        row.add(value, ratio)

    def render(self, runs: int) -> str:
        lines = [f"| case | median of {runs} | min | max | unit | vs baseline "
                 f"(median of the runs' ratios) |",
                 "| --- | ---: | ---: | ---: | --- | --- |"]
        for r in self.rows.values():
            ratio = (f"{statistics.median(r.ratios):.3g}x {r.versus}" if r.ratios else "")
            lines.append(f"| {r.name} | {fmt(statistics.median(r.values))} | "
                         f"{fmt(min(r.values))} | {fmt(max(r.values))} | {r.unit} | "
                         f"{ratio} |")
        return "\n".join(lines)


# --------------------------------------------------------------------------- runs


def one_run(res: Results, transports: dict[str, Get], backend: Any, console: Any,
            sampler_env: tuple[Any, Any, Any], end: int, reps: int) -> None:
    walks = fetch_walks(backend, end, 3)
    rates = {name: page_walk(get, end) for name, get in transports.items()}
    walks += fetch_walks(backend, end, 3)
    base = statistics.median(walks)
    res.add("baseline: backend.fetch loop, 500 records per fetch", "records/s", base)
    for name, rate in rates.items():
        res.add(f"pages of 500 (next_offset), {name}", "records/s", rate, rate / base,
                "fetch loop")
    for name, get in transports.items():
        rate = nomatch_walk(get, end)
        res.add(f"filtered scan matching nothing (max_scan={NOMATCH_SCAN:,}), {name}",
                "records scanned/s", rate, rate / base, "fetch loop")
    mid = end // 2
    for name, get in transports.items():
        plain, filtered = prev_cost(get, mid, reps)
        res.add(f"page of 500 from the middle, unfiltered (prev_offset computed), {name}",
                "ms", plain * 1e3, plain / filtered, "filtered page")
        res.add(f"the same page filtered to every record (no prev_offset), {name}", "ms",
                filtered * 1e3)
    parts = page_parts(backend, console, mid, reps)
    res.add("for scale: backend.fetch of those 500 records", "ms", parts["fetch"] * 1e3)
    res.add("for scale: pydantic validate + dump_json of that page (FastAPI's step)", "ms",
            parts["dump_json"] * 1e3)
    res.add("for scale: client json.loads of that page", "ms", parts["json.loads"] * 1e3)
    sampler, s_console, s_backend = sampler_env
    cost = sampler_cost(sampler, s_console, s_backend, reps)
    where = (f"{SAMPLER_TOPICS} topics x {SAMPLER_PARTITIONS} partitions, "
             f"{SAMPLER_GROUPS} groups")
    res.add(f"Sampler.sample_now(), {where}", "ms", cost["sample_now"] * 1e3,
            cost["sample_now"] / cost["offset_range"], "offset_range of every partition")
    res.add("of which: Console.end_offsets()", "ms", cost["end_offsets"] * 1e3)
    res.add(f"floor: backend.offset_range of the {SAMPLER_TOPICS * SAMPLER_PARTITIONS} "
            f"partitions", "ms", cost["offset_range"] * 1e3)


def profile_walk(console: Any, end: int) -> None:
    """cProfile one walk of the partition through Console.records, each page serialised
    as FastAPI does and parsed back as a client does."""
    from pydantic import TypeAdapter

    adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])

    def walk() -> None:
        offset: int | None = 0
        while offset is not None:
            page = console.records(TOPIC, 0, offset=offset, limit=LIMIT)
            json.loads(adapter.dump_json(adapter.validate_python(page)))
            offset = page["next_offset"]

    prof = cProfile.Profile()
    prof.runcall(walk)
    print_profile(prof, f"a walk of {end:,} records through Console.records + "
                        f"dump_json + json.loads", top=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--records", type=int,
                        help="records in the partition (default 200,000; --quick 20,000)")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--workdir", help="where the data goes (default: a temporary one)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile a walk through Console.records, top to stderr")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    records = args.records or (20_000 if args.quick else 200_000)
    if records < 2 * LIMIT:
        parser.error(f"--records must be at least {2 * LIMIT}")
    reps = 5 if args.quick else 15
    logging.disable(logging.WARNING)

    from fastapi.testclient import TestClient

    from logstore.ui.app import create_app
    from logstore.ui.console import Console
    from logstore.ui.sampler import Sampler

    started = datetime.datetime.now().astimezone()
    t_all = clock()
    command = "benchmarks/bench_ui.py " + " ".join(sys.argv[1:])
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-ui-", dir=args.workdir))
    res = Results()
    try:
        progress(f"{command}: filling {records:,} records and the sampler's store in {root}")
        fill_browser(root / "browse", records)
        fill_sampler(root / "sampler")
        with logstore.open(root / "browse", maintenance=False) as store, \
                logstore.open(root / "sampler", maintenance=False) as s_store, \
                ui_process(root / "browse", root) as (host, port):
            backend = backend_for(store)
            console = Console(backend, kind="local", target=str(root / "browse"),
                              local=store)
            sampler = Sampler(console)
            sampler.sample_now()
            client = TestClient(create_app(console, sampler), base_url="http://127.0.0.1")
            conn = http.client.HTTPConnection(host, port, timeout=120)
            s_backend = backend_for(s_store)
            s_console = Console(s_backend, kind="local", target=str(root / "sampler"),
                                local=s_store)
            sampler_env = (Sampler(s_console), s_console, s_backend)
            layout = batch_layout(backend)
            transports = {"direct (Console.records)": direct_get(console),
                          "TestClient": client_get(client),
                          "HTTP (logstore ui process)": http_get(conn)}
            try:
                for get in transports.values():  # warm up: imports, connections, cache
                    get(records_path(offset=0))
                fetch_walk(backend, records)
                for run in range(args.runs):
                    t = clock()
                    one_run(res, transports, backend, console, sampler_env, records, reps)
                    progress(f"run {run + 1} of {args.runs} done in {clock() - t:.1f} s")
                if args.profile:
                    profile_walk(console, records)
            finally:
                conn.close()
                client.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    info = cpu_and_memory()
    print(f"## Web console (bench_ui.py), {started:%Y-%m-%d %H:%M %Z}\n")
    print(f"`.venv/bin/python {command}` at commit {git_commit(ROOT)}: {args.runs} run(s)"
          f"{' (QUICK sizes)' if args.quick else ''}, {clock() - t_all:.0f} s in all; "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
          f"{', ' + info['cpu'] if 'cpu' in info else ''}"
          f"{', ' + str(info['memory_gb']) + ' GB RAM' if 'memory_gb' in info else ''}.\n")
    print(f"One partition of {records:,} records (16-byte keys, 200-byte JSON values) in "
          f"{len(layout):,} batches of {min(layout)}-{max(layout)} records (median "
          f"{statistics.median(layout):.0f}); per-request rows: median of {reps} requests "
          f"per run.\n")
    print(res.render(args.runs))
    if args.profile:
        print("\n(--profile: the profiled walk ran after the timed runs)")


if __name__ == "__main__":
    main()
