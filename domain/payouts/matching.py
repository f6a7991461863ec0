"""Each balance transaction of a payout matched to the Prima document behind it, or listed with
the reason it is not.

- A charge is matched to its order's Prima sales order. Its amount must be what the order was
  paid: the order's payment transaction it settles (Shopify's sourceOrderTransactionId), else the
  order's total, compared where the order was paid in the payout's currency (a charge converted
  from another currency settles at the day's rate: there is no document amount to compare with).
  An order also paid through a gateway that is not a payout's (a gift card, PayPal: its
  payment_gateway_names, domain/payouts/clearing.py) is paid by Shopify Payments only in part: a
  charge below its total matches (the rest is on that gateway's clearing account).
- A refund (or a refund that failed and came back) is matched to the order's Prima credit memo
  for that Shopify refund: by the refund's order transaction, else by its amount among the
  order's memos not matched yet.
- A dispute (withdrawn or reversed) is matched to its order's sales order.
- Anything else (fees, reserves, adjustments, Shopify's own charges) stands on no document:
  not_applicable.

Reasons a transaction is unmatched (each an exception of the payout-reconciliation read model,
with a re-match action; the decider re-matches by itself too, as documents arrive):
- no_order: Shopify names no order for it;
- order_not_seen: an order the integration never saw;
- no_sales_order: the order has no Prima sales order (quarantined, refused, not sent yet);
- amount_differs: the amount is not the document's;
- awaiting_credit_memo: the refund's credit memo is not in Prima yet (the refund waits for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import StrEnum

from domain.payouts.categories import MATCHED_TYPES
from domain.payouts.clearing import ClearingAccounts
from domain.payouts.values import (
    BalanceTransaction,
    CreditMemoDocument,
    Match,
    OrderDocument,
)

MATCHED, UNMATCHED, NOT_APPLICABLE = "matched", "unmatched", "not_applicable"
DEFAULT_CLEARING = ClearingAccounts()


class UnmatchedReason(StrEnum):
    NO_ORDER = "no_order"
    ORDER_NOT_SEEN = "order_not_seen"
    NO_SALES_ORDER = "no_sales_order"
    AMOUNT_DIFFERS = "amount_differs"
    AWAITING_CREDIT_MEMO = "awaiting_credit_memo"


def _unmatched(t: BalanceTransaction, reason: UnmatchedReason, detail: str, *, document: str | None = None,
               kind: str | None = None) -> Match:
    return Match(transaction_id=t.transaction_id, status=UNMATCHED, document=document, document_kind=kind,
                 order_id=t.order_id, reason=str(reason), detail=detail)


def _same_currency(document: OrderDocument, t: BalanceTransaction) -> bool:
    """The document's amounts can be compared with the transaction's: the order was paid in the
    payout's currency, which is its shop currency too (a charge converted from another currency
    settles at the day's rate, never at the order's figure)."""
    return document.currency == t.amount.currency and (document.presentment_currency or document.currency) == \
        t.amount.currency


def _paid_amount(t: BalanceTransaction, document: OrderDocument) -> tuple[Decimal, str | None]:
    """What the order's document says was paid for this charge, and the payment transaction that
    figure is (None: the order's total)."""
    payments = dict(document.payments)
    if t.source_order_transaction_id is not None and t.source_order_transaction_id in payments:
        return payments[t.source_order_transaction_id], f"payment transaction {t.source_order_transaction_id}"
    return document.total, None


def _paid_in_part(t: BalanceTransaction, document: OrderDocument, clearing: ClearingAccounts) -> bool:
    """A charge below the order's total, for an order that names another gateway than the payouts'."""
    return 0 < t.amount.amount < document.total and any(not clearing.pays_out(g) for g in document.gateways)


def _match_sales_order(t: BalanceTransaction, document: OrderDocument, clearing: ClearingAccounts) -> Match:
    if document.sales_order_number is None:
        return _unmatched(t, UnmatchedReason.NO_SALES_ORDER,
                          f"order {document.order_name} has no Prima sales order (see `shopify-prima orders show "
                          f"{document.shopify_order_id}`)")
    if t.type == "CHARGE" and _same_currency(document, t):
        expected, payment = _paid_amount(t, document)
        what = payment or "the order's total"
        if t.amount.amount != expected and not (payment is None and _paid_in_part(t, document, clearing)):
            return _unmatched(t, UnmatchedReason.AMOUNT_DIFFERS,
                              f"charge of {t.amount.amount} {t.amount.currency}, {what} of {document.order_name} is "
                              f"{expected} {document.currency} (sales order {document.sales_order_number})",
                              document=document.sales_order_number, kind="sales_order")
    return Match(transaction_id=t.transaction_id, status=MATCHED, document=document.sales_order_number,
                 document_kind="sales_order", order_id=document.shopify_order_id)


def _find_memo(t: BalanceTransaction, document: OrderDocument, used: set[str]) -> CreditMemoDocument | None:
    free = [m for m in document.credit_memos if m.credit_memo_number not in used]
    if t.source_order_transaction_id is not None:
        for memo in free:
            if t.source_order_transaction_id in memo.transaction_ids:
                return memo
    refunded = abs(t.amount.amount)
    for memo in free:
        if (not memo.transaction_ids or t.source_order_transaction_id is None) and memo.amount == refunded:
            return memo
    return None


def _match_credit_memo(t: BalanceTransaction, document: OrderDocument, used: set[str]) -> Match:
    memo = _find_memo(t, document, used)
    if memo is None:
        return _unmatched(t, UnmatchedReason.AWAITING_CREDIT_MEMO,
                          f"no Prima credit memo of order {document.order_name} for this refund of "
                          f"{abs(t.amount.amount)} {t.amount.currency} yet: it waits for it")
    used.add(memo.credit_memo_number)
    if memo.amount is not None and _same_currency(document, t) and memo.amount != abs(t.amount.amount):
        return _unmatched(t, UnmatchedReason.AMOUNT_DIFFERS,
                          f"refund of {abs(t.amount.amount)} {t.amount.currency}, credit memo "
                          f"{memo.credit_memo_number} is {memo.amount} {document.currency}",
                          document=memo.credit_memo_number, kind="credit_memo")
    return Match(transaction_id=t.transaction_id, status=MATCHED, document=memo.credit_memo_number,
                 document_kind="credit_memo", order_id=document.shopify_order_id)


def match_transaction(t: BalanceTransaction, documents: Mapping[int, OrderDocument],
                      used_memos: set[str] | None = None, clearing: ClearingAccounts = DEFAULT_CLEARING) -> Match:
    kind = MATCHED_TYPES.get(t.type)
    if kind is None:
        return Match(transaction_id=t.transaction_id, status=NOT_APPLICABLE, order_id=t.order_id)
    if t.order_id is None:
        return _unmatched(t, UnmatchedReason.NO_ORDER, f"Shopify names no order for this {t.type}")
    document = documents.get(t.order_id)
    if document is None:
        return _unmatched(t, UnmatchedReason.ORDER_NOT_SEEN,
                          f"order {t.order_name or t.order_id} was never received by the integration")
    if kind == "credit_memo":
        return _match_credit_memo(t, document, used_memos if used_memos is not None else set())
    return _match_sales_order(t, document, clearing)


def match_payout(transactions: Sequence[BalanceTransaction], documents: Mapping[int, OrderDocument],
                 clearing: ClearingAccounts = DEFAULT_CLEARING) -> list[Match]:
    """Every transaction's match; a credit memo matches one refund at most."""
    used: set[str] = set()
    ordered = sorted(transactions, key=lambda t: (t.processed_at, t.transaction_id))
    found = {t.transaction_id: match_transaction(t, documents, used, clearing) for t in ordered}
    return [found[t.transaction_id] for t in transactions]


def order_ids(transactions: Sequence[BalanceTransaction]) -> set[int]:
    """The orders whose documents the journal and the matching of these transactions need."""
    return {t.order_id for t in transactions if t.order_id is not None}
