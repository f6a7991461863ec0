"""The payout flow's relay table (services/payouts/outbox.py) on the in-memory event store:
every Payout event type has a route, every message it builds is valid on its topic, and a
journal request goes to prima.commands.v1 as the PostJournal the Prima gateway sends."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from pydantic import TypeAdapter

from contracts.payouts.events import PayoutEvent
from contracts.prima.journals import PostJournal
from contracts.shopify.payouts import payout_key
from contracts.topics import PAYOUT_EVENTS, PRIMA_COMMANDS
from domain.payouts.application import PayoutApplication
from domain.payouts.domainmodel import Payout, PayoutPolicy
from domain.payouts.values import FAILED, JournalPostedByPrima
from services.payouts.outbox import PAYOUT_RELAY
from services.platform.outbox import Relay
from services.platform.settings import Settings
from tests.payouts.builders import NOW, document, parts, payout, read, transfer, tx


def event_types(aggregate: type) -> set[str]:
    base = {"Event", "Created", "Snapshot"}
    return {f"{aggregate.__name__}.{name}" for name, value in vars(aggregate).items()
            if isinstance(value, type) and issubclass(value, aggregate.Event) and name not in base}


def test_every_payout_event_type_has_a_route():
    assert set(PAYOUT_RELAY.routes) == event_types(Payout)


def test_a_payout_journalled_and_reversed_relays_valid_events_and_two_post_journal_commands():
    app = PayoutApplication()
    order = document(1001, parts("100.00", shipping="10.00", taxes=(("VAT", "0.08", "8.80"),)))
    header = payout("115.04")
    transactions = [tx("CHARGE", "118.80", "3.76", order=1001), transfer(header)]
    app.handle(read(header, transactions), lambda ids: {1001: order}, PayoutPolicy(), NOW)
    command = app.find_payout(header.payout_id).command
    app.handle([JournalPostedByPrima(command.command_id, header.payout_id, "JN-000001", NOW + timedelta(seconds=1))],
               lambda ids: {1001: order}, PayoutPolicy(), NOW)
    app.handle(read(replace(header, status=FAILED), transactions),
               lambda ids: {1001: order}, PayoutPolicy(), NOW)

    out, _ = Relay(PAYOUT_RELAY, Settings(_env_file=None), broker=None, app=app).read(0)

    events = [o for o in out if o.topic == PAYOUT_EVENTS.name]
    adapter = TypeAdapter(PayoutEvent)
    for o in events:
        assert adapter.validate_json(o.message.model_dump_json()) == o.message
        assert o.key == payout_key(header.payout_id)
    assert [o.message.event_type for o in events] == [
        "PayoutOpened", "TransactionsRead", "PayoutObserved", "TransactionsMatched", "JournalRequested",
        "JournalPosted", "TransactionsRead", "PayoutObserved", "ReversalRequested"]
    requested = next(o.message for o in events if o.message.event_type == "JournalRequested")
    assert requested.line_categories == ("bank", "sales", "shipping", "tax", "processing_fees")  # line by line
    commands = [o.message for o in out if o.topic == PRIMA_COMMANDS.name]
    assert [type(c) for c in commands] == [PostJournal, PostJournal]
    first, undo = commands
    assert first.idempotency_key == "shopify-prima:post-journal:700001"
    assert first.journal.external_reference == "shopify-payout:700001" and first.journal.reverses is None
    bank = first.journal.lines[0]
    assert (str(bank.debit), str(bank.credit)) == ("115.04", "0.00")
    assert undo.journal.reverses == "JN-000001" and undo.journal.external_reference == "shopify-payout:700001:reversal"
    assert PostJournal.model_validate_json(first.model_dump_json()) == first
    app.close()
