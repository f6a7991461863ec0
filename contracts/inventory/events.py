"""Domain events of the inventory aggregates, as published on `shopify-prima.stock-events.v1`.

StockItem (one per SKU and Shopify location) and CatalogItem (one per SKU) events share one
envelope (`event_id`, `sku`, `location_id`, `aggregate_id`, `aggregate_version`, `timestamp`,
`notification_id`); `event_type` ("StockItem.PushRequested", ...) says which fields follow. Every
event type has its own schema: there is no untyped `data`. Events of one SKU share a key (the
SKU) and arrive in the order they were recorded. `event_id` is stable: a message relayed twice
has the same id, so consumers dedupe on it (or on aggregate_id + aggregate_version).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.shopify.inventory import SetInventoryLevel, SetProductStatus
from contracts.validation import Code


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class _StockEvent(_Frozen):
    message_type: Literal["StockEvent"] = "StockEvent"
    event_id: UUID
    sku: Code
    location_id: Code | None  # None for CatalogItem events
    aggregate_id: UUID
    aggregate_version: int
    timestamp: datetime
    notification_id: int  # position in the event store's notification log


# ------------------------------------------------------------- StockItem (per SKU and location)


class StockItemRegistered(_StockEvent):
    event_type: Literal["StockItem.Registered"] = "StockItem.Registered"
    warehouse: str


class PrimaAvailabilityRecorded(_StockEvent):
    event_type: Literal["StockItem.PrimaAvailabilityRecorded"] = "StockItem.PrimaAvailabilityRecorded"
    available: int
    change_id: int
    reference: str
    source: Literal["stock", "bundle"]
    components: dict[str, int] | None = None  # a bundle's component SKU -> units per bundle
    # the latest sales order whose allocation Prima's record includes (its external reference),
    # and the highest sales-order position the StockItem knows included (0: none)
    allocated_for: str | None = None
    allocated_through: int = 0


class DesiredLevelChanged(_StockEvent):
    event_type: Literal["StockItem.DesiredLevelChanged"] = "StockItem.DesiredLevelChanged"
    prima_available: int
    buffer: int
    buffer_rule: str
    desired: int
    pending_allocations: int = 0  # units of accepted orders Prima has not allocated yet, held back


class ShopifyLevelObserved(_StockEvent):
    event_type: Literal["StockItem.ShopifyLevelObserved"] = "StockItem.ShopifyLevelObserved"
    inventory_item_id: str
    available: int
    observed_at: datetime
    sync_run_id: UUID | None = None


class PushRequested(_StockEvent):
    event_type: Literal["StockItem.PushRequested"] = "StockItem.PushRequested"
    command: SetInventoryLevel
    desired: int
    shopify_level: int | None


class PushConfirmed(_StockEvent):
    event_type: Literal["StockItem.PushConfirmed"] = "StockItem.PushConfirmed"
    command_id: UUID
    quantity: int
    previous_quantity: int | None
    stale_retries: int
    occurred_at: datetime


class PushRejected(_StockEvent):
    event_type: Literal["StockItem.PushRejected"] = "StockItem.PushRejected"
    command_id: UUID
    code: str
    reason: str


class PushFailed(_StockEvent):
    event_type: Literal["StockItem.PushFailed"] = "StockItem.PushFailed"
    command_id: UUID
    attempts: int
    reason: str
    failed_at: datetime | None = None


class PushFoundStale(_StockEvent):
    """The push was not applied: Shopify's level had moved (compare-and-set); the StockItem took
    the level the gateway read and decided again."""

    event_type: Literal["StockItem.PushFoundStale"] = "StockItem.PushFoundStale"
    command_id: UUID
    shopify_level: int
    observed_at: datetime


class AllocationPending(_StockEvent):
    """An accepted order's units that Prima has not allocated yet: held back from Shopify."""

    event_type: Literal["StockItem.AllocationPending"] = "StockItem.AllocationPending"
    order_id: str
    reference: str
    units: int


class AllocationNumbered(_StockEvent):
    event_type: Literal["StockItem.AllocationNumbered"] = "StockItem.AllocationNumbered"
    order_id: str
    sales_order_number: str
    position: int


class AllocationCleared(_StockEvent):
    """No longer pending: Prima's stock records include the allocation, or Prima refused the order."""

    event_type: Literal["StockItem.AllocationCleared"] = "StockItem.AllocationCleared"
    order_id: str
    units: int
    reason: str


class PushException(_Frozen):
    kind: Literal["push_rejected", "push_failed"]
    code: str
    reason: str
    command_id: UUID


class PushReleased(_StockEvent):
    event_type: Literal["StockItem.PushReleased"] = "StockItem.PushReleased"
    released_by: str
    previous: PushException


# ------------------------------------------------------------------------ CatalogItem (per SKU)


class CatalogItemRegistered(_StockEvent):
    event_type: Literal["CatalogItem.Registered"] = "CatalogItem.Registered"


class PrimaItemRecorded(_StockEvent):
    event_type: Literal["CatalogItem.PrimaItemRecorded"] = "CatalogItem.PrimaItemRecorded"
    item_id: str
    item_type: Literal["stock", "bundle", "service"]
    active: bool
    components: dict[str, int]
    updated_at: datetime
    change_id: int | None = None  # Prima's item-change sequence


class ShopifyVariantRecorded(_StockEvent):
    event_type: Literal["CatalogItem.ShopifyVariantRecorded"] = "CatalogItem.ShopifyVariantRecorded"
    variant_id: str
    product_id: str
    product_status: Literal["ACTIVE", "ARCHIVED", "DRAFT"]
    inventory_item_id: str
    observed_at: datetime


class UnmappedWarehouseFound(_StockEvent):
    event_type: Literal["CatalogItem.UnmappedWarehouseFound"] = "CatalogItem.UnmappedWarehouseFound"
    warehouse: str
    available: int
    change_id: int


class VariantWithoutPrimaItem(_StockEvent):
    event_type: Literal["CatalogItem.VariantWithoutPrimaItem"] = "CatalogItem.VariantWithoutPrimaItem"
    reason: str
    product_id: str
    variant_id: str


class VariantGuardCleared(_StockEvent):
    event_type: Literal["CatalogItem.VariantGuardCleared"] = "CatalogItem.VariantGuardCleared"
    item_id: str


class ProductStatusRequested(_StockEvent):
    event_type: Literal["CatalogItem.ProductStatusRequested"] = "CatalogItem.ProductStatusRequested"
    command: SetProductStatus


class ProductStatusConfirmed(_StockEvent):
    event_type: Literal["CatalogItem.ProductStatusConfirmed"] = "CatalogItem.ProductStatusConfirmed"
    command_id: UUID
    status: str
    occurred_at: datetime


class ProductStatusRefused(_StockEvent):
    event_type: Literal["CatalogItem.ProductStatusRefused"] = "CatalogItem.ProductStatusRefused"
    command_id: UUID
    reason: str


StockEvent = Annotated[
    StockItemRegistered | PrimaAvailabilityRecorded | DesiredLevelChanged | ShopifyLevelObserved | PushRequested
    | PushConfirmed | PushRejected | PushFailed | PushFoundStale | PushReleased
    | AllocationPending | AllocationNumbered | AllocationCleared
    | CatalogItemRegistered | PrimaItemRecorded | ShopifyVariantRecorded | UnmappedWarehouseFound
    | VariantWithoutPrimaItem | VariantGuardCleared | ProductStatusRequested | ProductStatusConfirmed
    | ProductStatusRefused,
    Field(discriminator="event_type"),
]
