"""Shopify order webhook bodies (REST shape, as in ../shared/reference/shopify-samples), built
with totals that agree the way Shopify's do. Used by the Shopify sandbox, tests and benchmarks."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")


def _money_set(amount: Decimal, currency: str) -> dict[str, Any]:
    money = {"amount": f"{amount:.2f}", "currency_code": currency}
    return {"shop_money": money, "presentment_money": dict(money)}


def _tax_lines(taxes: list[tuple[str, Decimal, Decimal]], currency: str) -> list[dict[str, Any]]:
    return [
        {"title": title, "rate": float(rate), "price": f"{amount:.2f}", "price_set": _money_set(amount, currency)}
        for title, rate, amount in taxes
    ]


def _allocations(amount: Decimal, currency: str) -> list[dict[str, Any]]:
    if not amount:
        return []
    return [{"amount": f"{amount:.2f}", "amount_set": _money_set(amount, currency), "discount_application_index": 0}]


@dataclass
class Line:
    sku: str | None
    title: str
    price: Decimal
    quantity: int
    discount: Decimal = Decimal("0.00")
    taxes: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)  # (title, rate, amount)


@dataclass
class Shipping:
    title: str
    price: Decimal
    discount: Decimal = Decimal("0.00")
    taxes: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)


def order_body(
    order_id: int,
    lines: list[Line],
    shipping: Shipping | None = None,
    *,
    taxes_included: bool,
    currency: str = "USD",
    financial_status: str = "paid",
    updated_at: datetime | None = None,
    name: str | None = None,
    email: str = "customer@example.com",
) -> dict[str, Any]:
    """An order body whose totals are derived from the stated lines, discounts and taxes."""
    updated = (updated_at or datetime.now(UTC)).isoformat()
    line_total = sum((line.price * line.quantity for line in lines), Decimal("0"))
    line_discounts = sum((line.discount for line in lines), Decimal("0"))
    tax = sum((t[2] for line in lines for t in line.taxes), Decimal("0"))
    ship_price = shipping.price if shipping else Decimal("0")
    ship_discount = shipping.discount if shipping else Decimal("0")
    if shipping:
        tax += sum((t[2] for t in shipping.taxes), Decimal("0"))
    subtotal = line_total - line_discounts
    total = subtotal + ship_price - ship_discount + (Decimal("0") if taxes_included else tax)
    amounts = {
        "total_price": total,
        "subtotal_price": subtotal,
        "total_tax": tax,
        "total_discounts": line_discounts + ship_discount,
        "total_line_items_price": line_total,
        # the order as it stands (REST 2024-01 on): an order nobody edited or refunded stands as placed
        "current_subtotal_price": subtotal,
        "current_total_discounts": line_discounts + ship_discount,
        "current_total_tax": tax,
        "current_total_price": total,
    }
    body: dict[str, Any] = {
        "id": order_id,
        "name": name or f"#{order_id % 100000}",
        "order_number": order_id % 100000,
        "email": email,
        "created_at": updated,
        "updated_at": updated,
        "processed_at": updated,
        "cancelled_at": None,
        "test": False,
        "currency": currency,
        "presentment_currency": currency,
        "taxes_included": taxes_included,
        "financial_status": financial_status,
        "line_items": [
            {
                "id": order_id * 100 + i,
                "variant_id": 9000 + i,
                "title": line.title,
                "name": line.title,
                "sku": line.sku,
                "quantity": line.quantity,
                "current_quantity": line.quantity,
                "price": f"{line.price:.2f}",
                "price_set": _money_set(line.price, currency),
                "total_discount": "0.00",
                "discount_allocations": _allocations(line.discount, currency),
                "tax_lines": _tax_lines(line.taxes, currency),
                "taxable": bool(line.taxes),
            }
            for i, line in enumerate(lines, start=1)
        ],
        "shipping_lines": [
            {
                "id": order_id * 100 + 99,
                "title": shipping.title,
                "code": shipping.title.upper().replace(" ", "_"),
                "price": f"{shipping.price:.2f}",
                "price_set": _money_set(shipping.price, currency),
                "discounted_price": f"{shipping.price - shipping.discount:.2f}",
                "discount_allocations": _allocations(shipping.discount, currency),
                "tax_lines": _tax_lines(shipping.taxes, currency),
            }
        ]
        if shipping
        else [],
    }
    for key, amount in amounts.items():
        body[key] = f"{amount:.2f}"
        body[f"{key}_set"] = _money_set(amount, currency)
    return body


def random_paid_order(order_id: int, skus: list[str], rng: random.Random) -> dict[str, Any]:
    """A plausible paid US order (sales tax on top) over the given SKUs, for load."""
    rate = Decimal("0.08875")
    lines = []
    for i, sku in enumerate(rng.sample(skus, k=min(len(skus), rng.randint(1, 3)))):
        price = Decimal(rng.randint(199, 9999)) / 100
        qty = rng.randint(1, 3)
        discount = (price * qty * Decimal("0.1")).quantize(CENT) if i == 0 else Decimal("0.00")
        tax = ((price * qty - discount) * rate).quantize(CENT, ROUND_HALF_UP)
        lines.append(Line(sku, f"Item {sku}", price, qty, discount, [("NY State Tax", rate, tax)]))
    ship_tax = (Decimal("5.95") * rate).quantize(CENT, ROUND_HALF_UP)
    shipping = Shipping("Standard", Decimal("5.95"), Decimal("0.00"), [("NY State Tax", rate, ship_tax)])
    return order_body(order_id, lines, shipping, taxes_included=False)
