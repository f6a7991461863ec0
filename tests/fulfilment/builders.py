"""Builders of the fulfilment flow's values for its tests: an order of a mug line (2 units), a
tee line (1) and a gift-set bundle line (2 bundles of 1 TEE-S and 2 MUG-S), its sales-order lines
as domain/orders builds them, despatch notes, and Shopify's fulfillment orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.fulfilment.values import (
    Despatch,
    DespatchedLine,
    FulfillmentOrder,
    FulfillmentOrderLine,
    Parcel,
)
from domain.orders.values import SalesOrderLine, SalesOrderLineKind

ORDER = 5001
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
MUG_LINE, TEE_LINE, SET_LINE, CARD_LINE = 11, 12, 13, 14


def so_line(number: int, sku: str | None, quantity: int, line_id: int | None, bundle: str | None = None,
            per: int | None = None, kind: str = SalesOrderLineKind.ITEM) -> SalesOrderLine:
    return SalesOrderLine(line_number=number, item_id=f"ITM-{sku}" if sku else None, sku=sku, description=sku or "card",
                          quantity=quantity, unit_price=Decimal("5.00"), discount_amount=Decimal(0),
                          tax_amount=Decimal(0), net_amount=Decimal("5.00") * quantity, kind=kind,
                          account="4000" if kind == SalesOrderLineKind.ACCOUNT else None, line_id=line_id,
                          bundle_item_id=f"ITM-{bundle}" if bundle else None, bundle_sku=bundle,
                          units_per_bundle=per)


def sales_order_lines() -> tuple[SalesOrderLine, ...]:
    """2 x MUG, 1 x TEE, 2 x GIFT-SET (1 TEE-S + 2 MUG-S each; MUG-S split over two prices, as
    bundles.py does when a cent is left over), and a gift card (an account line)."""
    return (
        so_line(1, "MUG", 2, MUG_LINE),
        so_line(2, "TEE", 1, TEE_LINE),
        so_line(3, "TEE-S", 2, SET_LINE, bundle="GIFT-SET", per=1),
        so_line(4, "MUG-S", 3, SET_LINE, bundle="GIFT-SET", per=2),
        so_line(5, "MUG-S", 1, SET_LINE, bundle="GIFT-SET", per=2),
        so_line(6, None, 1, CARD_LINE, kind=SalesOrderLineKind.ACCOUNT),
    )


def parcel(number: int, carrier: str = "Royal Mail", tracking: str | None = None, url: str | None = None) -> Parcel:
    return Parcel(parcel_number=number, carrier=carrier,
                  tracking_number=tracking if tracking is not None else f"RM{number:04d}GB", tracking_url=url)


def despatch(despatch_id: str, *lines: tuple[str, int] | tuple[str, int, int], parcels: tuple[Parcel, ...] = (),
             version: int = 1, change_id: int | None = None, order: int = ORDER, minutes: int = 0) -> Despatch:
    return Despatch(
        despatch_id=despatch_id, version=version,
        change_id=change_id if change_id is not None else int(despatch_id.split("-")[-1]) * 10 + version,
        shopify_order_id=order, sales_order_number="SO-000777", despatched_at=T0 + timedelta(minutes=minutes),
        lines=tuple(DespatchedLine(sku=line[0], quantity=line[1], line_id=line[2] if len(line) > 2 else None)
                    for line in lines),
        parcels=parcels or (parcel(1),))


def fo_line(line_item_id: int, remaining: int, fo: int = 1) -> FulfillmentOrderLine:
    return FulfillmentOrderLine(id=f"gid://shopify/FulfillmentOrderLineItem/{fo}{line_item_id}",
                                line_item_id=line_item_id, remaining=remaining)


def fulfillment_order(number: int, *lines: tuple[int, int], status: str = "OPEN",
                      location: str = "gid://shopify/Location/1") -> FulfillmentOrder:
    return FulfillmentOrder(id=f"gid://shopify/FulfillmentOrder/{number}", status=status, location_id=location,
                            lines=tuple(fo_line(line_id, remaining, number) for line_id, remaining in lines))


def whole_order_open(status: str = "OPEN") -> tuple[FulfillmentOrder, ...]:
    """One fulfillment order holding every line with everything remaining."""
    return (fulfillment_order(1, (MUG_LINE, 2), (TEE_LINE, 1), (SET_LINE, 2), status=status),)
