"""The order decider: hosts the Order aggregates.

In: Shopify order facts (shopify.orders.v1), Prima's outcomes (prima.outcomes.v1) and the
operator's ReleaseOrder commands (shopify-prima.operations.v1), in batches. For each batch it
reads the items the batch's SKUs name from the item-master read model (built from Prima's item
facts; no call to Prima inside a handler), lets each Order decide, and saves every changed Order
in one transaction with the notification log (the outbox). The offsets are committed after the
save (services/platform/kafka.py): a redelivered batch changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from contracts.platform import ReleaseOrder
from contracts.prima.sales_orders import PrimaSalesOrderCreated, PrimaSalesOrderParked, PrimaSalesOrderRejected
from contracts.shopify.orders import ShopifyOrderReceived
from contracts.topics import PRIMA_OUTCOMES, SHOPIFY_ORDERS
from domain.catalog.items import ItemMaster
from domain.orders.application import OrderApplication
from domain.orders.values import OrderDelivery, OrderFact, ReleaseRequested
from projections import item_master
from services.orders import translate
from services.platform.kafka import Consumer, Delivery, make_broker
from services.platform.metrics import ORDER_DELIVERIES, WEBHOOK_TO_SALES_ORDER
from services.platform.runner import Worker, run_worker

log = logging.getLogger("shopify_prima.order_decider")
GROUP = "order-decider"
ACCEPTS = (ShopifyOrderReceived, PrimaSalesOrderCreated, PrimaSalesOrderRejected, PrimaSalesOrderParked, ReleaseOrder)

ItemLookup = Callable[[Iterable[str]], Awaitable[ItemMaster]]


def to_fact(message: Any) -> OrderFact:
    if isinstance(message, ShopifyOrderReceived):
        return translate.delivery(message)
    if isinstance(message, ReleaseOrder):
        return translate.release(message)
    return translate.outcome(message)


class OrderDecider:
    """The handler, without Kafka: a batch of messages -> one save (tests call it directly)."""

    def __init__(self, orders: OrderApplication, items: ItemLookup) -> None:
        self.orders = orders
        self.items = items

    async def handle(self, deliveries: list[Delivery[Any]]) -> None:
        facts = [to_fact(d.message) for d in deliveries]
        skus = {line.sku for f in facts if isinstance(f, OrderDelivery) for line in f.order.lines if line.sku}
        if any(isinstance(f, ReleaseRequested) for f in facts):
            skus |= await asyncio.to_thread(self._skus_of_released, facts)
        master = await self.items(skus)
        result = await asyncio.to_thread(self.orders.handle, facts, master, datetime.now(UTC))
        for outcome, n in result.deliveries.items():
            ORDER_DELIVERIES.labels(outcome=outcome).inc(n)
        for seconds in result.created_after:
            WEBHOOK_TO_SALES_ORDER.observe(seconds)
        for shopify_order_id, state in result.releases:
            log.info("order %s released: now %s", shopify_order_id, state)
        for shopify_order_id in result.refused_releases:
            log.info("order %s: release asked, but it is not quarantined or failed", shopify_order_id)

    def _skus_of_released(self, facts: list[OrderFact]) -> set[str]:
        """A release decides on the order as stored: its SKUs must be in the item master read."""
        skus: set[str] = set()
        for fact in facts:
            if isinstance(fact, ReleaseRequested):
                order = self.orders.find_order(fact.shopify_order_id)
                if order is not None:
                    skus |= {line.sku for line in order.snapshot.lines if line.sku}
        return skus


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, GROUP)
    orders = OrderApplication(env=settings.eventsourcing_env())
    async with worker.database(max_size=3) as pool:
        decider = OrderDecider(orders, lambda skus: item_master.items_for(pool, skus))
        Consumer(broker, settings, group=GROUP, topics=[SHOPIFY_ORDERS, PRIMA_OUTCOMES], accepts=ACCEPTS,
                 handler=decider.handle)
        try:
            async with worker.broker(broker):
                await worker.stopped()
        finally:
            orders.close()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.order_decider_metrics_port)
