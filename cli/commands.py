"""``logstore topics ...`` and ``logstore consume`` (``produce`` is in ``produce.py``).

Built on the public ``logstore`` API only, through the client API (the backend seam), so
the same code serves a data directory and a Kafka cluster (``--bootstrap-server``); only
``topics describe``'s bytes and segments, and compaction state, are a data directory's.
A user error (unknown topic, bad offset, a store locked by another exclusive user)
prints one line on stderr and exits non-zero; there is never a traceback.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import click

import logstore
from logstore import CompactionState, TopicPartition
from logstore.client.backend import Backend

from .cluster import AnyStore, backend_of, open_target
from .common import TIME_HELP, parse_time, table, until_interrupted, user_errors
from .partitions import Span, check_partition, spans


def _config_pairs(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--config")
        value: Any = raw
        if raw.lstrip("-").isdigit():
            value = int(raw)
        else:
            with contextlib.suppress(ValueError):
                value = float(raw) if "." in raw else raw
        out[name.strip().replace(".", "_")] = value
    return out


# ---------------------------------------------------------------------------- topics


@click.group()
def topics() -> None:
    """Create, list, describe, alter and delete topics.

    \b
    Examples:
      logstore topics create orders --partitions 4 --config retention_ms=86400000
      logstore topics list
      logstore topics describe orders --json
    """


@topics.command("create")
@click.argument("name")
@click.option("--partitions", "-p", default=1, show_default=True, help="Partition count.")
@click.option("--config", "-c", multiple=True, help="NAME=VALUE topic setting (repeatable).")
@click.option("--if-not-exists", is_flag=True, help="Succeed if the topic exists.")
@click.pass_obj
@user_errors
def topics_create(
    target: str, name: str, partitions: int, config: tuple[str, ...], if_not_exists: bool
) -> None:
    """Create topic NAME.

    With --if-not-exists, a topic of that name that exists already is left as it is
    (its partitions and config are not changed) and the command succeeds.

    \b
    Example:
      logstore topics create orders -p 4 -c flush=interval
    """
    try:
        logstore.TopicConfig(partitions=partitions)
    except logstore.InvalidConfigError as err:
        raise click.ClickException(
            str(err).replace("topic config partitions=", "--partitions ")
        ) from None
    settings = _config_pairs(config)
    if "partitions" in settings:
        raise click.ClickException("give the partition count with --partitions, not --config")
    with open_target(target) as store:
        try:
            store.create_topic(name, partitions, **settings)
        except logstore.PartitionLimitError as err:
            raise _partition_limit(err) from None
        except logstore.TopicExistsError:
            existing = backend_of(store).topic_metadata(name).partitions
            if not if_not_exists:
                raise click.ClickException(
                    f"topic {name!r} already exists, with {existing} partition(s) (add "
                    f"--if-not-exists to accept an existing topic)"
                ) from None
            click.echo(f"topic {name!r} already exists, with {existing} partition(s); left "
                       f"as it is")
            return
    click.echo(f"created topic {name!r} with {partitions} partition(s)")


@topics.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
@user_errors
def topics_list(target: str, as_json: bool) -> None:
    """List the topics.

    \b
    Example:
      logstore topics list --json
    """
    with open_target(target, read_only_ok=True) as store:
        backend = backend_of(store)
        rows = [(n, backend.topic_metadata(n).partitions) for n in store.list_topics()]
    if as_json:
        click.echo(json.dumps([{"name": n, "partitions": p} for n, p in rows]))
        return
    table(["TOPIC", "PARTITIONS"], [[n, str(p)] for n, p in rows])


@topics.command("describe")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
@user_errors
def topics_describe(target: str, name: str, as_json: bool) -> None:
    """Partitions (start and end offsets; on a data directory also bytes, segments and
    compaction state) and config of topic NAME.

    On a Kafka cluster the config shows the settings made on the topic (the others are
    the brokers' defaults); bytes and segments are local-only (the brokers keep the files).

    \b
    Example:
      logstore topics describe orders
    """
    with open_target(target, read_only_ok=True) as store:
        backend = backend_of(store)
        parts = spans(backend, name)
        settings = backend.topic_config(name)
        files = (None if isinstance(store, logstore.KafkaStore)
                 else {p.partition: p for p in store.describe_topic(name).partitions})
    config = settings.to_dict()
    config["partitions"] = len(parts)
    if files is None:  # the cluster's: only what was set on the topic is logstore's
        defaults = logstore.TopicConfig().to_dict()
        config = {k: v for k, v in config.items() if k == "partitions" or v != defaults[k]}
    if as_json:
        click.echo(json.dumps({
            "name": name,
            "config": config,
            "partitions": [_partition_json(p, files) for p in parts],
        }))
        return
    click.echo(f"topic {name}")
    compacted = files is not None and settings.compact
    header = ["PARTITION", "START", "END", "RECORDS"]
    if files is not None:
        header += ["BYTES", "SEGMENTS"] + (["DIRTY", "CLEANED-TO", "RECLAIMED"]
                                           if compacted else [])
    rows = []
    for p in parts:
        row = [str(p.partition), str(p.start), str(p.end), str(p.end - p.start)]
        if files is not None:
            info = files[p.partition]
            row += [f"{info.size_bytes:,}", str(info.segments)]
            row += _compaction_cells(info.compaction) if compacted else []
        rows.append(row)
    table(header, rows)
    shown = ", ".join(f"{k}={v}" for k, v in config.items())
    if files is None:
        click.echo(f"config (set on the topic; the rest are the brokers' defaults): {shown}")
        click.echo("bytes, segments and compaction state: local-only (the cluster's brokers "
                   "keep the files; kafka-log-dirs.sh --describe shows their sizes)")
    else:
        click.echo("config: " + shown)


def _partition_json(
    span: Span, files: dict[int, logstore.PartitionInfo] | None
) -> dict[str, object]:
    """One partition for ``topics describe --json`` (bytes, segments and compaction are
    None on a cluster: local-only)."""
    info = None if files is None else files[span.partition]
    return {
        "partition": span.partition,
        "log_start_offset": span.start,
        "log_end_offset": span.end,
        "size_bytes": None if info is None else info.size_bytes,
        "segments": None if info is None else info.segments,
        "compaction": None if info is None or info.compaction is None
        else info.compaction.to_dict(),
    }


def _compaction_cells(state: CompactionState | None) -> list[str]:
    """Dirty ratio, last cleaned offset (- before the first run) and bytes reclaimed."""
    if state is None:
        return ["-", "-", "-"]
    cleaned = "-" if state.last_cleaned_offset < 0 else str(state.last_cleaned_offset)
    return [f"{state.dirty_ratio:.2f}", cleaned, f"{state.bytes_reclaimed:,}"]


@topics.command("alter")
@click.argument("name")
@click.option("--config", "-c", multiple=True, required=True, help="NAME=VALUE to change.")
@click.pass_obj
@user_errors
def topics_alter(target: str, name: str, config: tuple[str, ...]) -> None:
    """Change settings of topic NAME.

    \b
    Example:
      logstore topics alter orders -c retention_ms=3600000
    """
    changes = _config_pairs(config)
    if "partitions" in changes:
        raise click.ClickException(
            f"the partition count is not a setting to alter: use 'logstore topics "
            f"add-partitions {name} --total N' (partitions can only be added)"
        )
    with open_target(target) as store:
        store.alter_topic(name, **changes)
    click.echo(f"altered topic {name!r}: {', '.join(config)}")


def _partition_limit(err: logstore.PartitionLimitError) -> click.ClickException:
    """The partition limit in the command line's words."""
    if err.hard:
        return click.ClickException(str(err))
    return click.ClickException(
        f"topic {err.topic!r} cannot have {err.count} partitions: this store allows at most "
        f"{err.limit} per topic (each is a directory of files); if you mean it, pass "
        f"--max-partitions {err.count} (or set LOGSTORE_MAX_PARTITIONS={err.count})"
    )


@topics.command("add-partitions")
@click.argument("name")
@click.option("--total", required=True, type=int, help="The new partition count.")
@click.pass_obj
@user_errors
def topics_add_partitions(target: str, name: str, total: int) -> None:
    """Grow topic NAME to --total partitions.

    \b
    Example:
      logstore topics add-partitions orders --total 8
    """
    with open_target(target) as store:
        current = backend_of(store).topic_metadata(name).partitions
        if total <= current:
            raise click.ClickException(
                f"topic {name!r} has {current} partition(s): --total must be more than "
                f"that, not {total} (partitions can only be added)"
            )
        try:
            store.add_partitions(name, total)
        except logstore.PartitionLimitError as err:
            raise _partition_limit(err) from None
    click.echo(f"topic {name!r} now has {total} partitions")


@topics.command("delete")
@click.argument("name")
@click.pass_obj
@user_errors
def topics_delete(target: str, name: str) -> None:
    """Delete topic NAME and all its records.

    \b
    Example:
      logstore topics delete orders
    """
    with open_target(target) as store:
        store.delete_topic(name)
    click.echo(f"deleted topic {name!r}")


# ---------------------------------------------------------------------------- consume


@click.command()
@click.argument("topic")
@click.option("--group", help="Consume as this group (commits offsets).")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset.")
@click.option("--offset", type=int, help="Start at this offset (with --partition).")
@click.option("--from-time", help=f"Start at the first record at or after this time: {TIME_HELP}.")
@click.option("--partition", type=int, help="Read only this partition.")
@click.option("--max-messages", type=int, help="Stop after N records.")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new records (tail -f).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "raw"]), default="text",
    show_default=True, help="text: the value; json: an object a record; raw: value bytes.",
)
@click.option("--print-timestamp", is_flag=True, help="Print CreateTime:MS (text).")
@click.option("--print-partition", is_flag=True, help="Print Partition:N (text).")
@click.option("--print-offset", is_flag=True, help="Print Offset:N (text).")
@click.option("--print-headers", is_flag=True, help="Print k:v,k2:v2 or NO_HEADERS (text).")
@click.option("--print-key", is_flag=True, help="Print the key, 'null' if none (text).")
@click.option(
    "--commit-interval-ms", type=click.IntRange(min=0), default=5000, show_default=True,
    help="With --group: commit what was printed this often (Kafka's auto.commit.interval.ms).",
)
@click.pass_obj
@user_errors
def consume(
    target: str,
    topic: str,
    group: str | None,
    from_beginning: bool,
    offset: int | None,
    from_time: str | None,
    partition: int | None,
    max_messages: int | None,
    follow: bool,
    fmt: str,
    print_timestamp: bool,
    print_partition: bool,
    print_offset: bool,
    print_headers: bool,
    print_key: bool,
    commit_interval_ms: int,
) -> None:
    """Print TOPIC's records; without --follow, exit once caught up.

    Text output is one record a line; the --print-* options put tab-separated fields
    before the value, in the order and format of kafka-console-consumer
    (CreateTime, Partition, Offset, headers, key).

    With --group, the group's offsets are committed for what has been printed (written
    to stdout and flushed): every --commit-interval-ms, before a partition moves to
    another member, and on exit, including Ctrl-C, SIGTERM, SIGHUP and a closed pipe.
    A killed (SIGKILL) consumer repeats at most one interval's records on its next run.

    \b
    Examples:
      logstore consume numbers --from-beginning | wc -l
      logstore consume orders --group billing -f
      logstore consume orders --from-time 2h --print-timestamp --print-key
      logstore consume orders --from-time 2026-12-01T09:00:00Z --max-messages 10
      logstore consume orders --partition 0 --offset 42 --max-messages 10 --format json
    """
    if offset is not None and partition is None:
        raise click.ClickException("--offset needs --partition")
    if sum([from_beginning, offset is not None, from_time is not None]) > 1:
        raise click.ClickException("choose one of --from-beginning, --offset and --from-time")
    if max_messages is not None and max_messages < 1:
        raise click.ClickException(f"--max-messages {max_messages} must be at least 1")
    start_ms = None if from_time is None else parse_time(
        from_time, int(time.time() * 1000), "--from-time"
    )
    fields = Fields(print_timestamp, print_partition, print_offset, print_headers, print_key)
    out = sys.stdout.buffer

    def emit(records: list[logstore.ConsumerRecord]) -> None:
        out.write(b"".join(render_record(r, fmt, fields) for r in records))
        out.flush()

    with until_interrupted(*_STOP_SIGNALS) as stopped, open_target(
        target, read_only_ok=group is None
    ) as store:
        _consume(store, topic, group, from_beginning, offset, start_ms, partition,
                 max_messages, follow, emit, stopped.is_set, commit_interval_ms / 1000)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What stops ``consume`` cleanly: it finishes the poll, commits what it printed and
leaves its group."""


def _consume(
    store: AnyStore,
    topic: str,
    group: str | None,
    from_beginning: bool,
    offset: int | None,
    start_ms: int | None,
    partition: int | None,
    max_messages: int | None,
    follow: bool,
    emit: Callable[[list[logstore.ConsumerRecord]], object],
    stop: Callable[[], bool],
    commit_interval: float = 5.0,
) -> None:
    """Poll and ``emit`` until caught up (or, with ``follow``, until ``stop()``).

    With a group, offsets are committed for the records ``emit`` has returned from (so
    printed), never beyond: every ``commit_interval`` seconds, for partitions about to move
    to another member, and on the way out, whatever the way out (a signal, a closed pipe,
    an error).
    """
    sought: set[TopicPartition] = set()
    # the offset after the last record emitted, where a partition's records were not all
    # emitted (an emit that failed); elsewhere the consumer's position says it
    unprinted: dict[TopicPartition, int] = {}
    committed: dict[TopicPartition, int] = {}

    def commit(tps: list[TopicPartition] | None = None) -> None:
        chosen = {}
        for tp in consumer.assignment() if tps is None else tps:
            if not store.has_topic(tp.topic):
                continue  # deleted meanwhile: its offsets went with it
            at = unprinted.get(tp)
            if at is None:
                at = consumer.position(tp)
            if committed.get(tp) != at:
                chosen[tp] = at
        if chosen:
            consumer.commit(chosen)
            committed.update(chosen)

    def on_assign(tps: list[TopicPartition]) -> None:
        # --from-time with a group: each partition starts at the time once, the first time
        # this member gets it; later rebalances resume from the committed offsets
        if start_ms is not None:
            fresh = [tp for tp in tps if tp not in sought]
            consumer.seek_to_timestamp(start_ms, *fresh)
            sought.update(fresh)

    def on_revoke(tps: list[TopicPartition]) -> None:
        # hand the partitions over exactly where this member's output stops
        commit(tps)
        for tp in tps:
            unprinted.pop(tp, None)
            committed.pop(tp, None)

    backend = backend_of(store)
    reset = "earliest" if from_beginning else "latest"
    if partition is not None:
        check_partition(backend, topic, partition)
    consumer = store.consumer(
        group_id=group, auto_offset_reset=reset, enable_auto_commit=False,
        on_assign=on_assign, on_revoke=on_revoke if group is not None else None,
    )
    try:
        parts = (
            [partition] if partition is not None
            else range(backend.topic_metadata(topic).partitions)
        )
        if group is not None and partition is None:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, p) for p in parts])
            if offset is not None and partition is not None:
                consumer.seek(TopicPartition(topic, partition), _check_offset(
                    backend, topic, partition, offset))
            elif start_ms is not None:
                consumer.seek_to_timestamp(start_ms)
            elif from_beginning and group is None:
                consumer.seek_to_beginning()
        seen = 0
        last_commit = time.monotonic()
        told_idle = False
        while not stop():
            limit = None if max_messages is None else max_messages - seen
            records = consumer.poll(timeout_ms=100 if follow else 0, max_records=limit)
            if records:
                try:
                    emit(records)
                except BaseException:  # e.g. a closed pipe: none of these count as printed
                    for record in reversed(records):
                        unprinted[TopicPartition(record.topic, record.partition)] = record.offset
                    raise
            seen += len(records)
            if group is not None and time.monotonic() - last_commit >= commit_interval:
                commit()
                last_commit = time.monotonic()
            if max_messages is not None and seen >= max_messages:
                break
            if records or consumer.rebalancing():
                continue
            if not consumer.assignment() and group is not None and not told_idle:
                click.echo(
                    f"group {group!r}: this member has no partition of {topic!r} (the "
                    f"group's other members read them all)"
                    + ("; waiting for one" if follow else ""), err=True,
                )
                told_idle = True
            if not follow and _caught_up(backend, consumer):
                break
    finally:
        try:
            if group is not None:
                commit()
        finally:
            consumer.close()


def _check_offset(backend: Backend, topic: str, partition: int, offset: int) -> int:
    start, end = backend.offset_range(TopicPartition(topic, partition))
    if not start <= offset <= end:
        raise click.ClickException(
            f"offset {offset} is outside partition {topic}-{partition}'s range "
            f"[{start}, {end}]: pick an offset inside it"
        )
    return offset


def _caught_up(backend: Backend, consumer: logstore.Consumer) -> bool:
    return all(consumer.position(tp) >= backend.offset_range(tp)[1]
               for tp in consumer.assignment())


class Fields(NamedTuple):
    timestamp: bool
    partition: bool
    offset: bool
    headers: bool
    key: bool


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def render_record(record: logstore.ConsumerRecord, fmt: str, fields: Fields) -> bytes:
    value = record.value or b""
    if fmt == "raw":
        return value
    if fmt == "json":
        obj = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": _text(record.key),
            "value": _text(record.value),
            "headers": {k: _text(v) for k, v in record.headers},
        }
        return (json.dumps(obj) + "\n").encode()
    prefix = b""
    if fields.timestamp:
        prefix += f"CreateTime:{record.timestamp}\t".encode()
    if fields.partition:
        prefix += f"Partition:{record.partition}\t".encode()
    if fields.offset:
        prefix += f"Offset:{record.offset}\t".encode()
    if fields.headers:
        prefix += (b",".join(k.encode() + b":" + (v if v is not None else b"null")
                             for k, v in record.headers) or b"NO_HEADERS") + b"\t"
    if fields.key:
        prefix += (record.key if record.key is not None else b"null") + b"\t"
    return prefix + value + b"\n"
