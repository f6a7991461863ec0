"""The inventory-health projection (projections/inventory_health.py) on real PostgreSQL: typed
stock events (contracts/inventory/events.py) handed to InventoryHealthProjection.handle as the
platform Consumer hands them over, applied in one transaction with the positions and the
applied versions (projections/base.py).

Everything runs in a throwaway database made by the migrations (the inventory integration
tests' `scratch_url`), so nothing touches the running stack's read model or its positions, and
the read model can be emptied freely. Every test starts from an empty read model. The tests
that go through Kafka publish their own events to a topic of their own.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid4, uuid5

import asyncpg
import pytest
from aiokafka import TopicPartition
from faststream.kafka import TestKafkaBroker
from prometheus_client import REGISTRY
from pydantic import TypeAdapter

from contracts.inventory.events import StockEvent
from contracts.prima.inventory import sku_key
from contracts.topics import DEAD_LETTERS, STOCK_EVENTS
from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from domain.inventory.values import ProductStatusRefusedByShopify
from projections import inventory_health as ih
from projections.base import ProjectionHalted, Reposition
from projections.inventory_health import InventoryHealthProjection
from services.inventory.outbox import STOCK_RELAY
from services.platform.kafka import (
    Consumer,
    Delivery,
    Outgoing,
    encode,
    headers_for,
    make_broker,
    publish_all,
)
from services.platform.outbox import Relay
from services.projector import Projector
from tests.inventory.builders import (
    confirmed,
    item,
    parked,
    rejected,
    release,
    stock,
    variant,
)
from tests.inventory.integration.support import end_offsets, eventually

pytestmark = pytest.mark.integration

LOC = "gid://shopify/Location/1"
LOC2 = "gid://shopify/Location/2"
ITEM = "gid://shopify/InventoryItem/77"
T = datetime(2026, 3, 2, 9, tzinfo=UTC)
EVENTS = TypeAdapter(StockEvent)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).isoformat()


# --------------------------------------------------------------------- the read model, emptied


@pytest.fixture(scope="module")
async def pool(scratch_url):
    pool = await asyncpg.create_pool(scratch_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def empty(pool: asyncpg.Pool) -> None:
    """What a rebuild does first (under the projection's lock), with nothing left to reach."""
    emptier = InventoryHealthProjection(pool)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", emptier.lock)
        await emptier.reset(conn, {}, uuid4())


@pytest.fixture
async def projection(pool) -> InventoryHealthProjection:
    await empty(pool)
    return InventoryHealthProjection(pool)


async def rebuild(pool: asyncpg.Pool, projection: InventoryHealthProjection, target: dict[int, int]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", projection.lock)
        await projection.reset(conn, target, uuid4())


# ------------------------------------------------------------------------- events, as on Kafka


class Topic:
    """Stock events of one test, numbered as the relay numbers them, on three partitions."""

    def __init__(self) -> None:
        self.versions: dict[uuid.UUID, int] = {}
        self.next_offset = {0: 0, 1: 0, 2: 0}
        self.notification = 0

    def event(self, event_type: str, sku: str, fields: dict[str, Any], seconds: float,
              location: str | None = LOC) -> Any:
        aggregate = event_type.split(".")[0]
        location = location if aggregate == "StockItem" else None
        aggregate_id = uuid5(NAMESPACE_URL, f"{aggregate}/{sku}@{location}")
        version = self.versions.get(aggregate_id, 0) + 1
        self.versions[aggregate_id] = version
        self.notification += 1
        return EVENTS.validate_python({
            **fields, "event_id": uuid5(aggregate_id, f"event/{version}"), "event_type": event_type, "sku": sku,
            "location_id": location, "aggregate_id": aggregate_id, "aggregate_version": version,
            "timestamp": at(seconds), "notification_id": self.notification})

    def deliveries(self, *events: Any, partition: int = 0) -> list[Delivery[Any]]:
        out = []
        for e in events:
            out.append(Delivery(e, STOCK_EVENTS.name, partition, self.next_offset[partition], sku_key(e.sku)))
            self.next_offset[partition] += 1
        return out


def command(n: int, sku: str, quantity: int, change_from: int | None, seconds: float, location: str = LOC) -> dict:
    return {"message_type": "SetInventoryLevel", "command_id": str(uuid5(NAMESPACE_URL, f"{sku}/{location}/cmd/{n}")),
            "sku": sku, "inventory_item_id": ITEM, "location_id": location, "quantity": quantity,
            "change_from_quantity": change_from, "reference_document_uri": f"prima://stock/WH-MAIN/{sku}?change={n}",
            "issued_at": iso(seconds)}


async def apply(projection: InventoryHealthProjection, topic: Topic, *events: Any,
                partition: int = 0) -> list[Delivery[Any]]:
    deliveries = topic.deliveries(*events, partition=partition)
    await projection.handle(deliveries)
    return deliveries


async def row(db, sku: str, location: str = LOC) -> dict:
    found = await db.fetchrow("SELECT * FROM readmodel.inventory_health WHERE sku = $1 AND location_id = $2",
                              sku, location)
    return dict(found) if found else {}


async def exceptions(db, sku: str) -> list[dict]:
    rows = await db.fetch(
        "SELECT * FROM readmodel.inventory_exceptions WHERE sku = $1 ORDER BY raised_at, exception_id", sku)
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


async def snapshot(db) -> tuple:
    tables = []
    for table, key in (("readmodel.inventory_health", "sku, location_id"), ("readmodel.catalog_items", "sku"),
                       ("readmodel.inventory_exceptions", "exception_id")):
        tables.append([tuple(r) for r in await db.fetch(f"SELECT * FROM {table} ORDER BY {key}")])
    tables.append([tuple(r) for r in await db.fetch(
        "SELECT * FROM readmodel.positions WHERE projection = $1 ORDER BY kafka_partition", ih.INVENTORY_HEALTH.name)])
    return tuple(tables)


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------------------- the push cycle


def push_cycle(topic: Topic, sku: str) -> list[list[Any]]:
    """The events of a StockItem's life, step by step (each step one batch)."""
    e = topic.event
    c1, c2, c3, c4 = (command(1, sku, 8, 0, 40), command(2, sku, 2, 8, 70), command(3, sku, 2, 8, 100),
                      command(4, sku, 2, 8, 130))
    return [
        [e("StockItem.Registered", sku, {"sku": sku, "location_id": LOC, "warehouse": "WH-MAIN"}, 10)],
        [e("StockItem.PrimaAvailabilityRecorded", sku, {"available": 10, "change_id": 1, "source": "stock",
           "reference": f"prima://stock/WH-MAIN/{sku}?change=1", "components": None}, 20),
         e("StockItem.DesiredLevelChanged", sku, {"prima_available": 10, "buffer": 2, "buffer_rule": "default",
                                                  "desired": 8}, 20)],
        [e("StockItem.ShopifyLevelObserved", sku, {"inventory_item_id": ITEM, "available": 0, "observed_at": iso(30),
           "sync_run_id": "4b6c1ad2-9c4e-4e53-8a4f-1f5d3f0c2a11"}, 31)],
        [e("StockItem.PushRequested", sku, {"command": c1, "desired": 8, "shopify_level": 0}, 40)],
        [e("StockItem.PushConfirmed", sku, {"command_id": c1["command_id"], "quantity": 8, "previous_quantity": 0,
                                            "stale_retries": 0, "occurred_at": iso(50)}, 51)],
        # Prima drops to 4: desired 2; Shopify rejects the push
        [e("StockItem.PrimaAvailabilityRecorded", sku, {"available": 4, "change_id": 2, "source": "stock",
           "reference": f"prima://stock/WH-MAIN/{sku}?change=2", "components": None}, 60),
         e("StockItem.DesiredLevelChanged", sku, {"prima_available": 4, "buffer": 2, "buffer_rule": "default",
                                                  "desired": 2}, 60),
         e("StockItem.PushRequested", sku, {"command": c2, "desired": 2, "shopify_level": 8}, 70)],
        [e("StockItem.PushRejected", sku, {"command_id": c2["command_id"], "code": "INVALID_QUANTITY",
                                           "reason": "quantity refused"}, 80)],
        # released; the new push fails in the gateway
        [e("StockItem.PushReleased", sku, {"released_by": "cli", "previous": {
            "kind": "push_rejected", "code": "INVALID_QUANTITY", "reason": "quantity refused",
            "command_id": c2["command_id"]}}, 90),
         e("StockItem.PushRequested", sku, {"command": c3, "desired": 2, "shopify_level": 8}, 100)],
        [e("StockItem.PushFailed", sku, {"command_id": c3["command_id"], "attempts": 6, "reason": "HTTP 503"}, 110)],
        # released again; a catalogue read after the new push shows Shopify at 2 already
        [e("StockItem.PushReleased", sku, {"released_by": "cli", "previous": {
            "kind": "push_failed", "code": "gateway_gave_up", "reason": "HTTP 503", "command_id": c3["command_id"]}},
           120),
         e("StockItem.PushRequested", sku, {"command": c4, "desired": 2, "shopify_level": 8}, 130)],
        [e("StockItem.ShopifyLevelObserved", sku, {"inventory_item_id": ITEM, "available": 2, "observed_at": iso(140),
           "sync_run_id": None}, 141)],
        # a late confirmation of the fourth push, older than the read: the level stays the read's
        [e("StockItem.PushConfirmed", sku, {"command_id": c4["command_id"], "quantity": 2, "previous_quantity": 8,
                                            "stale_retries": 1, "occurred_at": iso(135)}, 150)],
    ]


COLUMNS = ("warehouse", "prima_available", "buffer", "desired", "inventory_item_id", "shopify_level", "drift",
           "state", "pushes", "pending_quantity", "exception_kind")
EXPECTED_STEPS = [
    ("WH-MAIN", None, None, None, None, None, None, "unknown", 0, None, None),
    ("WH-MAIN", 10, 2, 8, None, None, None, "not_in_shopify", 0, None, None),
    ("WH-MAIN", 10, 2, 8, ITEM, 0, -8, "drift", 0, None, None),
    ("WH-MAIN", 10, 2, 8, ITEM, 0, -8, "pending", 1, 8, None),
    ("WH-MAIN", 10, 2, 8, ITEM, 8, 0, "in_sync", 1, None, None),
    ("WH-MAIN", 4, 2, 2, ITEM, 8, 6, "pending", 2, 2, None),
    ("WH-MAIN", 4, 2, 2, ITEM, 8, 6, "exception", 2, None, "push_rejected"),
    ("WH-MAIN", 4, 2, 2, ITEM, 8, 6, "pending", 3, 2, None),
    ("WH-MAIN", 4, 2, 2, ITEM, 8, 6, "exception", 3, None, "push_failed"),
    ("WH-MAIN", 4, 2, 2, ITEM, 8, 6, "pending", 4, 2, None),
    ("WH-MAIN", 4, 2, 2, ITEM, 2, 0, "in_sync", 4, None, None),
    ("WH-MAIN", 4, 2, 2, ITEM, 2, 0, "in_sync", 4, None, None),
]


async def test_a_push_cycle_step_by_step(projection):
    db = projection.pool
    topic, sku = Topic(), "IH-CYCLE"
    steps = push_cycle(topic, sku)
    assert len(steps) == len(EXPECTED_STEPS)
    for i, (events, expected) in enumerate(zip(steps, EXPECTED_STEPS, strict=True)):
        await apply(projection, topic, *events)
        found = await row(db, sku)
        assert tuple(found[c] for c in COLUMNS) == expected, f"after step {i}: {events[-1].event_type}"
        assert found["updated_at"] == events[-1].timestamp
        assert found["last_event_version"] == events[-1].aggregate_version
        if i == 3:
            assert str(found["pending_command_id"]) == str(events[0].command.command_id)
            assert (found["last_push_at"], found["last_push_quantity"]) == (at(40), 8)
            assert str(found["last_sync_run_id"]) == "4b6c1ad2-9c4e-4e53-8a4f-1f5d3f0c2a11"
        if i == 4:
            assert (found["shopify_level_at"], found["last_confirmed_at"]) == (at(50), at(50))
        if i == 6:
            assert found["exception_reason"] == "Shopify rejected the level 2: INVALID_QUANTITY: quantity refused"
    final = await row(db, sku)
    assert (final["shopify_level_at"], final["last_confirmed_at"], final["last_sync_run_id"]) == (at(140), at(135), None)
    assert (final["prima_reference"], final["source"], final["buffer_rule"]) == (
        f"prima://stock/WH-MAIN/{sku}?change=2", "stock", "default")

    raised = await exceptions(db, sku)
    assert [(x["kind"], x["status"], x["location_id"]) for x in raised] == [
        ("push_rejected", "resolved", LOC), ("push_failed", "resolved", LOC)]
    assert [x["resolved_at"] for x in raised] == [at(90), at(120)]
    assert all(x["action"] == f"shopify-prima inventory release {sku} --location {LOC}" for x in raised)
    assert raised[0]["payload"]["code"] == "INVALID_QUANTITY" and raised[0]["payload"]["quantity"] == 2
    assert raised[1]["reason"] == "the Shopify gateway gave up after 6 attempts: HTTP 503"
    assert raised[1]["exception_id"] == steps[8][0].event_id  # the event that raised it


async def test_a_push_confirmed_clears_an_open_push_exception_and_a_new_push_exception_supersedes_the_old(projection):
    db = projection.pool
    topic, sku = Topic(), "IH-SUPERSEDE"
    steps = push_cycle(topic, sku)
    for events in steps[:7]:  # up to the rejection
        await apply(projection, topic, *events)
    c = command(9, sku, 2, 8, 85)
    failed = topic.event("StockItem.PushFailed", sku, {"command_id": c["command_id"], "attempts": 3, "reason": "x"}, 86)
    await apply(projection, topic, failed)  # one exception per StockItem: the failure replaces the rejection
    assert [(x["kind"], x["status"]) for x in await exceptions(db, sku)] == [
        ("push_rejected", "resolved"), ("push_failed", "open")]
    confirmed = topic.event("StockItem.PushConfirmed", sku, {"command_id": c["command_id"], "quantity": 2,
                                                             "previous_quantity": 8, "stale_retries": 0,
                                                             "occurred_at": iso(95)}, 96)
    await apply(projection, topic, confirmed)
    found = await row(db, sku)
    assert (found["state"], found["exception_kind"], found["shopify_level"]) == ("in_sync", None, 2)
    assert [x["status"] for x in await exceptions(db, sku)] == ["resolved", "resolved"]


async def test_a_stale_push_takes_shopifys_level_and_pending_allocations_show_in_the_desired_level(projection):
    db = projection.pool
    topic, sku = Topic(), "IH-STALE"
    steps = push_cycle(topic, sku)
    for events in steps[:4]:  # a push of 8 pending
        await apply(projection, topic, *events)
    c1 = steps[3][0].command
    e = topic.event
    await apply(projection, topic,
                e("StockItem.AllocationPending", sku, {"order_id": "1001", "reference": "1001", "units": 1}, 45),
                e("StockItem.DesiredLevelChanged", sku, {"prima_available": 10, "buffer": 2, "buffer_rule": "default",
                                                         "desired": 7, "pending_allocations": 1}, 45),
                e("StockItem.PushFoundStale", sku, {"command_id": str(c1.command_id), "shopify_level": 6,
                                                    "observed_at": iso(46)}, 47))
    found = await row(db, sku)
    assert (found["desired"], found["shopify_level"], found["shopify_level_at"]) == (7, 6, at(46))
    assert (found["pending_command_id"], found["state"], found["drift"]) == (None, "drift", -1)
    await apply(projection, topic,
                e("StockItem.AllocationCleared", sku, {"order_id": "1001", "units": 1, "reason": "allocated_by_prima"},
                  50))
    assert (await row(db, sku))["desired"] == 7


async def test_catalogue_exceptions_open_and_resolve(projection):
    db = projection.pool
    topic, sku = Topic(), "IH-CATALOG"
    e = topic.event
    await apply(projection, topic,
                e("CatalogItem.Registered", sku, {"sku": sku}, 1),
                e("CatalogItem.ShopifyVariantRecorded", sku, {"variant_id": "gid://shopify/ProductVariant/5",
                  "product_id": "gid://shopify/Product/4", "product_status": "ACTIVE", "inventory_item_id": ITEM,
                  "observed_at": iso(1)}, 2),
                e("CatalogItem.VariantWithoutPrimaItem", sku, {"reason": "no Prima item with this SKU",
                  "product_id": "gid://shopify/Product/4", "variant_id": "gid://shopify/ProductVariant/5"}, 3),
                e("CatalogItem.ProductStatusRequested", sku, {"command": {
                    "message_type": "SetProductStatus", "command_id": str(uuid5(NAMESPACE_URL, "ps1")), "sku": sku,
                    "product_id": "gid://shopify/Product/4", "status": "DRAFT", "reason": "no Prima item",
                    "issued_at": iso(3)}}, 3),
                e("CatalogItem.ProductStatusRefused", sku, {"command_id": str(uuid5(NAMESPACE_URL, "ps1")),
                                                            "reason": "product is locked"}, 4),
                e("CatalogItem.UnmappedWarehouseFound", sku, {"warehouse": "WH-NORTH", "available": 5, "change_id": 7}, 5),
                e("CatalogItem.UnmappedWarehouseFound", sku, {"warehouse": "WH-SOUTH", "available": 1, "change_id": 8}, 6))
    raised = await exceptions(db, sku)
    assert [(x["kind"], x["status"], x["location_id"]) for x in raised] == [
        ("variant_without_prima_item", "open", None), ("product_status_refused", "open", None),
        ("unmapped_warehouse", "open", None), ("unmapped_warehouse", "open", None)]
    assert raised[0]["action"] == f"create or activate the Prima item for SKU {sku}"
    assert raised[0]["payload"] == {"reason": "no Prima item with this SKU", "product_id": "gid://shopify/Product/4",
                                    "variant_id": "gid://shopify/ProductVariant/5"}
    assert "SHOPIFY_PRIMA_INVENTORY_LOCATION_MAP" in raised[2]["action"] and "WH-NORTH" in raised[2]["reason"]
    assert raised[2]["payload"] == {"warehouse": "WH-NORTH", "available": 5, "change_id": 7}
    catalog = dict(await db.fetchrow("SELECT * FROM readmodel.catalog_items WHERE sku = $1", sku))
    assert (catalog["product_status"], catalog["guard_reason"], catalog["status_requested"]) == (
        "ACTIVE", "no Prima item with this SKU", None)

    # the guard raised again (the item is inactive now) replaces the open one
    await apply(projection, topic,
                e("CatalogItem.PrimaItemRecorded", sku, {"item_id": "ITM-9", "item_type": "stock", "active": False,
                  "components": {}, "updated_at": iso(7)}, 7),
                e("CatalogItem.VariantWithoutPrimaItem", sku, {"reason": "the Prima item is inactive",
                  "product_id": "gid://shopify/Product/4", "variant_id": "gid://shopify/ProductVariant/5"}, 8))
    guard = [x for x in await exceptions(db, sku) if x["kind"] == "variant_without_prima_item"]
    assert [(x["status"], x["resolved_at"]) for x in guard] == [("resolved", at(8)), ("open", None)]

    # the item is active again; the warehouse WH-NORTH gets a location; a status change succeeds
    await apply(projection, topic,
                e("CatalogItem.PrimaItemRecorded", sku, {"item_id": "ITM-9", "item_type": "bundle", "active": True,
                  "components": {"A": 1, "B": 2}, "updated_at": iso(9)}, 9),
                e("CatalogItem.VariantGuardCleared", sku, {"item_id": "ITM-9"}, 9),
                e("StockItem.Registered", sku, {"sku": sku, "location_id": LOC2, "warehouse": "WH-NORTH"}, 10,
                  location=LOC2),
                e("CatalogItem.ProductStatusRequested", sku, {"command": {
                    "message_type": "SetProductStatus", "command_id": str(uuid5(NAMESPACE_URL, "ps2")), "sku": sku,
                    "product_id": "gid://shopify/Product/4", "status": "DRAFT", "reason": "retry",
                    "issued_at": iso(11)}}, 11),
                e("CatalogItem.ProductStatusConfirmed", sku, {"command_id": str(uuid5(NAMESPACE_URL, "ps2")),
                                                              "status": "DRAFT", "occurred_at": iso(12)}, 12))
    state = {(x["kind"], x["payload"].get("warehouse")): x["status"] for x in await exceptions(db, sku)
             if x["status"] == "open"}
    assert state == {("unmapped_warehouse", "WH-SOUTH"): "open"}
    catalog = dict(await db.fetchrow("SELECT * FROM readmodel.catalog_items WHERE sku = $1", sku))
    assert (catalog["item_id"], catalog["item_type"], catalog["active"], json.loads(catalog["components"])) == (
        "ITM-9", "bundle", True, {"A": 1, "B": 2})
    assert (catalog["product_status"], catalog["guard_reason"], catalog["status_requested"]) == ("DRAFT", None, None)
    assert (catalog["updated_at"], catalog["last_event_version"]) == (at(12), 13)
    assert await ih.exception_counts(db) == {**dict.fromkeys(ih.EXCEPTION_KINDS, 0), "unmapped_warehouse": 1}


async def test_the_same_records_twice_or_the_same_events_relayed_twice_change_nothing(projection):
    db = projection.pool
    topic, sku = Topic(), "IH-TWICE"
    steps = push_cycle(topic, sku)
    events = [e for step in steps for e in step]
    records = topic.deliveries(*events, partition=1)
    await projection.handle(records)
    before = await snapshot(db)

    await projection.handle(records)  # a redelivery: behind the stored position
    assert await snapshot(db) == before

    # the relay published them again after a crash: new offsets, same events (same versions)
    again = topic.deliveries(*events, partition=1)
    await projection.handle(again)
    after = await snapshot(db)
    assert after[:3] == before[:3]  # rows and exceptions untouched
    assert after[3] != before[3]  # only the position moved
    assert await projection.positions(db) == {1: again[-1].offset + 1}


async def test_a_batch_after_a_rebuild_elsewhere_applies_nothing_and_seeks_to_the_start(projection):
    """Another instance (the projector handling RebuildProjection) emptied the read model: the
    positions this consumer believes stored are gone, so its batch is dropped and it seeks."""
    db = projection.pool
    topic, sku = Topic(), "IH-STALE"
    first = await apply(projection, topic, topic.event("StockItem.Registered", sku, {"warehouse": "WH-MAIN"}, 1))
    later = topic.deliveries(topic.event("StockItem.PrimaAvailabilityRecorded", sku, {
        "available": 3, "change_id": 1, "source": "stock", "reference": "r", "components": None}, 2))

    await rebuild(db, InventoryHealthProjection(db), {0: 2})
    with pytest.raises(Reposition) as raised:
        await projection.handle(later)
    assert raised.value.positions == {TopicPartition(STOCK_EVENTS.name, 0): 0}
    assert await row(db, sku) == {}

    await projection.handle(first + later)  # from offset zero again
    assert ((await row(db, sku))["warehouse"], (await row(db, sku))["prima_available"]) == ("WH-MAIN", 3)
    assert await db.fetchval("SELECT finished_at IS NOT NULL FROM readmodel.rebuilds WHERE projection = $1",
                             projection.name)


async def test_a_read_model_ahead_of_its_topic_halts_until_rebuilt(projection):
    """The topic was recreated under the read model (a stored position past its end): nothing is
    applied, and the projection says how to get out."""
    db = projection.pool
    topic, sku = Topic(), "IH-AHEAD"
    await apply(projection, topic, *[e for step in push_cycle(topic, sku)[:3] for e in step])
    tp = TopicPartition(STOCK_EVENTS.name, 0)
    restarted = InventoryHealthProjection(db)
    assert await restarted.on_assign({tp}, {tp: 1}) == {tp: 4}
    assert "rebuild it with `shopify-prima replay --projection inventory_health`" in restarted.state.halted
    with pytest.raises(ProjectionHalted):
        await restarted.handle(topic.deliveries(topic.event("StockItem.PrimaAvailabilityRecorded", sku, {
            "available": 1, "change_id": 9, "source": "stock", "reference": "r", "components": None}, 5)))
    assert (await row(db, sku))["prima_available"] == 10

    await rebuild(db, restarted, {0: 1})
    assert restarted.state.halted is None
    assert await restarted.on_assign({tp}, {tp: 1}) == {tp: 0}


async def test_a_rebuild_gives_identical_rows(projection):
    db = projection.pool
    topic = Topic()
    batches = []
    for n, sku in enumerate(("IH-REBUILD-A", "IH-REBUILD-B", "IH-REBUILD-C")):
        for step in push_cycle(topic, sku)[: 12 - 3 * n]:  # three SKUs left in different states
            batches.append(topic.deliveries(*step, partition=n))
    e = topic.event
    batches.append(topic.deliveries(
        e("CatalogItem.Registered", "IH-REBUILD-A", {}, 1),
        e("CatalogItem.UnmappedWarehouseFound", "IH-REBUILD-A", {"warehouse": "WH-X", "available": 1, "change_id": 1}, 2),
        partition=0))
    for batch in batches:
        await projection.handle(batch)
    before = await snapshot(db)
    assert {r[0]: r[19] for r in before[0]} == {
        "IH-REBUILD-A": "in_sync", "IH-REBUILD-B": "exception", "IH-REBUILD-C": "pending"}
    assert await ih.health_counts(db) == {**dict.fromkeys(ih.STATES, 0), "in_sync": 1, "exception": 1, "pending": 1}
    assert await ih.health_counts(db, sku_like="IH-REBUILD-B%") == {**dict.fromkeys(ih.STATES, 0), "exception": 1}
    assert await projection.counts(db) == (await ih.health_counts(db), await ih.exception_counts(db))

    await rebuild(db, projection, dict(topic.next_offset))
    assert await snapshot(db) == ([], [], [], [])
    with pytest.raises(Reposition):  # a batch fetched before the rebuild: dropped, the consumer seeks
        await projection.handle(batches[-1])
    # a rebuild reads each partition from zero (partitions interleave differently: same rows)
    for batch in sorted(batches, key=lambda b: -b[0].partition):
        await projection.handle(batch)
    assert await snapshot(db) == before
    assert await db.fetchval("SELECT finished_at IS NOT NULL FROM readmodel.rebuilds WHERE projection = $1",
                             projection.name)


# ----------------------------------------------- events of the real aggregates, through the relay


POLICY = InventoryPolicy(location_map={"WH-MAIN": LOC, "WH-NORTH": LOC2}, rules=BufferRules(default=2))


def relayed(app: InventoryApplication, partition: int = 2) -> list[Delivery[Any]]:
    """The application's notifications as the inventory relay publishes them on the stock-events
    topic, read back from their JSON."""
    relay = Relay(dataclasses.replace(STOCK_RELAY, application=lambda _: app), settings=None, broker=None)
    out = [message for n in app.recorder.select_notifications(1, 10_000) for message in relay.messages(n)
           if message.topic == STOCK_EVENTS.name]
    return [Delivery(EVENTS.validate_json(encode(o.message)), STOCK_EVENTS.name, partition, i, o.key)
            for i, o in enumerate(out)]


async def test_the_rows_agree_with_the_aggregates(projection):
    db = projection.pool
    app = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    sku, ghost = f"IH-AGG-{uuid4().hex[:6]}", f"IH-GHOST-{uuid4().hex[:6]}"

    def observed(name: str, available: int, seconds: float):
        return variant(name, available, at=at(seconds), item=ITEM, levels=((LOC, available), (LOC2, 1)))

    def pending(location: str):
        return app.find_stock(sku, location).pending

    app.handle([item(sku, at=T), observed(sku, 0, 1), observed(ghost, 3, 1), stock(sku, 10, 1),
                stock(sku, 1, 1, warehouse="WH-NORTH"), stock(sku, 4, 1, warehouse="WH-EAST")], POLICY, at(2))
    app.handle([confirmed(pending(LOC), at(3)), stock(sku, 5, 2)], POLICY, at(4))
    app.handle([rejected(pending(LOC), code="INVALID", reason="no"), stock(sku, 7, 2, warehouse="WH-NORTH")],
               POLICY, at(5))
    app.handle([parked(pending(LOC2))], POLICY, at(6))
    app.handle([release(sku, LOC2, at=at(7), by="cli")], POLICY, at(7))
    await projection.handle(relayed(app))

    for location in (LOC, LOC2):
        aggregate = app.find_stock(sku, location)
        found = await row(db, sku, location)
        assert (found["warehouse"], found["prima_available"], found["prima_reference"], found["buffer"],
                found["buffer_rule"], found["desired"], found["inventory_item_id"], found["shopify_level"],
                found["shopify_level_at"], found["pushes"]) == (
            aggregate.warehouse, aggregate.prima_available, aggregate.prima_reference, aggregate.buffer,
            aggregate.buffer_rule, aggregate.desired, aggregate.inventory_item_id, aggregate.shopify_level,
            aggregate.shopify_level_at, aggregate.pushes), location
        assert found["pending_command_id"] == (aggregate.pending.command_id if aggregate.pending else None)
        assert found["exception_kind"] == (aggregate.exception.kind if aggregate.exception else None)
        assert found["last_event_version"] == aggregate.version
    assert (await row(db, sku, LOC))["state"] == "exception"
    assert (await row(db, sku, LOC2))["state"] == "pending"  # released: pushed again
    kinds = {(x["kind"], x["location_id"], x["status"]) for x in await exceptions(db, sku)}
    assert kinds == {("push_rejected", LOC, "open"), ("push_failed", LOC2, "resolved"),
                     ("unmapped_warehouse", None, "open")}
    [guard] = await exceptions(db, ghost)
    assert (guard["kind"], guard["status"], guard["reason"]) == (
        "variant_without_prima_item", "open",
        f"Shopify sells {ghost} (variant gid://shopify/ProductVariant/{ghost}) but no Prima item with this SKU")
    catalog = await db.fetchrow("SELECT * FROM readmodel.catalog_items WHERE sku = $1", sku)
    aggregate = app.find_catalog(sku)
    assert (catalog["item_id"], catalog["active"], catalog["variant_id"], catalog["product_status"]) == (
        aggregate.item["item_id"], aggregate.item["active"], aggregate.variant["variant_id"],
        aggregate.variant["product_status"])
    app.close()


async def test_a_refused_product_status_from_the_aggregate_is_an_exception(projection):
    db = projection.pool
    app = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    policy = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2), draft_unpublished=True)
    sku = f"IH-DRAFT-{uuid4().hex[:6]}"
    app.handle([variant(sku, 3, at=at(1), item=ITEM)], policy, at(1))
    status = app.find_catalog(sku).status_command
    app.handle([ProductStatusRefusedByShopify(command_id=status.command_id, sku=sku, product_id=status.product_id,
                                              reason="locked")], policy, at(2))
    await projection.handle(relayed(app))
    assert [(x["kind"], x["status"]) for x in await exceptions(db, sku)] == [
        ("variant_without_prima_item", "open"), ("product_status_refused", "open")]
    found = await row(db, sku)
    assert (found["state"], found["shopify_level"], found["inventory_item_id"]) == ("unknown", 3, ITEM)
    app.close()


# ------------------------------------------------------------------------- through a consumer


async def test_undecodable_stock_events_are_dead_lettered_and_the_rest_applied(projection, settings):
    """The platform's one bad-message path (FastStream's test broker, the real read model): an
    unknown event type, a body that is not JSON and an event lacking what its type promises are
    dead-lettered with their error; the good events of the same batch are applied."""
    db = projection.pool
    topic, sku = Topic(), "IH-UNKNOWN"
    registered = topic.event("StockItem.Registered", sku, {"warehouse": "WH-MAIN"}, 1)
    fine = topic.event("StockItem.PrimaAvailabilityRecorded", sku, {
        "available": 4, "change_id": 2, "source": "stock", "reference": "r", "components": None}, 4)
    unknown = {**json.loads(encode(registered)), "event_type": "StockItem.SomethingNew", "aggregate_version": 2}
    broken = {k: v for k, v in json.loads(encode(fine)).items() if k != "available"}
    group = "projector.inventory_health-test"
    before = metric("shopify_prima_messages_dead_lettered_total", group=group, topic=STOCK_EVENTS.name,
                    reason="undecodable")

    broker = make_broker(settings, "inventory-health-test")
    Consumer(broker, settings, group=group, topics=[STOCK_EVENTS], accepts=projection.accepts,
             handler=projection.handle, operations=False, on_assign=projection.on_assign)
    letters: list[dict] = []

    @broker.subscriber(DEAD_LETTERS.name)
    async def dead_letter(body: dict) -> None:
        letters.append(body)

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            encode(registered), json.dumps(unknown).encode(), b"not json at all", json.dumps(broken).encode(),
            encode(fine), topic=STOCK_EVENTS.name, headers=headers_for(registered))

    assert sorted(letter["reason"] for letter in letters) == ["undecodable"] * 3
    assert {letter["group"] for letter in letters} == {group}
    assert any("SomethingNew" in letter["error"] for letter in letters)
    assert metric("shopify_prima_messages_dead_lettered_total", group=group, topic=STOCK_EVENTS.name,
                  reason="undecodable") == before + 3
    found = await row(db, sku)
    assert (found["warehouse"], found["prima_available"], found["last_event_version"]) == ("WH-MAIN", 4, 2)


async def test_the_projection_follows_its_topic_on_kafka_and_refuses_to_run_ahead_of_it(
        projection, settings, kafka_bootstrap, own_topic):
    """Its own events on a topic of its own, read by a real consumer group into the throwaway
    database; the read model's gauges set from its declaration; then a stored position past the
    topic's end stops the projection until it is rebuilt."""
    db = projection.pool
    spec = await own_topic("stock-events", like=STOCK_EVENTS)

    class OnOwnTopic(InventoryHealthProjection):
        topic = spec

    local = settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap, "handler_backoff_initial_seconds": 0.1,
                                        "handler_backoff_max_seconds": 0.5})
    topic = Topic()
    skus = [f"IH-KAFKA-{n}-{uuid4().hex[:6]}" for n in range(3)]
    events = [e for n, sku in enumerate(skus) for step in push_cycle(topic, sku)[: 12 - 3 * n] for e in step]
    producer = make_broker(local, "inventory-health-test")
    await producer.start()
    try:
        await publish_all(producer, [Outgoing(spec.name, sku_key(e.sku), e) for e in events])
    finally:
        await producer.stop()
    ends = {tp.partition: offset for tp, offset in (await end_offsets(kafka_bootstrap, spec.name)).items()}
    assert sum(ends.values()) == len(events)

    async def run(projector: InventoryHealthProjection, group: str):
        broker = make_broker(local, group)
        Consumer(broker, local, group=group, topics=[spec], accepts=projector.accepts, handler=projector.handle,
                 operations=False, on_assign=projector.on_assign)
        await broker.start()
        return broker

    following = OnOwnTopic(db)
    broker = await run(following, f"test-inventory-health-{uuid4().hex[:8]}")
    try:
        async def caught_up() -> bool:
            stored = await following.positions(db)
            return all(stored.get(p, 0) >= end for p, end in ends.items())

        await eventually(caught_up, "the projection catching up with its topic", 60)
    finally:
        await broker.stop()
    assert {(await row(db, s))["state"] for s in skus} == {"in_sync", "exception", "pending"}

    projector = Projector(db, names=[])
    projector.projections = {following.name: following}
    projector.dirty = {following.name}
    await projector.update_gauges()
    assert metric("shopify_prima_read_model_rows", read_model="inventory_health", state="in_sync") == 1
    assert metric("shopify_prima_read_model_rows", read_model="inventory_health", state="drift") == 0
    assert metric("shopify_prima_projection_halted", projection="inventory_health") == 0

    await db.execute("UPDATE readmodel.positions SET next_offset = next_offset + 5 WHERE projection = $1 AND "
                     "topic = $2", following.name, spec.name)
    halted = OnOwnTopic(db)
    broker = await run(halted, f"test-inventory-health-{uuid4().hex[:8]}")
    try:
        async def is_halted() -> bool:
            return halted.state.halted is not None

        await eventually(is_halted, "the projection halting", 60)
        projector.projections = {halted.name: halted}
        projector.dirty = {halted.name}
        await projector.update_gauges()
        assert metric("shopify_prima_projection_halted", projection="inventory_health") == 1
    finally:
        await broker.stop()
    assert f"ahead of {spec.name}" in halted.state.halted
