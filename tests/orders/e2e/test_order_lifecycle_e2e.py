"""End to end on the running stack, after an order is placed (issue 9): Shopify's webhooks for an
edit, a cancellation and a refund (sandboxes/shopify/lifecycle.py builds them as Shopify sends
them), signed to the ingest -> Kafka -> the Order aggregate -> outbox -> Prima gateway -> Prima
sandbox; and a paid order whose every webhook was lost, held only by the Shopify sandbox, found by
the order reconciler. What Prima ends up holding is read from the Prima sandbox's API, what the
integration knows from the ops API's read model.

- an edit before the warehouse cut-off amends the sales order to the order as it stands;
- an edit once the warehouse is picking is an exception with the difference, the sales order
  untouched;
- a cancellation cancels the sales order (its refund needs no credit memo);
- a refund with restock delivered three times is one credit memo, equal to the refund;
- a paid order whose webhooks were all dropped becomes exactly one sales order by the reconciler.

Every wait polls with a deadline; each test uses fresh order and refund ids (the stack is shared)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg
import pytest

from sandboxes.shopify import lifecycle
from sandboxes.shopify.orders import Line, Shipping, order_body
from tests.orders.e2e.test_order_to_prima import Stack, new_order_id

pytestmark = [pytest.mark.e2e]
D = Decimal
RATE = D("0.08875")  # NY sales tax, on top of the prices
ADDRESS = {"first_name": "Ada", "last_name": "Lovelace", "address1": "12 Stone Street", "address2": None,
           "city": "New York", "province_code": "NY", "zip": "10004", "country_code": "US", "phone": None}
# the reconciler runs every 20 s on the stack (deploy/local/stack.env): a few runs at most
RECONCILER_TIMEOUT = 120.0


@pytest.fixture
async def stack_api(stack):
    """The running stack's HTTP faces (tests/orders/e2e/test_order_to_prima.py), no Prima faults on."""
    api = Stack(stack)
    await api.clear_faults()
    yield api
    await api.clear_faults()
    await api.http.aclose()


def tax(net: Decimal) -> Decimal:
    return (net * RATE).quantize(D("0.01"), ROUND_HALF_UP)


def paid_order(order_id: int) -> dict[str, Any]:
    """A paid US order of items the stack's Prima sandbox seeds: two tees (discounted), three
    mugs, shipping; tax on top; delivered to ADDRESS."""
    body = order_body(
        order_id,
        [Line("TEE-BLK-M", "Tee black M", D("25.00"), 2, D("5.00"), [("NY State Tax", RATE, tax(D("45.00")))]),
         Line("MUG-STONE", "Stone mug", D("12.50"), 3, D("0.00"), [("NY State Tax", RATE, tax(D("37.50")))])],
        Shipping("Standard", D("5.95"), D("0.00"), [("NY State Tax", RATE, tax(D("5.95")))]),
        taxes_included=False,
    )
    body["shipping_address"] = dict(ADDRESS)
    return body


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    """The first truthy answer of `check`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g}s (last seen: {last})")


async def sales_order(api: Stack, order_id: int) -> dict[str, Any]:
    """The one sales order Prima holds for the Shopify order."""
    found = await api.sales_orders(order_id)
    assert len(found) == 1, f"Prima holds {len(found)} sales orders for order {order_id}: {found}"
    return found[0]


async def credit_memos(api: Stack, **params: str) -> list[dict[str, Any]]:
    r = await api.http.get(f"{api.s.prima_base_url}/v1/credit-memos", params=params, headers=api.prima_headers)
    r.raise_for_status()
    return r.json()["credit_memos"]


async def timeline(api: Stack, order_id: int) -> Counter[str]:
    """How often each kind of fact or decision is on the order's timeline (ops API)."""
    order = await api.order(order_id)
    assert order is not None, f"order {order_id} is not in the read model"
    return Counter(entry["kind"] for entry in order["timeline"])


async def placed_in_prima(api: Stack, body: dict[str, Any]) -> dict[str, Any]:
    """orders/paid delivered; the sales order Prima holds once the read model says in_prima."""
    response = await api.webhook("orders/paid", body)
    assert response.status_code == 200, response.text
    row = await api.wait_for_state(body["id"], {"in_prima"}, timeout=60)
    so = await sales_order(api, body["id"])
    assert row["prima_sales_order_number"] == so["sales_order_number"]
    assert (so["status"], so["version"], D(so["totals"]["total"])) == ("open", 1, D(body["current_total_price"]))
    return so


def sold(body: dict[str, Any]) -> list[tuple[str, int]]:
    """(SKU, units) of each line still sold in the order as it stands."""
    return [(li["sku"], li["current_quantity"]) for li in body["line_items"] if li["current_quantity"] > 0]


async def test_given_a_sales_order_when_the_order_is_edited_before_the_cut_off_then_prima_holds_its_current_totals(
        stack_api: Stack):
    # Given a paid order in Prima, its sales order open (before the warehouse cut-off)
    order_id = new_order_id()
    body = paid_order(order_id)
    created = await placed_in_prima(stack_api, body)
    mugs = body["line_items"][1]["id"]

    # When Shopify's order is edited: two of the three mugs removed, a tee in L added, and the
    # delivery address changed (orders/edited, then orders/updated with the order as it stands)
    moved = {**ADDRESS, "address1": "1 Harbour Road", "city": "Brooklyn", "zip": "11201"}
    edit, now = lifecycle.edited(
        body, edit_id=order_id + 7, remove={mugs: 2},
        add=[Line("TEE-BLK-L", "Tee black L", D("27.00"), 1, D("0.00"), [("NY State Tax", RATE, tax(D("27.00")))])],
        shipping_address=moved)
    assert (await stack_api.webhook("orders/edited", edit)).status_code == 200
    assert (await stack_api.webhook("orders/updated", now)).status_code == 200

    # Then Prima's sales order is amended once to the order as it stands, to the cent
    async def amended() -> dict[str, Any] | None:
        so = await sales_order(stack_api, order_id)
        return so if so["version"] > 1 else None

    so = await eventually(amended, f"the sales order of order {order_id} amended", timeout=60)
    assert so["sales_order_number"] == created["sales_order_number"] and so["status"] == "open"
    assert so["version"] == 2
    assert D(so["totals"]["total"]) == D(now["current_total_price"]) != D(body["current_total_price"])
    assert D(so["totals"]["tax"]) == D(now["current_total_tax"])
    assert D(so["totals"]["lines_net"]) == D(now["current_subtotal_price"])
    assert [(line["sku"], line["quantity"]) for line in so["lines"]] == sold(now) == [
        ("TEE-BLK-M", 2), ("MUG-STONE", 1), ("TEE-BLK-L", 1)]
    assert (so["ship_to"]["address1"], so["ship_to"]["city"], so["ship_to"]["zip"]) == (
        "1 Harbour Road", "Brooklyn", "11201")

    # And the read model shows the order in Prima before the cut-off, amended once
    row = await stack_api.wait_for_state(order_id, {"in_prima"})
    assert row["cutoff"]["state"] == "before"
    kinds = await eventually(lambda: _with(stack_api, order_id, "SalesOrderAmended"), "SalesOrderAmended on the timeline")
    assert (kinds["SalesOrderAmendmentRequested"], kinds["SalesOrderAmended"], kinds["OrderEditNoticed"]) == (1, 1, 1)
    assert [e for e in row["exceptions"] if e["status"] == "open"] == []


async def _with(api: Stack, order_id: int, *kinds: str) -> Counter[str] | None:
    """The order's timeline once it has every one of `kinds`, else None."""
    found = await timeline(api, order_id)
    return found if all(found[k] for k in kinds) else None


async def test_given_the_warehouse_picking_when_the_order_is_edited_then_an_exception_with_the_difference(
        stack_api: Stack):
    # Given a paid order in Prima whose sales order the warehouse is picking
    order_id = new_order_id()
    body = paid_order(order_id)
    created = await placed_in_prima(stack_api, body)
    number = created["sales_order_number"]
    moved = await stack_api.http.post(f"{stack_api.s.prima_base_url}/_sandbox/sales-orders/{number}/status",
                                      json={"status": "picking"})
    assert moved.status_code == 200, moved.text
    before = await sales_order(stack_api, order_id)
    assert before["status"] == "picking"

    # When Shopify's order is edited: two of the three mugs removed
    mugs = body["line_items"][1]["id"]
    edit, now = lifecycle.edited(body, edit_id=order_id + 7, remove={mugs: 2})
    assert (await stack_api.webhook("orders/edited", edit)).status_code == 200
    assert (await stack_api.webhook("orders/updated", now)).status_code == 200

    # Then the order is held at the cut-off with an open exception spelling out the difference
    row = await stack_api.wait_for_state(order_id, {"after_cutoff"}, timeout=60)
    assert row["cutoff"]["state"] == "passed" and row["cutoff"]["prima_status"] == "picking"
    [held] = [e for e in row["exceptions"] if e["status"] == "open"]
    assert held["kind"] == "changed_after_cutoff"
    differences = held["payload"]["differences"]
    assert any("MUG-STONE" in d and "quantity 3 -> 1" in d for d in differences), differences
    [totals] = [d for d in differences if d.startswith("total ")]
    assert str(D(body["current_total_price"])) in totals and str(D(now["current_total_price"])) in totals, totals
    assert held["payload"]["prima_status"] == "picking" and held["payload"]["sales_order_number"] == number
    assert number in held["action"] and f"orders resolve {order_id}" in held["action"]
    open_ids = [e["shopify_order_id"] for e in (await stack_api.http.get(
        f"{stack_api.ops}/exceptions", headers=stack_api.ops_headers, params={"source": "order"})).json()["exceptions"]]
    assert order_id in open_ids

    # And Prima's sales order is untouched: its lines, totals, version and status as before
    after = await sales_order(stack_api, order_id)
    assert (after["lines"], after["totals"], after["version"], after["status"]) == (
        before["lines"], before["totals"], 1, "picking")
    kinds = await timeline(stack_api, order_id)
    assert kinds["ChangeHeldAtCutoff"] == 1 and kinds["SalesOrderAmended"] == 0


async def test_given_a_sales_order_when_the_order_is_cancelled_then_the_sales_order_is_cancelled(stack_api: Stack):
    # Given a paid order in Prima
    order_id = new_order_id()
    body = paid_order(order_id)
    await placed_in_prima(stack_api, body)

    # When it is cancelled in Shopify: orders/cancelled (delivered twice, under two webhook ids),
    # then the refund of the whole order that a paid order's cancellation makes
    refund_id = new_order_id()
    cancelled, refund = lifecycle.cancelled(body, reason="customer", refund_id=refund_id)
    assert refund is not None
    for _ in range(2):
        assert (await stack_api.webhook("orders/cancelled", cancelled)).status_code == 200
    assert (await stack_api.webhook("refunds/create", refund)).status_code == 200

    # Then Prima's sales order is cancelled, once
    async def cancelled_in_prima() -> dict[str, Any] | None:
        so = await sales_order(stack_api, order_id)
        return so if so["status"] == "cancelled" else None

    so = await eventually(cancelled_in_prima, f"the sales order of order {order_id} cancelled", timeout=60)
    assert so["cancelled_at"] is not None and so["version"] == 1
    row = await stack_api.wait_for_state(order_id, {"cancelled"})
    assert row["cutoff"]["state"] == "cancelled" and row["prima_status"] == "cancelled"
    assert row["cancel_reason"] == "customer"

    # And the refund that came with it needs no credit memo against a cancelled sales order
    async def memo_settled() -> list[dict[str, Any]] | None:
        memos = (await stack_api.order(order_id) or {}).get("credit_memos") or []
        return memos if any(m["refund_id"] == refund_id and m["state"] == "not_needed" for m in memos) else None

    await eventually(memo_settled, f"refund {refund_id} settled as not needed")
    assert await credit_memos(stack_api, external_reference=str(refund_id)) == []
    kinds = await timeline(stack_api, order_id)
    assert (kinds["SalesOrderCancellationRequested"], kinds["SalesOrderCancelled"], kinds["CreditMemoRequested"]) == (
        1, 1, 0)
    assert [e for e in row["exceptions"] if e["status"] == "open"] == []


async def test_given_a_refund_with_restock_delivered_three_times_then_one_credit_memo_equal_to_the_refund(
        stack_api: Stack):
    # Given a paid order in Prima
    order_id = new_order_id()
    body = paid_order(order_id)
    created = await placed_in_prima(stack_api, body)
    tees = body["line_items"][0]["id"]

    # When one tee is refunded and returned, and refunds/create is delivered three times: Shopify's
    # retry of one delivery (the same webhook id) and once more under another webhook id; then
    # orders/updated states the order after the refund
    refund_id = new_order_id()
    refund, after = lifecycle.refunded(body, refund_id=refund_id, lines=[(tees, 1, "return")])
    webhook_id = str(uuid.uuid4())
    statuses = [(await stack_api.webhook("refunds/create", refund, webhook_id=webhook_id)).json()["status"]
                for _ in range(2)]
    assert statuses == ["accepted", "duplicate"]
    assert (await stack_api.webhook("refunds/create", refund)).json()["status"] == "accepted"
    assert (await stack_api.webhook("orders/updated", after)).status_code == 200

    # Then (once the order has taken every delivery: the orders/updated came after them on the
    # order's partition) one credit memo is created
    kinds = await eventually(lambda: _with(stack_api, order_id, "CreditMemoCreated", "OrderUpdated"),
                             f"the credit memo of refund {refund_id} created and orders/updated taken", timeout=60)
    assert (kinds["RefundReceived"], kinds["CreditMemoRequested"], kinds["CreditMemoCreated"]) == (1, 1, 1)
    assert kinds["SalesOrderAmendmentRequested"] == 0  # a refund is a credit memo, not an amendment

    # And Prima holds exactly one memo for the refund, against the sales order, equal to it
    refunded_money = sum(D(t["amount"]) for t in refund["transactions"] if t["status"] == "success")
    [memo] = await credit_memos(stack_api, external_reference=str(refund_id))
    assert [m["credit_memo_number"] for m in await credit_memos(
        stack_api, sales_order_number=created["sales_order_number"])] == [memo["credit_memo_number"]]
    assert memo["sales_order_number"] == created["sales_order_number"]
    assert D(memo["totals"]["total"]) == refunded_money == D(refund["refund_line_items"][0]["subtotal"]) + D(
        refund["refund_line_items"][0]["total_tax"])
    assert D(memo["totals"]["tax"]) == D(refund["refund_line_items"][0]["total_tax"])
    assert [(line["sku"], line["quantity"], line["returned"], D(line["amount"])) for line in memo["lines"]] == [
        ("TEE-BLK-M", 1, True, D(refund["refund_line_items"][0]["subtotal"]))]

    # And the read model shows that memo; the sales order itself is untouched
    row = await stack_api.order(order_id)
    assert row is not None
    [shown] = [m for m in row["credit_memos"] if m["refund_id"] == refund_id]
    assert (shown["state"], shown["credit_memo_number"]) == ("created", memo["credit_memo_number"])
    assert D(str(shown["total"])) == D(str(shown["refunded"])) == refunded_money
    assert shown["restock_types"] == ["return"]
    so = await sales_order(stack_api, order_id)
    assert (so["version"], so["totals"], so["status"]) == (1, created["totals"], "open")


async def test_given_every_webhook_of_a_paid_order_dropped_then_the_reconciler_creates_exactly_one_sales_order(
        stack_api: Stack, settings):
    # Given a paid order that only the shop holds: every webhook of it lost
    order_id = new_order_id()
    body = paid_order(order_id)
    held = await stack_api.http.post(f"{settings.shopify_admin_url}/_sandbox/orders", json={"orders": [body]})
    assert held.status_code == 200, held.text
    assert [o["id"] for o in held.json()["orders"]] == [order_id]

    # When the reconciler's scheduled run reads the orders Shopify updated since its watermark
    # Then the order reaches Prima as one sales order equal to the Shopify order
    row = await stack_api.wait_for_state(order_id, {"in_prima"}, timeout=RECONCILER_TIMEOUT)
    seen_at = datetime.now(UTC)
    so = await sales_order(stack_api, order_id)
    assert row["prima_sales_order_number"] == so["sales_order_number"]
    assert D(so["totals"]["total"]) == D(body["total_price"]) and D(so["totals"]["tax"]) == D(body["total_tax"])
    assert [(line["sku"], line["quantity"]) for line in so["lines"]] == sold(body)
    assert so["external_reference"] == str(order_id)

    # And it was the reconciler that fed it: one version of the order, published, in a run that
    # the ops API shows done and listing it
    conn = await asyncpg.connect(settings.database_url)
    try:
        fed = await conn.fetch("SELECT run_id, published_at FROM ingest.reconciled_orders WHERE shopify_order_id = $1",
                               order_id)
        assert len(fed) == 1 and fed[0]["published_at"] is not None, fed
        run = (await stack_api.http.get(f"{stack_api.ops}/orders/reconcile/{fed[0]['run_id']}",
                                        headers=stack_api.ops_headers)).json()
        assert run["run"]["status"] == "done" and order_id in [f["shopify_order_id"] for f in run["fed"]]

        # And a later run, which reads the order again (its window overlaps), feeds nothing more
        async def later_run_done() -> dict[str, Any] | None:
            runs = (await stack_api.http.get(f"{stack_api.ops}/orders/reconcile", headers=stack_api.ops_headers,
                                             params={"limit": 5})).json()["runs"]
            return next((r for r in runs if r["status"] == "done" and r["started_at"]
                         and datetime.fromisoformat(r["started_at"]) > seen_at), None)

        await eventually(later_run_done, "a reconciler run after the sales order was made",
                         timeout=RECONCILER_TIMEOUT)
        assert await conn.fetchval("SELECT count(*) FROM ingest.reconciled_orders WHERE shopify_order_id = $1",
                                   order_id) == 1
    finally:
        await conn.close()
    assert len(await stack_api.sales_orders(order_id)) == 1
    kinds = await timeline(stack_api, order_id)
    assert (kinds["OrderReceived"], kinds["SalesOrderRequested"], kinds["SalesOrderCreated"]) == (1, 1, 1)
