"""Request handlers called directly on a real store (no sockets): answers the
differential wire suite (tests/wire) found differing from Kafka's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import logstore
from logstore.backend.local import LocalBackend
from logstore.server.config import ServerConfig
from logstore.server.context import ServerContext
from logstore.server.handlers import groups

T = TypeVar("T")

GROUP = "billing"
READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS = 3, 6, 8, 10, 11


def run(tmp_path: Path, body: Callable[[ServerContext], Awaitable[T]]) -> T:
    """``body(ctx)`` on a server context over a fresh store, in an event loop."""

    async def main() -> T:
        with logstore.open(tmp_path / "store") as store:
            backend = LocalBackend(store, member_liveness="deadline")
            ctx = ServerContext(backend, ServerConfig(port=0), asyncio.get_running_loop(),
                                9092, "cluster")
            try:
                return await body(ctx)
            finally:
                ctx.close()
                backend.close()

    return asyncio.run(main())


async def _join(ctx: ServerContext, client: tuple[str, str]) -> dict[str, Any]:
    request = {
        "group_id": GROUP, "session_timeout_ms": 10_000, "rebalance_timeout_ms": 1_000,
        "member_id": "", "group_instance_id": None, "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b"\x00\x01"}],
    }
    answer = await groups.join_group(ctx, 3, request, client)
    assert answer["error_code"] == 0, answer
    return answer


def test_describe_groups_reports_client_host_as_kafka_does(tmp_path: Path) -> None:
    async def body(ctx: ServerContext) -> dict[str, Any]:
        await _join(ctx, ("app-1", "127.0.0.1"))
        return await groups.describe_groups(ctx, 1, {"groups": [GROUP]})

    (group,) = run(tmp_path, body)["groups"]
    (member,) = group["members"]
    assert member["client_id"] == "app-1"
    assert member["client_host"] == "/127.0.0.1"  # Java's InetAddress.toString()


def test_describe_groups_reports_authorized_operations_when_asked(tmp_path: Path) -> None:
    async def body(ctx: ServerContext) -> tuple[dict[str, Any], dict[str, Any]]:
        await _join(ctx, ("app-1", "127.0.0.1"))
        asked = await groups.describe_groups(
            ctx, 3, {"groups": [GROUP], "include_authorized_operations": True})
        not_asked = await groups.describe_groups(
            ctx, 3, {"groups": [GROUP], "include_authorized_operations": False})
        return asked, not_asked

    asked, not_asked = run(tmp_path, body)
    operations = asked["groups"][0]["authorized_operations"]
    assert {op for op in range(32) if operations & (1 << op)} == {
        READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS}
    assert not_asked["groups"][0]["authorized_operations"] == -(2**31)
