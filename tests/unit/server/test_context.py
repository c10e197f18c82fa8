"""What the server's handlers share: append notices that never miss an append between a
read and the wait that follows it, and the bounded memory of members' client ids."""

from __future__ import annotations

import asyncio
import threading

from logstore.server.context import AppendNotices, BoundedDict
from logstore.types import TopicPartition

TP = TopicPartition("t", 0)
OTHER = TopicPartition("t", 1)


def test_an_append_after_the_snapshot_ends_the_wait_at_once() -> None:
    async def main() -> tuple[bool, float]:
        notices = AppendNotices(asyncio.get_running_loop())
        seen = notices.snapshot([TP])
        notices.report(TP)  # between the read and the wait
        await asyncio.sleep(0)
        started = asyncio.get_running_loop().time()
        woke = await notices.wait(seen, 5.0)
        return woke, asyncio.get_running_loop().time() - started

    woke, waited = asyncio.run(main())
    assert woke and waited < 0.1


def test_an_append_from_another_thread_wakes_a_waiter_and_others_do_not() -> None:
    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        notices = AppendNotices(loop)
        quiet = await notices.wait(notices.snapshot([TP]), 0.05)
        seen = notices.snapshot([TP])
        threading.Timer(0.05, notices.report, [OTHER]).start()  # another partition
        threading.Timer(0.1, notices.report, [TP]).start()
        woke = await notices.wait(seen, 5.0)
        return quiet, woke

    quiet, woke = asyncio.run(main())
    assert not quiet and woke


def test_bounded_dict_forgets_the_oldest() -> None:
    d: BoundedDict[str, int] = BoundedDict(2)
    d["a"], d["b"] = 1, 2
    d["a"] = 3  # refreshed: now the newest
    d["c"] = 4
    assert dict(d) == {"a": 3, "c": 4}
