"""The order reconciler's own tables (migration 0008), and what it reads of the order read model.

- ingest.reconciler_state: the watermark (every order updated before it has been fed and
  acknowledged by Kafka) and how far the orphan watch has checked Prima's sales orders;
- ingest.reconcile_runs: a run's life is requested (by the schedule, or by an operator's
  ReconcileOrders) -> running (its progress updated page by page) -> done (the watermark moved in
  the same transaction) or failed (with its error). A run found running when no run can be
  (the reconciler restarted, or PostgreSQL went away mid-run) was interrupted: an operator's is
  requested again under its own id (so `shopify-prima reconcile` goes on following it), a
  scheduled one is failed (the schedule runs again by itself);
- ingest.reconciled_orders: each order version fed, the Admin GraphQL order as read, stored before
  it is published and marked once Kafka acknowledged it;
- ingest.reconciler_exceptions: the reconciler's exception records, one per kind and subject,
  opened when found and resolved when no longer true.
Reads of readmodel.order_sync (the projector's): which orders the integration has seen, at which
updated_at, and which have no sales order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from domain.orders.payment import CAPTURED_FINANCIAL_STATUSES
from domain.orders.reconciliation import scheduled_run_due

STATE = "orders"
SCHEDULE = "schedule"
OPERATOR = "operator:"
INTERRUPTED = "interrupted (the reconciler restarted or lost PostgreSQL mid-run)"
EXCEPTION_KINDS = ("paid_without_sales_order", "sales_order_without_shopify_order", "unreadable_order")


@dataclass(frozen=True)
class Run:
    run_id: UUID
    trigger: str
    since: datetime | None

    @property
    def scheduled(self) -> bool:
        return self.trigger == SCHEDULE


@dataclass(frozen=True)
class ReconcilerState:
    watermark: datetime | None
    prima_checked_until: datetime | None


@dataclass(frozen=True)
class Fed:
    """An order version about to be published: its raw node, kept first."""

    raw_payload_id: UUID
    shopify_order_id: int
    shopify_updated_at: datetime
    body: dict[str, Any]


@dataclass(frozen=True)
class UnsentOrder:
    shopify_order_id: int
    order_name: str
    state: str
    financial_status: str | None
    prima_sales_order_number: str | None
    first_received_at: datetime


@dataclass(frozen=True)
class ExceptionRecord:
    """An exception record to open (or keep open)."""

    exception_id: UUID
    kind: str
    shopify_order_id: int | None
    order_name: str | None
    sales_order_number: str | None
    reason: str
    action: str
    payload: dict[str, Any]


class ReconcilerStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- state ------------------------------------------------------------------------------------

    async def state(self) -> ReconcilerState:
        row = await self.pool.fetchrow(
            "SELECT watermark, prima_checked_until FROM ingest.reconciler_state WHERE name = $1", STATE)
        return ReconcilerState(row["watermark"], row["prima_checked_until"]) if row else ReconcilerState(None, None)

    async def set_prima_checked_until(self, until: datetime) -> None:
        await self.pool.execute(
            """INSERT INTO ingest.reconciler_state (name, prima_checked_until, updated_at) VALUES ($1, $2, now())
               ON CONFLICT (name) DO UPDATE SET prima_checked_until = GREATEST(reconciler_state.prima_checked_until, $2),
               updated_at = now()""", STATE, until)

    # -- runs -------------------------------------------------------------------------------------

    async def request_run(self, trigger: str, since: datetime | None, run_id: UUID | None = None,
                          conn: asyncpg.Connection | None = None) -> UUID:
        """Record a requested run (the same run id twice is recorded once)."""
        run_id = run_id or uuid4()
        await (conn or self.pool).execute(
            """INSERT INTO ingest.reconcile_runs (run_id, trigger, status, since, requested_at)
               VALUES ($1, $2, 'requested', $3, now()) ON CONFLICT (run_id) DO NOTHING""",
            run_id, trigger[:250], since)
        return run_id

    async def recover_interrupted(self) -> list[UUID]:
        """Runs left running (none can be: the caller holds the reconciler's lock and runs none
        now): an operator's is requested again under its own id, a scheduled one failed."""
        async with self.pool.acquire() as conn, conn.transaction():
            again = await conn.fetch(
                """UPDATE ingest.reconcile_runs SET status = 'requested', started_at = NULL, orders_total = NULL,
                   total_precision = NULL, orders_read = 0, orders_fed = 0, orders_known = 0, orders_unreadable = 0,
                   pages = 0, read_up_to = NULL, watermark_before = NULL, error = $1
                   WHERE status = 'running' AND trigger <> $2 RETURNING run_id""", INTERRUPTED + "; asked again",
                SCHEDULE)
            await conn.execute(
                """UPDATE ingest.reconcile_runs SET status = 'failed', finished_at = now(), error = $1
                   WHERE status = 'running' AND trigger = $2""", INTERRUPTED, SCHEDULE)
        return [r["run_id"] for r in again]

    async def next_run(self, now: datetime, interval: timedelta, retry_after: timedelta) -> Run | None:
        """The oldest requested run, else a scheduled one when it is due (recorded here)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT run_id, trigger, since FROM ingest.reconcile_runs WHERE status = 'requested'
                   ORDER BY requested_at, run_id LIMIT 1 FOR UPDATE SKIP LOCKED""")
            if row is not None:
                return Run(row["run_id"], row["trigger"], row["since"])
            last = await conn.fetchrow(
                """SELECT max(started_at) FILTER (WHERE status = 'done') AS success, max(started_at) AS attempt
                   FROM ingest.reconcile_runs WHERE trigger = $1""", SCHEDULE)
            if not scheduled_run_due(last["success"], last["attempt"], now, interval, retry_after):
                return None
            run_id = await self.request_run(SCHEDULE, None, conn=conn)
            return Run(run_id, SCHEDULE, None)

    async def start_run(self, run_id: UUID, since: datetime, started_at: datetime,
                        watermark: datetime | None) -> None:
        await self.pool.execute(
            """UPDATE ingest.reconcile_runs SET status = 'running', since = $2, started_at = $3, watermark_before = $4
               WHERE run_id = $1""", run_id, since, started_at, watermark)

    async def set_total(self, run_id: UUID, total: int, precision: str) -> None:
        await self.pool.execute(
            "UPDATE ingest.reconcile_runs SET orders_total = $2, total_precision = $3 WHERE run_id = $1",
            run_id, total, precision)

    async def progress(self, run_id: UUID, *, read: int, fed: int, known: int, unreadable: int,
                       read_up_to: datetime | None) -> None:
        await self.pool.execute(
            """UPDATE ingest.reconcile_runs SET orders_read = orders_read + $2, orders_fed = orders_fed + $3,
               orders_known = orders_known + $4, orders_unreadable = orders_unreadable + $5, pages = pages + 1,
               read_up_to = COALESCE($6, read_up_to) WHERE run_id = $1""",
            run_id, read, fed, known, unreadable, read_up_to)

    async def finish_run(self, run_id: UUID, watermark: datetime | None) -> None:
        """The run is done and, in the same transaction, the watermark moved (never back)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE ingest.reconcile_runs SET status = 'done', finished_at = now(), watermark_after = $2,
                   error = NULL WHERE run_id = $1""", run_id, watermark)
            if watermark is not None:
                await conn.execute(
                    """INSERT INTO ingest.reconciler_state (name, watermark, updated_at) VALUES ($1, $2, now())
                       ON CONFLICT (name) DO UPDATE SET
                       watermark = GREATEST(reconciler_state.watermark, $2), updated_at = now()""", STATE, watermark)

    async def fail_run(self, run_id: UUID, error: str) -> None:
        await self.pool.execute(
            "UPDATE ingest.reconcile_runs SET status = 'failed', finished_at = now(), error = $2 WHERE run_id = $1",
            run_id, error[:2000])

    async def run_row(self, run_id: UUID) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM ingest.reconcile_runs WHERE run_id = $1", run_id)
        return dict(row) if row else None

    # -- what the integration has seen ------------------------------------------------------------

    async def known(self, versions: Sequence[tuple[int, datetime]]) -> set[tuple[int, datetime]]:
        """The (order id, updated_at) the integration has seen: the order read model holds the
        order at that updated_at or a later one, or the reconciler already fed that version."""
        if not versions:
            return set()
        ids = sorted({order_id for order_id, _ in versions})
        async with self.pool.acquire() as conn:
            seen = {r["shopify_order_id"]: r["shopify_updated_at"] for r in await conn.fetch(
                """SELECT shopify_order_id, shopify_updated_at FROM readmodel.order_sync
                   WHERE shopify_order_id = ANY($1::bigint[])""", ids)}
            fed = {(r["shopify_order_id"], r["shopify_updated_at"]) for r in await conn.fetch(
                """SELECT shopify_order_id, shopify_updated_at FROM ingest.reconciled_orders
                   WHERE shopify_order_id = ANY($1::bigint[]) AND published_at IS NOT NULL""", ids)}
        return {(order_id, at) for order_id, at in versions
                if (order_id, at) in fed or (seen.get(order_id) is not None and seen[order_id] >= at)}

    async def keep(self, run_id: UUID, fed: Iterable[Fed]) -> None:
        """Store each order version before it is published (again: the row is kept as it was)."""
        rows = [(f.raw_payload_id, f.shopify_order_id, f.shopify_updated_at, run_id, json.dumps(f.body)) for f in fed]
        if rows:
            await self.pool.executemany(
                """INSERT INTO ingest.reconciled_orders
                   (raw_payload_id, shopify_order_id, shopify_updated_at, run_id, body, fetched_at)
                   VALUES ($1, $2, $3, $4, $5::jsonb, now()) ON CONFLICT DO NOTHING""", rows)

    async def published(self, raw_payload_ids: Sequence[UUID]) -> None:
        if raw_payload_ids:
            await self.pool.execute(
                """UPDATE ingest.reconciled_orders SET published_at = now()
                   WHERE raw_payload_id = ANY($1::uuid[]) AND published_at IS NULL""", list(raw_payload_ids))

    # -- the orphan watch ---------------------------------------------------------------------------

    async def unsent_paid_orders(self, first_seen_before: datetime, limit: int = 10_000) -> list[UnsentOrder]:
        """Orders of the read model with a captured financial status and no sales order, first
        seen before the given time (the candidates; the rule is domain/orders/reconciliation.py's)."""
        rows = await self.pool.fetch(
            """SELECT shopify_order_id, order_name, state, financial_status, prima_sales_order_number, first_received_at
               FROM readmodel.order_sync
               WHERE prima_sales_order_number IS NULL AND first_received_at <= $1
                 AND lower(financial_status) = ANY($2::text[])
               ORDER BY first_received_at LIMIT $3""",
            first_seen_before, sorted(CAPTURED_FINANCIAL_STATUSES), limit)
        return [UnsentOrder(**dict(r)) for r in rows]

    async def orders_seen(self, order_ids: Sequence[int]) -> set[int]:
        if not order_ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT shopify_order_id FROM readmodel.order_sync WHERE shopify_order_id = ANY($1::bigint[])",
            sorted(set(order_ids)))
        return {r["shopify_order_id"] for r in rows}

    async def open_exceptions(self, kind: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM ingest.reconciler_exceptions WHERE status = 'open' AND kind = $1 ORDER BY raised_at", kind)
        return [dict(r) for r in rows]

    async def raise_exceptions(self, found: Iterable[ExceptionRecord], now: datetime) -> int:
        """Open each (or reopen it; one open record per kind and subject); how many were new."""
        opened = 0
        async with self.pool.acquire() as conn, conn.transaction():
            for e in found:
                status = await conn.fetchval(
                    """INSERT INTO ingest.reconciler_exceptions (exception_id, kind, shopify_order_id, order_name,
                       sales_order_number, reason, action, payload, status, raised_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, 'open', $9)
                       ON CONFLICT (exception_id) DO UPDATE SET reason = EXCLUDED.reason, action = EXCLUDED.action,
                       payload = EXCLUDED.payload, order_name = EXCLUDED.order_name,
                       raised_at = CASE WHEN reconciler_exceptions.status = 'open' THEN reconciler_exceptions.raised_at
                                        ELSE EXCLUDED.raised_at END,
                       status = 'open', resolved_at = NULL
                       RETURNING (xmax = 0)""",
                    e.exception_id, e.kind, e.shopify_order_id, e.order_name, e.sales_order_number, e.reason, e.action,
                    json.dumps(e.payload, default=str), now)
                opened += bool(status)
        return opened

    async def resolve(self, exception_ids: Iterable[UUID], now: datetime) -> int:
        ids = list(exception_ids)
        if not ids:
            return 0
        result = await self.pool.execute(
            """UPDATE ingest.reconciler_exceptions SET status = 'resolved', resolved_at = $2
               WHERE exception_id = ANY($1::uuid[]) AND status = 'open'""", ids, now)
        return int(result.split()[-1])

    async def open_counts(self) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT kind, count(*) AS n FROM ingest.reconciler_exceptions WHERE status = 'open' GROUP BY kind")
        return {kind: 0 for kind in EXCEPTION_KINDS} | {r["kind"]: r["n"] for r in rows}
