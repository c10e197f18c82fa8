"""``logstore``: the command line. Uses only the public ``logstore`` API."""

from __future__ import annotations

import os
import time

import click

import logstore

from .bench import bench
from .commands import consume, produce, topics


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    default="data",
    envvar="LOGSTORE_DATA_DIR",
    show_default=True,
    help="The store's directory (also from LOGSTORE_DATA_DIR).",
)
@click.version_option(logstore.__version__, prog_name="logstore")
@click.pass_context
def cli(ctx: click.Context, data_dir: str) -> None:
    """An embedded, Kafka-format, append-only partitioned log store.

    \b
    Examples:
      logstore demo
      logstore --data-dir /tmp/store demo --records 5000
    """
    ctx.obj = data_dir


@cli.command()
@click.option("--topic", default="demo-events", show_default=True, help="Topic to write.")
@click.option("--records", default=10_000, show_default=True, help="How many records.")
@click.pass_obj
def demo(data_dir: str, topic: str, records: int) -> None:
    """Write keyed events to a topic, read them back, and replay from a timestamp.

    \b
    Example:
      logstore demo --records 1000
    """
    try:
        _demo(data_dir, topic, records)
    except logstore.LogstoreError as err:
        raise click.ClickException(str(err)) from err


def _demo(data_dir: str, topic: str, records: int) -> None:
    echo = click.echo
    with logstore.open(data_dir) as store:
        echo(f"store {os.path.abspath(data_dir)}: topics {store.list_topics() or 'none yet'}")
        t = store.create_topic(topic, partitions=3, flush="interval", exist_ok=True)
        before = {p.partition: p.log_end_offset for p in t.describe().partitions}
        users = [f"user-{i}".encode() for i in range(20)]
        start = time.perf_counter()
        written_at = int(time.time() * 1000)
        batch = [
            (f'{{"event": {i}, "kind": "click"}}'.encode(), users[i % len(users)], None, None,
             None)
            for i in range(records)
        ]
        metas = store.append_many(topic, batch)
        elapsed = time.perf_counter() - start
        echo(
            f"produced {len(metas)} keyed events to {topic!r} ({t.num_partitions} partitions) "
            f"in {elapsed * 1000:.0f} ms ({len(metas) / max(elapsed, 1e-9):,.0f} records/s)"
        )
        start = time.perf_counter()
        read = 0
        keys_per_partition: dict[int, set[bytes]] = {}
        for info in t.describe().partitions:
            offset = before[info.partition]
            while offset < info.log_end_offset:
                recs = store.read(topic, info.partition, offset)
                for r in recs:
                    keys_per_partition.setdefault(info.partition, set()).add(r.key or b"")
                read += len(recs)
                offset = recs[-1].offset + 1
        elapsed = time.perf_counter() - start
        echo(f"consumed {read} new events back in {elapsed * 1000:.0f} ms; each key stays in "
             f"one partition: " + ", ".join(
                 f"p{p}={len(k)} keys" for p, k in sorted(keys_per_partition.items())))
        replayed = 0
        for info in t.describe().partitions:
            found = t.partition(info.partition).offset_for_timestamp(written_at)
            if found is not None:
                replayed += info.log_end_offset - found
        echo(f"replay from {time.strftime('%H:%M:%S', time.localtime(written_at / 1000))}: "
             f"{replayed} events have a timestamp at or after it")
        for info in t.describe().partitions:
            echo(f"  partition {info.partition}: offsets [{info.log_start_offset}, "
                 f"{info.log_end_offset}), {info.size_bytes:,} bytes in {info.segments} "
                 f"segment(s)")


cli.add_command(topics)
cli.add_command(produce)
cli.add_command(consume)
cli.add_command(bench)


def main() -> None:
    cli(prog_name="logstore")


if __name__ == "__main__":
    main()
