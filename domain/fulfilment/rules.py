"""The fulfilment rules, each in one place (DESIGN.md flow 3):

- The order's lines: a sales order's item lines, grouped back by the Shopify line they came from
  (`order_lines`): a plain line by its SKU; a bundle line by its components and their units per
  bundle (domain/orders/bundles.py splits a component over two lines at prices a cent apart: its
  units add up).
- Despatched units -> order lines (`attribute`): a despatch line that names its Shopify line
  counts for that line; one that does not counts for the lines holding its SKU, in line order,
  each up to the units it stands for (the last one takes any surplus). Units accumulate across
  despatch notes. A SKU no line holds is named (the aggregate makes it an exception).
- Units -> Shopify line quantities (`fulfillable`): a plain line is fulfilled by the units of
  its SKU despatched; a bundle line only in whole bundles, when every component has been
  despatched: min over its components of (units despatched // units per bundle); in both cases
  minus what fulfilments already took, and never above the line's quantity.
- Quantities -> lineItemsByFulfillmentOrder (`allocate`): each line's quantity goes to the
  fulfillment orders that are OPEN or IN_PROGRESS and have some of it remaining, in the order
  Shopify lists them, never above what remains. If a line cannot be placed whole, nothing is sent:
  the refusal names each line and why (on hold, closed, cancelled, not on any fulfillment order
  (removed by an edit), nothing left (already fulfilled), or more than remains).
- Idempotency keys come from the despatch: one fulfilment per despatch id; a tracking update per
  despatch version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from domain.fulfilment.values import (
    Component,
    Despatch,
    FulfillmentOrder,
    FulfillmentOrderLineQuantity,
    FulfillmentOrderLines,
    FulfillmentOrderStatus,
    LineQuantity,
    OrderLineRecord,
)
from domain.orders.values import SalesOrderLine, SalesOrderLineKind

# ------------------------------------------------------------------------------- the order's lines


def order_lines(lines: Iterable[SalesOrderLine]) -> tuple[OrderLineRecord, ...]:
    """The Shopify lines a sales order's item lines stand for, in line order. Account lines (a
    gift card sold) and lines without a Shopify line are not Prima's to despatch."""
    plain: dict[int, OrderLineRecord] = {}
    bundles: dict[int, tuple[str, dict[str, tuple[int, int]]]] = {}  # line -> (kit SKU, sku -> (units, per bundle))
    order: list[int] = []
    for line in lines:
        if line.kind != SalesOrderLineKind.ITEM or line.line_id is None or not line.sku:
            continue
        if line.line_id not in plain and line.line_id not in bundles:
            order.append(line.line_id)
        if line.bundle_sku is not None and line.units_per_bundle:
            kit, parts = bundles.setdefault(line.line_id, (line.bundle_sku, {}))
            units, _ = parts.get(line.sku, (0, line.units_per_bundle))
            parts[line.sku] = (units + line.quantity, line.units_per_bundle)
        else:
            found = plain.get(line.line_id)
            plain[line.line_id] = OrderLineRecord(line_id=line.line_id, sku=line.sku,
                                                  quantity=line.quantity + (found.quantity if found else 0))
    records = []
    for line_id in order:
        if line_id in plain:
            records.append(plain[line_id])
            continue
        kit, parts = bundles[line_id]
        components = tuple(Component(sku=sku, units_per_bundle=per) for sku, (_, per) in parts.items())
        quantity = min(units // per for units, per in parts.values())
        records.append(OrderLineRecord(line_id=line_id, sku=kit, quantity=quantity, components=components))
    return tuple(records)


# ------------------------------------------------------------------------------- despatched units


@dataclass(frozen=True)
class Attribution:
    units: Mapping[tuple[int, str], int]  # (Shopify line, SKU) -> units despatched, accumulated
    unknown: tuple[tuple[str, str], ...]  # (despatch id, SKU) no line of the order holds


def attribute(despatches: Iterable[Despatch], lines: Sequence[OrderLineRecord]) -> Attribution:
    """The units of each SKU despatched for each Shopify line, over every despatch in order."""
    units: dict[tuple[int, str], int] = {}
    unknown: list[tuple[str, str]] = []
    by_id = {line.line_id: line for line in lines}
    for despatch in despatches:
        for shipped in despatch.lines:
            named = by_id.get(shipped.line_id) if shipped.line_id is not None else None
            holders = [named] if named is not None and named.units_of(shipped.sku) else \
                [line for line in lines if line.units_of(shipped.sku)]
            if not holders:
                unknown.append((despatch.despatch_id, shipped.sku))
                continue
            left = shipped.quantity
            for n, line in enumerate(holders):
                key = (line.line_id, shipped.sku)
                room = max(0, line.units_of(shipped.sku) - units.get(key, 0))
                take = left if n == len(holders) - 1 else min(left, room)
                if take:
                    units[key] = units.get(key, 0) + take
                    left -= take
                if not left:
                    break
    return Attribution(units=units, unknown=tuple(unknown))


def fulfillable(lines: Sequence[OrderLineRecord], despatched: Mapping[tuple[int, str], int],
                fulfilled: Mapping[int, int]) -> tuple[LineQuantity, ...]:
    """What each line can be fulfilled by now: its despatched units (whole bundles for a bundle
    line) minus what is already fulfilled (or asked for), up to the line's quantity."""
    out = []
    for line in lines:
        if line.components:
            reached = min(despatched.get((line.line_id, c.sku), 0) // c.units_per_bundle for c in line.components)
        else:
            reached = despatched.get((line.line_id, line.sku), 0)
        quantity = min(reached, line.quantity) - fulfilled.get(line.line_id, 0)
        if quantity > 0:
            out.append(LineQuantity(line_id=line.line_id, quantity=quantity))
    return tuple(out)


# ------------------------------------------------------------------------------- allocation


class Refusal:
    ON_HOLD = "on_hold"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    NOT_FULFILLABLE = "not_fulfillable"  # another status (scheduled, incomplete)
    NOT_ON_ANY = "not_on_any_fulfillment_order"  # removed by an edit, or not Shopify's to fulfil
    NOTHING_LEFT = "nothing_left"  # already fulfilled, or removed by an edit (0 remaining)
    ABOVE_REMAINING = "above_remaining"
    SEVERAL_LOCATIONS = "several_locations"  # whole only across fulfillment orders of two or more locations


@dataclass(frozen=True)
class LineRefused:
    line_id: int
    wanted: int
    available: int  # what OPEN / IN_PROGRESS fulfillment orders have left of the line
    reason: str  # Refusal
    detail: str

    def describe(self) -> str:
        return f"line {self.line_id}: {self.wanted} to fulfil, {self.available} fulfillable: {self.detail}"


@dataclass(frozen=True)
class Allocation:
    groups: tuple[FulfillmentOrderLines, ...]  # empty when refused
    refused: tuple[LineRefused, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.refused and bool(self.groups)


def _why(line_id: int, wanted: int, available: int, orders: Sequence[FulfillmentOrder]) -> LineRefused:
    holding = [(fo, item) for fo in orders for item in fo.lines if item.line_item_id == line_id]
    if not holding:
        return LineRefused(line_id, wanted, available, Refusal.NOT_ON_ANY,
                           "on no fulfillment order (removed by an edit?)")
    blocked = [(fo, item) for fo, item in holding
               if fo.status not in FulfillmentOrderStatus.FULFILLABLE and item.remaining > 0]
    if blocked:
        fo = blocked[0][0]
        reason = {FulfillmentOrderStatus.ON_HOLD: Refusal.ON_HOLD, FulfillmentOrderStatus.CLOSED: Refusal.CLOSED,
                  FulfillmentOrderStatus.CANCELLED: Refusal.CANCELLED}.get(fo.status, Refusal.NOT_FULFILLABLE)
        return LineRefused(line_id, wanted, available, reason,
                           f"fulfillment order {fo.id} is {fo.status.lower()}")
    if available == 0:
        statuses = sorted({fo.status.lower() for fo, _ in holding})
        return LineRefused(line_id, wanted, 0, Refusal.NOTHING_LEFT,
                           f"nothing left to fulfil (already fulfilled or removed by an edit; {', '.join(statuses)})")
    return LineRefused(line_id, wanted, available, Refusal.ABOVE_REMAINING, f"only {available} remaining")


def allocate(quantities: Iterable[LineQuantity], orders: Sequence[FulfillmentOrder]) -> Allocation:
    """lineItemsByFulfillmentOrder for these quantities, or why they cannot be fulfilled.

    One fulfilment is of one location: fulfillmentCreate takes fulfillment orders "assigned to the
    same location" (its reference). The quantities go to the first location (in Shopify's order of
    its fulfillment orders) whose fulfillment orders can take them all; when only fulfillment orders
    of several locations together can, the refusal says so, line by line (the merchant moves them
    to one location in Shopify, then releases)."""
    quantities = tuple(quantities)
    locations = list(dict.fromkeys(fo.location_id for fo in orders))
    for location in locations:
        at = [fo for fo in orders if fo.location_id == location]
        found = _allocate(quantities, at)
        if found.ok:
            return found
    found = _allocate(quantities, orders)
    if not found.ok or len(locations) < 2:
        return found
    where = {item.id: fo.location_id for fo in orders for item in fo.lines}
    line_of = {item.id: item.line_item_id for fo in orders for item in fo.lines}
    spread: dict[int, set[str | None]] = {}
    for group in found.groups:
        for line in group.lines:
            spread.setdefault(line_of[line.id], set()).add(where[line.id])
    refused = tuple(LineRefused(q.line_id, q.quantity, q.quantity, Refusal.SEVERAL_LOCATIONS,
                                "the despatch's lines are at several Shopify locations "
                                f"({', '.join(sorted(str(loc) for loc in spread.get(q.line_id, ())))} for this line) and a "
                                "fulfilment is of one location: move them to one location in Shopify, then release")
                    for q in quantities)
    return Allocation(groups=(), refused=refused)


def _allocate(quantities: Sequence[LineQuantity], orders: Sequence[FulfillmentOrder]) -> Allocation:
    taken: dict[str, int] = {}  # fulfillment order line item -> quantity
    refused: list[LineRefused] = []
    for want in quantities:
        places = [(fo, item) for fo in orders if fo.status in FulfillmentOrderStatus.FULFILLABLE
                  for item in fo.lines if item.line_item_id == want.line_id and item.remaining > 0]
        available = sum(item.remaining for _, item in places)
        if available < want.quantity:
            refused.append(_why(want.line_id, want.quantity, available, orders))
            continue
        left = want.quantity
        for _, item in places:
            take = min(left, item.remaining)
            taken[item.id] = taken.get(item.id, 0) + take
            left -= take
            if not left:
                break
    if refused:
        return Allocation(groups=(), refused=tuple(refused))
    groups = []
    for fo in orders:
        lines = tuple(FulfillmentOrderLineQuantity(id=item.id, quantity=taken[item.id])
                      for item in fo.lines if item.id in taken)
        if lines:
            groups.append(FulfillmentOrderLines(fulfillment_order_id=fo.id, lines=lines))
    return Allocation(groups=tuple(groups))


def after_fulfilment(orders: Sequence[FulfillmentOrder], groups: Iterable[FulfillmentOrderLines]
                     ) -> tuple[FulfillmentOrder, ...]:
    """The fulfillment orders as Shopify has them once these quantities are fulfilled: less
    remaining; IN_PROGRESS, or CLOSED with nothing left."""
    taken = {line.id: line.quantity for group in groups for line in group.lines}
    touched = {group.fulfillment_order_id for group in groups}
    out = []
    for fo in orders:
        if fo.id not in touched:
            out.append(fo)
            continue
        lines = tuple(replace(item, remaining=item.remaining - taken.get(item.id, 0)) for item in fo.lines)
        status = FulfillmentOrderStatus.CLOSED if all(item.remaining <= 0 for item in lines) \
            else FulfillmentOrderStatus.IN_PROGRESS
        out.append(replace(fo, lines=lines, status=status))
    return tuple(out)


# ------------------------------------------------------------------------------- keys


def fulfilment_key(despatch_id: str) -> str:
    """The idempotency key of the one fulfilment a despatch gives."""
    return f"prima-despatch:{despatch_id}"


def tracking_key(despatch_id: str, version: int) -> str:
    """The idempotency key of the tracking update a despatch's version gives."""
    return f"prima-despatch:{despatch_id}:v{version}"
