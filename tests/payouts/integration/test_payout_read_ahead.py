"""The payout decider's documents read ahead (services/payouts/decider.py ReadAhead) over a real
PostgreSQL (a throwaway database, migrated): the read models' rows are written as their
projections write them (readmodel.sales_documents, readmodel.order_payment_gateways).

- read ahead, then rows changed, added, emptied, removed: the look-up returns exactly what one
  plain read (documents_for) returns then; the rows that did not change are the ones kept;
- a payout read page by page with its documents read ahead while orders change between the
  pages (a sales order created after its page, parts changed, the gateways recorded later):
  the same matches and the same journal as a decider that reads every document at the end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from domain.payouts.application import PayoutApplication
from domain.payouts.domainmodel import PayoutPolicy, PayoutState
from services.payouts.decider import PayoutDecider, ReadAhead, documents_for
from tests.payouts.builders import D, payout, read, transfer, tx
from tests.support import scratch_database

pytestmark = pytest.mark.integration
SEEN = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
async def pool(database_url):
    async with scratch_database(database_url, "payout_read_ahead") as url:
        made = await asyncpg.create_pool(url, min_size=1, max_size=3)
        yield made
        await made.close()


async def put_document(pool: asyncpg.Pool, order_id: int, sales: str, *, sales_order: str | None = "SO-1",
                       name: str | None = "#1") -> Decimal:
    """An order's sales document (sales, 10% tax), as the sales-documents projection upserts it; its total."""
    tax = (D(sales) / 10).quantize(D("0.01"))
    parts = [{"category": "sales", "amount": sales, "tax_title": None, "tax_rate": None},
             {"category": "tax", "amount": str(tax), "tax_title": "VAT", "tax_rate": "0.10"}]
    await pool.execute(
        """INSERT INTO readmodel.sales_documents (shopify_order_id, order_name, currency, presentment_currency, total,
               parts, sales_order_number, sales_order_created_at, last_event_at)
           VALUES ($1, $2, 'USD', 'USD', $3, $4::jsonb, $5, $6, $6)
           ON CONFLICT (shopify_order_id) DO UPDATE SET order_name = EXCLUDED.order_name, total = EXCLUDED.total,
               parts = EXCLUDED.parts, sales_order_number = EXCLUDED.sales_order_number""",
        order_id, name, D(sales) + tax, json.dumps(parts), sales_order, SEEN)
    return D(sales) + tax


async def put_gateways(pool: asyncpg.Pool, order_id: int, *names: str) -> None:
    await pool.execute(
        """INSERT INTO readmodel.order_payment_gateways (shopify_order_id, gateway_names, order_updated_at, recorded_at)
           VALUES ($1, $2, $3, $3) ON CONFLICT (shopify_order_id) DO UPDATE SET gateway_names = EXCLUDED.gateway_names""",
        order_id, list(names), SEEN)


async def test_given_documents_read_ahead_when_rows_change_then_the_look_up_equals_one_plain_read(pool):
    base = 5_000_000
    orders = [base + n for n in range(1, 9)]
    for order_id in orders[:6]:
        await put_document(pool, order_id, "100.00")
        await put_gateways(pool, order_id, "shopify_payments")
    ahead = ReadAhead(pool)
    await ahead.ahead(set(orders[:7]))  # the 7th has no document yet
    kept = {i: doc for i, (_, doc) in ahead.kept.items()}
    assert kept[orders[6]] is None and kept[orders[0]].gateways == ("shopify_payments",)

    await put_document(pool, orders[1], "120.00")  # parts changed
    await put_gateways(pool, orders[2], "shopify_payments", "gift_card")  # paid partly by gift card since
    await pool.execute("DELETE FROM readmodel.order_payment_gateways WHERE shopify_order_id = $1", orders[3])
    await put_document(pool, orders[4], "100.00", name=None)  # not a document any more
    await put_document(pool, orders[6], "70.00")  # its sales order came
    await put_document(pool, orders[7], "80.00")  # never read ahead
    await pool.execute("UPDATE readmodel.sales_documents SET parts = parts WHERE shopify_order_id = $1",
                       orders[5])  # written again, the same

    looked = await ahead(orders)

    assert looked == await documents_for(pool, orders)
    assert looked[orders[0]] is kept[orders[0]]  # unchanged: the kept document, not read again
    assert looked[orders[1]].total == D("132.00") and looked[orders[2]].gateways == ("shopify_payments", "gift_card")
    assert looked[orders[3]].gateways == () and orders[4] not in looked and looked[orders[6]].total == D("77.00")
    assert looked[orders[5]] == kept[orders[5]] and looked[orders[5]] is not kept[orders[5]]  # a new row version
    assert ahead.kept == {}  # decided on: forgotten
    assert await ahead(orders[:2]) == await documents_for(pool, orders[:2])  # nothing kept: a plain read


async def test_given_a_payout_read_page_by_page_when_documents_are_read_ahead_then_the_same_decision_as_read_at_the_end(
        pool):
    base = 6_000_000
    orders = [base + n for n in range(1, 41)]
    totals = {i: await put_document(pool, i, f"{50 + n}.00") for n, i in enumerate(orders[:-5])}
    for order_id in orders[:-5]:
        await put_gateways(pool, order_id, "shopify_payments")
    charges = [tx("CHARGE", str(totals.get(i, D("88.00"))), "1.00", order=i) for i in orders]
    net = sum((t.net.amount for t in charges), D("0.00"))
    header = payout(str(net), payout_id=base)
    *pages, end = read(header, [*charges, transfer(header)], page_size=10)
    policy = PayoutPolicy(documents_grace=timedelta(0))

    # between the pages and the end of the read, orders change (as their projections write them)
    async def change() -> None:
        await put_document(pool, orders[0], "51.00")  # page 1's order: its parts changed (charge now short)
        for order_id in orders[-5:]:  # page 4's orders: their sales orders came
            await put_document(pool, order_id, "80.00")
        await put_gateways(pool, orders[12], "shopify_payments", "gift_card")  # page 2's order, partly a gift card

    # the decider with the documents read ahead, page by page: the changes land after the pages
    payouts_ahead = PayoutApplication()
    ahead = ReadAhead(pool)
    decider = PayoutDecider(payouts_ahead, ahead, policy, ahead=ahead.ahead)
    for n, page in enumerate(pages):
        await decider.decide([page])
        assert len(ahead.kept) == min(10 * (n + 1), 40)  # each page's orders read as it came
    assert payouts_ahead.find_payout(base).state is PayoutState.READING
    await change()
    await decider.decide([end])
    with_ahead = payouts_ahead.find_payout(base)
    assert ahead.kept == {}

    # the same read, every document read at the end (after the same changes)
    payouts_plain = PayoutApplication()
    plain = PayoutDecider(payouts_plain, lambda ids: documents_for(pool, ids), policy)
    for fact in [*pages, end]:
        await plain.decide([fact])
    at_end = payouts_plain.find_payout(base)

    assert with_ahead.state is at_end.state is PayoutState.JOURNAL_REQUESTED
    assert with_ahead.matches == at_end.matches
    assert with_ahead.command.journal.lines == at_end.command.journal.lines
    statuses = {m.transaction_id: m.status for m in with_ahead.matches.values()}
    assert statuses[charges[0].transaction_id] != "matched"  # 51.00 + tax no longer its charge's amount
    assert all(statuses[t.transaction_id] == "matched" for t in charges[-5:])  # their sales orders came
    payouts_ahead.close()
    payouts_plain.close()
