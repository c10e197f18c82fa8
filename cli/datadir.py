"""How every ``logstore`` command opens the store that ``--data-dir`` names, with the
global options (``--init``) applied and the library's errors worded for the command line.
"""

from __future__ import annotations

import click

import logstore

INIT_KEY = "logstore.init"
"""Where ``logstore --init`` is kept in the click context's ``meta`` (shared by every
sub-command's context)."""


def _option(key: str, default: bool) -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx.meta.get(key, default)) if ctx is not None else default


def open_store(data_dir: str) -> logstore.Store:
    """``logstore.open(data_dir)`` as the global options ask.

    Raises:
        click.ClickException: the directory holds files but no store (the message names
            ``--init``, the flag that makes one there anyway).
    """
    try:
        return logstore.open(data_dir, init=_option(INIT_KEY, False))
    except logstore.NotAStoreError as err:
        raise click.ClickException(err.reworded("--init")) from err
