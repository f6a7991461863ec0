"""Figures that do not add up: checked before any sales order is built, so that Prima never gets
one that does not add up, and nothing is rounded or guessed into shape.

- amount_precision: an amount with more decimal places than its currency has (19.999 USD);
  rounding it would change what Shopify states.
- line_figures: a line whose own figures disagree: units left (current_quantity) above the units
  ordered, a discount above the line's price times its quantity, or a stated total after
  discounts that is not price x quantity - discount.
- order_without_lines: no line at all, or none with anything left to sell.

Each is an exception on the order (the first found is named), which `orders release` decides
again once the order was corrected in Shopify (a new delivery) or the cause was fixed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from domain.orders.current import sold_quantity
from domain.orders.values import OrderLine, OrderSnapshot, Refund
from domain.shared.money import Money

# ISO 4217 minor units where they are not 2 (the ledger keeps at most what the currency has)
_MINOR_UNITS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
                     "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


class FigureProblemKind:
    AMOUNT_PRECISION = "amount_precision"
    LINE_FIGURES = "line_figures"
    ORDER_WITHOUT_LINES = "order_without_lines"


@dataclass(frozen=True)
class FigureProblem:
    kind: str
    detail: str


def places_of(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)


def too_precise(money: Money) -> bool:
    places = places_of(money.currency)
    return money.amount != money.amount.quantize(Decimal(1).scaleb(-places))


def _amounts(order: OrderSnapshot) -> Iterator[tuple[str, Money]]:
    for name in ("subtotal_price", "total_discounts", "total_tax", "total_price", "current_subtotal_price",
                 "current_total_tax", "current_total_price"):
        value = getattr(order, name)
        if value is not None:
            yield name.replace("_", " "), value
    for line in order.lines:
        where = f"line {line.line_id} {line.title!r}"
        yield f"{where}: unit price", line.unit_price
        yield f"{where}: discount", line.discount
        if line.discounted_total is not None:
            yield f"{where}: total", line.discounted_total
        for tax in line.tax_lines:
            yield f"{where}: tax {tax.title!r}", tax.amount
    for shipping in order.shipping_lines:
        where = f"shipping {shipping.title!r}"
        yield f"{where}: price", shipping.price
        yield f"{where}: discount", shipping.discount
        for tax in shipping.tax_lines:
            yield f"{where}: tax {tax.title!r}", tax.amount


def precision_problems(amounts: Iterable[tuple[str, Money]]) -> list[str]:
    return [f"{where} {money.amount} {money.currency} has more than {places_of(money.currency)} decimal places"
            for where, money in amounts if too_precise(money)]


def line_problems(line: OrderLine) -> list[str]:
    where = f"line {line.line_id} {line.title!r}"
    found = []
    if line.current_quantity is not None and line.current_quantity > line.quantity:
        found.append(f"{where}: {line.current_quantity} units left of {line.quantity} ordered")
    gross = line.unit_price.amount * line.quantity
    if line.discount.amount > gross:
        found.append(f"{where}: discount {line.discount.amount} is more than {line.quantity} x "
                     f"{line.unit_price.amount} = {gross}")
    if line.discounted_total is not None and line.discounted_total.amount != gross - line.discount.amount:
        found.append(f"{where}: {line.quantity} x {line.unit_price.amount} - discount {line.discount.amount} = "
                     f"{gross - line.discount.amount}, but Shopify states the line's total as "
                     f"{line.discounted_total.amount}")
    return found


def figure_problem(order: OrderSnapshot, refunds: Iterable[Refund] = ()) -> FigureProblem | None:
    """The first thing that does not add up, or None."""
    precision = precision_problems(_amounts(order))
    if precision:
        return FigureProblem(FigureProblemKind.AMOUNT_PRECISION, "; ".join(precision))
    refunds = tuple(refunds)
    lines = [problem for line in order.lines for problem in line_problems(line)]
    # units left plus units refunded above the units ordered: the body states the order before a
    # refund the Order already holds (a late delivery); never a sales order for more than was ordered
    lines += [f"line {line.line_id} {line.title!r}: {line.current_quantity} units left and "
              f"{sold_quantity(order, line, refunds) - line.current_quantity} refunded, of {line.quantity} ordered "
              f"(the order as delivered predates a refund already received)"
              for line in order.lines
              if line.current_quantity is not None and sold_quantity(order, line, refunds) > line.quantity]
    if lines:
        return FigureProblem(FigureProblemKind.LINE_FIGURES, "; ".join(lines))
    if not order.lines:
        return FigureProblem(FigureProblemKind.ORDER_WITHOUT_LINES, "the order has no line")
    if all(sold_quantity(order, line, refunds) <= 0 for line in order.lines):
        return FigureProblem(FigureProblemKind.ORDER_WITHOUT_LINES,
                             f"none of the order's {len(order.lines)} line(s) has anything left to sell")
    return None
