"""``logstore bench produce|consume``: throughput and latency, like kafka-producer-perf-test.

``produce`` sends fixed-size records through a :class:`logstore.Producer` and times each
one from ``send()`` to its acknowledgement (the callback); ``consume`` reads a topic from
the beginning with an assigned consumer (no group) and times each ``poll()``. Both print
one summary line on stdout (or one JSON object with ``--json``); a progress bar is drawn
(on stderr) only when stdout is a terminal.

Memory stays flat: payloads are made once, no future is kept, and latencies go into one
preallocated ``array('d')`` of at most :data:`MAX_LATENCY_SAMPLES` entries (beyond that,
every k-th record is timed, as kafka-producer-perf-test samples).
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from array import array
from collections.abc import Sequence
from typing import Any

import click

import logstore
from logstore import TopicPartition

from .cluster import backend_of, open_target
from .commands import _config_pairs
from .common import progress, user_errors
from .partitions import spans

MB = 1024 * 1024  # kafka-producer-perf-test's MB
MAX_LATENCY_SAMPLES = 1_000_000  # 8 MB of doubles
PAYLOAD_POOL_BYTES = 4 * MB  # distinct payloads are made up to this many bytes in all
PAYLOAD_POOL_MAX = 256
PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p99_9", 99.9))
CODECS = [c.name.lower() for c in logstore.Compression]
# a translate table taking any byte to a capital letter: values look like
# kafka-producer-perf-test's (random A-Z), which compress about as well as text does
_LETTERS = bytes(65 + b % 26 for b in range(256))

clock = time.perf_counter


@click.group()
def bench() -> None:
    """Measure produce and consume throughput and latency on this store (a data
    directory, or with --bootstrap-server a Kafka cluster).

    \b
    Examples:
      logstore bench produce perf --records 200000 --record-size 100
      logstore bench consume perf
    """


# ---------------------------------------------------------------------------- produce


@bench.command("produce", short_help="Producer throughput and send-to-ack latency.")
@click.argument("topic")
@click.option("--records", "-n", type=int, default=100_000, show_default=True,
              help="How many records to send.")
@click.option("--record-size", type=int, default=100, show_default=True,
              help="Bytes of each value.")
@click.option("--partitions", "-p", type=int, default=1, show_default=True,
              help="Partition count if the topic is created (an existing topic keeps its own).")
@click.option("--config", "-c", multiple=True,
              help="NAME=VALUE setting if the topic is created (repeatable), e.g. flush=never.")
@click.option("--linger-ms", type=int, default=5, show_default=True,
              help="How long a record may wait for others to share its batch.")
@click.option("--batch-size", type=int,
              help="Bytes at which a batch is written  [default: the producer's, 256 KiB]")
@click.option("--compression", type=click.Choice(CODECS), default="none", show_default=True,
              help="Codec of every batch.")
@click.option("--keys", type=int, default=0, show_default=True,
              help="Distinct keys, used in turn (0: no keys, partitions in turn).")
@click.option("--throughput", type=float,
              help="Send at most this many records/s  [default: as fast as possible]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts.")
@click.pass_obj
@user_errors
def bench_produce(
    target: str,
    topic: str,
    records: int,
    record_size: int,
    partitions: int,
    config: tuple[str, ...],
    linger_ms: int,
    batch_size: int | None,
    compression: str,
    keys: int,
    throughput: float | None,
    as_json: bool,
) -> None:
    """Send --records records of --record-size bytes to TOPIC (created if missing) and
    print records/s, MB/s (values and keys) and the latency from send() to ack.

    Values are random capital letters (up to 256 distinct ones, made once). A new topic
    has the defaults (flush=always: an fsync per batch) unless --config says otherwise.
    Latency percentiles cover every record, or every k-th one beyond a million.

    \b
    Examples:
      logstore bench produce perf
      logstore bench produce perf -n 1000000 --record-size 512 -p 4 --keys 1000
      logstore bench produce perf --compression zstd --linger-ms 20 -c flush=never
      logstore bench produce perf --throughput 50000 --json
    """
    _at_least("--records", records, 1)
    _at_least("--record-size", record_size, 0)
    _at_least("--partitions", partitions, 1)
    _at_least("--linger-ms", linger_ms, 0)
    _at_least("--batch-size", batch_size, 1)
    _at_least("--keys", keys, 0)
    if throughput is not None and throughput <= 0:
        raise click.ClickException(f"--throughput must be positive (got {throughput:g})")
    settings = _config_pairs(config)
    if "partitions" in settings:
        raise click.ClickException("give the partition count with --partitions, not --config")
    values = _payloads(record_size, records)
    key_list = [f"key-{i}".encode() for i in range(keys)]
    options: dict[str, Any] = {"linger_ms": linger_ms, "compression": compression}
    if batch_size is not None:
        options["batch_bytes"] = batch_size

    with open_target(target) as store:
        created = not store.has_topic(topic)
        store.create_topic(topic, partitions, exist_ok=True, **settings)
        num_partitions = backend_of(store).topic_metadata(topic).partitions
        with store.producer(**options) as producer:
            batch_bytes = producer.batch_bytes
            sent, elapsed, latencies, errors = _produce(
                producer, topic, records, values, key_list, throughput
            )
    if errors:
        raise click.ClickException(
            f"{len(errors)} of {sent} record(s) to {topic!r} failed: {errors[0]}"
        )

    nbytes = sent * record_size + _key_bytes(key_list, sent)
    rate = sent / max(elapsed, 1e-9)
    mb_rate = nbytes / MB / max(elapsed, 1e-9)
    lat = _summary(latencies)
    if as_json:
        click.echo(json.dumps({
            "topic": topic,
            "created": created,
            "partitions": num_partitions,
            "records": sent,
            "record_size": record_size,
            "keys": keys,
            "compression": compression,
            "linger_ms": linger_ms,
            "batch_size": batch_bytes,
            "throughput": throughput,
            "bytes": nbytes,
            "elapsed_s": round(elapsed, 6),
            "records_per_sec": round(rate, 1),
            "mb_per_sec": round(mb_rate, 3),
            "latency_ms": {k: round(v, 3) for k, v in lat.items()},
            "latency_samples": len(latencies),
        }))
        return
    sampled = "" if len(latencies) == sent else f" (latency of {len(latencies)} samples)"
    click.echo(
        f"{sent} records sent, {rate:.1f} records/sec ({mb_rate:.2f} MB/sec), "
        f"{lat['avg']:.2f} ms avg latency, {lat['max']:.2f} ms max latency, "
        f"{lat['p50']:.2f} ms 50th, {lat['p95']:.2f} ms 95th, {lat['p99']:.2f} ms 99th, "
        f"{lat['p99_9']:.2f} ms 99.9th{sampled}."
    )


def _produce(
    producer: logstore.Producer,
    topic: str,
    records: int,
    values: list[bytes],
    keys: list[bytes],
    throughput: float | None,
) -> tuple[int, float, array[float], list[BaseException]]:
    """Send the records; returns how many were sent, the seconds until the last was
    acknowledged, the latencies (s) of the timed ones and the errors of failed ones."""
    every = math.ceil(records / MAX_LATENCY_SAMPLES)  # time records 0, every, 2*every ...
    # a timed record's slot holds its send time until its callback makes it the latency
    latencies = array("d", bytes(8 * math.ceil(records / every)))
    errors: list[BaseException] = []

    def acked(meta: logstore.RecordMetadata | None, err: BaseException | None) -> None:
        if err is not None:
            errors.append(err)

    def timed(
        slot: int, meta: logstore.RecordMetadata | None, err: BaseException | None
    ) -> None:
        if err is None:
            latencies[slot] = clock() - latencies[slot]
        else:
            errors.append(err)

    chunk = max(1, min(10_000, records // 200))  # records between progress and rate checks
    if throughput is not None:
        chunk = max(1, min(chunk, int(throughput / 100)))  # about 10 ms of sending
    nvalues, nkeys = len(values), len(keys)
    send = producer.send
    sent = 0
    with progress(records, f"producing to {topic}") as bar:
        start = clock()
        while sent < records and not errors:
            end = min(records, sent + chunk)
            for i in range(sent, end):
                value = values[i % nvalues]
                key = keys[i % nkeys] if nkeys else None
                if i % every:
                    send(topic, value, key).add_callback(acked)
                else:
                    slot = i // every
                    latencies[slot] = clock()
                    send(topic, value, key).add_callback(functools.partial(timed, slot))
            bar.update(end - sent)
            sent = end
            if throughput is not None:
                ahead = start + sent / throughput - clock()
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()  # every callback has run when this returns
        elapsed = clock() - start
    return sent, elapsed, latencies[: math.ceil(sent / every)], errors


def _payloads(size: int, records: int) -> list[bytes]:
    """A few distinct values of ``size`` random capital letters (at most
    :data:`PAYLOAD_POOL_MAX`, and :data:`PAYLOAD_POOL_BYTES` in all), used in turn."""
    count = max(1, min(records, PAYLOAD_POOL_MAX, PAYLOAD_POOL_BYTES // max(size, 1)))
    raw = random.Random(records).randbytes(size * count).translate(_LETTERS)
    return [raw[i * size : (i + 1) * size] for i in range(count)]


def _key_bytes(keys: list[bytes], sent: int) -> int:
    """Bytes of the keys of ``sent`` records that used ``keys`` in turn."""
    if not keys:
        return 0
    rounds, rest = divmod(sent, len(keys))
    return rounds * sum(map(len, keys)) + sum(map(len, keys[:rest]))


# ---------------------------------------------------------------------------- consume


@bench.command("consume", short_help="Consumer throughput and poll() time.")
@click.argument("topic")
@click.option("--records", "-n", type=int,
              help="How many records to read  [default: all, up to the end at the start]")
@click.option("--max-records-per-poll", type=int, default=500, show_default=True,
              help="The most records one poll() returns.")
@click.option("--timeout-ms", type=int, default=10_000, show_default=True,
              help="Fail after this long without a record.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts.")
@click.pass_obj
@user_errors
def bench_consume(
    target: str,
    topic: str,
    records: int | None,
    max_records_per_poll: int,
    timeout_ms: int,
    as_json: bool,
) -> None:
    """Read TOPIC from the beginning of every partition and print records/s, MB/s
    (values and keys), the elapsed time and the time per poll() call.

    The consumer has no group and commits nothing. Polls that return no record are
    left out of the poll times.

    \b
    Examples:
      logstore bench consume perf
      logstore bench consume perf --records 100000 --max-records-per-poll 2000
      logstore bench consume perf --json
    """
    _at_least("--records", records, 1)
    _at_least("--max-records-per-poll", max_records_per_poll, 1)
    _at_least("--timeout-ms", timeout_ms, 0)
    with open_target(target) as store:
        parts = spans(backend_of(store), topic)
        available = sum(p.end - p.start for p in parts)
        if records is None:
            if not available:
                raise click.ClickException(f"topic {topic!r} is empty: nothing to consume")
            records = available
        elif records > available:
            raise click.ClickException(
                f"topic {topic!r} holds {available} record(s), fewer than --records {records}"
            )
        consumer = store.consumer(
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=max_records_per_poll,
        )
        try:
            consumer.assign([TopicPartition(topic, p.partition) for p in parts])
            consumer.seek_to_beginning()
            seen, nbytes, elapsed, polls = _consume(
                consumer, topic, records, max_records_per_poll, timeout_ms
            )
        finally:
            consumer.close()

    rate = seen / max(elapsed, 1e-9)
    mb_rate = nbytes / MB / max(elapsed, 1e-9)
    lat = _summary(polls)
    if as_json:
        click.echo(json.dumps({
            "topic": topic,
            "partitions": len(parts),
            "records": seen,
            "bytes": nbytes,
            "elapsed_s": round(elapsed, 6),
            "records_per_sec": round(rate, 1),
            "mb_per_sec": round(mb_rate, 3),
            "polls": len(polls),
            "max_records_per_poll": max_records_per_poll,
            "poll_ms": {k: round(v, 4) for k, v in lat.items()},
        }))
        return
    click.echo(
        f"{seen} records consumed in {elapsed:.3f} s, {rate:.1f} records/sec "
        f"({mb_rate:.2f} MB/sec, {nbytes / MB:.2f} MB), {len(polls)} polls, "
        f"{lat['avg']:.3f} ms avg poll, {lat['max']:.3f} ms max poll, "
        f"{lat['p50']:.3f} ms 50th, {lat['p95']:.3f} ms 95th, {lat['p99']:.3f} ms 99th, "
        f"{lat['p99_9']:.3f} ms 99.9th."
    )


def _consume(
    consumer: logstore.Consumer, topic: str, records: int, per_poll: int, timeout_ms: int
) -> tuple[int, int, float, array[float]]:
    """Poll until ``records`` arrived; returns their count and bytes, the seconds it
    took and the duration (s) of every poll that returned records."""
    polls = array("d")
    seen = nbytes = 0
    poll = consumer.poll
    with progress(records, f"consuming {topic}") as bar:
        start = idle_since = clock()
        while seen < records:
            before = clock()
            got = poll(timeout_ms=min(100, timeout_ms), max_records=min(per_poll, records - seen))
            after = clock()
            if not got:
                if (after - idle_since) * 1000 >= timeout_ms:
                    raise click.ClickException(
                        f"only {seen} of {records} record(s) of {topic!r} arrived: none for "
                        f"{timeout_ms} ms (deleted by retention meanwhile?)"
                    )
                continue
            idle_since = after
            polls.append(after - before)
            for r in got:
                nbytes += len(r.value or b"") + len(r.key or b"")
            seen += len(got)
            bar.update(len(got))
        elapsed = clock() - start
    return seen, nbytes, elapsed, polls


# ---------------------------------------------------------------------------- shared


def _at_least(option: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise click.ClickException(f"{option} must be at least {low} (got {value})")


def _summary(seconds: Sequence[float]) -> dict[str, float]:
    """avg, nearest-rank percentiles and max of durations in seconds, in milliseconds."""
    ordered = sorted(seconds)
    n = len(ordered)
    if not n:
        return dict.fromkeys(["avg", *(name for name, _ in PERCENTILES), "max"], 0.0)
    out = {"avg": sum(ordered) / n * 1e3}
    for name, p in PERCENTILES:
        out[name] = ordered[max(0, min(n - 1, math.ceil(p / 100 * n) - 1))] * 1e3
    out["max"] = ordered[-1] * 1e3
    return out
