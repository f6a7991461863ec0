"""Domain events of the Payout aggregate, as published on `shopify-prima.payout-events.v1`.

Every message has the same envelope; `event_type` says which fields follow. Events of one payout
share a key (payout:<id>) and arrive in the order they were recorded; `event_id` is stable, so a
message relayed twice can be deduplicated. The payout-reconciliation read model
(projections/payouts.py) is built from this topic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Amount, Money
from contracts.prima.journals import PostJournal
from contracts.validation import Code, Count, Id, Reason, Text


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PayoutTransaction(_Frozen):
    """A balance transaction of the payout, in the payout's currency."""

    transaction_id: Id
    type: Code
    amount: Money
    fee: Money
    net: Money
    processed_at: datetime
    test: bool = False
    source_type: Code | None = None
    source_id: Id | None = None
    source_order_transaction_id: Id | None = None
    order_id: Id | None = None
    order_name: Code | None = None
    adjustment_reason: Text | None = None


class SummaryPair(_Frozen):
    category: Code
    gross: Amount
    fee: Amount


class TransactionMatch(_Frozen):
    transaction_id: Id
    status: Literal["matched", "unmatched", "not_applicable"]
    document: Code | None = None
    document_kind: Code | None = None
    order_id: Id | None = None
    reason: Code | None = None
    detail: Reason | None = None


class _Event(_Frozen):
    message_type: Literal["PayoutEvent"] = "PayoutEvent"
    event_id: UUID
    payout_id: Id
    aggregate_id: UUID
    aggregate_version: int
    timestamp: datetime
    notification_id: int  # position in the event store's notification log


class PayoutOpened(_Event):
    event_type: Literal["PayoutOpened"] = "PayoutOpened"


class TransactionsRead(_Event):
    """A page of a read: the ids it listed, and those of its transactions that are new or changed."""

    event_type: Literal["TransactionsRead"] = "TransactionsRead"
    read_id: UUID
    page: Id
    transaction_ids: list[Id]
    transactions: list[PayoutTransaction]


class PayoutObserved(_Event):
    event_type: Literal["PayoutObserved"] = "PayoutObserved"
    read_id: UUID
    status: Code
    issued_at: datetime
    net: Money
    transaction_type: Code
    summary: list[SummaryPair]
    transaction_count: Count


class PayoutHeld(_Event):
    """The payout cannot be journalled: an exception naming why (and by how much)."""

    event_type: Literal["PayoutHeld"] = "PayoutHeld"
    reason: Code
    detail: Reason
    difference: Amount | None = None


class HoldResolved(_Event):
    event_type: Literal["HoldResolved"] = "HoldResolved"


class TransactionsMatched(_Event):
    """Matches that changed (at most 500 an event)."""

    event_type: Literal["TransactionsMatched"] = "TransactionsMatched"
    matches: list[TransactionMatch]


class JournalRequested(_Event):
    event_type: Literal["JournalRequested"] = "JournalRequested"
    command: PostJournal
    line_categories: tuple[Code, ...]  # each journal line's category, in line order (the month-end report's key)


class JournalPosted(_Event):
    event_type: Literal["JournalPosted"] = "JournalPosted"
    command_id: UUID
    journal_number: Code
    occurred_at: datetime


class JournalRejected(_Event):
    event_type: Literal["JournalRejected"] = "JournalRejected"
    command_id: UUID
    status_code: int
    code: Reason
    reason: Reason


class JournalParked(_Event):
    event_type: Literal["JournalParked"] = "JournalParked"
    command_id: UUID
    attempts: Count
    reason: Reason


class PayoutFailed(_Event):
    """Shopify failed or cancelled the payout before any journal: nothing to post."""

    event_type: Literal["PayoutFailed"] = "PayoutFailed"
    status: Code


class ReversalRequested(_Event):
    event_type: Literal["ReversalRequested"] = "ReversalRequested"
    command: PostJournal
    line_categories: tuple[Code, ...]  # each journal line's category, in line order


class ReversalPosted(_Event):
    event_type: Literal["ReversalPosted"] = "ReversalPosted"
    command_id: UUID
    journal_number: Code
    occurred_at: datetime


class ReclassificationRequested(_Event):
    """Charges the posted journal carried on the unmatched-charges clearing account, matched since,
    moved off it by one more journal (its command also goes to prima.commands.v1): the clearing
    account debited, their sales, shipping and tax credited and discounts debited."""

    event_type: Literal["ReclassificationRequested"] = "ReclassificationRequested"
    command: PostJournal
    line_categories: tuple[Code, ...]  # each journal line's category, in line order
    charge_ids: tuple[Id, ...]  # the charges it reclassifies (each is reclassified once)


class ReclassificationPosted(_Event):
    event_type: Literal["ReclassificationPosted"] = "ReclassificationPosted"
    command_id: UUID
    journal_number: Code
    occurred_at: datetime


class PayoutReleased(_Event):
    event_type: Literal["PayoutReleased"] = "PayoutReleased"
    released_by: Code
    previous_state: Code


PayoutEvent = Annotated[
    PayoutOpened | TransactionsRead | PayoutObserved | PayoutHeld | HoldResolved | TransactionsMatched
    | JournalRequested | JournalPosted | JournalRejected | JournalParked | PayoutFailed | ReversalRequested
    | ReversalPosted | ReclassificationRequested | ReclassificationPosted | PayoutReleased,
    Field(discriminator="event_type"),
]
