"""The inventory flow's relay table: what each StockItem and CatalogItem event becomes on Kafka.

Every event goes to shopify-prima.stock-events.v1 (keyed by SKU); a PushRequested also goes to
shopify.commands.v1 as a SetInventoryLevel, a ProductStatusRequested as a SetProductStatus. The
relay itself is services/platform/outbox.py.
"""

from __future__ import annotations

from typing import Any

from contracts.inventory import events as wire
from contracts.prima.inventory import sku_key
from contracts.topics import SHOPIFY_COMMANDS, STOCK_EVENTS
from domain.inventory.application import InventoryApplication
from services.inventory.translate import set_inventory_level, set_product_status
from services.platform.outbox import Envelope, RelayTable, Route
from services.platform.settings import Settings

Subject = tuple[str, "str | None"]  # (SKU, Shopify location or None for a CatalogItem)


def _key(subject: Subject) -> bytes:
    return sku_key(subject[0])


def _published(model: type[Any], fields: Any = lambda e: {}) -> Route[Subject]:
    def build(env: Envelope[Subject], e: Any) -> Any:
        sku, location_id = env.subject
        return model(event_id=env.event_id, sku=sku, location_id=location_id, aggregate_id=env.aggregate_id,
                     aggregate_version=env.aggregate_version, timestamp=env.timestamp,
                     notification_id=env.notification_id, **fields(e))
    return Route(STOCK_EVENTS, _key, build)


def _attrs(*names: str) -> Any:
    """The event's fields of these names; one an event stored before the field existed lacks
    takes the message's default."""
    return lambda e: {name: getattr(e, name) for name in names if hasattr(e, name)}


ROUTES: dict[str, list[Route[Subject]]] = {
    "StockItem.Registered": [_published(wire.StockItemRegistered, _attrs("warehouse"))],
    "StockItem.PrimaAvailabilityRecorded": [_published(wire.PrimaAvailabilityRecorded, _attrs(
        "available", "change_id", "reference", "source", "components", "allocated_for", "allocated_through"))],
    "StockItem.DesiredLevelChanged": [_published(wire.DesiredLevelChanged, _attrs(
        "prima_available", "buffer", "buffer_rule", "desired", "pending_allocations"))],
    "StockItem.ShopifyLevelObserved": [_published(wire.ShopifyLevelObserved, _attrs(
        "inventory_item_id", "available", "observed_at", "sync_run_id"))],
    "StockItem.PushRequested": [
        _published(wire.PushRequested, lambda e: {"command": set_inventory_level(e.command), "desired": e.desired,
                                                  "shopify_level": e.shopify_level}),
        Route(SHOPIFY_COMMANDS, _key, lambda env, e: set_inventory_level(e.command)),
    ],
    "StockItem.PushConfirmed": [_published(wire.PushConfirmed, _attrs(
        "command_id", "quantity", "previous_quantity", "stale_retries", "occurred_at"))],
    "StockItem.PushRejected": [_published(wire.PushRejected, _attrs("command_id", "code", "reason"))],
    "StockItem.PushFailed": [_published(wire.PushFailed, _attrs("command_id", "attempts", "reason", "failed_at"))],
    "StockItem.PushFoundStale": [_published(wire.PushFoundStale, _attrs("command_id", "shopify_level",
                                                                         "observed_at"))],
    "StockItem.AllocationPending": [_published(wire.AllocationPending, _attrs("order_id", "reference", "units"))],
    "StockItem.AllocationNumbered": [_published(wire.AllocationNumbered, _attrs(
        "order_id", "sales_order_number", "position"))],
    "StockItem.AllocationCleared": [_published(wire.AllocationCleared, _attrs("order_id", "units", "reason"))],
    "StockItem.PushReleased": [_published(wire.PushReleased, lambda e: {
        "released_by": e.released_by, "previous": wire.PushException(
            kind=e.previous.kind, code=e.previous.code, reason=e.previous.reason, command_id=e.previous.command_id)})],
    "CatalogItem.Registered": [_published(wire.CatalogItemRegistered)],
    "CatalogItem.PrimaItemRecorded": [_published(wire.PrimaItemRecorded, _attrs(
        "item_id", "item_type", "active", "components", "updated_at", "change_id"))],
    "CatalogItem.ShopifyVariantRecorded": [_published(wire.ShopifyVariantRecorded, _attrs(
        "variant_id", "product_id", "product_status", "inventory_item_id", "observed_at"))],
    "CatalogItem.UnmappedWarehouseFound": [_published(wire.UnmappedWarehouseFound, _attrs(
        "warehouse", "available", "change_id"))],
    "CatalogItem.VariantWithoutPrimaItem": [_published(wire.VariantWithoutPrimaItem, _attrs(
        "reason", "product_id", "variant_id"))],
    "CatalogItem.VariantGuardCleared": [_published(wire.VariantGuardCleared, _attrs("item_id"))],
    "CatalogItem.ProductStatusRequested": [
        _published(wire.ProductStatusRequested, lambda e: {"command": set_product_status(e.command)}),
        Route(SHOPIFY_COMMANDS, _key, lambda env, e: set_product_status(e.command)),
    ],
    "CatalogItem.ProductStatusConfirmed": [_published(wire.ProductStatusConfirmed, _attrs(
        "command_id", "status", "occurred_at"))],
    "CatalogItem.ProductStatusRefused": [_published(wire.ProductStatusRefused, _attrs("command_id", "reason"))],
}


def _application(settings: Settings) -> InventoryApplication:
    return InventoryApplication(env=settings.eventsourcing_env())


STOCK_RELAY: RelayTable[Subject] = RelayTable(
    name="inventory", lock="inventory", application=_application, routes=ROUTES,
    subject_of=lambda first: (first.sku, getattr(first, "location_id", None)),
)
