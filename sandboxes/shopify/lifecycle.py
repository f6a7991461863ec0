"""What happens to a Shopify order after it is placed, as the webhook bodies Shopify sends for it
(REST shapes, as in ../shared/reference/SHOPIFY.md and shopify-samples/): an edit (orders/edited
with its order_edit body, then orders/updated with the order as it stands), a refund
(refunds/create, then orders/updated), a cancellation (orders/cancelled, with or without its
refund). Each function takes an order body (sandboxes/shopify/orders.py `order_body`) and gives
the bodies Shopify would send, the order's with what Shopify keeps:

- an edit keeps a removed line in `line_items` with its original `quantity`; `current_quantity`
  says what is left, and `current_subtotal_price`, `current_total_tax`, `current_total_price`
  give the order as it stands (a line's discount and tax for the units left in proportion, to
  the cent); an added line is a new line item; the delivery address may change;
- a refund lists refund_line_items (quantity, subtotal, total_tax, restock_type), the shipping
  refunded as an order adjustment of kind shipping_refund (negative, as Shopify states it), an
  amount alone (a goodwill refund) as a refund_discrepancy adjustment, and its transaction; the
  order then lists the refund in `refunds`, its current quantities and totals fall by what was
  refunded, and its financial status is partially_refunded or refunded;
- a cancellation sets cancelled_at and cancel_reason; a paid order's cancellation refunds it
  whole (restock_type cancel), an unpaid one is voided.
Used by the tests, the e2e tests and the refunds benchmark; `POST /_sandbox/webhooks` sends any
of these bodies under its topic.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sandboxes.shopify.orders import Line, _allocations, _money_set, _tax_lines

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_EVEN)


def _set(body: dict[str, Any], key: str, amount: Decimal) -> None:
    body[key] = f"{amount:.2f}"
    body[f"{key}_set"] = _money_set(amount, body["currency"])


def _later(body: dict[str, Any], at: datetime | None) -> str:
    before = datetime.fromisoformat(body["updated_at"])
    when = at or max(datetime.now(UTC), before + timedelta(milliseconds=1))
    return when.isoformat()


def _left(line: dict[str, Any]) -> int:
    return line.get("current_quantity", line["quantity"])


def line_figures(line: dict[str, Any], units: int) -> tuple[Decimal, Decimal, Decimal]:
    """(price x units - discount, discount, tax) of `units` of a line, in proportion, to the cent."""
    price, quantity = _d(line["price"]), line["quantity"]
    discount = sum((_d(a["amount"]) for a in line.get("discount_allocations") or ()), ZERO)
    tax = sum((_d(t["price"]) for t in line.get("tax_lines") or ()), ZERO)
    if units != quantity:
        share = Decimal(units) / Decimal(quantity)
        discount = _cents(discount * share)
        tax = sum((_cents(_d(t["price"]) * share) for t in line.get("tax_lines") or ()), ZERO)
    return price * units - discount, discount, tax


def _restate(body: dict[str, Any], refunded_money: Decimal = ZERO, refunded_tax: Decimal = ZERO) -> None:
    """The order's current totals from what is left of its lines (and its shipping), less what
    its refunds gave back beyond the lines they took (shipping, amounts)."""
    subtotal = tax = ZERO
    for line in body["line_items"]:
        # what is sold after edits, less what the refunds took back as they state it
        net, _, line_tax = line_figures(line, _left(line) + _refunded_units(body, line["id"]))
        back_net, back_tax_of_line = _refunded_figures(body, line["id"])
        subtotal += net - back_net
        tax += line_tax - back_tax_of_line
    shipping = sum((_d(s["price"]) - sum((_d(a["amount"]) for a in s.get("discount_allocations") or ()), ZERO)
                    for s in body.get("shipping_lines") or ()), ZERO)
    shipping_tax = sum((_d(t["price"]) for s in body.get("shipping_lines") or () for t in s.get("tax_lines") or ()),
                       ZERO)
    # what refunds gave back for shipping and amounts (their lines are already out of `subtotal`)
    back = sum((_refund_extra(r, body["taxes_included"]) for r in body.get("refunds") or ()), ZERO)
    back_tax = sum((-_d(a.get("tax_amount", "0")) for r in body.get("refunds") or ()
                    for a in r.get("order_adjustments") or ()), ZERO)
    tax_total = tax + shipping_tax - back_tax
    total = subtotal + shipping + (ZERO if body["taxes_included"] else tax + shipping_tax) - back
    _set(body, "current_subtotal_price", subtotal)
    _set(body, "current_total_tax", tax_total)
    _set(body, "current_total_price", total)


def _refunded_units(body: dict[str, Any], line_id: int) -> int:
    return sum(rl["quantity"] for r in body.get("refunds") or () for rl in r.get("refund_line_items") or ()
               if rl["line_item_id"] == line_id)


def _refunded_figures(body: dict[str, Any], line_id: int) -> tuple[Decimal, Decimal]:
    found = [rl for r in body.get("refunds") or () for rl in r.get("refund_line_items") or ()
             if rl["line_item_id"] == line_id]
    return sum((_d(rl["subtotal"]) for rl in found), ZERO), sum((_d(rl["total_tax"]) for rl in found), ZERO)


def _refund_extra(refund: dict[str, Any], taxes_included: bool) -> Decimal:
    """What a refund gave back besides its lines: its adjustments (signed: a shipping refund is
    negative), with their tax unless the order's prices include it."""
    return sum((-(_d(a["amount"]) + (ZERO if taxes_included else _d(a.get("tax_amount", "0"))))
                for a in refund.get("order_adjustments") or ()), ZERO)


def edited(body: dict[str, Any], *, edit_id: int, remove: dict[int, int] | None = None,
           add: list[Line] | None = None, shipping_address: dict[str, Any] | None = None,
           at: datetime | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the orders/edited body, the order as it stands for orders/updated) after an edit that
    removes `remove` {line id: units}, adds the `add` lines and/or changes the delivery address."""
    order = copy.deepcopy(body)
    order["updated_at"] = _later(body, at)
    removals, additions = [], []
    for line in order["line_items"]:
        line.setdefault("current_quantity", line["quantity"])
        units = (remove or {}).get(line["id"], 0)
        if units:
            if units > line["current_quantity"]:
                raise ValueError(f"line {line['id']} has {line['current_quantity']} units left, not {units}")
            line["current_quantity"] -= units
            removals.append({"id": line["id"], "delta": units})
    next_id = max(li["id"] for li in order["line_items"]) + 1
    currency = order["currency"]
    for offset, new in enumerate(add or ()):
        line_id = next_id + offset
        order["line_items"].append({
            "id": line_id, "variant_id": 9900 + offset, "product_id": 9800 + offset, "title": new.title,
            "name": new.title, "sku": new.sku, "quantity": new.quantity, "current_quantity": new.quantity,
            "price": f"{new.price:.2f}", "price_set": _money_set(new.price, currency), "total_discount": "0.00",
            "discount_allocations": _allocations(new.discount, currency), "tax_lines": _tax_lines(new.taxes, currency),
            "taxable": bool(new.taxes)})
        additions.append({"id": line_id, "delta": new.quantity})
    if shipping_address is not None:
        order["shipping_address"] = shipping_address
    _restate(order)
    edit = {"order_edit": {"id": edit_id, "app_id": None, "created_at": order["updated_at"], "notify_customer": False,
                           "order_id": order["id"], "staff_note": "", "user_id": None,
                           "line_items": {"additions": additions, "removals": removals}}}
    return edit, order


def refunded(body: dict[str, Any], *, refund_id: int, lines: list[tuple[int, int, str]] = (),
             shipping: bool = False, amount: Decimal | None = None, note: str | None = None,
             gateway: str = "shopify_payments", at: datetime | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the refunds/create body, the order as it stands after it) for a refund of `lines`
    [(line id, units, restock_type)], the shipping (`shipping`), and/or an amount alone (a
    goodwill refund)."""
    order = copy.deepcopy(body)
    currency, included = order["currency"], order["taxes_included"]
    created = _later(body, at)
    order["updated_at"] = created
    by_id = {line["id"]: line for line in order["line_items"]}
    refund_lines, money = [], ZERO
    for number, (line_id, units, restock_type) in enumerate(lines, start=1):
        line = by_id[line_id]
        line.setdefault("current_quantity", line["quantity"])
        if units > line["current_quantity"]:
            raise ValueError(f"line {line_id} has {line['current_quantity']} units left, not {units}")
        if units == line["current_quantity"]:  # the rest of the line: what is left, to the cent
            sold_net, _, sold_tax = line_figures(line, units + _refunded_units(order, line_id))
            back_net, back_tax = _refunded_figures(order, line_id)
            net, tax = sold_net - back_net, sold_tax - back_tax
        else:
            net, _, tax = line_figures(line, units)
        line["current_quantity"] -= units
        refund_lines.append({
            "id": refund_id * 100 + number, "line_item_id": line_id, "quantity": units, "restock_type": restock_type,
            "location_id": None, "subtotal": f"{net:.2f}", "subtotal_set": _money_set(net, currency),
            "total_tax": f"{tax:.2f}", "total_tax_set": _money_set(tax, currency),
            "line_item": {k: line[k] for k in ("id", "variant_id", "title", "quantity", "price", "sku") if k in line}})
        money += net + (ZERO if included else tax)
    adjustments = []
    shipping_refunded = any(a.get("kind") == "shipping_refund" for r in order.get("refunds") or ()
                            for a in r.get("order_adjustments") or ())
    if shipping and not shipping_refunded:  # shipping is refunded once
        for s in order.get("shipping_lines") or ():
            price = _d(s["price"]) - sum((_d(a["amount"]) for a in s.get("discount_allocations") or ()), ZERO)
            tax = sum((_d(t["price"]) for t in s.get("tax_lines") or ()), ZERO)
            adjustments.append({"id": refund_id * 100 + 90 + len(adjustments), "order_id": order["id"],
                                "refund_id": refund_id, "kind": "shipping_refund", "reason": "Shipping refund",
                                "amount": f"{-price:.2f}", "amount_set": _money_set(-price, currency),
                                "tax_amount": f"{-tax:.2f}", "tax_amount_set": _money_set(-tax, currency)})
            money += price + (ZERO if included else tax)
    if amount is not None:  # an amount alone: Shopify states it as a refund discrepancy
        adjustments.append({"id": refund_id * 100 + 99, "order_id": order["id"], "refund_id": refund_id,
                            "kind": "refund_discrepancy", "reason": "Refund discrepancy",
                            "amount": f"{-amount:.2f}", "amount_set": _money_set(-amount, currency),
                            "tax_amount": "0.00", "tax_amount_set": _money_set(ZERO, currency)})
        money += amount
    refund = {
        "id": refund_id, "order_id": order["id"], "created_at": created, "processed_at": created, "note": note,
        "restock": any(t != "no_restock" for _, _, t in lines), "user_id": None,
        "refund_line_items": refund_lines, "order_adjustments": adjustments,
        "transactions": [{"id": refund_id * 10 + 1, "order_id": order["id"], "kind": "refund", "status": "success",
                          "gateway": gateway, "amount": f"{money:.2f}", "currency": currency, "created_at": created,
                          "test": False, "parent_id": None}],
    }
    order.setdefault("refunds", []).append(refund)
    _restate(order)
    left = _d(order["current_total_price"])
    order["financial_status"] = "refunded" if left <= ZERO else "partially_refunded"
    return refund, order


def cancelled(body: dict[str, Any], *, reason: str = "customer", refund_id: int | None = None,
              at: datetime | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the orders/cancelled body, its refund's refunds/create body or None): a paid order is
    refunded whole (every unit left, restock_type cancel, and the shipping); an unpaid one voided."""
    order = copy.deepcopy(body)
    refund = None
    if order.get("financial_status") in ("paid", "partially_refunded") and refund_id is not None:
        units = [(line["id"], _left(line), "cancel") for line in order["line_items"] if _left(line) > 0]
        refund, order = refunded(order, refund_id=refund_id, lines=units, shipping=True, note="Order cancelled", at=at)
    else:
        order["financial_status"] = "voided"
        order["updated_at"] = _later(body, at)
    order["cancelled_at"] = order["updated_at"]
    order["cancel_reason"] = reason
    return order, refund
