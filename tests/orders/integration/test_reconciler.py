"""The order reconciler (services/shopify/reconciler.py) against the Shopify sandbox served over
HTTP in this process (Shopify's schema, cost and throttle), the Prima sandbox (its own schema),
real Kafka (throwaway topics and consumer groups) and a scratch database (migrated to head).

A paid order whose webhooks were all lost is created in the sandbox with `POST /_sandbox/orders`
(no webhook); the reconciler must find it, feed the fact the ingest builds from a webhook, and
only then move its watermark. Orders the integration has seen are not fed again; the Order
aggregate finds a re-fed order harmless. The orphan watch finds paid orders without a sales order
and Prima sales orders without a Shopify order, and resolves them once fixed."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import REGISTRY
from pydantic import SecretStr

from contracts.platform import ReconcileOrders
from contracts.shopify.orders import ShopifyOrderReceived
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import OrderState
from sandboxes.prima.app import create_app as prima_app
from sandboxes.shopify.app import create_app as shopify_app
from sandboxes.shopify.orders import Line, Shipping, order_body
from services.orders.decider import OrderDecider
from services.platform.kafka import Consumer, Delivery, Outgoing, decode_record, make_broker, publish_all
from services.prima.client import PrimaClient
from services.shopify.admin import ShopifyAdmin
from services.shopify.ingest import _fact, normalize
from services.shopify.reconciler import PAGE_SIZE, WEBHOOK_ID_PREFIX, Reconciler
from services.shopify.reconciler_store import SCHEDULE, ReconcilerStore
from tests.orders.builders import items
from tests.support import throwaway_topics

pytestmark = pytest.mark.integration

TOKEN = "reconciler-test-token"
PRIMA_KEY = "reconciler-test-key"
D = Decimal
VAT = D("0.2")


def at(minutes_ago: float) -> datetime:
    """A time this many minutes ago, to the second (as Shopify stamps its orders)."""
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).replace(microsecond=0)


def paid_order(order_id: int, updated_at: datetime, *, lines: int = 2, financial_status: str = "paid") -> dict:
    """A UK order, VAT included, that adds up as Shopify's do (sandboxes/shopify/orders.py)."""
    body = order_body(
        order_id,
        [Line("TEE-BLK-M" if i % 2 else "MUG-STONE", f"Line {i}", D("12.00"), 1, D("0.00"), [("VAT", VAT, D("2.00"))])
         for i in range(1, lines + 1)],
        Shipping("Royal Mail", D("3.95"), D("0.00"), [("VAT", VAT, D("0.66"))]),
        taxes_included=True, currency="GBP", financial_status=financial_status, updated_at=updated_at,
        name=f"#{order_id % 100000}")
    return body


def refunded_order(order_id: int, updated_at: datetime) -> dict:
    """A paid order, then partly refunded: one tee returned and the shipping refunded (refund_line_items
    and refund_shipping_lines as REST states them, the refund transaction), shipped to an address,
    with a gift card sold on it."""
    body = paid_order(order_id, updated_at)
    tee = body["line_items"][0]
    body["line_items"].append({
        "id": order_id * 100 + 50, "variant_id": None, "product_id": 7001, "title": "Gift card", "name": "Gift card",
        "sku": None, "gift_card": True, "quantity": 1, "current_quantity": 1, "price": "25.00",
        "price_set": {"shop_money": {"amount": "25.00", "currency_code": "GBP"}},
        "discount_allocations": [], "tax_lines": []})
    for key in ("subtotal_price", "total_price", "current_subtotal_price", "current_total_price"):
        amount = f"{Decimal(body[key]) + 25:.2f}"
        body[key], body[f"{key}_set"] = amount, {"shop_money": {"amount": amount, "currency_code": "GBP"}}
    body["financial_status"] = "partially_refunded"
    body["shipping_address"] = {"first_name": "Ada", "last_name": "Byrne", "address1": "1 Quay St", "city": "Galway",
                                "zip": "H91", "country_code": "IE", "province_code": None, "phone": None}
    money = lambda amount: {"shop_money": {"amount": amount, "currency_code": "GBP"}}  # noqa: E731
    body["refunds"] = [{
        "id": order_id * 10 + 1, "order_id": order_id, "created_at": updated_at.isoformat(), "note": "broke in transit",
        "refund_line_items": [{"id": order_id * 10 + 2, "line_item_id": tee["id"], "quantity": 1,
                               "restock_type": "return", "subtotal": "12.00", "subtotal_set": money("12.00"),
                               "total_tax": "2.00", "total_tax_set": money("2.00")}],
        "refund_shipping_lines": [{"id": order_id * 10 + 3, "shipping_line_id": body["shipping_lines"][0]["id"],
                                   "subtotal_amount_set": money("3.95"), "tax_amount_set": money("0.66")}],
        "order_adjustments": [],
        "transactions": [{"id": order_id * 10 + 4, "kind": "refund", "status": "success", "gateway": "shopify_payments",
                          "amount": "15.95", "amount_set": money("15.95")}]}]
    return body


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def shopify(serve_app):
    """The Shopify sandbox on a free port (plan plus: a drained bucket refills in about a second)."""
    app = shopify_app("http://127.0.0.1:9/webhooks/shopify", "sandbox-secret", access_token=TOKEN, plan="plus")
    with serve_app(app, "the Shopify sandbox") as url:
        yield SimpleNamespace(app=app, url=url, http=httpx.Client(base_url=url, timeout=10))


@pytest.fixture(scope="module")
async def prima(serve_app, database_url):
    """The Prima sandbox on a free port, its data in a throwaway schema."""
    schema = f"prima_sandbox_reconciler_{uuid4().hex[:8]}"
    try:
        with serve_app(prima_app(database_url, PRIMA_KEY, schema=schema), "the Prima sandbox") as url:
            yield SimpleNamespace(url=url, http=httpx.Client(base_url=url, timeout=10,
                                                             headers={"Authorization": f"Bearer {PRIMA_KEY}"}))
    finally:
        conn = await asyncpg.connect(database_url)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


@pytest.fixture(scope="module")
async def topics(kafka_bootstrap):
    async with throwaway_topics(kafka_bootstrap) as make:
        yield SimpleNamespace(orders=await make("reconciler.orders"), operations=await make("reconciler.operations"),
                              dead_letters=await make("reconciler.dead-letters"))


@pytest.fixture
async def pool(scratch_pool, shopify):
    await scratch_pool.execute("TRUNCATE ingest.reconciler_state, ingest.reconcile_runs, ingest.reconciled_orders, "
                               "ingest.reconciler_exceptions, readmodel.order_sync")
    assert shopify.http.post("/_sandbox/reset").status_code == 200
    return scratch_pool


@pytest.fixture
def test_settings(settings, shopify, prima, kafka_bootstrap, scratch_url):
    return settings.model_copy(update={
        "shopify_admin_url": shopify.url, "shopify_access_token": SecretStr(TOKEN), "database_url": scratch_url,
        "kafka_bootstrap": kafka_bootstrap, "prima_base_url": prima.url, "prima_api_key": SecretStr(PRIMA_KEY),
        "reconciler_overlap_seconds": 300.0, "reconciler_initial_lookback_seconds": 86_400.0,
        "reconciler_retry_seconds": 0.1, "reconciler_orphan_deadline_seconds": 1800.0,
        "shopify_backoff_initial_seconds": 0.05, "shopify_backoff_max_seconds": 1.0})


@pytest.fixture
async def broker(test_settings):
    broker = make_broker(test_settings, "reconciler-test")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture
async def parts(test_settings, pool, broker, topics):
    admin = ShopifyAdmin(test_settings)
    prima_client = PrimaClient(test_settings)
    made = SimpleNamespace(admin=admin, prima=prima_client, settings=test_settings, pool=pool, broker=broker,
                           topics=topics, publish=lambda out: publish_all(broker, out))

    def reconciler(publish=None) -> Reconciler:
        return Reconciler(test_settings, ReconcilerStore(pool), admin, publish or made.publish, prima_client,
                          orders_topic=topics.orders)

    made.reconciler = reconciler
    yield made
    await admin.aclose()
    await prima_client.aclose()


def hold(shopify, *bodies: dict) -> None:
    """Orders created in Shopify whose every webhook was lost."""
    response = shopify.http.post("/_sandbox/orders", json={"orders": list(bodies)})
    assert response.status_code == 200, response.text


async def run_scheduled(r: Reconciler) -> dict[str, Any]:
    run = await r.store.next_run(datetime.now(UTC), timedelta(minutes=10), timedelta(seconds=0.1))
    assert run is not None and run.trigger == SCHEDULE
    await r.run(run)
    return await r.store.run_row(run.run_id)


async def run_operator(r: Reconciler, since: datetime) -> dict[str, Any]:
    run_id = await r.store.request_run("operator:test", since)
    run = await r.store.next_run(datetime.now(UTC), timedelta(minutes=10), timedelta(seconds=0.1))
    assert run is not None and run.run_id == run_id
    await r.run(run)
    return await r.store.run_row(run_id)


async def facts_on(bootstrap: str, topic: str, expected: int, timeout: float = 20) -> list[tuple[bytes, Any]]:
    """Every ShopifyOrderReceived on the topic (key, fact), once at least `expected` arrived."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[bytes, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                found += [(r.key, decode_record(r, {"ShopifyOrderReceived": ShopifyOrderReceived})) for r in records]
            if len(found) >= expected and not batch:
                break
    finally:
        await consumer.stop()
    return found


# ------------------------------------------------------------------------------ runs


async def test_given_paid_orders_whose_webhooks_were_all_lost_when_a_run_reads_them_then_each_is_the_ingests_fact(
        parts, shopify, topics, kafka_bootstrap):
    base = int(time.time() * 1000) * 10
    bodies = [paid_order(base + 1, at(30)), paid_order(base + 2, at(20), lines=23),  # more lines than a page
              paid_order(base + 3, at(10), financial_status="pending"), refunded_order(base + 4, at(8))]
    for i in range(PAGE_SIZE):  # more orders than a page
        bodies.append(paid_order(base + 10 + i, at(5)))
    hold(shopify, *bodies)
    r = parts.reconciler()

    row = await run_scheduled(r)

    # Then every order is on the topic once, keyed by its id, as the ingest's fact of its webhook
    facts = await facts_on(kafka_bootstrap, topics.orders, len(bodies))
    assert sorted(int(key) for key, _ in facts) == sorted(b["id"] for b in bodies)
    by_id = {fact.order.id: fact for _, fact in facts}
    for body in bodies:
        fact = by_id[body["id"]]
        assert fact.order == normalize(json.dumps(body).encode())  # the ingest's own normalization
        assert fact.topic == "orders/updated" and fact.webhook_id.startswith(f"{WEBHOOK_ID_PREFIX}{body['id']}@")
    assert len(by_id[base + 2].order.line_items) == 23
    refunded = by_id[base + 4].order
    assert [(r.refund_line_items[0].restock_type, r.transactions[0].amount.amount) for r in refunded.refunds] == [
        ("return", Decimal("15.95"))]
    assert refunded.shipping_address.city == "Galway" and refunded.line_items[-1].kind == "gift_card"
    # And the run is done, its progress recorded, the raw orders kept and marked published
    assert (row["status"], row["orders_total"], row["orders_read"], row["orders_fed"], row["orders_known"]) == (
        "done", len(bodies), len(bodies), len(bodies), 0)
    assert row["pages"] == 2  # PAGE_SIZE 5
    kept = await parts.pool.fetch("SELECT shopify_order_id, published_at FROM ingest.reconciled_orders")
    assert len(kept) == len(bodies) and all(k["published_at"] is not None for k in kept)
    # And the watermark is the run's start, stored once Kafka acknowledged
    state = await r.store.state()
    assert state.watermark == row["started_at"] == row["watermark_after"]
    assert row["since"] == row["started_at"] - timedelta(days=1)


async def test_given_orders_the_integration_has_seen_when_runs_read_them_again_then_only_new_versions_are_fed(
        parts, shopify, topics, kafka_bootstrap):
    base = int(time.time() * 1000) * 10
    seen, fed_before, new = paid_order(base + 1, at(30)), paid_order(base + 2, at(20)), paid_order(base + 3, at(10))
    hold(shopify, seen, fed_before)
    # the order read model holds `seen` at its updated_at (its webhook arrived)
    await parts.pool.execute(
        """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, financial_status, first_received_at,
           shopify_updated_at, last_event_at, last_event_version) VALUES ($1, $2, 'in_prima', 'paid', $3, $3, $3, 3)""",
        seen["id"], seen["name"], datetime.fromisoformat(seen["updated_at"]))
    r = parts.reconciler()
    first = await run_operator(r, at(60))
    assert (first["orders_read"], first["orders_fed"], first["orders_known"]) == (2, 1, 1)

    hold(shopify, new)
    second = await run_operator(r, at(60))
    assert (second["orders_read"], second["orders_fed"], second["orders_known"]) == (3, 1, 2)

    changed = {**fed_before, "updated_at": at(1).isoformat(), "financial_status": "partially_refunded"}
    hold(shopify, changed)
    third = await run_operator(r, at(60))
    assert (third["orders_read"], third["orders_fed"], third["orders_known"]) == (3, 1, 2)

    facts = await facts_on(kafka_bootstrap, topics.orders, 3)
    fed: dict[int, list[str]] = {}  # in order per order (its key's partition); orders may interleave
    for _, f in facts:
        if f.order.id in (base + 1, base + 2, base + 3):
            fed.setdefault(f.order.id, []).append(f.order.financial_status)
    assert fed == {base + 2: ["paid", "partially_refunded"], base + 3: ["paid"]}


async def test_given_kafka_does_not_acknowledge_when_a_run_fails_then_the_watermark_stays_and_the_next_run_feeds_it(
        parts, shopify, topics, kafka_bootstrap):
    base = int(time.time() * 1000) * 10
    hold(shopify, paid_order(base + 1, at(15)), paid_order(base + 2, at(14)))

    async def kafka_down(out: list[Outgoing]) -> None:
        raise KafkaTimeoutError("Kafka did not answer")

    failed = await run_scheduled(parts.reconciler(publish=kafka_down))
    assert failed["status"] == "failed" and "KafkaTimeoutError" in failed["error"]
    assert (await parts.pool.fetchval("SELECT count(*) FROM ingest.reconciled_orders WHERE published_at IS NULL")) == 2
    r = parts.reconciler()
    assert (await r.store.state()).watermark is None

    await asyncio.sleep(0.2)  # reconciler_retry_seconds: the schedule tries again by itself
    done = await run_scheduled(r)
    assert (done["status"], done["orders_fed"]) == ("done", 2)
    assert (await r.store.state()).watermark == done["started_at"]
    assert (await parts.pool.fetchval("SELECT count(*) FROM ingest.reconciled_orders WHERE published_at IS NULL")) == 0
    ids = {f.order.id for _, f in await facts_on(kafka_bootstrap, topics.orders, 2)}
    assert {base + 1, base + 2} <= ids


async def test_given_a_drained_cost_bucket_when_a_run_reads_then_it_waits_for_shopify_and_feeds_everything(
        parts, shopify):
    base = int(time.time() * 1000) * 10
    hold(shopify, *[paid_order(base + i, at(20 - i)) for i in range(7)])
    assert shopify.http.post("/_sandbox/faults", json={"drain_bucket": True}).status_code == 200
    assert shopify.http.post("/_sandbox/stats/reset").status_code == 200

    row = await run_scheduled(parts.reconciler())

    stats = shopify.http.get("/_sandbox/stats").json()
    assert (row["status"], row["orders_fed"]) == ("done", 7)
    assert stats["throttled"] + parts.admin.stats.pacing_waits >= 1  # it waited for the bucket, and got through
    assert stats["by_operation"]["ReconcileOrders"] >= 2


async def test_given_an_order_fed_by_its_webhook_and_by_the_reconciler_then_the_order_aggregate_makes_one_request(
        parts, shopify, topics, kafka_bootstrap):
    base = int(time.time() * 1000) * 10
    body = paid_order(base + 1, at(12))
    hold(shopify, body)
    await run_scheduled(parts.reconciler())
    ((_, reconciled),) = [(k, f) for k, f in await facts_on(kafka_bootstrap, topics.orders, 1)
                          if f.order.id == base + 1]
    webhook = _fact(uuid4(), str(uuid4()), "orders/paid", "shop.myshopify.com", {}, datetime.now(UTC),
                    normalize(json.dumps(body).encode()))

    async def item_master(skus):
        return items(*skus)

    orders = OrderApplication()
    decider = OrderDecider(orders, item_master)
    for fact in (webhook, reconciled, reconciled):  # the webhook, then the reconciler's read, redelivered
        await decider.handle([Delivery(fact, topics.orders, 0, 0, str(base + 1).encode())])
    order = orders.find_order(base + 1)
    assert order is not None and order.state is OrderState.SENT and order.commands_issued == 1
    assert order.applied_webhook_ids == [webhook.webhook_id, reconciled.webhook_id]
    orders.close()


async def test_an_operators_reconcile_command_on_kafka_is_run_by_the_serving_reconciler(
        parts, shopify, topics, kafka_bootstrap, test_settings):
    base = int(time.time() * 1000) * 10
    hold(shopify, paid_order(base + 1, at(3)))
    r = parts.reconciler()
    group = f"test-reconciler-{uuid4().hex[:8]}"
    consumer_broker = make_broker(test_settings, "reconciler-test-commands")
    Consumer(consumer_broker, test_settings, group=group, topics=[], accepts=(ReconcileOrders,),
             handler=r.on_command, operations_topic=topics.operations, dead_letter_topic=topics.dead_letters)
    await consumer_broker.start()
    # the schedule has run already: only the operator's command makes a run now
    await parts.pool.execute("INSERT INTO ingest.reconcile_runs (run_id, trigger, status, requested_at, started_at) "
                             "VALUES ($1, 'schedule', 'done', now(), now())", uuid4())
    stop = asyncio.Event()
    serving = asyncio.create_task(r.serve(stop, poll_seconds=0.1))
    try:
        command = ReconcileOrders(command_id=uuid4(), requested_by="alice", requested_at=datetime.now(UTC),
                                  run_id=uuid4(), since=at(10))
        await publish_all(parts.broker, [Outgoing(topics.operations, str(command.run_id).encode(), command)])
        deadline = time.monotonic() + 30
        row = None
        while time.monotonic() < deadline:
            row = await r.store.run_row(command.run_id)
            if row and row["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.2)
        assert row is not None and (row["status"], row["trigger"], row["orders_fed"]) == ("done", "operator:alice", 1)
    finally:
        stop.set()
        await serving
        await consumer_broker.stop()


async def test_a_run_interrupted_midway_is_run_again_under_its_own_id_when_the_reconciler_recovers(parts):
    r = parts.reconciler()
    operator = await r.store.request_run("operator:bob", at(60))
    scheduled = await r.store.request_run(SCHEDULE, None)
    for run_id in (operator, scheduled):
        await r.store.start_run(run_id, at(60), datetime.now(UTC), None)
    assert await r.store.recover_interrupted() == [operator]
    rows = {run_id: await r.store.run_row(run_id) for run_id in (operator, scheduled)}
    assert rows[operator]["status"] == "requested" and rows[operator]["started_at"] is None
    assert rows[scheduled]["status"] == "failed" and "interrupted" in rows[scheduled]["error"]


# ------------------------------------------------------------------------------ the orphan watch


async def read_model_order(pool, order_id: int, *, financial_status: str, first_seen: datetime,
                           sales_order: str | None = None, state: str = "sent") -> None:
    await pool.execute(
        """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, financial_status,
           prima_sales_order_number, first_received_at, shopify_updated_at, last_event_at, last_event_version)
           VALUES ($1, $2, $3, $4, $5, $6, $6, $6, 2)""",
        order_id, f"#{order_id % 100000}", state, financial_status, sales_order, first_seen)


def gauge(kind: str) -> float:
    return REGISTRY.get_sample_value("shopify_prima_reconciler_exceptions_open", {"kind": kind})


async def test_given_paid_orders_without_a_sales_order_past_the_deadline_then_they_are_orphans_until_they_have_one(
        parts):
    base = int(time.time() * 1000) * 10
    late, recent, done, unpaid = base + 1, base + 2, base + 3, base + 4
    await read_model_order(parts.pool, late, financial_status="paid", first_seen=at(45))
    await read_model_order(parts.pool, recent, financial_status="paid", first_seen=at(5))
    await read_model_order(parts.pool, done, financial_status="paid", first_seen=at(90), sales_order="SO-1",
                           state="in_prima")
    await read_model_order(parts.pool, unpaid, financial_status="pending", first_seen=at(90), state="awaiting_payment")
    r = parts.reconciler()

    assert await r.watch_paid_orders(datetime.now(UTC)) == [late]
    (record,) = await r.store.open_exceptions("paid_without_sales_order")
    assert record["shopify_order_id"] == late and "no Prima sales order" in record["reason"]
    assert record["action"] == (f"shopify-prima orders show {late}: fix what holds it (its exception), then "
                                f"shopify-prima orders release {late}")
    await r.refresh_gauges()
    assert gauge("paid_without_sales_order") == 1

    # the order gets its sales order: the next watch resolves the exception
    await parts.pool.execute("UPDATE readmodel.order_sync SET prima_sales_order_number = 'SO-2', state = 'in_prima' "
                             "WHERE shopify_order_id = $1", late)
    assert await r.watch_paid_orders(datetime.now(UTC)) == []
    assert await r.store.open_exceptions("paid_without_sales_order") == []
    assert await parts.pool.fetchval("SELECT status FROM ingest.reconciler_exceptions WHERE shopify_order_id = $1",
                                     late) == "resolved"


def create_sales_order(prima, reference: str) -> str:
    body = {"external_reference": reference, "order_name": "#1", "currency": "GBP", "taxes_included": True,
            "order_date": "2026-11-02T10:00:00Z", "customer_email": None,
            "lines": [{"line_number": 1, "item_id": "ITM-0003", "sku": "MUG-STONE", "description": "Stoneware mug",
                       "quantity": 1, "unit_price": "12.50", "discount_amount": "0", "tax_amount": "2.08",
                       "net_amount": "12.50"}],
            "shipping": None, "totals": {"lines_net": "12.50", "shipping_net": "0", "tax": "2.08", "total": "12.50"}}
    response = prima.http.post("/v1/sales-orders", json=body, headers={"Idempotency-Key": f"k-{reference}"})
    assert response.status_code == 201, response.text
    return response.json()["sales_order_number"]


async def test_given_prima_sales_orders_whose_shopify_order_does_not_exist_then_they_are_orphans_until_it_does(
        parts, shopify, prima):
    base = int(time.time() * 1000) * 10
    in_shopify, seen, nowhere = base + 1, base + 2, base + 3
    hold(shopify, paid_order(in_shopify, at(5)))
    await read_model_order(parts.pool, seen, financial_status="paid", first_seen=at(5), sales_order="x")
    numbers = {ref: create_sales_order(prima, ref) for ref in (str(in_shopify), str(seen), str(nowhere),
                                                               f"manual-{base}")}
    r = parts.reconciler()

    orphans = await r.watch_prima_sales_orders(datetime.now(UTC))

    assert orphans == sorted([numbers[str(nowhere)], numbers[f"manual-{base}"]])
    records = {e["sales_order_number"]: e for e in await r.store.open_exceptions("sales_order_without_shopify_order")}
    assert records[numbers[str(nowhere)]]["shopify_order_id"] == nowhere
    assert f"names Shopify order {nowhere}, which Shopify does not have" in records[numbers[str(nowhere)]]["reason"]
    assert "not a Shopify order id" in records[numbers[f"manual-{base}"]]["reason"]
    checked = (await r.store.state()).prima_checked_until
    assert checked is not None

    # the Shopify order turns up (it was created late): the next watch resolves its exception
    hold(shopify, paid_order(nowhere, at(1)))
    assert await r.watch_prima_sales_orders(datetime.now(UTC)) == [numbers[f"manual-{base}"]]
    assert [e["sales_order_number"] for e in await r.store.open_exceptions("sales_order_without_shopify_order")] == [
        numbers[f"manual-{base}"]]
