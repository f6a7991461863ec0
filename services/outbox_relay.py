"""The outbox relay: each application's notification log, in order, onto Kafka.

Orders: domain events go to the order-events topic; SalesOrderRequested also goes to the Prima
commands topic as a CreateSalesOrder. Inventory: StockItem and CatalogItem events go to the
stock-events topic; PushRequested also goes to the Shopify commands topic as a
SetInventoryLevel, ProductStatusRequested as a SetProductStatus.
A relay's position is stored only after Kafka acknowledged every message up to it (at least
once; each message has a stable id for consumers to dedupe on). One relay per log runs at a
time, guarded by a PostgreSQL advisory lock; both run in this process.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any
from uuid import UUID, uuid5

import asyncpg
from faststream.kafka import KafkaBroker
from pydantic import TypeAdapter

from contracts.events import OrderEvent
from contracts.inventory import SetInventoryLevel, SetProductStatus, StockEvent, sku_key
from contracts.prima import CreateSalesOrder
from contracts.topics import ORDER_EVENTS, PRIMA_COMMANDS, SHOPIFY_COMMANDS, STOCK_EVENTS, order_key
from domain.inventory.application import InventoryApplication
from domain.orders.application import OrderApplication
from services.config import Settings
from services.kafka import encode, headers_for, make_broker
from services.metrics import OUTBOX_POSITION, OUTBOX_RELAYED
from services.runtime import start, wait_or_stop

log = logging.getLogger("shopify_prima.outbox_relay")
EVENT = TypeAdapter(OrderEvent)

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS outbox;
CREATE TABLE IF NOT EXISTS outbox.relay_position (relay text PRIMARY KEY, position bigint NOT NULL);
"""


def event_id(aggregate_id: UUID, version: int) -> UUID:
    return uuid5(aggregate_id, f"event/{version}")


Message = tuple[str, bytes, bytes, dict[str, str]]  # topic, key, value, headers


class Relay:
    name = "orders"
    lock_key = 7_310_001  # pg advisory lock id of this relay

    def __init__(self, settings: Settings, broker: KafkaBroker) -> None:
        self.settings = settings
        self.broker = broker
        self.app = OrderApplication(env=settings.eventsourcing_env())
        self.order_ids: OrderedDict[UUID, int] = OrderedDict()  # aggregate id -> Shopify order id

    def _shopify_order_id(self, aggregate_id: UUID, domain_event: Any) -> int:
        if hasattr(domain_event, "shopify_order_id"):
            found = domain_event.shopify_order_id
        elif aggregate_id in self.order_ids:
            found = self.order_ids[aggregate_id]
        else:
            first = self.app.recorder.select_events(aggregate_id, lte=1)[0]
            found = self.app.mapper.to_domain_event(first).shopify_order_id
        self.order_ids[aggregate_id] = found
        self.order_ids.move_to_end(aggregate_id)
        if len(self.order_ids) > 100_000:
            self.order_ids.popitem(last=False)
        return found

    def read(self, after: int) -> list[tuple[int, list[Message]]]:
        """Notifications after `after`, each turned into the Kafka messages it stands for."""
        return [
            (notification.id, self.messages(notification, self.app.mapper.to_domain_event(notification)))
            for notification in self.app.recorder.select_notifications(after + 1, self.settings.relay_batch_size)
        ]

    def messages(self, notification: Any, domain_event: Any) -> list[Message]:
        aggregate_id = domain_event.originator_id
        attrs = {k: v for k, v in domain_event.__dict__.items() if k not in ("originator_id", "originator_version", "timestamp")}
        shopify_order_id = self._shopify_order_id(aggregate_id, domain_event)
        message = EVENT.validate_python({
            **attrs,
            "event_type": type(domain_event).__name__,
            "event_id": event_id(aggregate_id, domain_event.originator_version),
            "shopify_order_id": shopify_order_id,
            "aggregate_id": aggregate_id,
            "aggregate_version": domain_event.originator_version,
            "timestamp": domain_event.timestamp,
            "notification_id": notification.id,
        })
        key = order_key(shopify_order_id)
        out = [(ORDER_EVENTS.name, key, encode(message), headers_for(message, event_type=message.event_type))]
        if message.event_type == "SalesOrderRequested":
            command: CreateSalesOrder = message.command
            out.append((PRIMA_COMMANDS.name, key, encode(command), headers_for(command)))
        return out

    async def run(self, stop: asyncio.Event) -> None:
        pool = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=2)
        async with pool.acquire() as lock_conn:
            while not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_key):
                log.info("another %s relay holds the lock; standing by", self.name)
                if await wait_or_stop(stop, 5):
                    return
            await pool.execute(
                "INSERT INTO outbox.relay_position VALUES ($1, 0) ON CONFLICT DO NOTHING", self.name
            )
            position = await pool.fetchval("SELECT position FROM outbox.relay_position WHERE relay = $1", self.name)
            log.info("relaying %s from notification %s", self.name, position)
            while not stop.is_set():
                batch = await asyncio.to_thread(self.read, position)
                if not batch:
                    await wait_or_stop(stop, self.settings.relay_poll_interval_seconds)
                    continue
                futures = []
                for _, messages in batch:
                    for topic, key, value, headers in messages:
                        # send without waiting each one, then wait for every acknowledgement
                        futures.append(await self.broker.publish(value, topic, key=key, headers=headers, no_confirm=True))
                        OUTBOX_RELAYED.labels(topic=topic).inc()
                await asyncio.gather(*futures)
                position = batch[-1][0]
                await pool.execute("UPDATE outbox.relay_position SET position = $2 WHERE relay = $1", self.name, position)
                OUTBOX_POSITION.labels(relay=self.name).set(position)
        await pool.close()


class InventoryRelay(Relay):
    name = "inventory"
    lock_key = 7_310_002

    def __init__(self, settings: Settings, broker: KafkaBroker) -> None:
        self.settings = settings
        self.broker = broker
        self.app = InventoryApplication(env=settings.eventsourcing_env())
        self.keys: OrderedDict[UUID, tuple[str, str | None]] = OrderedDict()  # id -> (sku, location)

    def _identity(self, aggregate_id: UUID, domain_event: Any) -> tuple[str, str | None]:
        if aggregate_id in self.keys:
            self.keys.move_to_end(aggregate_id)
            return self.keys[aggregate_id]
        if hasattr(domain_event, "sku"):
            first = domain_event
        else:
            first = self.app.mapper.to_domain_event(self.app.recorder.select_events(aggregate_id, lte=1)[0])
        found = (first.sku, getattr(first, "location_id", None))
        self.keys[aggregate_id] = found
        if len(self.keys) > 200_000:
            self.keys.popitem(last=False)
        return found

    def messages(self, notification: Any, domain_event: Any) -> list[Message]:
        aggregate_id = domain_event.originator_id
        sku, location_id = self._identity(aggregate_id, domain_event)
        data = {k: v for k, v in domain_event.__dict__.items() if k not in ("originator_id", "originator_version", "timestamp")}
        message = StockEvent(
            event_id=event_id(aggregate_id, domain_event.originator_version),
            event_type=type(domain_event).__qualname__,
            sku=sku,
            location_id=location_id,
            aggregate_id=aggregate_id,
            aggregate_version=domain_event.originator_version,
            timestamp=domain_event.timestamp,
            notification_id=notification.id,
            data=data,
        )
        key = sku_key(sku)
        out = [(STOCK_EVENTS.name, key, encode(message), headers_for(message, event_type=message.event_type))]
        command: SetInventoryLevel | SetProductStatus | None = None
        if message.event_type == "StockItem.PushRequested":
            command = SetInventoryLevel.model_validate(data["command"])
        elif message.event_type == "CatalogItem.ProductStatusRequested":
            command = SetProductStatus.model_validate(data["command"])
        if command is not None:
            out.append((SHOPIFY_COMMANDS.name, key, encode(command), headers_for(command)))
        return out


async def amain(settings: Settings) -> None:
    import signal

    broker = make_broker(settings, "outbox-relay")
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    relays = [Relay(settings, broker), InventoryRelay(settings, broker)]
    try:
        await asyncio.gather(*(relay.run(stop) for relay in relays))
    finally:
        await broker.stop()
        for relay in relays:
            relay.app.close()


def main() -> None:
    asyncio.run(amain(start(lambda s: s.outbox_relay_metrics_port)))


if __name__ == "__main__":
    main()
