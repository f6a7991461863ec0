"""The inventory-health projection on real PostgreSQL: StockEvent records as they come off the
stock-events topic, applied with `apply_batch` (positions in the same transaction).

Each test module runs in a throwaway database on the test server (created here, dropped at the
end), so nothing touches the running stack's read model or its positions, and `reset` can be
called freely. Every test starts from an empty read model.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse, urlunparse
from uuid import NAMESPACE_URL, uuid4, uuid5

import asyncpg
import pytest
from prometheus_client import REGISTRY

from contracts.inventory import (
    InventoryLevelConfirmed,
    InventoryLevelFailed,
    InventoryLevelRejected,
    PrimaItemChanged,
    PrimaStockLevel,
    ProductStatusRejected,
    ShopifyLevel,
    ShopifyVariantObserved,
    StockEvent,
)
from contracts.topics import STOCK_EVENTS
from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from projections import inventory_health as ih
from projections.store import create_read_model_schema

pytestmark = pytest.mark.integration

LOC = "gid://shopify/Location/1"
LOC2 = "gid://shopify/Location/2"
ITEM = "gid://shopify/InventoryItem/77"
T = datetime(2026, 3, 2, 9, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).isoformat()


# ------------------------------------------------------------------------------ scratch database


async def create_scratch_database(server_url: str, label: str) -> str:
    """A new empty database on the test server (the same server, so no new process)."""
    name = f"shopify_prima_test_{label}_{os.getpid()}_{uuid4().hex[:6]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        pytest.fail(f"the test user may not CREATE DATABASE on {urlparse(server_url).netloc}; these tests need a "
                    "throwaway database so as not to touch the running stack's read model")
    finally:
        await admin.close()
    return urlunparse(urlparse(server_url)._replace(path=f"/{name}"))


async def drop_scratch_database(server_url: str, url: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urlparse(url).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def scratch_url(database_url):
    url = await create_scratch_database(database_url, "ih")
    conn = await asyncpg.connect(url)
    await create_read_model_schema(conn)
    await conn.close()
    yield url
    await drop_scratch_database(database_url, url)


@pytest.fixture
async def conn(scratch_url):
    conn = await asyncpg.connect(scratch_url)
    async with conn.transaction():
        await ih.reset(conn)
    yield conn
    await conn.close()


# ------------------------------------------------------------------------- events, as on Kafka


class Topic:
    """Stock events of one test, numbered as the relay numbers them, on three partitions."""

    def __init__(self) -> None:
        self.versions: dict[uuid.UUID, int] = {}
        self.next_offset = {0: 0, 1: 0, 2: 0}
        self.notification = 0

    def event(self, event_type: str, sku: str, data: dict, seconds: float, location: str | None = LOC) -> StockEvent:
        aggregate = event_type.split(".")[0]
        location = location if aggregate == "StockItem" else None
        aggregate_id = uuid5(NAMESPACE_URL, f"{aggregate}/{sku}@{location}")
        version = self.versions.get(aggregate_id, 0) + 1
        self.versions[aggregate_id] = version
        self.notification += 1
        return StockEvent(event_id=uuid5(aggregate_id, f"event/{version}"), event_type=event_type, sku=sku,
                          location_id=location, aggregate_id=aggregate_id, aggregate_version=version,
                          timestamp=at(seconds), notification_id=self.notification, data=data)

    def records(self, *events: StockEvent | bytes, partition: int = 0) -> list[tuple[int, int, bytes]]:
        out = []
        for e in events:
            out.append((partition, self.next_offset[partition],
                        e if isinstance(e, bytes) else e.model_dump_json().encode()))
            self.next_offset[partition] += 1
        return out


def command(n: int, sku: str, quantity: int, change_from: int | None, seconds: float, location: str = LOC) -> dict:
    return {"message_type": "SetInventoryLevel", "command_id": str(uuid5(NAMESPACE_URL, f"{sku}/{location}/cmd/{n}")),
            "sku": sku, "inventory_item_id": ITEM, "location_id": location, "quantity": quantity,
            "change_from_quantity": change_from, "reference_document_uri": f"prima://stock/WH-MAIN/{sku}?change={n}",
            "issued_at": iso(seconds)}


async def apply(conn, topic: Topic, *events: StockEvent | bytes, partition: int = 0):
    records = topic.records(*events, partition=partition)
    assert await ih.apply_batch(conn, records, None)
    return records


async def row(conn, sku: str, location: str = LOC) -> dict:
    found = await conn.fetchrow("SELECT * FROM readmodel.inventory_health WHERE sku = $1 AND location_id = $2",
                                sku, location)
    return dict(found) if found else {}


async def exceptions(conn, sku: str) -> list[dict]:
    rows = await conn.fetch(
        "SELECT * FROM readmodel.inventory_exceptions WHERE sku = $1 ORDER BY raised_at, exception_id", sku)
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


async def snapshot(conn) -> tuple:
    tables = []
    for table, key in (("readmodel.inventory_health", "sku, location_id"), ("readmodel.catalog_items", "sku"),
                       ("readmodel.inventory_exceptions", "exception_id")):
        tables.append([tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {key}")])
    tables.append([tuple(r) for r in await conn.fetch(
        "SELECT * FROM readmodel.positions WHERE projection = $1 ORDER BY kafka_partition", ih.NAME)])
    return tuple(tables)


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------------------- the push cycle


def push_cycle(topic: Topic, sku: str) -> list[list[StockEvent]]:
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
        [e("StockItem.PushReleased", sku, {"released_by": "cli", "previous": {"kind": "push_rejected"}}, 90),
         e("StockItem.PushRequested", sku, {"command": c3, "desired": 2, "shopify_level": 8}, 100)],
        [e("StockItem.PushFailed", sku, {"command_id": c3["command_id"], "attempts": 6, "reason": "HTTP 503"}, 110)],
        # released again; a catalogue read after the new push shows Shopify at 2 already
        [e("StockItem.PushReleased", sku, {"released_by": "cli", "previous": {"kind": "push_failed"}}, 120),
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


async def test_a_push_cycle_step_by_step(conn):
    topic, sku = Topic(), "IH-CYCLE"
    steps = push_cycle(topic, sku)
    assert len(steps) == len(EXPECTED_STEPS)
    for i, (events, expected) in enumerate(zip(steps, EXPECTED_STEPS, strict=True)):
        await apply(conn, topic, *events)
        found = await row(conn, sku)
        assert tuple(found[c] for c in COLUMNS) == expected, f"after step {i}: {events[-1].event_type}"
        assert found["updated_at"] == events[-1].timestamp
        assert found["last_event_version"] == events[-1].aggregate_version
        if i == 3:
            assert str(found["pending_command_id"]) == events[0].data["command"]["command_id"]
            assert (found["last_push_at"], found["last_push_quantity"]) == (at(40), 8)
            assert str(found["last_sync_run_id"]) == "4b6c1ad2-9c4e-4e53-8a4f-1f5d3f0c2a11"
        if i == 4:
            assert (found["shopify_level_at"], found["last_confirmed_at"]) == (at(50), at(50))
        if i == 6:
            assert found["exception_reason"] == "Shopify rejected the level 2: INVALID_QUANTITY: quantity refused"
    final = await row(conn, sku)
    assert (final["shopify_level_at"], final["last_confirmed_at"], final["last_sync_run_id"]) == (at(140), at(135), None)
    assert (final["prima_reference"], final["source"], final["buffer_rule"]) == (
        f"prima://stock/WH-MAIN/{sku}?change=2", "stock", "default")

    raised = await exceptions(conn, sku)
    assert [(x["kind"], x["status"], x["location_id"]) for x in raised] == [
        ("push_rejected", "resolved", LOC), ("push_failed", "resolved", LOC)]
    assert [x["resolved_at"] for x in raised] == [at(90), at(120)]
    assert all(x["action"] == f"shopify-prima inventory release {sku} --location {LOC}" for x in raised)
    assert raised[0]["payload"]["code"] == "INVALID_QUANTITY" and raised[0]["payload"]["quantity"] == 2
    assert raised[1]["reason"] == "the Shopify gateway gave up after 6 attempts: HTTP 503"
    assert raised[1]["exception_id"] == steps[8][0].event_id  # the event that raised it


async def test_a_push_confirmed_clears_an_open_push_exception_and_a_new_push_exception_supersedes_the_old(conn):
    topic, sku = Topic(), "IH-SUPERSEDE"
    steps = push_cycle(topic, sku)
    for events in steps[:7]:  # up to the rejection
        await apply(conn, topic, *events)
    c = command(9, sku, 2, 8, 85)
    failed = topic.event("StockItem.PushFailed", sku, {"command_id": c["command_id"], "attempts": 3, "reason": "x"}, 86)
    await apply(conn, topic, failed)  # one exception per StockItem: the failure replaces the rejection
    assert [(x["kind"], x["status"]) for x in await exceptions(conn, sku)] == [
        ("push_rejected", "resolved"), ("push_failed", "open")]
    confirmed = topic.event("StockItem.PushConfirmed", sku, {"command_id": c["command_id"], "quantity": 2,
                                                             "previous_quantity": 8, "stale_retries": 0,
                                                             "occurred_at": iso(95)}, 96)
    await apply(conn, topic, confirmed)
    found = await row(conn, sku)
    assert (found["state"], found["exception_kind"], found["shopify_level"]) == ("in_sync", None, 2)
    assert [x["status"] for x in await exceptions(conn, sku)] == ["resolved", "resolved"]


async def test_catalogue_exceptions_open_and_resolve(conn):
    topic, sku = Topic(), "IH-CATALOG"
    e = topic.event
    await apply(conn, topic,
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
    raised = await exceptions(conn, sku)
    assert [(x["kind"], x["status"], x["location_id"]) for x in raised] == [
        ("variant_without_prima_item", "open", None), ("product_status_refused", "open", None),
        ("unmapped_warehouse", "open", None), ("unmapped_warehouse", "open", None)]
    assert raised[0]["action"] == f"create or activate the Prima item for SKU {sku}"
    assert raised[0]["payload"] == {"reason": "no Prima item with this SKU", "product_id": "gid://shopify/Product/4",
                                    "variant_id": "gid://shopify/ProductVariant/5"}
    assert "SHOPIFY_PRIMA_INVENTORY_LOCATION_MAP" in raised[2]["action"] and "WH-NORTH" in raised[2]["reason"]
    assert raised[2]["payload"] == {"warehouse": "WH-NORTH", "available": 5, "change_id": 7}
    catalog = dict(await conn.fetchrow("SELECT * FROM readmodel.catalog_items WHERE sku = $1", sku))
    assert (catalog["product_status"], catalog["guard_reason"], catalog["status_requested"]) == (
        "ACTIVE", "no Prima item with this SKU", None)

    # the guard raised again (the item is inactive now) replaces the open one
    await apply(conn, topic,
                e("CatalogItem.PrimaItemRecorded", sku, {"item_id": "ITM-9", "item_type": "stock", "active": False,
                  "components": {}, "updated_at": iso(7)}, 7),
                e("CatalogItem.VariantWithoutPrimaItem", sku, {"reason": "the Prima item is inactive",
                  "product_id": "gid://shopify/Product/4", "variant_id": "gid://shopify/ProductVariant/5"}, 8))
    guard = [x for x in await exceptions(conn, sku) if x["kind"] == "variant_without_prima_item"]
    assert [(x["status"], x["resolved_at"]) for x in guard] == [("resolved", at(8)), ("open", None)]

    # the item is active again; the warehouse WH-NORTH gets a location; a status change succeeds
    await apply(conn, topic,
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
    state = {(x["kind"], x["payload"].get("warehouse")): x["status"] for x in await exceptions(conn, sku)
             if x["status"] == "open"}
    assert state == {("unmapped_warehouse", "WH-SOUTH"): "open"}
    catalog = dict(await conn.fetchrow("SELECT * FROM readmodel.catalog_items WHERE sku = $1", sku))
    assert (catalog["item_id"], catalog["item_type"], catalog["active"], json.loads(catalog["components"])) == (
        "ITM-9", "bundle", True, {"A": 1, "B": 2})
    assert (catalog["product_status"], catalog["guard_reason"], catalog["status_requested"]) == ("DRAFT", None, None)
    assert (catalog["updated_at"], catalog["last_event_version"]) == (at(12), 13)
    assert await ih.exception_counts(conn) == {**dict.fromkeys(ih.EXCEPTION_KINDS, 0), "unmapped_warehouse": 1}


async def test_the_same_records_twice_or_the_same_events_relayed_twice_change_nothing(conn):
    topic, sku = Topic(), "IH-TWICE"
    steps = push_cycle(topic, sku)
    events = [e for step in steps for e in step]
    records = topic.records(*events, partition=1)
    assert await ih.apply_batch(conn, records, None)
    before = await snapshot(conn)

    assert await ih.apply_batch(conn, records, None)  # a redelivery: behind the stored position
    assert await snapshot(conn) == before

    # the relay published them again after a crash: new offsets, same events
    again = topic.records(*events, partition=1)
    assert await ih.apply_batch(conn, again, None)
    after = await snapshot(conn)
    assert after[:3] == before[:3]  # rows and exceptions untouched
    assert after[3] != before[3]  # only the position moved
    assert await ih.positions(conn) == {1: again[-1][1] + 1}


async def test_a_stale_expected_position_applies_nothing(conn):
    topic, sku = Topic(), "IH-STALE"
    first = topic.records(topic.event("StockItem.Registered", sku, {"sku": sku, "location_id": LOC,
                                                                    "warehouse": "WH-MAIN"}, 1))
    assert await ih.apply_batch(conn, first, {0: 0})
    later = topic.records(topic.event("StockItem.PrimaAvailabilityRecorded", sku, {
        "available": 3, "change_id": 1, "source": "stock", "reference": "r", "components": None}, 2))
    assert not await ih.apply_batch(conn, later, {0: 0})  # the projector thinks it is at 0: a rebuild ran
    assert (await row(conn, sku))["prima_available"] is None
    assert await ih.apply_batch(conn, later, {0: 1})
    assert (await row(conn, sku))["prima_available"] == 3


async def test_unknown_event_types_and_undecodable_messages_are_counted_and_skipped(conn):
    topic, sku = Topic(), "IH-UNKNOWN"
    registered = topic.event("StockItem.Registered", sku, {"sku": sku, "location_id": LOC, "warehouse": "WH-MAIN"}, 1)
    unknown = json.loads(topic.event("StockItem.Registered", sku, {}, 2).model_dump_json())
    unknown["event_type"] = "StockItem.SomethingNew"
    ignored_before = counter("shopify_prima_projection_events_ignored_total", projection=ih.NAME,
                             event_type="StockItem.SomethingNew")
    undecodable_before = counter("shopify_prima_messages_undecodable_total", topic=STOCK_EVENTS.name)
    records = await apply(conn, topic, registered, json.dumps(unknown).encode(), b"not json at all")
    assert counter("shopify_prima_projection_events_ignored_total", projection=ih.NAME,
                   event_type="StockItem.SomethingNew") == ignored_before + 1
    assert counter("shopify_prima_messages_undecodable_total", topic=STOCK_EVENTS.name) == undecodable_before + 1
    assert (await row(conn, sku))["warehouse"] == "WH-MAIN"
    assert await ih.positions(conn) == {0: records[-1][1] + 1}

    # a known type whose data lacks what the type promises: skipped, the row as it was
    broken = topic.event("StockItem.PrimaAvailabilityRecorded", sku, {"change_id": 1}, 3)
    fine = topic.event("StockItem.PrimaAvailabilityRecorded", sku, {"available": 4, "change_id": 2, "source": "stock",
                                                                    "reference": "r", "components": None}, 4)
    await apply(conn, topic, broken)
    assert counter("shopify_prima_messages_undecodable_total", topic=STOCK_EVENTS.name) == undecodable_before + 2
    assert ((await row(conn, sku))["prima_available"], (await row(conn, sku))["last_event_version"]) == (None, 1)
    await apply(conn, topic, fine)
    assert ((await row(conn, sku))["prima_available"], (await row(conn, sku))["last_event_version"]) == (4, 4)


async def test_a_rebuild_gives_identical_rows(conn):
    topic = Topic()
    batches = []
    for n, sku in enumerate(("IH-REBUILD-A", "IH-REBUILD-B", "IH-REBUILD-C")):
        for step in push_cycle(topic, sku)[: 12 - 3 * n]:  # three SKUs left in different states
            batches.append(topic.records(*step, partition=n))
    e = topic.event
    batches.append(topic.records(
        e("CatalogItem.Registered", "IH-REBUILD-A", {"sku": "IH-REBUILD-A"}, 1),
        e("CatalogItem.UnmappedWarehouseFound", "IH-REBUILD-A", {"warehouse": "WH-X", "available": 1, "change_id": 1}, 2),
        partition=0))
    for batch in batches:
        assert await ih.apply_batch(conn, batch, None)
    before = await snapshot(conn)
    assert {r[0]: r[19] for r in before[0]} == {
        "IH-REBUILD-A": "in_sync", "IH-REBUILD-B": "exception", "IH-REBUILD-C": "pending"}
    assert await ih.health_counts(conn) == {**dict.fromkeys(ih.STATES, 0), "in_sync": 1, "exception": 1, "pending": 1}
    assert await ih.health_counts(conn, sku_like="IH-REBUILD-B%") == {**dict.fromkeys(ih.STATES, 0), "exception": 1}

    async with conn.transaction():
        await ih.reset(conn)
    assert await snapshot(conn) == ([], [], [], [])
    # a rebuild reads each partition from zero (partitions interleave differently: same rows)
    for batch in sorted(batches, key=lambda b: -b[0][0]):
        assert await ih.apply_batch(conn, batch, None)
    assert await snapshot(conn) == before


# ----------------------------------------------- events of the real aggregates, through the relay


POLICY = InventoryPolicy(location_map={"WH-MAIN": LOC, "WH-NORTH": LOC2}, rules=BufferRules(default=2))


def relayed(app: InventoryApplication, after: int) -> tuple[list[tuple[int, int, bytes]], int]:
    """The application's new notifications as the inventory relay publishes them."""
    from services.outbox_relay import InventoryRelay

    relay = InventoryRelay.__new__(InventoryRelay)  # no broker, no database: only its message mapping
    relay.app, relay.keys = app, OrderedDict()
    values, last = [], after
    for notification in app.recorder.select_notifications(after + 1, 10_000):
        for topic, _, value, _ in relay.messages(notification, app.mapper.to_domain_event(notification)):
            if topic == STOCK_EVENTS.name:
                values.append(value)
        last = notification.id
    return [(2, i, v) for i, v in enumerate(values)], last


async def test_the_rows_agree_with_the_aggregates(conn):
    app = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    sku, ghost = f"IH-AGG-{uuid4().hex[:6]}", f"IH-GHOST-{uuid4().hex[:6]}"

    def observed(name: str, available: int, seconds: float) -> ShopifyVariantObserved:
        return ShopifyVariantObserved(
            sku=name, variant_id=f"gid://shopify/ProductVariant/{name}", product_id=f"gid://shopify/Product/{name}",
            product_status="ACTIVE", inventory_item_id=ITEM, observed_at=at(seconds), sync_run_id=uuid4(),
            levels=(ShopifyLevel(location_id=LOC, available=available), ShopifyLevel(location_id=LOC2, available=1)))

    def pending(location: str) -> dict:
        return app.find_stock(sku, location).pending

    app.handle([PrimaItemChanged(sku=sku, item_id="ITM-A", description=sku, item_type="stock", active=True,
                                 updated_at=T, polled_at=T),
                observed(sku, 0, 1), observed(ghost, 3, 1),
                PrimaStockLevel(sku=sku, warehouse="WH-MAIN", available=10, change_id=1, changed_at=T, polled_at=T),
                PrimaStockLevel(sku=sku, warehouse="WH-NORTH", available=1, change_id=1, changed_at=T, polled_at=T),
                PrimaStockLevel(sku=sku, warehouse="WH-EAST", available=4, change_id=1, changed_at=T, polled_at=T)],
               POLICY, at(2))
    first = pending(LOC)
    app.handle([InventoryLevelConfirmed(command_id=first["command_id"], sku=sku, inventory_item_id=ITEM,
                                        location_id=LOC, quantity=8, previous_quantity=0, occurred_at=at(3)),
                PrimaStockLevel(sku=sku, warehouse="WH-MAIN", available=5, change_id=2, changed_at=T, polled_at=T)],
               POLICY, at(4))
    second = pending(LOC)
    app.handle([InventoryLevelRejected(command_id=second["command_id"], sku=sku, location_id=LOC,
                                       code="INVALID", reason="no", occurred_at=at(5)),
                PrimaStockLevel(sku=sku, warehouse="WH-NORTH", available=7, change_id=2, changed_at=T, polled_at=T)],
               POLICY, at(5))
    north = pending(LOC2)
    app.handle([InventoryLevelFailed(command_id=north["command_id"], sku=sku, location_id=LOC2, attempts=6,
                                     reason="HTTP 503", occurred_at=at(6))], POLICY, at(6))
    app.release(sku, LOC2, "cli", POLICY, at(7))
    records, _ = relayed(app, 0)
    assert await ih.apply_batch(conn, records, None)

    for location in (LOC, LOC2):
        aggregate = app.find_stock(sku, location)
        found = await row(conn, sku, location)
        assert (found["warehouse"], found["prima_available"], found["prima_reference"], found["buffer"],
                found["buffer_rule"], found["desired"], found["inventory_item_id"], found["shopify_level"],
                found["shopify_level_at"], found["pushes"]) == (
            aggregate.warehouse, aggregate.prima_available, aggregate.prima_reference, aggregate.buffer,
            aggregate.buffer_rule, aggregate.desired, aggregate.inventory_item_id, aggregate.shopify_level,
            aggregate.shopify_level_at, aggregate.pushes), location
        assert (str(found["pending_command_id"]) if found["pending_command_id"] else None) == (
            aggregate.pending["command_id"] if aggregate.pending else None)
        assert found["exception_kind"] == (aggregate.exception["kind"] if aggregate.exception else None)
        assert found["last_event_version"] == aggregate.version
    assert (await row(conn, sku, LOC))["state"] == "exception"
    assert (await row(conn, sku, LOC2))["state"] == "pending"  # released: pushed again
    kinds = {(x["kind"], x["location_id"], x["status"]) for x in await exceptions(conn, sku)}
    assert kinds == {("push_rejected", LOC, "open"), ("push_failed", LOC2, "resolved"),
                     ("unmapped_warehouse", None, "open")}
    [guard] = await exceptions(conn, ghost)
    assert (guard["kind"], guard["status"], guard["reason"]) == (
        "variant_without_prima_item", "open", f"Shopify sells {ghost} (variant gid://shopify/ProductVariant/{ghost}) "
                                              "but no Prima item with this SKU")
    catalog = await conn.fetchrow("SELECT * FROM readmodel.catalog_items WHERE sku = $1", sku)
    aggregate = app.find_catalog(sku)
    assert (catalog["item_id"], catalog["active"], catalog["variant_id"], catalog["product_status"]) == (
        aggregate.item["item_id"], aggregate.item["active"], aggregate.variant["variant_id"],
        aggregate.variant["product_status"])
    app.close()


async def test_a_refused_product_status_from_the_aggregate_is_an_exception(conn):
    app = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    policy = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2), draft_unpublished=True)
    sku = f"IH-DRAFT-{uuid4().hex[:6]}"
    app.handle([ShopifyVariantObserved(sku=sku, variant_id="gid://shopify/ProductVariant/1",
                                       product_id="gid://shopify/Product/1", product_status="ACTIVE",
                                       inventory_item_id=ITEM, levels=(ShopifyLevel(location_id=LOC, available=3),),
                                       observed_at=at(1))], policy, at(1))
    status = app.find_catalog(sku).status_command
    app.handle([ProductStatusRejected(command_id=status["command_id"], sku=sku, product_id="gid://shopify/Product/1",
                                      reason="locked", occurred_at=at(2))], policy, at(2))
    records, _ = relayed(app, 0)
    assert await ih.apply_batch(conn, records, None)
    assert [(x["kind"], x["status"]) for x in await exceptions(conn, sku)] == [
        ("variant_without_prima_item", "open"), ("product_status_refused", "open")]
    found = await row(conn, sku)
    assert (found["state"], found["shopify_level"], found["inventory_item_id"]) == ("unknown", 3, ITEM)
    app.close()


# ------------------------------------------------------------------- the projector runs both


async def test_the_projector_follows_both_topics_and_refuses_to_run_ahead_of_one(scratch_url, settings,
                                                                                  kafka_bootstrap, conn):
    """The real topics (read only) into the throwaway database: each projection with its own
    consumer and positions; a stored position past a topic's end stops the projector."""
    import asyncio

    from projections import order_sync
    from services import projector

    local = settings.model_copy(update={"database_url": scratch_url, "kafka_bootstrap": kafka_bootstrap})
    async with conn.transaction():
        await order_sync.reset(conn)
    ends = {}
    for projection in (order_sync, ih):
        consumer, partitions = await projector._consumer(local, projection.TOPIC)
        ends[projection.NAME] = {tp.partition: off for tp, off in (await consumer.end_offsets(partitions)).items()}
        await consumer.stop()

    stop = asyncio.Event()
    task = asyncio.create_task(projector.run_projector(local, stop))
    deadline = asyncio.get_running_loop().time() + 120
    while asyncio.get_running_loop().time() < deadline:
        done = {order_sync.NAME: await order_sync.positions(conn), ih.NAME: await ih.positions(conn)}
        if all(done[name].get(p, 0) >= end for name, by in ends.items() for p, end in by.items()):
            break
        assert not task.done(), task.exception()
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"the projector did not catch up with {ends}")
    stop.set()
    await asyncio.wait_for(task, 30)
    assert REGISTRY.get_sample_value("shopify_prima_inventory_levels", {"state": "drift"}) is not None

    await conn.execute("INSERT INTO readmodel.positions VALUES ($1, $2, 0, $3) ON CONFLICT "
                       "(projection, topic, kafka_partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
                       ih.NAME, ih.TOPIC, ends[ih.NAME].get(0, 0) + 5)
    with pytest.raises(SystemExit, match="inventory_health is ahead of shopify-prima.stock-events.v1.*"
                                         "replay --projection inventory_health"):
        await projector.run_projector(local, asyncio.Event())
