"""Whether a payout can be journalled: its transactions must be exactly the ones Shopify listed,
in the payout's currency, each of a known type, each adding up (amount - fee = net), and
together adding up to the payout's net. Anything else holds the payout as an exception naming
what is wrong and by how much; a journal is never made to fit.

Shopify's sample payout (../shared/reference/shopify-samples) is such a case: its transactions
net to 81.38 against a payout of 41.90, a difference of 39.48 that no journal may hide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from domain.payouts.categories import PAYOUT_TRANSFER, categories_of
from domain.payouts.values import BalanceTransaction, PayoutHeader

ZERO = Decimal("0.00")


class HoldReason(StrEnum):
    INCOMPLETE = "incomplete"  # the transactions held are not the ones the read listed
    CURRENCY_MISMATCH = "currency_mismatch"
    UNMAPPED_TRANSACTION_TYPE = "unmapped_transaction_type"
    TRANSACTION_INCONSISTENT = "transaction_inconsistent"  # amount - fee != net
    DOES_NOT_ADD_UP = "does_not_add_up"  # the transactions' nets != the payout's net


@dataclass(frozen=True)
class Problem:
    reason: HoldReason
    detail: str
    difference: Decimal | None = None  # the transactions' total minus the payout's net, where it applies


def transactions_digest(transaction_ids: Iterable[int]) -> str:
    """A digest of a set of transaction ids: what a read found, to compare with what is held."""
    return hashlib.sha256(",".join(str(i) for i in sorted(set(transaction_ids))).encode()).hexdigest()


def is_own_transfer(payout: PayoutHeader, transaction: BalanceTransaction) -> bool:
    """The payout's own transfer to the bank (type TRANSFER): not a line, the bank line is the net."""
    return transaction.type == PAYOUT_TRANSFER and transaction.source_id in (None, payout.payout_id)


def completeness_problem(held: int, digest_held: str, listed: int, digest_listed: str) -> Problem | None:
    if held == listed and digest_held == digest_listed:
        return None
    return Problem(HoldReason.INCOMPLETE,
                   f"the read listed {listed} transactions; {held} held"
                   f"{'' if held != listed else ' but not the same ones'}: read the payout again")


def payout_problem(payout: PayoutHeader, transactions: Sequence[BalanceTransaction]) -> Problem | None:
    """The first reason the payout cannot be journalled, or None."""
    currency = payout.net.currency
    foreign = sorted({m.currency for t in transactions for m in (t.amount, t.fee, t.net) if m.currency != currency})
    if foreign:
        return Problem(HoldReason.CURRENCY_MISMATCH,
                       f"transactions in {', '.join(foreign)} in a payout in {currency}: Shopify states a payout's "
                       "transactions in its currency")
    unknown = sorted({t.type for t in transactions if categories_of(t.type) is None})
    if unknown:
        return Problem(HoldReason.UNMAPPED_TRANSACTION_TYPE,
                       f"no journal category for transaction type(s) {', '.join(unknown)}: add them to "
                       "domain/payouts/categories.py, then release the payout")
    inconsistent = [t for t in transactions if t.amount.amount - t.fee.amount != t.net.amount]
    transfers = [t for t in transactions if is_own_transfer(payout, t)]
    others = [t for t in transactions if not is_own_transfer(payout, t)]
    total = sum((t.net.amount for t in others), ZERO)
    if total != payout.net.amount:
        difference = total - payout.net.amount
        also = (f"; besides, {len(inconsistent)} transaction(s) state an amount - fee other than their net"
                if inconsistent else "")
        return Problem(HoldReason.DOES_NOT_ADD_UP,
                       f"the {len(others)} transactions net to {total} {currency}, the payout is {payout.net.amount} "
                       f"{currency}: a difference of {difference} {currency}{also}", difference)
    if inconsistent:
        t = inconsistent[0]
        return Problem(HoldReason.TRANSACTION_INCONSISTENT,
                       f"{len(inconsistent)} transaction(s) whose amount - fee != net, first {t.transaction_id}: "
                       f"{t.amount.amount} - {t.fee.amount} != {t.net.amount}")
    if transfers and sum((t.net.amount for t in transfers), ZERO) != -payout.net.amount:
        moved = sum((t.net.amount for t in transfers), ZERO)
        return Problem(HoldReason.DOES_NOT_ADD_UP,
                       f"the payout's own transfer moved {moved} {currency} out of the balance, not "
                       f"{-payout.net.amount} {currency}", moved + payout.net.amount)
    return None
