"""The payout-reconciliation read model: per Shopify payout its state, Shopify's status and net,
the Prima journal (its number and lines), its balance transactions with what each is matched to,
the matched and unmatched counts, and the exceptions that need a person. Built from the
payout-events topic; rebuildable from offset zero (rows come from event data and event
timestamps only, never the clock).

States: the Payout aggregate's (domain/payouts/domainmodel.py PayoutState), plus `reconciled`:
journalled, every transaction matched (or standing on no document), and whatever the journal
carried on the unmatched-charges clearing account moved off it by posted reclassification
journals. The reclassification journals are kept with the journal (its `reclassifications`, each
with its command, charges, status and Prima's number), so the payout lists them.

Exceptions (readmodel.payout_exceptions), one open per cause:
- per payout: why it is held (incomplete, currency_mismatch, unmapped_transaction_type,
  transaction_inconsistent, does_not_add_up: with the difference) or why its journal failed
  (journal_rejected, journal_parked);
- per transaction: why it is unmatched (domain/payouts/matching.py: no_order, order_not_seen,
  no_sales_order, amount_differs, awaiting_credit_memo), resolved when a re-match matches it.
Each names its action (the CLI command that fixes or re-runs it).

Beside it, the payment-gateways read model (PaymentGatewaysProjection, readmodel.order_payment_gateways):
per Shopify order, the gateways that paid it, from the order webhooks' facts (shopify.orders.v1),
for the month-end report's clearing of other gateways (domain/payouts/clearing.py). The order
events do not carry them (the order decider keeps what the sales order needs), so the payout
read side reads the facts themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

import asyncpg

from contracts.payouts.events import PayoutEvent
from contracts.shopify.orders import ShopifyOrderReceived
from contracts.topics import PAYOUT_EVENTS, SHOPIFY_ORDERS
from domain.payouts.categories import categories_of
from domain.payouts.checks import HoldReason
from domain.payouts.domainmodel import PayoutState
from domain.payouts.matching import UnmatchedReason
from projections.base import Projection, ReadModel

RECONCILED = "reconciled"
JOURNAL_FAILURES = ("journal_rejected", "journal_parked")
PAYOUT_KINDS = (*(str(r) for r in HoldReason), *JOURNAL_FAILURES)
UNMATCHED_KINDS = tuple(str(r) for r in UnmatchedReason)

PAYOUTS = ReadModel(
    name="payouts",
    states=(*(str(s) for s in PayoutState), RECONCILED),
    exception_kinds=(*PAYOUT_KINDS, *UNMATCHED_KINDS),
)


def action(kind: str, payout_id: int) -> str:
    if kind in (HoldReason.INCOMPLETE, HoldReason.DOES_NOT_ADD_UP, HoldReason.TRANSACTION_INCONSISTENT,
                HoldReason.CURRENCY_MISMATCH):
        return (f"check the payout with Shopify; a read that adds up journals it: "
                f"shopify-prima payouts ingest --payout {payout_id}")
    if kind == HoldReason.UNMAPPED_TRANSACTION_TYPE:
        return f"map the type (domain/payouts/categories.py), deploy, then: shopify-prima payouts release {payout_id}"
    if kind == "journal_rejected":
        return f"fix what Prima refused (the account mapping), then: shopify-prima payouts release {payout_id}"
    if kind == "journal_parked":
        return f"sent again by itself once Prima answers; or now: shopify-prima payouts release {payout_id}"
    if kind == UnmatchedReason.AWAITING_CREDIT_MEMO:
        return f"matched by itself once the refund's credit memo is in Prima; or: shopify-prima payouts rematch {payout_id}"
    return f"fix the order (shopify-prima orders show <order>), then: shopify-prima payouts rematch {payout_id}"


class PayoutsProjection(Projection):
    read_model = PAYOUTS
    topic = PAYOUT_EVENTS
    accepts = (PayoutEvent,)
    tables = ("readmodel.payouts", "readmodel.payout_transactions", "readmodel.payout_exceptions")

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        for e in messages:
            await apply_event(conn, e)

    async def counts(self, db: asyncpg.Pool | asyncpg.Connection) -> tuple[dict[str, int], dict[str, int]]:
        states, kinds = await super().counts(db)
        states.update({r["state"]: r["n"] for r in await db.fetch(
            "SELECT state, count(*) AS n FROM readmodel.payouts GROUP BY state")})
        kinds.update({r["kind"]: r["n"] for r in await db.fetch(
            "SELECT kind, count(*) AS n FROM readmodel.payout_exceptions WHERE status = 'open' GROUP BY kind")})
        return states, kinds


# ------------------------------------------------------------------------------ applying events


async def _set(conn: asyncpg.Connection, e: Any, **columns: Any) -> None:
    names = list(columns)
    assignments = "".join(f", {name} = ${i + 4}" for i, name in enumerate(names))
    await conn.execute(
        f"UPDATE readmodel.payouts SET last_event_at = $2, last_event_version = $3{assignments} WHERE payout_id = $1",
        e.payout_id, e.timestamp, e.aggregate_version, *columns.values())


async def _raise(conn: asyncpg.Connection, exception_id: UUID, payout_id: int, kind: str, reason: str,
                 payload: dict[str, Any], at: datetime, transaction_id: int | None = None) -> None:
    await conn.execute(
        """INSERT INTO readmodel.payout_exceptions
               (exception_id, payout_id, transaction_id, kind, reason, payload, action, status, raised_at)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, 'open', $8) ON CONFLICT (exception_id) DO NOTHING""",
        exception_id, payout_id, transaction_id, kind, reason, json.dumps(payload, default=str),
        action(kind, payout_id), at)


async def _resolve(conn: asyncpg.Connection, payout_id: int, kinds: Sequence[str], at: datetime) -> None:
    """Resolve the payout's open payout-level exceptions of these kinds."""
    await conn.execute(
        "UPDATE readmodel.payout_exceptions SET status = 'resolved', resolved_at = $3 "
        "WHERE payout_id = $1 AND transaction_id IS NULL AND status = 'open' AND kind = ANY($2::text[])",
        payout_id, list(kinds), at)


CLEARING = "unmatched_charges"
POSTED, REQUESTED, REJECTED, PARKED = "posted", "requested", "rejected", "parked"


def _clearing(lines: Sequence[dict[str, Any]]) -> Decimal:
    """Credits minus debits on the unmatched-charges clearing account."""
    return sum((Decimal(str(line["credit"])) - Decimal(str(line["debit"]))
                for line in lines if line.get("category") == CLEARING), Decimal(0))


def cleared(journal: dict[str, Any] | None) -> bool:
    """Whether what the journal carried on the clearing account is all moved off it by posted
    reclassification journals (a journal without a clearing line is cleared)."""
    if journal is None:
        return True
    moved = sum((-_clearing(r["lines"]) for r in journal.get("reclassifications", []) if r["status"] == POSTED),
                Decimal(0))
    return _clearing(journal["lines"]) == moved


async def _recount(conn: asyncpg.Connection, e: Any) -> None:
    """Matched / unmatched counts, and journalled <-> reconciled: reconciled when every transaction
    is matched and what the journal carried on the unmatched-charges clearing account is moved off
    it by posted reclassification journals (a charge journalled there and matched since waits for
    its reclassification in Prima)."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE match_status = 'matched') AS matched,
                  count(*) FILTER (WHERE match_status = 'unmatched') AS unmatched,
                  count(*) FILTER (WHERE match_status = 'not_applicable') AS not_applicable
           FROM readmodel.payout_transactions WHERE payout_id = $1""", e.payout_id)
    journal = await conn.fetchval("SELECT journal::text FROM readmodel.payouts WHERE payout_id = $1", e.payout_id)
    done = row["unmatched"] == 0 and cleared(json.loads(journal) if journal else None)
    await conn.execute(
        """UPDATE readmodel.payouts SET matched = $2, unmatched = $3, not_applicable = $4,
               state = CASE WHEN state IN ('journalled', 'reconciled')
                            THEN CASE WHEN $5 THEN 'reconciled' ELSE 'journalled' END ELSE state END
           WHERE payout_id = $1""", e.payout_id, row["matched"], row["unmatched"], row["not_applicable"], done)


async def _reclassifications(conn: asyncpg.Connection, e: Any, change: Callable[[list[dict[str, Any]]], bool]
                             ) -> bool:
    """Apply `change` to the payout's list of reclassification journals (kept in its journal
    document); True when it changed the list (it was written back)."""
    found = await conn.fetchval("SELECT journal::text FROM readmodel.payouts WHERE payout_id = $1", e.payout_id)
    if found is None:
        return False
    journal = json.loads(found)
    listed = journal.setdefault("reclassifications", [])
    if not change(listed):
        return False
    await conn.execute("UPDATE readmodel.payouts SET journal = $2::jsonb WHERE payout_id = $1",
                       e.payout_id, json.dumps(journal))
    return True


def _mark(command_id: UUID, status: str, **fields: Any) -> Callable[[list[dict[str, Any]]], bool]:
    def change(listed: list[dict[str, Any]]) -> bool:
        for entry in listed:
            if entry["command_id"] == str(command_id):
                entry.update(status=status, **fields)
                return True
        return False
    return change


def _category(transaction_type: str) -> str | None:
    found = categories_of(transaction_type)
    return str(found[0]) if found else None


def _journal_json(e: Any) -> str:
    """The requested journal as the read model keeps it: Prima's body, each line with its category."""
    journal = e.command.journal.model_dump(mode="json")
    for line, category in zip(journal["lines"], e.line_categories, strict=True):
        line["category"] = category
    return json.dumps(journal)


async def apply_event(conn: asyncpg.Connection, e: Any) -> None:
    t = e.event_type
    if t == "PayoutOpened":
        await conn.execute(
            """INSERT INTO readmodel.payouts (payout_id, state, first_seen_at, last_event_at, last_event_version)
               VALUES ($1, 'reading', $2, $2, $3) ON CONFLICT (payout_id) DO NOTHING""",
            e.payout_id, e.timestamp, e.aggregate_version)
    elif t == "TransactionsRead":
        await conn.executemany(
            """INSERT INTO readmodel.payout_transactions (payout_id, transaction_id, type, category, currency, amount,
                   fee, net, processed_at, order_id, order_name, source_order_transaction_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (payout_id, transaction_id) DO UPDATE SET type = EXCLUDED.type,
                   category = EXCLUDED.category, currency = EXCLUDED.currency, amount = EXCLUDED.amount,
                   fee = EXCLUDED.fee, net = EXCLUDED.net, processed_at = EXCLUDED.processed_at,
                   order_id = EXCLUDED.order_id, order_name = EXCLUDED.order_name,
                   source_order_transaction_id = EXCLUDED.source_order_transaction_id""",
            [(e.payout_id, x.transaction_id, x.type, _category(x.type), x.amount.currency, x.amount.amount,
              x.fee.amount, x.net.amount, x.processed_at, x.order_id, x.order_name, x.source_order_transaction_id)
             for x in e.transactions])
        await _set(conn, e)
    elif t == "PayoutObserved":
        await _set(conn, e, shopify_status=e.status, issued_at=e.issued_at, currency=e.net.currency,
                   net=e.net.amount, transaction_count=e.transaction_count,
                   summary=json.dumps([s.model_dump(mode="json") for s in e.summary]))
        await conn.execute(
            """UPDATE readmodel.payouts SET state = CASE WHEN state = 'reading' THEN 'awaiting_paid' ELSE state END,
                   paid_seen_at = CASE WHEN $2 = 'PAID' THEN coalesce(paid_seen_at, $3) ELSE paid_seen_at END
               WHERE payout_id = $1""", e.payout_id, e.status, e.timestamp)
    elif t == "PayoutHeld":
        await _set(conn, e, state=PayoutState.HELD.value, hold_reason=e.reason, hold_detail=e.detail,
                   difference=e.difference)
        await _resolve(conn, e.payout_id, PAYOUT_KINDS, e.timestamp)
        await _raise(conn, e.event_id, e.payout_id, e.reason, e.detail,
                     {"difference": e.difference}, e.timestamp)
    elif t == "HoldResolved":
        await _set(conn, e, state=PayoutState.AWAITING_PAID.value, hold_reason=None, hold_detail=None, difference=None)
        await _resolve(conn, e.payout_id, PAYOUT_KINDS, e.timestamp)
    elif t == "TransactionsMatched":
        await _apply_matches(conn, e)
        await _set(conn, e)
        await _recount(conn, e)
    elif t == "JournalRequested":
        await _set(conn, e, state=PayoutState.JOURNAL_REQUESTED.value, journal_command_id=e.command.command_id,
                   journal=_journal_json(e), journal_failure=None, hold_reason=None, hold_detail=None,
                   difference=None, journal_requested_at=e.timestamp)
        await _resolve(conn, e.payout_id, PAYOUT_KINDS, e.timestamp)
    elif t == "JournalPosted":
        await _set(conn, e, state="journalled", journal_number=e.journal_number, journalled_at=e.occurred_at,
                   journal_failure=None)
        await _resolve(conn, e.payout_id, JOURNAL_FAILURES, e.timestamp)
        await _recount(conn, e)
    elif t in ("JournalRejected", "JournalParked"):
        kind = "journal_rejected" if t == "JournalRejected" else "journal_parked"
        reason = f"{e.code}: {e.reason}" if t == "JournalRejected" else e.reason
        await _set(conn, e, state=PayoutState.JOURNAL_FAILED.value, journal_failure=reason)
        await _reclassifications(conn, e, _mark(e.command_id, REJECTED if t == "JournalRejected" else PARKED))
        await _resolve(conn, e.payout_id, JOURNAL_FAILURES, e.timestamp)
        await _raise(conn, e.event_id, e.payout_id, kind, reason, {"command_id": str(e.command_id)}, e.timestamp)
    elif t == "PayoutFailed":
        await _set(conn, e, state=PayoutState.FAILED.value, shopify_status=e.status)
    elif t == "ReversalRequested":
        await _set(conn, e, state=PayoutState.REVERSAL_REQUESTED.value, reversal=_journal_json(e),
                   journal_failure=None)
        await _resolve(conn, e.payout_id, JOURNAL_FAILURES, e.timestamp)
    elif t == "ReversalPosted":
        await _set(conn, e, state=PayoutState.REVERSED.value, reversal_number=e.journal_number, journal_failure=None)
        await _resolve(conn, e.payout_id, JOURNAL_FAILURES, e.timestamp)
    elif t == "ReclassificationRequested":
        entry = {**json.loads(_journal_json(e)), "command_id": str(e.command.command_id),
                 "idempotency_key": e.command.idempotency_key, "charge_ids": list(e.charge_ids),
                 "status": REQUESTED, "journal_number": None, "requested_at": e.timestamp.isoformat()}

        def add(listed: list[dict[str, Any]]) -> bool:
            listed[:] = [r for r in listed if r["command_id"] != entry["command_id"]] + [entry]
            return True

        await _reclassifications(conn, e, add)
        await conn.execute(
            "UPDATE readmodel.payouts SET state = 'journalled', journal_failure = NULL "
            "WHERE payout_id = $1 AND state IN ('journalled', 'reconciled', 'journal_failed')", e.payout_id)
        await _set(conn, e)
        await _resolve(conn, e.payout_id, JOURNAL_FAILURES, e.timestamp)
        await _recount(conn, e)
    elif t == "ReclassificationPosted":
        await _reclassifications(conn, e, _mark(e.command_id, POSTED, journal_number=e.journal_number,
                                                posted_at=e.occurred_at.isoformat()))
        await conn.execute(
            "UPDATE readmodel.payouts SET state = 'journalled', journal_failure = NULL "
            "WHERE payout_id = $1 AND state = 'journal_failed'", e.payout_id)
        await _set(conn, e)
        await _resolve(conn, e.payout_id, JOURNAL_FAILURES, e.timestamp)
        await _recount(conn, e)
    elif t == "PayoutReleased":
        await _set(conn, e)


async def _apply_matches(conn: asyncpg.Connection, e: Any) -> None:
    await conn.executemany(
        """UPDATE readmodel.payout_transactions SET match_status = $3, document = $4, document_kind = $5,
               reason = $6, detail = $7 WHERE payout_id = $1 AND transaction_id = $2""",
        [(e.payout_id, m.transaction_id, m.status, m.document, m.document_kind, m.reason, m.detail) for m in e.matches])
    ids = [m.transaction_id for m in e.matches]
    # a transaction's open exception stays open while its reason stands; any other is resolved
    await conn.execute(
        """UPDATE readmodel.payout_exceptions x SET status = 'resolved', resolved_at = $3
           FROM readmodel.payout_transactions t
           WHERE x.payout_id = $1 AND x.transaction_id = ANY($2::bigint[]) AND x.status = 'open'
             AND t.payout_id = x.payout_id AND t.transaction_id = x.transaction_id
             AND (t.match_status <> 'unmatched' OR t.reason IS DISTINCT FROM x.kind)""",
        e.payout_id, ids, e.timestamp)
    unmatched = [m for m in e.matches if m.status == "unmatched"]
    if unmatched:
        open_now = {(r["transaction_id"], r["kind"]) for r in await conn.fetch(
            "SELECT transaction_id, kind FROM readmodel.payout_exceptions WHERE payout_id = $1 AND status = 'open' "
            "AND transaction_id = ANY($2::bigint[])", e.payout_id, [m.transaction_id for m in unmatched])}
        await conn.executemany(
            """INSERT INTO readmodel.payout_exceptions
                   (exception_id, payout_id, transaction_id, kind, reason, payload, action, status, raised_at)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, 'open', $8) ON CONFLICT (exception_id) DO NOTHING""",
            [(uuid5(e.event_id, str(m.transaction_id)), e.payout_id, m.transaction_id, m.reason, m.detail or m.reason,
              json.dumps({"order_id": m.order_id, "document": m.document}), action(m.reason, e.payout_id), e.timestamp)
             for m in unmatched if (m.transaction_id, m.reason) not in open_now])


# ------------------------------------------------------------------------------ reading it


async def payouts_with_unmatched(db: asyncpg.Pool | asyncpg.Connection, limit: int = 1000) -> list[int]:
    """Payouts with unmatched transactions, oldest first: what the payout decider's sweep matches
    again (documents arrive after the payout: a sales order created late, a credit memo)."""
    rows = await db.fetch(
        "SELECT payout_id FROM readmodel.payouts WHERE unmatched > 0 ORDER BY issued_at NULLS LAST, payout_id "
        "LIMIT $1", limit)
    return [r["payout_id"] for r in rows]


# ------------------------------------------------------------------------------ payment gateways

PAYMENT_KINDS = ("sale", "capture")


def gateway_amounts(order: Any) -> list[list[str]]:
    """The order's successful sales and captures summed per gateway ([[gateway, amount]]), where
    its source carried transactions with their gateway (the reconciler's orders; webhooks carry none)."""
    found: dict[str, Decimal] = {}
    for t in order.transactions:
        if t.kind in PAYMENT_KINDS and t.status == "success" and t.gateway and t.amount is not None:
            found[t.gateway] = found.get(t.gateway, Decimal("0.00")) + t.amount.amount
    return [[gateway, str(amount)] for gateway, amount in found.items()]


class PaymentGatewaysProjection(Projection):
    """Per Shopify order, the gateways that paid it, as its latest version that named them said
    (a version without them, e.g. from a source that does not carry them, keeps what an earlier
    one said; an older one arriving late changes nothing). Likewise the amounts per gateway.
    Facts carry no aggregate version: a redelivered fact writes the same row again."""

    read_model = ReadModel(name="payment_gateways")
    topic = SHOPIFY_ORDERS
    accepts = (ShopifyOrderReceived,)
    tables = ("readmodel.order_payment_gateways",)

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        rows = [(m.order.id, list(m.order.payment_gateway_names), json.dumps(gateway_amounts(m.order)),
                 m.order.updated_at, m.received_at) for m in messages]
        await conn.executemany(
            """INSERT INTO readmodel.order_payment_gateways AS g (shopify_order_id, gateway_names, gateway_amounts,
                   order_updated_at, recorded_at) VALUES ($1, $2::text[], $3::jsonb, $4, $5)
               ON CONFLICT (shopify_order_id) DO UPDATE SET
                   gateway_names = CASE WHEN cardinality(EXCLUDED.gateway_names) > 0 AND (
                       cardinality(g.gateway_names) = 0 OR g.order_updated_at <= EXCLUDED.order_updated_at)
                       THEN EXCLUDED.gateway_names ELSE g.gateway_names END,
                   gateway_amounts = CASE WHEN jsonb_array_length(EXCLUDED.gateway_amounts) > 0 AND (
                       jsonb_array_length(g.gateway_amounts) = 0 OR g.order_updated_at <= EXCLUDED.order_updated_at)
                       THEN EXCLUDED.gateway_amounts ELSE g.gateway_amounts END,
                   order_updated_at = greatest(g.order_updated_at, EXCLUDED.order_updated_at),
                   recorded_at = EXCLUDED.recorded_at""", rows)


async def gateways_for(db: asyncpg.Pool | asyncpg.Connection, order_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """The gateways that paid these orders, where recorded (an order not recorded is absent)."""
    wanted = sorted(set(order_ids))
    if not wanted:
        return {}
    rows = await db.fetch("SELECT shopify_order_id, gateway_names FROM readmodel.order_payment_gateways "
                          "WHERE shopify_order_id = ANY($1::bigint[]) AND cardinality(gateway_names) > 0", wanted)
    return {r["shopify_order_id"]: tuple(r["gateway_names"]) for r in rows}
