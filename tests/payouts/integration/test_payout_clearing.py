"""Payments through other gateways (issue 11), through real PostgreSQL (a throwaway database with
the migrations, never the stack's): order webhooks' facts, parsed from Shopify's own sample body
with their `payment_gateway_names`, into the payment-gateways read model (the projection as the
projector runs it: positions, a redelivery, a late older version, a later version that names no
gateway); the orders' events into the sales-documents read model; two Shopify payouts decided by
the payout decider (the real PayoutApplication, documents read from PostgreSQL), posted, and
relayed into the payout read model; then the month-end report, by the ops API (the clearing
accounts from its settings), in CSV and by the CLI over HTTP: the month's sales orders tie out to
Shopify Payments' payouts plus each other gateway's clearing account plus the differences named,
every figure computed by hand."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from contracts.orders.events import OrderReceived, SalesOrderCreated
from contracts.shopify.orders import ShopifyOrder, ShopifyOrderReceived
from contracts.topics import ORDER_EVENTS, PAYOUT_EVENTS, SHOPIFY_ORDERS
from domain.payouts.application import PayoutApplication
from domain.payouts.clearing import ClearingAccounts
from domain.payouts.domainmodel import PayoutPolicy
from domain.payouts.values import JournalPostedByPrima
from projections.payouts import PaymentGatewaysProjection, PayoutsProjection
from projections.sales_documents import SalesDocumentsProjection
from services.ops import api as ops_api
from services.ops import cli
from services.ops.payout_routes import month_report, report_csv
from services.payouts.decider import PayoutDecider, documents_for
from services.payouts.outbox import PAYOUT_RELAY
from services.platform.kafka import Delivery
from services.platform.outbox import Relay
from tests.payouts.builders import SAMPLES, payout, read, transfer, tx
from tests.support import scratch_database, throwaway_topics

pytestmark = pytest.mark.integration
D = Decimal
SAMPLE = json.loads((SAMPLES / "orders-create-test-notification.json").read_text())  # total 403.00 USD
CREATED = datetime(2026, 11, 10, 15, 0, tzinfo=UTC)  # the sales orders' creation in Prima: November
COD = "Cash on Delivery (COD)"
OWN_ACCOUNTS = ClearingAccounts({"shopify_payments": "payouts", "paypal": "1250", "gift_card": "2400",
                                 "manual": "1260", COD: "1265"})


@pytest.fixture(scope="module")
async def scratch_url(database_url):
    async with scratch_database(database_url, "payouts_clearing") as url:
        yield url


@pytest.fixture(scope="module")
async def pool(scratch_url):
    made = await asyncpg.create_pool(scratch_url, min_size=1, max_size=4)
    yield made
    await made.close()


@pytest.fixture(scope="module")
async def operations_topic(kafka_bootstrap):
    async with throwaway_topics(kafka_bootstrap) as make:
        yield await make("payouts-clearing.operations", partitions=1)


@pytest.fixture(scope="module")
def ops_settings(settings, scratch_url, kafka_bootstrap):
    return settings.model_copy(update={"database_url": scratch_url, "kafka_bootstrap": kafka_bootstrap,
                                       "payout_clearing_accounts": OWN_ACCOUNTS})


def webhook(order_id: int, gateways: list[str] | None, updated_at: datetime) -> ShopifyOrderReceived:
    """An orders/paid webhook as the ingest publishes it: Shopify's sample body, this order's id,
    gateways (None: the body without the field) and time, parsed as the ingest parses it."""
    body = {**SAMPLE, "id": order_id, "name": f"#C{order_id}", "updated_at": updated_at.isoformat(),
            "financial_status": "paid"}
    if gateways is None:
        body.pop("payment_gateway_names")
    else:
        body["payment_gateway_names"] = gateways
    return ShopifyOrderReceived(webhook_id=str(uuid.uuid4()), topic="orders/paid", shop_domain="test.myshopify.com",
                                received_at=updated_at, raw_payload_id=uuid.uuid4(),
                                order=ShopifyOrder.from_json(json.dumps(body)))


def order_events(received: ShopifyOrderReceived, n: int) -> list[Any]:
    """The order's OrderReceived and SalesOrderCreated, as the order relay publishes them."""
    order = received.order
    aggregate = uuid.uuid5(uuid.NAMESPACE_URL, f"test-order/{order.id}")
    common = {"shopify_order_id": order.id, "aggregate_id": aggregate, "notification_id": n}
    return [OrderReceived(event_id=uuid.uuid4(), aggregate_version=1, timestamp=CREATED - timedelta(minutes=1),
                          order_name=order.name, webhook_id=received.webhook_id, webhook_topic=received.topic,
                          received_at=received.received_at, order=order, **common),
            SalesOrderCreated(event_id=uuid.uuid4(), aggregate_version=2, timestamp=CREATED, command_id=uuid.uuid4(),
                              sales_order_number=f"SO-{order.id}", status="open", occurred_at=CREATED, **common)]


async def project(projection: Any, topic: str, messages: list[Any], offset: int | None = None) -> None:
    """Deliver as the projector does: one batch at the offsets after the stored position (or at `offset`)."""
    start = (await projection.positions(projection.pool)).get(0, 0) if offset is None else offset
    await projection.handle([Delivery(m, topic, 0, start + i, None) for i, m in enumerate(messages)])


async def journalled_payout(decider: PayoutDecider, payouts: PayoutApplication, payout_id: int, issued_at: datetime,
                            charges: list[tuple[int, str, str]]) -> None:
    """A paid payout of these charges (order, amount, fee) read, decided, and posted by Prima."""
    net = sum((D(a) - D(f) for _, a, f in charges), D("0.00"))
    header = payout(str(net), payout_id=payout_id, issued_at=issued_at)
    transactions = [tx("CHARGE", a, f, order=o, id_=payout_id + i) for i, (o, a, f) in enumerate(charges, start=1)]
    await decider.decide(read(header, [*transactions, transfer(header)], at=issued_at))
    found = payouts.find_payout(payout_id)
    assert found.command is not None, found.hold
    await decider.decide([JournalPostedByPrima(command_id=found.command.command_id, payout_id=payout_id,
                                               journal_number=f"JN-{payout_id}", occurred_at=issued_at)])


async def relay_payouts(settings: Any, payouts: PayoutApplication, pool: asyncpg.Pool) -> None:
    relay = Relay(PAYOUT_RELAY, settings, broker=None, app=payouts)
    out, position = [], 0
    while True:
        batch, last = relay.read(position)
        if last is None:
            break
        out += batch
        position = last
    await project(PayoutsProjection(pool), PAYOUT_EVENTS.name, [o.message for o in out if o.topic == PAYOUT_EVENTS.name])


async def test_given_orders_paid_through_several_gateways_the_months_sales_tie_out_per_clearing_account(
        pool, settings, ops_settings, operations_topic, ops_headers, serve_app, monkeypatch, tmp_path):
    base = time.time_ns() // 1000
    a, b, c, d, e, f, g, h = (base + i for i in range(8))
    paid = CREATED - timedelta(hours=1)
    gateways = {a: ["shopify_payments"], b: ["paypal"], c: ["gift_card", "shopify_payments"], d: ["manual"],
                e: None, f: [COD], g: ["shopify_payments"], h: ["shopify_payments"]}
    facts = {o: webhook(o, names, paid) for o, names in gateways.items()}

    # the payment gateways, from the order facts
    gateways_read_model = PaymentGatewaysProjection(pool)
    await project(gateways_read_model, SHOPIFY_ORDERS.name, list(facts.values()))
    await project(gateways_read_model, SHOPIFY_ORDERS.name, [facts[b]], offset=0)  # redelivered: skipped
    await project(gateways_read_model, SHOPIFY_ORDERS.name, [
        webhook(b, ["manual"], paid - timedelta(hours=2)),  # an older version, late: changes nothing
        webhook(a, [], paid + timedelta(hours=1)),  # a later version naming none: the names stand
    ])
    rows = {r["shopify_order_id"]: (r["gateway_names"], r["order_updated_at"]) for r in await pool.fetch(
        "SELECT shopify_order_id, gateway_names, order_updated_at FROM readmodel.order_payment_gateways "
        "WHERE shopify_order_id = ANY($1::bigint[])", list(gateways))}
    assert {o: names for o, (names, _) in rows.items()} == {o: names or [] for o, names in gateways.items()}
    assert rows[a][1] == paid + timedelta(hours=1) and rows[b][1] == paid
    assert (await gateways_read_model.positions(pool)) == {0: 10}

    # their sales orders, from the order events
    events = [event for n, fact in enumerate(facts.values()) for event in order_events(fact, n)]
    await project(SalesDocumentsProjection(pool), ORDER_EVENTS.name, events)

    # Shopify Payments: A in full and C's card part in a November payout; G in a December one; H in none
    payouts = PayoutApplication()
    try:
        decider = PayoutDecider(payouts, lambda ids: documents_for(pool, ids),
                                PayoutPolicy(documents_grace=timedelta(0)))
        await journalled_payout(decider, payouts, base + 100, datetime(2026, 11, 20, tzinfo=UTC),
                                [(a, "403.00", "11.99"), (c, "300.00", "9.00")])
        await journalled_payout(decider, payouts, base + 200, datetime(2026, 12, 2, tzinfo=UTC),
                                [(g, "403.00", "11.99")])
        await relay_payouts(settings, payouts, pool)
    finally:
        payouts.close()

    # C's card charge (300.00 of 403.00) matches its sales order: the order names a gift card too
    matched = {r["order_id"]: (r["match_status"], r["reason"]) for r in await pool.fetch(
        "SELECT order_id, match_status, reason FROM readmodel.payout_transactions WHERE payout_id = $1 "
        "AND type = 'CHARGE'", base + 100)}
    assert matched == {a: ("matched", None), c: ("matched", None)}

    # by hand, 8 orders of 403.00 = 3,224.00: paid out 403.00 (A) + 300.00 (C) = 703.00; clearing
    # PayPal 403.00 (B), gift card 103.00 (C's rest), manual 403.00 (D); differences: G paid out in
    # December 403.00, H awaiting its payout 403.00, E's gateways never recorded 403.00, and F's
    # gateway without a clearing account 403.00 (the default mapping) or on 1265 (the ops API's)
    # (other rows of the month in this database: none; it is this module's own)
    report = await month_report(pool, "2026-11")
    [tie] = report["sales_tie_out"]
    assert (tie["currency"], tie["sales_orders"], tie["sales_orders_total"]) == ("USD", 8, "3224.00")
    assert tie["shopify_payments_paid_out"] == "703.00"
    assert [(x["gateway"], x["account"], x["amount"], x["orders"]) for x in tie["clearing"]] == [
        ("paypal", "1250", "403.00", 1), ("manual", "1260", "403.00", 1), ("gift_card", "2400", "103.00", 1)]
    assert tie["clearing_total"] == "909.00"
    assert [(x["kind"], x["gateway"], x["amount"], x["orders"]) for x in tie["differences"]] == [
        ("paid_out_later", None, "403.00", 1), ("awaiting_payout", None, "403.00", 1),
        ("unmapped_gateway", "cash on delivery (cod)", "403.00", 1), ("gateway_not_recorded", None, "403.00", 1)]
    assert all(x["explanation"] for x in tie["differences"])
    assert (tie["explained"], tie["difference"]) == ("3224.00", "0.00")

    # the ops API with its configured clearing accounts; the CSV; the CLI over HTTP
    app = ops_api.create_app(ops_settings, operations_topic=operations_topic)
    with TestClient(app, headers=ops_headers) as client:
        [by_api] = client.get("/payouts/report", params={"month": "2026-11"}).json()["sales_tie_out"]
        exported_by_api = client.get("/payouts/report", params={"month": "2026-11", "format": "csv"})
        unpaid = client.get("/payouts/unpaid-orders", params={"days": 1}).json()["orders"]
    # paid but never paid out: H (Shopify Payments, in no payout) and E (gateways not known); never
    # B, D or F, whose gateways never pay out through Shopify (their money is on a clearing account)
    assert sorted(o["shopify_order_id"] for o in unpaid) == [e, h]
    csv = exported_by_api.text
    assert [(x["gateway"], x["account"], x["amount"]) for x in by_api["clearing"]] == [
        ("paypal", "1250", "403.00"), ("manual", "1260", "403.00"), ("cash on delivery (cod)", "1265", "403.00"),
        ("gift_card", "2400", "103.00")]
    assert "unmapped_gateway" not in {x["kind"] for x in by_api["differences"]}
    assert (by_api["clearing_total"], by_api["difference"]) == ("1312.00", "0.00")
    assert "sales_tie_out,,clearing 1265,USD,,,403.00,cash on delivery (cod),1 orders:" in csv
    assert "sales_tie_out,,difference,USD,,,0.00,,sales orders 3224.00 - explained 3224.00" in csv
    assert report_csv(report).count("\nsales_tie_out,") == 1 + 1 + 3 + 4 + 1

    with serve_app(ops_api.create_app(ops_settings, operations_topic=operations_topic), "the ops API") as url:
        monkeypatch.setattr(cli, "_ops_url", lambda: url)
        shown = CliRunner().invoke(cli.app, ["payouts", "report", "--month", "2026-11"], env={"COLUMNS": "250"})
        assert shown.exit_code == 0, shown.output
        exported = tmp_path / "report.csv"
        written = CliRunner().invoke(cli.app, ["payouts", "report", "--month", "2026-11", "--csv", str(exported)])
        assert written.exit_code == 0, written.output
    assert "sales orders of 2026-11 (USD): 8 orders, 3224.00" in shown.output
    assert "USD: sales orders 3224.00 = paid out 703.00 + clearing 1312.00 + differences (difference 0.00)" in \
        shown.output
    assert "cash on delivery (cod)" in shown.output and "1265" in shown.output
    assert exported.read_bytes() == exported_by_api.content
