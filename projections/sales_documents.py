"""The sales-documents read model: per Shopify order, what the payout decider needs to match its
payments to Prima documents and to split a charge into journal categories. Built from the
order-events topic; rebuildable from offset zero like every projection.

Per order: its name, shop and presentment currency, total, its parts (domain/payouts/split.py
order_parts: sales, shipping, gift cards, tips, discounts, tax per title and rate, as ordered:
a charge pays for the order as it was when paid), its successful captures and sales (order
transaction id and amount), its Prima sales order (number, and when Prima created it), and its
refunds with their credit memos (issue 9: RefundReceived gives a refund's order transactions and
amount, CreditMemoCreated its Prima credit memo). A refund may come before its order: the row
then holds the refund alone until the order arrives.

The payout decider reads it (`documents_for`), like the order decider reads the item master: no
call to Prima or Shopify inside a handler, and matching follows what the order flow has recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from contracts.orders.events import OrderEvent
from contracts.topics import ORDER_EVENTS
from domain.payouts.split import LINE_CATEGORIES, PricedLine, order_parts
from domain.payouts.values import AmountPart, CreditMemoDocument, OrderDocument
from domain.shared.money import to_cents
from projections.base import Projection, ReadModel

PAYMENT_KINDS = ("capture", "sale")


def parts_of(order: Any) -> tuple[AmountPart, ...]:
    """The parts of a ShopifyOrder (contracts/shopify/orders.py), as ordered."""
    lines = [PricedLine(category=str(LINE_CATEGORIES.get(getattr(li, "kind", "product"), "sales")),
                        gross=to_cents(li.unit_price.amount * li.quantity), discount=li.discount.amount,
                        taxes=tuple((t.title, t.rate, t.amount.amount) for t in li.tax_lines))
             for li in order.line_items]
    lines += [PricedLine(category="shipping", gross=sl.price.amount, discount=sl.discount.amount,
                         taxes=tuple((t.title, t.rate, t.amount.amount) for t in sl.tax_lines))
              for sl in order.shipping_lines]
    return order_parts(lines, order.taxes_included)


def _parts_json(parts: Iterable[AmountPart]) -> str:
    return json.dumps([{"category": p.category, "amount": str(p.amount), "tax_title": p.tax_title,
                        "tax_rate": None if p.tax_rate is None else str(p.tax_rate)} for p in parts])


def _payments_json(order: Any) -> str:
    return json.dumps([[t.id, str(t.amount.amount)] for t in order.transactions
                       if t.id is not None and t.amount is not None and t.kind in PAYMENT_KINDS
                       and t.status == "success"])


class SalesDocumentsProjection(Projection):
    read_model = ReadModel(name="sales_documents")
    topic = ORDER_EVENTS
    accepts = (OrderEvent,)
    tables = ("readmodel.sales_documents",)

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        for e in messages:
            t = e.event_type
            if t in ("OrderReceived", "OrderUpdated"):
                await self._order(conn, e)
            elif t == "SalesOrderCreated":
                await self._touch(conn, e)
                await conn.execute(
                    """UPDATE readmodel.sales_documents SET sales_order_number = $2,
                           sales_order_created_at = coalesce(sales_order_created_at, $3), last_event_at = $4
                       WHERE shopify_order_id = $1""",
                    e.shopify_order_id, e.sales_order_number, e.occurred_at, e.timestamp)
            elif t == "RefundReceived":
                refund = e.refund
                successful = [x for x in refund.transactions if x.kind == "refund" and x.status == "success"
                              and x.amount is not None]
                await self._memo(conn, e, refund.id, {
                    "transaction_ids": [x.id for x in successful if x.id is not None],
                    "refunded": str(sum((x.amount.amount for x in successful), Decimal("0.00")))})
            elif t == "CreditMemoCreated":
                await self._memo(conn, e, e.refund_id, {"credit_memo_number": e.credit_memo_number,
                                                         "amount": str(Decimal(e.total))})

    async def _touch(self, conn: asyncpg.Connection, e: Any) -> None:
        await conn.execute(
            "INSERT INTO readmodel.sales_documents (shopify_order_id, last_event_at) VALUES ($1, $2) "
            "ON CONFLICT (shopify_order_id) DO NOTHING", e.shopify_order_id, e.timestamp)

    async def _order(self, conn: asyncpg.Connection, e: Any) -> None:
        order = e.order
        await conn.execute(
            """INSERT INTO readmodel.sales_documents AS d (shopify_order_id, order_name, currency, presentment_currency,
                   total, parts, payments, order_updated_at, last_event_at)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9)
               ON CONFLICT (shopify_order_id) DO UPDATE SET order_name = EXCLUDED.order_name,
                   currency = EXCLUDED.currency, presentment_currency = EXCLUDED.presentment_currency,
                   total = EXCLUDED.total, parts = EXCLUDED.parts, payments = EXCLUDED.payments,
                   order_updated_at = EXCLUDED.order_updated_at, last_event_at = EXCLUDED.last_event_at
               WHERE d.order_updated_at IS NULL OR d.order_updated_at <= EXCLUDED.order_updated_at""",
            order.id, order.name, order.currency, order.presentment_currency, order.total_price.amount,
            _parts_json(parts_of(order)), _payments_json(order), order.updated_at, e.timestamp)

    async def _memo(self, conn: asyncpg.Connection, e: Any, refund_id: int, fields: dict[str, Any]) -> None:
        await self._touch(conn, e)
        memos = json.loads(await conn.fetchval(
            "SELECT credit_memos::text FROM readmodel.sales_documents WHERE shopify_order_id = $1 FOR UPDATE",
            e.shopify_order_id))
        found = next((m for m in memos if m["refund_id"] == refund_id), None)
        if found is None:
            found = {"refund_id": refund_id}
            memos.append(found)
        found.update(fields)
        await conn.execute("UPDATE readmodel.sales_documents SET credit_memos = $2::jsonb, last_event_at = $3 "
                           "WHERE shopify_order_id = $1", e.shopify_order_id, json.dumps(memos), e.timestamp)


def _document(r: asyncpg.Record) -> OrderDocument:
    return OrderDocument(
        shopify_order_id=r["shopify_order_id"], order_name=r["order_name"], currency=r["currency"], total=r["total"],
        presentment_currency=r["presentment_currency"],
        parts=tuple(AmountPart(category=p["category"], amount=Decimal(p["amount"]), tax_title=p["tax_title"],
                               tax_rate=None if p["tax_rate"] is None else Decimal(p["tax_rate"]))
                    for p in json.loads(r["parts"])),
        payments=tuple((int(i), Decimal(a)) for i, a in json.loads(r["payments"])),
        sales_order_number=r["sales_order_number"],
        credit_memos=tuple(CreditMemoDocument(
            credit_memo_number=m["credit_memo_number"], refund_id=m.get("refund_id"),
            amount=Decimal(m["amount"]) if m.get("amount") is not None else None,
            transaction_ids=tuple(m.get("transaction_ids") or ()))
            for m in json.loads(r["credit_memos"]) if m.get("credit_memo_number")))


async def documents_for(db: asyncpg.Pool | asyncpg.Connection, order_ids: Iterable[int]) -> dict[int, OrderDocument]:
    """The documents of these orders that the integration has received (an order never received
    is simply absent: its transactions are `order_not_seen`)."""
    wanted = sorted(set(order_ids))
    if not wanted:
        return {}
    rows = await db.fetch(
        """SELECT shopify_order_id, order_name, currency, presentment_currency, total, parts::text AS parts,
                  payments::text AS payments, sales_order_number, credit_memos::text AS credit_memos
           FROM readmodel.sales_documents WHERE shopify_order_id = ANY($1::bigint[]) AND order_name IS NOT NULL""",
        wanted)
    return {r["shopify_order_id"]: _document(r) for r in rows}
