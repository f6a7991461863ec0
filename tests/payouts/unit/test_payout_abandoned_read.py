"""Given-when-then on reads the payout ingest publishes as it reads (services/payouts/ingest.py
PublishedRead): each page as soon as it is read, the payout (its end) after the last. The Payout
decides only on a read that ended; a read the ingest abandoned (it crashed mid-read: pages of
read A, never its end) is superseded by the next read (B) without counting A's transactions, and
A's pages delivered again after B (a batch redelivered across both reads) change nothing."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.payouts.application import PayoutApplication
from domain.payouts.domainmodel import Payout, PayoutPolicy, PayoutState
from tests.payouts.builders import NOW, D, document, parts, payout, read, transfer, tx

POLICY = PayoutPolicy()
ORDERS = {n: document(n, parts("9.00", taxes=(("VAT", "0.20", "1.80"),)), sales_order=f"SO-{n:06d}")
          for n in range(1, 401)}


def lookup(ids: set[int]):
    return {i: ORDERS[i] for i in ids if i in ORDERS}


def a_payout(charges: int = 400):
    """A paid payout of `charges` charges of 10.80 (fee 0.35) and its transfer."""
    header = payout(str(D("10.45") * charges))
    return header, [*[tx("CHARGE", "10.80", "0.35", order=n) for n in range(1, charges + 1)], transfer(header)]


def stored_events(app: PayoutApplication) -> list[str]:
    return [type(e).__name__ for e in app.events.get(Payout.create_id(700_001))]


def journal(app: PayoutApplication) -> list[tuple]:
    found = app.find_payout(700_001)
    return [(line.category, line.debit, line.credit) for line in found.command.journal.lines]


EXPECTED = [("bank", D("4180.00"), D("0.00")), ("sales", D("0.00"), D("3600.00")), ("tax", D("0.00"), D("720.00")),
            ("processing_fees", D("140.00"), D("0.00"))]


@pytest.fixture
def app():
    application = PayoutApplication()
    yield application
    application.close()


def test_given_a_reads_pages_each_in_its_own_batch_before_its_end_then_the_journal_follows_its_end(app):
    header, transactions = a_payout()
    *pages, end = read(header, transactions, page_size=100)

    for page in pages:
        result = app.handle([page], lookup, POLICY, NOW)
        assert result.journals_requested == [] and result.held == []
        assert app.find_payout(700_001).state is PayoutState.READING

    assert app.handle([end], lookup, POLICY, NOW).journals_requested == [700_001]
    assert journal(app) == EXPECTED


def test_given_a_read_abandoned_mid_read_when_the_next_read_ends_then_one_journal_without_double_counting(app):
    header, transactions = a_payout()
    # read A: the ingest crashed after publishing 3 of its 5 pages; one of them lists a charge that
    # Shopify's next listing no longer has (it must not count)
    gone = tx("CHARGE", "99.00", "3.00", order=1)
    abandoned = read(header, [*transactions[:250], gone], page_size=100)[:3]
    for page in abandoned:
        assert app.handle([page], lookup, POLICY, NOW).journals_requested == []

    # read B, whole, page by page
    *pages, end = read(header, transactions, page_size=100)
    for page in pages:
        assert app.handle([page], lookup, POLICY, NOW).journals_requested == []
    result = app.handle([end], lookup, POLICY, NOW)

    assert result.journals_requested == [700_001] and result.held == []
    found = app.find_payout(700_001)
    assert [t.transaction_id for t in found.current_transactions()] == sorted(t.transaction_id for t in transactions)
    assert journal(app) == EXPECTED  # A's pages (and its extra charge) counted nowhere
    assert stored_events(app).count("JournalRequested") == 1


def test_given_an_abandoned_read_and_the_next_one_when_the_batch_spanning_both_is_delivered_again_then_nothing_changes(
        app):
    header, transactions = a_payout()
    abandoned = read(header, transactions, page_size=100)[:2]
    full = read(header, transactions, page_size=100)
    app.handle(abandoned, lookup, POLICY, NOW)
    app.handle(full, lookup, POLICY, NOW)
    stored = stored_events(app)
    assert stored.count("JournalRequested") == 1

    # the decider saved the batch but crashed before committing its offsets: Kafka delivers the
    # pages of A and the whole of B again
    again = app.handle([*abandoned, *full], lookup, POLICY, NOW)

    assert again.saved == 0 and again.journals_requested == []
    assert stored_events(app) == stored
    assert app.find_payout(700_001).state is PayoutState.JOURNAL_REQUESTED


def test_given_a_journalled_payout_when_an_earlier_reads_pages_arrive_again_later_then_it_is_still_decided_on_the_last(
        app):
    header, transactions = a_payout()
    first = read(header, transactions, page_size=100)
    app.handle(first, lookup, POLICY, NOW)
    second = read(header, transactions, page_size=100, read_id=uuid4())
    app.handle(second, lookup, POLICY, NOW)
    stored = stored_events(app)

    for page in first[:-1]:  # the first read's pages delivered again, one batch each
        assert app.handle([page], lookup, POLICY, NOW).saved == 0

    found = app.find_payout(700_001)
    assert stored_events(app) == stored and found.read_ended
    assert found.state is PayoutState.JOURNAL_REQUESTED and journal(app) == EXPECTED
