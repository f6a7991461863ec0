"""End to end on the running stack: the example consumer another team would start from
(examples/order_events_consumer.py) reads a paid order's events off
shopify-prima.order-events.v1 with its own consumer group, each valid against the published
schema and handled once, also when the same messages are delivered to it again.

The order goes in through the stack's edge (a signed orders/paid webhook to the ingest), as every
e2e test's does; the consumer groups are throwaway ones, started at the topic's end as it was
before the order was sent (so the test does not read the topic's whole history), and deleted at
the end: the only consumer groups a test makes on the stack's broker, since the example is about
one (every other e2e test reads the stack's topics without a group)."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from sandboxes.shopify.orders import random_paid_order
from tests.orders.e2e.test_order_to_prima import SKUS, Stack, new_order_id
from tests.support import consumer_groups, delete_consumer_groups

pytestmark = [pytest.mark.e2e]
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "order_events_consumer.py"
TIMEOUT = 60.0


def load_example():
    """The example as another team runs it: a script, not a module of this project."""
    spec = importlib.util.spec_from_file_location("order_events_consumer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def groups(stack):
    """`start(offsets) -> group`: a throwaway consumer group whose committed offsets are `offsets`;
    every group made is deleted at the end (no leftover group for lag monitoring to flag)."""
    made: list[str] = []

    async def start(offsets: dict[TopicPartition, int]) -> str:
        group = f"test-example-consumer-{uuid.uuid4().hex[:12]}"
        committer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=group,
                                     enable_auto_commit=False)
        await committer.start()
        made.append(group)
        try:
            committer.assign(list(offsets))
            await committer.commit(offsets)
        finally:
            await committer.stop()
        return group

    yield start
    left = await asyncio.to_thread(delete_consumer_groups, stack.kafka_bootstrap, set(made))
    assert not left and not consumer_groups(stack.kafka_bootstrap) & set(made), "the test's groups are deleted"


async def topic_end(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    reader = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None)  # no group: reads nothing here
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        assert partitions, f"{topic} has partitions"
        return await reader.end_offsets(partitions)
    finally:
        await reader.stop()


def deadline_after(seconds: float):
    ends = time.monotonic() + seconds
    return lambda: time.monotonic() > ends


async def test_the_example_consumer_prints_each_event_of_a_paid_order_once_even_when_delivered_twice(stack, groups):
    example = load_example()
    start = await topic_end(stack.kafka_bootstrap, example.TOPIC)
    api = Stack(stack)
    try:
        order_id = new_order_id()
        response = await api.webhook("orders/paid", random_paid_order(order_id, SKUS, random.Random(order_id)))
        assert response.status_code == 200, response.text
        await api.wait_for_state(order_id, {"in_prima"}, timeout=TIMEOUT)
    finally:
        await api.http.aclose()

    # given the order's events on the topic, when the example consumer reads them with its own group
    ours: list[dict] = []
    lines: list[str] = []

    def handle(event: dict) -> None:
        lines.append(example.line(event))
        if event["shopify_order_id"] == order_id:
            ours.append(event)

    timed_out = deadline_after(TIMEOUT)
    seen = await example.consume(stack.kafka_bootstrap, await groups(start), handle, seen=example.Seen(),
                                 stop=lambda: timed_out() or any(e["event_type"] == "SalesOrderCreated" for e in ours))

    # then it handled each of the order's events once, in the order they were recorded
    kinds = [e["event_type"] for e in ours]
    assert kinds[:1] == ["OrderReceived"] and {"SalesOrderRequested", "SalesOrderCreated"} <= set(kinds), kinds
    assert [e["aggregate_version"] for e in ours] == list(range(1, len(ours) + 1))
    assert len({e["event_id"] for e in ours}) == len(ours)
    assert [line for line in lines if line.startswith(f"order {order_id} ")] == [example.line(e) for e in ours]

    # when the same messages are delivered again (a second group from the same offsets, the same
    # memory of what was handled: what a rebalance before a commit does)
    again: list[dict] = []
    timed_out = deadline_after(TIMEOUT)
    await example.consume(stack.kafka_bootstrap, await groups(start),
                          lambda e: again.append(e) if e["shopify_order_id"] == order_id else None, seen=seen,
                          stop=lambda: timed_out() or all(seen.repeats[e["event_id"]] for e in ours))

    # then they were read again but not handled again
    assert {e["event_id"]: seen.repeats[e["event_id"]] for e in ours} == {e["event_id"]: 1 for e in ours}
    assert again == []
