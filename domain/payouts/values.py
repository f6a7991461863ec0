"""The payout flow's own value types: a Shopify payout and its balance transactions as the Payout
aggregate decides on them, what it knows of the orders behind them (for matching and for the
split of a charge into sales, shipping, tax and discounts), and the journal it asks Prima for.

The services translate the wire contracts into these at the edge (services/payouts/translate.py),
so the event store never holds a wire model. Amounts are Decimals in the payout's currency
unless a field says otherwise; a transaction's amount is signed as Shopify states it (money
into the Shopify balance is positive), its fee is positive when Shopify charged one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from domain.shared.money import Money

# ---------------------------------------------------------------- the payout as Shopify states it

PAID, IN_TRANSIT, SCHEDULED, FAILED, CANCELED = "PAID", "IN_TRANSIT", "SCHEDULED", "FAILED", "CANCELED"
PAYOUT_STATUSES = (SCHEDULED, IN_TRANSIT, PAID, FAILED, CANCELED)


@dataclass(frozen=True)
class SummaryPair:
    """One category of Shopify's payout summary: gross and fee (signed as Shopify states them)."""

    category: str  # charges, refunds, adjustments, reserved_funds, retried_payouts, advance
    gross: Decimal
    fee: Decimal


@dataclass(frozen=True)
class PayoutHeader:
    """A payout as one read of Shopify's payouts stated it."""

    payout_id: int
    status: str  # ShopifyPaymentsPayoutStatus
    issued_at: datetime
    net: Money  # the bank deposit (negative for a withdrawal)
    transaction_type: str = "DEPOSIT"  # DEPOSIT or WITHDRAWAL
    summary: tuple[SummaryPair, ...] = ()


@dataclass(frozen=True)
class BalanceTransaction:
    """One Shopify Payments balance transaction of a payout, in the payout's currency."""

    transaction_id: int
    type: str  # ShopifyPaymentsTransactionType, e.g. CHARGE, REFUND, DISPUTE_WITHDRAWAL
    amount: Money
    fee: Money
    net: Money
    processed_at: datetime
    test: bool = False
    source_type: str | None = None  # ShopifyPaymentsSourceType: CHARGE, REFUND, DISPUTE, TRANSFER...
    source_id: int | None = None
    source_order_transaction_id: int | None = None  # the order's payment (or refund) transaction
    order_id: int | None = None  # the Shopify order behind it, where there is one
    order_name: str | None = None
    adjustment_reason: str | None = None


# ----------------------------------------------------------------- what is known of the orders


@dataclass(frozen=True)
class AmountPart:
    """One part of what a customer paid for an order, for the journal's split of a charge.
    `amount` is signed as it adds up to the order's total: sales, shipping and tax positive,
    discounts negative. `tax_title` and `tax_rate` name a tax part's jurisdiction and rate."""

    category: str  # sales, shipping, discounts, tax
    amount: Decimal
    tax_title: str | None = None
    tax_rate: Decimal | None = None


@dataclass(frozen=True)
class CreditMemoDocument:
    """A Prima credit memo of the order (issue 9): for matching a refund."""

    credit_memo_number: str
    refund_id: int | None
    amount: Decimal | None  # the memo's total, positive
    transaction_ids: tuple[int, ...] = ()  # the Shopify refund's order transactions


@dataclass(frozen=True)
class OrderDocument:
    """A Shopify order as the integration knows it, with its Prima documents."""

    shopify_order_id: int
    order_name: str
    currency: str  # the shop currency its amounts are in
    total: Decimal
    presentment_currency: str | None = None  # what the customer paid in (None: the shop currency)
    parts: tuple[AmountPart, ...] = ()  # adds up to `total` (sales + shipping + tax - discounts)
    payments: tuple[tuple[int, Decimal], ...] = ()  # (order transaction id, amount) of its captures and sales
    sales_order_number: str | None = None
    credit_memos: tuple[CreditMemoDocument, ...] = ()
    gateways: tuple[str, ...] = ()  # Shopify's payment_gateway_names of the order (() : not recorded)


# ------------------------------------------------------------------------------ matching


@dataclass(frozen=True)
class Match:
    """What one balance transaction was matched to, or why not.

    status: matched | unmatched | not_applicable (a transaction no document stands behind: a
    fee, a reserve, an adjustment without an order). `reason` says why a transaction is
    unmatched (see domain/payouts/matching.py)."""

    transaction_id: int
    status: str
    document: str | None = None  # SO-..., CM-...: the Prima document
    document_kind: str | None = None  # sales_order | credit_memo
    order_id: int | None = None
    reason: str | None = None
    detail: str | None = None


# ------------------------------------------------------------------------------ the journal


@dataclass(frozen=True)
class JournalLine:
    line_number: int
    category: str
    account: str
    description: str
    debit: Decimal
    credit: Decimal
    tax_code: str | None = None


@dataclass(frozen=True)
class Journal:
    """A summary journal of one payout (or the reversal of one): lines balance to the cent and
    the bank line is the payout's net."""

    external_reference: str  # shopify-payout:<id> (a reversal: shopify-payout:<id>:reversal)
    journal_date: datetime
    currency: str
    description: str
    lines: tuple[JournalLine, ...]
    reverses: str | None = None  # the journal number a reversal reverses

    @property
    def total_debit(self) -> Decimal:
        return sum((line.debit for line in self.lines), Decimal("0.00"))

    @property
    def total_credit(self) -> Decimal:
        return sum((line.credit for line in self.lines), Decimal("0.00"))


@dataclass(frozen=True)
class JournalRequest:
    """The command: post this journal in Prima, once (the idempotency key comes from the payout)."""

    command_id: UUID
    idempotency_key: str
    payout_id: int
    issued_at: datetime
    journal: Journal


# ------------------------------------------------------------------------------ facts in


@dataclass(frozen=True)
class TransactionsRead:
    """A page of a payout's balance transactions, as one read of Shopify gave them."""

    payout_id: int
    read_id: UUID
    page: int
    transactions: tuple[BalanceTransaction, ...]


@dataclass(frozen=True)
class PayoutObserved:
    """A read of a payout ended: its header and how many transactions the read found, with a
    digest of their ids (domain/payouts/checks.py transactions_digest): the aggregate decides
    only on exactly those transactions."""

    payout_id: int
    read_id: UUID
    header: PayoutHeader
    transaction_count: int
    transactions_digest: str
    observed_at: datetime


@dataclass(frozen=True)
class JournalPostedByPrima:
    command_id: UUID
    payout_id: int
    journal_number: str
    occurred_at: datetime


@dataclass(frozen=True)
class JournalRejectedByPrima:
    command_id: UUID
    payout_id: int
    status_code: int
    code: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class JournalParkedByGateway:
    command_id: UUID
    payout_id: int
    attempts: int
    reason: str
    occurred_at: datetime


JournalOutcome = JournalPostedByPrima | JournalRejectedByPrima | JournalParkedByGateway


@dataclass(frozen=True)
class RematchRequested:
    """Match the payout's unmatched transactions again (an operator, or the decider's sweep)."""

    payout_id: int
    requested_by: str
    requested_at: datetime


@dataclass(frozen=True)
class PayoutReleaseRequested:
    """Decide a held payout, or one whose journal Prima refused, again (after its cause was
    fixed: the account mapping, a transaction type mapped)."""

    payout_id: int
    released_by: str
    requested_at: datetime


PayoutFact = (TransactionsRead | PayoutObserved | JournalPostedByPrima | JournalRejectedByPrima
              | JournalParkedByGateway | RematchRequested | PayoutReleaseRequested)


VALUE_TYPES: tuple[type, ...] = (
    Money, SummaryPair, PayoutHeader, BalanceTransaction, Match, JournalLine, Journal, JournalRequest,
)
