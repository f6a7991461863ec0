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


class LineKind:
    """What a Shopify line is (domain/orders/lines.py maps each kind)."""

    PRODUCT = "product"  # a product variant: its SKU is a Prima item
    TIP = "tip"  # a tip to the merchant (REST tip_payment_gateway, GraphQL TipSale)
    GIFT_CARD = "gift_card"  # a gift card sold: a liability, not revenue
    CUSTOM = "custom"  # a custom line: no product, no variant (often no SKU)
    ALL = ("product", "tip", "gift_card", "custom")


@dataclass(frozen=True)
class OrderLine:
    line_id: int
    sku: str | None
    title: str
    variant_id: int | None
    quantity: int  # as ordered: an edit keeps a removed line with its original quantity
    unit_price: Money
    discount: Money  # the sum of the line's discount allocations
    tax_lines: tuple[TaxLine, ...] = ()
    # what is left after edits and refunds (Shopify's current_quantity); None: not stated (= quantity)
    current_quantity: int | None = None
    kind: str = LineKind.PRODUCT
    # the line's total after discounts as Shopify states it, where it does (price x quantity - discount)
    discounted_total: Money | None = None


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
    gateway: str | None = None  # "gift_card": a gift card used to pay (a tender, not a discount)


@dataclass(frozen=True)
class Address:
    """Where the order is shipped (the sales order's delivery address)."""

    name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province_code: str | None = None
    zip: str | None = None
    country_code: str | None = None
    phone: str | None = None


# ---------------------------------------------------------------------- a refund, as Shopify states it


class RestockType:
    NO_RESTOCK = "no_restock"
    CANCEL = "cancel"  # unfulfilled units restocked
    RETURN = "return"  # fulfilled units returned
    LEGACY_RESTOCK = "legacy_restock"
    ALL = ("no_restock", "cancel", "return", "legacy_restock")
    RESTOCKED = ("cancel", "return", "legacy_restock")


@dataclass(frozen=True)
class RefundLine:
    refund_line_id: int | None
    line_id: int  # the order line refunded
    quantity: int
    subtotal: Money  # as Shopify states it (after discounts; tax inside when the order's taxes are included)
    tax: Money
    restock_type: str


@dataclass(frozen=True)
class RefundShipping:
    shipping_line_id: int | None
    amount: Money
    tax: Money


@dataclass(frozen=True)
class OrderAdjustment:
    """Shopify's order adjustment of a refund, signed as Shopify states it (a shipping refund is
    negative: it lowers the order); kind "shipping_refund" or "refund_discrepancy"."""

    adjustment_id: int | None
    kind: str
    reason: str | None
    amount: Money
    tax: Money


@dataclass(frozen=True)
class Refund:
    refund_id: int
    shopify_order_id: int
    created_at: datetime
    note: str | None
    lines: tuple[RefundLine, ...] = ()
    shipping: tuple[RefundShipping, ...] = ()
    adjustments: tuple[OrderAdjustment, ...] = ()
    transactions: tuple[PaymentTransaction, ...] = ()


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
    payment_gateways: tuple[str, ...] = ()  # Shopify's payment_gateway_names, in its order
    # the order as it stands after edits and refunds (REST current_*; None: not stated)
    current_subtotal_price: Money | None = None
    current_total_tax: Money | None = None
    current_total_price: Money | None = None
    shipping_address: Address | None = None
    cancel_reason: str | None = None
    refunds: tuple[Refund, ...] = ()  # the refunds the order body lists


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


@dataclass(frozen=True)
class SalesOrderAmendedByPrima:
    command_id: UUID
    shopify_order_id: int
    sales_order_number: str
    status: str
    occurred_at: datetime


@dataclass(frozen=True)
class SalesOrderCancelledByPrima:
    command_id: UUID
    shopify_order_id: int
    sales_order_number: str
    status: str
    occurred_at: datetime


@dataclass(frozen=True)
class SalesOrderChangeRefusedByPrima:
    """Prima refused an amendment or cancellation because the sales order's status is past what
    the command allowed (the warehouse has it): the cut-off, as Prima saw it."""

    command_id: UUID
    shopify_order_id: int
    sales_order_number: str
    status: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class CreditMemoCreatedByPrima:
    command_id: UUID
    shopify_order_id: int
    refund_id: int
    credit_memo_number: str
    total: Decimal
    occurred_at: datetime


PrimaOutcome = (SalesOrderCreatedByPrima | SalesOrderRejectedByPrima | SalesOrderParkedByGateway
                | SalesOrderAmendedByPrima | SalesOrderCancelledByPrima | SalesOrderChangeRefusedByPrima
                | CreditMemoCreatedByPrima)


@dataclass(frozen=True)
class RefundDelivery:
    """One accepted refunds/create delivery."""

    webhook_id: str
    topic: str
    received_at: datetime
    refund: Refund

    @property
    def shopify_order_id(self) -> int:
        return self.refund.shopify_order_id


@dataclass(frozen=True)
class OrderEditNoticed:
    """An orders/edited delivery: what an edit changed, line by line (Shopify's order_edit body
    names the lines and the units added or removed; the order as it stands follows in
    orders/updated). Kept in the order's timeline; the decision waits for the order itself."""

    webhook_id: str
    received_at: datetime
    shopify_order_id: int
    edit_id: int
    edited_at: datetime | None
    added: tuple[tuple[int, int], ...] = ()  # (line id, units)
    removed: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class ReleaseRequested:
    """An operator asked for a quarantined or failed order to be decided again; or, with
    `only_if_mapped`, the decider's sweep found that the SKUs an order was quarantined for now
    exist in Prima (released only if every line maps now)."""

    shopify_order_id: int
    released_by: str
    requested_at: datetime
    only_if_mapped: bool = False


@dataclass(frozen=True)
class ChangeResolutionRequested:
    """An operator says a change held at the cut-off was dealt with by hand in Prima: the
    integration takes the order as it stands now as what Prima holds."""

    shopify_order_id: int
    resolved_by: str
    note: str
    requested_at: datetime


OrderFact = (OrderDelivery | RefundDelivery | OrderEditNoticed | PrimaOutcome | ReleaseRequested
             | ChangeResolutionRequested)


def shopify_order_id_of(fact: OrderFact) -> int:
    return fact.order.shopify_order_id if isinstance(fact, OrderDelivery) else fact.shopify_order_id


# ------------------------------------------------------------------------ what Prima is asked for


class SalesOrderLineKind:
    ITEM = "item"  # a Prima item (stock, kit or non-stock item)
    ACCOUNT = "account"  # no item: posted to a ledger account (a gift card sold, say)


@dataclass(frozen=True)
class SalesOrderLine:
    line_number: int
    item_id: str | None  # None on an account line
    sku: str | None
    description: str
    quantity: int
    unit_price: Decimal
    discount_amount: Decimal
    tax_amount: Decimal
    net_amount: Decimal  # quantity x unit_price - discount_amount (tax-inclusive if the order is)
    kind: str = SalesOrderLineKind.ITEM
    account: str | None = None
    line_id: int | None = None  # the Shopify line it stands for
    # a component of a bundle line (domain/orders/bundles.py): the kit's item and SKU, and the
    # component's units in one bundle (None: not a component; every line recorded before bundles)
    bundle_item_id: str | None = None
    bundle_sku: str | None = None
    units_per_bundle: int | None = None


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
class SalesOrderPayment:
    """How the order was paid (domain/orders/sales_order.py `payments_of`): Prima's OM link sends
    it as OrderPaymentData (the gateway becomes a pay method there); the REST contract has none."""

    gateway: str  # Shopify's gateway name: shopify_payments, paypal, gift_card, manual, ...
    amount: Decimal
    transaction_id: str | None = None  # Shopify's transaction, where the delivery carried it


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
    ship_to: Address | None = None
    payments: tuple[SalesOrderPayment, ...] = ()


@dataclass(frozen=True)
class SalesOrderRequest:
    """The command: create this sales order, once (the idempotency key is derived from the id)."""

    command_id: UUID
    idempotency_key: str
    shopify_order_id: int
    issued_at: datetime
    sales_order: SalesOrder


@dataclass(frozen=True)
class SalesOrderAmendment:
    """The command: make the sales order this (the order as it stands), only while its status is
    one of `amendable_statuses` (before the cut-off); Prima refuses it otherwise."""

    command_id: UUID
    idempotency_key: str
    shopify_order_id: int
    sales_order_number: str
    issued_at: datetime
    sales_order: SalesOrder
    amendable_statuses: tuple[str, ...]
    changes: tuple[str, ...]  # what changed, in words (domain/orders/changes.py)


@dataclass(frozen=True)
class SalesOrderCancellation:
    command_id: UUID
    idempotency_key: str
    shopify_order_id: int
    sales_order_number: str
    issued_at: datetime
    reason: str
    cancellable_statuses: tuple[str, ...]


SalesOrderChange = SalesOrderAmendment | SalesOrderCancellation


@dataclass(frozen=True)
class CreditMemoLine:
    line_number: int
    kind: str  # SalesOrderLineKind
    item_id: str | None
    sku: str | None
    account: str | None
    description: str
    quantity: int
    amount: Decimal  # as Shopify states the refunded subtotal (tax inside when the order's taxes are included)
    tax_amount: Decimal
    restock_type: str | None  # Shopify's; None on an amount-only (goodwill) line
    returned: bool  # the units come back to stock
    line_id: int | None = None


@dataclass(frozen=True)
class CreditMemoShipping:
    description: str
    amount: Decimal
    tax_amount: Decimal


@dataclass(frozen=True)
class CreditMemoAdjustment:
    kind: str  # Shopify's order adjustment kind (refund_discrepancy, ...)
    description: str
    amount: Decimal  # what it adds to the memo (signed)
    tax_amount: Decimal


@dataclass(frozen=True)
class CreditMemoTotals:
    lines: Decimal
    shipping: Decimal
    adjustments: Decimal
    tax: Decimal
    total: Decimal  # what is credited: equals the refund's transactions


@dataclass(frozen=True)
class CreditMemo:
    sales_order_number: str
    external_reference: str  # the Shopify refund id
    currency: str
    taxes_included: bool
    memo_date: datetime
    reason: str | None
    lines: tuple[CreditMemoLine, ...]
    shipping: CreditMemoShipping | None
    adjustments: tuple[CreditMemoAdjustment, ...]
    totals: CreditMemoTotals


@dataclass(frozen=True)
class CreditMemoRequest:
    """The command: one credit memo per Shopify refund (the idempotency key is the refund's)."""

    command_id: UUID
    idempotency_key: str
    shopify_order_id: int
    refund_id: int
    issued_at: datetime
    credit_memo: CreditMemo


VALUE_TYPES: tuple[type, ...] = (
    Money, TaxLine, OrderLine, ShippingLine, PaymentTransaction, OrderSnapshot,
    SalesOrderLine, SalesOrderShipping, SalesOrderTotals, SalesOrderPayment, SalesOrder, SalesOrderRequest,
    Address, RefundLine, RefundShipping, OrderAdjustment, Refund, SalesOrderAmendment, SalesOrderCancellation,
    CreditMemoLine, CreditMemoShipping, CreditMemoAdjustment, CreditMemoTotals, CreditMemo, CreditMemoRequest,
)
