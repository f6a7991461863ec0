"""The inventory flow's edge: wire contracts in and out of the domain's own values.

In: Prima's stock and item facts, Shopify's variant reads and the gateway's outcomes, the
operator's ReleaseStockLevel, and the order flow's SalesOrderRequested / SalesOrderCreated /
SalesOrderRejected (pending allocations), become the facts the StockItem and CatalogItem
aggregates take; the order flow's other events are none of the inventory's business (None).
Out: their events become the stock-events messages, their commands SetInventoryLevel and
SetProductStatus.
"""

from __future__ import annotations

from typing import Any

from contracts.orders import events as orders
from contracts.platform import ReleaseStockLevel
from contracts.prima import inventory as prima
from contracts.shopify import inventory as shopify
from domain.catalog.items import Component, PrimaItem
from domain.inventory import values as domain


def fact(message: Any) -> domain.InventoryFact | None:
    if isinstance(message, prima.PrimaStockLevel):
        return domain.StockLevelReported(sku=message.sku, warehouse=message.warehouse, available=message.available,
                                         change_id=message.change_id, allocated_for=message.allocated_for,
                                         allocated_through=prima.sales_order_position(message.allocated_sales_order))
    if isinstance(message, prima.PrimaItemChanged):
        return domain.ItemReported(item=PrimaItem(
            item_id=message.item_id, sku=message.sku, description=message.description, item_type=message.item_type,
            active=message.active, components=tuple(Component(c.sku, c.quantity) for c in message.components),
        ), updated_at=message.updated_at, change_id=message.change_id)
    if isinstance(message, shopify.ShopifyVariantObserved):
        return domain.VariantSeen(
            sku=message.sku, variant_id=message.variant_id, product_id=message.product_id,
            product_status=message.product_status, inventory_item_id=message.inventory_item_id,
            levels=tuple(domain.LevelSeen(level.location_id, level.available) for level in message.levels),
            observed_at=message.observed_at, sync_run_id=message.sync_run_id)
    if isinstance(message, shopify.InventoryLevelConfirmed):
        return domain.PushConfirmedByShopify(
            command_id=message.command_id, sku=message.sku, location_id=message.location_id,
            quantity=message.quantity, previous_quantity=message.previous_quantity,
            stale_retries=message.stale_retries, occurred_at=message.occurred_at)
    if isinstance(message, shopify.InventoryLevelRejected):
        return domain.PushRejectedByShopify(command_id=message.command_id, sku=message.sku,
                                            location_id=message.location_id, code=message.code, reason=message.reason)
    if isinstance(message, shopify.InventoryLevelFailed):
        return domain.PushParkedByGateway(command_id=message.command_id, sku=message.sku,
                                          location_id=message.location_id, attempts=message.attempts,
                                          reason=message.reason, occurred_at=message.occurred_at)
    if isinstance(message, shopify.InventoryLevelStale):
        return domain.PushFoundStaleByShopify(command_id=message.command_id, sku=message.sku,
                                              location_id=message.location_id,
                                              inventory_item_id=message.inventory_item_id,
                                              shopify_level=message.available, occurred_at=message.occurred_at)
    if isinstance(message, shopify.ProductStatusSet):
        return domain.ProductStatusApplied(command_id=message.command_id, sku=message.sku,
                                           product_id=message.product_id, status=message.status,
                                           occurred_at=message.occurred_at)
    if isinstance(message, shopify.ProductStatusRejected):
        return domain.ProductStatusRefusedByShopify(command_id=message.command_id, sku=message.sku,
                                                    product_id=message.product_id, reason=message.reason)
    if isinstance(message, ReleaseStockLevel):
        return domain.StockLevelReleaseRequested(sku=message.sku, location_id=message.location_id,
                                                 released_by=message.requested_by, requested_at=message.requested_at)
    if isinstance(message, orders.SalesOrderRequested):
        draft = message.command.sales_order
        return domain.OrderAccepted(
            order_id=str(message.shopify_order_id), reference=draft.external_reference,
            lines=tuple(domain.OrderLineAccepted(sku=line.sku, units=line.quantity) for line in draft.lines))
    if isinstance(message, orders.SalesOrderCreated):
        return domain.SalesOrderCreatedInPrima(order_id=str(message.shopify_order_id),
                                               sales_order_number=message.sales_order_number,
                                               position=prima.sales_order_position(message.sales_order_number))
    if isinstance(message, orders.SalesOrderRejected):
        return domain.OrderNotAllocated(order_id=str(message.shopify_order_id), reason=f"{message.code}: {message.reason}")
    if getattr(message, "message_type", None) == "OrderEvent":
        return None  # an order event the inventory takes nothing from
    raise TypeError(f"not an inventory fact: {type(message).__name__}")


def set_inventory_level(push: domain.InventoryPush) -> shopify.SetInventoryLevel:
    return shopify.SetInventoryLevel(
        command_id=push.command_id, sku=push.sku, inventory_item_id=push.inventory_item_id,
        location_id=push.location_id, quantity=push.quantity, change_from_quantity=push.change_from_quantity,
        reference_document_uri=push.reference_document_uri, issued_at=push.issued_at, origin=push.origin)


def set_product_status(change: domain.ProductStatusChange) -> shopify.SetProductStatus:
    return shopify.SetProductStatus(command_id=change.command_id, sku=change.sku, product_id=change.product_id,
                                    status=change.status, reason=change.reason, issued_at=change.issued_at)
