"""Credit memos: a Shopify refund as a Prima credit memo against the original sales order, as the
command travels on prima.commands.v1 and Prima's answer on prima.outcomes.v1.

The memo body mirrors `POST /v1/credit-memos` of contracts/prima/openapi.yaml. One memo per
Shopify refund: the idempotency key and the external reference are the refund's, so however
often the refund is delivered, Prima makes one memo.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from contracts.money import Amount
from contracts.validation import Code, CurrencyCode, Id, Lines, PositiveQuantity, Text

LineKind = Literal["item", "account"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class CreditMemoLine(_Frozen):
    line_number: Id
    kind: LineKind = "item"
    item_id: Code | None = None  # a Prima item (kind item)
    sku: Code | None = None
    account: Code | None = None  # a ledger account (kind account)
    description: Text
    quantity: PositiveQuantity
    amount: Amount  # the refunded subtotal as Shopify states it (tax inside when the order's prices include it)
    tax_amount: Amount
    restock_type: Code | None = None  # Shopify's: no_restock, cancel, return, legacy_restock (None: amount only)
    returned: bool = False  # the units come back into stock
    external_line_id: Id | None = None  # the Shopify order line


class CreditMemoShipping(_Frozen):
    description: Text
    amount: Amount
    tax_amount: Amount


class CreditMemoAdjustment(_Frozen):
    kind: Code
    description: Text
    amount: Amount  # signed: what it adds to the memo
    tax_amount: Amount


class CreditMemoTotals(_Frozen):
    lines: Amount
    shipping: Amount
    adjustments: Amount
    tax: Amount
    total: Amount


class CreditMemoDraft(_Frozen):
    sales_order_number: Code
    external_reference: Code  # the Shopify refund id
    currency: CurrencyCode
    taxes_included: bool
    memo_date: datetime
    reason: Text | None = None
    lines: Lines(CreditMemoLine)
    shipping: CreditMemoShipping | None = None
    adjustments: Lines(CreditMemoAdjustment) = ()
    totals: CreditMemoTotals


class CreateCreditMemo(_Frozen):
    message_type: Literal["CreateCreditMemo"] = "CreateCreditMemo"
    command_id: UUID
    idempotency_key: Code  # the refund's: one memo per Shopify refund
    shopify_order_id: Id
    refund_id: Id
    issued_at: datetime
    credit_memo: CreditMemoDraft


class PrimaCreditMemoCreated(_Frozen):
    """Prima made the credit memo (or answered with the one it made for this refund before)."""

    message_type: Literal["PrimaCreditMemoCreated"] = "PrimaCreditMemoCreated"
    command_id: UUID
    shopify_order_id: Id
    refund_id: Id
    credit_memo_number: Code
    total: Amount
    replayed: bool = False
    adopted: bool = False  # 409 duplicate_external_reference: the memo Prima holds for the refund
    occurred_at: datetime
