"""Schema migrations (Alembic, services/platform/migrations) on real PostgreSQL: a new database
gets every table at the head revision; running them again changes nothing; a database created
by the version before migrations (tables made by each service with CREATE ... IF NOT EXISTS)
upgrades in place, its parked commands moved into the one table both gateways share."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from services.platform import migrations
from tests.support import scratch_database


def baseline_ddl() -> str:
    """The DDL of revision 0001: the tables as the services created them before migrations."""
    import importlib.util

    path = migrations.HERE / "versions" / "0001_baseline.py"
    spec = importlib.util.spec_from_file_location("baseline_0001", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DDL

TABLES = {
    ("ingest", "raw_webhooks"), ("ingest", "prima_cursors"), ("readmodel", "positions"), ("readmodel", "order_sync"),
    ("readmodel", "exceptions"), ("readmodel", "inventory_health"), ("readmodel", "catalog_items"),
    ("readmodel", "inventory_exceptions"), ("readmodel", "applied_versions"), ("readmodel", "rebuilds"),
    ("readmodel", "item_master"), ("readmodel", "dead_letters"), ("inventory", "sync_runs"),
    ("gateway", "parked_commands"), ("gateway", "shopify_inventory_batches"), ("gateway", "inventory_decisions"),
    ("outbox", "relay_position"),
    ("readmodel", "order_timeline"), ("readmodel", "credit_memos"),
    ("ingest", "reconciler_state"), ("ingest", "reconcile_runs"), ("ingest", "reconciled_orders"),
    ("ingest", "reconciler_exceptions"),
    ("ingest", "shopify_payouts"), ("readmodel", "payouts"), ("readmodel", "payout_transactions"),
    ("readmodel", "payout_exceptions"), ("readmodel", "sales_documents"),
    ("gateway", "fulfilment_writes"), ("readmodel", "order_fulfilment"),
    ("readmodel", "order_payment_gateways"),
    ("ingest", "omlink_availability"), ("ingest", "omlink_items"), ("ingest", "omlink_unmapped"),
    ("ingest", "omlink_order_status"), ("ingest", "omlink_settled_orders"),
}


@pytest.fixture
async def empty_database(database_url):
    async with scratch_database(database_url, "migrations", migrate=False) as url:
        yield url


async def tables(url: str) -> set[tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT table_schema, table_name FROM information_schema.tables "
                                "WHERE table_schema IN ('ingest', 'readmodel', 'inventory', 'gateway', 'outbox')")
        return {(r["table_schema"], r["table_name"]) for r in rows}
    finally:
        await conn.close()


async def test_a_new_database_gets_every_table_and_a_second_run_changes_nothing(empty_database):
    await asyncio.to_thread(migrations.upgrade, empty_database)
    assert await tables(empty_database) == TABLES
    assert await asyncio.to_thread(migrations.current, empty_database) == migrations.head()
    await asyncio.to_thread(migrations.upgrade, empty_database)
    assert await tables(empty_database) == TABLES


async def test_three_setups_started_together_do_not_race(empty_database):
    """Each `services.setup` is a process of its own (compose starts one per stack)."""
    code = f"from services.platform import migrations; migrations.upgrade({empty_database!r})"
    processes = [await asyncio.create_subprocess_exec(sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE)
                 for _ in range(3)]
    results = [(await p.wait(), (await p.stderr.read()).decode()) for p in processes]
    assert [rc for rc, _ in results] == [0, 0, 0], results
    assert await asyncio.to_thread(migrations.current, empty_database) == migrations.head()


async def test_a_database_of_the_version_before_migrations_upgrades_in_place(empty_database):
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute(baseline_ddl())  # what the services created themselves before migrations
        prima, shopify = uuid.uuid4(), uuid.uuid4()
        now = datetime.now(UTC)
        await conn.execute("INSERT INTO gateway.parked_commands VALUES ($1, 1001, $2::jsonb, 'Prima down', 5, $3)",
                           prima, json.dumps({"message_type": "CreateSalesOrder"}), now)
        await conn.execute("INSERT INTO gateway.parked_shopify_commands VALUES ($1, 'TEE', 'SetInventoryLevel', "
                           "$2::jsonb, 'Shopify down', 6, $3)", shopify, json.dumps({"sku": "TEE"}), now)
    finally:
        await conn.close()

    await asyncio.to_thread(migrations.upgrade, empty_database)

    conn = await asyncpg.connect(empty_database)
    try:
        rows = {r["command_id"]: dict(r) for r in await conn.fetch(
            "SELECT command_id, gateway, subject, message_type, attempts FROM gateway.parked_commands")}
    finally:
        await conn.close()
    assert rows[prima] == {"command_id": prima, "gateway": "prima", "subject": "1001",
                           "message_type": "CreateSalesOrder", "attempts": 5}
    assert rows[shopify] == {"command_id": shopify, "gateway": "shopify", "subject": "TEE",
                             "message_type": "SetInventoryLevel", "attempts": 6}
    assert ("gateway", "parked_shopify_commands") not in await tables(empty_database)
