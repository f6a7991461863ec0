"""Given-when-then on the Payout aggregate and the payout application, on the eventsourcing
library's in-memory persistence: reads in, one journal out (or an exception), Prima's answers,
re-matching, releases, reversals."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import pytest

from domain.payouts.application import PayoutApplication
from domain.payouts.domainmodel import Payout, PayoutPolicy, PayoutState
from domain.payouts.values import (
    CANCELED,
    FAILED,
    IN_TRANSIT,
    JournalParkedByGateway,
    JournalPostedByPrima,
    JournalRejectedByPrima,
    PayoutReleaseRequested,
    RematchRequested,
)
from tests.payouts.builders import (
    NOW,
    D,
    document,
    parts,
    payout,
    read,
    sample,
    transfer,
    tx,
)

ORDER = document(1001, parts("100.00", shipping="10.00", taxes=(("VAT", "0.08", "8.80"),)))
POLICY = PayoutPolicy()


@pytest.fixture
def app():
    application = PayoutApplication()
    yield application
    application.close()


def documents(*docs):
    found = {d.shopify_order_id: d for d in docs}
    asked: list[set[int]] = []

    def lookup(ids: set[int]):
        asked.append(set(ids))
        return {i: found[i] for i in ids if i in found}

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


def events(app: PayoutApplication, payout_id: int) -> list[str]:
    aggregate = app.repository.get(Payout.create_id(payout_id))
    return [type(e).__name__ for e in app.repository.event_store.get(aggregate.id)]


def simple(payout_id: int = 700_001, status: str = "PAID"):
    header = payout("115.04", payout_id=payout_id, status=status)
    return header, [tx("CHARGE", "118.80", "3.76", order=1001), transfer(header)]


def posted(app: PayoutApplication, payout_id: int, number: str = "JN-000001") -> JournalPostedByPrima:
    found = app.find_payout(payout_id)
    return JournalPostedByPrima(command_id=found.command.command_id, payout_id=payout_id, journal_number=number,
                                occurred_at=NOW + timedelta(seconds=1))


# ------------------------------------------------------------------------------ one journal


def test_given_a_paid_payout_read_whole_when_handled_then_one_journal_is_requested(app):
    header, transactions = simple()
    lookup = documents(ORDER)

    result = app.handle(read(header, transactions), lookup, POLICY, NOW)

    assert result.journals_requested == [700_001] and result.saved == 1
    assert events(app, 700_001) == ["PayoutOpened", "TransactionsRead", "PayoutObserved", "TransactionsMatched",
                                    "JournalRequested"]
    found = app.find_payout(700_001)
    assert found.state is PayoutState.JOURNAL_REQUESTED
    assert found.command.idempotency_key == "shopify-prima:post-journal:700001"
    assert found.command.journal.total_debit == found.command.journal.total_credit == D("118.80")
    assert lookup.asked == [{1001}]  # one look-up of the documents for the batch
    assert {m.transaction_id: m.status for m in found.matches.values()} == {
        transactions[0].transaction_id: "matched", transactions[1].transaction_id: "not_applicable"}


def test_given_the_same_read_again_then_nothing_is_recorded(app):
    header, transactions = simple()
    facts = read(header, transactions)
    app.handle(facts, documents(ORDER), POLICY, NOW)

    again = app.handle(facts, documents(ORDER), POLICY, NOW)

    assert again.saved == 0 and again.journals_requested == []


def test_given_a_new_read_of_a_journalled_payout_then_no_second_journal(app):
    header, transactions = simple()
    app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)
    app.handle([posted(app, 700_001)], documents(ORDER), POLICY, NOW)

    result = app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)

    assert result.journals_requested == []
    found = app.find_payout(700_001)
    assert found.commands_issued == 1 and found.state is PayoutState.JOURNALLED


def test_given_an_in_transit_payout_it_waits_for_paid_unless_configured(app):
    header, transactions = simple(status=IN_TRANSIT)
    app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)
    assert app.find_payout(700_001).state is PayoutState.AWAITING_PAID

    result = app.handle(read(replace(header, status="PAID"), transactions), documents(ORDER), POLICY, NOW)
    assert result.journals_requested == [700_001]

    header2, transactions2 = simple(payout_id=700_002, status=IN_TRANSIT)
    eager = PayoutPolicy(journal_on=frozenset({"PAID", "IN_TRANSIT"}))
    assert app.handle(read(header2, transactions2), documents(ORDER), eager, NOW).journals_requested == [700_002]


def test_given_pages_in_several_batches_nothing_is_decided_until_the_read_ends(app):
    header = payout("300.00")
    transactions = [tx("CHARGE", "1.00") for _ in range(300)]
    facts = read(header, transactions, page_size=100)
    no_wait = PayoutPolicy(documents_grace=timedelta(0))  # orders never seen: straight to the clearing account
    for page in facts[:-1]:
        result = app.handle([page], documents(), no_wait, NOW)
        assert result.journals_requested == [] and result.held == []  # no hold while it is read
    assert app.handle(facts[-1:], documents(), no_wait, NOW).journals_requested == [700_001]
    journal = app.find_payout(700_001).command.journal
    assert [(line.category, line.credit) for line in journal.lines if line.credit] == [("unmatched_charges", D("300.00"))]


def test_given_an_end_of_read_whose_pages_did_not_all_arrive_then_it_is_held_as_incomplete(app):
    header, transactions = simple()
    facts = read(header, [*transactions, tx("ADJUSTMENT", "0.00")], page_size=1)
    result = app.handle([facts[0], facts[1], facts[3]], documents(ORDER), POLICY, NOW)  # page 3 lost
    assert result.held == [(700_001, "incomplete")] and result.journals_requested == []
    assert "listed 3 transactions; 2 held" in app.find_payout(700_001).hold[1]
    # read again, whole: the hold is resolved and the journal requested
    result = app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)
    assert result.journals_requested == [700_001]


# ------------------------------------------------------------------------------ exceptions


def test_given_the_shared_sample_that_does_not_add_up_then_it_is_held_and_never_journalled(app):
    header, transactions = sample()

    result = app.handle(read(header, transactions), documents(), POLICY, NOW)

    assert result.held == [(header.payout_id, "does_not_add_up")] and result.journals_requested == []
    found = app.find_payout(header.payout_id)
    assert found.state is PayoutState.HELD and found.command is None
    assert found.hold[2] == D("39.48")
    # the same read again: held once, not again
    assert app.handle(read(header, transactions), documents(), POLICY, NOW).held == []
    assert events(app, header.payout_id).count("PayoutHeld") == 1
    # its transactions are still matched, so the reconciliation lists what stands behind them
    assert len(found.matches) == len(transactions)


def test_given_a_held_payout_whose_next_read_adds_up_then_the_hold_resolves_and_the_journal_follows(app):
    header, transactions = simple()
    short = [transactions[0], tx("ADJUSTMENT", "-1.00")]
    app.handle(read(header, short), documents(ORDER), POLICY, NOW)
    assert app.find_payout(700_001).state is PayoutState.HELD

    result = app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)

    assert result.journals_requested == [700_001]
    assert "JournalRequested" in events(app, 700_001)


def test_given_an_unknown_transaction_type_then_held_until_released_after_the_table_knows_it(app, monkeypatch):
    header = payout("10.00")
    app.handle(read(header, [tx("BRAND_NEW_CREDIT", "10.00")]), documents(), POLICY, NOW)
    assert app.find_payout(700_001).hold[0] == "unmapped_transaction_type"

    from domain.payouts import categories
    from domain.payouts.categories import Category

    monkeypatch.setitem(categories.TRANSACTION_TYPES, "BRAND_NEW_CREDIT", (Category.ADJUSTMENTS,
                                                                           Category.PROCESSING_FEES))
    released = PayoutReleaseRequested(payout_id=700_001, released_by="ops", requested_at=NOW)
    result = app.handle([released], documents(), POLICY, NOW)
    assert result.releases == [(700_001, "awaiting_paid")] and result.journals_requested == [700_001]


# ------------------------------------------------------------------------------ Prima's answers


def test_given_prima_posts_the_journal_then_journalled_with_its_number_and_the_time_since_paid(app):
    header, transactions = simple()
    app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)

    result = app.handle([posted(app, 700_001, "JN-000042")], documents(ORDER), POLICY, NOW)

    found = app.find_payout(700_001)
    assert (found.state, found.journal_number) == (PayoutState.JOURNALLED, "JN-000042")
    assert result.posted_after == [1.0]
    assert app.handle([posted(app, 700_001, "JN-000042")], documents(ORDER), POLICY, NOW).saved == 0  # repeated


def test_given_a_rejection_then_a_release_decides_a_new_journal_under_the_payouts_key(app):
    header, transactions = simple()
    app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)
    first = app.find_payout(700_001).command
    rejected = JournalRejectedByPrima(command_id=first.command_id, payout_id=700_001, status_code=422,
                                      code="unknown_account", reason="account 4000 unknown", occurred_at=NOW)
    app.handle([rejected], documents(ORDER), POLICY, NOW)
    assert app.find_payout(700_001).state is PayoutState.JOURNAL_FAILED

    result = app.handle([PayoutReleaseRequested(700_001, "ops", NOW)], documents(ORDER), POLICY, NOW)

    second = app.find_payout(700_001).command
    assert result.journals_requested == [700_001]
    assert second.command_id != first.command_id and second.idempotency_key == first.idempotency_key


def test_given_a_parked_journal_a_release_sends_the_same_command_and_the_answer_is_taken(app):
    header, transactions = simple()
    app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)
    command = app.find_payout(700_001).command
    parked = JournalParkedByGateway(command_id=command.command_id, payout_id=700_001, attempts=5, reason="HTTP 503",
                                    occurred_at=NOW)
    app.handle([parked], documents(ORDER), POLICY, NOW)
    assert app.find_payout(700_001).state is PayoutState.JOURNAL_FAILED

    app.handle([PayoutReleaseRequested(700_001, "ops", NOW)], documents(ORDER), POLICY, NOW)
    assert app.find_payout(700_001).command == command  # never a second journal

    app.handle([posted(app, 700_001)], documents(ORDER), POLICY, NOW)
    assert app.find_payout(700_001).state is PayoutState.JOURNALLED


def test_given_an_outcome_of_another_command_it_is_ignored(app):
    header, transactions = simple()
    app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)
    stranger = JournalPostedByPrima(command_id=uuid4(), payout_id=700_001, journal_number="JN-9", occurred_at=NOW)
    assert app.handle([stranger], documents(ORDER), POLICY, NOW).saved == 0


# ------------------------------------------------------------------------------ failed payouts


def test_given_a_journalled_payout_that_fails_then_a_reversing_journal_is_requested_once(app):
    header, transactions = simple()
    app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)
    app.handle([posted(app, 700_001, "JN-000007")], documents(ORDER), POLICY, NOW)

    app.handle(read(replace(header, status=FAILED), transactions), documents(ORDER), POLICY, NOW)

    found = app.find_payout(700_001)
    assert found.state is PayoutState.REVERSAL_REQUESTED
    journal, undo = found.command.journal, found.reversal.journal
    assert undo.reverses == "JN-000007" and found.reversal.idempotency_key == "shopify-prima:reverse-journal:700001"
    assert [(line.debit, line.credit) for line in undo.lines] == [(line.credit, line.debit) for line in journal.lines]
    app.handle(read(replace(header, status=FAILED), transactions), documents(ORDER), POLICY, NOW)
    assert events(app, 700_001).count("ReversalRequested") == 1

    reversed_ = JournalPostedByPrima(command_id=found.reversal.command_id, payout_id=700_001,
                                     journal_number="JN-000008", occurred_at=NOW)
    app.handle([reversed_], documents(ORDER), POLICY, NOW)
    found = app.find_payout(700_001)
    assert (found.state, found.journal_number, found.reversal_number) == (PayoutState.REVERSED, "JN-000007",
                                                                          "JN-000008")


def test_given_a_payout_that_fails_while_its_journal_is_on_the_way_then_it_is_reversed_once_posted(app):
    header, transactions = simple()
    app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)
    app.handle(read(replace(header, status=CANCELED), transactions), documents(ORDER), POLICY, NOW)
    assert app.find_payout(700_001).reversal is None  # nothing posted yet to reverse

    app.handle([posted(app, 700_001)], documents(ORDER), POLICY, NOW)

    assert app.find_payout(700_001).state is PayoutState.REVERSAL_REQUESTED


def test_given_a_payout_that_fails_before_any_journal_then_nothing_is_posted(app):
    header, transactions = simple(status=IN_TRANSIT)
    app.handle(read(header, transactions), documents(ORDER), POLICY, NOW)

    result = app.handle(read(replace(header, status=FAILED), transactions), documents(ORDER), POLICY, NOW)

    found = app.find_payout(700_001)
    assert result.journals_requested == [] and found.state is PayoutState.FAILED and found.command is None


# ------------------------------------------------------------------------------ matching again


def test_given_an_unmatched_charge_when_its_sales_order_exists_a_rematch_matches_it(app):
    header, transactions = simple()
    not_yet = replace(ORDER, sales_order_number=None)
    app.handle(read(header, transactions), documents(not_yet), POLICY, NOW)
    found = app.find_payout(700_001)
    assert found.unmatched == 1
    assert found.matches[transactions[0].transaction_id].reason == "no_sales_order"

    result = app.handle([RematchRequested(700_001, "ops", NOW)], documents(ORDER), POLICY, NOW)

    assert result.matches_changed == 1 and app.find_payout(700_001).unmatched == 0
    assert app.handle([RematchRequested(700_001, "sweep", NOW)], documents(ORDER), POLICY, NOW).saved == 0


def test_given_a_charge_whose_order_is_not_known_yet_the_journal_waits_for_it_and_then_carries_it_in_full(app):
    """Regression: a payout decided before its charge's order reached the sales documents was
    journalled with the whole charge on the clearing account, and a later match showed it as
    reconciled while sales and tax stayed understated."""
    header, transactions = simple()
    waiting = PayoutPolicy(documents_grace=timedelta(hours=1))
    # Given the payout read and paid while its order is not known yet
    result = app.handle(read(header, transactions), documents(), waiting, NOW)
    # Then no journal yet: the charge is listed unmatched, awaiting its order
    assert result.journals_requested == [] and app.find_payout(700_001).unmatched == 1
    # When the order's documents arrive within the grace, the sweep's re-match journals it in full
    result = app.handle([RematchRequested(700_001, "sweep", NOW + timedelta(minutes=5))], documents(ORDER), waiting,
                        NOW + timedelta(minutes=5))
    assert result.journals_requested == [700_001]
    journal = app.find_payout(700_001).command.journal
    assert "unmatched_charges" not in {line.category for line in journal.lines}
    assert app.find_payout(700_001).unmatched == 0


def test_given_a_charge_whose_order_never_comes_the_journal_carries_it_on_the_clearing_account_after_the_grace(app):
    header, transactions = simple()
    waiting = PayoutPolicy(documents_grace=timedelta(hours=1))
    assert app.handle(read(header, transactions), documents(), waiting, NOW).journals_requested == []
    later = NOW + timedelta(hours=1, seconds=1)
    result = app.handle([RematchRequested(700_001, "sweep", later)], documents(), waiting, later)
    assert result.journals_requested == [700_001]
    journal = app.find_payout(700_001).command.journal
    assert "unmatched_charges" in {line.category for line in journal.lines}


def test_a_payout_of_ten_thousand_transactions_in_forty_pages_gives_one_balanced_journal(app):
    orders = [document(n, parts("9.00", taxes=(("VAT", "0.20", "1.80"),)), sales_order=f"SO-{n:06d}")
              for n in range(1, 10_001)]
    transactions = [tx("CHARGE", "10.80", "0.35", order=n) for n in range(1, 10_001)]
    header = payout("104500.00")
    result = app.handle(read(header, transactions), documents(*orders), POLICY, NOW)
    assert result.journals_requested == [700_001]
    found = app.find_payout(700_001)
    assert [(line.category, line.debit, line.credit) for line in found.command.journal.lines] == [
        ("bank", D("104500.00"), D("0.00")), ("sales", D("0.00"), D("90000.00")), ("tax", D("0.00"), D("18000.00")),
        ("processing_fees", D("3500.00"), D("0.00"))]
    assert found.unmatched == 0 and len(found.matches) == 10_000
