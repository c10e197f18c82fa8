"""How every ``logstore`` command opens the store that ``--data-dir`` names, with the
global options (``--init``, ``--max-partitions``) applied and the library's errors worded
for the command line.
"""

from __future__ import annotations

from typing import Any

import click

import logstore
from logstore.config import DEFAULT_MAX_PARTITIONS

INIT_KEY = "logstore.init"
"""Where ``logstore --init`` is kept in the click context's ``meta`` (shared by every
sub-command's context)."""
MAX_PARTITIONS_KEY = "logstore.max_partitions"


def _meta() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta if ctx is not None else {}


def open_store(data_dir: str) -> logstore.Store:
    """``logstore.open(data_dir)`` as the global options ask.

    Raises:
        click.ClickException: the directory holds files but no store (the message names
            ``--init``, the flag that makes one there anyway).
    """
    meta = _meta()
    try:
        return logstore.open(
            data_dir,
            init=bool(meta.get(INIT_KEY, False)),
            max_partitions=meta.get(MAX_PARTITIONS_KEY) or DEFAULT_MAX_PARTITIONS,
        )
    except logstore.NotAStoreError as err:
        raise click.ClickException(err.reworded("--init")) from err
