"""A charge split into what the customer paid for: sales, shipping, discounts and tax per
jurisdiction, in the payout's currency, exact to the cent.

A charge is stated by Shopify in the payout's currency; its order's parts (OrderDocument.parts)
are in the shop's currency and add up to the order's total. The charge is allocated over the
parts in proportion to them (largest remainder, so the allocated parts add up to the charge to
the cent): a charge of the whole order in the shop's currency gets exactly the order's parts; a
partial capture, a split payment or a charge converted into another payout currency gets each
part's share. Without parts (an order never seen, or parts that add up to nothing) there is no
split: the journal posts the charge to the unmatched-charges clearing account.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from domain.payouts.categories import Category
from domain.payouts.values import AmountPart, OrderDocument
from domain.shared.money import CENT

ZERO = Decimal("0.00")
# What an order line is, as the journal sees it: a gift card sold is a liability, a tip is not a sale.
LINE_CATEGORIES = {"product": Category.SALES, "custom": Category.SALES, "gift_card": Category.GIFT_CARDS,
                   "tip": Category.TIPS}


@dataclass(frozen=True)
class PricedLine:
    """An order line or shipping line as Shopify priced it, in the shop's currency."""

    category: str  # sales, shipping, gift_cards, tips
    gross: Decimal  # price x quantity ordered (tax inside when the order's prices include it)
    discount: Decimal  # its discount allocations
    taxes: tuple[tuple[str, Decimal | None, Decimal], ...] = ()  # (title, rate, amount)


def order_parts(lines: Iterable[PricedLine], taxes_included: bool) -> tuple[AmountPart, ...]:
    """What the customer paid for, by journal category, adding up to what the lines cost: each
    line's gross (net of its tax when prices include tax) in its category, its discount under
    discounts, its tax per title and rate. As ordered: a charge pays for the order as it was
    when paid, whatever is refunded or edited after (a refund is its own transaction)."""
    amounts: dict[tuple[str, str | None, Decimal | None], Decimal] = {}

    def add(key: tuple[str, str | None, Decimal | None], amount: Decimal) -> None:
        amounts[key] = amounts.get(key, ZERO) + amount

    for line in lines:
        line_tax = sum((amount for _, _, amount in line.taxes), ZERO)
        add((line.category, None, None), line.gross - (line_tax if taxes_included else ZERO))
        add((Category.DISCOUNTS, None, None), -line.discount)
        for title, rate, amount in line.taxes:
            add((Category.TAX, title, rate), amount)
    order = [*LINE_CATEGORIES.values(), Category.SHIPPING, Category.DISCOUNTS, Category.TAX]
    keys = sorted((k for k, v in amounts.items() if v != 0),
                  key=lambda k: (order.index(Category(k[0])), k[1] or "", k[2] if k[2] is not None else Decimal(-1)))
    return tuple(AmountPart(category=str(k[0]), amount=amounts[k], tax_title=k[1], tax_rate=k[2]) for k in keys)


def allocate(amount: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """`amount` (to the cent) split over parts in proportion to `weights` (which need not share
    its sign, but must not add up to zero): each share rounded down to the cent, then the cents
    left over given one each to the largest remainders (the earliest part first on a tie). The
    shares add up to `amount` exactly."""
    total = sum(weights, Decimal(0))
    if total == 0:
        raise ValueError("weights that add up to zero cannot split an amount")
    exact = [amount * w / total for w in weights]
    floors = [e.quantize(CENT, rounding=ROUND_FLOOR) for e in exact]
    left = int(((amount - sum(floors, Decimal(0))) / CENT).to_integral_value())
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in by_remainder[:left]:
        floors[i] += CENT
    return floors


def splittable(document: OrderDocument | None) -> bool:
    """Whether a charge for this order can be split into its parts (charge_parts is not None):
    the order's parts are known and do not add up to nothing."""
    return document is not None and bool(document.parts) and sum((p.amount for p in document.parts), ZERO) != 0


def charge_parts(amount: Decimal, document: OrderDocument | None) -> tuple[AmountPart, ...] | None:
    """The charge's parts in the payout's currency, adding up to `amount`; None when the order's
    parts are not known (or add up to nothing)."""
    if document is None or not splittable(document):
        return None
    if amount == sum((part.amount for part in document.parts), ZERO):
        return document.parts  # the whole order, as allocate would split it (each share exact): the common case
    shares = allocate(amount, [part.amount for part in document.parts])
    # built directly rather than with dataclasses.replace: a payout splits thousands of charges
    return tuple(AmountPart(category=part.category, amount=share, tax_title=part.tax_title, tax_rate=part.tax_rate)
                 for part, share in zip(document.parts, shares, strict=True))
