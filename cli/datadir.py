"""How every ``logstore`` command opens the store that ``--data-dir`` names, with the
global options (``--init``, ``--max-partitions``) applied, the library's errors worded
for the command line, and read commands falling back to a read-only open on a store the
user cannot write (a read-only mount, a copied backup without write permission).
"""

from __future__ import annotations

import os
from typing import Any

import click

import logstore
from logstore.config import DEFAULT_MAX_PARTITIONS

INIT_KEY = "logstore.init"
"""Where ``logstore --init`` is kept in the click context's ``meta`` (shared by every
sub-command's context)."""
MAX_PARTITIONS_KEY = "logstore.max_partitions"
READ_COMMANDS = "topics list, topics describe, consume without --group, inspect and verify"


def _meta() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta if ctx is not None else {}


def read_only_note(path: str, errno: int | None) -> None:
    """Say once, on stderr, that the store is read via a read-only open."""
    why = f" ({os.strerror(errno)})" if errno else ""
    click.echo(
        f"note: the store {os.path.abspath(path)} is read-only here{why}: reading it "
        f"without writing anything",
        err=True,
    )


def _missing(path: str) -> bool:
    """Whether ``path`` does not exist, in a directory that does (any other trouble with
    the path is for ``logstore.open`` to name)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return os.path.isdir(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return False


def open_store(
    data_dir: str,
    *,
    read_only_ok: bool = False,
    must_exist: bool | None = None,
    maintenance: bool = True,
) -> logstore.Store:
    """``logstore.open(data_dir)`` as the global options ask. With ``read_only_ok`` (a
    command that only reads), a store that cannot be opened for writing because of a
    read-only file system or permissions is opened ``read_only`` instead, with a note.
    With ``must_exist`` (by default: a command that only reads), a directory that holds
    no store yet is an error rather than a new, empty store (a mistyped ``--data-dir``
    must not leave a store behind).

    Raises:
        click.ClickException: the directory holds files but no store (the message names
            ``--init``, the flag that makes one there anyway), or it cannot be written
            and the command needs to write.
    """
    meta = _meta()
    if (read_only_ok if must_exist is None else must_exist) and _missing(data_dir):
        raise click.ClickException(
            f"no store at {os.path.abspath(data_dir)} (no such directory): check "
            f"--data-dir (or LOGSTORE_DATA_DIR); 'logstore topics create' makes a store"
        )
    try:
        return logstore.open(
            data_dir,
            init=bool(meta.get(INIT_KEY, False)),
            max_partitions=meta.get(MAX_PARTITIONS_KEY) or DEFAULT_MAX_PARTITIONS,
            maintenance=maintenance,
        )
    except logstore.NotAStoreError as err:
        raise click.ClickException(err.reworded("--init")) from err
    except logstore.StorageError as err:
        if not err.refused_write:
            raise
        try:
            store: logstore.Store | None = logstore.open(data_dir, read_only=True)
        except logstore.StorageError:
            store = None
        if store is None:
            raise  # not readable either: the first error says why
        if not read_only_ok:
            store.close()
            raise click.ClickException(
                f"cannot write to the store {store.path}: {os.strerror(err.errno or 0)} "
                f"({err.path}); this command writes, so it needs write access "
                f"({READ_COMMANDS} work read-only)"
            ) from err
        read_only_note(data_dir, err.errno)
        return store
