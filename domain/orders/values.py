"""The order flow's own value types: what the Order aggregate decides on and records.

They mirror what Shopify states (an order as it stood at one moment) and what Prima is asked
for (a sales order), but they are the domain's: the services translate the wire contracts into
them at the edge (services/orders/translate.py), so the event store never holds a wire model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from domain.shared.money import Money

# ------------------------------------------------------------------ the order as Shopify states it


@dataclass(frozen=True)
class TaxLine:
    title: str
    rate: Decimal | None
    amount: Money


@dataclass(frozen=True)
class OrderLine:
    line_id: int
    sku: str | None
    title: str
    variant_id: int | None
    quantity: int
    unit_price: Money
    discount: Money  # the sum of the line's discount allocations
    tax_lines: tuple[TaxLine, ...] = ()


@dataclass(frozen=True)
class ShippingLine:
    line_id: int | None
    title: str
    code: str | None
    price: Money
    discount: Money
    tax_lines: tuple[TaxLine, ...] = ()


@dataclass(frozen=True)
class PaymentTransaction:
    transaction_id: int | None
    kind: str  # authorization, capture, sale, void, refund
    status: str  # success, pending, failure, error
    amount: Money | None = None


@dataclass(frozen=True)
class OrderSnapshot:
    """A Shopify order as one delivery stated it, in the shop's currency."""

    shopify_order_id: int
    name: str
    order_number: int | None
    email: str | None
    currency: str
    presentment_currency: str | None
    taxes_included: bool
    financial_status: str | None
    test: bool
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    cancelled_at: datetime | None
    subtotal_price: Money
    total_discounts: Money
    total_tax: Money
    total_price: Money
    lines: tuple[OrderLine, ...]
    shipping_lines: tuple[ShippingLine, ...] = ()
    transactions: tuple[PaymentTransaction, ...] = ()


# --------------------------------------------------------------------- the facts the order takes


@dataclass(frozen=True)
class OrderDelivery:
    """One accepted webhook delivery (or a reconciler's read) of an order."""

    webhook_id: str
    topic: str
    received_at: datetime
    order: OrderSnapshot


@dataclass(frozen=True)
class SalesOrderCreatedByPrima:
    command_id: UUID
    shopify_order_id: int
    sales_order_number: str
    status: str
    occurred_at: datetime


@dataclass(frozen=True)
class SalesOrderRejectedByPrima:
    command_id: UUID
    shopify_order_id: int
    status_code: int
    code: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class SalesOrderParkedByGateway:
    command_id: UUID
    shopify_order_id: int
    attempts: int
    reason: str
    occurred_at: datetime


PrimaOutcome = SalesOrderCreatedByPrima | SalesOrderRejectedByPrima | SalesOrderParkedByGateway


@dataclass(frozen=True)
class ReleaseRequested:
    """An operator asked for a quarantined or failed order to be decided again; or, with
    `only_if_mapped`, the decider's sweep found that the SKUs an order was quarantined for now
    exist in Prima (released only if every line maps now)."""

    shopify_order_id: int
    released_by: str
    requested_at: datetime
    only_if_mapped: bool = False


OrderFact = OrderDelivery | PrimaOutcome | ReleaseRequested


def shopify_order_id_of(fact: OrderFact) -> int:
    return fact.order.shopify_order_id if isinstance(fact, OrderDelivery) else fact.shopify_order_id


# ------------------------------------------------------------------------ what Prima is asked for


@dataclass(frozen=True)
class SalesOrderLine:
    line_number: int
    item_id: str
    sku: str
    description: str
    quantity: int
    unit_price: Decimal
    discount_amount: Decimal
    tax_amount: Decimal
    net_amount: Decimal  # quantity x unit_price - discount_amount (tax-inclusive if the order is)


@dataclass(frozen=True)
class SalesOrderShipping:
    description: str
    amount: Decimal
    discount_amount: Decimal
    tax_amount: Decimal


@dataclass(frozen=True)
class SalesOrderTotals:
    lines_net: Decimal
    shipping_net: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True)
class SalesOrder:
    external_reference: str  # the Shopify order id
    order_name: str
    currency: str
    taxes_included: bool
    order_date: datetime
    customer_email: str | None
    lines: tuple[SalesOrderLine, ...]
    shipping: SalesOrderShipping | None
    totals: SalesOrderTotals


@dataclass(frozen=True)
class SalesOrderRequest:
    """The command: create this sales order, once (the idempotency key is derived from the id)."""

    command_id: UUID
    idempotency_key: str
    shopify_order_id: int
    issued_at: datetime
    sales_order: SalesOrder


VALUE_TYPES: tuple[type, ...] = (
    Money, TaxLine, OrderLine, ShippingLine, PaymentTransaction, OrderSnapshot,
    SalesOrderLine, SalesOrderShipping, SalesOrderTotals, SalesOrder, SalesOrderRequest,
)
