"""The journal command to Prima and what Prima answered, as they travel on Kafka
(prima.commands.v1 and prima.outcomes.v1, key: payout:<id>).

The journal body mirrors `POST /v1/journals` of contracts/prima/openapi.yaml, so the Prima
gateway sends `PostJournal.journal` as it is. Each line is a debit or a credit (the other is 0);
the lines balance to the cent and the bank line is the payout's net. The idempotency key comes
from the payout (shopify-prima:post-journal:<payout id>; a reversal's from the payout too), so a
payout never makes two journals in Prima, whatever is repeated.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Amount
from contracts.validation import Code, Count, CurrencyCode, Id, Reason, Text


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class JournalLine(_Frozen):
    line_number: Id
    account: Code
    description: Text
    debit: Amount
    credit: Amount
    tax_code: Code | None = None


class JournalDraft(_Frozen):
    external_reference: Code  # shopify-payout:<id> (a reversal: shopify-payout:<id>:reversal)
    journal_date: date
    currency: CurrencyCode
    description: Text
    reverses: Code | None = None  # the journal number a reversal undoes
    lines: tuple[JournalLine, ...]


class PostJournal(_Frozen):
    message_type: Literal["PostJournal"] = "PostJournal"
    command_id: UUID
    idempotency_key: Code
    payout_id: Id
    issued_at: datetime
    journal: JournalDraft


class PrimaJournalPosted(_Frozen):
    """Prima posted the journal (or answered a repeat with it, or already held a journal with its
    external reference, which the gateway adopted)."""

    message_type: Literal["PrimaJournalPosted"] = "PrimaJournalPosted"
    command_id: UUID
    payout_id: Id
    journal_number: Code
    status: Code
    replayed: bool = False
    adopted: bool = False
    occurred_at: datetime


class PrimaJournalRejected(_Frozen):
    """Prima refused the journal (4xx): the same command cannot succeed."""

    message_type: Literal["PrimaJournalRejected"] = "PrimaJournalRejected"
    command_id: UUID
    payout_id: Id
    status_code: int
    code: Reason
    reason: Reason
    occurred_at: datetime


class PrimaJournalParked(_Frozen):
    """The gateway gave up after its retries (Prima unavailable) and parked the command."""

    message_type: Literal["PrimaJournalParked"] = "PrimaJournalParked"
    command_id: UUID
    payout_id: Id
    attempts: Count
    reason: Reason
    occurred_at: datetime


JournalOutcome = Annotated[PrimaJournalPosted | PrimaJournalRejected | PrimaJournalParked,
                           Field(discriminator="message_type")]
