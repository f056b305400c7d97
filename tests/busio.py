"""Plain aiokafka on both ends of the bus: what an outside producer or consumer would do.

The runtime tests and the benchmark use these so that what they check is the wire, not our own
client code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from topics.envelope import Envelope
from topics.recording import log_end_offsets, seek_to_log_end
from topics.registry import TopicSpec
from topics.serialization import encode, headers

Raw = tuple[bytes | None, bytes | None]  # (key, value)


async def produce(client_kwargs: dict[str, Any], topic: str, items: Iterable[Envelope[Any] | Raw]) -> int:
    """Publish envelopes (encoded as the runtime would) or raw (key, value) pairs; wait for acks."""
    producer = AIOKafkaProducer(**client_kwargs, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = []
        for item in items:
            if isinstance(item, Envelope):
                futures.append(await producer.send(
                    topic, encode(item), key=item.key.encode(), timestamp_ms=item.ts, headers=headers(item),
                ))
            else:
                key, value = item
                futures.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def end_offsets(client_kwargs: dict[str, Any], topic: str) -> dict[int, int]:
    """partition -> next offset of `topic` now: read from here to see only what comes next."""
    ends = await log_end_offsets(client_kwargs, topic)
    return {tp.partition: offset for tp, offset in ends.items()}


async def collect(
    client_kwargs: dict[str, Any],
    topic: str,
    *,
    start: dict[int, int] | None = None,
    until: Callable[[list[Any]], bool],
    timeout: float = 20.0,
) -> list[Any]:
    """Records of `topic` from `start` (default: the beginning) until `until(records)` or timeout.

    Returns the records read so far either way; the caller's assertions say what was missing.
    """
    consumer = AIOKafkaConsumer(**client_kwargs, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        for tp in tps:
            if start is not None and tp.partition in start:
                consumer.seek(tp, start[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout
        while not until(records) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


class Tail:
    """Reads a topic in the background from `start`, into `records`, until closed.

    `async with Tail(kwargs, topic, start) as tail:` then poll `tail.records` or
    `await tail.wait_for(predicate)`.
    """

    def __init__(self, client_kwargs: dict[str, Any], topic: str, start: dict[int, int]) -> None:
        self.client_kwargs = client_kwargs
        self.topic = topic
        self.start = start
        self.records: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Tail:
        consumer = AIOKafkaConsumer(**self.client_kwargs, enable_auto_commit=False)
        await consumer.start()
        tps = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or ())]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, self.start.get(tp.partition, 0))

        async def pump() -> None:
            try:
                while True:
                    batch = await consumer.getmany(timeout_ms=100, max_records=5000)
                    for part in batch.values():
                        self.records.extend(part)
            finally:
                await consumer.stop()

        self._task = asyncio.create_task(pump())
        return self

    async def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 30.0) -> bool:
        """True once `predicate(records)` holds, False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.records):
            if time.monotonic() > deadline:
                return False
            if self._task is not None and self._task.done():
                self._task.result()  # surface the consumer's error
            await asyncio.sleep(0.05)
        return True

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def skip_history(client_kwargs: dict[str, Any], group: str, specs: Iterable[TopicSpec]) -> None:
    """Commit `group` at the log end of its topics, so an agent ignores other tests' messages."""
    consumer = AIOKafkaConsumer(**client_kwargs, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(s.name, p)
                 for s in specs for p in sorted(consumer.partitions_for_topic(s.name) or ())]
        consumer.assign(parts)
        await consumer.commit(dict(await seek_to_log_end(consumer, parts)))
    finally:
        await consumer.stop()


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Wait until `condition()` holds (True) or `timeout` s pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
