"""Commands to Prima and Prima's outcomes, as they travel on Kafka.

The sales order body mirrors `POST /v1/sales-orders` of contracts/prima-openapi.yaml, so the
gateway sends `CreateSalesOrder.sales_order` as it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Amount


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class SalesOrderLine(_Frozen):
    line_number: int
    item_id: str
    sku: str
    description: str
    quantity: int = Field(gt=0)
    unit_price: Amount
    discount_amount: Amount
    tax_amount: Amount
    net_amount: Amount  # quantity * unit_price - discount_amount (tax-inclusive if the order is)


class SalesOrderShipping(_Frozen):
    description: str
    amount: Amount
    discount_amount: Amount
    tax_amount: Amount


class SalesOrderTotals(_Frozen):
    lines_net: Amount
    shipping_net: Amount
    tax: Amount
    total: Amount


class SalesOrderDraft(_Frozen):
    external_reference: str  # the Shopify order id
    order_name: str
    currency: str
    taxes_included: bool
    order_date: datetime
    customer_email: str | None = None
    lines: tuple[SalesOrderLine, ...]
    shipping: SalesOrderShipping | None = None
    totals: SalesOrderTotals


class CreateSalesOrder(_Frozen):
    message_type: Literal["CreateSalesOrder"] = "CreateSalesOrder"
    command_id: UUID
    idempotency_key: str  # derived from command_id: the same command never makes two orders
    shopify_order_id: int
    issued_at: datetime
    sales_order: SalesOrderDraft


PrimaCommand = Annotated[CreateSalesOrder, Field(discriminator="message_type")]


class SalesOrderCreated(_Frozen):
    message_type: Literal["SalesOrderCreated"] = "SalesOrderCreated"
    command_id: UUID
    shopify_order_id: int
    sales_order_number: str
    status: str
    replayed: bool = False  # Prima answered from its idempotency record
    occurred_at: datetime


class SalesOrderRejected(_Frozen):
    """Prima refused the command (4xx): retrying the same command cannot help."""

    message_type: Literal["SalesOrderRejected"] = "SalesOrderRejected"
    command_id: UUID
    shopify_order_id: int
    status_code: int
    code: str
    reason: str
    occurred_at: datetime


class SalesOrderFailed(_Frozen):
    """The gateway gave up after its retries and parked the command as an exception."""

    message_type: Literal["SalesOrderFailed"] = "SalesOrderFailed"
    command_id: UUID
    shopify_order_id: int
    attempts: int
    reason: str
    occurred_at: datetime


PrimaOutcome = Annotated[
    SalesOrderCreated | SalesOrderRejected | SalesOrderFailed, Field(discriminator="message_type")
]

__all__ = [
    "CreateSalesOrder",
    "PrimaCommand",
    "PrimaOutcome",
    "SalesOrderCreated",
    "SalesOrderDraft",
    "SalesOrderFailed",
    "SalesOrderLine",
    "SalesOrderRejected",
    "SalesOrderShipping",
    "SalesOrderTotals",
]
