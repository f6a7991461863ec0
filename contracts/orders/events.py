"""Domain events of the Order aggregate, as published on `shopify-prima.order-events.v1`.

Every message has the same envelope; `event_type` says which fields follow. Events of one
order share a key (the Shopify order id) and arrive in the order they were recorded.
`event_id` is stable: a message relayed twice has the same id, so consumers can dedupe on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.prima.sales_orders import CreateSalesOrder
from contracts.shopify.orders import ShopifyOrder


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_type: Literal["OrderEvent"] = "OrderEvent"
    event_id: UUID
    shopify_order_id: int
    aggregate_id: UUID
    aggregate_version: int
    timestamp: datetime
    notification_id: int  # position in the event store's notification log


class OrderReceived(_Event):
    event_type: Literal["OrderReceived"] = "OrderReceived"
    order_name: str
    webhook_id: str
    webhook_topic: str
    received_at: datetime
    order: ShopifyOrder


class OrderUpdated(_Event):
    event_type: Literal["OrderUpdated"] = "OrderUpdated"
    webhook_id: str
    webhook_topic: str
    received_at: datetime
    order: ShopifyOrder


class OrderAwaitingPayment(_Event):
    event_type: Literal["OrderAwaitingPayment"] = "OrderAwaitingPayment"
    financial_status: str | None


class OrderQuarantined(_Event):
    event_type: Literal["OrderQuarantined"] = "OrderQuarantined"
    reason: Literal["unmapped_sku", "totals_mismatch"]
    detail: str
    unmapped_skus: list[str]


class SalesOrderRequested(_Event):
    event_type: Literal["SalesOrderRequested"] = "SalesOrderRequested"
    command: CreateSalesOrder


class SalesOrderCreated(_Event):
    event_type: Literal["SalesOrderCreated"] = "SalesOrderCreated"
    command_id: UUID
    sales_order_number: str
    status: str
    occurred_at: datetime


class SalesOrderRejected(_Event):
    event_type: Literal["SalesOrderRejected"] = "SalesOrderRejected"
    command_id: UUID
    status_code: int
    code: str
    reason: str


class SalesOrderParked(_Event):
    """The Prima gateway gave up on the command after its retries and parked it."""

    event_type: Literal["SalesOrderParked"] = "SalesOrderParked"
    command_id: UUID
    attempts: int
    reason: str


class OrderReleased(_Event):
    event_type: Literal["OrderReleased"] = "OrderReleased"
    released_by: str
    previous_state: str


OrderEvent = Annotated[
    OrderReceived | OrderUpdated | OrderAwaitingPayment | OrderQuarantined | SalesOrderRequested
    | SalesOrderCreated | SalesOrderRejected | SalesOrderParked | OrderReleased,
    Field(discriminator="event_type"),
]
