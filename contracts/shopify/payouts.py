"""Shopify Payments payouts and their balance transactions, as the payout ingest read them from the
Admin GraphQL API (shopifyPaymentsAccount { payouts, balanceTransactions }) and publishes them on
shopify.payouts.v1 (key: the payout id).

One read of a payout is its transactions in pages (ShopifyPayoutTransactionsRead, at most
PAGE_MAX each, so a message of a payout of 10,000 transactions stays far under Kafka's message
limit), then the payout itself (ShopifyPayoutObserved) with how many transactions the read listed
and a digest of their ids: the Payout aggregate decides on exactly those. The read's messages
share its `read_id` and its key, so they arrive in order.

Amounts are Shopify's MoneyV2 in the payout's currency, signed as Shopify states them (into the
balance positive; a fee charged positive). `type` is the ShopifyPaymentsTransactionType value and
`status` the ShopifyPaymentsPayoutStatus value as sent: kept as text, so a value Shopify adds
later still travels, and the aggregate holds the payout on it instead of the message failing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Money
from contracts.validation import Code, Count, Id, Text

PAGE_MAX = 250  # transactions per ShopifyPayoutTransactionsRead


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


def gid_number(gid: str | None) -> int | None:
    """123 from gid://shopify/ShopifyPaymentsPayout/123 (None for None)."""
    if gid is None:
        return None
    tail = str(gid).rsplit("/", 1)[-1].split("?", 1)[0]
    if not tail.isdigit():
        raise ValueError(f"not a Shopify GID with a number: {gid!r}")
    return int(tail)


def _money(node: dict[str, Any]) -> Money:
    return Money(amount=Decimal(str(node["amount"])), currency=node["currencyCode"])


def _big(value: Any) -> int | None:
    return None if value is None else int(value)


class PayoutSummary(_Frozen):
    """Shopify's summary of a payout: gross and fee per category (sum of gross - fee = net)."""

    charges_gross: Money
    charges_fee: Money
    refunds_gross: Money
    refunds_fee: Money
    adjustments_gross: Money
    adjustments_fee: Money
    reserved_funds_gross: Money
    reserved_funds_fee: Money
    retried_payouts_gross: Money
    retried_payouts_fee: Money
    advance_gross: Money
    advance_fee: Money

    @classmethod
    def from_graphql(cls, node: dict[str, Any]) -> PayoutSummary:
        return cls(
            charges_gross=_money(node["chargesGross"]), charges_fee=_money(node["chargesFee"]),
            refunds_gross=_money(node["refundsFeeGross"]), refunds_fee=_money(node["refundsFee"]),
            adjustments_gross=_money(node["adjustmentsGross"]), adjustments_fee=_money(node["adjustmentsFee"]),
            reserved_funds_gross=_money(node["reservedFundsGross"]), reserved_funds_fee=_money(node["reservedFundsFee"]),
            retried_payouts_gross=_money(node["retriedPayoutsGross"]),
            retried_payouts_fee=_money(node["retriedPayoutsFee"]),
            advance_gross=_money(node["advanceGross"]), advance_fee=_money(node["advanceFees"]),
        )


class ShopifyPayout(_Frozen):
    id: Id  # legacyResourceId
    gid: Code
    status: Code = Field(min_length=1)  # SCHEDULED, IN_TRANSIT, PAID, FAILED, CANCELED
    issued_at: datetime
    net: Money
    transaction_type: Code = "DEPOSIT"  # DEPOSIT or WITHDRAWAL
    summary: PayoutSummary | None = None

    @classmethod
    def from_graphql(cls, node: dict[str, Any]) -> ShopifyPayout:
        """A ShopifyPaymentsPayout node of the Payouts document."""
        return cls(id=int(node["legacyResourceId"]), gid=node["id"], status=node["status"],
                   issued_at=node["issuedAt"], net=_money(node["net"]),
                   transaction_type=node.get("transactionType") or "DEPOSIT",
                   summary=PayoutSummary.from_graphql(node["summary"]) if node.get("summary") else None)


class ShopifyBalanceTransaction(_Frozen):
    id: Id
    gid: Code
    type: Code = Field(min_length=1)  # ShopifyPaymentsTransactionType
    test: bool = False
    amount: Money
    fee: Money
    net: Money
    source_type: Code | None = None  # ShopifyPaymentsSourceType
    source_id: Id | None = None
    source_order_transaction_id: Id | None = None
    order_id: Id | None = None  # associatedOrder
    order_name: Code | None = None
    adjustment_reason: Text | None = None
    transaction_date: datetime
    payout_id: Id | None = None  # associatedPayout
    payout_status: Code | None = None

    @classmethod
    def from_graphql(cls, node: dict[str, Any]) -> ShopifyBalanceTransaction:
        """A ShopifyPaymentsBalanceTransaction node of the PayoutBalanceTransactions document."""
        order = node.get("associatedOrder") or {}
        payout = node.get("associatedPayout") or {}
        return cls(
            id=gid_number(node["id"]), gid=node["id"], type=node["type"], test=bool(node.get("test")),
            amount=_money(node["amount"]), fee=_money(node["fee"]), net=_money(node["net"]),
            source_type=node.get("sourceType"), source_id=_big(node.get("sourceId")),
            source_order_transaction_id=_big(node.get("sourceOrderTransactionId")),
            order_id=gid_number(order.get("id")), order_name=order.get("name"),
            adjustment_reason=node.get("adjustmentReason"), transaction_date=node["transactionDate"],
            payout_id=gid_number(payout.get("id")), payout_status=payout.get("status"),
        )


class ShopifyPayoutTransactionsRead(_Frozen):
    """One page of a payout's balance transactions, from one read."""

    message_type: Literal["ShopifyPayoutTransactionsRead"] = "ShopifyPayoutTransactionsRead"
    read_id: UUID
    payout_id: Id
    page: Id
    transactions: tuple[ShopifyBalanceTransaction, ...] = Field(max_length=PAGE_MAX)
    read_at: datetime


class ShopifyPayoutObserved(_Frozen):
    """The end of a read: the payout as Shopify states it, and what the read listed."""

    message_type: Literal["ShopifyPayoutObserved"] = "ShopifyPayoutObserved"
    read_id: UUID
    payout: ShopifyPayout
    transaction_count: Count
    transactions_digest: str = Field(pattern=r"^[0-9a-f]{64}$")  # sha256 of the sorted ids, comma-joined
    pages: Count
    observed_at: datetime


ShopifyPayoutFact = ShopifyPayoutTransactionsRead | ShopifyPayoutObserved


def payout_key(payout_id: int | str) -> bytes:
    """Every message about one payout shares a key (facts, journal commands, outcomes, events)."""
    return f"payout:{payout_id}".encode()
