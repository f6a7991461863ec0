"""Fulfilment commands to Shopify and Shopify's answers (issue 10).

The OrderFulfilment aggregate (domain/fulfilment) decides a fulfilment when a Prima despatch
covers whole order lines; its commands reach the Shopify gateway on shopify.commands.v1 and the
gateway's answers come back on shopify.outcomes.v1, both keyed by the Shopify order id (an
order's fulfilments keep their order).

- CreateFulfilment: Admin GraphQL `fulfillmentCreate` of the fulfillment order line items and
  quantities the despatch covers (`lineItemsByFulfillmentOrder`), with its tracking (one company,
  the tracking numbers, their URLs) and `notifyCustomer`. `idempotency_key` comes from the
  despatch ("prima-despatch:<despatch id>"), the same for every attempt: before writing, the
  gateway reads the order's fulfilments and adopts one it already made for the key.
- UpdateFulfilmentTracking: `fulfillmentTrackingInfoUpdate` of a fulfilment already made, when a
  parcel's tracking arrives later; the tracking given replaces Shopify's.
- FulfilmentCreated / FulfilmentRefused, FulfilmentTrackingUpdated / FulfilmentTrackingRefused:
  what Shopify answered. A refusal carries Shopify's userErrors as given (a fulfillment order on
  hold or closed, a quantity above what remains); the aggregate holds the order as an exception.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.validation import Code, Id, Lines, PositiveQuantity, Text


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class FulfillmentOrderLineQuantity(_Frozen):
    id: Code  # the FulfillmentOrderLineItem's gid
    quantity: PositiveQuantity


class FulfillmentOrderLines(_Frozen):
    """One entry of fulfillmentCreate's lineItemsByFulfillmentOrder."""

    fulfillment_order_id: Code  # gid://shopify/FulfillmentOrder/<n>
    fulfillment_order_line_items: Lines(FulfillmentOrderLineQuantity)


class LineQuantity(_Frozen):
    line_item_id: Id  # the Shopify order line
    quantity: PositiveQuantity


class TrackingInfo(_Frozen):
    """FulfillmentTrackingInput: one company for every number; urls pair with numbers by position
    (given only when every number has one)."""

    company: Code | None
    numbers: Annotated[tuple[Code, ...], Field(max_length=50)]
    urls: Annotated[tuple[Text, ...], Field(max_length=50)] = ()


class CreateFulfilment(_Frozen):
    message_type: Literal["CreateFulfilment"] = "CreateFulfilment"
    command_id: UUID
    idempotency_key: Code  # "prima-despatch:<despatch id>": the same for every attempt
    shopify_order_id: Id
    despatch_id: Code  # the Prima despatch note that gave the fulfilment
    covers: Annotated[tuple[Code, ...], Field(max_length=250)]  # every note whose parcels it carries
    issued_at: datetime
    line_items_by_fulfillment_order: Lines(FulfillmentOrderLines)
    line_quantities: Lines(LineQuantity)  # what it fulfils per Shopify order line
    tracking: TrackingInfo
    notify_customer: bool
    warnings: Annotated[tuple[Text, ...], Field(max_length=50)] = ()  # sent all the same (an unknown carrier)


class UpdateFulfilmentTracking(_Frozen):
    message_type: Literal["UpdateFulfilmentTracking"] = "UpdateFulfilmentTracking"
    command_id: UUID
    idempotency_key: Code  # "prima-despatch:<despatch id>:v<versions>"
    shopify_order_id: Id
    despatch_id: Code
    fulfilment_id: Code  # gid://shopify/Fulfillment/<n>
    issued_at: datetime
    tracking: TrackingInfo
    notify_customer: bool
    warnings: Annotated[tuple[Text, ...], Field(max_length=50)] = ()


FulfilmentCommand = Annotated[CreateFulfilment | UpdateFulfilmentTracking, Field(discriminator="message_type")]


class FulfilmentCreated(_Frozen):
    message_type: Literal["FulfilmentCreated"] = "FulfilmentCreated"
    command_id: UUID
    shopify_order_id: Id
    despatch_id: Code
    fulfilment_id: Code  # gid://shopify/Fulfillment/<n>
    fulfilment_name: Code | None = None  # "#1001.1"
    # True when the gateway found the fulfilment already made for the key (an answer lost before)
    adopted: bool = False
    occurred_at: datetime


class FulfilmentRefused(_Frozen):
    message_type: Literal["FulfilmentRefused"] = "FulfilmentRefused"
    command_id: UUID
    shopify_order_id: Id
    despatch_id: Code
    user_errors: Annotated[tuple[Text, ...], Field(max_length=50)]  # "<field>: <message>"
    occurred_at: datetime


class FulfilmentTrackingUpdated(_Frozen):
    message_type: Literal["FulfilmentTrackingUpdated"] = "FulfilmentTrackingUpdated"
    command_id: UUID
    shopify_order_id: Id
    despatch_id: Code
    fulfilment_id: Code
    occurred_at: datetime


class FulfilmentTrackingRefused(_Frozen):
    message_type: Literal["FulfilmentTrackingRefused"] = "FulfilmentTrackingRefused"
    command_id: UUID
    shopify_order_id: Id
    despatch_id: Code
    user_errors: Annotated[tuple[Text, ...], Field(max_length=50)]
    occurred_at: datetime


FulfilmentOutcome = Annotated[
    FulfilmentCreated | FulfilmentRefused | FulfilmentTrackingUpdated | FulfilmentTrackingRefused,
    Field(discriminator="message_type"),
]
