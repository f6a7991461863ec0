"""Line mapping: each Shopify line to what Prima books it against.

- A product line: its SKU to a sellable item of Prima's item master (Prima owns items and SKUs;
  domain/catalog/items.py says what is sellable).
- A line that is not a Prima stock item (a tip, a gift card sold, a custom line without a SKU,
  or a product whose SKU has no sellable item but a rule names it): the first configured line
  rule that matches it (settings.order_line_rules: by line kind and/or title pattern) gives a
  Prima non-stock item (a service item, by SKU) or a ledger account. A gift card sold is a
  liability: map it to an account, not to revenue.

- A product whose SKU is a Prima kit: its components (domain/orders/bundles.py), each of which
  must be an active Prima item; the sales order carries them instead of the kit.

Nothing is guessed: a product line that maps to no item and no rule quarantines the whole order
(unmapped_sku, each SKU's reason named; a kit's unknown or inactive component is named like an
unknown SKU), and a non-product line without a rule does too (unmapped_line, the line named).
Lines with nothing left (removed by an edit) are not mapped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.catalog.items import (
    Component,
    ItemMaster,
    ItemType,
    PrimaItem,
    why_not_sellable,
)
from domain.orders.bundles import KitComponent, components_of
from domain.orders.values import (
    LineKind,
    OrderLine,
    OrderSnapshot,
    SalesOrder,
    SalesOrderLine,
)

# ----------------------------------------------------------------------------- configuration


class LineRule(BaseModel):
    """One rule: lines of `kind` and/or whose title matches `title` (a glob, case-insensitive)
    are booked to the non-stock `item` (a Prima SKU) or to the ledger `account`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, max_length=100)
    kind: Literal["product", "tip", "gift_card", "custom"] | None = None
    title: str | None = Field(None, min_length=1, max_length=255)
    item: str | None = Field(None, min_length=1, max_length=255)
    account: str | None = Field(None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_match_one_target(self) -> LineRule:
        if self.kind is None and self.title is None:
            raise ValueError("a line rule matches by kind and/or title: give at least one")
        if (self.item is None) == (self.account is None):
            raise ValueError("a line rule books to a Prima non-stock item or to an account: give exactly one")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = [f"kind {self.kind}" if self.kind else "", f"title {self.title!r}" if self.title else ""]
        return " and ".join(p for p in parts if p)

    def matches(self, line: OrderLine) -> bool:
        if self.kind is not None and self.kind != line.kind:
            return False
        return self.title is None or fnmatchcase(line.title.casefold(), self.title.casefold())


class LineRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[LineRule, ...] = ()

    def rule_for(self, line: OrderLine) -> LineRule | None:
        return next((rule for rule in self.rules if rule.matches(line)), None)

    def item_skus(self) -> set[str]:
        """The SKUs the rules name (the decider reads them from the item master with the lines')."""
        return {rule.item for rule in self.rules if rule.item}


# ----------------------------------------------------------------------------- the mapping


@dataclass(frozen=True)
class Target:
    """What a line is booked against: a Prima item, or an account."""

    item: PrimaItem | None = None
    account: str | None = None
    rule: str | None = None  # the rule that gave it (None: the line's own SKU)
    components: tuple[KitComponent, ...] = ()  # a kit's: the lines Prima gets instead of the kit


@dataclass(frozen=True)
class MappedLine:
    line: OrderLine
    item: PrimaItem | None
    target: Target | None = None

    @property
    def account(self) -> str | None:
        return self.target.account if self.target else None


@dataclass(frozen=True)
class MappingResult:
    lines: tuple[MappedLine, ...]
    unmapped: tuple[tuple[str, str], ...]  # (SKU, why); "" stands for a line without a SKU
    unruled: tuple[str, ...] = ()  # lines that are not products and no rule maps, described

    @property
    def complete(self) -> bool:
        return not self.unmapped and not self.unruled

    @property
    def unmapped_skus(self) -> tuple[str, ...]:
        return tuple(sku for sku, _ in self.unmapped)

    def describe(self) -> str:
        parts = ["; ".join(f"SKU {sku!r}: {why}" if sku else "a line without a SKU" for sku, why in self.unmapped)]
        parts += list(self.unruled)
        return "; ".join(p for p in parts if p)


def describe_line(line: OrderLine) -> str:
    return f"line {line.line_id} {line.title!r} ({line.kind}{', SKU ' + repr(line.sku) if line.sku else ''})"


def skus_of(order: OrderSnapshot) -> set[str]:
    return {line.sku for line in order.lines if line.sku}


def _rule_target(rule: LineRule, items: ItemMaster) -> tuple[Target | None, str | None]:
    if rule.account is not None:
        return Target(account=rule.account, rule=rule.label), None
    item = items.get(rule.item or "")
    if item is None:
        return None, f"rule {rule.label!r} names the item {rule.item!r}, which Prima does not have"
    if not item.active:
        return None, f"rule {rule.label!r} names the item {rule.item!r}, which is inactive in Prima"
    if item.item_type != ItemType.SERVICE:
        return None, f"rule {rule.label!r} names the item {rule.item!r}, a {item.item_type} item, not a non-stock one"
    return Target(item=item, rule=rule.label), None


def map_line(line: OrderLine, items: ItemMaster, rules: LineRules | None = None
             ) -> tuple[Target | None, tuple[tuple[str, str], ...], str | None]:
    """(target, (SKU, why) of each SKU that maps nowhere (a product's, or its kit's components'),
    a description of a line no rule maps) for one line: exactly one of the three is set."""
    rules = rules or LineRules()
    if line.kind == LineKind.PRODUCT and line.sku:
        item = items.get(line.sku)
        why = why_not_sellable(item)
        if why is None and item is not None:
            if item.item_type != ItemType.BUNDLE:
                return Target(item=item), (), None
            components, unsellable = components_of(item, items)
            return (None, unsellable, None) if unsellable else (Target(item=item, components=components), (), None)
    else:
        why = "no SKU"
    rule = rules.rule_for(line)
    if rule is not None:
        target, problem = _rule_target(rule, items)
        if target is not None:
            return target, (), None
        return None, (), f"{describe_line(line)}: {problem}"
    if line.kind == LineKind.PRODUCT:
        return None, ((line.sku or "", why or "no Prima item with this SKU"),), None
    return None, (), f"{describe_line(line)}: no line rule maps a {line.kind} line (ORDER_LINE_RULES)"


def booked_targets(sales_order: SalesOrder | None) -> dict[int, Target]:
    """What a sales order books each Shopify line to (by line id): its item or account, or the kit
    whose components its lines carry (in their order, the units per bundle as recorded)."""
    booked: dict[int, Target] = {}
    kits: dict[int, list[SalesOrderLine]] = {}
    for line in (sales_order.lines if sales_order else ()):
        if line.line_id is None:
            continue
        if line.bundle_sku is not None and line.bundle_item_id is not None and line.item_id and line.sku:
            kits.setdefault(line.line_id, []).append(line)
        elif line.account is not None:
            booked[line.line_id] = Target(account=line.account, rule="as booked")
        elif line.item_id is not None and line.sku is not None:
            booked[line.line_id] = Target(item=PrimaItem(item_id=line.item_id, sku=line.sku,
                                                         description=line.description), rule="as booked")
    for line_id, parts in kits.items():
        components: dict[str, KitComponent] = {}
        for part in parts:  # a component priced at two prices has two lines: one component
            assert part.item_id is not None and part.sku is not None
            components.setdefault(part.item_id, KitComponent(
                item=PrimaItem(item_id=part.item_id, sku=part.sku, description=part.description),
                per_bundle=part.units_per_bundle or 1))
        kit = PrimaItem(item_id=parts[0].bundle_item_id or "", sku=parts[0].bundle_sku or "", description="",
                        item_type=ItemType.BUNDLE,
                        components=tuple(Component(sku=c.item.sku, quantity=c.per_bundle) for c in components.values()))
        booked[line_id] = Target(item=kit, rule="as booked", components=tuple(components.values()))
    return booked


def map_lines(lines: Iterable[tuple[OrderLine, int]], items: ItemMaster, rules: LineRules | None = None,
              booked: Mapping[int, Target] | None = None) -> MappingResult:
    """Map each (line, units) with units left; lines with none are not sold. `booked`: lines a
    sales order already books (by Shopify line id), kept as booked."""
    mapped: list[MappedLine] = []
    unmapped: dict[str, str] = {}
    unruled: list[str] = []
    for line, units in lines:
        if units <= 0:
            continue
        if booked and line.line_id in booked:
            target, missing, no_rule = booked[line.line_id], (), None
        else:
            target, missing, no_rule = map_line(line, items, rules)
        if target is not None:
            mapped.append(MappedLine(line=line, item=target.item, target=target))
        elif missing:
            for sku, why in missing:
                unmapped.setdefault(sku, why)
        elif no_rule is not None:
            unruled.append(no_rule)
    return MappingResult(lines=tuple(mapped), unmapped=tuple(unmapped.items()), unruled=tuple(unruled))


def map_order_lines(order: OrderSnapshot, items: ItemMaster, rules: LineRules | None = None) -> MappingResult:
    """The lines as ordered (a line whose quantity left is 0 is skipped)."""
    from domain.orders.current import sold_quantity

    return map_lines(((line, sold_quantity(order, line)) for line in order.lines), items, rules)
