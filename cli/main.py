"""``logstore``: the command line. Uses only the public ``logstore`` API."""

from __future__ import annotations

import click

import logstore
from logstore.config import DEFAULT_MAX_PARTITIONS, MAX_PARTITIONS

from .bench import bench
from .cluster import LogstoreGroup, choose_target
from .commands import consume, topics
from .datadir import INIT_KEY, MAX_PARTITIONS_KEY
from .demo import demo
from .dlq import dlq
from .groups import groups
from .inspect import inspect, verify
from .maintain import compact, maintain
from .mirror import mirror
from .produce import produce
from .repair import repair
from .replay import replay
from .serve import serve_command
from .share import share_groups
from .transactions import transactions
from .ui import ui
from .users import users


@click.group(cls=LogstoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    default="data",
    envvar="LOGSTORE_DATA_DIR",
    show_default=True,
    help="The store's directory (also from LOGSTORE_DATA_DIR); or --bootstrap-server.",
)
@click.option(
    "--bootstrap-server",
    envvar="LOGSTORE_BOOTSTRAP_SERVERS",
    metavar="HOST:PORT[,HOST:PORT]",
    help="Use a Kafka cluster instead of a data directory (also from "
    "LOGSTORE_BOOTSTRAP_SERVERS); a kafka://HOST:PORT?name=value address may carry "
    "librdkafka settings. topics, produce, consume, groups, replay, bench, dlq and ui work on "
    "it; the commands about a data directory's files are local-only.",
)
@click.option(
    "--kafka-config",
    "-X",
    multiple=True,
    metavar="NAME=VALUE",
    help="A librdkafka setting for --bootstrap-server (repeatable), e.g. "
    "security.protocol=SASL_SSL.",
)
@click.option(
    "--init",
    is_flag=True,
    help="Make a store in --data-dir even though it holds other files (they are never "
    "touched). Without it, only a missing or empty directory becomes a store.",
)
@click.option(
    "--max-partitions",
    type=click.IntRange(1, MAX_PARTITIONS),
    default=DEFAULT_MAX_PARTITIONS,
    envvar="LOGSTORE_MAX_PARTITIONS",
    show_default=True,
    help="The most partitions a topic may have (also from LOGSTORE_MAX_PARTITIONS).",
)
@click.version_option(logstore.__version__, prog_name="logstore")
@click.pass_context
def cli(
    ctx: click.Context,
    data_dir: str,
    bootstrap_server: str | None,
    kafka_config: tuple[str, ...],
    init: bool,
    max_partitions: int,
) -> None:
    """An embedded, Kafka-format, append-only partitioned log store.

    \b
    Examples:
      logstore demo                                    # the tour, on ./data
      logstore topics create orders --partitions 4
      seq 1 1000 | logstore produce orders
      logstore consume orders --from-beginning --group billing
      logstore groups describe billing
      logstore replay orders --from-time 1h --max-speed
      logstore --data-dir /tmp/store verify
      logstore serve --port 9092                       # for any Kafka client
      logstore ui                                      # a web console on :8080
      logstore --data-dir ~/project --init topics create events   # a non-empty directory
      logstore --bootstrap-server kafka1:9092 groups describe billing   # a Kafka cluster
    """
    ctx.obj = choose_target(ctx, data_dir, bootstrap_server, kafka_config)
    ctx.meta[INIT_KEY] = init
    ctx.meta[MAX_PARTITIONS_KEY] = max_partitions


cli.add_command(topics)
cli.add_command(produce)
cli.add_command(consume)
cli.add_command(bench)
cli.add_command(groups)
cli.add_command(replay)
cli.add_command(inspect)
cli.add_command(verify)
cli.add_command(repair)
cli.add_command(compact)
cli.add_command(maintain)
cli.add_command(demo)
cli.add_command(serve_command)
cli.add_command(users)
cli.add_command(share_groups)
cli.add_command(dlq)
cli.add_command(transactions)
cli.add_command(mirror)
cli.add_command(ui)


def main() -> None:
    cli(prog_name="logstore")


if __name__ == "__main__":
    main()
