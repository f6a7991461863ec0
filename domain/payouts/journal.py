"""The summary journal of a payout: one line per category (and per tax title and rate), the bank
line equal to the payout's net, debits equal to credits to the cent. No variance, suspense or
"unknown" line exists: the journal is built only for a payout whose transactions add up
(domain/payouts/checks.py), and then it balances by construction (a test says so for every case).

Signs: a transaction's amount is money into the Shopify balance when positive, so its category
is credited (a sale) when positive and debited (a refund, a chargeback, a reserve held) when
negative; a fee Shopify charged (positive) is debited to its fee category; the bank is debited
with a deposit (credited with a withdrawal). Each category's amounts are netted into one line.

A charge is split into sales, shipping, discounts and tax per jurisdiction from its order
(domain/payouts/split.py); a charge whose order's amounts are not known goes whole to the
unmatched-charges clearing account, as its own listed, unmatched transaction. The Payout waits
for such orders first (PayoutPolicy.documents_grace, from when it first saw the payout), so that
a payout read shortly after its orders, or while the documents lag, is journalled in full.

A posted journal is never changed: a payout that fails or is cancelled after its journal gets a
reversing journal (`reversal`), every line with debit and credit swapped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from domain.payouts.accounts import AccountMapping
from domain.payouts.categories import Category, categories_of
from domain.payouts.checks import is_own_transfer
from domain.payouts.split import charge_parts, splittable
from domain.payouts.values import (
    BalanceTransaction,
    Journal,
    JournalLine,
    OrderDocument,
    PayoutHeader,
)

ZERO = Decimal("0.00")
# (category, tax title, tax rate): the key of a line
LineKey = tuple[Category, str | None, Decimal | None]


def external_reference(payout_id: int) -> str:
    return f"shopify-payout:{payout_id}"


def charges_in_clearing(payout: PayoutHeader, transactions: Sequence[BalanceTransaction],
                        documents: Mapping[int, OrderDocument]) -> list[int]:
    """The charges a journal built now would put whole on the unmatched-charges clearing account
    (their order's amounts are not known yet): the ids, in order."""
    found = []
    for t in transactions:
        if is_own_transfer(payout, t):
            continue
        category = categories_of(t.type)
        if category is not None and category[0] is Category.SALES:
            document = documents.get(t.order_id) if t.order_id is not None else None
            if not splittable(document):
                found.append(t.transaction_id)
    return found


_CATEGORIES = {str(c): c for c in Category}  # a part's category by name (Category(name) costs, ten thousand times)


def amounts_by_line(payout: PayoutHeader, transactions: Sequence[BalanceTransaction],
                    documents: Mapping[int, OrderDocument]) -> dict[LineKey, Decimal]:
    """Each line's signed amount (positive: credit), the bank included. Raises KeyError for a
    transaction type without a category (checks.payout_problem holds such a payout first)."""
    amounts: dict[LineKey, Decimal] = {}

    def add(key: LineKey, amount: Decimal) -> None:
        amounts[key] = amounts.get(key, ZERO) + amount

    for t in transactions:
        if is_own_transfer(payout, t):
            continue
        found = categories_of(t.type)
        if found is None:
            raise KeyError(f"no journal category for transaction type {t.type}")
        category, fee_category = found
        if category is Category.SALES:
            document = documents.get(t.order_id) if t.order_id is not None else None
            parts = charge_parts(t.amount.amount, document)
            if parts is None:
                add((Category.UNMATCHED_CHARGES, None, None), t.amount.amount)
            else:
                for part in parts:
                    part_category = _CATEGORIES[part.category]
                    tax = (part.tax_title, part.tax_rate) if part_category is Category.TAX else (None, None)
                    add((part_category, *tax), part.amount)
        else:
            add((category, None, None), t.amount.amount)
        if t.fee.amount:
            add((fee_category, None, None), -t.fee.amount)
    add((Category.BANK, None, None), -payout.net.amount)
    return amounts


def _description(accounts: AccountMapping, key: LineKey) -> str:
    category, title, rate = key
    if category is not Category.TAX:
        return accounts.description(category)
    account = accounts.tax.for_title(title)
    name = account.description or accounts.description(Category.TAX)
    rate_text = f" {(rate * 100).normalize():f}%" if rate is not None else ""
    return f"{name}: {title}{rate_text}" if title else name


def _account(accounts: AccountMapping, key: LineKey):
    category, title, _ = key
    return accounts.tax.for_title(title) if category is Category.TAX else accounts.account(category)


def _order(key: LineKey) -> tuple[int, str, Decimal]:
    category, title, rate = key
    position = 0 if category is Category.BANK else list(Category).index(category) + 1
    return position, title or "", rate if rate is not None else Decimal(-1)


def _lines(amounts: Mapping[LineKey, Decimal], accounts: AccountMapping) -> tuple[JournalLine, ...]:
    """One line per key with a non-zero amount (positive: credit), in the journal's line order."""
    lines: list[JournalLine] = []
    for key in sorted((k for k, v in amounts.items() if v != 0), key=_order):
        amount = amounts[key]
        account = _account(accounts, key)
        lines.append(JournalLine(
            line_number=len(lines) + 1, category=str(key[0]), account=account.account,
            description=_description(accounts, key),
            debit=-amount if amount < 0 else ZERO, credit=amount if amount > 0 else ZERO, tax_code=account.tax_code))
    return tuple(lines)


def build_journal(payout: PayoutHeader, transactions: Sequence[BalanceTransaction], accounts: AccountMapping,
                  documents: Mapping[int, OrderDocument]) -> Journal:
    """The payout's journal (the payout must add up: checks.payout_problem is None)."""
    amounts = amounts_by_line(payout, transactions, documents)
    journal = Journal(external_reference=external_reference(payout.payout_id), journal_date=payout.issued_at,
                      currency=payout.net.currency,
                      description=f"Shopify payout {payout.payout_id} of {payout.issued_at.date().isoformat()}",
                      lines=_lines(amounts, accounts))
    unbalanced = unbalanced_by(journal)
    if unbalanced:  # cannot happen for a payout that adds up; never posted if it does
        raise ValueError(f"journal of payout {payout.payout_id} does not balance by {unbalanced}")
    return journal


def reclassification(payout_id: int, number: int, journal_number: str, charges: Sequence[BalanceTransaction],
                     accounts: AccountMapping, documents: Mapping[int, OrderDocument], at: datetime) -> Journal:
    """The journal that moves charges a posted journal carried whole on the unmatched-charges
    clearing account to where the journal would have put them had their orders been known: the
    clearing account debited with each charge, and the charge split as `amounts_by_line` splits
    it (split.charge_parts: sales, shipping, tax per title and rate credited, discounts debited).
    It balances by construction (each charge's parts add up to it); `number` counts the payout's
    reclassifications. Every charge must have its order's parts now (the caller checks)."""
    amounts: dict[LineKey, Decimal] = {}

    def add(key: LineKey, amount: Decimal) -> None:
        amounts[key] = amounts.get(key, ZERO) + amount

    for t in charges:
        document = documents.get(t.order_id) if t.order_id is not None else None
        parts = charge_parts(t.amount.amount, document)
        if parts is None:
            raise ValueError(f"charge {t.transaction_id} has no order parts to reclassify it by")
        add((Category.UNMATCHED_CHARGES, None, None), -t.amount.amount)
        for part in parts:
            part_category = Category(part.category)
            tax = (part.tax_title, part.tax_rate) if part_category is Category.TAX else (None, None)
            add((part_category, *tax), part.amount)
    currencies = {t.amount.currency for t in charges}
    if len(currencies) != 1:
        raise ValueError(f"charges to reclassify in {len(currencies)} currencies")
    journal = Journal(
        external_reference=f"{external_reference(payout_id)}:reclassification:{number}", journal_date=at,
        currency=currencies.pop(),
        description=(f"Reclassification {number} of {journal_number} (Shopify payout {payout_id}): "
                     f"{len(charges)} charge(s) off the unmatched-charges clearing account"),
        lines=_lines(amounts, accounts))
    unbalanced = unbalanced_by(journal)
    if unbalanced:  # cannot happen: each charge's parts add up to it
        raise ValueError(f"reclassification of payout {payout_id} does not balance by {unbalanced}")
    return journal


def unbalanced_by(journal: Journal) -> Decimal:
    """Debits minus credits (zero for a journal that may be posted)."""
    return journal.total_debit - journal.total_credit


def bank_amount(journal: Journal) -> Decimal:
    """The bank line's debit minus credit: the payout's net."""
    return sum((line.debit - line.credit for line in journal.lines if line.category == Category.BANK), ZERO)


def reversal(journal: Journal, journal_number: str, at: datetime,
             reclassifications: Sequence[Journal] = ()) -> Journal:
    """The journal that undoes a posted one: every line with debit and credit swapped. With the
    payout's posted reclassification journals it undoes them too: their lines are netted with the
    journal's per account (the clearing account's then comes to nothing and is left out), then
    swapped, so that the payout leaves nothing behind."""
    net: dict[tuple[str, str, str, str | None], tuple[JournalLine, Decimal]] = {}
    for line in (*journal.lines, *(line for r in reclassifications for line in r.lines)):
        key = (line.category, line.account, line.description, line.tax_code)
        first, amount = net.get(key, (line, ZERO))
        net[key] = (first, amount + line.credit - line.debit)
    lines = []
    for first, amount in net.values():
        if amount:
            lines.append(replace(first, line_number=len(lines) + 1, debit=amount if amount > 0 else ZERO,
                                 credit=-amount if amount < 0 else ZERO))
    return Journal(
        external_reference=f"{journal.external_reference}:reversal", journal_date=at, currency=journal.currency,
        description=f"Reversal of {journal_number} ({journal.description})", lines=tuple(lines),
        reverses=journal_number)
