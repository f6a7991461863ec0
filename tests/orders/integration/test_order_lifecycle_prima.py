"""The order lifecycle (issue 9) through the real pieces: the order decider (on an in-memory
Order application) fed Shopify's deliveries as the service is fed them from Kafka, the commands
it issues translated as the relay puts them on prima.commands.v1, the Prima gateway sending them
over HTTP to a Prima sandbox of its own (real PostgreSQL, its own schema), and Prima's outcomes
fed back to the decider. What Prima ends up holding is read back from the sandbox's API.

- an edit before the cut-off amends the sales order to the order's current totals;
- an edit after the warehouse moved on (the Order still believes the sales order open) is
  refused by Prima and becomes an exception, the sales order untouched;
- a cancellation cancels the sales order;
- a refund with restock delivered three times is one credit memo equal to the refund;
- a refund that comes before its order waits for the sales order, then is credited;
- the Shopify sandbox's own bodies (sandboxes/shopify/lifecycle.py: an edit, two partial
  refunds, a shipping refund), parsed as the ingest parses webhooks, end as Prima documents that
  add up: the sales order equal to the current totals plus the refunds, each memo to its refund."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from contracts.prima.credit_memos import PrimaCreditMemoCreated
from contracts.prima.sales_orders import (
    PrimaSalesOrderAmended,
    PrimaSalesOrderCancelled,
    PrimaSalesOrderChangeRefused,
    PrimaSalesOrderCreated,
)
from contracts.shopify.orders import ShopifyOrder, ShopifyOrderReceived
from contracts.shopify.refunds import ShopifyRefund, ShopifyRefundReceived
from contracts.topics import PRIMA_COMMANDS, PRIMA_OUTCOMES, SHOPIFY_ORDERS
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import MemoState, Order, OrderState
from domain.orders.policy import OrderPolicy
from domain.orders.values import (
    OrderSnapshot,
    Refund,
    SalesOrderAmendment,
    SalesOrderCancellation,
)
from sandboxes.prima.app import create_app
from sandboxes.shopify import lifecycle as shopify_lifecycle
from sandboxes.shopify.orders import Line, Shipping, order_body
from services.orders.decider import OrderDecider
from services.orders.translate import (
    wire_amendment,
    wire_cancellation,
    wire_command,
    wire_memo_command,
    wire_order,
    wire_refund,
)
from services.platform.kafka import Delivery, Outgoing
from services.platform.parking import ParkedCommands, RedriveSchedule
from services.platform.settings import Settings
from services.prima.client import PrimaClient
from services.prima.gateway import PrimaGateway
from tests.orders.builders import (
    ITEMS,
    NOW,
    SKUS,
    D,
    cancelled_order,
    edited,
    refunded,
    standing,
    us_tax_exclusive,
)

pytestmark = pytest.mark.integration
SCHEMA = f"prima_lifecycle_{uuid.uuid4().hex[:8]}"
KEY = "lifecycle-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
async def prima_url(serve_app, database_url):
    """A Prima sandbox of its own that knows the items of tests/orders/builders.py, each in stock."""
    try:
        with serve_app(create_app(database_url, KEY, schema=SCHEMA), "the Prima sandbox") as url:
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


@pytest.fixture
async def prima(prima_url):
    async with httpx.AsyncClient(base_url=prima_url, headers=AUTH, timeout=10) as http:
        yield http


@pytest.fixture
async def gateway(settings, prima_url, scratch_pool):
    """The Prima gateway on the sandbox (parking in a scratch database, never the stack's)."""
    s: Settings = settings.model_copy(update={
        "prima_base_url": prima_url, "prima_api_key": SecretStr(KEY), "prima_max_attempts": 3,
        "prima_backoff_initial_seconds": 0.01, "prima_backoff_max_seconds": 0.01, "prima_timeout_seconds": 5.0,
    })
    client = PrimaClient(s)
    published: list[Outgoing] = []

    async def publish(messages: list[Outgoing]) -> None:
        published.extend(messages)

    made = PrimaGateway(s, client, ParkedCommands(scratch_pool, RedriveSchedule.from_settings(s)), publish)
    made.published = published  # type: ignore[attr-defined]
    yield made
    await client.aclose()


class Flow:
    """Shopify's deliveries -> the decider -> the commands the relay would publish -> the
    gateway -> Prima -> the outcomes -> the decider."""

    def __init__(self, gateway: PrimaGateway) -> None:
        self.orders = OrderApplication()
        self.gateway = gateway
        self.sent: set[uuid.UUID] = set()

        async def lookup(skus: Any) -> dict[str, Any]:
            return dict(ITEMS)

        self.decider = OrderDecider(self.orders, lookup, policy=OrderPolicy())

    async def webhook(self, snapshot: OrderSnapshot | ShopifyOrder, topic: str = "orders/paid") -> None:
        order = snapshot if isinstance(snapshot, ShopifyOrder) else wire_order(snapshot)
        message = ShopifyOrderReceived(webhook_id=str(uuid.uuid4()), topic=topic, shop_domain="test.myshopify.com",
                                       received_at=NOW, raw_payload_id=uuid.uuid4(), order=order)
        await self.decider.handle([Delivery(message, SHOPIFY_ORDERS.name, 0, 0, None)])

    async def refund(self, refund: Refund | ShopifyRefund) -> None:
        message = ShopifyRefundReceived(webhook_id=str(uuid.uuid4()), shop_domain="test.myshopify.com",
                                        received_at=NOW, raw_payload_id=uuid.uuid4(),
                                        refund=refund if isinstance(refund, ShopifyRefund) else wire_refund(refund))
        await self.decider.handle([Delivery(message, SHOPIFY_ORDERS.name, 0, 0, None)])

    def order(self, shopify_order_id: int) -> Order:
        order = self.orders.find_order(shopify_order_id)
        assert order is not None
        return order

    def commands(self, shopify_order_id: int) -> list[Any]:
        """The commands the order has issued and the gateway has not yet been given, as the relay
        puts them on prima.commands.v1."""
        order = self.order(shopify_order_id)
        found: list[Any] = []
        if order.command is not None:
            found.append(wire_command(order.command))
        if isinstance(order.change, SalesOrderAmendment):
            found.append(wire_amendment(order.change))
        elif isinstance(order.change, SalesOrderCancellation):
            found.append(wire_cancellation(order.change))
        found += [wire_memo_command(m.command) for m in order.memos.values() if m.command is not None]
        return [c for c in found if c.command_id not in self.sent]

    async def to_prima(self, shopify_order_id: int) -> list[Any]:
        """Send what the order issued through the gateway, feed Prima's outcomes back; the outcomes."""
        commands = self.commands(shopify_order_id)
        self.sent |= {c.command_id for c in commands}
        published: list[Outgoing] = self.gateway.published  # type: ignore[attr-defined]
        published.clear()
        await self.gateway.handle([Delivery(c, PRIMA_COMMANDS.name, 0, i, None) for i, c in enumerate(commands)])
        outcomes = [o.message for o in published]
        await self.decider.handle([Delivery(o, PRIMA_OUTCOMES.name, 0, i, None) for i, o in enumerate(outcomes)])
        return outcomes


@pytest.fixture
def flow(gateway):
    made = Flow(gateway)
    yield made
    made.orders.close()


def new_order_id() -> int:
    return time.time_ns() // 1000 + uuid.uuid4().int % 1000


async def sales_order(prima: httpx.AsyncClient, shopify_order_id: int) -> dict:
    response = await prima.get("/v1/sales-orders", params={"external_reference": str(shopify_order_id)})
    response.raise_for_status()
    [found] = response.json()["sales_orders"]
    return found


async def in_prima(flow: Flow, snapshot: OrderSnapshot) -> str:
    await flow.webhook(snapshot)
    [created] = await flow.to_prima(snapshot.shopify_order_id)
    assert isinstance(created, PrimaSalesOrderCreated)
    assert flow.order(snapshot.shopify_order_id).state is OrderState.IN_PRIMA
    return created.sales_order_number


async def test_given_a_sales_order_when_an_edit_removes_a_line_before_the_cut_off_then_prima_holds_current_totals(
        flow, prima):
    original = standing(us_tax_exclusive(new_order_id()))
    number = await in_prima(flow, original)
    socks = original.lines[1].line_id
    now = edited(original, remove={socks: 2})

    await flow.webhook(now, "orders/updated")
    [amended] = await flow.to_prima(original.shopify_order_id)

    assert isinstance(amended, PrimaSalesOrderAmended) and amended.sales_order_number == number
    held = await sales_order(prima, original.shopify_order_id)
    assert [line["sku"] for line in held["lines"]] == ["HOODIE-GRY-L"]
    assert held["totals"]["total"] == f"{now.current_total_price.amount}"
    assert held["totals"]["tax"] == f"{now.current_total_tax.amount}"
    assert flow.order(original.shopify_order_id).state is OrderState.IN_PRIMA

    await flow.webhook(now, "orders/updated")  # the same update again (another delivery)
    assert await flow.to_prima(original.shopify_order_id) == []


async def test_given_the_warehouse_picking_when_an_edit_comes_then_prima_refuses_and_it_is_an_exception(flow, prima):
    original = standing(us_tax_exclusive(new_order_id()))
    number = await in_prima(flow, original)
    (await prima.post(f"/_sandbox/sales-orders/{number}/status", json={"status": "picking"})).raise_for_status()
    before = await sales_order(prima, original.shopify_order_id)

    # the Order still believes the sales order open: it sends the amendment, Prima refuses it
    await flow.webhook(edited(original, remove={original.lines[1].line_id: 2}), "orders/updated")
    [refused] = await flow.to_prima(original.shopify_order_id)

    assert isinstance(refused, PrimaSalesOrderChangeRefused) and refused.status == "picking"
    order = flow.order(original.shopify_order_id)
    assert order.state is OrderState.AFTER_CUTOFF
    assert order.held is not None and order.held[0] == "amend"
    assert any("line removed" in d and "SOCKS-3PK" in d for d in order.held[1])
    after = await sales_order(prima, original.shopify_order_id)
    assert (after["lines"], after["totals"], after["status"]) == (before["lines"], before["totals"], "picking")


async def test_given_a_sales_order_when_the_order_is_cancelled_then_the_sales_order_is_cancelled(flow, prima):
    original = standing(us_tax_exclusive(new_order_id()))
    await in_prima(flow, original)

    await flow.webhook(cancelled_order(original), "orders/cancelled")
    [cancelled] = await flow.to_prima(original.shopify_order_id)

    assert isinstance(cancelled, PrimaSalesOrderCancelled)
    assert (await sales_order(prima, original.shopify_order_id))["status"] == "cancelled"
    assert flow.order(original.shopify_order_id).state is OrderState.CANCELLED


async def test_given_a_refund_with_restock_delivered_three_times_then_one_credit_memo_equal_to_the_refund(
        flow, prima, gateway):
    original = standing(us_tax_exclusive(new_order_id()))
    number = await in_prima(flow, original)
    refund, _ = refunded(original, new_order_id(), lines=[(original.lines[0].line_id, 1, "return")])

    for _ in range(3):
        await flow.refund(refund)
    commands = flow.commands(original.shopify_order_id)
    assert len(commands) == 1
    [created] = await flow.to_prima(original.shopify_order_id)
    again = await gateway.execute(commands[0])  # the relay delivering it again: Prima answers from its record

    assert isinstance(created, PrimaCreditMemoCreated)
    assert again.outcome.credit_memo_number == created.credit_memo_number
    memos = (await prima.get("/v1/credit-memos", params={"external_reference": str(refund.refund_id)})).json()
    [memo] = memos["credit_memos"]
    assert memo["sales_order_number"] == number
    assert memo["totals"]["total"] == f"{refund.transactions[0].amount.amount}"
    assert [(line["sku"], line["quantity"], line["returned"]) for line in memo["lines"]] == [
        ("HOODIE-GRY-L", 1, True)]
    assert flow.order(original.shopify_order_id).memos[refund.refund_id].state == MemoState.CREATED


async def test_given_a_refund_before_its_order_then_the_memo_waits_for_the_sales_order(flow, prima):
    original = standing(us_tax_exclusive(new_order_id()))
    refund, after = refunded(original, new_order_id(), shipping=True)

    await flow.refund(refund)
    assert flow.order(original.shopify_order_id).state is OrderState.AWAITING_ORDER
    assert flow.commands(original.shopify_order_id) == []

    await flow.webhook(after)  # the order's own webhook, late: it states the order after the refund
    [created] = await flow.to_prima(original.shopify_order_id)  # the sales order first
    assert isinstance(created, PrimaSalesOrderCreated)
    [memo] = await flow.to_prima(original.shopify_order_id)  # then the memo that waited for it

    assert isinstance(memo, PrimaCreditMemoCreated) and memo.total == refund.transactions[0].amount.amount
    found = (await prima.get("/v1/credit-memos", params={"sales_order_number": created.sales_order_number})).json()
    assert [m["external_reference"] for m in found["credit_memos"]] == [str(refund.refund_id)]


async def test_given_the_shopify_sandboxs_bodies_for_an_edit_and_refunds_then_prima_documents_add_up(flow, prima):
    order_id = new_order_id()
    rate = D("0.08875")
    body = order_body(order_id, [Line("HOODIE-GRY-L", "Hoodie", D("19.99"), 3, D("4.22"), [("Tax", rate, D("4.95"))]),
                                 Line("SOCKS-3PK", "Socks", D("5.49"), 2, D("0.78"), [("Tax", rate, D("0.91"))])],
                      Shipping("UPS Ground", D("7.95"), D("2.00"), [("Tax", rate, D("0.53"))]),
                      taxes_included=False)
    hoodie, socks = (line["id"] for line in body["line_items"])
    await flow.webhook(ShopifyOrder.from_webhook(body))
    [created] = await flow.to_prima(order_id)
    assert isinstance(created, PrimaSalesOrderCreated)

    _, body = shopify_lifecycle.edited(body, edit_id=1, remove={socks: 1})
    await flow.webhook(ShopifyOrder.from_webhook(body), "orders/updated")
    [amended] = await flow.to_prima(order_id)
    assert isinstance(amended, PrimaSalesOrderAmended)

    refunds = []
    for refund_id, spec in ((order_id + 1, {"lines": [(hoodie, 1, "return")]}),
                            (order_id + 2, {"lines": [(socks, 1, "no_restock")]}),
                            (order_id + 3, {"shipping": True})):
        refund, body = shopify_lifecycle.refunded(body, refund_id=refund_id, **spec)
        refunds.append(ShopifyRefund.from_webhook(refund))
        await flow.refund(refunds[-1])
        await flow.webhook(ShopifyOrder.from_webhook(body), "orders/updated")
    outcomes = await flow.to_prima(order_id)

    assert [type(o) for o in outcomes] == [PrimaCreditMemoCreated] * 3  # no amendment: refunds are memos
    held = await sales_order(prima, order_id)
    memos = (await prima.get("/v1/credit-memos", params={"sales_order_number": held["sales_order_number"]})
             ).json()["credit_memos"]
    refunded_money = {str(r.id): sum(t.amount.amount for t in r.transactions) for r in refunds}
    assert {m["external_reference"]: D(m["totals"]["total"]) for m in memos} == refunded_money
    # the sales order less its credit memos is the order as Shopify states it now
    assert D(held["totals"]["total"]) - sum(refunded_money.values()) == D(body["current_total_price"])
