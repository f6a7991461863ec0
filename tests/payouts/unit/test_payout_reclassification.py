"""Given-when-then on reclassification journals: a payout whose journal, once posted, carried
charges on the unmatched-charges clearing account (their orders unknown after the grace) gets one
more journal moving each charge off it once it is matched, split as the journal would have split
it (domain/payouts/split.py), never changing the posted journal."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import TypeAdapter

from contracts.payouts.events import PayoutEvent
from contracts.prima.journals import PostJournal
from contracts.topics import PAYOUT_EVENTS, PRIMA_COMMANDS
from domain.payouts.application import PayoutApplication
from domain.payouts.domainmodel import Payout, PayoutPolicy, PayoutState
from domain.payouts.values import (
    FAILED,
    JournalParkedByGateway,
    JournalPostedByPrima,
    JournalRejectedByPrima,
    PayoutReleaseRequested,
    RematchRequested,
)
from services.payouts.outbox import PAYOUT_RELAY
from services.platform.outbox import Relay
from services.platform.settings import Settings
from tests.payouts.builders import NOW, D, document, parts, payout, read, transfer, tx

KNOWN = document(1001, parts("100.00", shipping="10.00", taxes=(("VAT", "0.08", "8.80"),)))
# Order 1002 (total 50.00: sales 40.00, shipping 10.00, discount 4.00, VAT 4.00) was paid in two
# charges; the one in this payout is payment transaction 9002 of 10.01.
LATE = document(1002, parts("40.00", shipping="10.00", discounts="4.00", taxes=(("VAT", "0.08", "4.00"),)),
                sales_order="SO-000002", payments=((9002, "10.01"),))
NO_WAIT = PayoutPolicy(documents_grace=timedelta(0))  # orders not known: straight to the clearing account
LATER = NOW + timedelta(hours=2)


@pytest.fixture
def app():
    application = PayoutApplication()
    yield application
    application.close()


def known(*docs):
    found = {d.shopify_order_id: d for d in docs}
    return lambda ids: {i: found[i] for i in ids if i in found}


def lines(journal) -> list[tuple[str, str, str, str, str | None]]:
    return [(line.category, line.account, str(line.debit), str(line.credit), line.tax_code) for line in journal.lines]


def journalled_with_a_charge_on_clearing(app: PayoutApplication):
    """Payout 700001: charge 118.80 (fee 3.76) of order 1001, known; charge 10.01 (fee 0.59) of
    order 1002, not known when it is journalled. Net 124.46. Prima posted its journal JN-000001."""
    header = payout("124.46")
    transactions = [tx("CHARGE", "118.80", "3.76", order=1001),
                    tx("CHARGE", "10.01", "0.59", order=1002, source_transaction=9002), transfer(header)]
    app.handle(read(header, transactions), known(KNOWN), NO_WAIT, NOW)
    found = app.find_payout(700_001)
    clearing = [line for line in found.command.journal.lines if line.category == "unmatched_charges"]
    assert [(str(line.debit), str(line.credit)) for line in clearing] == [("0.00", "10.01")]
    app.handle([JournalPostedByPrima(found.command.command_id, 700_001, "JN-000001", NOW + timedelta(seconds=1))],
               known(KNOWN), NO_WAIT, NOW)
    return header, transactions


def names(app: PayoutApplication) -> list[str]:
    aggregate = app.repository.get(Payout.create_id(700_001))
    return [type(e).__name__ for e in app.repository.event_store.get(aggregate.id)]


def posted(app: PayoutApplication, number: str) -> JournalPostedByPrima:
    request = app.find_payout(700_001).outstanding_reclassification
    return JournalPostedByPrima(request.command_id, 700_001, number, LATER + timedelta(seconds=1))


def test_given_a_posted_journal_with_a_charge_on_clearing_when_its_order_is_matched_then_a_reclassification_moves_it(
        app):
    _, transactions = journalled_with_a_charge_on_clearing(app)
    late_charge = transactions[1].transaction_id

    # When the sweep matches the charge again, its order and sales order known now
    result = app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)

    found = app.find_payout(700_001)
    assert result.matches_changed == 1 and found.unmatched == 0
    request = found.outstanding_reclassification
    assert request.idempotency_key == "shopify-prima:reclassify-journal:700001:1"
    assert request.journal.external_reference == "shopify-payout:700001:reclassification:1"
    assert request.journal.reverses is None and request.journal.currency == "USD"
    # By hand: 10.01 over the order's parts 40.00, 10.00, -4.00, 4.00 (of 50.00): exactly 8.008,
    # 2.002, -0.8008, 0.8008; to the cent down 8.00, 2.00, -0.81, 0.80 (9.99); the two cents left go
    # to the largest remainders, discounts (0.0092) then sales (0.008): 8.01, 2.00, -0.80, 0.80.
    assert lines(request.journal) == [
        ("sales", "4000", "0.00", "8.01", None),
        ("shipping", "4100", "0.00", "2.00", None),
        ("discounts", "4900", "0.80", "0.00", None),
        ("tax", "2200", "0.00", "0.80", "TAX"),
        ("unmatched_charges", "1290", "10.01", "0.00", None),
    ]
    assert request.journal.total_debit == request.journal.total_credit == D("10.81")
    assert found.reclassified == {late_charge: request.command_id}
    # the posted journal is untouched, and the payout stays journalled until Prima posts this one
    assert found.journal_number == "JN-000001" and found.commands_issued == 1
    assert found.state is PayoutState.JOURNALLED
    assert names(app)[-2:] == ["TransactionsMatched", "ReclassificationRequested"]


def test_given_a_reclassification_requested_a_later_rematch_with_nothing_new_changes_nothing(app):
    journalled_with_a_charge_on_clearing(app)
    app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)

    again = app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)
    assert again.saved == 0

    answer = posted(app, "JN-000002")
    app.handle([answer], known(KNOWN, LATE), NO_WAIT, LATER)
    found = app.find_payout(700_001)
    assert found.reclassification_numbers == {answer.command_id: "JN-000002"}
    assert found.outstanding_reclassification is None and found.reclassifications_issued == 1
    # Prima's answer repeated, and the sweep again: nothing recorded, no second reclassification
    assert app.handle([answer], known(KNOWN, LATE), NO_WAIT, LATER).saved == 0
    assert app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE), NO_WAIT, LATER).saved == 0


def test_given_no_posted_journal_yet_no_reclassification_until_prima_posts_it(app):
    header = payout("124.46")
    transactions = [tx("CHARGE", "118.80", "3.76", order=1001),
                    tx("CHARGE", "10.01", "0.59", order=1002, source_transaction=9002), transfer(header)]
    app.handle(read(header, transactions), known(KNOWN), NO_WAIT, NOW)
    command = app.find_payout(700_001).command

    # When the charge is matched while the journal is on its way: nothing to reclassify yet
    app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)
    assert app.find_payout(700_001).reclassifications == []

    # When Prima posts the journal, the matched charge is reclassified
    app.handle([JournalPostedByPrima(command.command_id, 700_001, "JN-000001", LATER)], known(KNOWN, LATE),
               NO_WAIT, LATER)
    found = app.find_payout(700_001)
    assert found.state is PayoutState.JOURNALLED
    assert found.outstanding_reclassification.idempotency_key == "shopify-prima:reclassify-journal:700001:1"


def test_given_two_charges_on_clearing_matched_at_different_times_each_is_reclassified_once_in_its_own_journal(app):
    header = payout("163.04")
    second = document(1003, parts("40.00"), sales_order="SO-000003")
    transactions = [tx("CHARGE", "118.80", "3.76", order=1001),
                    tx("CHARGE", "10.01", "0.59", order=1002, source_transaction=9002),
                    tx("CHARGE", "40.00", "1.42", order=1003), transfer(header)]
    app.handle(read(header, transactions), known(KNOWN), NO_WAIT, NOW)
    app.handle([JournalPostedByPrima(app.find_payout(700_001).command.command_id, 700_001, "JN-000001", NOW)],
               known(KNOWN), NO_WAIT, NOW)
    app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)
    first = app.find_payout(700_001).outstanding_reclassification

    # Given order 1003 known while the first reclassification is on its way: it waits for it
    app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE, second), NO_WAIT, LATER)
    assert app.find_payout(700_001).reclassifications == [first]
    # When Prima posts the first, the second charge gets the second reclassification
    app.handle([posted(app, "JN-000002")], known(KNOWN, LATE, second), NO_WAIT, LATER)

    found = app.find_payout(700_001)
    request = found.outstanding_reclassification
    assert request.idempotency_key == "shopify-prima:reclassify-journal:700001:2"
    assert lines(request.journal) == [("sales", "4000", "0.00", "40.00", None),
                                      ("unmatched_charges", "1290", "40.00", "0.00", None)]
    assert found.reclassified == {transactions[1].transaction_id: first.command_id,
                                  transactions[2].transaction_id: request.command_id}


def test_given_a_reclassification_refused_a_release_decides_a_new_one_and_a_parked_one_is_sent_again(app):
    journalled_with_a_charge_on_clearing(app)
    app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)
    first = app.find_payout(700_001).outstanding_reclassification

    # Given Prima refuses it: the payout's journal failed (an exception), the charge free again
    app.handle([JournalRejectedByPrima(first.command_id, 700_001, 422, "unknown_account", "no account 4050", LATER)],
               known(KNOWN, LATE), NO_WAIT, LATER)
    assert app.find_payout(700_001).state is PayoutState.JOURNAL_FAILED
    # When released (the mapping fixed): a new reclassification, under a new key
    app.handle([PayoutReleaseRequested(700_001, "ops", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)
    found = app.find_payout(700_001)
    second = found.outstanding_reclassification
    assert second.command_id != first.command_id and found.reclassifications == [second]
    assert second.idempotency_key == "shopify-prima:reclassify-journal:700001:2"
    assert lines(second.journal) == lines(first.journal) and found.state is PayoutState.JOURNALLED

    # Given the gateway parks it: a release sends the same command again, never another journal
    app.handle([JournalParkedByGateway(second.command_id, 700_001, 5, "Prima unavailable", LATER)], known(KNOWN, LATE),
               NO_WAIT, LATER)
    app.handle([PayoutReleaseRequested(700_001, "ops", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)
    found = app.find_payout(700_001)
    assert found.reclassifications == [second] and found.outstanding_reclassification == second
    assert names(app)[-1] == "ReclassificationRequested" and found.state is PayoutState.JOURNALLED
    app.handle([posted(app, "JN-000003")], known(KNOWN, LATE), NO_WAIT, LATER)
    assert app.find_payout(700_001).reclassification_numbers == {second.command_id: "JN-000003"}


def test_a_reclassification_relays_a_valid_event_and_a_post_journal_command(app):
    journalled_with_a_charge_on_clearing(app)
    app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)
    app.handle([posted(app, "JN-000002")], known(KNOWN, LATE), NO_WAIT, LATER)

    out, _ = Relay(PAYOUT_RELAY, Settings(_env_file=None), broker=None, app=app).read(0)

    events = [o.message for o in out if o.topic == PAYOUT_EVENTS.name]
    adapter = TypeAdapter(PayoutEvent)
    for message in events:
        assert adapter.validate_json(message.model_dump_json()) == message
    requested = next(m for m in events if m.event_type == "ReclassificationRequested")
    assert requested.line_categories == ("sales", "shipping", "discounts", "tax", "unmatched_charges")
    assert requested.charge_ids == (app.find_payout(700_001).clearing[0],)
    assert events[-1].event_type == "ReclassificationPosted" and events[-1].journal_number == "JN-000002"
    commands = [o.message for o in out if o.topic == PRIMA_COMMANDS.name]
    assert [type(c) for c in commands] == [PostJournal, PostJournal]
    assert commands[1].idempotency_key == "shopify-prima:reclassify-journal:700001:1"
    assert commands[1].journal.external_reference == "shopify-payout:700001:reclassification:1"
    assert commands[1] == requested.command


def test_given_a_posted_reclassification_when_the_payout_fails_the_reversal_undoes_both_journals(app):
    header, transactions = journalled_with_a_charge_on_clearing(app)
    app.handle([RematchRequested(700_001, "sweep", LATER)], known(KNOWN, LATE), NO_WAIT, LATER)

    # Given the payout fails while the reclassification is on its way: the reversal waits for it
    app.handle(read(replace(header, status=FAILED), transactions), known(KNOWN, LATE), NO_WAIT, LATER)
    assert app.find_payout(700_001).reversal is None
    # When Prima posts the reclassification, the reversal follows
    app.handle([posted(app, "JN-000002")], known(KNOWN, LATE), NO_WAIT, LATER)

    found = app.find_payout(700_001)
    assert found.state is PayoutState.REVERSAL_REQUESTED and found.reversal.journal.reverses == "JN-000001"
    # By hand: the journal (bank Dr 124.46, sales Cr 100.00, shipping Cr 10.00, VAT Cr 8.80, clearing
    # Cr 10.01, fees Dr 4.35) and the reclassification (sales Cr 8.01, shipping Cr 2.00, discounts
    # Dr 0.80, VAT Cr 0.80, clearing Dr 10.01) net per account, the clearing account to nothing; swapped:
    assert lines(found.reversal.journal) == [
        ("bank", "1010", "0.00", "124.46", None),
        ("sales", "4000", "108.01", "0.00", None),
        ("shipping", "4100", "12.00", "0.00", None),
        ("tax", "2200", "9.60", "0.00", "TAX"),
        ("processing_fees", "6100", "0.00", "4.35", None),
        ("discounts", "4900", "0.00", "0.80", None),
    ]
    assert found.reversal.journal.total_debit == found.reversal.journal.total_credit == D("129.61")
    assert [line.line_number for line in found.reversal.journal.lines] == [1, 2, 3, 4, 5, 6]
