"""Test helpers for the wire server: ``logstore serve`` in a child process, and a raw
Kafka-protocol client that encodes requests with the server's own schemas (to send what
no well-behaved client library would: malformed frames, unknown versions, huge sizes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logstore.server.protocol.apis import APIS

_INT32 = struct.Struct(">i")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServedStore:
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        """The server process's resident memory (KiB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_server(data_dir: Path, *args: str, port: int | None = None) -> ServedStore:
    """``logstore --data-dir data_dir serve --port P args...``, once it accepts connections
    (TLS or not)."""
    port = port or free_port()
    log_path = data_dir.parent / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "logstore_cli.main", "--data-dir", str(data_dir), "serve",
           "--port", str(port), "-v", *args]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    served = ServedStore(data_dir, port, proc, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"logstore serve exited {proc.returncode}:\n{served.log()}")
        if "serving Kafka clients on" in served.log():
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2):
                return served
        time.sleep(0.05)
    served.stop(signal.SIGKILL)
    raise AssertionError(f"logstore serve did not answer in 30 s:\n{served.log()}")


@contextlib.contextmanager
def served(data_dir: Path, *args: str) -> Iterator[ServedStore]:
    server = start_server(data_dir, *args)
    try:
        yield server
    finally:
        server.stop()


class RawClient:
    """A blocking Kafka-protocol connection speaking the server's own schemas."""

    def __init__(self, host: str, port: int, *, client_id: str = "raw", timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.client_id = client_id
        self.correlation = 0

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def frame(self, api_key: int, version: int, body: bytes) -> bytes:
        """A whole request frame (size, header v1, ``body``)."""
        self.correlation += 1
        return self.frame_for(api_key, version, self.correlation, self.client_id, body)

    @staticmethod
    def frame_for(api_key: int, version: int, correlation: int, client_id: str, body: bytes
                  ) -> bytes:
        cid = client_id.encode()
        header = struct.pack(">hhih", api_key, version, correlation, len(cid)) + cid
        return _INT32.pack(len(header) + len(body)) + header + body

    def send(self, api_key: int, version: int, body: dict[str, Any]) -> None:
        encoded = b"".join(bytes(c) for c in APIS[api_key].request.encode(body, version))
        self.sock.sendall(self.frame(api_key, version, encoded))

    def receive(self) -> bytes | None:
        """The next response frame after its size (the correlation id first), or None if
        the server closed the connection."""
        size = self._exactly(4)
        if size is None:
            return None
        data = self._exactly(_INT32.unpack(size)[0])
        return data

    def _exactly(self, n: int) -> bytes | None:
        chunks = b""
        while len(chunks) < n:
            try:
                got = self.sock.recv(n - len(chunks))
            except ConnectionResetError:
                return None
            if not got:
                return None
            chunks += got
        return chunks

    def request(self, api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
        """Send a request and decode its response with the server's response schema."""
        self.send(api_key, version, body)
        data = self.receive()
        if data is None:
            raise ConnectionError("the server closed the connection")
        assert _INT32.unpack_from(data)[0] == self.correlation
        return APIS[api_key].response.decode(data, version, 4)

    def closed_by_server(self, timeout: float = 10) -> bool:
        """Whether the server closes this connection within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
