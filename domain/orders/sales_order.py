"""The sales order Prima receives: Shopify's lines, discounts, tax and shipping exactly as stated,
for the order as it stands (domain/orders/current.py); a bundle line as its components' lines
(domain/orders/bundles.py), which add up to it exactly.

Nothing is recomputed from rates. The rule that protects finance: the sales order total must
equal what the order adds up to to the cent (Shopify's current total, plus what refunds gave
back, which credit memos take off), and the tax carried must equal Shopify's tax likewise;
otherwise the order is held as an exception instead of being sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from domain.orders.bundles import expand
from domain.orders.current import (
    LineFigures,
    expected_totals,
    figures_for,
    sold_quantity,
)
from domain.orders.mapping import MappedLine
from domain.orders.values import (
    OrderSnapshot,
    Refund,
    SalesOrder,
    SalesOrderLine,
    SalesOrderLineKind,
    SalesOrderPayment,
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
    so_lines: list[SalesOrderLine] = []
    for mapped in lines:
        line = mapped.line
        units = sold_quantity(order, line, refunds)
        figures = figures_for(line, units)
        if mapped.target is not None and mapped.target.components:
            so_lines += component_lines(mapped, units, figures, order.currency, first_number=len(so_lines) + 1)
            continue
        gross = to_cents(line.unit_price.amount * units)
        item = mapped.item
        account = mapped.account
        so_lines.append(
            SalesOrderLine(
                line_number=len(so_lines) + 1,
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
        payments=payments_of(order),
    )


PAID_KINDS = frozenset({"sale", "capture"})


def payments_of(order: OrderSnapshot) -> tuple[SalesOrderPayment, ...]:
    """How the order was paid, as Shopify states it, for an ERP that records payment on the
    sales order (Prima's OM link, OrderPaymentData):

    - the order's successful sale and capture transactions in its currency, each with its gateway
      (where the delivery carries transactions: the reconciler's reads, orders with transactions);
    - else, when the order names exactly one payment gateway (an orders/paid webhook carries
      `payment_gateway_names` and no transactions), one payment of the order's total through it;
    - else nothing: several gateways without their amounts cannot be split honestly, so no
      payment is stated (Prima records the order as paid without a tender; README, "Connecting to
      your Prima").
    Refunds are not taken off: they reach Prima as credit memos."""
    paid = tuple(
        SalesOrderPayment(gateway=t.gateway, amount=t.amount.amount,
                          transaction_id=str(t.transaction_id) if t.transaction_id is not None else None)
        for t in order.transactions
        if t.kind in PAID_KINDS and t.status == "success" and t.gateway and t.amount is not None
        and t.amount.currency == order.currency)
    if paid:
        return paid
    gateways = tuple(dict.fromkeys(g for g in order.payment_gateways if g.strip()))
    if len(gateways) == 1:
        return (SalesOrderPayment(gateway=gateways[0], amount=order.total_price.amount),)
    return ()


def component_lines(mapped: MappedLine, units: int, figures: LineFigures, currency: str, first_number: int
                    ) -> list[SalesOrderLine]:
    """A bundle line as its components' lines (domain/orders/bundles.py), numbered on from
    `first_number`, each naming the Shopify line and the kit."""
    assert mapped.target is not None and mapped.item is not None
    kit = mapped.item
    parts = expand(mapped.target.components, units, mapped.line.unit_price.amount, figures.discount, figures.taxes,
                   currency)
    return [SalesOrderLine(
        line_number=number, item_id=part.component.item.item_id, sku=part.component.item.sku,
        description=part.component.item.description or part.component.item.sku, quantity=part.quantity,
        unit_price=part.unit_price, discount_amount=part.discount, tax_amount=part.tax,
        net_amount=part.gross - part.discount, kind=SalesOrderLineKind.ITEM, line_id=mapped.line.line_id,
        bundle_item_id=kit.item_id, bundle_sku=kit.sku, units_per_bundle=part.component.per_bundle,
    ) for number, part in enumerate(parts, start=first_number)]


def totals_mismatch(order: OrderSnapshot, draft: SalesOrder, refunds: Iterable[Refund] = ()) -> TotalsMismatch | None:
    """The first difference between the sales order and what Shopify's totals say it must be."""
    expected = expected_totals(order, refunds)
    checks = (("total", draft.totals.total, expected.total), ("tax", draft.totals.tax, expected.tax))
    for field, ours, theirs in checks:
        if to_cents(ours) != to_cents(theirs):
            return TotalsMismatch(field=field, sales_order=to_cents(ours), shopify=to_cents(theirs),
                                  basis=expected.basis)
    return None
