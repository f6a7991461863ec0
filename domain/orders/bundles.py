"""Bundle expansion: a Shopify line whose SKU is a Prima kit reaches Prima as its components.

Shopify sells the bundle; Prima's warehouse picks its components (Prima owns the kits, the
integration owns their expansion). The rule, in one place:

- Components. The kit's components as Prima's item master lists them (a component listed twice
  counts once, with its units added up). Each must be an active Prima item that is not itself a
  kit; otherwise the order is quarantined like an unknown SKU, naming the component and its kit
  (a kit without components too, naming the kit).
- Quantities. A component's units on the sales order = the bundle's units x the component's
  units per bundle.
- Weights: equal weight per component unit. Prima's item master carries no list price (the
  `Item` of contracts/prima/openapi.yaml has none; nor do the item facts), so the fallback is
  that every unit of every component weighs the same: a bundle line's price, its discount and
  each of its tax lines are each spread evenly over all the component units the line holds.
- Rounding, in the currency's minor unit (cents): every unit gets the amount divided by the
  units, rounded down; the remainder (fewer cents than there are units) is given one cent per
  unit from the last unit backwards. So the last component takes the remainder (it spills onto
  the component before only when the remainder is larger than the last one's units), and no
  two units' shares differ by more than one cent.
- Lines. A component whose units then carry two prices one cent apart becomes two sales-order
  lines (the units at each price), so that every line is exactly quantity x unit_price -
  discount_amount with a unit price in cents. Each line keeps the Shopify line it came from and
  names its kit (SKU, item, units per bundle), so fulfilment can roll components back into
  whole bundles.

Exact by construction: for each amount the units' shares add up to the amount, so a bundle's
lines add up to the bundle line (gross, discount, each tax line), and the order's total is
unchanged to the cent. The discount's extra cents go to units whose price has one too (or all
units' prices are a cent above their discounts), so no line's net is negative. A credit memo for
a refunded bundle line credits the components by the same rule (`spread_memo`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from domain.catalog.items import ItemMaster, ItemType, PrimaItem
from domain.orders.figures import places_of
from domain.shared.money import CENT


@dataclass(frozen=True)
class KitComponent:
    """One component of a kit, as an item of Prima's item master."""

    item: PrimaItem
    per_bundle: int  # units of the component in one bundle


@dataclass(frozen=True)
class ComponentLine:
    """One sales-order line of a bundle line: `quantity` units of one component at one price."""

    component: KitComponent
    quantity: int
    unit_price: Decimal
    discount: Decimal
    taxes: tuple[Decimal, ...]  # the component's share of each of the bundle line's tax lines, in order

    @property
    def gross(self) -> Decimal:
        return self.unit_price * self.quantity

    @property
    def tax(self) -> Decimal:
        return sum(self.taxes, Decimal(0))


@dataclass(frozen=True)
class ComponentCredit:
    """A refunded bundle line's credit for one component."""

    component: KitComponent
    quantity: int
    amount: Decimal
    tax: Decimal


def components_of(kit: PrimaItem, items: ItemMaster
                  ) -> tuple[tuple[KitComponent, ...], tuple[tuple[str, str], ...]]:
    """(the kit's components as Prima items, (SKU, why) for each that cannot be sold as part of
    it); a kit without components is named itself."""
    if not kit.components:
        return (), ((kit.sku, "a Prima kit that lists no components"),)
    units: dict[str, int] = {}
    for component in kit.components:
        units[component.sku] = units.get(component.sku, 0) + component.quantity
    found: list[KitComponent] = []
    problems: list[tuple[str, str]] = []
    for sku, per_bundle in units.items():
        item = items.get(sku)
        why = ("no Prima item with this SKU" if item is None
               else "the Prima item is inactive" if not item.active
               else "a kit inside a kit is not expanded" if item.item_type == ItemType.BUNDLE
               else None)
        if why is not None or item is None:
            problems.append((sku, f"component of kit {kit.sku!r}: {why}"))
        else:
            found.append(KitComponent(item=item, per_bundle=per_bundle))
    return tuple(found), tuple(problems)


def component_skus(items: ItemMaster) -> set[str]:
    """The SKUs the kits among `items` are made of (to read them from the item master too)."""
    return {c.sku for item in items.values() if item.item_type == ItemType.BUNDLE for c in item.components}


# ------------------------------------------------------------------------------- the spreading


@dataclass(frozen=True)
class _Spread:
    """An amount spread over `units` units: each gets `base` minor units, and the last
    `extra` units one more."""

    base: int
    extra: int
    units: int

    def over(self, start: int, count: int) -> int:
        """Minor units of the units [start, start + count)."""
        first_extra = self.units - self.extra
        extras = max(0, min(start + count, self.units) - max(start, first_extra))
        return self.base * count + extras


def _minor(amount: Decimal, quantum: Decimal) -> int:
    minor = amount / quantum
    if minor != minor.to_integral_value() or amount < 0:
        raise ValueError(f"{amount} is not a non-negative amount in minor units of {quantum}")
    return int(minor)


def _spread(amount: Decimal, units: int, quantum: Decimal) -> _Spread:
    base, extra = divmod(_minor(amount, quantum), units)
    return _Spread(base=base, extra=extra, units=units)


def _quantum(currency: str, amounts: Iterable[Decimal]) -> Decimal:
    """The currency's minor unit; the cent where an amount is finer (a share of a partly sold
    or refunded line is figured to the cent: domain/orders/current.py)."""
    quantum = Decimal(1).scaleb(-places_of(currency))
    return quantum if all(a % quantum == 0 for a in amounts) else CENT


def _ranges(components: Sequence[KitComponent], bundles: int) -> list[tuple[KitComponent, int, int]]:
    """(component, first unit, units) of each component, in the kit's order."""
    ranges, start = [], 0
    for component in components:
        count = bundles * component.per_bundle
        ranges.append((component, start, count))
        start += count
    return ranges


def expand(components: Sequence[KitComponent], bundles: int, unit_price: Decimal, discount: Decimal,
           taxes: Iterable[Decimal], currency: str) -> tuple[ComponentLine, ...]:
    """`bundles` units of a bundle line (price per bundle, the discount and tax lines for those
    units) as the component lines Prima gets, by the rule above."""
    if bundles <= 0 or not components:
        raise ValueError("a bundle line expands with at least one unit and one component")
    taxes = tuple(taxes)
    quantum = _quantum(currency, (unit_price, discount, *taxes))
    units = bundles * sum(c.per_bundle for c in components)
    price = _spread(unit_price * bundles, units, quantum)
    off = _spread(discount, units, quantum)
    if off.base > price.base or (off.base == price.base and off.extra > price.extra):
        raise ValueError(f"the discount {discount} is more than the line's {unit_price} x {bundles}")
    tax_spreads = [_spread(t, units, quantum) for t in taxes]
    lines: list[ComponentLine] = []
    first_dearer = units - price.extra  # the units priced one minor unit above the rest
    for component, start, count in _ranges(components, bundles):
        cut = min(max(first_dearer, start), start + count)
        for group_start, group_count, minor_price in ((start, cut - start, price.base),
                                                      (cut, start + count - cut, price.base + 1)):
            if group_count <= 0:
                continue
            lines.append(ComponentLine(
                component=component, quantity=group_count, unit_price=minor_price * quantum,
                discount=off.over(group_start, group_count) * quantum,
                taxes=tuple(t.over(group_start, group_count) * quantum for t in tax_spreads)))
    return tuple(lines)


def spread_memo(components: Sequence[KitComponent], bundles: int, amount: Decimal, tax: Decimal,
                currency: str) -> tuple[ComponentCredit, ...]:
    """A refund of `bundles` units of a bundle line (its refunded subtotal and tax) as one
    credit per component, by the same rule as the sales order's lines."""
    if bundles <= 0 or not components:
        raise ValueError("a refunded bundle line spreads over at least one unit and one component")
    quantum = _quantum(currency, (amount, tax))
    units = bundles * sum(c.per_bundle for c in components)
    money, taxed = _spread(amount, units, quantum), _spread(tax, units, quantum)
    return tuple(ComponentCredit(component=component, quantity=count, amount=money.over(start, count) * quantum,
                                 tax=taxed.over(start, count) * quantum)
                 for component, start, count in _ranges(components, bundles))
