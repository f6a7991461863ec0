"""The order-sync read model: per Shopify order its state on the way to Prima, its Prima status
and cut-off state, its timeline (every fact and decision with its time), its credit memos (one
per Shopify refund), and the exceptions that need a person. Built from the order-events topic;
rebuildable from offset zero.

Rows are derived from event data and event timestamps only (never the clock), so a rebuild
gives identical rows. The projection base (projections/base.py) applies each batch in one
transaction with its positions and applies each aggregate version once.

An exception names its subject: the order itself ("order"), or one of its refunds
("refund:<id>"); a decision about one resolves that subject's open exceptions, not the other's.
Every exception's action is a command that decides the order again (`orders release`) or, for a
change held at the cut-off that was dealt with in Prima by hand, `orders resolve`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from contracts.orders.events import OrderEvent
from contracts.topics import ORDER_EVENTS
from domain.orders.domainmodel import MemoState, OrderState, QuarantineReason
from projections.base import Projection, ReadModel

CHANGED_AFTER_CUTOFF = "changed_after_cutoff"
CANCELLED_AFTER_CUTOFF = "cancelled_after_cutoff"
CREDIT_MEMO_KINDS = ("credit_memo_mismatch", "credit_memo_unmapped")
ORDER = "order"

ORDER_SYNC = ReadModel(
    name="order_sync",
    states=tuple(str(s) for s in OrderState),
    exception_kinds=(*(str(r) for r in QuarantineReason), "prima_rejected", "command_parked", CHANGED_AFTER_CUTOFF,
                     CANCELLED_AFTER_CUTOFF, *CREDIT_MEMO_KINDS),
)
CREDIT_MEMO_STATES = tuple(str(s) for s in MemoState)
CUTOFF_STATES = ("before", "passed", "cancelled")  # before: changes still go to Prima (as far as known)


def release_action(shopify_order_id: int) -> str:
    return f"shopify-prima orders release {shopify_order_id}"


def cutoff_action(shopify_order_id: int, sales_order_number: str | None, change: str) -> str:
    what = "cancel" if change == "cancel" else "apply the difference to"
    return (f"the warehouse has it: {what} sales order {sales_order_number or '(unknown)'} by hand in Prima, then "
            f"`shopify-prima orders resolve {shopify_order_id}`; or stop the pick and reopen the sales order in "
            f"Prima, then `{release_action(shopify_order_id)}` sends the change again")


def refund_subject(refund_id: int) -> str:
    return f"refund:{refund_id}"


class OrderSyncProjection(Projection):
    read_model = ORDER_SYNC
    topic = ORDER_EVENTS
    accepts = (OrderEvent,)
    tables = ("readmodel.order_sync", "readmodel.exceptions", "readmodel.order_timeline", "readmodel.credit_memos")

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        for e in messages:
            await apply_event(conn, e)

    async def counts(self, db: asyncpg.Pool | asyncpg.Connection) -> tuple[dict[str, int], dict[str, int]]:
        states, kinds = await super().counts(db)
        states.update({r["state"]: r["n"] for r in await db.fetch(
            "SELECT state, count(*) AS n FROM readmodel.order_sync GROUP BY state")})
        kinds.update({r["kind"]: r["n"] for r in await db.fetch(
            "SELECT kind, count(*) AS n FROM readmodel.exceptions WHERE status = 'open' GROUP BY kind")})
        return states, kinds


async def open_unmapped_sku_exceptions(db: asyncpg.Pool | asyncpg.Connection, limit: int = 1000
                                       ) -> list[tuple[int, tuple[str, ...]]]:
    """(Shopify order id, the SKUs it lacks) of each order with an open unmapped_sku exception,
    oldest first: what the order decider's sweep looks at to release orders whose items now
    exist in Prima."""
    rows = await db.fetch(
        """SELECT shopify_order_id, payload->'unmapped_skus' AS skus FROM readmodel.exceptions
           WHERE status = 'open' AND kind = $1 ORDER BY raised_at LIMIT $2""",
        str(QuarantineReason.UNMAPPED_SKU), limit)
    return [(r["shopify_order_id"], tuple(json.loads(r["skus"]) if r["skus"] else ())) for r in rows]


async def _raise_exception(conn: asyncpg.Connection, e: Any, kind: str, reason: str, payload: dict,
                           subject: str = ORDER, action: str | None = None) -> None:
    await _resolve_open(conn, e, subject)
    await conn.execute(
        """INSERT INTO readmodel.exceptions
           (exception_id, shopify_order_id, order_name, kind, reason, payload, action, status, raised_at, subject)
           SELECT $1, $2, o.order_name, $3, $4, $5::jsonb, $6, 'open', $7, $8
           FROM (SELECT $2::bigint AS id) k LEFT JOIN readmodel.order_sync o ON o.shopify_order_id = k.id
           ON CONFLICT (exception_id) DO NOTHING""",
        e.event_id, e.shopify_order_id, kind, reason, json.dumps(payload, default=str),
        action or release_action(e.shopify_order_id), e.timestamp, subject,
    )


async def _resolve_open(conn: asyncpg.Connection, e: Any, subject: str = ORDER) -> None:
    await conn.execute(
        "UPDATE readmodel.exceptions SET status = 'resolved', resolved_at = $2 "
        "WHERE shopify_order_id = $1 AND status = 'open' AND subject = $3",
        e.shopify_order_id, e.timestamp, subject,
    )


async def _set(conn: asyncpg.Connection, e: Any, **columns: Any) -> None:
    names = list(columns)
    assignments = ", ".join(f"{name} = ${i + 4}" for i, name in enumerate(names))
    await conn.execute(
        f"UPDATE readmodel.order_sync SET last_event_at = $2, last_event_version = $3"
        f"{', ' if names else ''}{assignments} WHERE shopify_order_id = $1",
        e.shopify_order_id, e.timestamp, e.aggregate_version, *columns.values(),
    )


async def _memo(conn: asyncpg.Connection, e: Any, refund_id: int, **columns: Any) -> None:
    names = list(columns)
    assignments = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
    await conn.execute(
        f"UPDATE readmodel.credit_memos SET updated_at = $2{', ' if names else ''}{assignments} WHERE refund_id = $1",
        refund_id, e.timestamp, *columns.values(),
    )


def _money(value: Any) -> str:
    return f"{value.amount} {value.currency}"


def summary_of(e: Any) -> str:
    """The event in words, for the order's timeline."""
    t = e.event_type
    if t == "OrderReceived":
        return f"{e.webhook_topic} received: {e.order.name}, total {_money(e.order.total_price)}"
    if t == "OrderUpdated":
        current = e.order.current_total_price or e.order.total_price
        return (f"{e.webhook_topic} received: total as it stands {_money(current)}"
                f"{', cancelled' if e.order.cancelled_at else ''}")
    if t == "OrderOpenedByRefund":
        return "a refund arrived before its order: kept until the order comes"
    if t == "OrderEditNoticed":
        return f"orders/edited: edit {e.edit_id} " + ", ".join([*e.added, *e.removed])
    if t == "RefundReceived":
        source = e.webhook_topic if e.webhook_id else f"listed in {e.webhook_topic}"
        lines = sum(rl.quantity for rl in e.refund.refund_line_items)
        return f"refund {e.refund.id} ({source}): {lines} unit(s)"
    if t == "OrderAwaitingPayment":
        return f"awaiting payment ({e.financial_status})"
    if t == "OrderQuarantined":
        return f"held: {e.reason}: {e.detail}"
    if t == "SalesOrderRequested":
        so = e.command.sales_order
        return f"sales order requested: {len(so.lines)} line(s), total {so.totals.total} {so.currency}"
    if t == "SalesOrderCreated":
        return f"sales order {e.sales_order_number} created in Prima ({e.status})"
    if t == "SalesOrderRejected":
        return f"Prima refused the sales order: {e.code}: {e.reason}"
    if t == "SalesOrderParked":
        return f"the sales order command was parked after {e.attempts} attempt(s): {e.reason}"
    if t == "OrderReleased":
        return f"released by {e.released_by} (was {e.previous_state})"
    if t == "OrderCancelledBeforePrima":
        return f"cancelled in Shopify before it reached Prima{f' ({e.reason})' if e.reason else ''}"
    if t == "SalesOrderAmendmentRequested":
        return f"amendment of {e.command.sales_order_number} requested: " + "; ".join(e.command.changes)
    if t == "SalesOrderAmended":
        return f"sales order {e.sales_order_number} amended in Prima ({e.status})"
    if t == "SalesOrderCancellationRequested":
        return f"cancellation of {e.command.sales_order_number} requested: {e.command.reason}"
    if t == "SalesOrderCancelled":
        return f"sales order {e.sales_order_number} cancelled in Prima"
    if t == "SalesOrderChangeRefused":
        return f"Prima refused the {e.change}: the sales order is {e.status}"
    if t == "SalesOrderChangeRejected":
        return f"Prima rejected the {e.change}: {e.code}: {e.reason}"
    if t == "SalesOrderChangeParked":
        return f"the {e.change} was parked after {e.attempts} attempt(s): {e.reason}"
    if t == "ChangeHeldAtCutoff":
        return f"{e.change} held at the cut-off ({e.reason}): " + "; ".join(e.differences)
    if t == "ChangeNoLongerNeeded":
        return f"no change needed any more: {e.reason}"
    if t == "SalesOrderUnchanged":
        return f"nothing for Prima: {e.reason}"
    if t == "ChangeResolvedByHand":
        return f"{e.change} dealt with by hand in Prima by {e.resolved_by}{f': {e.note}' if e.note else ''}"
    if t == "CreditMemoRequested":
        memo = e.command.credit_memo
        return f"credit memo for refund {e.command.refund_id} requested: {memo.totals.total} {memo.currency}"
    if t == "CreditMemoCreated":
        return f"credit memo {e.credit_memo_number} created for refund {e.refund_id} ({e.total})"
    if t == "CreditMemoHeld":
        return f"credit memo for refund {e.refund_id} held: {e.kind}: {e.detail}"
    if t == "CreditMemoRejected":
        return f"Prima refused the credit memo for refund {e.refund_id}: {e.code}: {e.reason}"
    if t == "CreditMemoParked":
        return f"the credit memo for refund {e.refund_id} was parked: {e.reason}"
    if t == "CreditMemoNotNeeded":
        return f"no credit memo for refund {e.refund_id}: {e.reason}"
    return t


async def _timeline(conn: asyncpg.Connection, e: Any) -> None:
    await conn.execute(
        """INSERT INTO readmodel.order_timeline (shopify_order_id, aggregate_version, at, kind, summary)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        e.shopify_order_id, e.aggregate_version, e.timestamp, e.event_type, summary_of(e)[:2000])


async def apply_event(conn: asyncpg.Connection, e: Any) -> None:
    await _timeline(conn, e)
    t = e.event_type
    if t == "OrderReceived":
        o = e.order
        await conn.execute(
            """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, financial_status, currency,
               total_price, total_tax, first_received_at, shopify_updated_at, last_event_at, last_event_version)
               VALUES ($1, $2, 'received', $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT (shopify_order_id) DO NOTHING""",
            e.shopify_order_id, e.order_name, o.financial_status, o.currency, o.total_price.amount,
            o.total_tax.amount, e.received_at, o.updated_at, e.timestamp, e.aggregate_version,
        )
    elif t == "OrderOpenedByRefund":
        await conn.execute(
            """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, first_received_at,
               last_event_at, last_event_version) VALUES ($1, $2, 'awaiting_order', $3, $4, $5)
               ON CONFLICT (shopify_order_id) DO NOTHING""",
            e.shopify_order_id, f"#{e.shopify_order_id}", e.received_at, e.timestamp, e.aggregate_version)
    elif t == "OrderUpdated":
        o = e.order
        await _set(conn, e, order_name=o.name, financial_status=o.financial_status, currency=o.currency,
                   total_price=(o.current_total_price or o.total_price).amount,
                   total_tax=(o.current_total_tax or o.total_tax).amount, shopify_updated_at=o.updated_at,
                   cancelled_at=o.cancelled_at, cancel_reason=o.cancel_reason)
        await conn.execute("UPDATE readmodel.order_sync SET state = 'received' "
                           "WHERE shopify_order_id = $1 AND state = 'awaiting_order'", e.shopify_order_id)
    elif t == "OrderAwaitingPayment":
        await _set(conn, e, state=OrderState.AWAITING_PAYMENT.value)
    elif t == "OrderQuarantined":
        await _set(conn, e, state=OrderState.QUARANTINED.value)
        await _raise_exception(conn, e, e.reason, e.detail, {"unmapped_skus": e.unmapped_skus})
    elif t == "SalesOrderRequested":
        await _set(conn, e, state=OrderState.SENT.value, sent_at=e.timestamp, command_id=e.command.command_id)
        await _resolve_open(conn, e)
    elif t == "SalesOrderCreated":
        await _set(conn, e, state=OrderState.IN_PRIMA.value, prima_sales_order_number=e.sales_order_number,
                   in_prima_at=e.timestamp, prima_status=e.status, cutoff_state="before")
        await _resolve_open(conn, e)
    elif t in ("SalesOrderRejected", "SalesOrderChangeRejected"):
        await _set(conn, e, state=OrderState.FAILED.value)
        await _raise_exception(conn, e, "prima_rejected", f"{e.code}: {e.reason}",
                               {"command_id": str(e.command_id), "status_code": e.status_code,
                                "change": getattr(e, "change", None)})
    elif t in ("SalesOrderParked", "SalesOrderChangeParked"):
        await _set(conn, e, state=OrderState.FAILED.value)
        await _raise_exception(conn, e, "command_parked", e.reason,
                               {"command_id": str(e.command_id), "attempts": e.attempts,
                                "change": getattr(e, "change", None)})
    elif t == "OrderReleased":
        await _set(conn, e)
    elif t == "OrderCancelledBeforePrima":
        await _set(conn, e, state=OrderState.CANCELLED.value, cancelled_at=e.cancelled_at, cancel_reason=e.reason)
        await _resolve_open(conn, e)
    elif t == "SalesOrderAmendmentRequested":
        await _set(conn, e, state=OrderState.AMENDING.value, command_id=e.command.command_id,
                   last_change="; ".join(e.command.changes)[:2000], changed_at=e.timestamp)
        await _resolve_open(conn, e)
    elif t == "SalesOrderAmended":
        await _set(conn, e, state=OrderState.IN_PRIMA.value, prima_status=e.status, cutoff_state="before")
        await _resolve_open(conn, e)
    elif t == "SalesOrderCancellationRequested":
        await _set(conn, e, state=OrderState.CANCELLING.value, command_id=e.command.command_id,
                   last_change=f"cancel: {e.command.reason}"[:2000], changed_at=e.timestamp)
        await _resolve_open(conn, e)
    elif t == "SalesOrderCancelled":
        await _set(conn, e, state=OrderState.CANCELLED.value, prima_status=e.status, cutoff_state="cancelled")
        await _resolve_open(conn, e)
    elif t == "SalesOrderChangeRefused":
        await _set(conn, e, state=OrderState.IN_PRIMA.value, prima_status=e.status, cutoff_state="passed",
                   cutoff_detail=f"Prima refused the {e.change}: the sales order is {e.status}")
    elif t == "ChangeHeldAtCutoff":
        kind = CANCELLED_AFTER_CUTOFF if e.change == "cancel" else CHANGED_AFTER_CUTOFF
        await _set(conn, e, state=OrderState.AFTER_CUTOFF.value, cutoff_state="passed", cutoff_detail=e.reason)
        number = await conn.fetchval("SELECT prima_sales_order_number FROM readmodel.order_sync "
                                     "WHERE shopify_order_id = $1", e.shopify_order_id)
        await _raise_exception(
            conn, e, kind, f"{e.reason}; Shopify changed it: " + "; ".join(e.differences),
            {"differences": e.differences, "shopify_now": e.shopify_now, "prima_has": e.prima_has,
             "prima_status": e.prima_status, "deadline": e.deadline, "sales_order_number": number},
            action=cutoff_action(e.shopify_order_id, number, e.change))
    elif t == "ChangeNoLongerNeeded":
        await conn.execute(
            """UPDATE readmodel.order_sync SET last_event_at = $2, last_event_version = $3,
               state = CASE WHEN prima_status = 'cancelled' OR (cancelled_at IS NOT NULL AND prima_sales_order_number
                             IS NULL) THEN 'cancelled' ELSE 'in_prima' END WHERE shopify_order_id = $1""",
            e.shopify_order_id, e.timestamp, e.aggregate_version)
        await _resolve_open(conn, e)
    elif t == "ChangeResolvedByHand":
        cancelled = e.change == "cancel"
        await _set(conn, e, state=(OrderState.CANCELLED if cancelled else OrderState.IN_PRIMA).value,
                   cutoff_detail=f"dealt with by hand by {e.resolved_by}" + (f": {e.note}" if e.note else ""))
        await _resolve_open(conn, e)
    elif t == "SalesOrderUnchanged" or t == "OrderEditNoticed":
        await _set(conn, e)
    elif t == "RefundReceived":
        await _set(conn, e)
        r = e.refund
        refunded = sum((tr.amount.amount for tr in r.transactions
                        if tr.kind == "refund" and tr.status == "success" and tr.amount), 0)
        currency = next((tr.amount.currency for tr in r.transactions if tr.amount), None)
        await conn.execute(
            """INSERT INTO readmodel.credit_memos (refund_id, shopify_order_id, state, currency, refunded,
               restock_types, refunded_at, received_at, updated_at) VALUES ($1, $2, 'waiting', $3, $4, $5, $6, $7, $8)
               ON CONFLICT (refund_id) DO NOTHING""",
            r.id, e.shopify_order_id, currency, refunded, sorted({rl.restock_type for rl in r.refund_line_items}),
            r.created_at, e.received_at, e.timestamp)
    elif t == "CreditMemoRequested":
        await _set(conn, e)
        command = e.command
        memo = command.credit_memo
        await _memo(conn, e, command.refund_id, state=MemoState.REQUESTED.value, command_id=command.command_id,
                    total=memo.totals.total, sales_order_number=memo.sales_order_number, requested_at=e.timestamp,
                    lines=json.dumps([line.model_dump(mode="json") for line in memo.lines]), problem_kind=None,
                    problem=None)
        await _resolve_open(conn, e, refund_subject(command.refund_id))
    elif t == "CreditMemoCreated":
        await _set(conn, e)
        await _memo(conn, e, e.refund_id, state=MemoState.CREATED.value, credit_memo_number=e.credit_memo_number,
                    created_at=e.timestamp, problem_kind=None, problem=None)
        await _resolve_open(conn, e, refund_subject(e.refund_id))
    elif t == "CreditMemoHeld":
        await _set(conn, e)
        await _memo(conn, e, e.refund_id, state=MemoState.HELD.value, problem_kind=e.kind, problem=e.detail)
        await _raise_exception(conn, e, e.kind, f"refund {e.refund_id}: {e.detail}", {"refund_id": e.refund_id},
                               subject=refund_subject(e.refund_id))
    elif t == "CreditMemoRejected":
        await _set(conn, e)
        await _memo(conn, e, e.refund_id, state=MemoState.REJECTED.value, problem_kind="prima_rejected",
                    problem=f"{e.code}: {e.reason}")
        await _raise_exception(conn, e, "prima_rejected", f"refund {e.refund_id}: {e.code}: {e.reason}",
                               {"refund_id": e.refund_id, "command_id": str(e.command_id),
                                "status_code": e.status_code}, subject=refund_subject(e.refund_id))
    elif t == "CreditMemoParked":
        await _set(conn, e)
        await _memo(conn, e, e.refund_id, state=MemoState.PARKED.value, problem_kind="command_parked",
                    problem=e.reason)
        await _raise_exception(conn, e, "command_parked", f"refund {e.refund_id}: {e.reason}",
                               {"refund_id": e.refund_id, "command_id": str(e.command_id), "attempts": e.attempts},
                               subject=refund_subject(e.refund_id))
    elif t == "CreditMemoNotNeeded":
        await _set(conn, e)
        await _memo(conn, e, e.refund_id, state=MemoState.NOT_NEEDED.value, problem_kind=None, problem=e.reason)
        await _resolve_open(conn, e, refund_subject(e.refund_id))
