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
    """Prima's available-to-sell for one SKU in one warehouse, as of one stock change.

    `allocated_for`: the external reference (the Shopify order id) of the latest sales order
    whose allocation the record includes; `allocated_through`: that sales order's position in
    Prima's sequential numbering (0: none). Prima numbers sales orders in commit order and
    allocates in the same transaction, so the record includes every sales order up to it."""

    sku: str
    warehouse: str
    available: int
    change_id: int
    allocated_for: str | None = None
    allocated_through: int = 0


@dataclass(frozen=True)
class ItemReported:
    """One item of Prima's item master, as of its last change. `change_id`: Prima's item-change
    sequence (increasing in commit order; None from a Prima that does not give it)."""

    item: PrimaItem
    updated_at: datetime
    change_id: int | None = None

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
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class PushFoundStaleByShopify:
    """The push was not applied: Shopify's level had moved since the level the push compared
    against (compare-and-set). `shopify_level` is what Shopify showed when the gateway read it
    again; the StockItem decides again from it (with the orders Prima has not allocated yet)."""

    command_id: UUID
    sku: str
    location_id: str
    inventory_item_id: str
    shopify_level: int
    occurred_at: datetime


PushOutcome = PushConfirmedByShopify | PushRejectedByShopify | PushParkedByGateway | PushFoundStaleByShopify


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


# ------------------------------------------------- the order flow's facts (pending allocations)


@dataclass(frozen=True)
class OrderLineAccepted:
    sku: str
    units: int


@dataclass(frozen=True)
class OrderAccepted:
    """The integration asked Prima for a sales order (SalesOrderRequested): the order's units
    are sold in Shopify (Shopify's level already fell) but not yet allocated in Prima."""

    order_id: str  # the Shopify order id
    reference: str  # the sales order's external reference, as Prima reports it on stock records
    lines: tuple[OrderLineAccepted, ...]


@dataclass(frozen=True)
class SalesOrderCreatedInPrima:
    """Prima created the order's sales order (and allocated its lines in the same transaction);
    `position`: the sales order's place in Prima's sequential numbering."""

    order_id: str
    sales_order_number: str
    position: int


@dataclass(frozen=True)
class OrderNotAllocated:
    """Prima refused the order's sales order (SalesOrderRejected): it allocated nothing."""

    order_id: str
    reason: str


OrderFact = OrderAccepted | SalesOrderCreatedInPrima | OrderNotAllocated

InventoryFact = (StockLevelReported | ItemReported | VariantSeen | PushOutcome | StatusOutcome
                 | StockLevelReleaseRequested | OrderFact)


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
    issued_at: datetime  # strictly increasing per StockItem: the gateway orders decisions by it
    # prima_change, full_comparison, operator, buffer_change, pending_allocation, stale_level, auto_release,
    # push_confirmed
    origin: str


@dataclass(frozen=True)
class ProductStatusChange:
    command_id: UUID
    sku: str
    product_id: str
    status: str  # ACTIVE or DRAFT
    reason: str
    issued_at: datetime  # strictly increasing per CatalogItem: the gateway keeps the newest per product


@dataclass(frozen=True)
class PushException:
    """Why a StockItem waits for a person: its push was rejected, or the gateway gave up."""

    kind: str  # push_rejected, push_failed
    code: str
    reason: str
    command_id: UUID


@dataclass(frozen=True)
class PendingAllocation:
    """Units of an accepted order that Prima has not allocated yet (as far as its stock records
    tell), held back from Shopify. `position`: the sales order's number, once Prima made it."""

    order_id: str
    reference: str
    units: int
    position: int | None = None


@dataclass(frozen=True)
class AutoRelease:
    """When a SKU-location whose push the gateway gave up on is decided again without a person:
    after `initial_seconds`, doubling per failure up to `max_seconds`, until `horizon_seconds`
    after its first failure."""

    initial_seconds: float
    max_seconds: float
    horizon_seconds: float


VALUE_TYPES: tuple[type, ...] = (InventoryPush, ProductStatusChange, PushException, PendingAllocation)
