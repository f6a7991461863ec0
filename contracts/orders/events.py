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

from contracts.prima.credit_memos import CreateCreditMemo
from contracts.prima.sales_orders import (
    AmendSalesOrder,
    CancelSalesOrder,
    CreateSalesOrder,
    SalesOrderDraft,
)
from contracts.shopify.orders import ShopifyOrder
from contracts.shopify.refunds import ShopifyRefund
from contracts.validation import Amount, Code, Id


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_type: Literal["OrderEvent"] = "OrderEvent"
    event_id: UUID
    shopify_order_id: Id
    aggregate_id: UUID
    aggregate_version: int
    timestamp: datetime
    notification_id: int  # position in the event store's notification log


class OrderReceived(_Event):
    event_type: Literal["OrderReceived"] = "OrderReceived"
    order_name: Code
    webhook_id: Code
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
    reason: Literal["unmapped_sku", "unmapped_line", "totals_mismatch", "amount_precision", "line_figures",
                    "order_without_lines"]
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


# -- the order lifecycle (issue 9): edits, cancellations, the cut-off, refunds to credit memos


class OrderOpenedByRefund(_Event):
    """A refund arrived before any delivery of its order: kept until the order comes."""

    event_type: Literal["OrderOpenedByRefund"] = "OrderOpenedByRefund"
    received_at: datetime


class OrderEditNoticed(_Event):
    """Shopify's orders/edited: the lines and units an edit added or removed (the order as it
    stands follows in orders/updated)."""

    event_type: Literal["OrderEditNoticed"] = "OrderEditNoticed"
    webhook_id: Code
    received_at: datetime
    edit_id: Id
    edited_at: datetime | None
    added: list[str]
    removed: list[str]


class RefundReceived(_Event):
    """A Shopify refund (from refunds/create, or listed in an order body); webhook_id is empty
    for one found in an order body."""

    event_type: Literal["RefundReceived"] = "RefundReceived"
    webhook_id: str
    webhook_topic: str
    received_at: datetime
    refund: ShopifyRefund


class OrderCancelledBeforePrima(_Event):
    event_type: Literal["OrderCancelledBeforePrima"] = "OrderCancelledBeforePrima"
    reason: str | None
    cancelled_at: datetime | None


class SalesOrderAmendmentRequested(_Event):
    event_type: Literal["SalesOrderAmendmentRequested"] = "SalesOrderAmendmentRequested"
    command: AmendSalesOrder


class SalesOrderAmended(_Event):
    event_type: Literal["SalesOrderAmended"] = "SalesOrderAmended"
    command_id: UUID
    sales_order_number: Code
    status: Code
    occurred_at: datetime


class SalesOrderCancellationRequested(_Event):
    event_type: Literal["SalesOrderCancellationRequested"] = "SalesOrderCancellationRequested"
    command: CancelSalesOrder


class SalesOrderCancelled(_Event):
    event_type: Literal["SalesOrderCancelled"] = "SalesOrderCancelled"
    command_id: UUID
    sales_order_number: Code
    status: Code
    occurred_at: datetime


class SalesOrderChangeRefused(_Event):
    """Prima refused an amendment or cancellation: its status was past the cut-off."""

    event_type: Literal["SalesOrderChangeRefused"] = "SalesOrderChangeRefused"
    command_id: UUID
    change: Literal["amend", "cancel"]
    status: Code
    reason: str


class SalesOrderChangeRejected(_Event):
    event_type: Literal["SalesOrderChangeRejected"] = "SalesOrderChangeRejected"
    command_id: UUID
    change: Literal["amend", "cancel"]
    status_code: int
    code: str
    reason: str


class SalesOrderChangeParked(_Event):
    event_type: Literal["SalesOrderChangeParked"] = "SalesOrderChangeParked"
    command_id: UUID
    change: Literal["amend", "cancel"]
    attempts: int
    reason: str


class ChangeHeldAtCutoff(_Event):
    """Shopify changed or cancelled the order after the warehouse cut-off: the difference
    (Shopify now vs Prima) for a person to act on."""

    event_type: Literal["ChangeHeldAtCutoff"] = "ChangeHeldAtCutoff"
    change: Literal["amend", "cancel"]
    differences: list[str]
    prima_status: str | None
    reason: str
    shopify_now: str
    prima_has: str
    deadline: datetime | None


class ChangeNoLongerNeeded(_Event):
    event_type: Literal["ChangeNoLongerNeeded"] = "ChangeNoLongerNeeded"
    reason: str


class SalesOrderUnchanged(_Event):
    """An update of the order changed nothing the sales order carries."""

    event_type: Literal["SalesOrderUnchanged"] = "SalesOrderUnchanged"
    reason: str


class ChangeResolvedByHand(_Event):
    event_type: Literal["ChangeResolvedByHand"] = "ChangeResolvedByHand"
    resolved_by: str
    note: str
    change: Literal["amend", "cancel"]
    sales_order: SalesOrderDraft | None


class CreditMemoRequested(_Event):
    event_type: Literal["CreditMemoRequested"] = "CreditMemoRequested"
    command: CreateCreditMemo


class CreditMemoCreated(_Event):
    event_type: Literal["CreditMemoCreated"] = "CreditMemoCreated"
    command_id: UUID
    refund_id: Id
    credit_memo_number: Code
    total: Amount
    occurred_at: datetime


class CreditMemoHeld(_Event):
    """The refund's credit memo does not add up, or a line maps nowhere: not sent."""

    event_type: Literal["CreditMemoHeld"] = "CreditMemoHeld"
    refund_id: Id
    kind: Literal["credit_memo_mismatch", "credit_memo_unmapped"]
    detail: str


class CreditMemoRejected(_Event):
    event_type: Literal["CreditMemoRejected"] = "CreditMemoRejected"
    command_id: UUID
    refund_id: Id
    status_code: int
    code: str
    reason: str


class CreditMemoParked(_Event):
    event_type: Literal["CreditMemoParked"] = "CreditMemoParked"
    command_id: UUID
    refund_id: Id
    attempts: int
    reason: str


class CreditMemoNotNeeded(_Event):
    event_type: Literal["CreditMemoNotNeeded"] = "CreditMemoNotNeeded"
    refund_id: Id
    reason: str


OrderEvent = Annotated[
    OrderReceived | OrderUpdated | OrderAwaitingPayment | OrderQuarantined | SalesOrderRequested
    | SalesOrderCreated | SalesOrderRejected | SalesOrderParked | OrderReleased
    | OrderOpenedByRefund | OrderEditNoticed | RefundReceived | OrderCancelledBeforePrima
    | SalesOrderAmendmentRequested | SalesOrderAmended | SalesOrderCancellationRequested | SalesOrderCancelled
    | SalesOrderChangeRefused | SalesOrderChangeRejected | SalesOrderChangeParked | ChangeHeldAtCutoff
    | ChangeNoLongerNeeded | SalesOrderUnchanged | ChangeResolvedByHand | CreditMemoRequested | CreditMemoCreated
    | CreditMemoHeld | CreditMemoRejected | CreditMemoParked | CreditMemoNotNeeded,
    Field(discriminator="event_type"),
]
