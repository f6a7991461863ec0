"""The order as it stands: what Prima's sales order carries after edits, and what it must add up to.

Shopify keeps a removed line in `line_items` with its original quantity; `current_quantity`
says what is left (after edits and refunds), and `current_total_price` / `current_total_tax`
give the order as it stands (after edits and refunds). The sales order follows edits, while a
refund becomes a credit memo against it (domain/orders/credit_memo.py): so that nothing is
counted twice, the sales order carries the units a refund took back (the memo credits them),
and must add up to the current totals plus what the refunds gave back. With no refund this is
exactly Shopify's current total; and always: sales order - credit memos = the order as it stands.

- `sold_quantity`: a line's units on the sales order: current_quantity plus the units refunded
  (Shopify's quantity where current_quantity is not stated). A line with nothing left is not sold.
- `figures_for`: a line's discount and tax for those units: as stated for the whole line, else
  in proportion to the units, to the cent (the totals check below catches any cent that differs).
- `expected_totals`: what the sales order's total and tax must equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from domain.orders.values import OrderLine, OrderSnapshot, PaymentTransaction, Refund
from domain.shared.money import ZERO, to_cents

REFUND_KIND = "refund"
SUCCESS = "success"


def known_refunds(order: OrderSnapshot | None, recorded: Mapping[int, Refund] | Iterable[Refund] = ()) -> tuple[Refund, ...]:
    """The refunds the order body lists and those delivered on their own, once each (by id)."""
    found: dict[int, Refund] = {}
    for refund in (recorded.values() if isinstance(recorded, Mapping) else recorded):
        found[refund.refund_id] = refund
    for refund in (order.refunds if order is not None else ()):
        found.setdefault(refund.refund_id, refund)
    return tuple(sorted(found.values(), key=lambda r: (r.created_at, r.refund_id)))


def refunded_units(refunds: Iterable[Refund], line_id: int) -> int:
    return sum(rl.quantity for refund in refunds for rl in refund.lines if rl.line_id == line_id)


def sold_quantity(order: OrderSnapshot, line: OrderLine, refunds: Iterable[Refund] = ()) -> int:
    if line.current_quantity is None:
        return line.quantity
    return line.current_quantity + refunded_units(known_refunds(order, refunds), line.line_id)


@dataclass(frozen=True)
class LineFigures:
    units: int
    discount: Decimal
    tax: Decimal
    taxes: tuple[Decimal, ...] = ()  # each tax line's, in order (they add up to `tax`)


def figures_for(line: OrderLine, units: int) -> LineFigures:
    """The line's discount and tax for `units` of it (Shopify states them for the whole line)."""
    discount = line.discount.amount
    taxes = [t.amount.amount for t in line.tax_lines]
    if units != line.quantity and line.quantity > 0:
        share = Decimal(units) / Decimal(line.quantity)
        discount = to_cents(discount * share)
        taxes = [to_cents(t * share) for t in taxes]
    return LineFigures(units=units, discount=to_cents(discount), tax=to_cents(sum(taxes, ZERO)),
                       taxes=tuple(to_cents(t) for t in taxes))


def refunded_money(transactions: Iterable[PaymentTransaction]) -> Decimal:
    """What successful refund transactions gave back, every tender (a gift card's included)."""
    return sum((t.amount.amount for t in transactions
                if t.kind == REFUND_KIND and t.status == SUCCESS and t.amount is not None), ZERO)


def refunded_tax(refund: Refund) -> Decimal:
    """The tax a refund gave back: its lines', its shipping's, and its adjustments' (signed as an
    adjustment lowers the order)."""
    return (sum((rl.tax.amount for rl in refund.lines), ZERO) + sum((s.tax.amount for s in refund.shipping), ZERO)
            - sum((a.tax.amount for a in refund.adjustments), ZERO))


@dataclass(frozen=True)
class ExpectedTotals:
    total: Decimal
    tax: Decimal
    basis: str  # in words: which of Shopify's totals, and the refunds added back


def expected_totals(order: OrderSnapshot, refunds: Iterable[Refund] = ()) -> ExpectedTotals:
    """What the sales order must add up to: Shopify's current totals plus what the refunds gave
    back (the credit memos take it off again); the original totals where Shopify states no
    current ones (an order never edited nor refunded)."""
    if order.current_total_price is None:
        return ExpectedTotals(order.total_price.amount, order.total_tax.amount, "Shopify's total")
    every = known_refunds(order, refunds)
    money = sum((refunded_money(r.transactions) for r in every), ZERO)
    tax = sum((refunded_tax(r) for r in every), ZERO)
    current_tax = order.current_total_tax.amount if order.current_total_tax is not None else order.total_tax.amount
    basis = "Shopify's current total" + (f" plus {len(every)} refund(s) credited by memo" if every else "")
    return ExpectedTotals(order.current_total_price.amount + money, current_tax + tax, basis)
