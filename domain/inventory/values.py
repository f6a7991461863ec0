"""The inventory flow's own value types: the facts the StockItem and CatalogItem aggregates take,
and the commands they record. The services translate the wire contracts into these at the edge
(services/inventory/translate.py); the event store never holds a wire model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.catalog.items import PrimaItem

# ---------------------------------------------------------------------------------- facts in


@dataclass(frozen=True)
class StockLevelReported:
    """Prima's available-to-sell for one SKU in one warehouse, as of one stock change."""

    sku: str
    warehouse: str
    available: int
    change_id: int


@dataclass(frozen=True)
class ItemReported:
    """One item of Prima's item master, as of its last change."""

    item: PrimaItem
    updated_at: datetime

    @property
    def sku(self) -> str:
        return self.item.sku


@dataclass(frozen=True)
class LevelSeen:
    location_id: str
    available: int


@dataclass(frozen=True)
class VariantSeen:
    """A Shopify variant as a catalogue read found it."""

    sku: str
    variant_id: str
    product_id: str
    product_status: str  # ACTIVE, ARCHIVED, DRAFT
    inventory_item_id: str
    levels: tuple[LevelSeen, ...]
    observed_at: datetime
    sync_run_id: UUID | None = None


@dataclass(frozen=True)
class PushConfirmedByShopify:
    command_id: UUID
    sku: str
    location_id: str
    quantity: int
    previous_quantity: int | None
    stale_retries: int
    occurred_at: datetime


@dataclass(frozen=True)
class PushRejectedByShopify:
    command_id: UUID
    sku: str
    location_id: str
    code: str
    reason: str


@dataclass(frozen=True)
class PushParkedByGateway:
    command_id: UUID
    sku: str
    location_id: str
    attempts: int
    reason: str


PushOutcome = PushConfirmedByShopify | PushRejectedByShopify | PushParkedByGateway


@dataclass(frozen=True)
class ProductStatusApplied:
    command_id: UUID
    sku: str
    product_id: str
    status: str
    occurred_at: datetime


@dataclass(frozen=True)
class ProductStatusRefusedByShopify:
    command_id: UUID
    sku: str
    product_id: str
    reason: str


StatusOutcome = ProductStatusApplied | ProductStatusRefusedByShopify


@dataclass(frozen=True)
class StockLevelReleaseRequested:
    """An operator looked at a rejected or failed push (and fixed its cause)."""

    sku: str
    location_id: str
    released_by: str
    requested_at: datetime


InventoryFact = (StockLevelReported | ItemReported | VariantSeen | PushOutcome | StatusOutcome
                 | StockLevelReleaseRequested)


# ------------------------------------------------------------------------ commands recorded


@dataclass(frozen=True)
class InventoryPush:
    """Set "available" of one inventory item at one location, compare-and-set."""

    command_id: UUID
    sku: str
    inventory_item_id: str
    location_id: str
    quantity: int
    change_from_quantity: int | None  # the level last confirmed or observed in Shopify
    reference_document_uri: str  # names the Prima stock record the level comes from
    issued_at: datetime
    origin: str  # prima_change, full_comparison, operator, buffer_change


@dataclass(frozen=True)
class ProductStatusChange:
    command_id: UUID
    sku: str
    product_id: str
    status: str  # ACTIVE or DRAFT
    reason: str
    issued_at: datetime


@dataclass(frozen=True)
class PushException:
    """Why a StockItem waits for a person: its push was rejected, or the gateway gave up."""

    kind: str  # push_rejected, push_failed
    code: str
    reason: str
    command_id: UUID


VALUE_TYPES: tuple[type, ...] = (InventoryPush, ProductStatusChange, PushException)
