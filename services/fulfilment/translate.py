"""The fulfilment flow's edge: wire messages <-> the domain's values (domain/fulfilment/values.py).

In: Prima's despatch facts, the order flow's sales-order commands (the lines a sales order
carries, bundles with their components), Shopify's fulfillment orders as read by the Admin API,
the Shopify gateway's outcomes and the operator's release. Out: the commands and events the
OrderFulfilment aggregate records, as the wire contracts other processes and teams read.
Nothing here decides anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts.fulfilment import events as wire_events
from contracts.prima.despatches import PrimaDespatchRecorded
from contracts.prima.sales_orders import SalesOrderDraft
from contracts.shopify import fulfilments as wire
from domain.fulfilment import values as domain
from domain.fulfilment.rules import order_lines
from domain.orders.values import SalesOrderLine


def order_gid(shopify_order_id: int) -> str:
    return f"gid://shopify/Order/{shopify_order_id}"


def gid_number(gid: str) -> int:
    """The numeric id at the end of a Shopify gid ("gid://shopify/LineItem/123" -> 123)."""
    tail = gid.rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"not a Shopify gid with a numeric id: {gid!r}")
    return int(tail)


# ------------------------------------------------------------------------------------------ in


def despatch(fact: PrimaDespatchRecorded) -> domain.Despatch:
    return domain.Despatch(
        despatch_id=fact.despatch_id, version=fact.version, change_id=fact.change_id,
        shopify_order_id=fact.shopify_order_id, sales_order_number=fact.sales_order_number,
        despatched_at=fact.despatched_at,
        lines=tuple(domain.DespatchedLine(sku=line.sku, quantity=line.quantity, line_id=line.external_line_id)
                    for line in fact.lines),
        parcels=tuple(domain.Parcel(parcel_number=p.parcel_number, carrier=p.carrier,
                                    tracking_number=p.tracking_number, tracking_url=p.tracking_url)
                      for p in fact.parcels),
    )


def lines_stated(shopify_order_id: int, draft: SalesOrderDraft, stated_at: datetime) -> domain.OrderLinesStated:
    """The Shopify lines a sales order (as sent or amended) stands for (rules.order_lines)."""
    lines = [SalesOrderLine(
        line_number=line.line_number, item_id=line.item_id, sku=line.sku, description=line.description,
        quantity=line.quantity, unit_price=line.unit_price, discount_amount=line.discount_amount,
        tax_amount=line.tax_amount, net_amount=line.net_amount, kind=line.kind, account=line.account,
        line_id=line.external_line_id,
        bundle_item_id=line.bundle.item_id if line.bundle else None,
        bundle_sku=line.bundle.sku if line.bundle else None,
        units_per_bundle=line.bundle.units_per_bundle if line.bundle else None,
    ) for line in draft.lines]
    return domain.OrderLinesStated(shopify_order_id=shopify_order_id, lines=order_lines(lines), stated_at=stated_at)


def fulfillment_orders(order: dict[str, Any] | None) -> tuple[domain.FulfillmentOrder, ...]:
    """Shopify's FulfillmentOrders of an order as OrderFulfillmentOrders.graphql reads them.
    Raises ValueError when the answer cannot be the whole picture (a page left unread)."""
    if order is None:
        return ()
    connection = order["fulfillmentOrders"]
    if connection["pageInfo"]["hasNextPage"]:
        raise ValueError(f"order {order.get('id')} has more fulfillment orders than one read holds")
    found = []
    for node in connection["nodes"]:
        items = node["lineItems"]
        if items["pageInfo"]["hasNextPage"]:
            raise ValueError(f"fulfillment order {node['id']} has more line items than one read holds")
        location = (node.get("assignedLocation") or {}).get("location") or {}
        found.append(domain.FulfillmentOrder(
            id=node["id"], status=node["status"], location_id=location.get("id"),
            lines=tuple(domain.FulfillmentOrderLine(id=item["id"], line_item_id=gid_number(item["lineItem"]["id"]),
                                                    remaining=item["remainingQuantity"])
                        for item in items["nodes"] if item.get("lineItem"))))
    return tuple(found)


def outcome(message: Any) -> domain.FulfilmentOutcome:
    if isinstance(message, wire.FulfilmentCreated):
        return domain.FulfilmentCreatedByShopify(shopify_order_id=message.shopify_order_id,
                                                 command_id=message.command_id, fulfilment_id=message.fulfilment_id,
                                                 occurred_at=message.occurred_at)
    if isinstance(message, wire.FulfilmentRefused):
        return domain.FulfilmentRefusedByShopify(shopify_order_id=message.shopify_order_id,
                                                 command_id=message.command_id, user_errors=message.user_errors,
                                                 occurred_at=message.occurred_at)
    if isinstance(message, wire.FulfilmentTrackingUpdated):
        return domain.TrackingUpdatedByShopify(shopify_order_id=message.shopify_order_id,
                                               command_id=message.command_id, fulfilment_id=message.fulfilment_id,
                                               occurred_at=message.occurred_at)
    if isinstance(message, wire.FulfilmentTrackingRefused):
        return domain.TrackingUpdateRefusedByShopify(shopify_order_id=message.shopify_order_id,
                                                     command_id=message.command_id, user_errors=message.user_errors,
                                                     occurred_at=message.occurred_at)
    raise TypeError(f"not a fulfilment outcome: {type(message).__name__}")


# ----------------------------------------------------------------------------------------- out


def _tracking(value: domain.TrackingInfo) -> wire.TrackingInfo:
    return wire.TrackingInfo(company=value.company, numbers=value.numbers, urls=value.urls)


def create_fulfilment(command: domain.CreateFulfilment) -> wire.CreateFulfilment:
    return wire.CreateFulfilment(
        command_id=command.command_id, idempotency_key=command.idempotency_key,
        shopify_order_id=command.shopify_order_id, despatch_id=command.despatch_id, covers=command.covers,
        issued_at=command.issued_at,
        line_items_by_fulfillment_order=tuple(wire.FulfillmentOrderLines(
            fulfillment_order_id=group.fulfillment_order_id,
            fulfillment_order_line_items=tuple(wire.FulfillmentOrderLineQuantity(id=line.id, quantity=line.quantity)
                                               for line in group.lines))
            for group in command.line_items_by_fulfillment_order),
        line_quantities=tuple(wire.LineQuantity(line_item_id=q.line_id, quantity=q.quantity)
                              for q in command.line_quantities),
        tracking=_tracking(command.tracking), notify_customer=command.notify_customer, warnings=command.warnings,
    )


def update_tracking(command: domain.UpdateFulfilmentTracking) -> wire.UpdateFulfilmentTracking:
    return wire.UpdateFulfilmentTracking(
        command_id=command.command_id, idempotency_key=command.idempotency_key,
        shopify_order_id=command.shopify_order_id, despatch_id=command.despatch_id,
        fulfilment_id=command.fulfilment_id, issued_at=command.issued_at, tracking=_tracking(command.tracking),
        notify_customer=command.notify_customer, warnings=command.warnings,
    )


def order_line(line: domain.OrderLineRecord) -> wire_events.FulfilmentOrderLine:
    return wire_events.FulfilmentOrderLine(
        line_item_id=line.line_id, sku=line.sku, quantity=line.quantity,
        components=tuple(wire_events.BundleComponent(sku=c.sku, units_per_bundle=c.units_per_bundle)
                         for c in line.components))


def fulfillment_order(order: domain.FulfillmentOrder) -> wire_events.FulfillmentOrderRead:
    return wire_events.FulfillmentOrderRead(
        id=order.id, status=order.status, location_id=order.location_id,
        lines=tuple(wire_events.FulfillmentOrderLineRead(id=line.id, line_item_id=line.line_item_id,
                                                         remaining=line.remaining) for line in order.lines))


def despatch_fields(value: domain.Despatch) -> dict[str, Any]:
    return {
        "despatch_id": value.despatch_id, "version": value.version, "change_id": value.change_id,
        "sales_order_number": value.sales_order_number, "despatched_at": value.despatched_at,
        "lines": tuple(wire_events.DespatchedUnits(sku=line.sku, quantity=line.quantity, line_item_id=line.line_id)
                    for line in value.lines),
        "parcels": tuple(wire_events.DespatchParcel(parcel_number=p.parcel_number, carrier=p.carrier,
                                                 tracking_number=p.tracking_number, tracking_url=p.tracking_url)
                      for p in value.parcels),
    }


def problem(value: domain.FulfilmentException) -> wire_events.FulfilmentProblem:
    return wire_events.FulfilmentProblem(kind=value.kind, despatch_id=value.despatch_id, reason=value.reason,
                                         command_id=value.command_id)
