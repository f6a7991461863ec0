"""The payout flow's relay table: what each Payout event becomes on Kafka.

Every event goes to shopify-prima.payout-events.v1 (key payout:<id>); a JournalRequested, a
ReversalRequested or a ReclassificationRequested also goes to prima.commands.v1 as the PostJournal
the Prima gateway sends. The
relay itself is services/platform/outbox.py.
"""

from __future__ import annotations

from typing import Any

from contracts.payouts import events as wire
from contracts.shopify.payouts import payout_key
from contracts.topics import PAYOUT_EVENTS, PRIMA_COMMANDS
from domain.payouts.application import PayoutApplication
from services.payouts.translate import (
    wire_command,
    wire_match,
    wire_money,
    wire_summary,
    wire_transaction,
)
from services.platform.outbox import Envelope, RelayTable, Route
from services.platform.settings import Settings


def _envelope(env: Envelope[int]) -> dict[str, Any]:
    return {"event_id": env.event_id, "payout_id": env.subject, "aggregate_id": env.aggregate_id,
            "aggregate_version": env.aggregate_version, "timestamp": env.timestamp,
            "notification_id": env.notification_id}


def _categories(request: Any) -> list[str]:
    """The category of each line of a requested journal (Prima's journal lines do not carry it)."""
    return [line.category for line in request.journal.lines]


def _published(model: type[wire._Event], fields: Any) -> Route[int]:
    """The event as other teams see it: envelope + the fields `fields(domain_event)` gives."""
    return Route(PAYOUT_EVENTS, payout_key, lambda env, e: model(**_envelope(env), **fields(e)))


ROUTES: dict[str, list[Route[int]]] = {
    "Payout.PayoutOpened": [_published(wire.PayoutOpened, lambda e: {})],
    "Payout.TransactionsRead": [_published(wire.TransactionsRead, lambda e: {
        "read_id": e.read_id, "page": e.page, "transaction_ids": list(e.ids),
        "transactions": [wire_transaction(t) for t in e.transactions]})],
    "Payout.PayoutObserved": [_published(wire.PayoutObserved, lambda e: {
        "read_id": e.read_id, "status": e.header.status, "issued_at": e.header.issued_at,
        "net": wire_money(e.header.net), "transaction_type": e.header.transaction_type,
        "summary": wire_summary(tuple(e.header.summary)), "transaction_count": e.transaction_count})],
    "Payout.PayoutHeld": [_published(wire.PayoutHeld, lambda e: {
        "reason": e.reason, "detail": e.detail, "difference": e.difference})],
    "Payout.HoldResolved": [_published(wire.HoldResolved, lambda e: {})],
    "Payout.TransactionsMatched": [_published(wire.TransactionsMatched, lambda e: {
        "matches": [wire_match(m) for m in e.matches]})],
    "Payout.JournalRequested": [
        _published(wire.JournalRequested, lambda e: {"command": wire_command(e.request),
                                                     "line_categories": _categories(e.request)}),
        Route(PRIMA_COMMANDS, payout_key, lambda env, e: wire_command(e.request)),
    ],
    "Payout.JournalPosted": [_published(wire.JournalPosted, lambda e: {
        "command_id": e.command_id, "journal_number": e.journal_number, "occurred_at": e.occurred_at})],
    "Payout.JournalRejected": [_published(wire.JournalRejected, lambda e: {
        "command_id": e.command_id, "status_code": e.status_code, "code": e.code, "reason": e.reason})],
    "Payout.JournalParked": [_published(wire.JournalParked, lambda e: {
        "command_id": e.command_id, "attempts": e.attempts, "reason": e.reason})],
    "Payout.PayoutFailed": [_published(wire.PayoutFailed, lambda e: {"status": e.status})],
    "Payout.ReversalRequested": [
        _published(wire.ReversalRequested, lambda e: {"command": wire_command(e.request),
                                                      "line_categories": _categories(e.request)}),
        Route(PRIMA_COMMANDS, payout_key, lambda env, e: wire_command(e.request)),
    ],
    "Payout.ReversalPosted": [_published(wire.ReversalPosted, lambda e: {
        "command_id": e.command_id, "journal_number": e.journal_number, "occurred_at": e.occurred_at})],
    "Payout.ReclassificationRequested": [
        _published(wire.ReclassificationRequested, lambda e: {"command": wire_command(e.request),
                                                              "line_categories": _categories(e.request),
                                                              "charge_ids": tuple(e.charge_ids)}),
        Route(PRIMA_COMMANDS, payout_key, lambda env, e: wire_command(e.request)),
    ],
    "Payout.ReclassificationPosted": [_published(wire.ReclassificationPosted, lambda e: {
        "command_id": e.command_id, "journal_number": e.journal_number, "occurred_at": e.occurred_at})],
    "Payout.PayoutReleased": [_published(wire.PayoutReleased, lambda e: {
        "released_by": e.released_by, "previous_state": e.previous_state})],
}


def _application(settings: Settings) -> PayoutApplication:
    return PayoutApplication(env=settings.eventsourcing_env())


PAYOUT_RELAY: RelayTable[int] = RelayTable(
    name="payouts", lock="payouts", application=_application, routes=ROUTES,
    subject_of=lambda first: first.payout_id,
)
