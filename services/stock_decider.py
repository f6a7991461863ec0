"""Hosts the inventory aggregates (StockItem, CatalogItem): Prima stock and item facts, Shopify
catalogue reads and Shopify outcomes in; decisions saved to the event store, whose notification
log is the outbox. Offsets are committed only after the batch's save.

Facts are consumed in batches (up to BATCH per poll); the aggregates a batch needs are loaded in
one query and saved in one transaction: a full comparison of 100,000 SKU-locations is 100,000
facts. A batch
that fails (a concurrent save of the same aggregate, the database down) is not acknowledged and
comes again; every aggregate ignores what it has already applied, so a redelivery is harmless.

A peak window opening or closing changes desired levels without any new fact: the decider
re-evaluates every known StockItem at each window boundary.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaMessage
from pydantic import TypeAdapter, ValidationError

from contracts.inventory import PrimaInventoryFact, ShopifyInventoryFact, ShopifyOutcome
from contracts.topics import PRIMA_INVENTORY, SHOPIFY_INVENTORY, SHOPIFY_OUTCOMES
from domain.inventory.application import InventoryApplication, InventoryPolicy
from services.config import Settings
from services.kafka import make_broker
from services.metrics import INVENTORY_FACTS, INVENTORY_PUSHES_DECIDED, UNDECODABLE
from services.runtime import run_faststream_worker

log = logging.getLogger("shopify_prima.stock_decider")
GROUP = "stock-decider"
FACT = TypeAdapter(PrimaInventoryFact | ShopifyInventoryFact | ShopifyOutcome)
BATCH = 500


def policy_from(settings: Settings) -> InventoryPolicy:
    return InventoryPolicy(
        location_map=dict(settings.inventory_location_map),
        rules=settings.inventory_buffer,
        draft_unpublished=settings.publishing_guard_draft,
    )


def decode_batch(records) -> list[object]:
    facts = []
    for record in records:
        try:
            facts.append(FACT.validate_json(record.value))
        except ValidationError as exc:
            log.error("undecodable message on %s[%s] at offset %s: %s; body %r",
                      record.topic, record.partition, record.offset, exc, record.value[:500])
            UNDECODABLE.labels(topic=record.topic).inc()
    return facts


def build(settings: Settings) -> FastStream:
    broker = make_broker(settings, "stock-decider")
    inventory = InventoryApplication(env=settings.eventsourcing_env())
    policy = policy_from(settings)
    lock = asyncio.Lock()  # one batch at a time: the bundle index is shared

    @broker.subscriber(
        PRIMA_INVENTORY.name, SHOPIFY_INVENTORY.name, SHOPIFY_OUTCOMES.name,
        group_id=GROUP, auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True, max_records=BATCH, batch_timeout_ms=100,
    )
    async def on_facts(body: list, msg: KafkaMessage) -> None:
        records = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        facts = decode_batch(records)
        if not facts:
            return
        async with lock:
            result = await asyncio.to_thread(inventory.handle, facts, policy, datetime.now(UTC))
        for fact in facts:
            INVENTORY_FACTS.labels(fact=type(fact).__name__).inc()
        INVENTORY_PUSHES_DECIDED.inc(result.pushes)
        for exception in result.exceptions:
            log.warning("inventory exception: %s", exception)

    app = FastStream(broker)
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []

    @app.on_startup
    async def load_index() -> None:
        count = await asyncio.to_thread(inventory.load_bundle_index)
        log.info("bundle index: %d bundles", count)

    @app.after_startup
    async def start_peak_watch() -> None:
        tasks.append(asyncio.create_task(_peak_boundaries(inventory, policy, lock, stop)))

    @app.after_shutdown
    async def close() -> None:
        stop.set()
        for task in tasks:
            task.cancel()
        inventory.close()

    return app


async def _peak_boundaries(inventory: InventoryApplication, policy: InventoryPolicy, lock: asyncio.Lock,
                           stop: asyncio.Event) -> None:
    """At each peak-window boundary, re-evaluate every StockItem's buffer."""
    while not stop.is_set():
        now = datetime.now(UTC)
        upcoming = [b for b in policy.rules.boundaries() if b > now]
        if not upcoming:
            return
        try:
            await asyncio.wait_for(stop.wait(), (upcoming[0] - now).total_seconds() + 0.5)
            return
        except TimeoutError:
            pass
        async with lock:
            keys = await asyncio.to_thread(_all_stock_keys, inventory)
            saved = await asyncio.to_thread(inventory.refresh, keys, policy, datetime.now(UTC))
        log.info("peak window boundary %s: %d of %d SKU-locations re-decided", upcoming[0], saved, len(keys))


def _all_stock_keys(inventory: InventoryApplication) -> list[tuple[str, str]]:
    topic = "domain.inventory.domainmodel:StockItem.Registered"
    keys, position = [], 0
    while True:
        notifications = inventory.recorder.select_notifications(position + 1, 5000, topics=[topic])
        if not notifications:
            return keys
        for notification in notifications:
            registered = inventory.mapper.to_domain_event(notification)
            keys.append((registered.sku, registered.location_id))
            position = notification.id


def main() -> None:
    run_faststream_worker(build, lambda s: s.stock_decider_metrics_port)


if __name__ == "__main__":
    main()
