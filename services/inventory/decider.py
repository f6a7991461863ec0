"""The stock decider: hosts the inventory aggregates (StockItem per SKU and Shopify location,
CatalogItem per SKU).

In: Prima's stock and item facts (prima.inventory.v1), Shopify catalogue reads
(shopify.inventory.v1), the Shopify gateway's outcomes (shopify.outcomes.v1) and the operator's
ReleaseStockLevel (shopify-prima.operations.v1), in batches of up to CONSUMER_BATCH_SIZE (a full
comparison of 100,000 SKU-locations is 100,000 facts). The aggregates a batch needs are loaded in
one query and saved in one transaction with the notification log; the offsets are committed
after the save (services/platform/kafka.py), and every aggregate ignores what it has already
applied, so a redelivered batch is harmless.

A peak window opening or closing changes desired levels without any new fact: the decider
re-evaluates every known StockItem at each window boundary.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from contracts.platform import ReleaseStockLevel
from contracts.prima.inventory import PrimaInventoryFact
from contracts.shopify.inventory import ShopifyInventoryFact, ShopifyOutcome
from contracts.topics import PRIMA_INVENTORY, SHOPIFY_INVENTORY, SHOPIFY_OUTCOMES, members_of
from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.domainmodel import StockItem
from services.inventory.translate import fact
from services.platform.kafka import Consumer, Delivery, make_broker
from services.platform.metrics import INVENTORY_FACTS, INVENTORY_PUSHES_DECIDED
from services.platform.runner import Worker, run_worker
from services.platform.settings import Settings

log = logging.getLogger("shopify_prima.stock_decider")
GROUP = "stock-decider"
ACCEPTS = (*members_of(PrimaInventoryFact), *members_of(ShopifyInventoryFact), *members_of(ShopifyOutcome),
           ReleaseStockLevel)
REGISTERED_TOPIC = f"{StockItem.__module__}:StockItem.Registered"


def policy_from(settings: Settings) -> InventoryPolicy:
    return InventoryPolicy(
        location_map=dict(settings.inventory_location_map),
        rules=settings.inventory_buffer,
        draft_unpublished=settings.publishing_guard_draft,
    )


class StockDecider:
    """The handler, without Kafka (tests call `handle` directly)."""

    def __init__(self, inventory: InventoryApplication, policy: InventoryPolicy) -> None:
        self.inventory = inventory
        self.policy = policy
        self.lock = asyncio.Lock()  # one batch at a time: the bundle index is shared

    async def handle(self, deliveries: list[Delivery[Any]]) -> None:
        facts = [fact(d.message) for d in deliveries]
        async with self.lock:
            result = await asyncio.to_thread(self.inventory.handle, facts, self.policy, datetime.now(UTC))
        for d in deliveries:
            INVENTORY_FACTS.labels(fact=type(d.message).__name__).inc()
        INVENTORY_PUSHES_DECIDED.inc(result.pushes)
        for exception in result.exceptions:
            log.warning("inventory exception: %s", exception)
        for sku, location, released in result.releases:
            log.info("%s at %s %s", sku, location, "released" if released else "has no push exception to release")

    async def peak_boundaries(self, worker: Worker) -> None:
        """At each peak-window boundary, re-evaluate every StockItem's buffer."""
        while not worker.stop.is_set():
            now = datetime.now(UTC)
            upcoming = [b for b in self.policy.rules.boundaries() if b > now]
            if not upcoming:
                return
            if await worker.sleep((upcoming[0] - now).total_seconds() + 0.5):
                return
            async with self.lock:
                keys = await asyncio.to_thread(self.all_stock_keys)
                saved = await asyncio.to_thread(self.inventory.refresh, keys, self.policy, datetime.now(UTC))
            log.info("peak window boundary %s: %d of %d SKU-locations re-decided", upcoming[0], saved, len(keys))

    def all_stock_keys(self) -> list[tuple[str, str]]:
        keys, position = [], 0
        while True:
            notifications = self.inventory.recorder.select_notifications(position + 1, 5000, topics=[REGISTERED_TOPIC])
            if not notifications:
                return keys
            for notification in notifications:
                registered = self.inventory.mapper.to_domain_event(notification)
                keys.append((registered.sku, registered.location_id))
                position = notification.id


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, GROUP)
    inventory = InventoryApplication(env=settings.eventsourcing_env())
    try:
        count = await asyncio.to_thread(inventory.load_bundle_index)
        log.info("bundle index: %d bundles", count)
        decider = StockDecider(inventory, policy_from(settings))
        Consumer(broker, settings, group=GROUP, topics=[PRIMA_INVENTORY, SHOPIFY_INVENTORY, SHOPIFY_OUTCOMES],
                 accepts=ACCEPTS, handler=decider.handle)
        async with worker.broker(broker):
            await asyncio.gather(decider.peak_boundaries(worker), worker.stopped())
    finally:
        inventory.close()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.stock_decider_metrics_port)
