"""The sales order Prima receives: Shopify's lines, discounts, tax and shipping exactly as stated.

Nothing is recomputed from rates. The rule that protects finance: the sales order total must
equal the Shopify order total to the cent, and the tax carried must equal Shopify's total tax;
otherwise the order is held as an exception instead of being sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.orders.mapping import MappedLine
from domain.orders.values import (
    OrderSnapshot,
    SalesOrder,
    SalesOrderLine,
    SalesOrderShipping,
    SalesOrderTotals,
)
from domain.shared.money import ZERO, to_cents


@dataclass(frozen=True)
class TotalsMismatch:
    field: str
    sales_order: Decimal
    shopify: Decimal

    def describe(self) -> str:
        return f"sales order {self.field} {self.sales_order} != Shopify {self.shopify}"


def build_sales_order(order: OrderSnapshot, lines: tuple[MappedLine, ...]) -> SalesOrder:
    so_lines = []
    for number, mapped in enumerate(lines, start=1):
        line = mapped.line
        gross = to_cents(line.unit_price.amount * line.quantity)
        discount = to_cents(line.discount.amount)
        so_lines.append(
            SalesOrderLine(
                line_number=number,
                item_id=mapped.item.item_id,
                sku=mapped.item.sku,
                description=line.title,
                quantity=line.quantity,
                unit_price=line.unit_price.amount,
                discount_amount=discount,
                tax_amount=to_cents(sum((t.amount.amount for t in line.tax_lines), ZERO)),
                net_amount=gross - discount,
            )
        )
    shipping = None
    if order.shipping_lines:
        shipping = SalesOrderShipping(
            description=" + ".join(s.title for s in order.shipping_lines),
            amount=to_cents(sum((s.price.amount for s in order.shipping_lines), ZERO)),
            discount_amount=to_cents(sum((s.discount.amount for s in order.shipping_lines), ZERO)),
            tax_amount=to_cents(
                sum((t.amount.amount for s in order.shipping_lines for t in s.tax_lines), ZERO)
            ),
        )
    lines_net = sum((line.net_amount for line in so_lines), ZERO)
    shipping_net = shipping.amount - shipping.discount_amount if shipping else ZERO
    tax = sum((line.tax_amount for line in so_lines), ZERO) + (shipping.tax_amount if shipping else ZERO)
    total = lines_net + shipping_net + (ZERO if order.taxes_included else tax)
    return SalesOrder(
        external_reference=str(order.shopify_order_id),
        order_name=order.name,
        currency=order.currency,
        taxes_included=order.taxes_included,
        order_date=order.processed_at or order.created_at,
        customer_email=order.email,
        lines=tuple(so_lines),
        shipping=shipping,
        totals=SalesOrderTotals(lines_net=lines_net, shipping_net=shipping_net, tax=tax, total=total),
    )


def totals_mismatch(order: OrderSnapshot, draft: SalesOrder) -> TotalsMismatch | None:
    """The first difference between the sales order and Shopify's own totals, or None."""
    checks = (
        ("total", draft.totals.total, order.total_price.amount),
        ("tax", draft.totals.tax, order.total_tax.amount),
    )
    for field, ours, theirs in checks:
        if to_cents(ours) != to_cents(theirs):
            return TotalsMismatch(field=field, sales_order=to_cents(ours), shopify=to_cents(theirs))
    return None
