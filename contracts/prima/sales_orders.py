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


class PrimaSalesOrderCreated(_Frozen):
    """Prima created the sales order (or, to a repeat of the command, answered with it; or
    already held the order's sales order, which the gateway adopted)."""

    message_type: Literal["PrimaSalesOrderCreated"] = "PrimaSalesOrderCreated"
    command_id: UUID
    shopify_order_id: int
    sales_order_number: str
    status: str
    replayed: bool = False  # Prima answered from its idempotency record
    # Prima answered 409 duplicate_external_reference (an earlier attempt, whose answer was
    # lost, created it): the gateway looked the sales order up by external reference
    adopted: bool = False
    occurred_at: datetime


class PrimaSalesOrderRejected(_Frozen):
    """Prima refused the command (4xx): retrying the same command cannot help."""

    message_type: Literal["PrimaSalesOrderRejected"] = "PrimaSalesOrderRejected"
    command_id: UUID
    shopify_order_id: int
    status_code: int
    code: str
    reason: str
    occurred_at: datetime


class PrimaSalesOrderParked(_Frozen):
    """The gateway gave up after its retries (Prima unavailable) and parked the command."""

    message_type: Literal["PrimaSalesOrderParked"] = "PrimaSalesOrderParked"
    command_id: UUID
    shopify_order_id: int
    attempts: int
    reason: str
    occurred_at: datetime


PrimaOutcome = Annotated[
    PrimaSalesOrderCreated | PrimaSalesOrderRejected | PrimaSalesOrderParked, Field(discriminator="message_type")
]

__all__ = [
    "CreateSalesOrder",
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
