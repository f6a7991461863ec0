"""The payout flow (issue 11) through the real pieces: an order paid through the order decider
and the Prima gateway (a Prima sandbox of its own over HTTP, real PostgreSQL), its events into the
sales-documents read model; a payout seeded in a Shopify sandbox over HTTP, read by the payout
ingest with the Admin client (the integration's GraphQL documents, cost-throttled) and published
to Kafka (a topic of its own), read back and decided by the payout decider; the PostJournal the
relay puts on prima.commands.v1 sent by the Prima gateway; Prima's answer back to the decider;
the Payout's events into the payout reconciliation read model. Every table is in a throwaway
database (the migrations), never the stack's.

- a paid order, then a payout covering it: one journal in Prima, equal to the hand-computed one,
  balanced, its bank line the deposit; the charge matched to the sales order; reconciled, as the
  ops API and the month's report (JSON and CSV) show it;
- the same PostJournal sent again: still one journal (the payout's idempotency key);
- the payout then fails: read again, a reversing journal in Prima, the posted one untouched;
- a refund credited in Prima (the order lifecycle's credit memo), then a payout with the charge
  and the refund: the refund debited, matched to its credit memo, the charge to its sales order;
- a payout journalled with a charge on the clearing account (its order not seen yet), then the
  order paid and the sweep's re-match: a reclassification journal in Prima moving the charge to
  sales, shipping, discounts and tax, the payout reconciled, a later re-match adding nothing;
- Shopify's own sample (its transactions do not add up), read on an operator's request through
  the ops API: held with the difference, no journal; released without a fix, held again."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, TypeAdapter
from typer.testing import CliRunner

from contracts.platform import ReleasePayout, RequestPayoutIngest
from contracts.prima.credit_memos import PrimaCreditMemoCreated
from contracts.prima.journals import PostJournal, PrimaJournalPosted
from contracts.prima.sales_orders import PrimaSalesOrderCreated
from contracts.shopify.orders import ShopifyOrderReceived
from contracts.shopify.payouts import ShopifyPayoutFact
from contracts.shopify.refunds import ShopifyRefundReceived
from contracts.topics import (
    ORDER_EVENTS,
    PAYOUT_EVENTS,
    PRIMA_COMMANDS,
    PRIMA_OUTCOMES,
    SHOPIFY_ORDERS,
    SHOPIFY_PAYOUTS,
)
from domain.orders.application import OrderApplication
from domain.orders.policy import OrderPolicy
from domain.payouts.application import PayoutApplication
from domain.payouts.values import RematchRequested
from projections import payouts as payouts_read_model
from projections import sales_documents
from projections.payouts import PayoutsProjection
from projections.sales_documents import SalesDocumentsProjection
from sandboxes.prima.app import create_app as create_prima
from sandboxes.shopify.app import create_app as create_shopify
from services.ops import api as ops_api
from services.ops import cli
from services.orders.decider import OrderDecider
from services.orders.translate import (
    wire_command,
    wire_memo_command,
    wire_order,
    wire_refund,
)
from services.payouts.decider import PayoutDecider, policy_of
from services.payouts.ingest import PayoutIngest
from services.payouts.outbox import PAYOUT_RELAY
from services.platform.kafka import Delivery, Outgoing, make_broker, publish_all
from services.platform.outbox import Relay
from services.platform.parking import ParkedCommands, RedriveSchedule
from services.platform.settings import Settings
from services.prima.client import PrimaClient
from services.prima.gateway import PrimaGateway
from services.shopify.admin import ShopifyAdmin
from tests.inventory.integration.support import end_offsets, published_since
from tests.ops.support import OperationsTap
from tests.orders.builders import (
    ITEMS,
    NOW,
    SKUS,
    refunded,
    transaction,
    us_tax_exclusive,
)
from tests.orders.integration.relayed import order_events
from tests.support import scratch_database, throwaway_topics

pytestmark = pytest.mark.integration
D = Decimal
SCHEMA = f"prima_payouts_{uuid.uuid4().hex[:8]}"
KEY = "payouts-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TOKEN = "payouts-test-token"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "shopify"
FACTS = TypeAdapter(ShopifyPayoutFact)


@pytest.fixture(scope="module")
async def scratch_url(database_url):
    async with scratch_database(database_url, "payouts") as url:
        yield url


@pytest.fixture(scope="module")
async def scratch_pool(scratch_url):
    pool = await asyncpg.create_pool(scratch_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def operations_topic(kafka_bootstrap):
    async with throwaway_topics(kafka_bootstrap) as make:
        yield await make("payouts.operations", partitions=1)


@pytest.fixture(scope="module")
def ops(settings, scratch_url, kafka_bootstrap, operations_topic, ops_headers):
    """The ops API in-process on the throwaway database, its commands to a topic of its own."""
    app = ops_api.create_app(settings.model_copy(update={"database_url": scratch_url,
                                                         "kafka_bootstrap": kafka_bootstrap}),
                             operations_topic=operations_topic)
    with TestClient(app, headers=ops_headers) as client:
        yield client


@pytest.fixture(scope="module")
async def prima_url(serve_app, database_url):
    """A Prima sandbox of its own that knows the order builders' items."""
    try:
        with serve_app(create_prima(database_url, KEY, schema=SCHEMA), "the Prima sandbox") as url:
            async with httpx.AsyncClient(base_url=url) as http:
                (await http.put("/_sandbox/items", json={"items": [
                    {"item_id": f"ITM-{sku}", "sku": sku, "description": sku, "item_type": "stock"} for sku in SKUS
                ]})).raise_for_status()
            yield url
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def ops_url(settings, scratch_url, kafka_bootstrap, operations_topic, serve_app):
    """The same ops API over HTTP, for the CLI."""
    app = ops_api.create_app(settings.model_copy(update={"database_url": scratch_url,
                                                         "kafka_bootstrap": kafka_bootstrap}),
                             operations_topic=operations_topic)
    with serve_app(app, "the ops API") as url:
        yield url


@pytest.fixture
def run_cli(ops_url, monkeypatch):
    monkeypatch.setattr(cli, "_ops_url", lambda: ops_url)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli.app, list(args), env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def shopify_url(serve_app):
    """A Shopify sandbox of its own (its payouts are seeded by each test)."""
    with serve_app(create_shopify("http://127.0.0.1:9/webhooks/shopify", "sandbox-secret", access_token=TOKEN),
                   "the Shopify sandbox") as url:
        yield url


@pytest.fixture
def flow_settings(settings, prima_url, shopify_url, kafka_bootstrap) -> Settings:
    return settings.model_copy(update={
        "prima_base_url": prima_url, "prima_api_key": SecretStr(KEY), "prima_max_attempts": 3,
        "prima_backoff_initial_seconds": 0.01, "prima_backoff_max_seconds": 0.01, "prima_timeout_seconds": 5.0,
        "shopify_admin_url": shopify_url, "shopify_access_token": SecretStr(TOKEN), "kafka_bootstrap": kafka_bootstrap,
    })


class Flow:
    """The pieces of the flow, each as its process runs it, wired by hand in the order Kafka would."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, gateway: PrimaGateway, admin: ShopifyAdmin,
                 publish: Any) -> None:
        self.settings, self.pool, self.gateway = settings, pool, gateway
        self.orders = OrderApplication()
        self.payouts = PayoutApplication()

        async def lookup(skus: Any) -> dict[str, Any]:
            return dict(ITEMS)

        self.order_decider = OrderDecider(self.orders, lookup, policy=OrderPolicy())
        self.payout_decider = PayoutDecider(self.payouts, lambda ids: sales_documents.documents_for(pool, ids),
                                            policy_of(settings),
                                            lambda: payouts_read_model.payouts_with_unmatched(pool))
        self.ingest = PayoutIngest(settings, admin, pool, publish)
        self.sales_documents = SalesDocumentsProjection(pool)
        self.read_model = PayoutsProjection(pool)
        self.relayed = 0  # the payout relay's position in the notification log

    def close(self) -> None:
        self.orders.close()
        self.payouts.close()

    async def to_prima(self, commands: list[Any]) -> list[Any]:
        """The gateway sends the commands; Prima's outcomes, as published on prima.outcomes.v1."""
        published: list[Outgoing] = self.gateway.published  # type: ignore[attr-defined]
        published.clear()
        await self.gateway.handle([Delivery(c, PRIMA_COMMANDS.name, 0, i, None) for i, c in enumerate(commands)])
        return [o.message for o in published]

    async def order_paid(self, snapshot: Any) -> str:
        """orders/paid through the order decider and Prima; its events into the sales documents."""
        message = ShopifyOrderReceived(webhook_id=str(uuid.uuid4()), topic="orders/paid",
                                       shop_domain="test.myshopify.com", received_at=NOW,
                                       raw_payload_id=uuid.uuid4(), order=wire_order(snapshot))
        await self.order_decider.handle([Delivery(message, SHOPIFY_ORDERS.name, 0, 0, None)])
        order = self.orders.find_order(snapshot.shopify_order_id)
        [created] = await self.to_prima([wire_command(order.command)])
        assert isinstance(created, PrimaSalesOrderCreated)
        await self.order_decider.handle([Delivery(created, PRIMA_OUTCOMES.name, 0, 0, None)])
        events = order_events(self.orders, self.settings, snapshot.shopify_order_id)
        await self.project(self.sales_documents, ORDER_EVENTS.name, events)
        return created.sales_order_number

    async def refund(self, refund: Any) -> str:
        """refunds/create through the order decider and Prima (a credit memo); the order's events
        into the sales documents again (the projection takes each event once)."""
        message = ShopifyRefundReceived(webhook_id=str(uuid.uuid4()), shop_domain="test.myshopify.com",
                                        received_at=NOW, raw_payload_id=uuid.uuid4(), refund=wire_refund(refund))
        await self.order_decider.handle([Delivery(message, SHOPIFY_ORDERS.name, 0, 0, None)])
        order = self.orders.find_order(refund.shopify_order_id)
        [created] = await self.to_prima([wire_memo_command(m.command) for m in order.memos.values()
                                         if m.command is not None])
        assert isinstance(created, PrimaCreditMemoCreated)
        await self.order_decider.handle([Delivery(created, PRIMA_OUTCOMES.name, 0, 0, None)])
        events = order_events(self.orders, self.settings, refund.shopify_order_id)
        await self.project(self.sales_documents, ORDER_EVENTS.name, events)
        return created.credit_memo_number

    async def project(self, projection: Any, topic: str, messages: list[Any]) -> None:
        """Deliver as the projector does: one batch at the offsets after the stored position."""
        start = (await projection.positions(projection.pool)).get(0, 0)
        await projection.handle([Delivery(m, topic, 0, start + i, None) for i, m in enumerate(messages)])

    async def relay(self) -> list[PostJournal]:
        """The payout relay: new Payout events into the read model; the PostJournal commands."""
        relay = Relay(PAYOUT_RELAY, self.settings, broker=None, app=self.payouts)
        out: list[Outgoing] = []
        while True:
            batch, last = relay.read(self.relayed)
            if last is None:
                break
            out += batch
            self.relayed = last
        await self.project(self.read_model, PAYOUT_EVENTS.name,
                           [o.message for o in out if o.topic == PAYOUT_EVENTS.name])
        return [o.message for o in out if o.topic == PRIMA_COMMANDS.name]


@pytest.fixture
async def flow(flow_settings, scratch_pool, kafka_bootstrap):
    client = PrimaClient(flow_settings)
    admin = ShopifyAdmin(flow_settings)
    published: list[Outgoing] = []

    async def gateway_publish(messages: list[Outgoing]) -> None:
        published.extend(messages)

    gateway = PrimaGateway(flow_settings, client, ParkedCommands(scratch_pool, RedriveSchedule.from_settings(flow_settings)),
                           gateway_publish)
    gateway.published = published  # type: ignore[attr-defined]
    broker = make_broker(flow_settings, "payout-flow-test")
    async with throwaway_topics(kafka_bootstrap) as make:
        topic = await make("payouts", partitions=1)

        async def publish(messages: list[Outgoing]) -> int:
            """The ingest's publish, to this test's topic instead of shopify.payouts.v1."""
            assert {m.topic for m in messages} == {SHOPIFY_PAYOUTS.name}
            return await publish_all(broker, [replace(m, topic=topic) for m in messages])

        await broker.start()
        made = Flow(flow_settings, scratch_pool, gateway, admin, publish)
        made.topic = topic  # type: ignore[attr-defined]
        try:
            yield made
        finally:
            made.close()
            await broker.stop()
            await admin.aclose()
            await client.aclose()


async def ingest(flow: Flow, kafka_bootstrap: str, payout_id: int, command: Any = None) -> list[Any]:
    """A poll of the ingest for one payout (or the operator's RequestPayoutIngest handled); what it
    put on Kafka, read back and decoded."""
    mark = await end_offsets(kafka_bootstrap, flow.topic, partitions=1)  # type: ignore[attr-defined]
    if command is None:
        assert (await flow.ingest.poll(payout_id=payout_id)).payouts_read == [payout_id]
    else:
        await flow.ingest.on_command([Delivery(command, "operations", 0, 0, None)])
    records = await published_since(kafka_bootstrap, mark)
    assert {r.key for r in records} == {f"payout:{payout_id}".encode()}
    return [FACTS.validate_json(r.value) for r in records]


async def seed(shopify_url: str, payout: dict[str, Any], transactions: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=shopify_url) as http:
        response = await http.post("/_sandbox/payouts", json={"payouts": [{"payout": payout,
                                                                           "transactions": transactions}]})
        assert response.status_code == 200, response.text


async def journals(prima_url: str, reference: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=prima_url, headers=AUTH) as http:
        response = await http.get("/v1/journals", params={"external_reference": reference})
        response.raise_for_status()
        return response.json()["journals"]


def rest_transaction(id_: int, type_: str, amount: str, fee: str, payout_id: int, *, order: int | None = None,
                     order_transaction: int | None = None, source_id: int | None = None,
                     source_type: str | None = None) -> dict[str, Any]:
    return {"id": id_, "type": type_, "test": False, "payout_id": payout_id, "payout_status": "paid",
            "currency": "USD", "amount": amount, "fee": fee, "net": str(D(amount) - D(fee)),
            "source_id": source_id, "source_type": source_type or type_, "source_order_id": order,
            "source_order_transaction_id": order_transaction, "processed_at": "2026-11-27T10:00:00-05:00"}


def lines_of(journal: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    return sorted((line["account"], str(line["debit"]), str(line["credit"]), line.get("tax_code"))
                  for line in journal["lines"])


async def test_given_a_paid_order_when_its_payout_is_paid_then_prima_holds_one_hand_computed_journal_reconciled(
        flow, flow_settings, prima_url, shopify_url, scratch_pool, kafka_bootstrap, ops, run_cli, tmp_path):
    order_id = time.time_ns() // 1000
    capture = order_id + 7
    payout_id = order_id + 11
    # New York, tax on top: 70.95 of goods less 5.00 off, 7.95 shipping less 2.00 off, 6.39 tax: 78.29
    snapshot = us_tax_exclusive(order_id, transactions=[transaction("capture", amount=D("78.29"), currency="USD",
                                                                    transaction_id=capture)])
    sales_order = await flow.order_paid(snapshot)

    await seed(shopify_url, {"id": payout_id, "status": "paid", "date": "2026-11-28", "currency": "USD",
                             "amount": "75.72"},
               [rest_transaction(payout_id + 1, "charge", "78.29", "2.57", payout_id, order=order_id,
                                 order_transaction=capture),
                rest_transaction(payout_id + 2, "payout", "-75.72", "0.00", payout_id, source_id=payout_id,
                                 source_type="payout")])
    facts = await ingest(flow, kafka_bootstrap, payout_id)
    assert [f.message_type for f in facts] == ["ShopifyPayoutTransactionsRead", "ShopifyPayoutObserved"]
    assert facts[-1].transaction_count == 2 and facts[-1].payout.net.amount == D("75.72")
    recorded = await scratch_pool.fetchrow("SELECT status, net, transaction_count FROM ingest.shopify_payouts "
                                           "WHERE payout_id = $1", payout_id)
    assert dict(recorded) == {"status": "PAID", "net": D("75.72"), "transaction_count": 2}

    await flow.payout_decider.handle([Delivery(f, SHOPIFY_PAYOUTS.name, 0, i, None) for i, f in enumerate(facts)])
    [command] = await flow.relay()
    assert command.idempotency_key == f"shopify-prima:post-journal:{payout_id}"
    [posted] = await flow.to_prima([command])
    assert isinstance(posted, PrimaJournalPosted)
    await flow.payout_decider.handle([Delivery(posted, PRIMA_OUTCOMES.name, 0, 0, None)])
    assert await flow.relay() == []

    [journal] = await journals(prima_url, f"shopify-payout:{payout_id}")
    assert journal["journal_number"] == posted.journal_number
    # by hand: credits sales 70.95, shipping 7.95, tax 6.39 (85.29); debits discounts 7.00, fees 2.57, bank 75.72
    assert lines_of(journal) == sorted([
        ("1010", "75.72", "0.00", None), ("4000", "0.00", "70.95", None), ("4100", "0.00", "7.95", None),
        ("4900", "7.00", "0.00", None), ("6100", "2.57", "0.00", None),
        *[("2200", "0.00", "6.39", t) for t in {line[3] for line in lines_of(journal) if line[0] == "2200"}],
    ])
    assert sum(D(str(line["debit"])) for line in journal["lines"]) == sum(
        D(str(line["credit"])) for line in journal["lines"]) == D("85.29")

    row = await scratch_pool.fetchrow("SELECT state, journal_number, matched, unmatched FROM readmodel.payouts "
                                      "WHERE payout_id = $1", payout_id)
    assert dict(row) == {"state": "reconciled", "journal_number": posted.journal_number, "matched": 1, "unmatched": 0}
    charge = await scratch_pool.fetchrow("SELECT match_status, document FROM readmodel.payout_transactions "
                                         "WHERE payout_id = $1 AND type = 'CHARGE'", payout_id)
    assert dict(charge) == {"match_status": "matched", "document": sales_order}

    # the ops API shows it, and the month's report ties the deposit to the journal
    shown = ops.get(f"/payouts/{payout_id}").json()
    assert (shown["state"], shown["journal_number"], shown["exceptions"]) == ("reconciled", posted.journal_number, [])
    assert [(line["category"], line["debit"], line["credit"]) for line in shown["journal"]["lines"]] == [
        ("bank", "75.72", "0.00"), ("sales", "0.00", "70.95"), ("shipping", "0.00", "7.95"),
        ("discounts", "7.00", "0.00"), ("tax", "0.00", "6.39"), ("processing_fees", "2.57", "0.00")]
    report = ops.get("/payouts/report", params={"month": "2026-11"}).json()
    assert payout_id in [p["payout_id"] for p in report["payouts"]]
    [tie] = [t for t in report["tie_out"] if t["currency"] == "USD"]
    assert D(tie["difference"]) == 0 and D(tie["deposits"]) >= D("75.72")
    csv = ops.get("/payouts/report", params={"month": "2026-11", "format": "csv"})
    assert csv.status_code == 200 and f"{payout_id},bank,USD,,,75.72,reconciled" in csv.text
    # and the CLI, over HTTP
    shown_by_cli = run_cli("payouts", "show", str(payout_id))
    assert shown_by_cli.exit_code == 0, shown_by_cli.output
    assert "reconciled" in shown_by_cli.output and posted.journal_number in shown_by_cli.output
    assert "Shopify Payments processing fees" in shown_by_cli.output and sales_order in shown_by_cli.output
    exported = tmp_path / "payouts.csv"
    assert run_cli("payouts", "report", "--month", "2026-11", "--csv", str(exported)).exit_code == 0
    assert exported.read_bytes() == csv.content

    # the same PostJournal again (a relay that published twice): Prima answers with the same journal
    [again] = await flow.to_prima([command])
    assert isinstance(again, PrimaJournalPosted) and again.journal_number == posted.journal_number
    assert len(await journals(prima_url, f"shopify-payout:{payout_id}")) == 1
    # a poll sees the payout unchanged: nothing read again
    assert (await flow.ingest.poll(since=NOW.replace(year=2026, month=11, day=1))).payouts_read == []

    # the payout fails at the bank: the next poll reads it again, the posted journal is reversed
    async with httpx.AsyncClient(base_url=shopify_url) as http:
        (await http.post(f"/_sandbox/payouts/{payout_id}/status", json={"status": "failed"})).raise_for_status()
    mark = await end_offsets(kafka_bootstrap, flow.topic, partitions=1)  # type: ignore[attr-defined]
    assert (await flow.ingest.poll(since=NOW.replace(day=1))).payouts_read == [payout_id]
    facts = [FACTS.validate_json(r.value) for r in await published_since(kafka_bootstrap, mark)]
    await flow.payout_decider.handle([Delivery(f, SHOPIFY_PAYOUTS.name, 0, i, None) for i, f in enumerate(facts)])
    [undo] = await flow.relay()
    assert undo.journal.reverses == posted.journal_number
    [reversed_] = await flow.to_prima([undo])
    await flow.payout_decider.handle([Delivery(reversed_, PRIMA_OUTCOMES.name, 0, 0, None)])
    await flow.relay()
    [reversal] = await journals(prima_url, f"shopify-payout:{payout_id}:reversal")
    assert reversal["reverses"] == posted.journal_number
    assert lines_of(reversal) == sorted((a, c, d, t) for a, d, c, t in lines_of(journal))  # debit and credit swapped
    assert [j["journal_number"] for j in await journals(prima_url, f"shopify-payout:{payout_id}")] == [
        posted.journal_number]  # the posted journal itself is untouched
    assert await scratch_pool.fetchval("SELECT state FROM readmodel.payouts WHERE payout_id = $1",
                                       payout_id) == "reversed"


async def test_given_a_refund_credited_in_prima_when_its_payout_is_paid_then_the_refund_matches_its_credit_memo(
        flow, prima_url, shopify_url, scratch_pool, kafka_bootstrap):
    order_id = time.time_ns() // 1000
    capture = order_id + 7
    payout_id = order_id + 11
    snapshot = us_tax_exclusive(order_id, transactions=[transaction("capture", amount=D("78.29"), currency="USD",
                                                                    transaction_id=capture)])
    sales_order = await flow.order_paid(snapshot)
    refund, _ = refunded(snapshot, order_id + 3, lines=[(snapshot.lines[0].line_id, 1, "return")])
    credit_memo = await flow.refund(refund)
    [refund_payment] = refund.transactions
    given = refund_payment.amount.amount
    deposit = D("78.29") - D("2.57") - given

    await seed(shopify_url, {"id": payout_id, "status": "paid", "date": "2026-11-28", "currency": "USD",
                             "amount": str(deposit)},
               [rest_transaction(payout_id + 1, "charge", "78.29", "2.57", payout_id, order=order_id,
                                 order_transaction=capture),
                rest_transaction(payout_id + 2, "refund", str(-given), "0.00", payout_id, order=order_id,
                                 order_transaction=refund_payment.transaction_id),
                rest_transaction(payout_id + 3, "payout", str(-deposit), "0.00", payout_id, source_id=payout_id,
                                 source_type="payout")])
    facts = await ingest(flow, kafka_bootstrap, payout_id)
    await flow.payout_decider.handle([Delivery(f, SHOPIFY_PAYOUTS.name, 0, i, None) for i, f in enumerate(facts)])
    [command] = await flow.relay()
    [posted] = await flow.to_prima([command])
    await flow.payout_decider.handle([Delivery(posted, PRIMA_OUTCOMES.name, 0, 0, None)])
    await flow.relay()

    [journal] = await journals(prima_url, f"shopify-payout:{payout_id}")
    by_account = {line["account"]: (D(str(line["debit"])), D(str(line["credit"]))) for line in journal["lines"]}
    assert by_account["1010"] == (deposit, 0) and by_account["4950"] == (given, 0)  # bank, refunds
    assert sum(d for d, _ in by_account.values()) == sum(c for _, c in by_account.values())
    matched = {r["type"]: (r["match_status"], r["document_kind"], r["document"]) for r in await scratch_pool.fetch(
        "SELECT type, match_status, document_kind, document FROM readmodel.payout_transactions "
        "WHERE payout_id = $1 AND type <> 'TRANSFER'", payout_id)}
    assert matched == {"CHARGE": ("matched", "sales_order", sales_order),
                       "REFUND": ("matched", "credit_memo", credit_memo)}
    row = await scratch_pool.fetchrow("SELECT state, matched, unmatched FROM readmodel.payouts WHERE payout_id = $1",
                                      payout_id)
    assert dict(row) == {"state": "reconciled", "matched": 2, "unmatched": 0}


async def test_given_shopifys_sample_whose_transactions_do_not_add_up_then_held_with_the_difference_and_no_journal(
        flow, prima_url, shopify_url, scratch_pool, kafka_bootstrap, ops, operations_topic):
    payout = json.loads((FIXTURES / "payout.json").read_text())["payout"]
    transactions = json.loads((FIXTURES / "payouts_transactions.json").read_text())["transactions"]
    await seed(shopify_url, payout, transactions)
    tap = OperationsTap(kafka_bootstrap, operations_topic, partitions=1)

    # asked by an operator: the ops API publishes RequestPayoutIngest, the ingest reads the payout
    before = await tap.ends()
    asked = ops.post("/payouts/ingest", params={"payout_id": payout["id"], "requested_by": "jo"})
    assert asked.status_code == 202, asked.text
    [request] = [r.message for r in await tap.since(before)]
    assert isinstance(request, RequestPayoutIngest) and request.payout_id == payout["id"]
    facts = await ingest(flow, kafka_bootstrap, payout["id"], request)
    await flow.payout_decider.handle([Delivery(f, SHOPIFY_PAYOUTS.name, 0, i, None) for i, f in enumerate(facts)])

    assert await flow.relay() == []
    assert await journals(prima_url, f"shopify-payout:{payout['id']}") == []
    row = await scratch_pool.fetchrow("SELECT state, hold_reason, difference FROM readmodel.payouts "
                                      "WHERE payout_id = $1", payout["id"])
    assert row["state"] == "held" and row["difference"] == D("39.48")  # 81.38 listed against a deposit of 41.90
    exceptions = await scratch_pool.fetch("SELECT kind, status, reason FROM readmodel.payout_exceptions "
                                           "WHERE payout_id = $1", payout["id"])
    [held] = [r for r in exceptions if r["kind"] == "does_not_add_up"]
    assert held["status"] == "open" and "a difference of 39.48 USD" in held["reason"]
    # the sample's orders were never received: each such transaction is listed with its reason
    assert {r["kind"] for r in exceptions} == {"does_not_add_up", "order_not_seen", "no_order"}
    assert all(r["status"] == "open" for r in exceptions)
    listed = ops.get("/exceptions", params={"source": "payout"}).json()["exceptions"]
    assert "does_not_add_up" in {e["kind"] for e in listed if e["payload"].get("payout_id") == payout["id"]}

    # released by an operator without a fix: decided again, held again, still no journal
    before = await tap.ends()
    assert ops.post(f"/payouts/{payout['id']}/release", params={"requested_by": "jo"}).status_code == 202
    [release] = [r.message for r in await tap.since(before)]
    assert isinstance(release, ReleasePayout)
    await flow.payout_decider.handle([Delivery(release, "operations", 0, 0, None)])
    assert await flow.relay() == []
    assert await journals(prima_url, f"shopify-payout:{payout['id']}") == []
    assert (await scratch_pool.fetchval("SELECT state FROM readmodel.payouts WHERE payout_id = $1",
                                        payout["id"])) == "held"
    assert await scratch_pool.fetchval("SELECT count(*) FROM readmodel.payout_exceptions WHERE payout_id = $1 "
                                       "AND kind = 'does_not_add_up' AND status = 'open'", payout["id"]) == 1


async def test_given_a_charge_journalled_on_clearing_when_its_order_arrives_then_a_reclassification_journal_moves_it(
        flow, prima_url, shopify_url, scratch_pool, kafka_bootstrap, ops, run_cli):
    order_id = time.time_ns() // 1000
    capture = order_id + 7
    payout_id = order_id + 11
    flow.payout_decider.policy = replace(flow.payout_decider.policy, documents_grace=timedelta(0))
    # Given a payout paid before the integration saw its order: journalled with the charge on clearing
    await seed(shopify_url, {"id": payout_id, "status": "paid", "date": "2026-11-28", "currency": "USD",
                             "amount": "75.72"},
               [rest_transaction(payout_id + 1, "charge", "78.29", "2.57", payout_id, order=order_id,
                                 order_transaction=capture),
                rest_transaction(payout_id + 2, "payout", "-75.72", "0.00", payout_id, source_id=payout_id,
                                 source_type="payout")])
    facts = await ingest(flow, kafka_bootstrap, payout_id)
    await flow.payout_decider.handle([Delivery(f, SHOPIFY_PAYOUTS.name, 0, i, None) for i, f in enumerate(facts)])
    [command] = await flow.relay()
    [posted] = await flow.to_prima([command])
    await flow.payout_decider.handle([Delivery(posted, PRIMA_OUTCOMES.name, 0, 0, None)])
    await flow.relay()
    [journal] = await journals(prima_url, f"shopify-payout:{payout_id}")
    assert lines_of(journal) == sorted([("1010", "75.72", "0.00", None), ("1290", "0.00", "78.29", None),
                                        ("6100", "2.57", "0.00", None)])
    row = await scratch_pool.fetchrow("SELECT state, unmatched FROM readmodel.payouts WHERE payout_id = $1", payout_id)
    assert dict(row) == {"state": "journalled", "unmatched": 1}

    # When the order is paid through the stack, and the sweep matches the payout again
    snapshot = us_tax_exclusive(order_id, transactions=[transaction("capture", amount=D("78.29"), currency="USD",
                                                                    transaction_id=capture)])
    sales_order = await flow.order_paid(snapshot)
    assert payout_id in await flow.payout_decider.rematch_unmatched()
    [reclassify] = await flow.relay()
    assert reclassify.idempotency_key == f"shopify-prima:reclassify-journal:{payout_id}:1"
    assert await scratch_pool.fetchval("SELECT state FROM readmodel.payouts WHERE payout_id = $1",
                                       payout_id) == "journalled"  # matched, but not reclassified in Prima yet
    [moved] = await flow.to_prima([reclassify])
    assert isinstance(moved, PrimaJournalPosted)
    await flow.payout_decider.handle([Delivery(moved, PRIMA_OUTCOMES.name, 0, 0, None)])
    await flow.relay()

    # Then Prima holds the reclassification computed by hand: the clearing account debited with
    # the charge, sales 70.95, shipping 7.95, tax 6.39 credited, discounts 7.00 debited (85.29 each side)
    [reclassification] = await journals(prima_url, f"shopify-payout:{payout_id}:reclassification:1")
    assert reclassification["journal_number"] == moved.journal_number
    assert lines_of(reclassification) == sorted([
        ("1290", "78.29", "0.00", None), ("4000", "0.00", "70.95", None), ("4100", "0.00", "7.95", None),
        ("4900", "7.00", "0.00", None),
        *[("2200", "0.00", "6.39", t) for t in {line[3] for line in lines_of(reclassification) if line[0] == "2200"}],
    ])
    assert [j["journal_number"] for j in await journals(prima_url, f"shopify-payout:{payout_id}")] == [
        posted.journal_number]  # the posted journal is untouched
    shown = ops.get(f"/payouts/{payout_id}").json()
    assert (shown["state"], shown["matched"], shown["unmatched"]) == ("reconciled", 1, 0)
    [listed] = shown["reclassifications"]
    assert (listed["status"], listed["journal_number"], listed["idempotency_key"]) == (
        "posted", moved.journal_number, f"shopify-prima:reclassify-journal:{payout_id}:1")
    assert listed["charge_ids"] == [payout_id + 1] and "reclassifications" not in shown["journal"]
    assert [(line["category"], line["debit"], line["credit"]) for line in listed["lines"]] == [
        ("sales", "0.00", "70.95"), ("shipping", "0.00", "7.95"), ("discounts", "7.00", "0.00"),
        ("tax", "0.00", "6.39"), ("unmatched_charges", "78.29", "0.00")]
    assert shown["transactions"][0]["document"] == sales_order
    shown_by_cli = run_cli("payouts", "show", str(payout_id))  # and the CLI lists it
    assert shown_by_cli.exit_code == 0, shown_by_cli.output
    assert f"reclassification {moved.journal_number}: posted, 1 charge(s)" in shown_by_cli.output
    # the month's report counts it: the tie-out still holds
    report = ops.get("/payouts/report", params={"month": "2026-11"}).json()
    [tie] = [t for t in report["tie_out"] if t["currency"] == "USD"]
    assert D(tie["difference"]) == 0

    # a later re-match with nothing new: no second reclassification
    await flow.payout_decider.decide([RematchRequested(payout_id=payout_id, requested_by="ops",
                                                       requested_at=NOW)])
    assert await flow.relay() == []
    assert len(await journals(prima_url, f"shopify-payout:{payout_id}:reclassification:2")) == 0
