"""What counts as a change: the differences between the sales order Prima holds and the one the
order as it stands makes, in words a person can act on.

A change is a difference in what the warehouse ships or finance books: a line added or removed,
a line's units, item, price, discount or tax, the shipping charge, the totals, the delivery
address. What Shopify changes that Prima does not carry (a note, a tag, the financial status
after a refund: refunds are credit memos) is no change, so such a delivery amends nothing.
Addresses are compared field by field and only the fields' names are written out (no customer
data in exception records and logs).
"""

from __future__ import annotations

from dataclasses import fields

from domain.orders.values import Address, SalesOrder, SalesOrderLine


def _keyed(lines: tuple[SalesOrderLine, ...], by_line_id: bool) -> dict[tuple, SalesOrderLine]:
    """Lines by the Shopify line they stand for (and what they book), or by item alone for a
    sales order recorded before lines named their Shopify line; the n-th line with the same key
    (a bundle's component at two prices has two lines) is told apart by n."""
    keyed: dict[tuple, SalesOrderLine] = {}
    seen: dict[tuple, int] = {}
    for line in lines:
        key = ((line.line_id,) if by_line_id else ()) + (line.item_id, line.account)
        seen[key] = seen.get(key, 0) + 1
        keyed[key + ((seen[key],) if seen[key] > 1 else ())] = line
    return keyed


def _what(line: SalesOrderLine) -> str:
    booked = f"SKU {line.sku}" if line.sku else f"account {line.account}"
    return f"{line.description!r} ({booked})"


def address_changes(before: Address | None, after: Address | None) -> list[str]:
    if before == after:
        return []
    if before is None or after is None:
        return ["delivery address " + ("added" if before is None else "removed")]
    changed = [f.name for f in fields(Address) if getattr(before, f.name) != getattr(after, f.name)]
    return [f"delivery address changed ({', '.join(changed)})"]


def differences(prima: SalesOrder, now: SalesOrder) -> tuple[str, ...]:
    """Each difference between what Prima holds and what the order as it stands says; empty
    when there is nothing to change."""
    found: list[str] = []
    by_line_id = all(line.line_id is not None for line in (*prima.lines, *now.lines))
    before = _keyed(prima.lines, by_line_id)
    after = _keyed(now.lines, by_line_id)
    for key, line in after.items():
        old = before.get(key)
        if old is None:
            found.append(f"line added: {_what(line)} x{line.quantity} at {line.unit_price}")
            continue
        if old.quantity != line.quantity:
            found.append(f"{_what(line)}: quantity {old.quantity} -> {line.quantity}")
        for name in ("unit_price", "discount_amount", "tax_amount"):
            if getattr(old, name) != getattr(line, name):
                found.append(f"{_what(line)}: {name.replace('_', ' ')} {getattr(old, name)} -> {getattr(line, name)}")
    for key, line in before.items():
        if key not in after:
            found.append(f"line removed: {_what(line)} x{line.quantity}")
    if prima.shipping != now.shipping:
        old_ship = f"{prima.shipping.amount} - {prima.shipping.discount_amount}" if prima.shipping else "none"
        new_ship = f"{now.shipping.amount} - {now.shipping.discount_amount}" if now.shipping else "none"
        found.append(f"shipping {old_ship} -> {new_ship}")
    found += address_changes(prima.ship_to, now.ship_to)
    if prima.totals != now.totals:
        found.append(f"total {prima.totals.total} -> {now.totals.total}, tax {prima.totals.tax} -> {now.totals.tax}")
    if prima.customer_email != now.customer_email:
        found.append("customer e-mail changed")
    return tuple(found)


def summary(order: SalesOrder) -> str:
    """A sales order in one line: its lines and totals (for an exception's 'Shopify now' and
    'Prima has')."""
    lines = ", ".join(f"{_what(line)} x{line.quantity}" for line in order.lines) or "no lines"
    return f"{lines}; total {order.totals.total} {order.currency}, tax {order.totals.tax}"
