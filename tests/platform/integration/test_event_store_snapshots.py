"""Snapshots on the real PostgreSQL event store (issue 8): `services.setup` creates the snapshot
tables; a batch loads its aggregates from their latest snapshots in two queries, reading only
the events after them, into the same state as a replay of every event; services whose store has
no snapshot table yet (CREATE_TABLE=n, setup not run since) load and save as before; the
notification log, which the relays replay to rebuild the read models, holds the events only."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from time import monotonic

import psycopg

from contracts.topics import DEAD_LETTERS
from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from domain.inventory.domainmodel import StockItem
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import Order
from domain.shared.application import MISSING_TABLE_RECHECK_SECONDS
from domain.shared.snapshots import same_state, state_of
from services.inventory.outbox import STOCK_RELAY
from services.platform.outbox import Relay
from services.platform.settings import Settings
from services.setup import create_schemas
from tests.inventory.builders import LOC, stock, variant
from tests.orders.builders import ITEMS, NOW, delivery, us_tax_exclusive

POLICY = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2))
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def tables(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema])}


def new_schema(url: str) -> str:
    schema = f"es_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema


def env(url: str, schema: str, create_tables: bool, **settings: int) -> dict[str, str]:
    return Settings(database_url=url, event_store_schema=schema, **settings).eventsourcing_env(
        create_tables=create_tables)


def busy_skus(app: InventoryApplication, prefix: str, count: int, changes: int) -> list[str]:
    """`count` SKUs sold in Shopify, each with `changes` Prima stock changes (a batch per round)."""
    skus = [f"{prefix}-{i}" for i in range(count)]
    app.handle([variant(sku, 0, item=f"gid://shopify/InventoryItem/{i}") for i, sku in enumerate(skus)], POLICY, T0)
    for change in range(1, changes + 1):
        app.handle([stock(sku, 10 + (change + i) % 7, change) for i, sku in enumerate(skus)], POLICY,
                   T0 + timedelta(seconds=change))
    return skus


def test_setup_creates_the_snapshot_tables_beside_the_event_tables(scratch_database):
    schema = f"es_setup_{uuid.uuid4().hex[:8]}"

    create_schemas(Settings(database_url=scratch_database, event_store_schema=schema))

    assert {"orders_events", "orders_snapshots", "inventory_events", "inventory_snapshots"} <= tables(
        scratch_database, schema)


def test_a_batch_loads_from_its_snapshots_in_two_queries_reading_only_the_events_after_them(scratch_database):
    schema = new_schema(scratch_database)
    app = InventoryApplication(env=env(scratch_database, schema, create_tables=True, inventory_snapshot_interval=40))
    try:
        skus = busy_skus(app, "SNAP", count=20, changes=70)  # 2 or 3 events a change: 140 to 210 each
        ids = [StockItem.create_id(sku, LOC) for sku in skus]
        replayed = {i: app.repository.get(i) for i in ids}
        assert all(a.version > 140 for a in replayed.values())  # replayed from the first event (no snapshot store)
        with psycopg.connect(scratch_database) as conn:
            taken = [row[0] for row in conn.execute(
                f"SELECT originator_version FROM {schema}.inventory_snapshots WHERE originator_id = ANY(%s)", [ids])]
        assert len(taken) >= 3 * len(ids) and all(version % 40 == 0 for version in taken)
        before = (app.load_stats.queries, app.load_stats.events, app.load_stats.from_snapshot)

        loaded = app.load_many([*ids, uuid.uuid4()])

        assert set(loaded) == set(ids)  # an unknown id is simply absent
        after_snapshots = sum(a.version - a.version // 40 * 40 for a in replayed.values())  # the setting's interval
        assert (app.load_stats.queries - before[0], app.load_stats.events - before[1],
                app.load_stats.from_snapshot - before[2]) == (2, after_snapshots, 20)
        for aggregate_id in ids:
            assert same_state(state_of(replayed[aggregate_id]), state_of(loaded[aggregate_id])) == []
        assert app.snapshot_stats.failed == 0
    finally:
        app.close()


def test_orders_load_from_their_snapshots_too(scratch_database):
    schema = new_schema(scratch_database)
    app = OrderApplication(env=env(scratch_database, schema, create_tables=True))
    try:
        order_ids = [7001, 7002, 7003]
        app.handle([delivery(us_tax_exclusive(i)) for i in order_ids], ITEMS, NOW)
        for minute in range(1, 24):  # v3..v25: a snapshot at v20
            app.handle([delivery(us_tax_exclusive(i, updated_at=NOW + timedelta(minutes=minute)), "orders/updated")
                        for i in order_ids], ITEMS, NOW)
        ids = [Order.create_id(i) for i in order_ids]
        before = (app.load_stats.queries, app.load_stats.events, app.load_stats.from_snapshot)

        loaded = app.load_many(ids)

        assert (app.load_stats.queries - before[0], app.load_stats.events - before[1],
                app.load_stats.from_snapshot - before[2]) == (2, 3 * 5, 3)
        for aggregate_id in ids:
            assert same_state(state_of(app.repository.get(aggregate_id)), state_of(loaded[aggregate_id])) == []
    finally:
        app.close()


def test_without_the_snapshot_table_services_load_and_save_as_before_until_setup_creates_it(
        scratch_database, caplog, monkeypatch):
    schema = new_schema(scratch_database)
    # the store as the setup before snapshots made it: events, no snapshot table
    OldInventory = type("OldInventory", (InventoryApplication,), {"name": "inventory", "snapshotting_intervals": {}})
    OldInventory(env=env(scratch_database, schema, create_tables=True)).close()
    assert "inventory_snapshots" not in tables(scratch_database, schema)
    caplog.set_level(logging.WARNING, logger="shopify_prima.snapshots")
    app = InventoryApplication(env=env(scratch_database, schema, create_tables=False))  # as the services run
    try:
        [sku] = busy_skus(app, "NOTABLE", count=1, changes=60)  # past version 100: no snapshot can be stored

        found = app.find_stock(sku, LOC)
        assert found is not None and found.version > 100 and found.prima_change_id == 60
        assert (app.load_stats.from_snapshot, app.snapshot_stats.taken) == (0, 0) and app.snapshot_stats.failed >= 1
        assert len([r for r in caplog.records if "snapshot" in r.getMessage()]) <= 2  # said once, not per batch
        queries = app.load_stats.queries
        app.find_stock(sku, LOC)
        assert app.load_stats.queries == queries + 1  # the events only: the missing table is not asked for again

        InventoryApplication(env=env(scratch_database, schema, create_tables=True)).close()  # services.setup
        later = monotonic() + MISSING_TABLE_RECHECK_SECONDS + 1
        monkeypatch.setattr("domain.shared.application.monotonic", lambda: later)  # a minute on
        version = found.version
        for change in range(61, 121):
            app.handle([stock(sku, 10 + change % 7, change)], POLICY, T0 + timedelta(seconds=change))
        assert app.snapshot_stats.taken >= 1  # the next interval's snapshot is stored
        assert app.find_stock(sku, LOC).version > version and app.load_stats.from_snapshot >= 1
    finally:
        app.close()


def test_the_notification_log_the_relays_replay_holds_the_events_and_no_snapshot(scratch_database):
    schema = new_schema(scratch_database)
    app = InventoryApplication(env=env(scratch_database, schema, create_tables=True))
    try:
        skus = busy_skus(app, "RELAY", count=3, changes=60)
        assert app.snapshot_stats.taken >= 3
        events = sum(app.repository.get(StockItem.create_id(sku, LOC)).version for sku in skus)
        events += sum(app.repository.get(a).version for a in {n.originator_id for n in
                      app.recorder.select_notifications(1, 10_000)} if a not in
                      {StockItem.create_id(sku, LOC) for sku in skus})  # the CatalogItems

        notifications = app.recorder.select_notifications(1, 10_000)

        assert len(notifications) == events
        assert not [n for n in notifications if "Snapshot" in n.topic]
        relay = Relay(STOCK_RELAY, Settings(relay_batch_size=10_000), broker=None, app=app)
        messages, last = relay.read(0)  # a rebuild from position zero
        assert last == notifications[-1].id
        assert not [m for m in messages if m.topic == DEAD_LETTERS.name]
        assert len(messages) >= len(notifications)  # every event relayed
    finally:
        app.close()
