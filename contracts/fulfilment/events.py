"""Domain events of the OrderFulfilment aggregate, as published on
`shopify-prima.fulfilment-events.v1` (issue 10).

One OrderFulfilment per Shopify order: the order's lines (bundles with their components), the
Prima despatch notes against its sales order, Shopify's fulfillment orders as last read, the
fulfilments decided and made, the tracking sent, and the exception that holds it. Every event has
the envelope (`event_id`, `shopify_order_id`, `aggregate_id`, `aggregate_version`, `timestamp`,
`notification_id`); `event_type` ("OrderFulfilment.FulfilmentRequested", ...) says which fields
follow. Events of one order share a key (the Shopify order id) and arrive in the order they were
recorded; `event_id` is stable, so consumers dedupe on it. The order read model's fulfilment
(projections/order_fulfilment.py) is built from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.shopify.fulfilments import CreateFulfilment, UpdateFulfilmentTracking


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class _FulfilmentEvent(_Frozen):
    message_type: Literal["FulfilmentEvent"] = "FulfilmentEvent"
    event_id: UUID
    shopify_order_id: int
    aggregate_id: UUID
    aggregate_version: int
    timestamp: datetime
    notification_id: int  # position in the event store's notification log


class BundleComponent(_Frozen):
    sku: str
    units_per_bundle: int


class FulfilmentOrderLine(_Frozen):
    """A Shopify order line as the sales order states it (a bundle: the kit's SKU, its components)."""

    line_item_id: int
    sku: str
    quantity: int
    components: tuple[BundleComponent, ...] = ()


class FulfillmentOrderLineRead(_Frozen):
    id: str  # FulfillmentOrderLineItem gid
    line_item_id: int
    remaining: int


class FulfillmentOrderRead(_Frozen):
    id: str  # FulfillmentOrder gid
    status: str
    location_id: str | None
    lines: tuple[FulfillmentOrderLineRead, ...]


class DespatchedUnits(_Frozen):
    sku: str
    quantity: int
    line_item_id: int | None = None


class DespatchParcel(_Frozen):
    parcel_number: int
    carrier: str
    tracking_number: str | None
    tracking_url: str | None = None


class FulfilmentProblem(_Frozen):
    kind: Literal["sku_not_on_order", "cannot_allocate", "refused_by_shopify", "tracking_refused"]
    despatch_id: str
    reason: str
    command_id: UUID | None = None


class FulfilmentOpened(_FulfilmentEvent):
    event_type: Literal["OrderFulfilment.Opened"] = "OrderFulfilment.Opened"


class OrderLinesRecorded(_FulfilmentEvent):
    event_type: Literal["OrderFulfilment.LinesRecorded"] = "OrderFulfilment.LinesRecorded"
    lines: tuple[FulfilmentOrderLine, ...]


class FulfillmentOrdersRead(_FulfilmentEvent):
    event_type: Literal["OrderFulfilment.FulfillmentOrdersRead"] = "OrderFulfilment.FulfillmentOrdersRead"
    fulfillment_orders: tuple[FulfillmentOrderRead, ...]
    read_at: datetime


class DespatchRecorded(_FulfilmentEvent):
    event_type: Literal["OrderFulfilment.DespatchRecorded"] = "OrderFulfilment.DespatchRecorded"
    despatch_id: str
    version: int
    change_id: int
    sales_order_number: str
    despatched_at: datetime
    lines: tuple[DespatchedUnits, ...]
    parcels: tuple[DespatchParcel, ...]


class NothingFulfillable(_FulfilmentEvent):
    """The despatch completes no whole line or bundle yet: it waits, and its parcels ride with the
    next fulfilment."""

    event_type: Literal["OrderFulfilment.NothingFulfillable"] = "OrderFulfilment.NothingFulfillable"
    despatch_id: str
    reason: str


class FulfilmentRequested(_FulfilmentEvent):
    event_type: Literal["OrderFulfilment.FulfilmentRequested"] = "OrderFulfilment.FulfilmentRequested"
    command: CreateFulfilment


class FulfilmentRecorded(_FulfilmentEvent):
    """Shopify made the fulfilment (or the gateway found it already made for the key)."""

    event_type: Literal["OrderFulfilment.FulfilmentCreated"] = "OrderFulfilment.FulfilmentCreated"
    command_id: UUID
    despatch_id: str
    fulfilment_id: str
    occurred_at: datetime


class FulfilmentExceptionRaised(_FulfilmentEvent):
    event_type: Literal["OrderFulfilment.ExceptionRaised"] = "OrderFulfilment.ExceptionRaised"
    exception: FulfilmentProblem


class TrackingUpdateRequested(_FulfilmentEvent):
    event_type: Literal["OrderFulfilment.TrackingUpdateRequested"] = "OrderFulfilment.TrackingUpdateRequested"
    command: UpdateFulfilmentTracking


class TrackingRecorded(_FulfilmentEvent):
    event_type: Literal["OrderFulfilment.TrackingUpdated"] = "OrderFulfilment.TrackingUpdated"
    command_id: UUID
    occurred_at: datetime


class FulfilmentReleased(_FulfilmentEvent):
    event_type: Literal["OrderFulfilment.Released"] = "OrderFulfilment.Released"
    released_by: str
    previous: FulfilmentProblem


class DespatchSettled(_FulfilmentEvent):
    """An operator released the exception of this despatch and settled it (ReleaseFulfilment with
    settle_despatch): what it shipped is taken as handled outside the integration; it gives no
    fulfilment, and the order's next despatches are decided."""

    event_type: Literal["OrderFulfilment.DespatchSettled"] = "OrderFulfilment.DespatchSettled"
    despatch_id: str
    reason: str  # "settled by <operator>: <the exception's reason>"


FulfilmentEvent = Annotated[
    FulfilmentOpened | OrderLinesRecorded | FulfillmentOrdersRead | DespatchRecorded | NothingFulfillable
    | FulfilmentRequested | FulfilmentRecorded | FulfilmentExceptionRaised | TrackingUpdateRequested
    | TrackingRecorded | FulfilmentReleased | DespatchSettled,
    Field(discriminator="event_type"),
]
