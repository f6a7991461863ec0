"""The payout flow's edge: wire contracts in and out of the domain's own values.

In: the ingest's facts (shopify.payouts.v1) become TransactionsRead and PayoutObserved; Prima's
journal outcomes (prima.outcomes.v1) become JournalPostedByPrima and the like; the operator's
RematchPayout and ReleasePayout the requests. Out: the Payout's events become the payout-events
messages, and its JournalRequest the PostJournal command Prima's gateway sends. A new wire
version changes this module, not the event store.
"""

from __future__ import annotations

from contracts.money import Money as WireMoney
from contracts.payouts import events as wire
from contracts.platform import ReleasePayout, RematchPayout
from contracts.prima import journals as prima
from contracts.shopify import payouts as shopify
from domain.payouts import values as domain
from domain.shared.money import Money

# ------------------------------------------------------------------------------------- in


def money(value: WireMoney) -> Money:
    return Money(value.amount, value.currency)


def transaction(t: shopify.ShopifyBalanceTransaction) -> domain.BalanceTransaction:
    return domain.BalanceTransaction(
        transaction_id=t.id, type=t.type, amount=money(t.amount), fee=money(t.fee), net=money(t.net),
        processed_at=t.transaction_date, test=t.test, source_type=t.source_type, source_id=t.source_id,
        source_order_transaction_id=t.source_order_transaction_id, order_id=t.order_id, order_name=t.order_name,
        adjustment_reason=t.adjustment_reason)


SUMMARY_PAIRS = (("charges", "charges_gross", "charges_fee"), ("refunds", "refunds_gross", "refunds_fee"),
                 ("adjustments", "adjustments_gross", "adjustments_fee"),
                 ("reserved_funds", "reserved_funds_gross", "reserved_funds_fee"),
                 ("retried_payouts", "retried_payouts_gross", "retried_payouts_fee"),
                 ("advance", "advance_gross", "advance_fee"))


def header(p: shopify.ShopifyPayout) -> domain.PayoutHeader:
    summary = ()
    if p.summary is not None:
        summary = tuple(domain.SummaryPair(category=name, gross=getattr(p.summary, gross).amount,
                                           fee=getattr(p.summary, fee).amount)
                        for name, gross, fee in SUMMARY_PAIRS)
    return domain.PayoutHeader(payout_id=p.id, status=p.status, issued_at=p.issued_at, net=money(p.net),
                               transaction_type=p.transaction_type, summary=summary)


def transactions_read(m: shopify.ShopifyPayoutTransactionsRead) -> domain.TransactionsRead:
    return domain.TransactionsRead(payout_id=m.payout_id, read_id=m.read_id, page=m.page,
                                   transactions=tuple(transaction(t) for t in m.transactions))


def observed(m: shopify.ShopifyPayoutObserved) -> domain.PayoutObserved:
    return domain.PayoutObserved(payout_id=m.payout.id, read_id=m.read_id, header=header(m.payout),
                                 transaction_count=m.transaction_count, transactions_digest=m.transactions_digest,
                                 observed_at=m.observed_at)


def outcome(m: prima.PrimaJournalPosted | prima.PrimaJournalRejected | prima.PrimaJournalParked
            ) -> domain.JournalOutcome:
    if isinstance(m, prima.PrimaJournalPosted):
        return domain.JournalPostedByPrima(command_id=m.command_id, payout_id=m.payout_id,
                                           journal_number=m.journal_number, occurred_at=m.occurred_at)
    if isinstance(m, prima.PrimaJournalRejected):
        return domain.JournalRejectedByPrima(command_id=m.command_id, payout_id=m.payout_id,
                                             status_code=m.status_code, code=m.code, reason=m.reason,
                                             occurred_at=m.occurred_at)
    return domain.JournalParkedByGateway(command_id=m.command_id, payout_id=m.payout_id, attempts=m.attempts,
                                         reason=m.reason, occurred_at=m.occurred_at)


def rematch(m: RematchPayout, payout_id: int) -> domain.RematchRequested:
    return domain.RematchRequested(payout_id=payout_id, requested_by=m.requested_by, requested_at=m.requested_at)


def release(m: ReleasePayout) -> domain.PayoutReleaseRequested:
    return domain.PayoutReleaseRequested(payout_id=m.payout_id, released_by=m.requested_by,
                                         requested_at=m.requested_at)


# ------------------------------------------------------------------------------------ out


def wire_money(value: Money) -> WireMoney:
    return WireMoney(amount=value.amount, currency=value.currency)


def wire_transaction(t: domain.BalanceTransaction) -> wire.PayoutTransaction:
    return wire.PayoutTransaction(
        transaction_id=t.transaction_id, type=t.type, amount=wire_money(t.amount), fee=wire_money(t.fee),
        net=wire_money(t.net), processed_at=t.processed_at, test=t.test, source_type=t.source_type,
        source_id=t.source_id, source_order_transaction_id=t.source_order_transaction_id, order_id=t.order_id,
        order_name=t.order_name, adjustment_reason=t.adjustment_reason)


def wire_match(m: domain.Match) -> wire.TransactionMatch:
    return wire.TransactionMatch(transaction_id=m.transaction_id, status=m.status, document=m.document,
                                 document_kind=m.document_kind, order_id=m.order_id, reason=m.reason,
                                 detail=m.detail)


def wire_summary(pairs: tuple[domain.SummaryPair, ...]) -> list[wire.SummaryPair]:
    return [wire.SummaryPair(category=p.category, gross=p.gross, fee=p.fee) for p in pairs]


def wire_command(request: domain.JournalRequest) -> prima.PostJournal:
    journal = request.journal
    return prima.PostJournal(
        command_id=request.command_id, idempotency_key=request.idempotency_key, payout_id=request.payout_id,
        issued_at=request.issued_at,
        journal=prima.JournalDraft(
            external_reference=journal.external_reference, journal_date=journal.journal_date.date(),
            currency=journal.currency, description=journal.description, reverses=journal.reverses,
            lines=tuple(prima.JournalLine(line_number=line.line_number, account=line.account,
                                          description=line.description, debit=line.debit, credit=line.credit,
                                          tax_code=line.tax_code) for line in journal.lines)))
