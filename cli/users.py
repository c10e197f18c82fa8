"""``logstore users add|remove|list``: the users file ``logstore serve`` authenticates
SASL/PLAIN and SASL/SCRAM-SHA-256 clients against (what kafka-configs --alter
--add-config 'SCRAM-SHA-256=[...]' does for a Kafka cluster).

The file holds SCRAM credentials, never passwords (:mod:`logstore.server.users`); these
commands do not need a store, and ignore ``--data-dir``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from logstore.server.auth import add_user, load_users, remove_user
from logstore.server.users import DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS

from .common import user_errors

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_USERS_FILE = "logstore-users.jsonl"


def users_file_option(fn: F) -> F:
    """``--users-file PATH`` (also from LOGSTORE_USERS_FILE)."""
    return click.option(
        "--users-file",
        default=DEFAULT_USERS_FILE,
        envvar="LOGSTORE_USERS_FILE",
        show_default=True,
        type=click.Path(dir_okay=False),
        help="The users file (also from LOGSTORE_USERS_FILE).",
    )(fn)


@click.group()
def users() -> None:
    """Add, change and remove the users the wire server lets in (SASL/PLAIN and
    SASL/SCRAM-SHA-256). The users file keeps SCRAM credentials, never passwords.

    \b
    Examples:
      logstore users add alice                          # prompts for the password twice
      printf '%s' "$PASSWORD" | logstore users add ci --password-stdin
      logstore users list
      logstore users remove alice
    """


@users.command("add")
@click.argument("name")
@users_file_option
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from stdin (one trailing newline is dropped) instead of "
    "prompting for it.",
)
@click.option(
    "--iterations",
    type=click.IntRange(MIN_ITERATIONS, MAX_ITERATIONS),
    default=DEFAULT_ITERATIONS,
    show_default=True,
    help="SCRAM-SHA-256 iteration count.",
)
@user_errors
def users_add(name: str, users_file: str, password_stdin: bool, iterations: int) -> None:
    """Add user NAME, or give NAME a new password. The file is created (mode 0600) if
    missing, and replaced atomically.

    \b
    Examples:
      logstore users add alice
      logstore users add alice --users-file /etc/logstore/users.jsonl --iterations 8192
    """
    if password_stdin:
        password = sys.stdin.read()
        password = password.removesuffix("\n").removesuffix("\r")
        if not password:
            raise click.ClickException("no password on stdin")
    else:
        password = click.prompt(
            f"Password for {name}", hide_input=True, confirmation_prompt=True
        )
    new = add_user(users_file, name, password, iterations=iterations)
    if new:
        click.echo(f"added user {name!r} to {users_file}")
    else:
        click.echo(f"changed the password of user {name!r} in {users_file}")


@users.command("remove")
@click.argument("name")
@users_file_option
@user_errors
def users_remove(name: str, users_file: str) -> None:
    """Remove user NAME.

    \b
    Example:
      logstore users remove alice
    """
    if not remove_user(users_file, name):
        raise click.ClickException(
            f"no user {name!r} in {users_file} (see 'logstore users list')"
        )
    click.echo(f"removed user {name!r} from {users_file}")


@users.command("list")
@users_file_option
@user_errors
def users_list(users_file: str) -> None:
    """List the users' names, one a line.

    \b
    Example:
      logstore users list --users-file /etc/logstore/users.jsonl
    """
    for name in load_users(users_file).names():
        click.echo(name)
