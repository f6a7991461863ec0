"""The fulfilment decider: hosts the OrderFulfilment aggregates (one per Shopify order).

In, in batches (one consumer group, "fulfilment-decider"):
- Prima's despatch notes (prima.despatches.v1, PrimaDespatchRecorded);
- the order flow's events (shopify-prima.order-events.v1): the lines of each sales order as sent
  (SalesOrderRequested) or amended (SalesOrderAmendmentRequested), bundles with their components;
- the Shopify gateway's answers to the fulfilment commands (shopify.outcomes.v1);
- the operator's ReleaseFulfilment (shopify-prima.operations.v1).

Before a batch's despatches (or a release) are decided, the decider reads each of their orders'
fulfillment orders from Shopify's Admin API (OrderFulfillmentOrders: statuses, holds, the
remaining quantity of each line item): a read, never a write; the Shopify gateway is the only
writer. Shopify not answering is a dependency failure: the batch is tried again, never
dead-lettered. The batch's aggregates are loaded at once and saved in one transaction with the
notification log (the commands leave through the outbox relay); the offsets are committed after
the save, and each aggregate ignores what it has already applied, so a redelivered batch changes
nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from contracts.orders.events import (
    OrderEvent,
    SalesOrderAmendmentRequested,
    SalesOrderRequested,
)
from contracts.platform import ReleaseFulfilment
from contracts.prima.despatches import PrimaDespatchRecorded
from contracts.shopify.fulfilments import FulfilmentOutcome
from contracts.topics import (
    ORDER_EVENTS,
    PRIMA_DESPATCHES,
    SHOPIFY_OUTCOMES,
    members_of,
)
from domain.fulfilment.application import FulfilmentApplication
from domain.fulfilment.carriers import CarrierMap
from domain.fulfilment.domainmodel import FulfilmentPolicy
from domain.fulfilment.values import (
    Despatch,
    FulfillmentOrder,
    FulfillmentOrdersStated,
    FulfilmentFact,
    FulfilmentReleaseRequested,
)
from services.fulfilment import translate
from services.platform.kafka import (
    Consumer,
    Delivery,
    DependencyUnavailable,
    make_broker,
)
from services.platform.metrics import (
    DESPATCH_TO_FULFILMENT,
    FULFILMENT_DECISIONS,
    FULFILMENT_FACTS,
)
from services.platform.runner import Worker, run_worker
from services.platform.settings import Settings
from services.shopify.admin import ShopifyAdmin, ShopifyUnavailable

log = logging.getLogger("shopify_prima.fulfilment_decider")
GROUP = "fulfilment-decider"
ACCEPTS = (PrimaDespatchRecorded, OrderEvent, *members_of(FulfilmentOutcome), ReleaseFulfilment)
TOPICS = [PRIMA_DESPATCHES, ORDER_EVENTS, SHOPIFY_OUTCOMES]
READS_AT_ONCE = 4  # fulfillment-order reads in flight for one batch (within Shopify's throttle)
# What one read of an order's fulfillment orders asks for: up to 5 fulfillment orders (locations) of
# 25 line items, and no fulfilments (the gateway reads those): requested cost 1 + 2 + 5 x 56 + 54 =
# 337 points rather than the document's 617. An order beyond that is refused with a clear error
# (translate.fulfillment_orders) and its despatch dead-lettered, to be re-driven.
READ_SIZE = {"fulfillmentOrders": 5, "lines": 25, "fulfillments": 1}

FulfillmentOrderReader = Callable[[int], Awaitable[tuple[FulfillmentOrder, ...]]]


def policy_of(settings: Settings) -> FulfilmentPolicy:
    return FulfilmentPolicy(notify_customer=settings.fulfilment_notify_customer,
                            carriers=CarrierMap(dict(settings.fulfilment_carrier_map)))


def shopify_reader(admin: ShopifyAdmin) -> FulfillmentOrderReader:
    """An order's fulfillment orders, read from Shopify's Admin API."""

    async def read(shopify_order_id: int) -> tuple[FulfillmentOrder, ...]:
        try:
            data = await admin.execute("OrderFulfillmentOrders", {"id": translate.order_gid(shopify_order_id),
                                                                   **READ_SIZE})
        except ShopifyUnavailable as exc:
            raise DependencyUnavailable(f"Shopify did not answer the read of order {shopify_order_id}'s "
                                        f"fulfillment orders: {exc}") from exc
        return translate.fulfillment_orders(data.get("order"))

    return read


class FulfilmentDecider:
    """The handler, without Kafka (tests call `handle` directly)."""

    def __init__(self, fulfilments: FulfilmentApplication, read_fulfillment_orders: FulfillmentOrderReader,
                 policy: FulfilmentPolicy) -> None:
        self.fulfilments = fulfilments
        self.read_fulfillment_orders = read_fulfillment_orders
        self.policy = policy
        self.lock = asyncio.Lock()

    async def handle(self, deliveries: list[Delivery[Any]]) -> None:
        messages = [d.message for d in deliveries]
        wanted = {m.shopify_order_id for m in messages if isinstance(m, PrimaDespatchRecorded | ReleaseFulfilment)}
        read_at, orders = datetime.now(UTC), await self._read(wanted)
        facts: list[FulfilmentFact] = []
        fresh: set[int] = set()
        for message in messages:
            fact = self._fact(message, orders, read_at)
            if fact is None:
                continue
            if isinstance(fact, Despatch) and fact.shopify_order_id not in fresh:
                # the fulfillment orders as Shopify has them now, before the despatch is decided
                facts.append(FulfillmentOrdersStated(shopify_order_id=fact.shopify_order_id,
                                                     fulfillment_orders=orders[fact.shopify_order_id],
                                                     read_at=read_at))
                fresh.add(fact.shopify_order_id)
            facts.append(fact)
            FULFILMENT_FACTS.labels(fact=getattr(message, "event_type", None) or type(message).__name__).inc()
        if not facts:
            return
        async with self.lock:
            result = await asyncio.to_thread(self.fulfilments.handle, facts, datetime.now(UTC), self.policy)
        for kind, count in result.decided.items():
            FULFILMENT_DECISIONS.labels(decision=kind).inc(count)
        for despatched_at, made_at in result.fulfilled:
            DESPATCH_TO_FULFILMENT.observe(max(0.0, (made_at - despatched_at).total_seconds()))
        for order_id in result.outcomes_without_order:
            log.warning("order %s: a fulfilment answer for an order this decider has never seen", order_id)
        for order_id in result.released:
            log.info("order %s: fulfilment exception released; decided again", order_id)
        for order_id in result.refused_releases:
            log.info("order %s: release asked, but its fulfilment has no exception", order_id)

    async def _read(self, order_ids: Iterable[int]) -> dict[int, tuple[FulfillmentOrder, ...]]:
        ids = sorted(order_ids)
        if not ids:
            return {}
        gate = asyncio.Semaphore(READS_AT_ONCE)

        async def one(order_id: int) -> tuple[FulfillmentOrder, ...]:
            async with gate:
                return await self.read_fulfillment_orders(order_id)

        found = await asyncio.gather(*(one(i) for i in ids))
        return dict(zip(ids, found, strict=True))

    @staticmethod
    def _fact(message: Any, orders: dict[int, tuple[FulfillmentOrder, ...]], read_at: datetime) -> FulfilmentFact | None:
        if isinstance(message, PrimaDespatchRecorded):
            return translate.despatch(message)
        if isinstance(message, SalesOrderRequested | SalesOrderAmendmentRequested):
            return translate.lines_stated(message.shopify_order_id, message.command.sales_order, message.timestamp)
        if isinstance(message, ReleaseFulfilment):
            return FulfilmentReleaseRequested(shopify_order_id=message.shopify_order_id,
                                              released_by=message.requested_by,
                                              fulfillment_orders=orders[message.shopify_order_id], read_at=read_at,
                                              settle=message.settle_despatch)
        if getattr(message, "message_type", None) == "OrderEvent":
            return None  # the order flow's other events: not the fulfilment's business
        return translate.outcome(message)


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, GROUP)
    fulfilments = FulfilmentApplication(env=settings.eventsourcing_env())
    admin = ShopifyAdmin(settings)
    try:
        decider = FulfilmentDecider(fulfilments, shopify_reader(admin), policy_of(settings))
        Consumer(broker, settings, group=GROUP, topics=TOPICS, accepts=ACCEPTS, handler=decider.handle)
        log.info("fulfilment decider consuming %s", ", ".join(t.name for t in TOPICS))
        async with worker.broker(broker):
            await worker.stopped()
    finally:
        fulfilments.close()
        await admin.aclose()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.fulfilment_decider_metrics_port)
