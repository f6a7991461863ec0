"""The order decider: hosts the Order aggregates.

In: Shopify order facts (shopify.orders.v1: orders, refunds, edits), Prima's outcomes
(prima.outcomes.v1) and the operator's ReleaseOrder and ResolveOrderChange commands
(shopify-prima.operations.v1), in batches. For each batch it reads the items the batch's SKUs
name (its orders', its deliveries', the line rules'; then the components of the kits among them:
a bundle line reaches Prima as its components, domain/orders/bundles.py) from the item-master
read model (built from Prima's item facts; no call to Prima inside a handler), lets each Order decide with the flow's
configured rules (ORDER_CUTOFF, ORDER_LINE_RULES, ORDER_GOODWILL_ITEM: domain/orders/policy.py),
and saves every changed Order in one transaction with the notification log (the outbox). The offsets are committed after the
save (services/platform/kafka.py): a redelivered batch changes nothing.

Beside the consumer, a sweep (every ORDER_AUTO_RELEASE_INTERVAL_SECONDS) releases orders
quarantined for unmapped SKUs once those SKUs are sellable in the item master, without an
operator: it reads the open unmapped_sku exceptions of the order-sync read model and decides
those orders again exactly as a ReleaseOrder would (released_by AUTO_RELEASED_BY), serialized
with the consumer's batches. An order that still does not map is left as it is, with no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from contracts.platform import ReleaseOrder, ResolveOrderChange
from contracts.prima.credit_memos import PrimaCreditMemoCreated
from contracts.prima.sales_orders import (
    PrimaSalesOrderAmended,
    PrimaSalesOrderCancelled,
    PrimaSalesOrderChangeRefused,
    PrimaSalesOrderCreated,
    PrimaSalesOrderParked,
    PrimaSalesOrderRejected,
)
from contracts.shopify.orders import ShopifyOrderReceived
from contracts.shopify.refunds import ShopifyOrderEditReceived, ShopifyRefundReceived
from contracts.topics import PRIMA_OUTCOMES, SHOPIFY_ORDERS
from domain.catalog.items import ItemMaster, is_sellable
from domain.orders.application import OrderApplication
from domain.orders.mapping import LineRules
from domain.orders.policy import DEFAULT_POLICY, OrderPolicy
from domain.orders.values import OrderFact, ReleaseRequested
from projections import item_master, order_sync
from services.orders import translate
from services.platform.kafka import Consumer, Delivery, make_broker
from services.platform.metrics import ORDER_DELIVERIES, WEBHOOK_TO_SALES_ORDER
from services.platform.runner import Worker, every, run_worker

log = logging.getLogger("shopify_prima.order_decider")
GROUP = "order-decider"
ACCEPTS = (ShopifyOrderReceived, ShopifyRefundReceived, ShopifyOrderEditReceived, PrimaSalesOrderCreated,
           PrimaSalesOrderRejected, PrimaSalesOrderParked, PrimaSalesOrderAmended, PrimaSalesOrderCancelled,
           PrimaSalesOrderChangeRefused, PrimaCreditMemoCreated, ReleaseOrder, ResolveOrderChange)

ItemLookup = Callable[[Iterable[str]], Awaitable[ItemMaster]]
# the open unmapped_sku exceptions: (Shopify order id, the SKUs it lacks) each
QuarantinedLookup = Callable[[], Awaitable[list[tuple[int, tuple[str, ...]]]]]
AUTO_RELEASED_BY = "auto: the item exists in Prima now"
REFUND_DELIVERIES = Counter("shopify_prima_refund_deliveries", "Refunds delivered to the order decider, by outcome "
                            "(applied, duplicate)", ["outcome"])


def to_fact(message: Any) -> OrderFact:
    if isinstance(message, ShopifyOrderReceived):
        return translate.delivery(message)
    if isinstance(message, ShopifyRefundReceived):
        return translate.refund_delivery(message)
    if isinstance(message, ShopifyOrderEditReceived):
        return translate.edit_noticed(message)
    if isinstance(message, ReleaseOrder):
        return translate.release(message)
    if isinstance(message, ResolveOrderChange):
        return translate.resolution(message)
    return translate.outcome(message)


def policy_of(settings: Any) -> OrderPolicy:
    """The flow's rules from settings (validated at start-up)."""
    return OrderPolicy(cutoff=settings.order_cutoff, line_rules=LineRules(rules=tuple(settings.order_line_rules)),
                       goodwill_item=settings.order_goodwill_item)


class OrderDecider:
    """The handler, without Kafka: a batch of messages -> one save (tests call it directly)."""

    def __init__(self, orders: OrderApplication, items: ItemLookup,
                 quarantined: QuarantinedLookup | None = None, policy: OrderPolicy = DEFAULT_POLICY) -> None:
        self.orders = orders
        self.items = items
        self.quarantined = quarantined
        self.policy = policy
        self.lock = asyncio.Lock()  # the consumer's batches and the sweep decide one at a time

    async def handle(self, deliveries: list[Delivery[Any]]) -> None:
        await self.decide([to_fact(d.message) for d in deliveries])

    async def decide(self, facts: list[OrderFact]) -> None:
        loop = asyncio.get_running_loop()

        def items(skus: set[str]) -> ItemMaster:
            """The item master for these SKUs, read on this loop (the batch runs in a thread)."""
            return asyncio.run_coroutine_threadsafe(self.items(skus), loop).result()

        async with self.lock:
            result = await asyncio.to_thread(self.orders.handle, facts, items, datetime.now(UTC), self.policy)
        for outcome, n in result.deliveries.items():
            ORDER_DELIVERIES.labels(outcome=outcome).inc(n)
        for seconds in result.created_after:
            WEBHOOK_TO_SALES_ORDER.observe(seconds)
        automatic = {f.shopify_order_id for f in facts if isinstance(f, ReleaseRequested) and f.only_if_mapped}
        for shopify_order_id, state in result.releases:
            log.info("order %s released%s: now %s", shopify_order_id,
                     " (its items exist in Prima now)" if shopify_order_id in automatic else "", state)
        for shopify_order_id in result.refused_releases:
            if shopify_order_id not in automatic:
                log.info("order %s: release asked, but it is not quarantined, failed, held at the cut-off, "
                         "nor has a credit memo held", shopify_order_id)
        for shopify_order_id, done in result.resolutions:
            log.info("order %s: %s", shopify_order_id, "change resolved by hand" if done
                     else "resolution asked, but no change is held at the cut-off")
        for outcome, n in result.refunds.items():
            REFUND_DELIVERIES.labels(outcome=outcome).inc(n)
        for shopify_order_id in result.edits_without_order:
            log.warning("order %s: an orders/edited delivery for an order never received; the order's own "
                        "webhook (or the reconciler) brings it", shopify_order_id)

    async def release_resolved(self) -> list[int]:
        """The sweep: orders quarantined for SKUs that are all sellable now are decided again
        (as by a ReleaseOrder); returns the orders it asked to release."""
        if self.quarantined is None:
            return []
        quarantined = await self.quarantined()
        if not quarantined:
            return []
        master = await self.items({sku for _, skus in quarantined for sku in skus if sku})
        ready = [order_id for order_id, skus in quarantined
                 if skus and all(is_sellable(master.get(sku)) for sku in skus)]
        if ready:
            now = datetime.now(UTC)
            await self.decide([ReleaseRequested(shopify_order_id=order_id, released_by=AUTO_RELEASED_BY,
                                                requested_at=now, only_if_mapped=True) for order_id in ready])
        return ready

    async def sweep(self, stop: asyncio.Event, interval_seconds: float) -> None:
        """release_resolved every `interval_seconds` until `stop` (runner.every)."""
        await every(stop, interval_seconds, "the order decider's release sweep (PostgreSQL)", self.release_resolved, log)


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, GROUP)
    orders = OrderApplication(env=settings.eventsourcing_env())
    async with worker.database(max_size=3) as pool:
        decider = OrderDecider(orders, lambda skus: item_master.items_for(pool, skus),
                               lambda: order_sync.open_unmapped_sku_exceptions(pool), policy_of(settings))
        Consumer(broker, settings, group=GROUP, topics=[SHOPIFY_ORDERS, PRIMA_OUTCOMES], accepts=ACCEPTS,
                 handler=decider.handle)
        try:
            async with worker.broker(broker):
                sweep = asyncio.create_task(decider.sweep(worker.stop, settings.order_auto_release_interval_seconds),
                                            name="order-auto-release")
                try:
                    await worker.stopped()
                finally:
                    if not worker.stop.is_set():  # leaving for another reason: do not wait for the next pass
                        sweep.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweep
        finally:
            orders.close()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.order_decider_metrics_port)
