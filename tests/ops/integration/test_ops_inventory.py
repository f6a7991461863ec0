"""The ops API's inventory endpoints and the `shopify-prima inventory` commands, on real
PostgreSQL (a throwaway database, so counts are exact and nothing reaches the running stack's
catalogue reader). The API runs in-process: FastAPI's TestClient for the endpoint tests, uvicorn
on a free loopback port for the CLI (which talks HTTP to the ops API as in production).
"""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse, urlunparse
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import asyncpg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from contracts.inventory import StockEvent
from projections import inventory_health as ih
from projections.store import create_read_model_schema
from services import catalog_reader, cli
from services.config import Settings
from services.ops_api import create_app

pytestmark = pytest.mark.integration

LOC, LOC2 = "gid://shopify/Location/1", "gid://shopify/Location/2"
ITEM = "gid://shopify/InventoryItem/9"
T = datetime(2026, 3, 2, 9, tzinfo=UTC)
SYNC_RUNS_DDL = catalog_reader.SCHEMA_SQL  # the table the catalogue reader owns


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


# ------------------------------------------------------------------------------ scratch database


@pytest.fixture(scope="module")
async def scratch_url(database_url):
    name = f"shopify_prima_test_ops_{os.getpid()}_{uuid4().hex[:6]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        pytest.fail("the test user may not CREATE DATABASE; these tests need a throwaway database")
    finally:
        await admin.close()
    url = urlunparse(urlparse(database_url)._replace(path=f"/{name}"))
    conn = await asyncpg.connect(url)
    await create_read_model_schema(conn)
    await conn.execute(SYNC_RUNS_DDL)
    await conn.close()
    yield url
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="module")
def ops_settings(scratch_url, settings) -> Settings:
    return settings.model_copy(update={"database_url": scratch_url})


class Events:
    def __init__(self) -> None:
        self.versions: dict[UUID, int] = {}

    def __call__(self, event_type: str, sku: str, data: dict, seconds: float, location: str | None = LOC,
                 version: int | None = None) -> StockEvent:
        aggregate = event_type.split(".")[0]
        location = location if aggregate == "StockItem" else None
        aggregate_id = uuid5(NAMESPACE_URL, f"{aggregate}/{sku}@{location}")
        version = version or self.versions.get(aggregate_id, 0) + 1
        self.versions[aggregate_id] = version
        return StockEvent(event_id=uuid5(aggregate_id, f"event/{version}"), event_type=event_type, sku=sku,
                          location_id=location, aggregate_id=aggregate_id, aggregate_version=version,
                          timestamp=at(seconds), notification_id=1, data=data)


def stock_item(e: Events, sku: str, location: str, prima: int, desired: int, shopify: int | None,
               warehouse: str = "WH-MAIN") -> list[StockEvent]:
    events = [
        e("StockItem.Registered", sku, {"sku": sku, "location_id": location, "warehouse": warehouse}, 1, location),
        e("StockItem.PrimaAvailabilityRecorded", sku, {"available": prima, "change_id": 1, "source": "stock",
          "reference": f"prima://stock/{warehouse}/{sku}?change=1", "components": None}, 2, location),
        e("StockItem.DesiredLevelChanged", sku, {"prima_available": prima, "buffer": prima - desired,
          "buffer_rule": "default", "desired": desired}, 2, location),
    ]
    if shopify is not None:
        events.append(e("StockItem.ShopifyLevelObserved", sku, {"inventory_item_id": ITEM, "available": shopify,
                        "observed_at": at(3).isoformat(), "sync_run_id": None}, 3, location))
    return events


async def seed(url: str) -> None:
    """OPS-TEE: in sync at location 1, drifted at 2, a catalogue entry (a bundle); OPS-MUG
    pending; OPS-GHOST: a variant without a Prima item; OPS/SLASH: a SKU with a slash; one
    order exception and its order."""
    e = Events()
    command = {"command_id": str(uuid5(NAMESPACE_URL, "ops-mug-1")), "sku": "OPS-MUG", "inventory_item_id": ITEM,
               "location_id": LOC, "quantity": 5, "change_from_quantity": 0, "issued_at": at(4).isoformat(),
               "reference_document_uri": "prima://stock/WH-MAIN/OPS-MUG?change=1"}
    events = [
        *stock_item(e, "OPS-TEE", LOC, 10, 8, 8),
        *stock_item(e, "OPS-TEE", LOC2, 5, 3, 7, warehouse="WH-NORTH"),
        e("CatalogItem.Registered", "OPS-TEE", {"sku": "OPS-TEE"}, 1),
        e("CatalogItem.PrimaItemRecorded", "OPS-TEE", {"item_id": "ITM-TEE", "item_type": "bundle", "active": True,
          "components": {"OPS-A": 1, "OPS-B": 2}, "updated_at": at(1).isoformat()}, 1),
        e("CatalogItem.ShopifyVariantRecorded", "OPS-TEE", {"variant_id": "gid://shopify/ProductVariant/1",
          "product_id": "gid://shopify/Product/1", "product_status": "ACTIVE", "inventory_item_id": ITEM,
          "observed_at": at(3).isoformat()}, 3),
        *stock_item(e, "OPS-MUG", LOC, 6, 5, 0),
        e("StockItem.PushRequested", "OPS-MUG", {"command": command, "desired": 5, "shopify_level": 0}, 4),
        e("CatalogItem.Registered", "OPS-GHOST", {"sku": "OPS-GHOST"}, 5),
        e("CatalogItem.VariantWithoutPrimaItem", "OPS-GHOST", {"reason": "no Prima item with this SKU",
          "product_id": "gid://shopify/Product/2", "variant_id": "gid://shopify/ProductVariant/2"}, 6),
        e("CatalogItem.UnmappedWarehouseFound", "OPS-GHOST", {"warehouse": "WH-X", "available": 2, "change_id": 1}, 7),
        *stock_item(e, "OPS/SLASH", LOC, 1, 0, None),
    ]
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await ih.reset(conn)
            await conn.execute("TRUNCATE readmodel.order_sync, readmodel.exceptions, inventory.sync_runs")
            await ih.apply_events(conn, events)
            await conn.execute(
                """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, first_received_at,
                   last_event_at, last_event_version) VALUES (42, '#1042', 'quarantined', $1, $1, 2)""", at(0))
            await conn.execute(
                """INSERT INTO readmodel.exceptions VALUES ($1, 42, '#1042', 'unmapped_sku', 'SKU X has no item',
                   '{"unmapped_skus": ["X"]}', 'shopify-prima orders release 42', 'open', $2, NULL)""",
                uuid4(), at(5.5))
    finally:
        await conn.close()


@pytest.fixture
async def seeded(scratch_url):
    await seed(scratch_url)
    return scratch_url


@pytest.fixture(scope="module")
def api(ops_settings):
    with TestClient(create_app(ops_settings)) as client:
        yield client


# ---------------------------------------------------------------------------------- the ops API


def test_one_sku_with_its_locations_catalogue_and_exceptions(api, seeded):
    found = api.get("/inventory/OPS-TEE").json()
    assert found["sku"] == "OPS-TEE"
    assert found["catalog"]["item_id"] == "ITM-TEE" and found["catalog"]["components"] == {"OPS-A": 1, "OPS-B": 2}
    assert found["catalog"]["product_status"] == "ACTIVE"
    assert [(r["location_id"], r["warehouse"], r["prima_available"], r["buffer"], r["desired"], r["shopify_level"],
             r["drift"], r["state"]) for r in found["locations"]] == [
        (LOC, "WH-MAIN", 10, 2, 8, 8, 0, "in_sync"), (LOC2, "WH-NORTH", 5, 2, 3, 7, 4, "drift")]
    assert found["exceptions"] == []

    mug = api.get("/inventory/OPS-MUG").json()["locations"][0]
    assert (mug["state"], mug["pending_quantity"], mug["pending_command_id"]) == (
        "pending", 5, str(uuid5(NAMESPACE_URL, "ops-mug-1")))
    assert mug["last_push_at"].startswith("2026-03-02T09:00:04")

    ghost = api.get("/inventory/OPS-GHOST").json()
    assert ghost["locations"] == [] and ghost["catalog"]["guard_reason"] == "no Prima item with this SKU"
    assert [x["kind"] for x in ghost["exceptions"]] == ["variant_without_prima_item", "unmapped_warehouse"]
    assert api.get("/inventory/OPS%2FSLASH").json()["locations"][0]["state"] == "not_in_shopify"

    missing = api.get("/inventory/NO-SUCH-SKU")
    assert missing.status_code == 404 and "NO-SUCH-SKU" in missing.json()["detail"]


def test_listing_by_state_and_the_summary(api, seeded):
    drift = api.get("/inventory", params={"state": "drift"}).json()["inventory"]
    assert [(r["sku"], r["location_id"]) for r in drift] == [("OPS-TEE", LOC2)]
    assert len(api.get("/inventory", params={"sku": "OPS-T"}).json()["inventory"]) == 2
    assert len(api.get("/inventory", params={"limit": 1}).json()["inventory"]) == 1
    bad = api.get("/inventory", params={"state": "sideways"})
    assert bad.status_code == 400 and "in_sync" in bad.json()["detail"]

    summary = api.get("/inventory/summary").json()
    assert summary["states"] == {"unknown": 0, "not_in_shopify": 1, "exception": 0, "pending": 1, "in_sync": 1,
                                 "drift": 1}
    assert summary["total"] == 4
    assert summary["exceptions_open"] == {**dict.fromkeys(ih.EXCEPTION_KINDS, 0), "variant_without_prima_item": 1,
                                          "unmapped_warehouse": 1}


def test_exceptions_list_orders_and_inventory_with_a_source(api, seeded):
    rows = api.get("/exceptions").json()["exceptions"]
    assert [(x["source"], x["kind"]) for x in rows] == [
        ("inventory", "unmapped_warehouse"), ("inventory", "variant_without_prima_item"), ("order", "unmapped_sku")]
    for x in rows:  # one shape for both
        assert {"source", "exception_id", "kind", "reason", "payload", "action", "status", "raised_at",
                "shopify_order_id", "order_name", "sku", "location_id"} <= set(x)
    assert rows[2]["shopify_order_id"] == 42 and rows[2]["sku"] is None
    assert rows[2]["payload"] == {"unmapped_skus": ["X"]}
    assert rows[0]["sku"] == "OPS-GHOST" and rows[0]["shopify_order_id"] is None
    assert rows[0]["action"] == "map the warehouse WH-X in SHOPIFY_PRIMA_INVENTORY_LOCATION_MAP"
    assert rows[1]["action"] == "create or activate the Prima item for SKU OPS-GHOST"

    assert {x["source"] for x in api.get("/exceptions", params={"source": "inventory"}).json()["exceptions"]} == {
        "inventory"}
    assert [x["kind"] for x in api.get("/exceptions", params={"source": "order"}).json()["exceptions"]] == [
        "unmapped_sku"]
    assert len(api.get("/exceptions", params={"limit": 1}).json()["exceptions"]) == 1
    assert api.get("/exceptions", params={"source": "payouts"}).status_code == 422
    assert api.get("/exceptions", params={"status": "resolved"}).json()["exceptions"] == []
    # the order endpoints are as they were
    assert api.get("/orders/42").json()["exceptions"][0]["kind"] == "unmapped_sku"
    assert [o["shopify_order_id"] for o in api.get("/orders", params={"state": "quarantined"}).json()["orders"]] == [42]


async def test_a_resync_request_is_a_sync_run_row_and_can_be_followed(api, seeded):
    response = api.post("/inventory/resync")
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    conn = await asyncpg.connect(seeded)
    try:
        run = await conn.fetchrow("SELECT * FROM inventory.sync_runs WHERE run_id = $1", UUID(run_id))
        assert (run["trigger"], run["status"], run["started_at"]) == ("operator", "requested", None)
        assert abs((run["requested_at"] - datetime.now(UTC)).total_seconds()) < 60
        followed = api.get(f"/inventory/resync/{run_id}").json()
        assert followed["run"]["run_id"] == run_id and followed["run"]["status"] == "requested"
        assert followed["states"]["drift"] == 1 and followed["observed"] == 0
        assert api.get(f"/inventory/resync/{uuid4()}").status_code == 404
        assert api.get("/inventory/resync/not-a-uuid").status_code == 422

        await conn.execute("ALTER TABLE inventory.sync_runs RENAME TO sync_runs_away")
        try:
            refused = api.post("/inventory/resync")
            assert refused.status_code == 503 and "catalogue reader" in refused.json()["detail"]
            assert api.get(f"/inventory/resync/{run_id}").status_code == 503
        finally:
            await conn.execute("ALTER TABLE inventory.sync_runs_away RENAME TO sync_runs")
    finally:
        await conn.close()


def test_metrics_carry_the_inventory_gauges(api, seeded):
    text = api.get("/metrics").text
    assert 'shopify_prima_inventory_levels{state="drift"} 1.0' in text
    assert 'shopify_prima_exceptions_open{kind="variant_without_prima_item"} 1.0' in text
    assert 'shopify_prima_exceptions_open{kind="push_failed"} 0.0' in text
    assert 'shopify_prima_exceptions_open{kind="unmapped_sku"} 1.0' in text


# ---------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def ops_url(ops_settings, serve_app):
    with serve_app(create_app(ops_settings), "the ops API") as url:
        yield url


@pytest.fixture
def run_cli(ops_url, seeded, monkeypatch):
    monkeypatch.setattr(cli, "_ops_url", lambda: ops_url)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli.app, list(args), env={"COLUMNS": "250"})

    return invoke


def test_inventory_show(run_cli):
    result = run_cli("inventory", "show", "OPS-TEE")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Prima item ITM-TEE (bundle, active), bundle of OPS-A x1, OPS-B x2" in out
    assert "Shopify product gid://shopify/Product/1 ACTIVE" in out
    lines = [line for line in out.splitlines() if "WH-NORTH" in line]
    assert len(lines) == 1 and all(cell in lines[0].split() for cell in ("5", "2", "(default)", "3", "7", "4", "drift"))
    assert any("WH-MAIN" in line and "in_sync" in line for line in out.splitlines())

    ghost = run_cli("inventory", "show", "OPS-GHOST")
    assert ghost.exit_code == 0
    assert "publishing guard: no Prima item with this SKU" in ghost.output
    assert "-> create or activate the Prima item for SKU OPS-GHOST" in ghost.output
    assert run_cli("inventory", "show", "OPS/SLASH").exit_code == 0

    unknown = run_cli("inventory", "show", "NO-SUCH-SKU")
    assert unknown.exit_code == 1 and "SKU NO-SUCH-SKU" in unknown.output


def test_inventory_list_exceptions_and_status(run_cli):
    drift = run_cli("inventory", "list", "--state", "drift")
    assert drift.exit_code == 0 and "OPS-TEE" in drift.output and "OPS-MUG" not in drift.output
    assert run_cli("inventory", "list", "--state", "sideways").exit_code == 1

    exceptions = run_cli("inventory", "exceptions")
    assert exceptions.exit_code == 0 and "open inventory exceptions: 2" in exceptions.output
    assert "OPS-GHOST variant_without_prima_item" in exceptions.output

    status = run_cli("status")
    assert status.exit_code == 0, status.output
    assert "open exceptions: 3" in status.output
    assert "42 #1042 unmapped_sku" in status.output and "OPS-GHOST unmapped_warehouse" in status.output
    assert "drift" in status.output


class FakeCatalogueReader(threading.Thread):
    """What the catalogue reader and the stock decider do, in the throwaway database: take the
    requested run, read (counts), publish; then the SKU-locations in drift or pending get their
    pushes confirmed one at a time."""

    def __init__(self, url: str, outcome: str = "published", step: float = 0.15) -> None:
        super().__init__(daemon=True)
        self.url, self.outcome, self.step = url, outcome, step
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.work())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    async def work(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            run_id = None
            for _ in range(100):
                run_id = await conn.fetchval("SELECT run_id FROM inventory.sync_runs WHERE status = 'requested'")
                if run_id:
                    break
                await asyncio.sleep(0.05)
            assert run_id, "no run requested"
            await conn.execute("UPDATE inventory.sync_runs SET status = 'reading', started_at = now(), variants = 2 "
                               "WHERE run_id = $1", run_id)
            await asyncio.sleep(self.step * 2)
            if self.outcome == "failed":
                await conn.execute("UPDATE inventory.sync_runs SET status = 'failed', finished_at = now(), "
                                   "error = 'bulk operation FAILED: ACCESS_DENIED' WHERE run_id = $1", run_id)
                return
            if self.outcome == "stuck":
                return
            await conn.execute("UPDATE inventory.sync_runs SET status = 'published', finished_at = now(), "
                               "variants = 4, levels = 5 WHERE run_id = $1", run_id)
            rows = await conn.fetch("SELECT * FROM readmodel.inventory_health WHERE state IN ('drift', 'pending') "
                                    "ORDER BY sku, location_id")
            for r in rows:
                await asyncio.sleep(self.step)
                command_id = r["pending_command_id"] or uuid4()
                confirmed = StockEvent(
                    event_id=uuid4(), event_type="StockItem.PushConfirmed", sku=r["sku"], location_id=r["location_id"],
                    aggregate_id=uuid4(), aggregate_version=r["last_event_version"] + 1, timestamp=at(100),
                    notification_id=1, data={"command_id": str(command_id), "quantity": r["desired"],
                                             "previous_quantity": r["shopify_level"], "stale_retries": 0,
                                             "occurred_at": at(100).isoformat()})
                async with conn.transaction():
                    await ih.apply_events(conn, [confirmed])
        finally:
            await conn.close()


def test_resync_reads_then_counts_the_repairs_down(run_cli, seeded):
    reader = FakeCatalogueReader(seeded)
    reader.start()
    result = run_cli("inventory", "resync", "--timeout", "30", "--interval", "0.05")
    reader.join(10)
    assert reader.error is None, reader.error
    assert result.exit_code == 0, result.output
    out = result.output
    assert "resync run" in out and "requested" in out
    assert "reading Shopify" in out and "repairing" in out
    assert "published: 4 variants, 5 levels" in out
    assert "2/2" in out  # OPS-TEE at location 2 (drift) and OPS-MUG (pending)
    assert "4 variants and 5 levels read, 2 SKU-locations repaired; now 3 in sync" in out


def test_resync_reports_a_failed_run(run_cli, seeded):
    reader = FakeCatalogueReader(seeded, outcome="failed")
    reader.start()
    result = run_cli("inventory", "resync", "--timeout", "30", "--interval", "0.05")
    reader.join(10)
    assert result.exit_code == 1
    assert "failed: bulk operation FAILED: ACCESS_DENIED" in result.output


def test_resync_times_out_saying_what_is_left(run_cli, seeded):
    reader = FakeCatalogueReader(seeded, outcome="stuck")
    reader.start()
    result = run_cli("inventory", "resync", "--timeout", "1", "--interval", "0.05")
    reader.join(10)
    assert result.exit_code == 1
    assert "timed out after 1s" in result.output and "still reading" in result.output


async def test_resync_times_out_while_repairing(run_cli, seeded, monkeypatch):
    run_id = uuid4()  # a run the catalogue reader has published; nothing repairs the two rows
    conn = await asyncpg.connect(seeded)
    try:
        await conn.execute("""INSERT INTO inventory.sync_runs (run_id, trigger, status, requested_at, variants, levels)
                              VALUES ($1, 'operator', 'published', now(), 4, 5)""", run_id)
    finally:
        await conn.close()
    monkeypatch.setattr(cli, "_post", lambda path, **params: {"run_id": str(run_id)})
    result = run_cli("inventory", "resync", "--timeout", "1", "--interval", "0.05")
    assert result.exit_code == 1
    assert "timed out after 1s: 2 SKU-locations not repaired yet (1 drift, 1 pending)" in result.output


def test_resync_without_waiting(run_cli, seeded):
    result = run_cli("inventory", "resync", "--no-wait")
    assert result.exit_code == 0 and "requested" in result.output and "reading" not in result.output


def test_replay_rebuilds_inventory_health_from_the_topic(run_cli, ops_settings, kafka_bootstrap, monkeypatch):
    """The real stock-events topic, replayed into the throwaway database (read only on Kafka)."""
    monkeypatch.setattr(cli, "get_settings", lambda: ops_settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap}))
    result = run_cli("replay", "--projection", "inventory_health")
    assert result.exit_code == 0, result.output
    assert "inventory_health:" in result.output and "events applied" in result.output

    async def rows() -> int:
        conn = await asyncpg.connect(ops_settings.database_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM readmodel.inventory_health WHERE sku LIKE 'OPS%'")
        finally:
            await conn.close()

    assert asyncio.run(rows()) == 0  # emptied: only the topic's events are there now
    unknown = run_cli("replay", "--projection", "nothing")
    assert unknown.exit_code == 2 and "inventory_health" in unknown.output
