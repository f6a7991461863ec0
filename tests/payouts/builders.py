"""Builders of the payout flow's tests: balance transactions, payouts, the orders' documents, the
facts one read of a payout gives, and Shopify's own sample payout (../shared/reference)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from domain.payouts.checks import transactions_digest
from domain.payouts.values import (
    AmountPart,
    BalanceTransaction,
    CreditMemoDocument,
    OrderDocument,
    PayoutHeader,
    PayoutObserved,
    TransactionsRead,
)
from domain.shared.money import Money

D = Decimal
NOW = datetime(2026, 11, 12, 9, 0, tzinfo=UTC)
# Shopify's own sample payout (copied from ../shared/reference/shopify-samples): its transactions
# deliberately net to 81.38 against a payout of 41.90.
SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "shopify"
SAMPLE_PAYOUT = SAMPLES / "payout.json"
SAMPLE_TRANSACTIONS = SAMPLES / "payouts_transactions.json"

_ids = iter(range(900_000_001, 999_999_999))


def tx(type_: str, amount: str, fee: str = "0.00", *, order: int | None = None, currency: str = "USD",
       id_: int | None = None, source_transaction: int | None = None, net: str | None = None,
       source_id: int | None = None, at: datetime = NOW - timedelta(days=3)) -> BalanceTransaction:
    """A balance transaction; net = amount - fee unless given."""
    stated_net = D(net) if net is not None else D(amount) - D(fee)
    return BalanceTransaction(
        transaction_id=id_ if id_ is not None else next(_ids), type=type_, amount=Money(D(amount), currency),
        fee=Money(D(fee), currency), net=Money(stated_net, currency), processed_at=at, source_id=source_id,
        source_order_transaction_id=source_transaction, order_id=order,
        order_name=f"#{order}" if order is not None else None)


def payout(net: str, *, payout_id: int = 700_001, status: str = "PAID", currency: str = "USD",
           issued_at: datetime = NOW) -> PayoutHeader:
    return PayoutHeader(payout_id=payout_id, status=status, issued_at=issued_at, net=Money(D(net), currency))


def transfer(header: PayoutHeader) -> BalanceTransaction:
    """The payout's own transfer out of the balance (type TRANSFER)."""
    return tx("TRANSFER", str(-header.net.amount), source_id=header.payout_id, currency=header.net.currency)


def parts(sales: str = "0.00", shipping: str = "0.00", discounts: str = "0.00",
          taxes: tuple[tuple[str, str, str], ...] = ()) -> tuple[AmountPart, ...]:
    """An order's parts: sales, shipping and discounts (given positive), taxes as (title, rate, amount)."""
    found = [AmountPart("sales", D(sales))]
    if D(shipping):
        found.append(AmountPart("shipping", D(shipping)))
    if D(discounts):
        found.append(AmountPart("discounts", -D(discounts)))
    found += [AmountPart("tax", D(amount), tax_title=title, tax_rate=D(rate)) for title, rate, amount in taxes]
    return tuple(found)


def document(order_id: int, order_parts: tuple[AmountPart, ...], *, sales_order: str | None = "SO-000001",
             currency: str = "USD", presentment: str | None = None,
             payments: tuple[tuple[int, str], ...] = (),
             credit_memos: tuple[CreditMemoDocument, ...] = (), gateways: tuple[str, ...] = ()) -> OrderDocument:
    return OrderDocument(
        shopify_order_id=order_id, order_name=f"#{order_id}", currency=currency,
        total=sum((p.amount for p in order_parts), D("0.00")), presentment_currency=presentment,
        parts=order_parts, payments=tuple((i, D(a)) for i, a in payments), sales_order_number=sales_order,
        credit_memos=credit_memos, gateways=gateways)


def read(header: PayoutHeader, transactions: list[BalanceTransaction], *, page_size: int = 250,
         read_id: UUID | None = None, at: datetime = NOW) -> list[TransactionsRead | PayoutObserved]:
    """The facts of one read of a payout: its pages of transactions, then the payout."""
    read_id = read_id or uuid4()
    pages = [TransactionsRead(payout_id=header.payout_id, read_id=read_id, page=n + 1,
                              transactions=tuple(transactions[i:i + page_size]))
             for n, i in enumerate(range(0, len(transactions), page_size))]
    return [*pages, PayoutObserved(payout_id=header.payout_id, read_id=read_id, header=header,
                                   transaction_count=len(transactions),
                                   transactions_digest=transactions_digest(t.transaction_id for t in transactions),
                                   observed_at=at)]


def sample_rest() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Shopify's sample payout and its balance transactions, as published (REST shape)."""
    return json.loads(SAMPLE_PAYOUT.read_text())["payout"], json.loads(SAMPLE_TRANSACTIONS.read_text())["transactions"]


def sample() -> tuple[PayoutHeader, list[BalanceTransaction]]:
    """Shopify's sample as the Payout aggregate sees it (through the sandbox's REST-to-GraphQL
    mapping of types, as the Shopify sandbox serves it)."""
    from sandboxes.shopify.payouts import PayoutBook

    rest_payout, rest_transactions = sample_rest()
    book = PayoutBook()
    seeded = book.add({"payout": rest_payout, "transactions": rest_transactions})
    header = PayoutHeader(payout_id=seeded.num, status=seeded.status, issued_at=seeded.issued_at,
                          net=Money(seeded.net, seeded.currency))
    transactions = [BalanceTransaction(
        transaction_id=t.num, type=t.type, amount=Money(t.amount, t.currency), fee=Money(t.fee, t.currency),
        net=Money(t.net, t.currency), processed_at=t.processed_at, source_type=t.source_type, source_id=t.source_id,
        source_order_transaction_id=t.source_order_transaction_id, order_id=t.order_num, order_name=t.order_name)
        for t in book.transaction_order()]
    return header, transactions
