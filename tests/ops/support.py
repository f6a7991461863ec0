"""Test data and Kafka helpers of the ops tests: the read-model rows an operator looks at (built
by the projections from typed events, as the projector would), and a tap on the operations topic
the ops API publishes its operator commands to.

The ops tests give the API a throwaway operations topic (tests/ops/conftest.py): the running
stack's order decider, stock decider, catalogue reader, projector and gateways all consume the
real `shopify-prima.operations.v1`, and a test's RebuildProjection or RequestFullComparison must
not rebuild or resync the stack that other tests are using.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import TypeAdapter

from contracts.inventory.events import StockEvent
from contracts.platform import DeadLetter
from contracts.shopify.inventory import SetInventoryLevel
from contracts.topics import OPERATIONS
from projections import PROJECTIONS
from projections import inventory_health as ih
from projections.dead_letters import DeadLettersProjection
from services.platform.kafka import decode_record
from services.platform.parking import ParkedCommands

LOC, LOC2 = "gid://shopify/Location/1", "gid://shopify/Location/2"
ITEM = "gid://shopify/InventoryItem/9"
T = datetime(2026, 3, 2, 9, tzinfo=UTC)
ORDER_ID = 42
MUG_COMMAND_ID = uuid5(NAMESPACE_URL, "ops-mug-1")
DEAD_LETTER_ID = uuid5(NAMESPACE_URL, "ops-dead-letter-1")
RELAY_DEAD_LETTER_ID = uuid5(NAMESPACE_URL, "ops-dead-letter-relay")
PARKED_COMMAND_ID = uuid5(NAMESPACE_URL, "ops-parked-1")
_STOCK_EVENT = TypeAdapter(StockEvent)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


class Events:
    """Typed stock events (contracts/inventory/events.py) of consecutive aggregate versions."""

    def __init__(self) -> None:
        self.versions: dict[UUID, int] = {}

    def __call__(self, event_type: str, sku: str, fields: dict[str, Any], seconds: float,
                 location: str | None = LOC) -> Any:
        aggregate = event_type.split(".")[0]
        location = location if aggregate == "StockItem" else None
        aggregate_id = uuid5(NAMESPACE_URL, f"{aggregate}/{sku}@{location}")
        version = self.versions.get(aggregate_id, 0) + 1
        self.versions[aggregate_id] = version
        return _STOCK_EVENT.validate_python({
            "event_type": event_type, "event_id": uuid5(aggregate_id, f"event/{version}"), "sku": sku,
            "location_id": location, "aggregate_id": aggregate_id, "aggregate_version": version,
            "timestamp": at(seconds), "notification_id": 1, **fields})


def stock_item(e: Events, sku: str, location: str, prima: int, desired: int, shopify: int | None,
               warehouse: str = "WH-MAIN") -> list[Any]:
    events = [
        e("StockItem.Registered", sku, {"warehouse": warehouse}, 1, location),
        e("StockItem.PrimaAvailabilityRecorded", sku, {"available": prima, "change_id": 1, "source": "stock",
          "reference": f"prima://stock/{warehouse}/{sku}?change=1"}, 2, location),
        e("StockItem.DesiredLevelChanged", sku, {"prima_available": prima, "buffer": prima - desired,
          "buffer_rule": "default", "desired": desired}, 2, location),
    ]
    if shopify is not None:
        events.append(e("StockItem.ShopifyLevelObserved", sku, {"inventory_item_id": ITEM, "available": shopify,
                        "observed_at": at(3)}, 3, location))
    return events


def mug_push() -> SetInventoryLevel:
    return SetInventoryLevel(command_id=MUG_COMMAND_ID, sku="OPS-MUG", inventory_item_id=ITEM, location_id=LOC,
                             quantity=5, change_from_quantity=0, issued_at=at(4),
                             reference_document_uri="prima://stock/WH-MAIN/OPS-MUG?change=1")


def stock_events() -> list[Any]:
    """OPS-TEE: in sync at location 1, drifted at 2, a catalogue entry (a bundle); OPS-MUG
    pending; OPS-GHOST: a variant without a Prima item and stock in an unmapped warehouse;
    OPS/SLASH: a SKU with a slash, not in Shopify."""
    e = Events()
    return [
        *stock_item(e, "OPS-TEE", LOC, 10, 8, 8),
        *stock_item(e, "OPS-TEE", LOC2, 5, 3, 7, warehouse="WH-NORTH"),
        e("CatalogItem.Registered", "OPS-TEE", {}, 1),
        e("CatalogItem.PrimaItemRecorded", "OPS-TEE", {"item_id": "ITM-TEE", "item_type": "bundle", "active": True,
          "components": {"OPS-A": 1, "OPS-B": 2}, "updated_at": at(1)}, 1),
        e("CatalogItem.ShopifyVariantRecorded", "OPS-TEE", {"variant_id": "gid://shopify/ProductVariant/1",
          "product_id": "gid://shopify/Product/1", "product_status": "ACTIVE", "inventory_item_id": ITEM,
          "observed_at": at(3)}, 3),
        *stock_item(e, "OPS-MUG", LOC, 6, 5, 0),
        e("StockItem.PushRequested", "OPS-MUG", {"command": mug_push(), "desired": 5, "shopify_level": 0}, 4),
        e("CatalogItem.Registered", "OPS-GHOST", {}, 5),
        e("CatalogItem.VariantWithoutPrimaItem", "OPS-GHOST", {"reason": "no Prima item with this SKU",
          "product_id": "gid://shopify/Product/2", "variant_id": "gid://shopify/ProductVariant/2"}, 6),
        e("CatalogItem.UnmappedWarehouseFound", "OPS-GHOST", {"warehouse": "WH-X", "available": 2, "change_id": 1}, 7),
        *stock_item(e, "OPS/SLASH", LOC, 1, 0, None),
    ]


def dead_letter(dead_letter_id: UUID = DEAD_LETTER_ID, topic: str = "prima.outcomes.v1",
                group: str = "order-decider") -> DeadLetter:
    return DeadLetter(
        dead_letter_id=dead_letter_id, group=group, topic=topic, partition=1, offset=17, key_base64="MTAwMQ==",
        value_base64="eyJub3QiOiAiYW4gb3V0Y29tZSJ9", headers={"message_type": "PrimaSalesOrderCreated"},
        original_message_type="PrimaSalesOrderCreated", reason="undecodable",
        error="PrimaSalesOrderCreated does not validate: 6 error(s), first: command_id: Field required", attempts=0,
        dead_lettered_at=at(0.5))


async def seed(url: str) -> None:
    """Empty every read model and the runs, then: the stock events above applied by the
    inventory-health projection; order 42 quarantined with its exception; a dead letter of the
    order decider (and one of the outbox relay, resolved); a Shopify command the gateway parked."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            tables = sorted({t for p in PROJECTIONS.values() for t in p.tables})
            await conn.execute(f"TRUNCATE {', '.join(tables)}, readmodel.positions, readmodel.rebuilds, "
                               "readmodel.applied_versions, inventory.sync_runs, gateway.parked_commands")
            await ih.apply_events(conn, stock_events())
            await conn.execute(
                """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, first_received_at,
                   last_event_at, last_event_version) VALUES ($1, '#1042', 'quarantined', $2, $2, 2)""",
                ORDER_ID, at(0))
            await conn.execute(
                """INSERT INTO readmodel.exceptions (exception_id, shopify_order_id, order_name, kind, reason, payload,
                   action, status, raised_at) VALUES ($1, $2, '#1042', 'unmapped_sku', 'SKU X has no item',
                   '{"unmapped_skus": ["X"]}', 'shopify-prima orders release 42', 'open', $3)""",
                uuid4(), ORDER_ID, at(5.5))
            relay_letter = dead_letter(RELAY_DEAD_LETTER_ID, topic="notification-log:orders", group="outbox-relay.orders")
            await DeadLettersProjection(None).apply(conn, [dead_letter(), relay_letter])  # type: ignore[arg-type]
            await conn.execute("UPDATE readmodel.dead_letters SET status = 'resolved', resolved_at = $2 "
                               "WHERE dead_letter_id = $1", RELAY_DEAD_LETTER_ID, at(1))
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        parked = mug_push().model_copy(update={"command_id": PARKED_COMMAND_ID})
        await ParkedCommands(pool).park(parked, gateway="shopify", subject="OPS-MUG",
                                        reason="Shopify unavailable after 5 attempts", attempts=5)
    finally:
        await pool.close()


# ------------------------------------------------------------------------- the operations topic


class OperationsTap:
    """Reads back what was published to an operations topic: note `await tap.ends()` before a
    call, then `await tap.since(ends)` gives the records added after it, decoded."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = OPERATIONS.partitions) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]

    async def _consumer(self) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None)
        await consumer.start()
        consumer.assign(self.partitions)
        return consumer, self.partitions

    async def ends(self) -> dict[int, int]:
        consumer, partitions = await self._consumer()
        try:
            return {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
        finally:
            await consumer.stop()

    async def since(self, start: dict[int, int]) -> list[Record]:
        """Every record added after `start` (end offsets noted before), in partition order."""
        consumer, partitions = await self._consumer()
        try:
            end = await consumer.end_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, start.get(tp.partition, 0))
            found: list[Record] = []
            while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    found += [Record.of(r) for r in records if r.offset < end[TopicPartition(r.topic, r.partition)]]
            return found
        finally:
            await consumer.stop()

    async def wait_for(self, start: dict[int, int], message_type: str, timeout: float = 15) -> Record:
        """The first record of this type added after `start`, waiting for it to arrive."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [r for r in await self.since(start) if r.headers.get("message_type") == message_type]
            if found:
                return found[0]
            assert asyncio.get_running_loop().time() < deadline, f"no {message_type} published in {timeout}s"
            await asyncio.sleep(0.05)


class Record:
    """A consumed record: its key, headers and the operator command it decodes to."""

    def __init__(self, key: bytes | None, headers: dict[str, str], message: Any) -> None:
        self.key, self.headers, self.message = key, headers, message

    @classmethod
    def of(cls, record: Any) -> Record:
        headers = {k: v.decode() for k, v in record.headers or ()}
        return cls(record.key, headers, decode_record(record, OPERATIONS.message_types))

    def __repr__(self) -> str:
        return f"Record(key={self.key!r}, headers={self.headers!r}, message={self.message!r})"


async def rows(url: str, query: str, *args: Any) -> Sequence[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()

