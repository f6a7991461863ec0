"""The sales order Prima receives: Shopify's lines, discounts, tax and shipping exactly as stated,
for the order as it stands (domain/orders/current.py).

Nothing is recomputed from rates. The rule that protects finance: the sales order total must
equal what the order adds up to to the cent (Shopify's current total, plus what refunds gave
back, which credit memos take off), and the tax carried must equal Shopify's tax likewise;
otherwise the order is held as an exception instead of being sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from domain.orders.current import expected_totals, figures_for, sold_quantity
from domain.orders.mapping import MappedLine
from domain.orders.values import (
    OrderSnapshot,
    Refund,
    SalesOrder,
    SalesOrderLine,
    SalesOrderLineKind,
    SalesOrderShipping,
    SalesOrderTotals,
)
from domain.shared.money import ZERO, to_cents


@dataclass(frozen=True)
class TotalsMismatch:
    field: str
    sales_order: Decimal
    shopify: Decimal
    basis: str = "Shopify's total"

    def describe(self) -> str:
        return f"sales order {self.field} {self.sales_order} != {self.basis} {self.field} {self.shopify}"


def build_sales_order(order: OrderSnapshot, lines: tuple[MappedLine, ...], refunds: Iterable[Refund] = ()
                      ) -> SalesOrder:
    refunds = tuple(refunds)
    so_lines = []
    for number, mapped in enumerate(lines, start=1):
        line = mapped.line
        units = sold_quantity(order, line, refunds)
        figures = figures_for(line, units)
        gross = to_cents(line.unit_price.amount * units)
        item = mapped.item
        account = mapped.account
        so_lines.append(
            SalesOrderLine(
                line_number=number,
                item_id=item.item_id if item is not None else None,
                sku=item.sku if item is not None else None,
                description=line.title,
                quantity=units,
                unit_price=line.unit_price.amount,
                discount_amount=figures.discount,
                tax_amount=figures.tax,
                net_amount=gross - figures.discount,
                kind=SalesOrderLineKind.ACCOUNT if account is not None else SalesOrderLineKind.ITEM,
                account=account,
                line_id=line.line_id,
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
        ship_to=order.shipping_address,
    )


def totals_mismatch(order: OrderSnapshot, draft: SalesOrder, refunds: Iterable[Refund] = ()) -> TotalsMismatch | None:
    """The first difference between the sales order and what Shopify's totals say it must be."""
    expected = expected_totals(order, refunds)
    checks = (("total", draft.totals.total, expected.total), ("tax", draft.totals.tax, expected.tax))
    for field, ours, theirs in checks:
        if to_cents(ours) != to_cents(theirs):
            return TotalsMismatch(field=field, sales_order=to_cents(ours), shopify=to_cents(theirs),
                                  basis=expected.basis)
    return None
