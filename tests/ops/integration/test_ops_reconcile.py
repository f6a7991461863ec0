"""The order reconciler through the ops API and the CLI: a reconcile request is a ReconcileOrders
command on the (throwaway) operations topic, its run followed through the API; the orphan watch's
exception records listed by /orders/orphans, /exceptions and `shopify-prima orders orphans`; and
`shopify-prima reconcile --since ...` end to end against a real reconciler (in a thread) reading
the Shopify sandbox and feeding a throwaway orders topic, its progress bar following the run."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from contracts.platform import ReconcileOrders
from sandboxes.shopify.app import create_app as shopify_app
from sandboxes.shopify.orders import Line, order_body
from services.ops import api as ops_api
from services.ops import cli
from services.platform.kafka import Consumer, make_broker, publish_all
from services.shopify.admin import ShopifyAdmin
from services.shopify.reconciler import Reconciler, exception_id
from services.shopify.reconciler_store import ExceptionRecord, ReconcilerStore
from tests.support import throwaway_topics

pytestmark = pytest.mark.integration
TOKEN = "ops-reconcile-token"
T = datetime(2026, 11, 2, 9, tzinfo=UTC)


@pytest.fixture
async def clean(scratch_url):
    conn = await asyncpg.connect(scratch_url)
    try:
        await conn.execute("TRUNCATE ingest.reconciler_state, ingest.reconcile_runs, ingest.reconciled_orders, "
                           "ingest.reconciler_exceptions")
    finally:
        await conn.close()
    return scratch_url


async def seed_orphans(url: str) -> None:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        await ReconcilerStore(pool).raise_exceptions([
            ExceptionRecord(exception_id("paid_without_sales_order", 77), "paid_without_sales_order", 77, "#1077", None,
                            "order #1077 is paid in Shopify and has no Prima sales order 45 min after ...",
                            "shopify-prima orders show 77: fix what holds it (its exception), then "
                            "shopify-prima orders release 77", {"state": "sent"}),
            ExceptionRecord(exception_id("sales_order_without_shopify_order", "SO-000009"),
                            "sales_order_without_shopify_order", 99, "#99", "SO-000009",
                            "Prima sales order SO-000009 names Shopify order 99, which Shopify does not have",
                            "look at sales order SO-000009 in Prima: cancel it, or correct its external reference",
                            {"external_reference": "99"}),
        ], T)
    finally:
        await pool.close()


async def test_a_reconcile_request_is_a_command_and_its_run_is_followed_once_the_reconciler_records_it(
        api, clean, tap, ops_settings):
    before = await tap.ends()
    since = datetime.now(UTC) - timedelta(hours=2)
    response = api.post("/orders/reconcile", params={"since": since.isoformat(), "requested_by": "jo"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["message_type"] == "ReconcileOrders" and "order reconciler" in accepted["detail"]
    [published] = await tap.since(before)
    command = published.message
    assert isinstance(command, ReconcileOrders) and str(command.run_id) == accepted["run_id"]
    assert command.since == since and command.requested_by == "jo" and published.key == accepted["run_id"].encode()

    run_id = UUID(accepted["run_id"])
    assert api.get(f"/orders/reconcile/{run_id}").status_code == 404  # not recorded by the reconciler yet
    pool = await asyncpg.create_pool(clean, min_size=1, max_size=1)
    try:  # the reconciler's part: the command becomes a requested run
        store = ReconcilerStore(pool)
        await Reconciler(ops_settings, store, None, None).on_command([SimpleNamespace(message=command)])
        await store.start_run(run_id, since, datetime.now(UTC), None)
        await store.set_total(run_id, 12, "EXACT")
        await store.progress(run_id, read=5, fed=1, known=4, unreadable=0, read_up_to=since)
    finally:
        await pool.close()
    followed = api.get(f"/orders/reconcile/{run_id}").json()
    run = followed["run"]
    assert (run["trigger"], run["status"], run["orders_total"], run["orders_read"], run["orders_fed"]) == (
        "operator:jo", "running", 12, 5, 1)
    assert followed["fed"] == []
    assert api.get("/orders/reconcile").json()["runs"][0]["run_id"] == str(run_id)

    # refused: a time in the future, a time without its offset, no time at all
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.post("/orders/reconcile", params={"since": future}).status_code == 422
    assert api.post("/orders/reconcile", params={"since": "2026-11-02T10:00:00"}).status_code == 422
    assert api.post("/orders/reconcile").status_code == 422
    assert [r.message.command_id for r in await tap.since(before)] == [command.command_id]  # nothing more sent


async def test_the_orphan_watch_is_listed_by_the_api_with_every_exception(api, clean):
    await seed_orphans(clean)
    orphans = api.get("/orders/orphans").json()["orphans"]
    assert sorted(o["kind"] for o in orphans) == ["paid_without_sales_order", "sales_order_without_shopify_order"]
    prima = api.get("/orders/orphans", params={"kind": "sales_order_without_shopify_order"}).json()["orphans"]
    assert [(o["source"], o["payload"]["sales_order_number"], o["shopify_order_id"]) for o in prima] == [
        ("reconciler", "SO-000009", 99)]
    assert api.get("/orders/orphans", params={"kind": "lost"}).status_code == 422
    listed = api.get("/exceptions", params={"source": "reconciler"}).json()["exceptions"]
    assert {e["exception_id"] for e in listed} == {o["exception_id"] for o in orphans}
    assert {e["exception_id"] for e in listed} <= {e["exception_id"] for e in api.get("/exceptions").json()["exceptions"]}
    assert api.get("/orders/orphans", params={"status": "resolved"}).json()["orphans"] == []


# ---------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def ops_url(ops_settings, operations_topic, serve_app):
    with serve_app(ops_api.create_app(ops_settings, operations_topic=operations_topic), "the ops API") as url:
        yield url


@pytest.fixture
def run_cli(ops_url, ops_settings, monkeypatch):
    monkeypatch.setattr(cli, "_ops_url", lambda: ops_url)
    monkeypatch.setattr(cli, "get_settings", lambda: ops_settings)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli.app, list(args), env={"COLUMNS": "250"})


def test_since_is_a_time_or_a_duration_ago():
    now = datetime(2026, 11, 2, 12, tzinfo=UTC)
    assert cli.parse_since("30m", now) == now - timedelta(minutes=30)
    assert cli.parse_since("2h", now) == now - timedelta(hours=2)
    assert cli.parse_since("3d", now) == now - timedelta(days=3)
    assert cli.parse_since("2026-11-02T10:00:00+01:00") == datetime(2026, 11, 2, 9, tzinfo=UTC)
    assert cli.parse_since("2026-11-02T10:00:00") == datetime(2026, 11, 2, 10, tzinfo=UTC)
    with pytest.raises(Exception, match="neither an ISO 8601 time nor a duration"):
        cli.parse_since("last tuesday")


def test_orders_orphans_lists_them_with_their_action(run_cli, clean):
    asyncio.run(seed_orphans(clean))
    result = run_cli("orders", "orphans")
    assert result.exit_code == 0, result.output
    assert "open orphans: 2" in result.output
    assert "paid_without_sales_order" in result.output and "shopify-prima orders release 77" in result.output
    assert "Prima sales order SO-000009 sales_order_without_shopify_order" in result.output
    only = run_cli("orders", "orphans", "--kind", "paid_without_sales_order")
    assert "open orphans: 1" in only.output


class ServingReconciler(threading.Thread):
    """The order reconciler as its process runs it (the serve loop and its command consumer),
    in a thread with its own event loop, on the scratch database, reading the Shopify sandbox and
    the throwaway operations topic, feeding a throwaway orders topic."""

    def __init__(self, settings, operations_topic: str, dead_letters: str, orders_topic: str, by: str) -> None:
        super().__init__(daemon=True)
        self.by = by  # the topic holds other tests' commands too: this one takes only its own
        self.settings, self.operations_topic = settings, operations_topic
        self.dead_letters, self.orders_topic = dead_letters, orders_topic
        self.ready, self.stop = threading.Event(), None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            self.ready.set()

    async def _run(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        broker = make_broker(self.settings, "ops-reconcile-test")
        admin = ShopifyAdmin(self.settings)
        pool = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=3)
        reconciler = Reconciler(self.settings, ReconcilerStore(pool), admin, lambda out: publish_all(broker, out),
                                orders_topic=self.orders_topic)
        Consumer(broker, self.settings, group=f"test-reconciler-{uuid4().hex[:8]}", topics=[],
                 accepts=(ReconcileOrders,), operations_topic=self.operations_topic,
                 handler=lambda batch: reconciler.on_command([d for d in batch if d.message.requested_by == self.by]),
                 dead_letter_topic=self.dead_letters, start_from="earliest")
        await broker.start()
        try:
            self.ready.set()
            await reconciler.serve(self.stop, poll_seconds=0.1)
        finally:
            await broker.stop()
            await admin.aclose()
            await pool.close()

    def __enter__(self) -> ServingReconciler:
        self.start()
        assert self.ready.wait(30) and self.error is None, self.error
        return self

    def __exit__(self, *exc) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.join(30)
        assert not self.is_alive(), "the reconciler did not stop"


@pytest.fixture(scope="module")
def shopify(serve_app):
    app = shopify_app("http://127.0.0.1:9/webhooks/shopify", "sandbox-secret", access_token=TOKEN, plan="plus")
    with serve_app(app, "the Shopify sandbox") as url:
        yield SimpleNamespace(url=url, http=httpx.Client(base_url=url, timeout=10))


@pytest.fixture(scope="module")
async def orders_topics(kafka_bootstrap):
    async with throwaway_topics(kafka_bootstrap) as make:
        yield SimpleNamespace(orders=await make("ops.reconciled-orders"), dead=await make("ops.reconcile-dead"))


def test_reconcile_follows_the_run_with_a_progress_bar_and_names_the_orders_it_fed(
        run_cli, clean, ops_settings, operations_topic, orders_topics, shopify):
    now = datetime.now(UTC).replace(microsecond=0)
    base = int(time.time() * 1000) * 10
    assert shopify.http.post("/_sandbox/reset").status_code == 200
    lost = [order_body(base + i, [Line("MUG-STONE", "Mug", Decimal("12.00"), 1)], taxes_included=True, currency="GBP",
                       updated_at=now - timedelta(minutes=10 - i)) for i in range(7)]
    assert shopify.http.post("/_sandbox/orders", json={"orders": lost}).status_code == 200
    # the schedule has run already: only the operator's command makes a run now
    asyncio.run(_scheduled_already(clean))
    settings = ops_settings.model_copy(update={"shopify_admin_url": shopify.url, "shopify_access_token": SecretStr(TOKEN)})

    by = f"ops-{uuid4().hex[:8]}"
    with ServingReconciler(settings, operations_topic, orders_topics.dead, orders_topics.orders, by) as reconciler:
        result = run_cli("reconcile", "--since", "1h", "--by", by, "--timeout", "60", "--interval", "0.1")
    assert reconciler.error is None, reconciler.error
    assert result.exit_code == 0, result.output
    out = result.output
    assert "reconcile run" in out and "requested: orders updated since" in out
    assert "reading Shopify's orders" in out and "7/7" in out
    assert "7 orders read, 7 fed to the order decider, 0 the integration had seen" in out
    assert f"fed order {base}" in out and f"shopify-prima orders show {base + 6}" in out


async def _scheduled_already(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO ingest.reconcile_runs (run_id, trigger, status, requested_at, started_at) "
                           "VALUES ($1, 'schedule', 'done', now(), now())", uuid4())
    finally:
        await conn.close()


def test_reconcile_reports_a_run_that_failed(run_cli, clean, tap):
    listening = threading.Event()

    class FailsTheRun(threading.Thread):
        """The reconciler's part, as when Shopify refuses its token."""

        def run(self) -> None:
            asyncio.run(self._run())

        async def _run(self) -> None:
            before = await tap.ends()
            listening.set()
            command = (await tap.wait_for(before, "ReconcileOrders")).message
            pool = await asyncpg.create_pool(clean, min_size=1, max_size=1)
            try:
                store = ReconcilerStore(pool)
                await store.request_run(f"operator:{command.requested_by}", command.since, command.run_id)
                await store.start_run(command.run_id, command.since, datetime.now(UTC), None)
                await store.fail_run(command.run_id, "ShopifyAuthError: ReconcileOrders: HTTP 401")
            finally:
                await pool.close()

    fake = FailsTheRun(daemon=True)
    fake.start()
    assert listening.wait(15)
    result = run_cli("reconcile", "--since", "2h", "--timeout", "30", "--interval", "0.1")
    fake.join(30)
    assert result.exit_code == 1
    assert "failed: ShopifyAuthError: ReconcileOrders: HTTP 401" in result.output
