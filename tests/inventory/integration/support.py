"""Helpers of the inventory integration tests: reading what was published to a topic of their own,
and waiting for something to become true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition


async def end_offsets(bootstrap: str, topic: str, partitions: int = 3) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()


async def published_since(bootstrap: str, mark: dict[TopicPartition, int]) -> list:
    """Every record after `mark` (end offsets taken earlier), read by a fresh consumer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = list(mark)
        consumer.assign(parts)
        for tp, offset in mark.items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(parts)
        records = []
        deadline = time.monotonic() + 30
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            assert time.monotonic() < deadline, "could not read the topic to its end"
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                records += [r for r in batch if r.offset < end[TopicPartition(r.topic, r.partition)]]
        return records
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        await asyncio.sleep(0.1)
