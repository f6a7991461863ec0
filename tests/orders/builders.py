"""Test data for the order flow: domain values (OrderSnapshot, OrderDelivery) built from a few
lines, and the wire messages the handlers take (a Shopify webhook body, ShopifyOrderReceived,
CreateSalesOrder), built from those same values.

The totals agree the way Shopify's do: derived from the stated prices, quantities, discounts and
tax lines (VAT inside the prices when `taxes_included`, sales tax on top otherwise), unless a
test overrides `total_price` to make them disagree. Unit tests take their data from here, never
from sandboxes/ (the sandboxes are a product of their own, with their own tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from uuid import UUID, uuid4

from contracts.prima.sales_orders import CreateSalesOrder
from contracts.shopify.orders import (
    OrderWebhookTopic,
    ShopifyOrder,
    ShopifyOrderReceived,
)
from domain.catalog.items import ItemType, PrimaItem
from domain.orders.domainmodel import Order
from domain.orders.values import (
    Address,
    OrderAdjustment,
    OrderDelivery,
    OrderLine,
    OrderSnapshot,
    PaymentTransaction,
    Refund,
    RefundDelivery,
    RefundLine,
    ShippingLine,
    TaxLine,
)
from domain.shared.money import Money
from services.orders.translate import wire_command

D = Decimal
ZERO = D("0.00")
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
SKUS = ("TSHIRT-BLK-M", "MUG-WHT", "HOODIE-GRY-L", "SOCKS-3PK")

Tax = tuple[str, Decimal, Decimal]  # (title, rate, amount)


# ----------------------------------------------------------------------------- Prima's items


def item(sku: str, *, active: bool = True, item_type: str = ItemType.STOCK) -> PrimaItem:
    return PrimaItem(item_id=f"ITM-{sku}", sku=sku, description=sku, item_type=item_type, active=active)


def items(*skus: str, **changed: PrimaItem) -> dict[str, PrimaItem]:
    """An item master of active stock items (every SKU of these tests by default), with
    `changed` items in place of some: items(**{"MUG-WHT": item("MUG-WHT", active=False)})."""
    found = {sku: item(sku) for sku in skus or SKUS}
    found.update(changed)
    return found


ITEMS = items()


# ------------------------------------------------------------------------ the order, as stated


@dataclass(frozen=True)
class Line:
    sku: str | None
    title: str
    price: Decimal
    quantity: int
    discount: Decimal = ZERO  # the line's discount allocations, summed
    taxes: tuple[Tax, ...] = ()


@dataclass(frozen=True)
class Shipping:
    title: str
    price: Decimal
    discount: Decimal = ZERO
    taxes: tuple[Tax, ...] = ()


def transaction(kind: str, status: str = "success", amount: Decimal | None = None, currency: str = "GBP",
                transaction_id: int = 1) -> PaymentTransaction:
    return PaymentTransaction(transaction_id=transaction_id, kind=kind, status=status,
                              amount=Money(amount, currency) if amount is not None else None)


def order(
    order_id: int,
    lines: Iterable[Line],
    shipping: Shipping | None = None,
    *,
    taxes_included: bool,
    currency: str = "USD",
    financial_status: str | None = "paid",
    updated_at: datetime = NOW,
    total_price: Decimal | None = None,
    transactions: Iterable[PaymentTransaction] = (),
    name: str | None = None,
    email: str | None = "customer@example.com",
) -> OrderSnapshot:
    """An OrderSnapshot whose totals follow from its lines (Shopify's arithmetic), unless
    `total_price` states another total."""
    lines = tuple(lines)

    def money(amount: Decimal) -> Money:
        return Money(amount, currency)

    def taxes(stated: tuple[Tax, ...]) -> tuple[TaxLine, ...]:
        return tuple(TaxLine(title=title, rate=rate, amount=money(amount)) for title, rate, amount in stated)

    gross = sum((line.price * line.quantity for line in lines), ZERO)
    line_discounts = sum((line.discount for line in lines), ZERO)
    tax = sum((t[2] for line in lines for t in line.taxes), ZERO)
    if shipping:
        tax += sum((t[2] for t in shipping.taxes), ZERO)
    subtotal = gross - line_discounts
    shipping_net = shipping.price - shipping.discount if shipping else ZERO
    total = subtotal + shipping_net + (ZERO if taxes_included else tax)
    return OrderSnapshot(
        shopify_order_id=order_id,
        name=name or f"#{order_id % 100000}",
        order_number=order_id % 100000,
        email=email,
        currency=currency,
        presentment_currency=currency,
        taxes_included=taxes_included,
        financial_status=financial_status,
        test=False,
        created_at=updated_at,
        updated_at=updated_at,
        processed_at=updated_at,
        cancelled_at=None,
        subtotal_price=money(subtotal),
        total_discounts=money(line_discounts + (shipping.discount if shipping else ZERO)),
        total_tax=money(tax),
        total_price=money(total if total_price is None else total_price),
        lines=tuple(
            OrderLine(line_id=order_id * 100 + i, sku=line.sku, title=line.title, variant_id=9000 + i,
                      quantity=line.quantity, unit_price=money(line.price), discount=money(line.discount),
                      tax_lines=taxes(line.taxes))
            for i, line in enumerate(lines, start=1)
        ),
        shipping_lines=(
            ShippingLine(line_id=order_id * 100 + 99, title=shipping.title,
                         code=shipping.title.upper().replace(" ", "_"), price=money(shipping.price),
                         discount=money(shipping.discount), tax_lines=taxes(shipping.taxes)),
        ) if shipping else (),
        transactions=tuple(transactions),
    )


def uk_vat_inclusive(order_id: int = 1001, **kw: Any) -> OrderSnapshot:
    """UK, prices include VAT 20%; 10% off the lines and 1.00 off shipping: total 58.00, VAT 9.67."""
    vat = D("0.2")
    return order(
        order_id,
        [
            Line("TSHIRT-BLK-M", "T-shirt", D("24.00"), 2, D("4.80"), (("VAT", vat, D("7.20")),)),
            Line("MUG-WHT", "Mug", D("12.00"), 1, D("1.20"), (("VAT", vat, D("1.80")),)),
        ],
        Shipping("Royal Mail", D("5.00"), D("1.00"), (("VAT", vat, D("0.67")),)),
        taxes_included=True,
        currency="GBP",
        **kw,
    )


def us_tax_exclusive(order_id: int = 2001, **kw: Any) -> OrderSnapshot:
    """New York, sales tax 8.875% on top; 5.00 off allocated to the lines and 2.00 off shipping:
    total 78.29, tax 6.39."""
    rate = D("0.08875")
    return order(
        order_id,
        [
            Line("HOODIE-GRY-L", "Hoodie", D("19.99"), 3, D("4.22"), (("NY State Tax", rate, D("4.95")),)),
            Line("SOCKS-3PK", "Socks", D("5.49"), 2, D("0.78"), (("NY State Tax", rate, D("0.91")),)),
        ],
        Shipping("UPS Ground", D("7.95"), D("2.00"), (("NY State Tax", rate, D("0.53")),)),
        taxes_included=False,
        currency="USD",
        **kw,
    )


def without_sku(snapshot: OrderSnapshot, line_index: int) -> OrderSnapshot:
    """The same order with one line's SKU missing (a custom line item)."""
    lines = list(snapshot.lines)
    lines[line_index] = replace(lines[line_index], sku=None)
    return replace(snapshot, lines=tuple(lines))


def delivery(snapshot: OrderSnapshot, topic: str = "orders/paid", webhook_id: str | None = None,
             received_at: datetime = NOW) -> OrderDelivery:
    return OrderDelivery(webhook_id=webhook_id or str(uuid4()), topic=topic, received_at=received_at,
                         order=snapshot)


# ------------------------------------------------------------------------ the same, on the wire


def _amount(value: Decimal) -> str:
    return f"{value:.2f}"


def _money_set(value: Money) -> dict[str, Any]:
    money = {"amount": _amount(value.amount), "currency_code": value.currency}
    return {"shop_money": money, "presentment_money": dict(money)}


def _tax_lines(lines: tuple[TaxLine, ...]) -> list[dict[str, Any]]:
    return [{"title": t.title, "rate": str(t.rate) if t.rate is not None else None, "price": _amount(t.amount.amount),
             "price_set": _money_set(t.amount)} for t in lines]


def _allocations(discount: Money) -> list[dict[str, Any]]:
    if not discount.amount:
        return []
    return [{"amount": _amount(discount.amount), "amount_set": _money_set(discount), "discount_application_index": 0}]


def webhook_body(snapshot: OrderSnapshot) -> dict[str, Any]:
    """The order as Shopify's REST webhook body states it (shop money in the `*_set` twins)."""
    body: dict[str, Any] = {
        "id": snapshot.shopify_order_id,
        "name": snapshot.name,
        "order_number": snapshot.order_number,
        "email": snapshot.email,
        "created_at": snapshot.created_at.isoformat(),
        "updated_at": snapshot.updated_at.isoformat(),
        "processed_at": snapshot.processed_at.isoformat() if snapshot.processed_at else None,
        "cancelled_at": snapshot.cancelled_at.isoformat() if snapshot.cancelled_at else None,
        "test": snapshot.test,
        "currency": snapshot.currency,
        "presentment_currency": snapshot.presentment_currency,
        "taxes_included": snapshot.taxes_included,
        "financial_status": snapshot.financial_status,
        "line_items": [
            {"id": li.line_id, "variant_id": li.variant_id, "title": li.title, "name": li.title, "sku": li.sku,
             "quantity": li.quantity, "price": _amount(li.unit_price.amount), "price_set": _money_set(li.unit_price),
             "discount_allocations": _allocations(li.discount), "tax_lines": _tax_lines(li.tax_lines)}
            for li in snapshot.lines
        ],
        "shipping_lines": [
            {"id": sl.line_id, "title": sl.title, "code": sl.code, "price": _amount(sl.price.amount),
             "price_set": _money_set(sl.price), "discount_allocations": _allocations(sl.discount),
             "tax_lines": _tax_lines(sl.tax_lines)}
            for sl in snapshot.shipping_lines
        ],
        "transactions": [
            {"id": t.transaction_id, "kind": t.kind, "status": t.status,
             **({"amount": _amount(t.amount.amount)} if t.amount else {})}
            for t in snapshot.transactions
        ],
    }
    for field in ("subtotal_price", "total_discounts", "total_tax", "total_price"):
        value: Money = getattr(snapshot, field)
        body[field] = _amount(value.amount)
        body[f"{field}_set"] = _money_set(value)
    return body


def received(snapshot: OrderSnapshot, topic: OrderWebhookTopic = "orders/paid", webhook_id: str | None = None,
             received_at: datetime = NOW, raw_payload_id: UUID | None = None) -> ShopifyOrderReceived:
    """The ShopifyOrderReceived the ingest publishes for a webhook stating this order."""
    return ShopifyOrderReceived(
        webhook_id=webhook_id or str(uuid4()), topic=topic, shop_domain="test-shop.myshopify.com",
        received_at=received_at, raw_payload_id=raw_payload_id or uuid4(),
        order=ShopifyOrder.from_webhook(webhook_body(snapshot)),
    )


def create_sales_order(snapshot: OrderSnapshot | None = None) -> CreateSalesOrder:
    """The CreateSalesOrder the Order aggregate decides for a paid order (all its SKUs known),
    as the relay puts it on prima.commands.v1."""
    decided = Order.receive(delivery(snapshot or us_tax_exclusive()), ITEMS)
    assert decided.command is not None, "the order is paid and every SKU is known"
    return wire_command(decided.command)


# ------------------------------------------------------------ the order after it was placed
# Shopify's arithmetic after an edit or a refund (SHOPIFY.md): a removed line stays with its
# original quantity and `current_quantity` says what is left; the current totals are what is
# sold less what was refunded; a line's discount and tax for part of it are in proportion, to the
# cent, the last units taking what is left. Written here on their own (never the domain's code),
# so that the rules are checked against an independent statement of the figures.

RefundLineSpec = tuple[int, int, str]  # (line id, units, restock_type)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def _part(line: OrderLine, units: int) -> tuple[Decimal, Decimal]:
    """(price x units - discount, tax) of `units` of a line."""
    discount, tax = line.discount.amount, sum((t.amount.amount for t in line.tax_lines), ZERO)
    if units != line.quantity:
        share = Decimal(units) / Decimal(line.quantity)
        discount = _cents(discount * share)
        tax = sum((_cents(t.amount.amount * share) for t in line.tax_lines), ZERO)
    return line.unit_price.amount * units - discount, tax


def _refunded(snapshot: OrderSnapshot, line_id: int) -> tuple[int, Decimal, Decimal]:
    found = [rl for r in snapshot.refunds for rl in r.lines if rl.line_id == line_id]
    return (sum(rl.quantity for rl in found), sum((rl.subtotal.amount for rl in found), ZERO),
            sum((rl.tax.amount for rl in found), ZERO))


def _current(snapshot: OrderSnapshot) -> OrderSnapshot:
    """The snapshot with Shopify's current totals for its lines, shipping and refunds."""
    money = lambda amount: Money(amount, snapshot.currency)  # noqa: E731
    subtotal = tax = ZERO
    for line in snapshot.lines:
        left = line.quantity if line.current_quantity is None else line.current_quantity
        units, back, back_tax = _refunded(snapshot, line.line_id)
        net, line_tax = _part(line, left + units)
        subtotal += net - back
        tax += line_tax - back_tax
    shipping = sum((s.price.amount - s.discount.amount for s in snapshot.shipping_lines), ZERO)
    shipping_tax = sum((t.amount.amount for s in snapshot.shipping_lines for t in s.tax_lines), ZERO)
    extra = sum((-(a.amount.amount + (ZERO if snapshot.taxes_included else a.tax.amount))
                 for r in snapshot.refunds for a in r.adjustments), ZERO)
    extra_tax = sum((-a.tax.amount for r in snapshot.refunds for a in r.adjustments), ZERO)
    total = subtotal + shipping + (ZERO if snapshot.taxes_included else tax + shipping_tax) - extra
    return replace(snapshot, current_subtotal_price=money(subtotal), current_total_tax=money(tax + shipping_tax
                                                                                               - extra_tax),
                   current_total_price=money(total))


def standing(snapshot: OrderSnapshot) -> OrderSnapshot:
    """The order as Shopify states it from 2024-01 on: current_quantity and current totals too."""
    lines = tuple(replace(line, current_quantity=line.quantity if line.current_quantity is None
                          else line.current_quantity) for line in snapshot.lines)
    return _current(replace(snapshot, lines=lines))


def edited(snapshot: OrderSnapshot, *, remove: dict[int, int] | None = None, add: Iterable[Line] = (),
           address: Address | None = None, minutes: int = 1) -> OrderSnapshot:
    """The order after an edit (orders/updated): units removed from lines {line id: units},
    lines added, the delivery address changed."""
    base = standing(snapshot)
    lines = []
    for line in base.lines:
        units = (remove or {}).get(line.line_id, 0)
        lines.append(replace(line, current_quantity=line.current_quantity - units) if units else line)
    money = lambda amount: Money(amount, base.currency)  # noqa: E731
    next_id = max(line.line_id for line in base.lines) + 1
    for offset, new in enumerate(add):
        lines.append(OrderLine(
            line_id=next_id + offset, sku=new.sku, title=new.title, variant_id=9900 + offset, quantity=new.quantity,
            unit_price=money(new.price), discount=money(new.discount),
            tax_lines=tuple(TaxLine(title=t, rate=r, amount=money(a)) for t, r, a in new.taxes),
            current_quantity=new.quantity))
    return _current(replace(base, lines=tuple(lines), updated_at=base.updated_at + timedelta(minutes=minutes),
                            shipping_address=address if address is not None else base.shipping_address))


def refunded(snapshot: OrderSnapshot, refund_id: int, *, lines: Iterable[RefundLineSpec] = (), shipping: bool = False,
             amount: Decimal | None = None, gateway: str = "shopify_payments", minutes: int = 1,
             paid: Decimal | None = None) -> tuple[Refund, OrderSnapshot]:
    """(the refund, the order after it): `lines` [(line id, units, restock_type)], the shipping,
    and/or an amount alone (a goodwill refund, stated as a refund discrepancy). `paid`: the
    refund's transaction amount when it is not what the refund adds up to."""
    base = standing(snapshot)
    money = lambda value: Money(value, base.currency)  # noqa: E731
    by_id = {line.line_id: line for line in base.lines}
    refund_lines, given, new_lines = [], ZERO, dict(by_id)
    for number, (line_id, units, restock) in enumerate(lines, start=1):
        line = new_lines[line_id]
        if units == line.current_quantity:  # the rest of the line: what is left, to the cent
            done, back, back_tax = _refunded(base, line_id)
            net, tax = _part(line, units + done)
            net, tax = net - back, tax - back_tax
        else:
            net, tax = _part(line, units)
        refund_lines.append(RefundLine(refund_line_id=refund_id * 100 + number, line_id=line_id, quantity=units,
                                       subtotal=money(net), tax=money(tax), restock_type=restock))
        new_lines[line_id] = replace(line, current_quantity=line.current_quantity - units)
        given += net + (ZERO if base.taxes_included else tax)
    adjustments = []
    if shipping:
        for s in base.shipping_lines:
            price, tax = s.price.amount - s.discount.amount, sum((t.amount.amount for t in s.tax_lines), ZERO)
            adjustments.append(OrderAdjustment(adjustment_id=refund_id * 100 + 90, kind="shipping_refund",
                                               reason="Shipping refund", amount=money(-price), tax=money(-tax)))
            given += price + (ZERO if base.taxes_included else tax)
    if amount is not None:
        adjustments.append(OrderAdjustment(adjustment_id=refund_id * 100 + 99, kind="refund_discrepancy",
                                           reason="Refund discrepancy", amount=money(-amount), tax=money(ZERO)))
        given += amount
    when = base.updated_at + timedelta(minutes=minutes)
    refund = Refund(refund_id=refund_id, shopify_order_id=base.shopify_order_id, created_at=when, note=None,
                    lines=tuple(refund_lines), adjustments=tuple(adjustments),
                    transactions=(PaymentTransaction(transaction_id=refund_id * 10, kind="refund", status="success",
                                                     amount=money(given if paid is None else paid), gateway=gateway),))
    after = _current(replace(base, lines=tuple(new_lines[line.line_id] for line in base.lines), updated_at=when,
                             refunds=(*base.refunds, refund), financial_status="partially_refunded"))
    return refund, after


def cancelled_order(snapshot: OrderSnapshot, *, reason: str = "customer", minutes: int = 1) -> OrderSnapshot:
    base = standing(snapshot)
    when = base.updated_at + timedelta(minutes=minutes)
    return replace(base, cancelled_at=when, cancel_reason=reason, updated_at=when)


def refund_delivery(refund: Refund, webhook_id: str | None = None, received_at: datetime = NOW) -> RefundDelivery:
    return RefundDelivery(webhook_id=webhook_id or str(uuid4()), topic="refunds/create", received_at=received_at,
                          refund=refund)
