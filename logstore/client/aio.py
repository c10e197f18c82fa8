"""asyncio front ends: :class:`AsyncProducer` and :class:`AsyncConsumer`.

Every call that may touch the disk or wait (a batch write and its fsync, a poll) runs in
a worker thread, so the event loop is never blocked; results come back through asyncio
futures.

    async with AsyncProducer(store) as producer:
        meta = await producer.send("orders", b"...", key=b"k")
    async with AsyncConsumer(store, ["orders"], group_id="billing") as consumer:
        async for record in consumer:
            ...
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

from logstore.client.backend import Backend
from logstore.client.consumer import Consumer
from logstore.client.producer import Producer
from logstore.types import ConsumerRecord, HeadersArg, RecordMetadata, TopicPartition

if TYPE_CHECKING:
    from logstore.store import Store


class AsyncProducer:
    """A :class:`~logstore.client.producer.Producer` for asyncio code (same options)."""

    def __init__(self, store: Store | Backend, **options: Any) -> None:
        self._producer = Producer(store, **options)

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """Send one record and wait until it is written; returns its metadata."""
        return await (await self.send_nowait(topic, value, key, headers, partition, timestamp))

    async def send_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; the returned future resolves once it is written (send many
        this way, then await them, to let records share batches)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[RecordMetadata] = loop.create_future()
        future = await asyncio.to_thread(
            self._producer.send, topic, value, key, headers, partition, timestamp
        )

        def resolve(meta: RecordMetadata | None, error: BaseException | None) -> None:
            def settle() -> None:
                if done.cancelled():
                    return
                if error is not None:
                    done.set_exception(error)
                else:
                    assert meta is not None
                    done.set_result(meta)

            loop.call_soon_threadsafe(settle)

        future.add_callback(resolve)
        return done

    async def flush(self) -> None:
        await asyncio.to_thread(self._producer.flush)

    async def close(self) -> None:
        await asyncio.to_thread(self._producer.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncConsumer:
    """A :class:`~logstore.client.consumer.Consumer` for asyncio code (same options)."""

    def __init__(
        self, store: Store | Backend, topics: Iterable[str] | None = None, **options: Any
    ) -> None:
        self._consumer = Consumer(store, topics, **options)
        self._buffer: deque[ConsumerRecord] = deque()

    @property
    def consumer(self) -> Consumer:
        """The underlying consumer, for calls that never wait (seek, position, ...)."""
        return self._consumer

    async def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> list[
        ConsumerRecord
    ]:
        return await asyncio.to_thread(self._consumer.poll, timeout_ms, max_records)

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        await asyncio.to_thread(self._consumer.commit, offsets)

    def assignment(self) -> list[TopicPartition]:
        return self._consumer.assignment()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ConsumerRecord:
        """The next record; like the blocking iterator, each record counts as handed out
        (its position moves past it) only when it is returned here."""
        consumer = self._consumer
        consumer.handout.came_back()  # the application handled the record in flight
        timeout = consumer.consumer_timeout_ms
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while True:
            while self._buffer:
                record = self._buffer.popleft()
                if consumer.may_hand_out(TopicPartition(record.topic, record.partition)):
                    consumer.handout.hand_out_one(record)
                    return record
            if consumer.closed:
                raise StopAsyncIteration
            runs = await asyncio.to_thread(consumer.poll_runs, 100, None)
            consumer.handout.allow(runs)
            for _, run in runs:
                self._buffer.extend(run)
            if not runs and timeout is not None and (loop.time() - idle_since) * 1000 >= timeout:
                raise StopAsyncIteration

    async def close(self) -> None:
        await asyncio.to_thread(self._consumer.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        self._buffer.clear()
        await asyncio.to_thread(self._consumer.close_after, failed=exc_type is not None)
