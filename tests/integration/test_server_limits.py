"""The wire server's limits and safety, against a real ``logstore serve`` process: bad
frames close only their own connection, a request too large is refused before it is
read, a slow-loris client or 500 idle connections do not stop a normal client, the
server's memory stays bounded, unknown APIs get UNSUPPORTED_VERSION, and SIGTERM lets
the request in progress finish and closes the store cleanly."""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore.records import encode_batch
from tests.server_process import RawClient, ServedStore, served, start_server

pytestmark = pytest.mark.slow


def _ok(server: ServedStore) -> float:
    """A normal request's round trip (seconds), asserting it works."""
    started = time.monotonic()
    with RawClient(server.host, server.port) as c:
        assert c.request(18, 2, {})["error_code"] == 0
        topics = c.request(3, 4, {"topics": None, "allow_auto_topic_creation": False})
        assert topics["brokers"][0]["port"] == server.port
    return time.monotonic() - started


@pytest.mark.parametrize("loop", ["asyncio", "auto"])
def test_malformed_frame_closes_only_its_connection(tmp_path: Path, loop: str) -> None:
    with served(tmp_path / "data", "--event-loop", loop) as server, RawClient(
        server.host, server.port
    ) as bad:
        # a Metadata v4 request whose topic array claims more topics than bytes follow
        body = struct.pack(">i", 1000)
        bad.sock.sendall(bad.frame(3, 4, body))
        assert bad.closed_by_server()
        _ok(server)
        assert "malformed request" in server.log()


def test_request_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    with served(tmp_path / "data", "--max-request-bytes", "1048576") as server:
        with RawClient(server.host, server.port) as c:
            c.sock.sendall(struct.pack(">i", 200 * 1024 * 1024))  # then nothing
            assert c.closed_by_server(timeout=5)
        assert "outside 1..1048576" in server.log()
        _ok(server)


def test_unknown_api_and_version_get_unsupported_version(tmp_path: Path) -> None:
    with served(tmp_path / "data") as server, RawClient(server.host, server.port) as c:
        c.sock.sendall(c.frame(999, 0, b""))
        data = c.receive()
        assert data is not None and struct.unpack(">ih", data) == (c.correlation, 35)
        c.sock.sendall(c.frame(3, 99, b""))  # Metadata v99
        data = c.receive()
        assert data is not None and struct.unpack(">ih", data)[1] == 35
        # ApiVersions at a version the server does not know: a v0 answer with error 35
        c.sock.sendall(c.frame(18, 9, b"\x00\x01\x02"))
        data = c.receive()
        assert data is not None
        from logstore.server.protocol.apis import APIS

        answer = APIS[18].response.decode(data, 0, 4)
        assert answer["error_code"] == 35
        assert {k["api_key"] for k in answer["api_keys"]} >= {0, 1, 3, 18}
        assert c.request(18, 2, {})["error_code"] == 0  # the connection carries on


def test_slow_loris_is_cut_off_and_does_not_slow_others(tmp_path: Path) -> None:
    with served(tmp_path / "data", "--request-timeout-ms", "1500") as server:
        slow = socket.create_connection((server.host, server.port))
        slow.sendall(b"\x00")  # the first byte of a request size, then a byte a second
        stop = threading.Event()

        def trickle() -> None:
            for byte in b"\x00\x00\x20" + b"\x00" * 30:
                if stop.wait(0.5):
                    return
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    return

        feeder = threading.Thread(target=trickle)
        feeder.start()
        try:
            assert max(_ok(server) for _ in range(5)) < 1.0
            slow.settimeout(10)
            try:  # closed after request_timeout_ms
                closed = slow.recv(1) == b""
            except ConnectionResetError:
                closed = True  # a trickled byte met the closed socket: the kernel sent RST
            assert closed
        finally:
            stop.set()
            feeder.join()
            slow.close()
        assert "took longer than 1500 ms to arrive" in server.log()


def test_500_idle_connections_do_not_stop_a_normal_client_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    with served(tmp_path / "data", "--idle-timeout-ms", "60000") as server:
        _ok(server)
        before = server.rss_kib()
        idle = [socket.create_connection((server.host, server.port)) for _ in range(500)]
        try:
            time.sleep(0.5)
            worst = max(_ok(server) for _ in range(5))
            after = server.rss_kib()
        finally:
            for s in idle:
                s.close()
        assert worst < 1.0
        # 500 idle connections cost well under 20 KiB each (measured: ~6 KiB)
        assert after - before < 500 * 20, (before, after)


def test_many_large_requests_at_once_stay_within_the_queued_bytes_budget(tmp_path: Path) -> None:
    """30 clients each send an 8 MiB Produce at once: the server holds at most
    max_queued_bytes (here 64 MiB) of them (the others wait unread, a few hundred KiB
    read ahead each), so its memory stays bounded."""
    with served(tmp_path / "data", "--max-queued-bytes", str(64 << 20)) as server:
        _ok(server)
        before = server.rss_kib()
        payload = encode_batch([(0, None, b"x" * (8 << 20), ())])
        clients = [RawClient(server.host, server.port, timeout=60) for _ in range(30)]
        body = {"transactional_id": None, "acks": 1, "timeout_ms": 30000,
                "topic_data": [{"name": "big", "partition_data": [
                    {"index": 0, "records": payload}]}]}
        peak = before
        try:
            for c in clients:
                c.send(0, 7, body)
            for _ in range(20):
                peak = max(peak, server.rss_kib())
                time.sleep(0.05)
            for c in clients:
                assert c.receive() is not None
        finally:
            for c in clients:
                c.close()
        # 30 x 8 MiB = 240 MiB of requests; at most 64 MiB queued + 30 x 512 KiB read
        # ahead + the appends' own buffers are ever resident
        assert (peak - before) < 140 * 1024, (before, peak)


def test_connections_beyond_max_connections_are_closed(tmp_path: Path) -> None:
    with served(tmp_path / "data", "--max-connections", "3") as server:
        held = [RawClient(server.host, server.port) for _ in range(3)]
        try:
            for c in held:
                assert c.request(18, 0, {})["error_code"] == 0
            with RawClient(server.host, server.port) as extra:
                assert extra.closed_by_server(timeout=5)
        finally:
            for c in held:
                c.close()
        # the server drops the held connections when it reads their close, not at once
        # (a busy machine, e.g. a parallel test run, leaves it time to refuse one more)
        _ok_once_connections_drop(server)
        assert "max_connections" in server.log()


def _ok_once_connections_drop(server: ServedStore, timeout: float = 10.0) -> None:
    """``_ok(server)``, retried while the server still refuses the connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _ok(server)
            return
        except ConnectionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def test_sigterm_finishes_the_request_in_progress_and_closes_the_store_cleanly(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with logstore.open(data) as store:
        store.create_topic("t", partitions=1)
    server = start_server(data)
    try:
        with RawClient(server.host, server.port, timeout=20) as c:
            # a fetch at the end of the log waits up to 3 s for records
            c.send(1, 4, {"replica_id": -1, "max_wait_ms": 3000, "min_bytes": 1,
                          "max_bytes": 1 << 20, "isolation_level": 0,
                          "topics": [{"topic": "t", "partitions": [
                              {"partition": 0, "fetch_offset": 0,
                               "partition_max_bytes": 1 << 20}]}]})
            time.sleep(0.5)
            server.proc.send_signal(signal.SIGTERM)
            answer = c.receive()
            assert answer is not None  # the waiting fetch was answered, not cut
        assert server.proc.wait(20) == 0
    finally:
        server.stop(signal.SIGKILL)
    assert "stopping" in server.log()
    with logstore.open(data) as store:
        assert store.partition("t", 0).was_clean
