"""The stock decider: hosts the inventory aggregates (StockItem per SKU and Shopify location,
CatalogItem per SKU).

In: Prima's stock and item facts (prima.inventory.v1), Shopify catalogue reads
(shopify.inventory.v1), the Shopify gateway's outcomes (shopify.outcomes.v1), the operator's
ReleaseStockLevel (shopify-prima.operations.v1), and, in a second consumer group, the order
flow's events (shopify-prima.order-events.v1: an accepted order's units are pending allocations
until Prima's stock records include them), in batches of up to CONSUMER_BATCH_SIZE (a full comparison of
100,000 SKU-locations is 100,000 facts). The aggregates a batch needs are loaded in
one query and saved in one transaction with the notification log; the offsets are committed
after the save (services/platform/kafka.py), and every aggregate ignores what it has already
applied, so a redelivered batch is harmless.

A peak window opening or closing changes desired levels without any new fact: the decider
re-evaluates every known StockItem at each window boundary.

A SKU-location whose push the Shopify gateway gave up on heals without a person: every
inventory_auto_release_interval_seconds a sweep decides again those whose backoff is over (the
parked re-drive's initial and max seconds, doubling per failure), until
parked_redrive_horizon_seconds after the first failure; then the exception waits for
`inventory release`. A rejected push (Shopify refused the quantity) always waits for a person.
Sweeps, window boundaries and batches take one lock: they never interleave.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from contracts.orders.events import OrderEvent
from contracts.platform import ReleaseStockLevel
from contracts.prima.inventory import PrimaInventoryFact
from contracts.shopify.inventory import ShopifyInventoryFact, ShopifyOutcome
from contracts.topics import (
    ORDER_EVENTS,
    PRIMA_INVENTORY,
    SHOPIFY_INVENTORY,
    SHOPIFY_OUTCOMES,
    members_of,
)
from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.domainmodel import StockItem
from domain.inventory.values import AutoRelease
from services.inventory.translate import fact
from services.platform.kafka import Consumer, Delivery, make_broker
from services.platform.metrics import INVENTORY_FACTS, INVENTORY_PUSHES_DECIDED
from services.platform.runner import Worker, backoff, run_worker
from services.platform.settings import Settings

log = logging.getLogger("shopify_prima.stock_decider")
GROUP = "stock-decider"
ACCEPTS = (*members_of(PrimaInventoryFact), *members_of(ShopifyInventoryFact), *members_of(ShopifyOutcome),
           ReleaseStockLevel)
TOPICS = [PRIMA_INVENTORY, SHOPIFY_INVENTORY, SHOPIFY_OUTCOMES]
# The order flow's events, in a group of their own that starts at the end of the topic the first
# time: an order accepted before the decider first read them is not pending here (replaying the
# whole order history would hold back units that Prima allocated long ago).
ORDERS_GROUP = "stock-decider-orders"
ORDER_ACCEPTS = (OrderEvent,)
ORDER_TOPICS = [ORDER_EVENTS]
REGISTERED_TOPIC = f"{StockItem.__module__}:StockItem.Registered"


def policy_from(settings: Settings) -> InventoryPolicy:
    return InventoryPolicy(
        location_map=dict(settings.inventory_location_map),
        rules=settings.inventory_buffer,
        draft_unpublished=settings.publishing_guard_draft,
        allocation_warehouse=settings.inventory_allocation_warehouse,
    )


def auto_release_from(settings: Settings) -> AutoRelease:
    return AutoRelease(initial_seconds=settings.parked_redrive_initial_seconds,
                       max_seconds=settings.parked_redrive_max_seconds,
                       horizon_seconds=settings.parked_redrive_horizon_seconds)


class StockDecider:
    """The handler, without Kafka (tests call `handle` directly)."""

    def __init__(self, inventory: InventoryApplication, policy: InventoryPolicy,
                 retry: AutoRelease | None = None) -> None:
        self.inventory = inventory
        self.policy = policy
        self.retry = retry or AutoRelease(initial_seconds=5.0, max_seconds=300.0, horizon_seconds=86_400.0)
        self.lock = asyncio.Lock()  # one batch (or sweep) at a time: the indexes are shared

    async def handle(self, deliveries: list[Delivery[Any]]) -> None:
        taken = [(d, found) for d in deliveries if (found := fact(d.message)) is not None]
        if not taken:
            return
        async with self.lock:
            result = await asyncio.to_thread(self.inventory.handle, [f for _, f in taken], self.policy,
                                             datetime.now(UTC))
        for d, _ in taken:
            INVENTORY_FACTS.labels(fact=getattr(d.message, "event_type", None) or type(d.message).__name__).inc()
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
            attempt = 0
            while True:  # a boundary is never skipped: PostgreSQL down at that moment is waited out
                try:
                    async with self.lock:
                        keys = await asyncio.to_thread(self.all_stock_keys)
                        saved = await asyncio.to_thread(self.inventory.refresh, keys, self.policy, datetime.now(UTC))
                    break
                except Exception as exc:  # noqa: BLE001
                    log.warning("peak window boundary %s: re-deciding failed (%s: %s); trying again", upcoming[0],
                                type(exc).__name__, exc)
                    if await worker.sleep(backoff(attempt, 1.0, 30.0)):
                        return
                    attempt += 1
            log.info("peak window boundary %s: %d of %d SKU-locations re-decided", upcoming[0], saved, len(keys))

    async def auto_release_once(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """One sweep: the SKU-locations whose failed push is due to be decided again."""
        async with self.lock:
            released = await asyncio.to_thread(self.inventory.auto_release, self.policy, now or datetime.now(UTC),
                                               self.retry)
        for sku, location in released:
            log.info("%s at %s: the Shopify gateway had given up; decided again without an operator", sku, location)
        return released

    async def auto_release(self, worker: Worker, interval: float) -> None:
        """Sweep every `interval` seconds until stopped (a failed sweep is tried at the next)."""
        while not await worker.sleep(interval):
            try:
                await self.auto_release_once()
            except Exception:
                log.warning("auto-release sweep failed; trying again in %ss", interval, exc_info=True)

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
        pending = await asyncio.to_thread(inventory.load_allocation_index)
        failed = await asyncio.to_thread(inventory.load_failed_index)
        log.info("bundle index: %d bundles; %d pending allocations; %d failed pushes", count, pending, failed)
        decider = StockDecider(inventory, policy_from(settings), auto_release_from(settings))
        Consumer(broker, settings, group=GROUP, topics=TOPICS, accepts=ACCEPTS, handler=decider.handle)
        Consumer(broker, settings, group=ORDERS_GROUP, topics=ORDER_TOPICS, accepts=ORDER_ACCEPTS,
                 handler=decider.handle, operations=False, start_from="latest")
        async with worker.broker(broker):
            await asyncio.gather(decider.peak_boundaries(worker),
                                 decider.auto_release(worker, settings.inventory_auto_release_interval_seconds),
                                 worker.stopped())
    finally:
        inventory.close()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.stock_decider_metrics_port)
