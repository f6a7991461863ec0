"""Given-when-then on the Payouts the payout application keeps in memory between batches (on the
eventsourcing library's in-memory persistence): a payout read in many pages is not replayed from
the event store for every page, and yet decides exactly as one loaded from the store; a kept
Payout is brought up to date with events another writer stored; a batch whose save is refused
(a version conflict) drops it, and the batch delivered again decides from the store."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError

from domain.payouts.application import PayoutApplication
from domain.payouts.domainmodel import Payout, PayoutPolicy, PayoutState
from domain.payouts.values import PayoutReleaseRequested
from tests.payouts.builders import NOW, D, document, parts, payout, read, transfer, tx

POLICY = PayoutPolicy()
ORDERS = {n: document(n, parts("9.00", taxes=(("VAT", "0.20", "1.80"),)), sales_order=f"SO-{n:06d}")
          for n in range(1, 601)}


def lookup(asked: list[set[int]] | None = None):
    def documents_for(ids: set[int]):
        if asked is not None:
            asked.append(set(ids))
        return {i: ORDERS[i] for i in ids if i in ORDERS}
    return documents_for


def a_payout(payout_id: int = 700_001, charges: int = 600):
    transactions = [tx("CHARGE", "10.80", "0.35", order=n) for n in range(1, charges + 1)]
    header = payout(str(D("10.45") * charges), payout_id=payout_id)
    return header, [*transactions, transfer(header)]


def stored_events(app: PayoutApplication, payout_id: int) -> list[str]:
    return [type(e).__name__ for e in app.events.get(Payout.create_id(payout_id))]


def journal_lines(app: PayoutApplication, payout_id: int) -> list[tuple]:
    found = app.find_payout(payout_id)
    return [(line.category, line.account, line.debit, line.credit) for line in found.command.journal.lines]


@pytest.fixture
def app():
    application = PayoutApplication()
    yield application
    application.close()


def test_given_a_payout_read_in_many_batches_when_kept_then_no_batch_replays_the_pages_before_it(app):
    header, transactions = a_payout()
    facts = read(header, transactions, page_size=50)  # 13 pages, then the payout
    asked: list[set[int]] = []

    for fact in facts:
        app.handle([fact], lookup(asked), POLICY, NOW)

    assert app.load_stats.events == 0  # every batch after the first found the Payout kept
    assert app.find_payout(700_001).state is PayoutState.JOURNAL_REQUESTED
    assert asked == [set(range(1, 601))]  # the documents asked once, when the read ended


def test_given_the_same_read_kept_or_loaded_each_time_then_the_same_events_and_journal(app):
    header, transactions = a_payout()
    facts = read(header, transactions, page_size=50)
    loading = PayoutApplication(kept=0)
    try:
        for fact in facts:
            app.handle([fact], lookup(), POLICY, NOW)
            loading.handle([fact], lookup(), POLICY, NOW)

        assert loading.load_stats.events > 0 and not loading.kept
        assert stored_events(app, 700_001) == stored_events(loading, 700_001)
        assert journal_lines(app, 700_001) == journal_lines(loading, 700_001) == [
            ("bank", "1010", D("6270.00"), D("0.00")), ("sales", "4000", D("0.00"), D("5400.00")),
            ("tax", "2200", D("0.00"), D("1080.00")), ("processing_fees", "6100", D("210.00"), D("0.00"))]
    finally:
        loading.close()


def test_given_a_kept_payout_when_a_batch_is_delivered_again_then_nothing_changes(app):
    header, transactions = a_payout(charges=100)
    facts = read(header, transactions, page_size=50)
    for fact in facts:
        app.handle([fact], lookup(), POLICY, NOW)
    before = stored_events(app, 700_001)

    for fact in facts:  # every page and the end of the read, again
        assert app.handle([fact], lookup(), POLICY, NOW).saved == 0
    again = app.handle(facts, lookup(), POLICY, NOW)

    assert again.saved == 0 and again.journals_requested == []
    assert stored_events(app, 700_001) == before
    assert app.find_payout(700_001).commands_issued == 1


def test_given_events_stored_by_another_writer_the_kept_payout_is_brought_up_to_date_before_deciding(app):
    header, transactions = a_payout(charges=100)
    first, second, observed = read(header, transactions, page_size=60)
    app.handle([first], lookup(), POLICY, NOW)
    other = app.find_payout(700_001)  # another writer (a decider after a rebalance) records page 2
    other.record_transactions(second)
    app.save(other)
    read_before = app.load_stats.events

    result = app.handle([observed], lookup(), POLICY, NOW)

    assert app.load_stats.events - read_before == 1  # the kept Payout read only the other writer's event
    assert result.journals_requested == [700_001] and result.held == []  # both pages: the read is whole
    assert stored_events(app, 700_001) == ["PayoutOpened", "TransactionsRead", "TransactionsRead", "PayoutObserved",
                                           "TransactionsMatched", "JournalRequested"]


def test_given_a_version_conflict_then_the_batch_fails_and_delivered_again_decides_from_the_store(app):
    header, transactions = a_payout(charges=100)
    *pages, observed = read(header, transactions, page_size=60)
    app.handle(pages, lookup(), POLICY, NOW)
    aggregate_id = Payout.create_id(700_001)
    assert aggregate_id in app.kept

    def a_writer_in_between(ids: set[int]):
        other = app.find_payout(700_001)  # stores the same read's end while this batch decides
        other.observe(observed)
        app.save(other)
        return lookup()(ids)

    with pytest.raises(IntegrityError):
        app.handle([observed], a_writer_in_between, POLICY, NOW)
    assert aggregate_id not in app.kept  # changed in memory, refused by the store: dropped

    result = app.handle([observed], lookup(), POLICY, NOW)  # the consumer's retry

    assert result.journals_requested == [700_001]
    assert stored_events(app, 700_001) == ["PayoutOpened", "TransactionsRead", "TransactionsRead", "PayoutObserved",
                                           "TransactionsMatched", "JournalRequested"]


def test_given_a_batch_that_fails_before_its_save_then_its_payouts_are_not_kept(app):
    header, transactions = a_payout(charges=100)
    *pages, observed = read(header, transactions, page_size=60)
    app.handle(pages, lookup(), POLICY, NOW)

    def unavailable(ids: set[int]):
        raise ConnectionError("the sales-documents read model is unavailable")

    with pytest.raises(ConnectionError):
        app.handle([observed], unavailable, POLICY, NOW)
    assert Payout.create_id(700_001) not in app.kept
    assert stored_events(app, 700_001)[-1] == "TransactionsRead"  # nothing of the failed batch stored

    assert app.handle([observed], lookup(), POLICY, NOW).journals_requested == [700_001]


def test_only_the_most_recently_used_payouts_are_kept():
    app = PayoutApplication(kept=2)
    try:
        for payout_id in (700_001, 700_002, 700_003):
            header, transactions = a_payout(payout_id, charges=2)
            app.handle(read(header, transactions), lookup(), POLICY, NOW)
        app.handle([PayoutReleaseRequested(payout_id=700_002, released_by="ops", requested_at=NOW)], lookup(), POLICY, NOW)

        assert list(app.kept) == [Payout.create_id(700_003), Payout.create_id(700_002)]
    finally:
        app.close()
