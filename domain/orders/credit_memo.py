"""A Shopify refund as a Prima credit memo against the order's sales order, to the cent.

- Lines: each refunded line with its quantity, amount (Shopify's refunded subtotal) and tax as
  Shopify states them, booked against what the sales order booked the line to (its item or
  account; a line the sales order does not carry is mapped like an order line), with Shopify's
  restock_type and a `returned` flag (the units come back into stock: return, cancel, legacy).
  A refunded bundle line is credited as its components, its amount and tax spread over them by
  the sales order's rule (domain/orders/bundles.py), one memo line per component.
- Shipping refunded: the refund's shipping lines, or else its shipping_refund adjustments.
- Other order adjustments (a refund discrepancy): carried as adjustments, signed so that they add
  to the memo what they take off the order.
- A refund of an amount only (no line, no shipping: a goodwill gesture) is one line to the
  configured goodwill item (ORDER_GOODWILL_ITEM), for the amount refunded, no tax.

The memo's total (lines + shipping + adjustments, plus tax unless the order's prices include it)
must equal what the refund's successful transactions gave back, every tender included (a gift
card refunded is money back too), else the memo is not sent: an exception (credit_memo_mismatch)
names both. A line that maps nowhere is an exception too (credit_memo_unmapped), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from domain.catalog.items import ItemMaster, ItemType
from domain.orders.bundles import spread_memo
from domain.orders.current import refunded_money
from domain.orders.mapping import (
    LineRules,
    Target,
    booked_targets,
    describe_line,
    map_line,
)
from domain.orders.values import (
    CreditMemo,
    CreditMemoAdjustment,
    CreditMemoLine,
    CreditMemoShipping,
    CreditMemoTotals,
    OrderLine,
    OrderSnapshot,
    Refund,
    RestockType,
    SalesOrder,
    SalesOrderLineKind,
)
from domain.shared.money import ZERO, to_cents

SHIPPING_REFUND = "shipping_refund"
RETURNED = frozenset(RestockType.RESTOCKED)


class MemoProblemKind:
    MISMATCH = "credit_memo_mismatch"
    UNMAPPED = "credit_memo_unmapped"


@dataclass(frozen=True)
class MemoProblem:
    kind: str
    detail: str


@dataclass(frozen=True)
class MemoDecision:
    memo: CreditMemo | None
    problem: MemoProblem | None = None


def _booked(order_line: OrderLine | None, line_id: int, booked: Mapping[int, Target], items: ItemMaster,
            rules: LineRules) -> Target | str:
    """What the line is booked to (as the sales order booked it, else mapped like an order
    line), or why it cannot be."""
    if line_id in booked:
        return booked[line_id]
    if order_line is None:
        return f"the refund names order line {line_id}, which the order does not have"
    target, missing, no_rule = map_line(order_line, items, rules)
    if target is None:
        return no_rule or f"{describe_line(order_line)}: " + "; ".join(
            f"SKU {sku!r}: {why}" for sku, why in missing)
    return target


def _goodwill_line(amount: Decimal, goodwill_sku: str | None, items: ItemMaster) -> CreditMemoLine | str:
    if not goodwill_sku:
        return "an amount-only (goodwill) refund is booked to the goodwill item: set ORDER_GOODWILL_ITEM"
    item = items.get(goodwill_sku)
    if item is None or not item.active or item.item_type != ItemType.SERVICE:
        state = "missing" if item is None else ("inactive" if not item.active else f"a {item.item_type} item")
        return f"the goodwill item {goodwill_sku!r} (ORDER_GOODWILL_ITEM) is {state} in Prima, not an active non-stock item"
    return CreditMemoLine(line_number=1, kind=SalesOrderLineKind.ITEM, item_id=item.item_id, sku=item.sku,
                          account=None, description=item.description or "Goodwill", quantity=1, amount=to_cents(amount),
                          tax_amount=ZERO, restock_type=None, returned=False)


def build_credit_memo(refund: Refund, order: OrderSnapshot, sales_order_number: str,
                      sales_order: SalesOrder | None, items: ItemMaster, rules: LineRules | None = None,
                      goodwill_sku: str | None = None) -> MemoDecision:
    rules = rules or LineRules()
    order_lines: Mapping[int, OrderLine] = {line.line_id: line for line in order.lines}
    refunded = to_cents(refunded_money(refund.transactions))
    lines: list[CreditMemoLine] = []
    unmapped: list[str] = []
    booked_lines = booked_targets(sales_order)
    for rl in refund.lines:
        booked = _booked(order_lines.get(rl.line_id), rl.line_id, booked_lines, items, rules)
        if isinstance(booked, str):
            unmapped.append(booked)
            continue
        returned = rl.restock_type in RETURNED
        if booked.components:  # a bundle line: its components are credited, by the sales order's rule
            for part in spread_memo(booked.components, rl.quantity, to_cents(rl.subtotal.amount),
                                    to_cents(rl.tax.amount), order.currency):
                lines.append(CreditMemoLine(
                    line_number=len(lines) + 1, kind=SalesOrderLineKind.ITEM, item_id=part.component.item.item_id,
                    sku=part.component.item.sku, account=None,
                    description=part.component.item.description or part.component.item.sku, quantity=part.quantity,
                    amount=part.amount, tax_amount=part.tax, restock_type=rl.restock_type, returned=returned,
                    line_id=rl.line_id))
            continue
        kind = SalesOrderLineKind.ACCOUNT if booked.account is not None else SalesOrderLineKind.ITEM
        title = order_lines[rl.line_id].title if rl.line_id in order_lines else f"line {rl.line_id}"
        lines.append(CreditMemoLine(
            line_number=len(lines) + 1, kind=kind, item_id=booked.item.item_id if booked.item else None,
            sku=booked.item.sku if booked.item else None, account=booked.account, description=title,
            quantity=rl.quantity, amount=to_cents(rl.subtotal.amount), tax_amount=to_cents(rl.tax.amount),
            restock_type=rl.restock_type, returned=returned, line_id=rl.line_id))
    shipping = None
    if refund.shipping:
        shipping = CreditMemoShipping(description="Shipping refunded",
                                      amount=to_cents(sum((s.amount.amount for s in refund.shipping), ZERO)),
                                      tax_amount=to_cents(sum((s.tax.amount for s in refund.shipping), ZERO)))
    shipping_adjustments = [a for a in refund.adjustments if a.kind == SHIPPING_REFUND]
    if shipping is None and shipping_adjustments:
        shipping = CreditMemoShipping(description="Shipping refunded",
                                      amount=to_cents(-sum((a.amount.amount for a in shipping_adjustments), ZERO)),
                                      tax_amount=to_cents(-sum((a.tax.amount for a in shipping_adjustments), ZERO)))
    others = [a for a in refund.adjustments if a.kind != SHIPPING_REFUND]
    adjustments = [CreditMemoAdjustment(kind=a.kind, description=a.reason or a.kind.replace("_", " "),
                                        amount=to_cents(-a.amount.amount), tax_amount=to_cents(-a.tax.amount))
                   for a in others]
    if not refund.lines and shipping is None:
        # an amount only: the goodwill line carries what was refunded; a discrepancy adjustment
        # is how Shopify states such an amount, not something to add to it
        goodwill = _goodwill_line(refunded, goodwill_sku, items)
        if refunded <= ZERO:
            return MemoDecision(None, MemoProblem(MemoProblemKind.MISMATCH, "the refund has no line, no shipping "
                                                  "and no successful refund transaction: nothing to credit"))
        if isinstance(goodwill, str):
            unmapped.append(goodwill)
        else:
            lines, adjustments = [goodwill], []
    if unmapped:
        return MemoDecision(None, MemoProblem(MemoProblemKind.UNMAPPED, "; ".join(unmapped)))
    lines_total = sum((line.amount for line in lines), ZERO)
    shipping_total = shipping.amount if shipping else ZERO
    adjustments_total = sum((a.amount for a in adjustments), ZERO)
    tax = (sum((line.tax_amount for line in lines), ZERO) + (shipping.tax_amount if shipping else ZERO)
           + sum((a.tax_amount for a in adjustments), ZERO))
    total = lines_total + shipping_total + adjustments_total + (ZERO if order.taxes_included else tax)
    memo = CreditMemo(
        sales_order_number=sales_order_number, external_reference=str(refund.refund_id), currency=order.currency,
        taxes_included=order.taxes_included, memo_date=refund.created_at, reason=refund.note,
        lines=tuple(lines), shipping=shipping, adjustments=tuple(adjustments),
        totals=CreditMemoTotals(lines=lines_total, shipping=shipping_total, adjustments=adjustments_total,
                                tax=tax, total=total))
    if to_cents(total) != refunded:
        return MemoDecision(None, MemoProblem(
            MemoProblemKind.MISMATCH,
            f"credit memo total {to_cents(total)} != the refund's transactions {refunded} {order.currency} "
            f"(lines {lines_total}, shipping {shipping_total}, adjustments {adjustments_total}, tax {tax}"
            f"{' included' if order.taxes_included else ''})"))
    return MemoDecision(memo)
