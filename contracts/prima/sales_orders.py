"""Commands to Prima and what Prima answered, as they travel on Kafka (prima.commands.v1 and
prima.outcomes.v1).

The sales order body mirrors `POST /v1/sales-orders` of contracts/prima/openapi.yaml, so the
gateway sends `CreateSalesOrder.sales_order` as it is. Outcome names say they are Prima's side
(PrimaSalesOrderCreated): the Order aggregate records them as its own events (SalesOrderCreated).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Amount
from contracts.prima.credit_memos import CreateCreditMemo, PrimaCreditMemoCreated
from contracts.validation import Code, Count, CurrencyCode, Email, Id, Lines, PositiveQuantity, Reason, Text


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class SalesOrderLineBundle(_Frozen):
    """The bundle (a Prima kit) a component line was expanded from (domain/orders/bundles.py):
    the warehouse picks the components; the despatch is fulfilled in Shopify as the bundle."""

    item_id: Code  # the kit's Prima item
    sku: Code  # the kit's SKU: the Shopify line's SKU
    units_per_bundle: PositiveQuantity  # this component's units in one bundle


class SalesOrderLine(_Frozen):
    line_number: Id
    item_id: Code | None  # None on an account line
    sku: Code | None
    description: Text
    quantity: PositiveQuantity
    unit_price: Amount
    discount_amount: Amount
    tax_amount: Amount
    net_amount: Amount  # quantity * unit_price - discount_amount (tax-inclusive if the order is)
    kind: Literal["item", "account"] = "item"  # account: no item, booked to `account` (a gift card sold)
    account: Code | None = None
    external_line_id: Id | None = None  # the Shopify order line
    bundle: SalesOrderLineBundle | None = None  # a component of a bundle line


class SalesOrderShipping(_Frozen):
    description: Text
    amount: Amount
    discount_amount: Amount
    tax_amount: Amount


class SalesOrderTotals(_Frozen):
    lines_net: Amount
    shipping_net: Amount
    tax: Amount
    total: Amount


class ShipTo(_Frozen):
    """The delivery address."""

    name: Text | None = None
    company: Text | None = None
    address1: Text | None = None
    address2: Text | None = None
    city: Text | None = None
    province_code: Code | None = None
    zip: Code | None = None
    country_code: Code | None = None
    phone: Code | None = None


class SalesOrderPayment(_Frozen):
    """How the order was paid (domain/orders/sales_order.py `payments_of`). Prima's OM link
    records it on the order (OrderPaymentData); the REST contract carries none, so the REST
    adapter leaves it out of the body."""

    gateway: Code  # Shopify's payment gateway name
    amount: Amount
    transaction_id: Code | None = None


class SalesOrderDraft(_Frozen):
    external_reference: Code  # the Shopify order id
    order_name: Code
    currency: CurrencyCode
    taxes_included: bool
    order_date: datetime
    customer_email: Email | None = None
    lines: Lines(SalesOrderLine)
    shipping: SalesOrderShipping | None = None
    totals: SalesOrderTotals
    ship_to: ShipTo | None = None
    payments: Lines(SalesOrderPayment) = ()


class CreateSalesOrder(_Frozen):
    message_type: Literal["CreateSalesOrder"] = "CreateSalesOrder"
    command_id: UUID
    idempotency_key: Code  # derived from command_id: the same command never makes two orders
    shopify_order_id: Id
    issued_at: datetime
    sales_order: SalesOrderDraft


class AmendSalesOrder(_Frozen):
    """Make the sales order the order as it stands, only while its status is one of
    `amendable_statuses` (before the warehouse cut-off): Prima refuses it otherwise (409
    status_conflict), and changes nothing."""

    message_type: Literal["AmendSalesOrder"] = "AmendSalesOrder"
    command_id: UUID
    idempotency_key: Code
    shopify_order_id: Id
    sales_order_number: Code
    issued_at: datetime
    sales_order: SalesOrderDraft
    amendable_statuses: tuple[Code, ...]
    changes: tuple[Reason, ...] = ()  # what changed, in words


class CancelSalesOrder(_Frozen):
    message_type: Literal["CancelSalesOrder"] = "CancelSalesOrder"
    command_id: UUID
    idempotency_key: Code
    shopify_order_id: Id
    sales_order_number: Code
    issued_at: datetime
    reason: Text
    cancellable_statuses: tuple[Code, ...]


PrimaCommand = Annotated[CreateSalesOrder | AmendSalesOrder | CancelSalesOrder | CreateCreditMemo,
                         Field(discriminator="message_type")]


class PrimaSalesOrderCreated(_Frozen):
    """Prima created the sales order (or, to a repeat of the command, answered with it; or
    already held the order's sales order, which the gateway adopted)."""

    message_type: Literal["PrimaSalesOrderCreated"] = "PrimaSalesOrderCreated"
    command_id: UUID
    shopify_order_id: Id
    sales_order_number: Code
    status: Code
    replayed: bool = False  # Prima answered from its idempotency record
    # Prima answered 409 duplicate_external_reference (an earlier attempt, whose answer was
    # lost, created it): the gateway looked the sales order up by external reference
    adopted: bool = False
    occurred_at: datetime


class PrimaSalesOrderRejected(_Frozen):
    """Prima refused the command (4xx): retrying the same command cannot help."""

    message_type: Literal["PrimaSalesOrderRejected"] = "PrimaSalesOrderRejected"
    command_id: UUID
    # which command: create_sales_order, amend_sales_order, cancel_sales_order, create_credit_memo
    operation: Code = "create_sales_order"
    shopify_order_id: Id
    status_code: int
    code: Reason
    reason: Reason
    occurred_at: datetime


class PrimaSalesOrderParked(_Frozen):
    """The gateway gave up after its retries (Prima unavailable) and parked the command."""

    message_type: Literal["PrimaSalesOrderParked"] = "PrimaSalesOrderParked"
    command_id: UUID
    # which command: create_sales_order, amend_sales_order, cancel_sales_order, create_credit_memo
    operation: Code = "create_sales_order"
    shopify_order_id: Id
    attempts: Count
    reason: Reason
    occurred_at: datetime


class PrimaSalesOrderAmended(_Frozen):
    message_type: Literal["PrimaSalesOrderAmended"] = "PrimaSalesOrderAmended"
    command_id: UUID
    shopify_order_id: Id
    sales_order_number: Code
    status: Code
    replayed: bool = False
    occurred_at: datetime


class PrimaSalesOrderCancelled(_Frozen):
    message_type: Literal["PrimaSalesOrderCancelled"] = "PrimaSalesOrderCancelled"
    command_id: UUID
    shopify_order_id: Id
    sales_order_number: Code
    status: Code
    replayed: bool = False
    occurred_at: datetime


class PrimaSalesOrderChangeRefused(_Frozen):
    """Prima refused an amendment or cancellation: the sales order's status (here) was not one
    the command allowed (the warehouse has it: the cut-off)."""

    message_type: Literal["PrimaSalesOrderChangeRefused"] = "PrimaSalesOrderChangeRefused"
    command_id: UUID
    shopify_order_id: Id
    sales_order_number: Code
    status: Code
    reason: Reason
    occurred_at: datetime


PrimaOutcome = Annotated[
    PrimaSalesOrderCreated | PrimaSalesOrderRejected | PrimaSalesOrderParked | PrimaSalesOrderAmended
    | PrimaSalesOrderCancelled | PrimaSalesOrderChangeRefused | PrimaCreditMemoCreated,
    Field(discriminator="message_type"),
]

__all__ = [
    "AmendSalesOrder",
    "CancelSalesOrder",
    "CreateCreditMemo",
    "CreateSalesOrder",
    "PrimaCreditMemoCreated",
    "PrimaSalesOrderAmended",
    "PrimaSalesOrderCancelled",
    "PrimaSalesOrderChangeRefused",
    "ShipTo",
    "PrimaCommand",
    "PrimaOutcome",
    "PrimaSalesOrderCreated",
    "PrimaSalesOrderParked",
    "PrimaSalesOrderRejected",
    "SalesOrderDraft",
    "SalesOrderLine",
    "SalesOrderShipping",
    "SalesOrderTotals",
]
