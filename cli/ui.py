"""``logstore ui``: the web console (issue 18), served on a local port until Ctrl-C or
SIGTERM; on a data directory or, with ``--bootstrap-server``, a Kafka cluster."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

import logstore

from .cluster import backend_of, open_target
from .common import user_errors


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (another than localhost exposes the store to "
              "that network: the console has no login).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="The port (0: any free one; the address is printed).")
@click.option("--allow-writes", is_flag=True,
              help="Allow changes from the page (re-drive dead letters, reset offsets, "
              "delete): each still asks for a confirmation. Read-only without it.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Another name the console may be opened by (the Host a browser sends: a "
              "name of this machine that points here); repeatable. Requests by any other "
              "name are refused (DNS rebinding).")
@click.option("--sample-interval", type=click.FloatRange(0.05, 3600), default=2.0,
              show_default=True, metavar="SECONDS",
              help="How often the console samples log ends and lag (rates, lag charts).")
@click.pass_obj
@user_errors
def ui(
    target: str, host: str, port: int, allow_writes: bool, allowed_hosts: tuple[str, ...],
    sample_interval: float,
) -> None:
    """Serve a web console for the store: topics, a record browser, consumer groups with
    live lag charts, dead letters with re-drive; and its JSON API (/openapi.json).

    \b
    Examples:
      logstore ui                                   # http://127.0.0.1:8080/
      logstore ui --port 0 --allow-writes           # any free port; changes allowed
      logstore --bootstrap-server kafka1:9092 ui    # a Kafka cluster
    """
    try:  # here, not at the top: the other commands work without the 'ui' extra
        import uvicorn  # noqa: PLC0415

        from logstore.ui.app import create_app  # noqa: PLC0415
        from logstore.ui.console import Console  # noqa: PLC0415
        from logstore.ui.sampler import Sampler  # noqa: PLC0415
    except ImportError as err:
        raise click.ClickException(
            f"logstore ui needs the 'ui' extra ({err.name} is missing): pip install "
            f"'logstore[ui]'") from None
    try:
        listener = socket.create_server((host, port), family=_family(host), backlog=128)
    except OSError as err:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {_reason(err)} "
            f"(choose another --port, or --port 0 for any free one; --host takes an address "
            f"of this machine)") from None
    with listener, open_target(target, read_only_ok=True, must_exist=True,
                               maintenance=False) as store:
        if isinstance(store, logstore.KafkaStore):
            shown, kind, local = target.split("?", maxsplit=1)[0], "kafka", None
        else:
            shown, kind, local = os.path.abspath(target), "local", store
        console = Console(backend_of(store), kind=kind, target=shown, local=local)
        sampler = Sampler(console, interval=sample_interval).start()
        stopping = threading.Event()
        try:
            app = create_app(console, sampler, allow_writes=allow_writes, host=host,
                             allowed_hosts=allowed_hosts, stopping=stopping)
            config = uvicorn.Config(app, log_level="warning", access_log=False,
                                    timeout_graceful_shutdown=2)
            server = _server_class()(config)
            with _stopped_by_signals(server, stopping):  # from here on: a clean stop
                bound = listener.getsockname()
                where = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
                mode = "writes allowed" if allow_writes else "read-only"
                click.echo(f"logstore ui: serving {shown} on http://{where}:{bound[1]}/ "
                           f"({mode})")
                sys.stdout.flush()
                server.run(sockets=[listener])
        finally:
            sampler.stop()


def _server_class() -> Any:
    import uvicorn  # noqa: PLC0415  (the 'ui' extra: imported when the command runs)

    class Server(uvicorn.Server):
        """uvicorn's server without its own signal handlers (:func:`_stopped_by_signals`
        installs the command's): uvicorn's raise the signal again after shutting down,
        which would end the process by it before the store is closed."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


@contextlib.contextmanager
def _stopped_by_signals(server: Any, stopping: threading.Event) -> Iterator[None]:
    """SIGTERM and Ctrl-C stop ``server`` cleanly (its run returns, the store is closed,
    exit status 0) while inside: ``stopping`` is set, so event streams end, then the
    server is asked to exit; a second signal does not wait for open connections."""

    def stop(sig: int, frame: FrameType | None) -> None:
        stopping.set()
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _reason(err: OSError) -> str:
    """What went wrong, without the address create_server appends (it is in the line)."""
    if err.errno is not None and err.errno > 0:
        return os.strerror(err.errno)
    text = err.strerror or str(err)  # getaddrinfo's own (negative) codes
    return text.split(" (while attempting", 1)[0]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
