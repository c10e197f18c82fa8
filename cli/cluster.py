"""``--bootstrap-server``: the commands that work on a Kafka cluster as on a data directory,
and the one-line refusal of those that only make sense on a data directory's files.

The global options pick a *target*: a data directory (``--data-dir``) or a cluster
(``--bootstrap-server``, with librdkafka settings from ``--kafka-config`` or the query of
a ``kafka://`` address). The click context's ``obj`` is the directory, or the cluster's
``kafka://`` address; :func:`open_target` opens either, as ``logstore.open`` does, and the
commands that work on both go through the client API (the backend seam) only, so both
share one code path.
"""

from __future__ import annotations

import functools
import urllib.parse
from typing import Any

import click

import logstore
from logstore.backend import backend_for
from logstore.backend.kafka import SCHEME, is_kafka_url, parse_kafka_url
from logstore.client.backend import Backend

from .datadir import open_store

AnyStore = logstore.Store | logstore.KafkaStore
"""What a command that works on both kinds of target opens."""

CLUSTER_COMMANDS = frozenset(
    {"topics", "produce", "consume", "groups", "replay", "bench", "dlq", "mirror", "ui"}
)
"""The commands that do not refuse ``--bootstrap-server``: those that work on a cluster, and
``mirror``, which names its own stores (SRC and DST)."""

LOCAL_ONLY = {
    "inspect": "reads a data directory's segment and index files; it is local-only (the "
               "Kafka cluster's brokers keep their own files: kafka-dump-log.sh reads them)",
    "verify": "reads a data directory's files; it is local-only (the Kafka cluster's "
              "brokers check their own logs)",
    "repair": "cuts damaged segment files of a data directory; it is local-only (the Kafka "
              "cluster's brokers recover their own logs)",
    "compact": "compacts a data directory's segments; it is local-only (the Kafka "
               "cluster's log cleaner compacts its topics)",
    "maintain": "runs compaction and retention on a data directory; it is local-only (the "
                "Kafka cluster's brokers run their own)",
    "serve": "serves a data directory to Kafka clients; it is local-only (point Kafka "
             "clients at the cluster itself)",
    "users": "manages the SASL users of 'logstore serve'; it is local-only (a cluster's "
             "users are the brokers': kafka-configs.sh --entity-type users)",
    "share-groups": "reads a data directory's share-group state; it is local-only (the "
                    "Kafka backend has no share groups)",
    "transactions": "reads a data directory's transaction state; it is local-only "
                    "(kafka-transactions.sh lists a cluster's)",
    "demo": "runs the tour on a data directory; it is local-only",
}
"""Why each command that does not take ``--bootstrap-server`` refuses it."""

LOG_LEVEL = "log_level"
"""librdkafka's setting of which of its log lines it prints on stderr: 0 (none) unless
given, so that a command's errors stay one line (a broker that cannot be reached is the
command's error; ``-X log_level=7`` shows librdkafka's own account)."""
CLUSTER_KEY = "logstore.cluster"
"""Where the option that chose a cluster is kept in the click context's ``meta``:
``--bootstrap-server`` or ``LOGSTORE_BOOTSTRAP_SERVERS`` (absent: a data directory)."""


def cluster_address(servers: str, settings: tuple[str, ...]) -> str:
    """The ``kafka://`` address of ``--bootstrap-server`` (``HOST:PORT[,HOST:PORT...]``
    or a whole ``kafka://...?name=value`` address) with the ``--kafka-config`` settings
    (``NAME=VALUE``; they win over the address's own), with :data:`LOG_LEVEL` 0 unless
    one of them sets it.

    Raises:
        click.ClickException: a malformed address or setting (the message says which).
    """
    address = servers.strip()
    if not address.startswith(SCHEME):
        address = SCHEME + address
    extra: dict[str, str] = {}
    for pair in settings:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.ClickException(f"--kafka-config {pair!r} is not NAME=VALUE (a "
                                       f"librdkafka setting, e.g. security.protocol=SSL)")
        extra[name.strip()] = value
    try:
        _, own = parse_kafka_url(address)
    except logstore.InvalidConfigError as err:
        raise click.ClickException(f"--bootstrap-server: {err}") from None
    if LOG_LEVEL not in own:
        extra = {LOG_LEVEL: "0", **extra}
    if extra:
        address += ("&" if "?" in address else "?") + urllib.parse.urlencode(extra)
    return address


def choose_target(
    ctx: click.Context, data_dir: str, bootstrap_server: str | None, kafka_config: tuple[str, ...]
) -> str:
    """The target the global options name: the data directory, or a cluster's address
    (then kept in ``ctx.meta``). An option on the command line wins over the other's
    environment variable; both given the same way is an error.

    Raises:
        click.ClickException: both targets, or cluster options without a cluster.
    """
    source = ctx.get_parameter_source
    commandline = click.core.ParameterSource.COMMANDLINE
    cluster_from, dir_from = source("bootstrap_server"), source("data_dir")
    if bootstrap_server is not None and bootstrap_server.strip():
        if cluster_from == dir_from:  # both on the command line, or both from the environment
            given = ("--data-dir and --bootstrap-server" if cluster_from == commandline
                     else "LOGSTORE_DATA_DIR and LOGSTORE_BOOTSTRAP_SERVERS")
            raise click.ClickException(
                f"{given} both name a store: a command uses a data directory or a Kafka "
                f"cluster, not both (give one)"
            )
        if dir_from == commandline:  # --data-dir over LOGSTORE_BOOTSTRAP_SERVERS
            bootstrap_server = None
    if bootstrap_server is None or not bootstrap_server.strip():
        if kafka_config:
            raise click.ClickException("--kafka-config needs --bootstrap-server HOST:PORT")
        if is_kafka_url(data_dir):
            raise click.ClickException(
                f"--data-dir takes a directory: for a Kafka cluster use --bootstrap-server "
                f"{data_dir}"
            )
        return data_dir
    option = "--bootstrap-server" if cluster_from == commandline else "LOGSTORE_BOOTSTRAP_SERVERS"
    for name, flag in (("init", "--init"), ("max_partitions", "--max-partitions")):
        if source(name) == commandline:
            raise click.ClickException(
                f"{flag} is about a data directory; it does not apply to a Kafka cluster "
                f"({option})"
            )
    ctx.meta[CLUSTER_KEY] = option
    return cluster_address(bootstrap_server, kafka_config)


def refuse_on_cluster(command: click.Command, why: str) -> None:
    """Make ``command`` (each sub-command of a group) exit 1 with one line saying ``why``
    when a cluster was chosen; ``--help`` still works."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            refuse_on_cluster(sub, why)
        return
    callback = command.callback
    if callback is None or getattr(callback, "_refuses_clusters", False):
        return

    @functools.wraps(callback)
    def refusing(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        option = ctx.meta.get(CLUSTER_KEY)
        if option is not None:
            drop = f"drop {option}" if option.startswith("--") else f"unset {option}"
            raise click.ClickException(f"{ctx.command_path} {why}: {drop}")
        return callback(*args, **kwargs)

    refusing._refuses_clusters = True  # type: ignore[attr-defined]
    command.callback = refusing


class LogstoreGroup(click.Group):
    """The ``logstore`` group: every command added that is not in
    :data:`CLUSTER_COMMANDS` refuses a cluster (:data:`LOCAL_ONLY` says why)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(cmd, name)
        name = name or cmd.name or ""
        if name not in CLUSTER_COMMANDS:
            refuse_on_cluster(cmd, LOCAL_ONLY.get(
                name, "works on a data directory only; it is local-only"))


def open_target(
    target: str,
    *,
    read_only_ok: bool = False,
    must_exist: bool | None = None,
    maintenance: bool = True,
) -> AnyStore:
    """The store the global options chose: :func:`~.datadir.open_store` for a data
    directory (the keyword arguments are its), a :class:`logstore.KafkaStore` for a
    ``kafka://`` address."""
    if is_kafka_url(target):
        return logstore.KafkaStore(target)
    return open_store(target, read_only_ok=read_only_ok, must_exist=must_exist,
                      maintenance=maintenance)


def backend_of(store: AnyStore) -> Backend:
    """The backend the clients of ``store`` use (the seam both kinds of store share)."""
    if isinstance(store, logstore.KafkaStore):
        return store.backend
    return backend_for(store)
