"""The platform consumer on the real Kafka broker: a poison message is retried with backoff and
then dead-lettered while the partition goes on; a dependency failure is waited out (no hot loop,
nothing dead-lettered); offsets are committed to the group after the handler returned."""

from __future__ import annotations

import asyncio
import time
from typing import Literal
from uuid import uuid4

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel

from contracts.platform import DeadLetter
from contracts.topics import TopicSpec
from services.platform.kafka import Consumer, Delivery, Outgoing, make_broker, publish_all


class Ping(BaseModel):
    message_type: Literal["Ping"] = "Ping"
    n: int


async def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not met after {timeout}s")


async def read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        found = await consumer.getmany(timeout_ms=2000)
        return [r.value for records in found.values() for r in records]
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(meta.offset for meta in offsets.values() if meta.offset >= 0)
    finally:
        await admin.close()


async def run_consumer(settings, kafka_bootstrap, topic: str, dlq: str, ops: str, handler, **overrides):
    settings = settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap, "consumer_batch_wait_ms": 20,
                                           **overrides})
    broker = make_broker(settings, "test")
    group = f"test-{uuid4().hex[:8]}"
    Consumer(broker, settings, group=group, topics=[TopicSpec(topic, "n", "test", messages=(Ping,))],
             accepts=(Ping,), handler=handler, operations_topic=ops, dead_letter_topic=dlq)
    await broker.start()
    return broker, group


async def test_a_poison_message_is_retried_then_dead_lettered_and_the_partition_goes_on(
        settings, kafka_bootstrap, new_topics):
    topic, dlq, ops = await new_topics(3, partitions=1)
    calls: list[list[int]] = []
    handled: list[int] = []

    async def handler(deliveries: list[Delivery[Ping]]) -> None:
        numbers = [d.message.n for d in deliveries]
        calls.append(numbers)
        if 2 in numbers:
            raise ValueError("2 is poison")
        handled.extend(numbers)

    broker, group = await run_consumer(settings, kafka_bootstrap, topic, dlq, ops, handler, handler_max_attempts=3,
                                       handler_backoff_initial_seconds=0.1, handler_backoff_max_seconds=0.2)
    try:
        await publish_all(broker, [Outgoing(topic, b"k", Ping(n=n)) for n in (1, 2, 3)])
        await wait_for(lambda: 1 in handled and 3 in handled, what="1 and 3 handled")
        await publish_all(broker, [Outgoing(topic, b"k", Ping(n=4))])
        await wait_for(lambda: 4 in handled, what="the message after the poison one handled")
    finally:
        await broker.stop()
    assert 2 not in handled and handled.count(1) == 1 and handled.count(3) == 1
    retries_of_the_batch = [c for c in calls if len(c) > 1]
    assert len(retries_of_the_batch) == 3  # handler_max_attempts, then one by one
    (value,) = await read_all(kafka_bootstrap, dlq)
    letter = DeadLetter.model_validate_json(value)
    assert letter.group == group and letter.topic == topic and letter.offset == 1 and "2 is poison" in letter.error
    assert await committed(kafka_bootstrap, group) == 4  # every offset committed, the poison one too


async def test_a_dependency_failure_is_waited_out_without_a_hot_loop_and_nothing_is_dead_lettered(
        settings, kafka_bootstrap, new_topics):
    topic, dlq, ops = await new_topics(3, partitions=1)
    attempts: list[float] = []

    async def handler(deliveries: list[Delivery[Ping]]) -> None:
        attempts.append(time.monotonic())
        if len(attempts) <= 4:
            raise ConnectionRefusedError("PostgreSQL is down")

    broker, group = await run_consumer(settings, kafka_bootstrap, topic, dlq, ops, handler, handler_max_attempts=2,
                                       handler_backoff_initial_seconds=0.2, handler_backoff_max_seconds=0.4)
    try:
        await publish_all(broker, [Outgoing(topic, b"k", Ping(n=1))])
        await wait_for(lambda: len(attempts) >= 5, what="handled once the dependency is back")
        await asyncio.sleep(0.3)
    finally:
        await broker.stop()
    assert len(attempts) == 5  # more than handler_max_attempts: a dependency failure is not the message's fault
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert min(gaps) >= 0.15, f"attempts without backoff: {gaps}"  # no hot loop
    assert await read_all(kafka_bootstrap, dlq) == []
    assert await committed(kafka_bootstrap, group) == 1
