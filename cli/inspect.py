"""``logstore inspect`` (like kafka-dump-log) and ``logstore verify`` (like fsck: check,
report, change nothing)."""

from __future__ import annotations

import json
import os
import sys

import click

import logstore
from logstore import Compression
from logstore.storage.verify import (
    CORRUPT,
    Finding,
    read_offset_index,
    read_time_index,
    walk_log,
)
from logstore.types import BatchHeader
from logstore.verify import segment_logs

from .common import os_error, progress, user_errors
from .datadir import open_store, read_only_note

_SUFFIXES = (".log", ".index", ".timeindex")


def _show(data: bytes | None, limit: int = 60) -> str:
    if data is None:
        return "null"
    text = data.decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else text[:limit] + "..."


def _batch_line(h: BatchHeader, crc_ok: bool) -> str:
    codec = Compression(h.attributes & 0x07).name.lower()
    ts_type = "LogAppendTime" if h.attributes & 0x08 else "CreateTime"
    return (
        f"baseOffset: {h.base_offset} lastOffset: {h.last_offset} count: {h.records_count} "
        f"position: {h.position} size: {h.size} {ts_type}: {h.max_timestamp} "
        f"compresscodec: {codec} producerId: {h.producer_id} baseSequence: {h.base_sequence} "
        f"isControl: {bool(h.attributes & 0x20)} crc: {h.crc} isvalid: {str(crc_ok).lower()}"
    )


def _dump_log(fs: logstore.FileSystem, path: str, records: bool) -> int:
    """Print the batches of one ``.log``; return how many problems were seen."""
    click.echo(f"Dumping {path}")
    problems = 0
    for info in walk_log(fs, path, with_records=records):
        if info.header is None:
            click.echo(f"!! position {info.position}: {info.problem}")
            return problems + 1
        click.echo(_batch_line(info.header, info.crc_ok))
        if info.problem:
            problems += 1
            click.echo(f"!! position {info.position}: {info.problem}")
        for r in info.records or ():
            keys = ",".join(k for k, _ in r.headers)
            click.echo(
                f"| offset: {r.offset} CreateTime: {r.timestamp} "
                f"keySize: {-1 if r.key is None else len(r.key)} "
                f"valueSize: {-1 if r.value is None else len(r.value)} headerKeys: [{keys}] "
                f"key: {_show(r.key)} payload: {_show(r.value)}"
            )
    return problems


def _dump_indexes(fs: logstore.FileSystem, log_path: str) -> None:
    stem = log_path[: -len(".log")]
    base = int(os.path.basename(stem))
    for suffix in (".index", ".timeindex"):
        _dump_index(fs, stem + suffix, base)


def _dump_index(fs: logstore.FileSystem, path: str, base: int) -> None:
    if not fs.exists(path):
        click.echo(f"Dumping {path}: missing (rebuilt from the log when used)")
        return
    click.echo(f"Dumping {path}")
    if path.endswith(".timeindex"):
        for ts, offset in read_time_index(fs, path, base):
            click.echo(f"timestamp: {ts} offset: {offset}")
    else:
        for offset, position in read_offset_index(fs, path, base):
            click.echo(f"offset: {offset} position: {position}")


@click.command()
@click.argument("target")
@click.option("--partition", type=int, help="Only this partition of topic TARGET.")
@click.option("--records", is_flag=True, help="Print every record of every batch.")
@click.option("--indexes", is_flag=True, help="Print the index entries of every segment.")
@click.pass_obj
@user_errors
def inspect(
    data_dir: str, target: str, partition: int | None, records: bool, indexes: bool
) -> None:
    """Print the batches of topic TARGET (or of a .log, .index or .timeindex file):
    offsets, count, position, size, timestamp, compression, producer, CRC and whether
    it is valid. Reads files only, repairs nothing.

    \b
    Examples:
      logstore inspect orders
      logstore inspect orders --partition 0 --records --indexes
      logstore inspect data/orders-0/00000000000000000000.log --records
      logstore inspect data/orders-0/00000000000000000000.index
    """
    fs = logstore.FileSystem()
    problems = 0
    if os.sep in target and not (fs.exists(target) and not fs.is_dir(target)):
        raise click.ClickException(f"no file {target} (name a .log, .index or .timeindex)")
    if fs.exists(target) and not fs.is_dir(target):
        name = os.path.basename(target)
        if not (name.endswith(_SUFFIXES) and name.split(".")[0].isdigit()):
            raise click.ClickException(
                f"{target} is not a segment file (expected <20 digits>.log, .index or "
                f".timeindex)"
            )
        if name.endswith(".log"):
            problems += _dump_log(fs, target, records)
            if indexes:
                _dump_indexes(fs, target)
        else:
            _dump_index(fs, target, int(name.split(".")[0]))
    else:
        with open_store(data_dir, read_only_ok=True) as store:
            count = store.topic(target).num_partitions
        parts = [partition] if partition is not None else list(range(count))
        for p in parts:
            if not 0 <= p < count:
                raise click.ClickException(
                    f"topic {target!r} has partitions 0..{count - 1}, not {p}"
                )
            for path in segment_logs(data_dir, target, p, fs=fs):
                problems += _dump_log(fs, path, records)
                if indexes:
                    _dump_indexes(fs, path)
    if problems:
        raise click.ClickException(
            f"{problems} damaged batch(es) seen; run 'logstore verify' for what opening "
            f"the store would do"
        )


VERIFY_NOT_CHECKED_EXIT = 3
"""``logstore verify``'s exit status when it could not check the store or report on it
(0, 1 and 2 say what it found)."""


class _NotChecked(click.ClickException):
    exit_code = VERIFY_NOT_CHECKED_EXIT


def _finding_json(f: Finding) -> dict[str, object]:
    return {"path": f.path, "position": f.position, "kind": f.kind, "message": f.message}


@click.command()
@click.argument("topics", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
@user_errors
def verify(data_dir: str, topics: tuple[str, ...], as_json: bool) -> None:
    """Check every batch CRC, offset, index and checkpoint of the store (or of TOPICS),
    and say what the next open would repair. Changes nothing; the store must not be in
    use.

    \b
    Exit status:
      0  all good
      1  damage the next open of the store repairs by itself (torn tails after a
         crash, indexes to rebuild, leftover files); nothing acknowledged is lost
      2  damage no open repairs: records lost or corrupt where they were synced (reads
         there raise CorruptRecordError), a damaged store.json, topic registry file or
         (in a store written before the offsets log was compacted) offsets snapshot
      3  verify could not check the store, or not report on it: an unknown topic, no
         store at --data-dir, the store in use by another process, a file it cannot
         read, stdout full (one line on stderr says which)

    \b
    Examples:
      logstore verify
      logstore verify orders --json
    """
    try:
        _verify(data_dir, topics, as_json)
    except OSError as err:  # the report could not be written
        error = os_error(err)
        if isinstance(error, click.ClickException):  # not a closed pipe (141)
            raise _NotChecked(error.message) from err
        raise error from err


def _verify(data_dir: str, topics: tuple[str, ...], as_json: bool) -> None:
    with progress(1, "verify") as bar:
        def advance(done: int, total: int) -> None:
            bar.length = total
            bar.update(1)

        try:
            report = logstore.verify_store(data_dir, topics=topics or None,
                                           on_progress=advance)
        except logstore.LogstoreError as err:
            raise _NotChecked(str(err)) from err
        except OSError as err:  # a file that went away while verify read the store
            raise _NotChecked(f"cannot read {err.filename}: {err.strerror or err}") from err
    if report.read_only:
        read_only_note(data_dir, None)
    problems = report.all_findings
    corrupt = [f for f in problems if f.kind == CORRUPT]
    if as_json:
        click.echo(json.dumps({
            "path": report.path,
            "partitions": [
                {"directory": p.directory, "segments": len(p.segments), "records": p.records,
                 "batches": sum(s.batches for s in p.segments),
                 "findings": [_finding_json(f) for f in p.findings]}
                for p in report.partitions
            ],
            "findings": [_finding_json(f) for f in report.findings],
            "repairs": len(problems) - len(corrupt),
            "corrupt": len(corrupt),
        }))
    else:
        for p in report.partitions:
            name = os.path.basename(p.directory)
            batches = sum(s.batches for s in p.segments)
            state = "ok" if p.ok else f"{len(p.findings)} problem(s)"
            click.echo(f"{name}: {state}; {len(p.segments)} segment(s), {batches:,} batches, "
                       f"{p.records:,} records")
            for f in p.findings:
                _print_finding(f)
        for f in report.findings:
            _print_finding(f)
        click.echo(
            f"verified {len(report.partitions)} partition(s), "
            f"{sum(p.records for p in report.partitions):,} records: "
            + ("no problems" if not problems else
               f"{len(problems) - len(corrupt)} repaired on the next open, "
               f"{len(corrupt)} not repairable")
        )
    if problems:
        sys.exit(2 if corrupt else 1)


def _print_finding(f: Finding) -> None:
    where = f.path if f.position is None else f"{f.path} at position {f.position}"
    label = "CORRUPT" if f.kind == CORRUPT else "repair"
    click.echo(f"  {label}: {where}: {f.message}")
