"""``logstore demo``: the main job, end to end on one store.

Creates a topic, produces keyed events, consumes them with a group of worker processes
(each a separate OS process sharing the store, no server), shows the group's lag while
they work, and replays from a timestamp.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shlex
import time
from typing import Any

import click

import logstore
from logstore import TopicPartition

from .common import format_time, table, user_errors
from .datadir import open_store

GROUP = "demo-workers"


def _worker(data_dir: str, topic: str, number: int, stop: Any, results: Any) -> None:
    """One member of the group: poll, handle, commit, until told to stop."""
    handled: dict[int, int] = {}
    out_of_order = 0
    last_seq: dict[bytes, int] = {}
    with logstore.open(data_dir) as store, store.consumer(
        [topic], group_id=GROUP, auto_offset_reset="earliest", enable_auto_commit=True,
        heartbeat_interval_ms=100,
    ) as consumer:
        while not stop.is_set():
            records = consumer.poll(timeout_ms=50, max_records=500)
            for record in records:
                try:
                    seq = int(json.loads(record.value or b"{}")["seq"])
                except (ValueError, KeyError, TypeError):
                    seq = None  # not an event of this demo: handled, not order-checked
                key = record.key or b""
                if seq is not None:
                    if seq <= last_seq.get(key, -1):
                        out_of_order += 1
                    last_seq[key] = seq
                handled[record.partition] = handled.get(record.partition, 0) + 1
            if records:
                # a rebalance may have moved on under this member (others joining or
                # leaving): the next poll rejoins; what was not committed comes again
                with contextlib.suppress(logstore.CommitFailedError):
                    consumer.commit()
        results.put((number, os.getpid(), handled, out_of_order))


def _lag(store: logstore.Store, topic: str) -> int:
    """Events the group still has to handle (a partition without a committed offset
    counts from its log start, as the workers use auto_offset_reset=earliest)."""
    described = {(p.topic, p.partition): p for p in store.describe_group(GROUP).partitions}
    total = 0
    for info in store.describe_topic(topic).partitions:
        row = described.get((topic, info.partition))
        committed = row.committed if row is not None and row.committed is not None else None
        total += info.log_end_offset - (info.log_start_offset if committed is None else committed)
    return total


@click.command()
@click.option("--topic", default="demo-events", show_default=True, help="Topic to use.")
@click.option("--events", default=20_000, show_default=True, help="How many events.")
@click.option("--workers", default=3, show_default=True, help="Consumer worker processes.")
@click.pass_obj
@user_errors
def demo(data_dir: str, topic: str, events: int, workers: int) -> None:
    """The main job: produce keyed events, consume them with a group of worker
    processes, show the group's lag, and replay from a timestamp.

    \b
    Examples:
      logstore demo
      logstore --data-dir /tmp/store demo --events 100000 --workers 4
    """
    if events < 2 or workers < 1:
        raise click.ClickException("--events must be at least 2 and --workers at least 1")
    echo = click.echo
    with open_store(data_dir) as store:
        echo(f"store {store.path}: topics {', '.join(store.list_topics()) or 'none yet'}")
        t = store.create_topic(topic, partitions=4, flush="interval", exist_ok=True)

        # 1. a group of worker processes joins and shares the partitions
        ctx = mp.get_context("spawn")
        stop, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(data_dir, topic, n + 1, stop, results))
                 for n in range(workers)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        deadline = time.monotonic() + 60
        members: dict[str, list[TopicPartition]] = {}
        while time.monotonic() < deadline:
            members = store.describe_group(GROUP).members
            owned = sum(len(tps) for tps in members.values())
            if len(members) == workers and owned == t.num_partitions:
                break
            time.sleep(0.05)
        shares = sorted((sorted(tp.partition for tp in tps) for tps in members.values()),
                        key=lambda ps: ps[:1])
        echo(f"1. {len(members)} worker processes joined group {GROUP!r} in "
             f"{time.perf_counter() - start:.2f} s and share the {t.num_partitions} partitions "
             f"of {topic!r}: " + ", ".join(str(ps) for ps in shares))

        # 2. produce keyed events while the workers consume them
        users = [f"user-{i:02d}".encode() for i in range(100)]
        start = time.perf_counter()
        started_ms = int(time.time() * 1000)
        middle_ms = started_ms
        samples = [_lag(store, topic)]
        with store.producer() as producer:
            for i in range(events):
                if i == events // 2:
                    middle_ms = int(time.time() * 1000)
                if i and i % max(1, events // 4) == 0:
                    samples.append(_lag(store, topic))
                user = users[i % len(users)]
                body = {"seq": i, "user": user.decode(), "action": "click"}
                producer.send(topic, json.dumps(body).encode(), key=user)
        elapsed = time.perf_counter() - start
        echo(f"2. produced {events:,} events keyed by {len(users)} users in {elapsed:.2f} s "
             f"({events / elapsed:,.0f} events/s) while the workers consumed them")
        samples.append(_lag(store, topic))
        deadline = time.monotonic() + 120
        while samples[-1] > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            samples.append(_lag(store, topic))
        stop.set()
        reports = sorted(results.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=30)
        elapsed = time.perf_counter() - start
        handled = sum(sum(r[2].values()) for r in reports)
        disorder = sum(r[3] for r in reports)
        echo(f"3. the workers handled {handled:,} events, {elapsed:.2f} s after the first was "
             f"sent; per-key order kept: "
             f"{'yes' if not disorder else f'no ({disorder} out of order)'}")
        for number, pid, per_partition, _ in reports:
            spread = ", ".join(f"p{p}: {n:,}" for p, n in sorted(per_partition.items()))
            echo(f"   worker {number} (pid {pid}): {sum(per_partition.values()):,} events "
                 f"({spread or 'no partition'})")
        echo(f"   lag of group {GROUP!r} (events sent, not yet handled) over time: "
             + " -> ".join(f"{n:,}" for n in samples[:: max(1, len(samples) // 8)]
                           + samples[-1:]))
        d = store.describe_group(GROUP)
        table(["   PARTITION", "COMMITTED", "LOG-END", "LAG"],
              [[f"   {p.partition}", str(p.committed), str(p.log_end_offset), str(p.lag)]
               for p in d.partitions if p.topic == topic])

        # 4. replay from a timestamp
        start = time.perf_counter()
        replayed = 0
        with store.consumer(enable_auto_commit=False) as consumer:
            consumer.assign([TopicPartition(topic, p) for p in range(t.num_partitions)])
            consumer.seek_to_timestamp(middle_ms)
            while batch := consumer.poll(timeout_ms=0, max_records=5000):
                replayed += sum(1 for r in batch if r.timestamp >= started_ms)
        elapsed = time.perf_counter() - start
        echo(f"4. replay from {format_time(middle_ms)} (half-way through step 2): "
             f"{replayed:,} events read again in {elapsed * 1000:.0f} ms")
    where = "" if os.path.abspath(data_dir) == os.path.abspath("data") else (
        f" --data-dir {shlex.quote(data_dir)}")
    echo("explore (logstore is in .venv/bin: `source .venv/bin/activate` first, or run "
         "`./dev logstore ...`):")
    for command in (f"topics describe {topic}", f"groups describe {GROUP}",
                    f"consume {topic} --from-time 5m --max-messages 5 --print-key",
                    "ui    # a web console: topics, records, the group's lag, on :8080"):
        echo(f"  logstore{where} {command}")
