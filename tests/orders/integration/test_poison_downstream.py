"""Issue 13, item 3: a message that breaks the rules of contracts/validation.py (a fact of a
foreign or older producer, an event relayed before the rules existed) never reaches an
aggregate or a read model, and nothing stops behind it. The order decider and the order-sync
projection run in-process as their processes run them (the platform Consumer on real Kafka, the
read model on a scratch PostgreSQL database), on throwaway topics of one partition, with each
poison of the issue between orders that must still go through.

Before the fix these messages were decoded, the handler failed on them (PostgreSQL refused a NUL
or 1e16, bigint refused 2^63) and each was retried handler_max_attempts times before it was
dead-lettered as `handler_failed` (before issue 8, the projector stopped for good); a negative
price, "id": true or a EUR line went into the aggregate as if valid. Now each is dead-lettered
at once as `undecodable` (attempts 0) and the orders behind it are decided and projected."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.platform import DeadLetter
from contracts.shopify.orders import ShopifyOrder, ShopifyOrderReceived
from contracts.topics import ORDER_EVENTS, SHOPIFY_ORDERS, TopicSpec
from domain.orders.application import OrderApplication
from projections.order_sync import OrderSyncProjection
from services.orders.decider import ACCEPTS, OrderDecider
from services.platform.kafka import Consumer, Outgoing, make_broker, publish_all
from tests.orders.builders import items
from tests.orders.integration.relayed import order_events
from tests.orders.poisons import (
    FACT_POISONS,
    SKUS,
    paid_order,
    poisoned,
    with_duplicated_key,
)
from tests.support import throwaway_topics

pytestmark = pytest.mark.integration
POISONS = {**FACT_POISONS, "a duplicated key": None}


@pytest.fixture(scope="module")
async def topics(kafka_bootstrap) -> AsyncIterator[dict[str, TopicSpec]]:
    async with throwaway_topics(kafka_bootstrap) as make:
        yield {
            "orders": TopicSpec(await make("poison.orders", 1), "Shopify order id", "test", SHOPIFY_ORDERS.messages, 1),
            "events": TopicSpec(await make("poison.events", 1), "Shopify order id", "test", ORDER_EVENTS.messages, 1),
            "dead_letters": TopicSpec(await make("poison.dead-letters", 1), "id", "test"),
            "operations": TopicSpec(await make("poison.operations", 1), "id", "test"),
        }


def _fact(order_id: int) -> ShopifyOrderReceived:
    return ShopifyOrderReceived(
        webhook_id=str(uuid.uuid4()), topic="orders/paid", shop_domain="test-shop.myshopify.com",
        received_at=ShopifyOrder.from_webhook(paid_order(order_id)).updated_at, raw_payload_id=uuid.uuid4(),
        order=ShopifyOrder.from_webhook(paid_order(order_id)))


def _poison(message: Any, case: str) -> bytes:
    wire = message.model_dump_json().encode()
    if FACT_POISONS.get(case) is None:
        return with_duplicated_key(wire, "message_type", message.message_type)
    return poisoned(wire, FACT_POISONS[case])


# one id after the other: two ids drawn at random within the same millisecond collided (a poison
# and a good order with one id made the poison look decided: a flaky failure, 2026-12-01)
_IDS = itertools.count(time.time_ns() // 1000 + random.randrange(1000) * 1000)


def _new_id() -> int:
    return next(_IDS)


async def _until(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def _letters(broker_settings, bootstrap: str, topic: str, expect: int) -> list[DeadLetter]:
    from tests.orders.integration.test_ingest_support import read_topic

    found = await read_topic(bootstrap, topic, lambda m: True, expect=expect, timeout=30, settle=0.5)
    return [DeadLetter.model_validate_json(m.value) for m in found]


async def _publish_raw(broker, topic: str, key: bytes, value: bytes, message_type: str) -> None:
    await broker.publish(value, topic, key=key, headers={"message_type": message_type,
                                                          "content-type": "application/json"})


async def test_poison_facts_never_reach_the_order_decider_and_the_orders_behind_them_are_decided(
        settings, kafka_bootstrap, topics):
    settings = settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap, "consumer_batch_wait_ms": 20,
                                           "handler_max_attempts": 3, "handler_backoff_initial_seconds": 0.1})
    orders = OrderApplication()
    known = items(*SKUS)

    async def lookup(skus):
        return {sku: known[sku] for sku in skus if sku in known}

    broker = make_broker(settings, "test-poison-decider")
    group = f"test-decider-{uuid.uuid4().hex[:8]}"
    Consumer(broker, settings, group=group, topics=[topics["orders"]], accepts=ACCEPTS,
             handler=OrderDecider(orders, lookup).handle, operations_topic=topics["operations"].name,
             dead_letter_topic=topics["dead_letters"].name)
    good, bad = [], []
    await broker.start()
    try:
        for case in POISONS:
            poison_id, good_id = _new_id(), _new_id()
            await _publish_raw(broker, topics["orders"].name, b"same-partition", _poison(_fact(poison_id), case),
                               "ShopifyOrderReceived")
            await publish_all(broker, [Outgoing(topics["orders"].name, b"same-partition", _fact(good_id))])
            bad.append(poison_id)
            good.append(good_id)

        async def all_decided() -> bool:
            return all(orders.find_order(i) is not None for i in good)

        await _until(all_decided)
    finally:
        await broker.stop()
    assert [i for i in bad if orders.find_order(i) is not None] == []
    letters = [x for x in await _letters(settings, kafka_bootstrap, topics["dead_letters"].name, len(POISONS))
               if x.group == group]
    assert len(letters) == len(POISONS)
    assert {(x.reason, x.attempts) for x in letters} == {("undecodable", 0)}


async def test_poison_events_never_reach_the_order_sync_read_model_and_it_goes_on(
        settings, kafka_bootstrap, topics, scratch_pool):
    settings = settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap, "consumer_batch_wait_ms": 20,
                                           "handler_max_attempts": 3, "handler_backoff_initial_seconds": 0.1})

    class OnThrowawayTopic(OrderSyncProjection):
        topic = topics["events"]

    projection = OnThrowawayTopic(scratch_pool)
    app = OrderApplication()
    known = items(*SKUS)
    broker = make_broker(settings, "test-poison-projector")
    group = f"test-projector-{uuid.uuid4().hex[:8]}"
    Consumer(broker, settings, group=group, topics=[projection.topic], accepts=projection.accepts,
             handler=projection.handle, operations=False, on_assign=projection.on_assign,
             dead_letter_topic=topics["dead_letters"].name)
    good, bad = [], []
    decider = OrderDecider(app, lambda skus: _known(known, skus))
    await broker.start()
    try:
        for case in POISONS:
            poison_id, good_id = _new_id(), _new_id()
            await decider.decide([_to_fact(_fact(poison_id)), _to_fact(_fact(good_id))])
            (poison_event,) = [e for e in order_events(app, settings, poison_id) if e.event_type == "OrderReceived"]
            await _publish_raw(broker, topics["events"].name, b"same-partition", _poison(poison_event, case),
                               "OrderEvent")
            await publish_all(broker, [Outgoing(topics["events"].name, b"same-partition", e)
                                       for e in order_events(app, settings, good_id)])
            bad.append(poison_id)
            good.append(good_id)

        async def all_projected() -> bool:
            found = await scratch_pool.fetchval(
                "SELECT count(*) FROM readmodel.order_sync WHERE shopify_order_id = ANY($1::bigint[])", good)
            return found == len(good)

        await _until(all_projected)
    finally:
        await broker.stop()
    rows = await scratch_pool.fetch("SELECT shopify_order_id, state FROM readmodel.order_sync "
                                    "WHERE shopify_order_id = ANY($1::bigint[])", good + bad)
    assert {r["shopify_order_id"] for r in rows} == set(good)
    assert {r["state"] for r in rows} == {"sent"}  # paid, every SKU known: the sales order was requested
    letters = [x for x in await _letters(settings, kafka_bootstrap, topics["dead_letters"].name, len(POISONS))
               if x.group == group]
    assert len(letters) == len(POISONS)
    assert {(x.reason, x.attempts) for x in letters} == {("undecodable", 0)}


async def _known(known, skus):
    return {sku: known[sku] for sku in skus if sku in known}


def _to_fact(message: Any):
    from services.orders.decider import to_fact

    return to_fact(message)
