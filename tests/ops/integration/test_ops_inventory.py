"""The ops API's inventory endpoints and the `shopify-prima inventory` commands, on real
PostgreSQL (a throwaway database migrated to head, so counts are exact and nothing reaches the
running stack) and real Kafka (the API's broker publishes operator commands to a throwaway
operations topic). The API runs in-process: FastAPI's TestClient for the endpoint tests, uvicorn
on a free loopback port for the CLI (which talks HTTP to the ops API, with the token, as in
production). Where the CLI waits for what another process does (the catalogue reader's run, the
projector's rebuild), a thread here plays that process on the scratch database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import TopicPartition
from pydantic import SecretStr
from typer.testing import CliRunner

from contracts.inventory.events import PushConfirmed
from projections import inventory_health as ih
from projections.inventory_health import InventoryHealthProjection
from services.ops import api as ops_api
from services.ops import cli
from services.platform.kafka import Delivery, Reposition
from services.shopify.catalog_reader import request_run
from tests.ops.support import LOC, LOC2, MUG_COMMAND_ID, Events, OperationsTap, at, rows, stock_item

pytestmark = pytest.mark.integration


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
    assert (mug["state"], mug["pending_quantity"], mug["pending_command_id"]) == ("pending", 5, str(MUG_COMMAND_ID))
    assert mug["last_push_at"].startswith("2026-03-02T09:00:04")

    ghost = api.get("/inventory/OPS-GHOST").json()
    assert ghost["locations"] == [] and ghost["catalog"]["guard_reason"] == "no Prima item with this SKU"
    assert [x["kind"] for x in ghost["exceptions"]] == ["variant_without_prima_item", "unmapped_warehouse"]
    assert api.get("/inventory/OPS%2FSLASH").json()["locations"][0]["state"] == "not_in_shopify"

    missing = api.get("/inventory/NO-SUCH-SKU")
    assert missing.status_code == 404 and "not known to the inventory read model" in missing.json()["detail"]


def test_listing_by_state_and_the_summary(api, seeded):
    drift = api.get("/inventory", params={"state": "drift"}).json()["inventory"]
    assert [(r["sku"], r["location_id"]) for r in drift] == [("OPS-TEE", LOC2)]
    assert len(api.get("/inventory", params={"sku": "OPS-T"}).json()["inventory"]) == 2
    assert len(api.get("/inventory", params={"limit": 1}).json()["inventory"]) == 1
    bad = api.get("/inventory", params={"state": "sideways"})
    assert bad.status_code == 422 and "in_sync" in bad.json()["detail"]

    summary = api.get("/inventory/summary").json()
    assert summary["states"] == {"unknown": 0, "not_in_shopify": 1, "exception": 0, "pending": 1, "in_sync": 1,
                                 "drift": 1}
    assert list(summary["states"]) == list(ih.STATES)  # every declared state, in the declared order
    assert summary["total"] == 4
    assert summary["exceptions_open"] == {**dict.fromkeys(ih.EXCEPTION_KINDS, 0), "variant_without_prima_item": 1,
                                          "unmapped_warehouse": 1}
    assert api.get("/inventory/summary", params={"sku": "OPS-T"}).json()["total"] == 2


def test_exceptions_list_orders_inventory_and_dead_letters_with_a_source(api, seeded):
    rows_ = api.get("/exceptions").json()["exceptions"]
    assert [(x["source"], x["kind"]) for x in rows_] == [
        ("inventory", "unmapped_warehouse"), ("inventory", "variant_without_prima_item"), ("order", "unmapped_sku"),
        ("dead_letter", "undecodable")]
    for x in rows_:  # one shape for all
        assert {"source", "exception_id", "kind", "reason", "payload", "action", "status", "raised_at",
                "shopify_order_id", "order_name", "sku", "location_id"} <= set(x)
    assert rows_[2]["shopify_order_id"] == 42 and rows_[2]["sku"] is None
    assert rows_[2]["payload"] == {"unmapped_skus": ["X"]}
    assert rows_[0]["sku"] == "OPS-GHOST" and rows_[0]["shopify_order_id"] is None
    assert rows_[0]["action"] == "map the warehouse WH-X in SHOPIFY_PRIMA_INVENTORY_LOCATION_MAP"
    assert rows_[1]["action"] == "create or activate the Prima item for SKU OPS-GHOST"
    assert rows_[3]["reason"].startswith("order-decider could not handle PrimaSalesOrderCreated from "
                                         "prima.outcomes.v1[1]@17: ")
    assert rows_[3]["action"].endswith(f"shopify-prima dead-letters redrive {rows_[3]['exception_id']}")

    assert {x["source"] for x in api.get("/exceptions", params={"source": "inventory"}).json()["exceptions"]} == {
        "inventory"}
    assert [x["kind"] for x in api.get("/exceptions", params={"source": "order"}).json()["exceptions"]] == [
        "unmapped_sku"]
    assert len(api.get("/exceptions", params={"limit": 1}).json()["exceptions"]) == 1
    assert api.get("/exceptions", params={"source": "payouts"}).status_code == 422
    resolved = api.get("/exceptions", params={"status": "resolved"}).json()["exceptions"]
    assert [(x["source"], x["payload"]["consumer_group"]) for x in resolved] == [("dead_letter", "outbox-relay.orders")]
    # the order endpoints
    assert api.get("/orders/42").json()["exceptions"][0]["kind"] == "unmapped_sku"
    assert [o["shopify_order_id"] for o in api.get("/orders", params={"state": "quarantined"}).json()["orders"]] == [42]
    assert api.get("/orders", params={"state": "sideways"}).status_code == 422


async def test_a_resync_request_is_a_command_and_its_run_can_be_followed_once_recorded(api, seeded, tap):
    before = await tap.ends()
    response = api.post("/inventory/resync", params={"requested_by": "jo"})
    assert response.status_code == 202
    accepted = response.json()
    run_id = accepted["run_id"]
    assert accepted["message_type"] == "RequestFullComparison" and "catalogue reader" in accepted["detail"]
    [published] = await tap.since(before)
    assert (str(published.message.run_id), str(published.message.command_id)) == (run_id, accepted["command_id"])

    assert api.get(f"/inventory/resync/{run_id}").status_code == 404  # the reader has not taken it yet
    conn = await asyncpg.connect(seeded)
    try:  # the catalogue reader's part: it records the run it was asked for
        await request_run(conn, f"operator:{published.message.requested_by}", UUID(run_id))
    finally:
        await conn.close()
    followed = api.get(f"/inventory/resync/{run_id}").json()
    assert followed["run"]["run_id"] == run_id and followed["run"]["status"] == "requested"
    assert followed["run"]["trigger"] == "operator:jo" and followed["run"]["started_at"] is None
    assert abs((datetime.fromisoformat(followed["run"]["requested_at"]) - datetime.now(UTC)).total_seconds()) < 60
    assert followed["states"]["drift"] == 1 and followed["observed"] == 0
    assert api.get(f"/inventory/resync/{uuid4()}").status_code == 404
    assert api.get("/inventory/resync/not-a-uuid").status_code == 422


# ------------------------------------------------------------------------------- the bearer token


def _routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route, its path parameters filled in."""
    fill = {"{shopify_order_id}": "42", "{sku:path}": "OPS-TEE", "{name}": "inventory_health",
            "{run_id}": str(uuid4()), "{dead_letter_id}": str(uuid4()), "{command_id}": str(uuid4()),
            "{payout_id}": "42"}
    found = []
    for route in app.routes:
        path = route.path
        for pattern, value in fill.items():
            path = path.replace(pattern, value)
        assert "{" not in path, f"no value for a parameter of {route.path}"
        found += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return found


def test_metrics_and_health_answer_without_a_token_everything_else_wants_it(api, seeded):
    """The gauges are the projector's now (not the ops API's): /metrics only has to answer."""
    routes = _routes(api.app)
    assert {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/read-models"), ("POST", "/inventory/resync"),
            ("POST", "/orders/42/release")} <= set(routes)
    for method, path in routes:
        request = api.build_request(method, path)
        del request.headers["authorization"]
        answer = api.send(request)
        if path in ("/metrics", "/health"):
            assert answer.status_code == 200, path
            continue
        assert answer.status_code == 401, (method, path, answer.status_code)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        wrong = api.request(method, path, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401, (method, path, wrong.status_code)
        assert api.request(method, path, headers={"Authorization": "Basic b3BzOm9wcw=="}).status_code == 401
    assert "# HELP" in api.get("/metrics").text
    assert api.get("/openapi.json").json()["info"]["title"] == "shopify-prima ops API"  # with the token
    assert "swagger-ui" in api.get("/docs").text


# ---------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def ops_url(ops_settings, operations_topic, serve_app):
    with serve_app(ops_api.create_app(ops_settings, operations_topic=operations_topic), "the ops API") as url:
        yield url


@pytest.fixture
def run_cli(ops_url, ops_settings, seeded, monkeypatch):
    monkeypatch.setattr(cli, "_ops_url", lambda: ops_url)
    monkeypatch.setattr(cli, "get_settings", lambda: ops_settings)  # the token the API was started with
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
    assert unknown.exit_code == 1 and "not known to the inventory read model" in unknown.output


def test_inventory_list_exceptions_and_status(run_cli):
    drift = run_cli("inventory", "list", "--state", "drift")
    assert drift.exit_code == 0 and "OPS-TEE" in drift.output and "OPS-MUG" not in drift.output
    assert run_cli("inventory", "list", "--state", "sideways").exit_code == 1

    exceptions = run_cli("inventory", "exceptions")
    assert exceptions.exit_code == 0 and "open inventory exceptions: 2" in exceptions.output
    assert "OPS-GHOST variant_without_prima_item" in exceptions.output

    status = run_cli("status")
    assert status.exit_code == 0, status.output
    assert "open exceptions: 4" in status.output
    assert "42 #1042 unmapped_sku" in status.output and "OPS-GHOST unmapped_warehouse" in status.output
    assert "dead letter of order-decider undecodable" in status.output and "None None" not in status.output
    assert "drift" in status.output


def test_the_cli_without_the_right_token_is_refused(run_cli, ops_settings, monkeypatch):
    monkeypatch.setattr(cli, "get_settings", lambda: ops_settings.model_copy(update={"ops_api_token": SecretStr("wrong")}))
    refused = run_cli("inventory", "list")
    assert refused.exit_code == 1 and "Bearer" in refused.output
    monkeypatch.setattr(cli, "get_settings", lambda: ops_settings.model_copy(update={"ops_api_token": None}))
    missing = run_cli("inventory", "list")
    assert missing.exit_code == 2 and "SHOPIFY_PRIMA_OPS_API_TOKEN is not set" in missing.output


class PlaysAProcess(threading.Thread):
    """Another process's part, on the scratch database, in a thread with its own event loop:
    it waits for the operator command on the operations topic, then does `work(command)`."""

    def __init__(self, tap: OperationsTap, message_type: str) -> None:
        super().__init__(daemon=True)
        self.tap, self.message_type = tap, message_type
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.ready.set()

    async def _run(self) -> None:
        before = await self.tap.ends()
        self.ready.set()
        command = (await self.tap.wait_for(before, self.message_type)).message
        await self.work(command)

    async def work(self, command) -> None:
        raise NotImplementedError

    def __enter__(self) -> PlaysAProcess:
        self.start()
        assert self.ready.wait(15), "the fake process did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.join(15)
        assert not self.is_alive(), "the fake process did not finish"


class FakeCatalogueReader(PlaysAProcess):
    """What the catalogue reader and the stock decider do: take the RequestFullComparison, record
    the run, read (counts), publish; then the SKU-locations in drift or pending get their pushes
    confirmed one at a time."""

    def __init__(self, tap: OperationsTap, url: str, outcome: str = "published", step: float = 0.15) -> None:
        super().__init__(tap, "RequestFullComparison")
        self.url, self.outcome, self.step = url, outcome, step

    async def work(self, command) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            run_id = await request_run(conn, f"operator:{command.requested_by}", command.run_id)
            await asyncio.sleep(self.step)
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
            found = await conn.fetch("SELECT * FROM readmodel.inventory_health WHERE state IN ('drift', 'pending') "
                                     "ORDER BY sku, location_id")
            for r in found:
                await asyncio.sleep(self.step)
                confirmed = PushConfirmed(
                    event_id=uuid4(), sku=r["sku"], location_id=r["location_id"], aggregate_id=uuid4(),
                    aggregate_version=r["last_event_version"] + 1, timestamp=at(100), notification_id=1,
                    command_id=r["pending_command_id"] or uuid4(), quantity=r["desired"],
                    previous_quantity=r["shopify_level"], stale_retries=0, occurred_at=at(100))
                async with conn.transaction():
                    await ih.apply_events(conn, [confirmed])
        finally:
            await conn.close()


def test_resync_reads_then_counts_the_repairs_down(run_cli, seeded, tap):
    with FakeCatalogueReader(tap, seeded) as reader:
        result = run_cli("inventory", "resync", "--timeout", "30", "--interval", "0.05")
    assert reader.error is None, reader.error
    assert result.exit_code == 0, result.output
    out = result.output
    assert "resync run" in out and "requested" in out
    assert "reading Shopify" in out and "repairing" in out
    assert "published: 4 variants, 5 levels" in out
    assert "2/2" in out  # OPS-TEE at location 2 (drift) and OPS-MUG (pending)
    assert "4 variants and 5 levels read, 2 SKU-locations repaired; now 3 in sync" in out


def test_resync_reports_a_failed_run(run_cli, seeded, tap):
    with FakeCatalogueReader(tap, seeded, outcome="failed") as reader:
        result = run_cli("inventory", "resync", "--timeout", "30", "--interval", "0.05")
    assert reader.error is None, reader.error
    assert result.exit_code == 1
    assert "failed: bulk operation FAILED: ACCESS_DENIED" in result.output


def test_resync_times_out_saying_what_is_left(run_cli, seeded, tap):
    with FakeCatalogueReader(tap, seeded, outcome="stuck") as reader:
        result = run_cli("inventory", "resync", "--timeout", "1.5", "--interval", "0.05")
    assert reader.error is None, reader.error
    assert result.exit_code == 1
    assert "timed out after 1.5s" in result.output and "still reading" in result.output


def test_resync_times_out_before_the_reader_took_the_run(run_cli, seeded):
    result = run_cli("inventory", "resync", "--timeout", "0.5", "--interval", "0.05")
    assert result.exit_code == 1
    assert "still requested" in result.output and "is the catalogue reader running?" in result.output


async def test_resync_times_out_while_repairing(run_cli, seeded, monkeypatch):
    conn = await asyncpg.connect(seeded)
    try:  # a run the catalogue reader has published; nothing repairs the two rows
        run_id = await request_run(conn, "operator:test")
        await conn.execute("UPDATE inventory.sync_runs SET status = 'published', variants = 4, levels = 5 "
                           "WHERE run_id = $1", run_id)
    finally:
        await conn.close()
    monkeypatch.setattr(cli, "_post", lambda path, **params: {"run_id": str(run_id)})
    result = run_cli("inventory", "resync", "--timeout", "1", "--interval", "0.05")
    assert result.exit_code == 1
    assert "timed out after 1s: 2 SKU-locations not repaired yet (1 drift, 1 pending)" in result.output


async def test_resync_without_waiting(run_cli, seeded, tap):
    before = await tap.ends()
    result = run_cli("inventory", "resync", "--no-wait")
    assert result.exit_code == 0 and "requested" in result.output and "reading" not in result.output
    [published] = await tap.since(before)
    assert published.message.message_type == "RequestFullComparison"
    assert str(published.message.run_id) in result.output


class FakeProjector(PlaysAProcess):
    """What the projector does with RebuildProjection, with the real InventoryHealthProjection on
    the scratch database: empty the read model under its lock, recording the end offsets to
    reach, then apply "the topic" again (here: a few events at offsets of partitions 0 and 2),
    one delivery at a time, so that the CLI sees the progress."""

    def __init__(self, tap: OperationsTap, url: str, step: float = 0.1) -> None:
        super().__init__(tap, "RebuildProjection")
        self.url, self.step = url, step
        e = Events()
        self.topic = {0: stock_item(e, "OPS-REBUILT", LOC, 4, 2, 2)[:2], 2: stock_item(e, "OPS-OTHER", LOC2, 3, 1, 1)[:1]}

    async def work(self, command) -> None:
        assert command.projection == "inventory_health"
        pool = await asyncpg.create_pool(self.url, min_size=1, max_size=2)
        try:
            projection = InventoryHealthProjection(pool)
            target = {0: len(self.topic[0]), 1: 0, 2: len(self.topic[2])}
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", projection.lock)
                await projection.reset(conn, target, command.command_id)
            for partition, events in self.topic.items():
                for offset, event in enumerate(events):
                    await asyncio.sleep(self.step)
                    delivery = Delivery(event, projection.topic.name, partition, offset, event.sku.encode())
                    await _handled(projection.handle, [delivery])
        finally:
            await pool.close()


async def _handled(handle: Callable[[list[Delivery]], Awaitable[None]], deliveries: list[Delivery]) -> None:
    """As the consumer does: a Reposition (the first batch after a reset) seeks, and the batch
    comes again from the position asked for (here: the same one, offset zero)."""
    try:
        await handle(deliveries)
    except Reposition as moved:
        assert all(offset == 0 for offset in moved.positions.values()), moved.positions
        assert {tp for tp in moved.positions} <= {TopicPartition(InventoryHealthProjection.topic.name, p)
                                                  for p in range(3)}
        await handle(deliveries)


def test_replay_sends_a_rebuild_and_follows_it_to_its_end(run_cli, seeded, tap):
    with FakeProjector(tap, seeded) as projector:
        result = run_cli("replay", "--projection", "inventory_health", "--timeout", "30")
    assert projector.error is None, projector.error
    assert result.exit_code == 0, result.output
    assert "rebuild of inventory_health sent (command" in result.output
    assert "inventory_health: 3 messages applied again" in result.output

    found = asyncio.run(rows(seeded, "SELECT sku, location_id FROM readmodel.inventory_health ORDER BY sku"))
    assert [(r["sku"], r["location_id"]) for r in found] == [("OPS-OTHER", LOC2), ("OPS-REBUILT", LOC)]


def test_replay_of_an_unknown_read_model_names_the_known_ones(run_cli, seeded):
    unknown = run_cli("replay", "--projection", "nothing")
    assert unknown.exit_code == 1 and "inventory_health" in unknown.output and "order_sync" in unknown.output


async def test_replay_without_waiting(run_cli, seeded, tap):
    before = await tap.ends()
    result = run_cli("replay", "--projection", "order_sync", "--no-wait")
    assert result.exit_code == 0, result.output
    [published] = await tap.since(before)
    assert (published.message.message_type, published.message.projection) == ("RebuildProjection", "order_sync")
    assert str(published.message.command_id) in result.output
