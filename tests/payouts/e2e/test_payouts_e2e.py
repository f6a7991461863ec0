"""End to end on the running stack (issue 11): orders paid and one refunded through the webhook
ingest, the order decider and the Prima gateway (sales orders and a credit memo in the Prima
sandbox); then a Shopify Payments payout holding their charges, the refund and the fees, seeded
in the Shopify sandbox and read on an operator's request through the ops API (POST
/payouts/ingest: RequestPayoutIngest to the payout ingest, which reads it through Admin GraphQL
onto shopify.payouts.v1; the payout decider, the outbox relay, the Prima gateway, POST
/v1/journals; the projector into the payout-reconciliation read model).

Checked: exactly one journal in the Prima sandbox, equal to the one computed by hand below,
balanced, its bank line the deposit to the cent; the payout `reconciled` in the ops API's read
model, each charge matched to its sales order and the refund to its credit memo; asking for the
payout again is read and decided again and changes nothing (still one journal, the same command).

Every id is fresh (the stack is shared with other tests); every wait is a poll with a deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
import pytest

from domain.payouts.categories import Category
from sandboxes.shopify.lifecycle import refunded
from sandboxes.shopify.orders import Line, Shipping, order_body
from tests.orders.e2e import test_order_to_prima as orders_e2e

pytestmark = [pytest.mark.e2e]
D = Decimal
T = TypeVar("T")
NY = ("NY State Tax", D("0.08875"))  # New York sales tax, on top of the prices
stack_api = orders_e2e.stack_api  # the order flow's e2e fixture: the stack's URLs, secrets and an HTTP client
Stack = orders_e2e.Stack


async def until(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = 60) -> T:
    """Poll `probe` until it gives something (not None), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not after {timeout}s")
        await asyncio.sleep(0.2)


def order_a(order_id: int) -> dict[str, Any]:
    """Two tees at 25.00 less 5.00 off and a mug at 12.00, shipping 5.95, NY tax on top:
    goods 62.00, discounts 5.00, shipping 5.95, tax 3.99 + 1.07 + 0.53 = 5.59; total 68.54."""
    return order_body(order_id, [
        Line("TEE-BLK-M", "Tee black M", D("25.00"), 2, D("5.00"), [(*NY, D("3.99"))]),
        Line("MUG-STONE", "Stoneware mug", D("12.00"), 1, D("0.00"), [(*NY, D("1.07"))]),
    ], Shipping("Standard", D("5.95"), D("0.00"), [(*NY, D("0.53"))]), taxes_included=False)


def order_b(order_id: int) -> dict[str, Any]:
    """A tee at 30.00, shipping 5.95, NY tax 2.66 + 0.53 = 3.19 on top; total 39.14."""
    return order_body(order_id, [Line("TEE-BLK-L", "Tee black L", D("30.00"), 1, D("0.00"), [(*NY, D("2.66"))])],
                      Shipping("Standard", D("5.95"), D("0.00"), [(*NY, D("0.53"))]), taxes_included=False)


def balance_transaction(id_: int, type_: str, amount: Decimal, fee: Decimal, payout_id: int, processed_at: str, *,
                        order: int | None = None, order_transaction: int | None = None,
                        source_type: str | None = None, source_id: int | None = None) -> dict[str, Any]:
    """A Shopify Payments balance transaction in Shopify's REST shape (shopify-samples/payouts_transactions.json)."""
    return {"id": id_, "type": type_, "test": False, "payout_id": payout_id, "payout_status": "paid",
            "currency": "USD", "amount": f"{amount:.2f}", "fee": f"{fee:.2f}", "net": f"{amount - fee:.2f}",
            "source_id": source_id, "source_type": source_type or type_, "source_order_id": order,
            "source_order_transaction_id": order_transaction, "processed_at": processed_at}


class Payouts:
    """What the test asks of the stack besides the order flow: the ops API's payouts, the Prima
    sandbox's journals and credit memos, the Shopify sandbox's payouts control, and the
    sales-documents read model (what the payout decider matches and splits charges with)."""

    def __init__(self, api: Stack, pool: asyncpg.Pool) -> None:
        self.api, self.pool = api, pool
        self.shopify = api.s.shopify_admin_url

    async def payout(self, payout_id: int) -> dict[str, Any] | None:
        r = await self.api.http.get(f"{self.api.ops}/payouts/{payout_id}", headers=self.api.ops_headers)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    async def ask_ingest(self, payout_id: int) -> None:
        """The operator's request: read this payout now (as `shopify-prima payouts ingest --payout`)."""
        r = await self.api.http.post(f"{self.api.ops}/payouts/ingest", headers=self.api.ops_headers,
                                     params={"payout_id": payout_id, "requested_by": "payouts-e2e"})
        assert r.status_code == 202, r.text

    async def journals(self, reference: str) -> list[dict[str, Any]]:
        r = await self.api.http.get(f"{self.api.s.prima_base_url}/v1/journals",
                                    params={"external_reference": reference}, headers=self.api.prima_headers)
        r.raise_for_status()
        return r.json()["journals"]

    async def credit_memos(self, refund_id: int) -> list[dict[str, Any]]:
        r = await self.api.http.get(f"{self.api.s.prima_base_url}/v1/credit-memos",
                                    params={"external_reference": str(refund_id)}, headers=self.api.prima_headers)
        r.raise_for_status()
        return r.json()["credit_memos"]

    async def seed(self, payout: dict[str, Any], transactions: list[dict[str, Any]]) -> None:
        r = await self.api.http.post(f"{self.shopify}/_sandbox/payouts",
                                     json={"payouts": [{"payout": payout, "transactions": transactions}]})
        assert r.status_code == 200, r.text

    async def documents(self, order_id: int) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT sales_order_number, total, credit_memos::text AS credit_memos FROM readmodel.sales_documents "
            "WHERE shopify_order_id = $1 AND order_name IS NOT NULL", order_id)


@pytest.fixture
async def payouts(stack_api: Stack):
    pool = await asyncpg.create_pool(stack_api.s.database_url, min_size=1, max_size=2)
    try:
        yield Payouts(stack_api, pool)
    finally:
        await pool.close()


async def test_given_orders_paid_and_one_refunded_when_their_payout_is_ingested_then_one_hand_computed_journal_reconciled(
        payouts: Payouts, stack_api: Stack, settings):
    base = orders_e2e.new_order_id()
    first, second, refund_id, payout_id = base, base + 1, base + 2, base + 3
    charge_a, charge_b, refund_txn, transfer = base + 4, base + 5, base + 6, base + 7

    # -- the orders paid, through the stack into Prima
    body_a, body_b = order_a(first), order_b(second)
    assert (body_a["total_price"], body_b["total_price"]) == ("68.54", "39.14")
    for body in (body_a, body_b):
        response = await stack_api.webhook("orders/paid", body)
        assert response.status_code == 200, response.text
    rows = [await stack_api.wait_for_state(order_id, {"in_prima"}, timeout=60) for order_id in (first, second)]
    sales_orders = {}
    for order_id, row in zip((first, second), rows, strict=True):
        [so] = await stack_api.sales_orders(order_id)
        assert so["sales_order_number"] == row["prima_sales_order_number"]
        sales_orders[order_id] = so["sales_order_number"]

    # -- the mug refunded (returned): 12.00 and its 1.07 tax, through the stack into a credit memo
    mug = body_a["line_items"][1]
    refund, _ = refunded(body_a, refund_id=refund_id, lines=[(mug["id"], 1, "return")])
    [refund_payment] = refund["transactions"]
    assert refund_payment["amount"] == "13.07"
    response = await stack_api.webhook("refunds/create", refund)
    assert response.status_code == 200, response.text

    async def credit_memo() -> dict[str, Any] | None:
        memos = await payouts.credit_memos(refund_id)
        return memos[0] if memos else None

    memo = await until(f"the credit memo of refund {refund_id} in Prima", credit_memo)
    assert len(await payouts.credit_memos(refund_id)) == 1
    assert D(str(memo["totals"]["total"])) == D("13.07"), memo
    credit_memo_number = memo["credit_memo_number"]

    # the payout decider matches and splits with the sales-documents read model: wait until it has
    # both orders, their sales orders and the credit memo (a payout read before then matches them
    # later, on the decider's re-match sweep; not what this test is about)
    async def documented() -> bool | None:
        a, b = await payouts.documents(first), await payouts.documents(second)
        if a is None or b is None or a["sales_order_number"] is None or b["sales_order_number"] is None:
            return None
        memos = json.loads(a["credit_memos"])
        return True if credit_memo_number in [m.get("credit_memo_number") for m in memos] else None

    await until("the orders, sales orders and credit memo in readmodel.sales_documents", documented)

    # -- the payout: both charges less Shopify's fees, the refund, and the transfer to the bank
    fee_a, fee_b = D("2.29"), D("1.44")  # 2.9% + 0.30
    deposit = D("68.54") - fee_a + D("39.14") - fee_b - D("13.07")
    assert deposit == D("90.88")
    now = datetime.now(UTC).replace(microsecond=0)
    at = now.isoformat()
    await payouts.seed(
        {"id": payout_id, "status": "paid", "date": now.date().isoformat(), "currency": "USD",
         "amount": f"{deposit:.2f}"},
        [balance_transaction(charge_a, "charge", D("68.54"), fee_a, payout_id, at, order=first),
         balance_transaction(charge_b, "charge", D("39.14"), fee_b, payout_id, at, order=second),
         balance_transaction(refund_txn, "refund", D("-13.07"), D("0.00"), payout_id, at, order=first,
                             order_transaction=refund_payment["id"], source_id=refund_id),
         balance_transaction(transfer, "payout", -deposit, D("0.00"), payout_id, at, source_type="payout",
                             source_id=payout_id)])

    # -- asked for by an operator through the ops API
    await payouts.ask_ingest(payout_id)

    async def settled() -> dict[str, Any] | None:
        row = await payouts.payout(payout_id)
        if row is None or row["state"] not in ("reconciled", "held", "journal_failed", "failed"):
            return None
        return row

    row = await until(f"payout {payout_id} reconciled (or stuck) in the ops API", settled, timeout=90)
    assert row["state"] == "reconciled", row
    assert (row["matched"], row["unmatched"], row["exceptions"]) == (3, 0, []), row
    assert D(row["net"]) == deposit and row["shopify_status"] == "PAID"

    # exactly one journal in Prima, the read model's
    [journal] = await payouts.journals(f"shopify-payout:{payout_id}")
    assert journal["journal_number"] == row["journal_number"]
    assert journal["currency"] == "USD" and journal["reverses"] is None

    # by hand, in USD:
    #   credits: sales 62.00 + 30.00 = 92.00, shipping 5.95 + 5.95 = 11.90,
    #            NY tax 8.875% 5.59 + 3.19 = 8.78                                      -> 112.68
    #   debits:  bank 90.88 (the deposit), discounts 5.00, refunds 13.07 (the mug and its tax),
    #            processing fees 2.29 + 1.44 = 3.73                                    -> 112.68
    expected = {
        Category.BANK: (D("90.88"), D("0.00")),
        Category.SALES: (D("0.00"), D("92.00")),
        Category.SHIPPING: (D("0.00"), D("11.90")),
        Category.DISCOUNTS: (D("5.00"), D("0.00")),
        Category.TAX: (D("0.00"), D("8.78")),
        Category.REFUNDS: (D("13.07"), D("0.00")),
        Category.PROCESSING_FEES: (D("3.73"), D("0.00")),
    }
    accounts = settings.payout_accounts

    def account_of(category: Category) -> str:
        return (accounts.tax.for_title(NY[0]) if category is Category.TAX else accounts.account(category)).account

    assert sorted((line["account"], D(str(line["debit"])), D(str(line["credit"]))) for line in journal["lines"]) == \
        sorted((account_of(c), debit, credit) for c, (debit, credit) in expected.items())
    debits = sum(D(str(line["debit"])) for line in journal["lines"])
    credits = sum(D(str(line["credit"])) for line in journal["lines"])
    assert debits == credits == D("112.68")
    [bank] = [line for line in journal["lines"] if line["account"] == account_of(Category.BANK)]
    assert (D(str(bank["debit"])), D(str(bank["credit"]))) == (deposit, 0)
    # the read model holds the same journal, each line with its category
    assert {line["category"]: (D(line["debit"]), D(line["credit"])) for line in row["journal"]["lines"]} == \
        {str(c): amounts for c, amounts in expected.items()}

    # each charge matched to its order's sales order, the refund to its credit memo
    matched = {t["transaction_id"]: (t["type"], t["match_status"], t["document_kind"], t["document"])
               for t in row["transactions"]}
    assert matched == {
        charge_a: ("CHARGE", "matched", "sales_order", sales_orders[first]),
        charge_b: ("CHARGE", "matched", "sales_order", sales_orders[second]),
        refund_txn: ("REFUND", "matched", "credit_memo", credit_memo_number),
        transfer: ("TRANSFER", "not_applicable", None, None),
    }

    # -- asked again: read and decided again, nothing changes
    version = row["last_event_version"]
    await payouts.ask_ingest(payout_id)

    async def read_again() -> dict[str, Any] | None:
        again = await payouts.payout(payout_id)
        return again if again is not None and again["last_event_version"] > version else None

    again = await until(f"payout {payout_id} read again (its events after version {version})", read_again)
    assert (again["state"], again["journal_number"], again["journal_command_id"], again["matched"],
            again["unmatched"]) == ("reconciled", row["journal_number"], row["journal_command_id"], 3, 0), again
    assert again["journal"] == row["journal"]
    assert [j["journal_number"] for j in await payouts.journals(f"shopify-payout:{payout_id}")] == \
        [row["journal_number"]]
