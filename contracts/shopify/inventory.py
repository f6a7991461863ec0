"""Shopify's side of the inventory flow (DESIGN.md flow 5), as it travels on Kafka.

Facts:     ShopifyVariantObserved (shopify.inventory.v1): a variant as the catalogue reader read
           it, with its "available" per location.
Commands:  SetInventoryLevel, SetProductStatus (shopify.commands.v1): decided by the StockItem
           and CatalogItem aggregates, relayed from the outbox, executed by the Shopify gateway.
Outcomes:  InventoryLevelConfirmed / InventoryLevelRejected / InventoryLevelFailed /
           InventoryLevelStale and ProductStatusSet / ProductStatusRejected (shopify.outcomes.v1):
           what Shopify answered.

Every message about one SKU is keyed by the SKU (`sku_key`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.prima.inventory import sku_key
from contracts.validation import Code, Count, Lines, Quantity, Reason, StockQuantity


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


# ------------------------------------------------- facts from Shopify (the catalogue reader)


class ShopifyLevel(_Frozen):
    location_id: Code  # gid://shopify/Location/...
    available: StockQuantity


class ShopifyVariantObserved(_Frozen):
    """A variant as Shopify showed it in a catalogue read (full comparison or SKU lookup)."""

    message_type: Literal["ShopifyVariantObserved"] = "ShopifyVariantObserved"
    sku: Code
    variant_id: Code
    product_id: Code
    product_status: Literal["ACTIVE", "ARCHIVED", "DRAFT"]
    inventory_item_id: Code
    levels: Lines(ShopifyLevel)
    observed_at: datetime
    sync_run_id: UUID | None = None  # the full comparison that read it


ShopifyInventoryFact = Annotated[ShopifyVariantObserved, Field(discriminator="message_type")]


# ------------------------------------------------------------ commands to Shopify (the outbox)


class SetInventoryLevel(_Frozen):
    """Set "available" of one inventory item at one location, compare-and-set.

    `change_from_quantity` is the level last confirmed or observed in Shopify. When Shopify says
    it is stale, the gateway re-reads the level and, unless it already is `quantity`, writes
    nothing and answers InventoryLevelStale with what Shopify has: the level may have moved by a
    sale Prima has not seen, and only the StockItem knows the orders it must account for.
    `issued_at` orders one level's commands (strictly increasing per StockItem): the gateway
    never writes a command older than one it has already taken up for that level."""

    message_type: Literal["SetInventoryLevel"] = "SetInventoryLevel"
    command_id: UUID
    sku: Code
    inventory_item_id: Code
    location_id: Code
    quantity: Quantity
    change_from_quantity: StockQuantity | None
    reference_document_uri: Code  # names the Prima stock record the level comes from
    issued_at: datetime
    # what made it: a Prima change (pushed after a short debounce), a full comparison's repair
    # (batched with the rest of the run), an operator's release, a peak window's buffer, an order
    # accepted or refused (pending allocations), a stale compare-and-set, an automatic release,
    # what changed while a push was held back by an exception its late confirmation cleared
    origin: Literal["prima_change", "full_comparison", "operator", "buffer_change", "pending_allocation",
                    "stale_level", "auto_release", "push_confirmed"] = "prima_change"


class SetProductStatus(_Frozen):
    message_type: Literal["SetProductStatus"] = "SetProductStatus"
    command_id: UUID
    sku: Code
    product_id: Code
    status: Literal["ACTIVE", "DRAFT"]
    reason: Reason
    issued_at: datetime


ShopifyCommand = Annotated[SetInventoryLevel | SetProductStatus, Field(discriminator="message_type")]


# --------------------------------------------------------------- outcomes (the Shopify gateway)


class InventoryLevelConfirmed(_Frozen):
    message_type: Literal["InventoryLevelConfirmed"] = "InventoryLevelConfirmed"
    command_id: UUID
    sku: Code
    inventory_item_id: Code
    location_id: Code
    quantity: Quantity
    previous_quantity: StockQuantity | None  # the changeFromQuantity that Shopify accepted
    stale_retries: Count = 0  # compare-and-set retries after CHANGE_FROM_QUANTITY_STALE
    adjustment_group_id: Code | None = None
    occurred_at: datetime


class InventoryLevelRejected(_Frozen):
    """Shopify refused the quantity (a userError other than a stale compare-and-set)."""

    message_type: Literal["InventoryLevelRejected"] = "InventoryLevelRejected"
    command_id: UUID
    sku: Code
    location_id: Code
    code: Reason
    reason: Reason
    occurred_at: datetime


class InventoryLevelFailed(_Frozen):
    """The gateway gave up after its retries and parked the command."""

    message_type: Literal["InventoryLevelFailed"] = "InventoryLevelFailed"
    command_id: UUID
    sku: Code
    location_id: Code
    attempts: Count
    reason: Reason
    occurred_at: datetime


class InventoryLevelStale(_Frozen):
    """Not applied: Shopify's level was no longer `change_from_quantity` (it moved: a sale, an
    adjustment) and, read again, was `available`, not the command's quantity. Nothing was
    written; the StockItem decides again from `available`."""

    message_type: Literal["InventoryLevelStale"] = "InventoryLevelStale"
    command_id: UUID
    sku: Code
    inventory_item_id: Code
    location_id: Code
    quantity: Quantity  # what the command asked for
    change_from_quantity: StockQuantity | None  # what it compared against
    available: StockQuantity  # what Shopify has
    occurred_at: datetime


class ProductStatusSet(_Frozen):
    message_type: Literal["ProductStatusSet"] = "ProductStatusSet"
    command_id: UUID
    sku: Code
    product_id: Code
    status: Code
    occurred_at: datetime


class ProductStatusRejected(_Frozen):
    message_type: Literal["ProductStatusRejected"] = "ProductStatusRejected"
    command_id: UUID
    sku: Code
    product_id: Code
    reason: Reason
    occurred_at: datetime


ShopifyOutcome = Annotated[
    InventoryLevelConfirmed | InventoryLevelRejected | InventoryLevelFailed | InventoryLevelStale
    | ProductStatusSet | ProductStatusRejected,
    Field(discriminator="message_type"),
]

__all__ = [
    "InventoryLevelConfirmed",
    "InventoryLevelFailed",
    "InventoryLevelRejected",
    "InventoryLevelStale",
    "ProductStatusRejected",
    "ProductStatusSet",
    "SetInventoryLevel",
    "SetProductStatus",
    "ShopifyCommand",
    "ShopifyInventoryFact",
    "ShopifyLevel",
    "ShopifyOutcome",
    "ShopifyVariantObserved",
    "sku_key",
]
