"""Test data of the inventory flow: the domain's facts (what the StockItem and CatalogItem
aggregates take) and the wire messages the stock decider and the Shopify gateway consume.

Built here, not taken from sandboxes/: the unit tests do not depend on the sandboxes' data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4, uuid5

from contracts.orders.events import (
    SalesOrderCreated,
    SalesOrderRejected,
    SalesOrderRequested,
)
from contracts.platform import ReleaseStockLevel
from contracts.prima.inventory import BundleComponent, PrimaItemChanged, PrimaStockLevel
from contracts.prima.sales_orders import (
    CreateSalesOrder,
    SalesOrderDraft,
    SalesOrderLine,
    SalesOrderTotals,
)
from contracts.shopify.inventory import (
    InventoryLevelConfirmed,
    InventoryLevelFailed,
    InventoryLevelRejected,
    InventoryLevelStale,
    SetInventoryLevel,
    SetProductStatus,
    ShopifyLevel,
    ShopifyVariantObserved,
)
from domain.catalog.items import Component, PrimaItem
from domain.inventory.values import (
    InventoryPush,
    ItemReported,
    LevelSeen,
    OrderAccepted,
    OrderLineAccepted,
    OrderNotAllocated,
    PushConfirmedByShopify,
    PushFoundStaleByShopify,
    PushParkedByGateway,
    PushRejectedByShopify,
    SalesOrderCreatedInPrima,
    StockLevelReleaseRequested,
    StockLevelReported,
    VariantSeen,
)

LOC = "gid://shopify/Location/1"
LOC2 = "gid://shopify/Location/2"
ITEM = "gid://shopify/InventoryItem/1"
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


# ------------------------------------------------------------------------------ domain facts


def stock(sku: str, available: int, change_id: int, warehouse: str = "WH-MAIN", allocated_for: str | None = None,
          allocated_through: int = 0) -> StockLevelReported:
    return StockLevelReported(sku=sku, warehouse=warehouse, available=available, change_id=change_id,
                              allocated_for=allocated_for, allocated_through=allocated_through)


def variant(sku: str, available: int, at: datetime = T0, status: str = "ACTIVE", item: str = ITEM,
            levels: tuple[tuple[str, int], ...] | None = None) -> VariantSeen:
    found = levels if levels is not None else ((LOC, available),)
    return VariantSeen(sku=sku, variant_id=f"gid://shopify/ProductVariant/{sku}",
                       product_id=f"gid://shopify/Product/{sku}", product_status=status, inventory_item_id=item,
                       levels=tuple(LevelSeen(location, level) for location, level in found), observed_at=at,
                       sync_run_id=uuid4())


def item(sku: str, item_type: str = "stock", active: bool = True, components: tuple[tuple[str, int], ...] = (),
         at: datetime = T0, change_id: int | None = None) -> ItemReported:
    return ItemReported(item=PrimaItem(item_id=f"ITM-{sku}", sku=sku, description=sku, item_type=item_type,
                                       active=active, components=tuple(Component(s, q) for s, q in components)),
                        updated_at=at, change_id=change_id)


def confirmed(push: InventoryPush, at: datetime, quantity: int | None = None,
              previous: int | None = None) -> PushConfirmedByShopify:
    return PushConfirmedByShopify(command_id=push.command_id, sku=push.sku, location_id=push.location_id,
                                  quantity=push.quantity if quantity is None else quantity,
                                  previous_quantity=push.change_from_quantity if previous is None else previous,
                                  stale_retries=0, occurred_at=at)


def rejected(push: InventoryPush, code: str = "ITEM_NOT_STOCKED_AT_LOCATION",
             reason: str = "not stocked") -> PushRejectedByShopify:
    return PushRejectedByShopify(command_id=push.command_id, sku=push.sku, location_id=push.location_id, code=code,
                                 reason=reason)


def parked(push: InventoryPush, attempts: int = 6, reason: str = "HTTP 503") -> PushParkedByGateway:
    return PushParkedByGateway(command_id=push.command_id, sku=push.sku, location_id=push.location_id,
                               attempts=attempts, reason=reason)


def found_stale(push: InventoryPush, level: int, at: datetime) -> PushFoundStaleByShopify:
    return PushFoundStaleByShopify(command_id=push.command_id, sku=push.sku, location_id=push.location_id,
                                   inventory_item_id=push.inventory_item_id, shopify_level=level, occurred_at=at)


def accepted(order_id: int, *lines: tuple[str, int]) -> OrderAccepted:
    """An order the integration asked Prima for (its external reference is the order id)."""
    return OrderAccepted(order_id=str(order_id), reference=str(order_id),
                         lines=tuple(OrderLineAccepted(sku, units) for sku, units in lines))


def created_in_prima(order_id: int, number: int) -> SalesOrderCreatedInPrima:
    return SalesOrderCreatedInPrima(order_id=str(order_id), sales_order_number=f"SO-{number:06d}", position=number)


def not_allocated(order_id: int) -> OrderNotAllocated:
    return OrderNotAllocated(order_id=str(order_id), reason="unknown_item: line 1")


def release(sku: str, location: str = LOC, at: datetime = T0, by: str = "ops") -> StockLevelReleaseRequested:
    return StockLevelReleaseRequested(sku=sku, location_id=location, released_by=by, requested_at=at)


# ----------------------------------------------------------------------------- wire messages


def prima_stock(sku: str, available: int, change_id: int, warehouse: str = "WH-MAIN",
                at: datetime = T0, allocated_for: str | None = None,
                allocated_sales_order: str | None = None) -> PrimaStockLevel:
    return PrimaStockLevel(sku=sku, warehouse=warehouse, available=available, change_id=change_id, changed_at=at,
                           polled_at=at, allocated_for=allocated_for, allocated_sales_order=allocated_sales_order)


def prima_item(sku: str, item_type: str = "stock", active: bool = True,
               components: tuple[tuple[str, int], ...] = (), at: datetime = T0) -> PrimaItemChanged:
    return PrimaItemChanged(sku=sku, item_id=f"ITM-{sku}", description=sku, item_type=item_type, active=active,
                            components=tuple(BundleComponent(sku=s, quantity=q) for s, q in components),
                            updated_at=at, polled_at=at)


def variant_observed(sku: str, available: int, at: datetime = T0, item: str = ITEM, location: str = LOC,
                     status: str = "ACTIVE") -> ShopifyVariantObserved:
    return ShopifyVariantObserved(sku=sku, variant_id=f"gid://shopify/ProductVariant/{sku}",
                                  product_id=f"gid://shopify/Product/{sku}", product_status=status,
                                  inventory_item_id=item,
                                  levels=(ShopifyLevel(location_id=location, available=available),),
                                  observed_at=at, sync_run_id=uuid4())


def level_confirmed(command_id: UUID, sku: str, quantity: int, previous: int | None, at: datetime,
                    location: str = LOC, item: str = ITEM) -> InventoryLevelConfirmed:
    return InventoryLevelConfirmed(command_id=command_id, sku=sku, inventory_item_id=item, location_id=location,
                                   quantity=quantity, previous_quantity=previous, occurred_at=at)


def level_rejected(command_id: UUID, sku: str, at: datetime, location: str = LOC,
                   code: str = "INVALID_QUANTITY", reason: str = "quantity refused") -> InventoryLevelRejected:
    return InventoryLevelRejected(command_id=command_id, sku=sku, location_id=location, code=code, reason=reason,
                                  occurred_at=at)


def level_failed(command_id: UUID, sku: str, at: datetime, location: str = LOC, attempts: int = 6,
                 reason: str = "HTTP 503") -> InventoryLevelFailed:
    return InventoryLevelFailed(command_id=command_id, sku=sku, location_id=location, attempts=attempts,
                                reason=reason, occurred_at=at)


def level_stale(command: SetInventoryLevel, available: int, at: datetime) -> InventoryLevelStale:
    return InventoryLevelStale(command_id=command.command_id, sku=command.sku,
                               inventory_item_id=command.inventory_item_id, location_id=command.location_id,
                               quantity=command.quantity, change_from_quantity=command.change_from_quantity,
                               available=available, occurred_at=at)


ORDER_NAMESPACE = UUID("0b3f1f0e-6a55-4d1e-9d43-3c3f2a0d5e71")


def _order_envelope(order_id: int, version: int, at: datetime) -> dict:
    aggregate_id = uuid5(ORDER_NAMESPACE, str(order_id))
    return {"event_id": uuid5(aggregate_id, f"event/{version}"), "shopify_order_id": order_id,
            "aggregate_id": aggregate_id, "aggregate_version": version, "timestamp": at, "notification_id": version}


def sales_order_requested(order_id: int, *lines: tuple[str, int], at: datetime = T0) -> SalesOrderRequested:
    """The order flow's SalesOrderRequested: the command to Prima, its lines' SKUs and units."""
    zero = Decimal(0)
    draft = SalesOrderDraft(
        external_reference=str(order_id), order_name=f"#{order_id}", currency="GBP", taxes_included=True,
        order_date=at, lines=tuple(
            SalesOrderLine(line_number=n, item_id=f"ITM-{sku}", sku=sku, description=sku, quantity=units,
                           unit_price=zero, discount_amount=zero, tax_amount=zero, net_amount=zero)
            for n, (sku, units) in enumerate(lines, start=1)),
        totals=SalesOrderTotals(lines_net=zero, shipping_net=zero, tax=zero, total=zero))
    command_id = uuid5(ORDER_NAMESPACE, f"{order_id}/create-sales-order/1")
    return SalesOrderRequested(**_order_envelope(order_id, 2, at), command=CreateSalesOrder(
        command_id=command_id, idempotency_key=str(command_id), shopify_order_id=order_id, issued_at=at,
        sales_order=draft))


def sales_order_created(order_id: int, number: int, at: datetime = T0) -> SalesOrderCreated:
    return SalesOrderCreated(**_order_envelope(order_id, 3, at), command_id=uuid5(ORDER_NAMESPACE, f"{order_id}/1"),
                             sales_order_number=f"SO-{number:06d}", status="open", occurred_at=at)


def sales_order_rejected(order_id: int, at: datetime = T0) -> SalesOrderRejected:
    return SalesOrderRejected(**_order_envelope(order_id, 3, at), command_id=uuid5(ORDER_NAMESPACE, f"{order_id}/1"),
                              status_code=422, code="unknown_item", reason="line 1: item unknown")


def release_stock_level(sku: str, location: str = LOC, at: datetime = T0, by: str = "ops") -> ReleaseStockLevel:
    return ReleaseStockLevel(command_id=uuid4(), requested_by=by, requested_at=at, sku=sku, location_id=location)


def set_level(item_number: int = 1, quantity: int = 5, change_from: int | None = 3, at: datetime = T0,
              location: str = LOC, origin: str = "prima_change", sku: str | None = None) -> SetInventoryLevel:
    name = sku or f"SKU-{item_number}"
    return SetInventoryLevel(
        command_id=uuid4(), sku=name, inventory_item_id=f"gid://shopify/InventoryItem/{item_number}",
        location_id=location, quantity=quantity, change_from_quantity=change_from,
        reference_document_uri=f"prima://stock/WH-MAIN/{name}?change=1", issued_at=at, origin=origin)


def set_status(sku: str = "SKU-1", status: str = "DRAFT", at: datetime = T0) -> SetProductStatus:
    return SetProductStatus(command_id=uuid4(), sku=sku, product_id=f"gid://shopify/Product/{sku}", status=status,
                            reason="no active Prima item", issued_at=at)
