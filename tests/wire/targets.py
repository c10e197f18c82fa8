"""The two servers the wire suite runs against: the real Kafka broker and ``logstore
serve``, behind one :class:`Target` (a name, a bootstrap address, where partition
directories live, a log file, and a restart that keeps the data).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.kafka_broker import HOST, KafkaBroker, api_versions_ok, restart

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0

StoppedHook = Callable[["Target"], None]


class Target:
    """A server a wire test talks to."""

    name: str
    log_file: Path

    @property
    def bootstrap(self) -> str:
        raise NotImplementedError

    @property
    def log_dir(self) -> Path:
        """Where the partition directories (``<topic>-<partition>``) are."""
        raise NotImplementedError

    def restart(self, while_stopped: StoppedHook | None = None) -> None:
        """Stop the server cleanly and start it again on the same address and data;
        ``while_stopped(self)`` runs while it is down."""
        raise NotImplementedError

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.log_dir / f"{topic}-{partition}"

    def __repr__(self) -> str:
        return f"<{self.name} at {self.bootstrap}>"


class KafkaTarget(Target):
    """The session's real broker (tests/kafka_broker.py)."""

    name = "kafka"

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker
        self.log_file = broker.log_file

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def log_dir(self) -> Path:
        return self.broker.log_dir

    def restart(self, while_stopped: StoppedHook | None = None) -> None:
        hook = None if while_stopped is None else (lambda _b: while_stopped(self))
        self.broker = restart(self.broker, while_stopped=hook)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _logstore_command() -> list[str]:
    script = Path(sys.executable).with_name("logstore")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from logstore_cli.main import main; main()"]


class LogstoreTarget(Target):
    """``logstore --data-dir DIR serve --port PORT -v`` in a subprocess; its output goes
    to ``log_file`` (kept, appended to across restarts)."""

    name = "logstore"

    def __init__(self, data_dir: Path, log_file: Path) -> None:
        self.data_dir = data_dir
        self.log_file = log_file
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir

    def start(self) -> None:
        for attempt in range(3):
            try:
                self._start_once()
                return
            except _PortTakenError:
                if attempt == 2:
                    raise
                time.sleep(0.5)

    def _start_once(self) -> None:
        command = [*_logstore_command(), "--data-dir", str(self.data_dir), "serve",
                   "--port", str(self.port), "-v"]
        with self.log_file.open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not api_versions_ok(HOST, self.port, timeout=1.0):
            if self.proc.poll() is not None:
                tail = self.tail()
                error = _PortTakenError if "in use" in tail else RuntimeError
                raise error(f"logstore serve exited {self.proc.returncode} at start:\n{tail}")
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"logstore serve did not answer within "
                                   f"{START_TIMEOUT_S:g} s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (a clean stop: requests in progress finish, the store closes)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            raise RuntimeError(f"logstore serve ignored SIGTERM for {STOP_TIMEOUT_S:g} s; "
                               f"killed:\n{self.tail()}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"logstore serve exited {proc.returncode} on SIGTERM:\n"
                               f"{self.tail()}")

    def restart(self, while_stopped: StoppedHook | None = None) -> None:
        self.stop()
        try:
            if while_stopped is not None:
                while_stopped(self)
        finally:
            self.start()

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_file})"
        return "\n".join(text.splitlines()[-lines:])


class _PortTakenError(RuntimeError):
    pass


__all__ = ["KafkaTarget", "LogstoreTarget", "Target", "free_port"]
