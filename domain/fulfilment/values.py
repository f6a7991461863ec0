"""The fulfilment flow's own value types (DESIGN.md flow 3): what the OrderFulfilment aggregate
takes (the order's lines, Prima's despatch notes, Shopify's fulfillment orders as read, the
outcomes of its commands) and the commands it records. The services translate the wire
contracts (contracts/prima/despatches.py, Shopify's FulfillmentOrder) into these at the edge;
the event store never holds a wire model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

# ------------------------------------------------------------------------ the order's lines


@dataclass(frozen=True)
class Component:
    """One component of a bundle line: its SKU and its units in one bundle."""

    sku: str
    units_per_bundle: int


@dataclass(frozen=True)
class OrderLineRecord:
    """A Shopify order line as the sales order carries it: a plain line by its SKU, or a bundle
    line by its components (domain/orders/bundles.py). `quantity`: the Shopify line's units sold
    (bundles, for a bundle line)."""

    line_id: int  # the Shopify order line (LineItem)
    sku: str  # the line's SKU (the kit's, for a bundle)
    quantity: int
    components: tuple[Component, ...] = ()

    @property
    def is_bundle(self) -> bool:
        return bool(self.components)

    def units_of(self, sku: str) -> int:
        """The units of `sku` the line stands for on the sales order."""
        if not self.components:
            return self.quantity if sku == self.sku else 0
        return sum(self.quantity * c.units_per_bundle for c in self.components if c.sku == sku)


# ------------------------------------------------------------------------ Prima's despatch note


@dataclass(frozen=True)
class DespatchedLine:
    """Units of one SKU shipped (a component's SKU for a kit), from a Shopify line if Prima
    names it (the sales-order line's external line id)."""

    sku: str
    quantity: int
    line_id: int | None = None


@dataclass(frozen=True)
class Parcel:
    parcel_number: int
    carrier: str  # as Prima names it
    tracking_number: str | None  # None until the carrier's number is known
    tracking_url: str | None = None


@dataclass(frozen=True)
class Despatch:
    """One despatch note as of one change (`version` 1 as despatched, +1 per tracking update;
    `change_id` Prima's despatch-change sequence)."""

    despatch_id: str
    version: int
    change_id: int
    shopify_order_id: int
    sales_order_number: str
    despatched_at: datetime
    lines: tuple[DespatchedLine, ...]
    parcels: tuple[Parcel, ...]


# ------------------------------------------------------------------------ Shopify's fulfillment orders


class FulfillmentOrderStatus:
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    ON_HOLD = "ON_HOLD"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"
    INCOMPLETE = "INCOMPLETE"
    SCHEDULED = "SCHEDULED"
    FULFILLABLE = ("OPEN", "IN_PROGRESS")


@dataclass(frozen=True)
class FulfillmentOrderLine:
    id: str  # the FulfillmentOrderLineItem's gid
    line_item_id: int  # the Shopify order line it stands for
    remaining: int  # remainingQuantity


@dataclass(frozen=True)
class FulfillmentOrder:
    id: str  # gid://shopify/FulfillmentOrder/...
    status: str
    location_id: str | None
    lines: tuple[FulfillmentOrderLine, ...]


# ------------------------------------------------------------------------ what Shopify is asked for


@dataclass(frozen=True)
class LineQuantity:
    line_id: int
    quantity: int


@dataclass(frozen=True)
class FulfillmentOrderLineQuantity:
    id: str  # the FulfillmentOrderLineItem's gid
    quantity: int


@dataclass(frozen=True)
class FulfillmentOrderLines:
    """One entry of fulfillmentCreate's lineItemsByFulfillmentOrder."""

    fulfillment_order_id: str
    lines: tuple[FulfillmentOrderLineQuantity, ...]


@dataclass(frozen=True)
class TrackingInfo:
    """fulfillmentCreate's trackingInfo (FulfillmentTrackingInput): one company, the numbers,
    and the url of each number at the same position (empty when Shopify builds them)."""

    company: str | None
    numbers: tuple[str, ...]
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreateFulfilment:
    """The command: fulfil these quantities of these fulfillment orders, once per despatch (the
    idempotency key is the despatch's; a re-driven attempt has a new command id, same key)."""

    command_id: UUID
    idempotency_key: str
    shopify_order_id: int
    despatch_id: str  # the despatch that gave the fulfilment
    covers: tuple[str, ...]  # every despatch whose parcels it carries (earlier ones that fulfilled nothing)
    issued_at: datetime
    line_items_by_fulfillment_order: tuple[FulfillmentOrderLines, ...]
    line_quantities: tuple[LineQuantity, ...]  # what it fulfils per Shopify line
    tracking: TrackingInfo
    notify_customer: bool
    warnings: tuple[str, ...] = ()  # sent all the same (an unknown carrier without a url, say)


@dataclass(frozen=True)
class UpdateFulfilmentTracking:
    """The command: the fulfilment's tracking is now this (fulfillmentTrackingInfoUpdate
    replaces it), after a parcel got its tracking later."""

    command_id: UUID
    idempotency_key: str
    shopify_order_id: int
    despatch_id: str
    fulfilment_id: str
    issued_at: datetime
    tracking: TrackingInfo
    notify_customer: bool
    warnings: tuple[str, ...] = ()


FulfilmentCommand = CreateFulfilment | UpdateFulfilmentTracking


# ------------------------------------------------------------------------ outcomes and exceptions


@dataclass(frozen=True)
class FulfilmentCreatedByShopify:
    """fulfillmentCreate succeeded, or the gateway found the despatch's fulfilment already there."""

    shopify_order_id: int
    command_id: UUID
    fulfilment_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class FulfilmentRefusedByShopify:
    shopify_order_id: int
    command_id: UUID
    user_errors: tuple[str, ...]
    occurred_at: datetime


@dataclass(frozen=True)
class TrackingUpdatedByShopify:
    shopify_order_id: int
    command_id: UUID
    fulfilment_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class TrackingUpdateRefusedByShopify:
    shopify_order_id: int
    command_id: UUID
    user_errors: tuple[str, ...]
    occurred_at: datetime


FulfilmentOutcome = (FulfilmentCreatedByShopify | FulfilmentRefusedByShopify | TrackingUpdatedByShopify
                     | TrackingUpdateRefusedByShopify)


@dataclass(frozen=True)
class OrderLinesStated:
    """The order's lines as its sales order carries them (rules.order_lines), when it was sent or amended."""

    shopify_order_id: int
    lines: tuple[OrderLineRecord, ...]
    stated_at: datetime


@dataclass(frozen=True)
class FulfillmentOrdersStated:
    """Shopify's fulfillment orders of the order, as read at `read_at`."""

    shopify_order_id: int
    fulfillment_orders: tuple[FulfillmentOrder, ...]
    read_at: datetime


@dataclass(frozen=True)
class FulfilmentReleaseRequested:
    """An operator re-drives the order's exception, with a fresh read of its fulfillment orders;
    `settle`: and takes the exception's despatch as handled outside the integration."""

    shopify_order_id: int
    released_by: str
    fulfillment_orders: tuple[FulfillmentOrder, ...]
    read_at: datetime
    settle: bool = False


FulfilmentFact = (Despatch | OrderLinesStated | FulfillmentOrdersStated | FulfilmentOutcome
                  | FulfilmentReleaseRequested)


class ExceptionKind:
    CANNOT_ALLOCATE = "cannot_allocate"  # the fulfillment orders as read cannot take the quantities
    SKU_NOT_ON_ORDER = "sku_not_on_order"  # the despatch shipped a SKU none of the order's lines holds
    REFUSED_BY_SHOPIFY = "refused_by_shopify"  # fulfillmentCreate's userErrors
    TRACKING_REFUSED = "tracking_refused"  # fulfillmentTrackingInfoUpdate's userErrors


@dataclass(frozen=True)
class FulfilmentException:
    kind: str
    despatch_id: str
    reason: str
    command_id: UUID | None = None


VALUE_TYPES: tuple[type, ...] = (
    Component, OrderLineRecord, DespatchedLine, Parcel, Despatch, FulfillmentOrderLine, FulfillmentOrder,
    LineQuantity, FulfillmentOrderLineQuantity, FulfillmentOrderLines, TrackingInfo, CreateFulfilment,
    UpdateFulfilmentTracking, FulfilmentException,
)
