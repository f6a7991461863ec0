"""The ops API's routes for payouts (issue 11): the payout-reconciliation read model
(projections/payouts.py) and the operator commands of the payout flow.

Reads: payouts (by state, by month), one payout with its journal, transactions and exceptions,
the open payout exceptions, the month-end report (JSON or CSV; with the month's sales orders tied
out to Shopify Payments' payouts and the other gateways' clearing accounts), sales orders paid but not paid
out after N days (readmodel.sales_documents against the payouts' matched charges).
Writes (202, an operator command): read Shopify's payouts now (RequestPayoutIngest, the payout
ingest), match a payout's transactions again (RematchPayout) and decide a held or failed payout
again (ReleasePayout, both the payout decider).

Registered by services/ops/api.py (`register`); the fixed paths are declared before /payouts/{payout_id}.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import AwareDatetime

from contracts.platform import ReleasePayout, RematchPayout, RequestPayoutIngest
from contracts.shopify.payouts import payout_key
from domain.payouts.clearing import (
    EXPLANATIONS,
    PAYOUT_FLOW,
    Charge,
    ClearingAccounts,
    OrderPayments,
    ShareKind,
    allocate,
)
from projections.payouts import PAYOUTS

MAX_ID = 2**63 - 1
# a month of the years 1970-2999: a year Python's dates cannot step past (9999-12, 0000-01) is a 422
MONTH = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"
ZERO = Decimal("0.00")


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {k: (json.loads(v) if k in ("journal", "reversal", "summary", "payload") and isinstance(v, str)
                else _plain(v)) for k, v in dict(record).items()}


def month_range(month: str) -> tuple[datetime, datetime]:
    first = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following


def exception_record(r: asyncpg.Record) -> dict[str, Any]:
    """A payout exception as /exceptions lists every exception (source "payout")."""
    return {"source": "payout", "exception_id": str(r["exception_id"]), "kind": r["kind"], "reason": r["reason"],
            "payload": {**(json.loads(r["payload"]) if isinstance(r["payload"], str) else (r["payload"] or {})),
                        "payout_id": r["payout_id"], "transaction_id": r["transaction_id"]},
            "action": r["action"], "status": r["status"], "raised_at": r["raised_at"],
            "resolved_at": r["resolved_at"], "shopify_order_id": None, "order_name": None, "sku": None,
            "location_id": None}


async def payout_exceptions(pool: asyncpg.Pool, status: str, limit: int, payout_id: int | None = None
                            ) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM readmodel.payout_exceptions WHERE ($1 = 'all' OR status = $1) "
        "AND ($2::bigint IS NULL OR payout_id = $2) ORDER BY raised_at DESC, exception_id LIMIT $3",
        status, payout_id, limit)


def _shares(shares: dict[tuple[ShareKind, str | None, str | None], list], kinds: tuple[ShareKind, ...]
            ) -> list[dict[str, Any]]:
    """The shares of these kinds summed per (kind, account, gateway), in ShareKind's order."""
    order = list(ShareKind)
    return [{"kind": str(kind), "gateway": gateway, "account": account, "amount": _plain(amount), "orders": orders,
             "explanation": EXPLANATIONS[kind]}
            for (kind, account, gateway), (amount, orders) in sorted(
                shares.items(), key=lambda item: (order.index(item[0][0]), item[0][1] or "", item[0][2] or ""))
            if kind in kinds]


async def sales_tie_out(pool: asyncpg.Pool, start: datetime, end: datetime, accounts: ClearingAccounts
                        ) -> list[dict[str, Any]]:
    """The month's sales orders (created in Prima in the month) tied out per currency: their total
    = Shopify Payments paid out in payouts journalled by the month's end + other gateways carried
    to their clearing accounts + the differences, each named with its explanation (timing: paid
    out later, awaiting a payout; gateways not recorded or without a clearing account...). Each
    order's total is split by domain/payouts/clearing.py `allocate`."""
    rows = await pool.fetch(
        """SELECT d.shopify_order_id, d.currency, d.total, coalesce(g.gateway_names, '{}') AS gateway_names,
                  coalesce(g.gateway_amounts, '[]')::text AS gateway_amounts,
                  coalesce((SELECT json_agg(json_build_object('amount', t.amount, 'within', p.issued_at < $2))
                            FROM readmodel.payout_transactions t JOIN readmodel.payouts p ON p.payout_id = t.payout_id
                            WHERE t.order_id = d.shopify_order_id AND t.type = 'CHARGE' AND t.currency = d.currency
                              AND p.journal_number IS NOT NULL AND p.reversal_number IS NULL), '[]')::text AS charges
           FROM readmodel.sales_documents d
           LEFT JOIN readmodel.order_payment_gateways g ON g.shopify_order_id = d.shopify_order_id
           WHERE d.sales_order_created_at >= $1 AND d.sales_order_created_at < $2 AND d.total IS NOT NULL
           ORDER BY d.shopify_order_id""", start, end)
    by_currency: dict[str, dict[str, Any]] = {}
    for r in rows:
        order = OrderPayments(
            order_id=r["shopify_order_id"], total=r["total"], gateways=tuple(r["gateway_names"]),
            gateway_amounts=tuple((g, Decimal(a)) for g, a in json.loads(r["gateway_amounts"])),
            charges=tuple(Charge(amount=Decimal(str(c["amount"])), within_month=c["within"])
                          for c in json.loads(r["charges"])))
        entry = by_currency.setdefault(r["currency"], {"total": ZERO, "orders": 0, "shares": {}})
        entry["total"] += order.total
        entry["orders"] += 1
        for share in allocate(order, accounts):
            found = entry["shares"].setdefault((share.kind, share.account, share.gateway), [ZERO, 0])
            found[0] += share.amount
            found[1] += 1
    tie_out = []
    for currency, entry in sorted(by_currency.items()):
        paid_out = _shares(entry["shares"], (ShareKind.PAID_OUT,))
        clearing = _shares(entry["shares"], (ShareKind.CLEARING,))
        differences = _shares(entry["shares"], tuple(k for k in ShareKind
                                                     if k not in (ShareKind.PAID_OUT, ShareKind.CLEARING)))
        explained = sum((Decimal(x["amount"]) for x in (*paid_out, *clearing, *differences)), ZERO)
        tie_out.append({
            "currency": currency, "sales_orders": entry["orders"], "sales_orders_total": _plain(entry["total"]),
            "shopify_payments_paid_out": _plain(sum((Decimal(x["amount"]) for x in paid_out), ZERO)),
            "clearing": clearing,
            "clearing_total": _plain(sum((Decimal(x["amount"]) for x in clearing), ZERO)),
            "differences": differences, "explained": _plain(explained),
            "difference": _plain(entry["total"] - explained)})
    return tie_out


async def month_report(pool: asyncpg.Pool, month: str, accounts: ClearingAccounts | None = None) -> dict[str, Any]:
    """Every payout issued in the month, the journalled amounts by category, and how they tie:
    the categories' net (credits - debits) equals the deposits of the journalled payouts; the
    payouts not journalled, the unmatched transactions and the refunds' credit memos are listed;
    and the month's sales orders tie out to Shopify Payments' payouts, the other gateways'
    clearing accounts and the differences named (`sales_tie_out`)."""
    start, end = month_range(month)
    payouts = await pool.fetch(
        "SELECT payout_id, state, shopify_status, issued_at, currency, net, journal_number, reversal_number, matched, "
        "unmatched, not_applicable, hold_reason, hold_detail, difference, journal::text AS journal "
        "FROM readmodel.payouts WHERE issued_at >= $1 AND issued_at < $2 ORDER BY issued_at, payout_id", start, end)
    categories: dict[tuple[str, str], dict[str, Decimal]] = {}
    deposits: dict[str, Decimal] = {}
    journalled, not_journalled = [], []
    for p in payouts:
        entry = {k: _plain(p[k]) for k in ("payout_id", "state", "shopify_status", "issued_at", "currency", "net",
                                           "journal_number", "reversal_number", "matched", "unmatched")}
        if p["journal_number"] is None or p["reversal_number"] is not None:
            not_journalled.append({**entry, "reason": p["hold_reason"] or p["state"], "detail": p["hold_detail"],
                                   "difference": _plain(p["difference"])})
            continue
        journalled.append(entry)
        journal = json.loads(p["journal"])
        posted = [r for r in journal.get("reclassifications", []) if r["status"] == "posted"]
        # posted reclassifications count: what they moved off the clearing account is sales, tax...
        for line in [*journal["lines"], *(line for r in posted for line in r["lines"])]:
            key = (line["category"], p["currency"])
            found = categories.setdefault(key, {"debit": ZERO, "credit": ZERO})
            found["debit"] += Decimal(line["debit"])
            found["credit"] += Decimal(line["credit"])
    for (category, currency), amounts in categories.items():
        if category == "bank":
            deposits[currency] = deposits.get(currency, ZERO) + amounts["debit"] - amounts["credit"]
    lines = [{"category": c, "currency": cur, "debit": _plain(a["debit"]), "credit": _plain(a["credit"]),
              "net": _plain(a["credit"] - a["debit"])}
             for (c, cur), a in sorted(categories.items()) if c != "bank"]
    tie_out = []
    for currency, deposited in sorted(deposits.items()):
        explained = sum((Decimal(x["net"]) for x in lines if x["currency"] == currency), ZERO)
        tie_out.append({"currency": currency, "categories_net": _plain(explained), "deposits": _plain(deposited),
                        "difference": _plain(explained - deposited)})
    ids = [p["payout_id"] for p in payouts]
    unmatched = await pool.fetch(
        "SELECT payout_id, transaction_id, type, amount, currency, order_id, order_name, reason, detail "
        "FROM readmodel.payout_transactions WHERE payout_id = ANY($1::bigint[]) AND match_status = 'unmatched' "
        "ORDER BY payout_id, transaction_id", ids)
    refunds = await pool.fetchrow(
        """SELECT count(*) AS refunds, count(*) FILTER (WHERE document_kind = 'credit_memo' AND match_status = 'matched')
                  AS matched_to_credit_memos, coalesce(sum(-amount), 0) AS refunded,
                  coalesce(sum(-amount) FILTER (WHERE match_status = 'matched'), 0) AS refunded_matched
           FROM readmodel.payout_transactions WHERE payout_id = ANY($1::bigint[]) AND type = 'REFUND'""", ids)
    sales_orders = await pool.fetchrow(
        """SELECT count(*) AS created, coalesce(sum(d.total), 0) AS total,
                  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM readmodel.payout_transactions t
                      WHERE t.order_id = d.shopify_order_id AND t.type = 'CHARGE' AND t.match_status = 'matched'))
                  AS paid_out
           FROM readmodel.sales_documents d
           WHERE d.sales_order_created_at >= $1 AND d.sales_order_created_at < $2""", start, end)
    return {
        "month": month, "payouts": journalled, "not_journalled": not_journalled, "categories": lines,
        "tie_out": tie_out,
        "credit_memos": {k: _plain(v) for k, v in dict(refunds).items()},
        "sales_orders": {k: _plain(v) for k, v in dict(sales_orders).items()},
        "unmatched": [{k: _plain(v) for k, v in dict(r).items()} for r in unmatched],
        "sales_tie_out": await sales_tie_out(pool, start, end, accounts or ClearingAccounts()),
    }


def report_csv(report: dict[str, Any]) -> str:
    """The month-end report as one CSV: a `section` column, then that section's columns."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "payout_id", "category", "currency", "debit", "credit", "net", "state", "detail"])
    for line in report["categories"]:
        writer.writerow(["category", "", line["category"], line["currency"], line["debit"], line["credit"],
                         line["net"], "", ""])
    for tie in report["tie_out"]:
        writer.writerow(["tie_out", "", "deposits", tie["currency"], "", "", tie["deposits"], "",
                         f"categories net {tie['categories_net']}, difference {tie['difference']}"])
    for p in report["payouts"]:
        writer.writerow(["payout", p["payout_id"], "bank", p["currency"], "", "", p["net"], p["state"],
                         f"journal {p['journal_number']}; {p['matched']} matched, {p['unmatched']} unmatched"])
    for p in report["not_journalled"]:
        writer.writerow(["not_journalled", p["payout_id"], "", p["currency"], "", "", p["net"], p["state"],
                         f"{p['reason']}: {p['detail'] or ''}".strip(": ")])
    for u in report["unmatched"]:
        writer.writerow(["unmatched", u["payout_id"], u["type"], u["currency"], "", "", u["amount"], u["reason"],
                         u["detail"]])
    memos = report["credit_memos"]
    writer.writerow(["credit_memos", "", "refunds", "", "", "", memos["refunded"], "",
                     f"{memos['matched_to_credit_memos']} of {memos['refunds']} refunds matched to credit memos"])
    so = report["sales_orders"]
    writer.writerow(["sales_orders", "", "created", "", "", "", so["total"], "",
                     f"{so['paid_out']} of {so['created']} paid out in a payout"])
    for tie in report["sales_tie_out"]:
        currency = tie["currency"]
        writer.writerow(["sales_tie_out", "", "sales_orders", currency, "", "", tie["sales_orders_total"], "",
                         f"{tie['sales_orders']} sales orders created in Prima in the month"])
        writer.writerow(["sales_tie_out", "", "shopify_payments_paid_out", currency, "", "",
                         tie["shopify_payments_paid_out"], "", "paid out in Shopify payouts journalled"])
        for x in tie["clearing"]:
            writer.writerow(["sales_tie_out", "", f"clearing {x['account']}", currency, "", "", x["amount"],
                             x["gateway"], f"{x['orders']} orders: {x['explanation']}"])
        for x in tie["differences"]:
            writer.writerow(["sales_tie_out", "", x["kind"], currency, "", "", x["amount"], x["gateway"] or "",
                             f"{x['orders']} orders: {x['explanation']}"])
        writer.writerow(["sales_tie_out", "", "difference", currency, "", "", tie["difference"], "",
                         f"sales orders {tie['sales_orders_total']} - explained {tie['explained']}"])
    return out.getvalue()


def register(routes: FastAPI, send: Callable[[Any, bytes, str], Awaitable[Any]],
             stamp: Callable[[str], dict[str, Any]], auth: list[Any], unpaid_after_days: int = 7,
             clearing_accounts: ClearingAccounts | None = None) -> None:
    """Add the payout routes to the ops API `routes` (on the app itself, so that its route list
    shows them). `send(command, key, detail)` publishes an operator command; `stamp(by)` gives
    its id, requested_by and requested_at. `clearing_accounts`: settings.payout_clearing_accounts."""

    @routes.get("/payouts", dependencies=auth)
    async def list_payouts(request: Request, state: str | None = Query(None, max_length=40),
                           month: str | None = Query(None, pattern=MONTH), limit: int = Query(100, ge=1, le=1000)):
        if state is not None and state not in PAYOUTS.states:
            raise HTTPException(422, f"unknown state; one of {', '.join(PAYOUTS.states)}")
        start, end = month_range(month) if month else (None, None)
        rows = await request.app.state.pool.fetch(
            "SELECT payout_id, state, shopify_status, issued_at, currency, net, transaction_count, journal_number, "
            "reversal_number, matched, unmatched, not_applicable, hold_reason, difference, last_event_at "
            "FROM readmodel.payouts WHERE ($1::text IS NULL OR state = $1) "
            "AND ($2::timestamptz IS NULL OR (issued_at >= $2 AND issued_at < $3)) "
            "ORDER BY issued_at DESC NULLS LAST, payout_id DESC LIMIT $4", state, start, end, limit)
        return {"payouts": [_row(r) for r in rows]}

    @routes.get("/payouts/report", dependencies=auth)
    async def report(request: Request, month: str = Query(pattern=MONTH),
                     format: str = Query("json", pattern="^(json|csv)$")):
        found = await month_report(request.app.state.pool, month, clearing_accounts)
        if format == "csv":
            return PlainTextResponse(report_csv(found), media_type="text/csv",
                                     headers={"Content-Disposition": f'attachment; filename="payouts-{month}.csv"'})
        return found

    @routes.get("/payouts/exceptions", dependencies=auth)
    async def exceptions(request: Request, status: str = Query("open", pattern="^(open|resolved|all)$"),
                         limit: int = Query(100, ge=1, le=1000)):
        rows = await payout_exceptions(request.app.state.pool, status, limit)
        return {"exceptions": [exception_record(r) for r in rows]}

    @routes.get("/payouts/unpaid-orders", dependencies=auth)
    async def unpaid_orders(request: Request, days: int = Query(unpaid_after_days, ge=1, le=3650),
                            limit: int = Query(100, ge=1, le=1000)):
        """Sales orders created in Prima more than `days` ago whose payment no payout has paid out
        (no charge): each is an order paid but never paid out. An order whose recorded gateways
        are all others than the payouts' (PayPal, a gift card, a manual payment) is never paid
        out by Shopify: not listed (its money is on a clearing account; the month's report)."""
        before = datetime.now(UTC) - timedelta(days=days)
        paying_out = [g for g, account in (clearing_accounts or ClearingAccounts()).root.items()
                      if account == PAYOUT_FLOW]
        rows = await request.app.state.pool.fetch(
            """SELECT d.shopify_order_id, d.order_name, d.sales_order_number, d.sales_order_created_at, d.total,
                      d.currency FROM readmodel.sales_documents d
               WHERE d.sales_order_number IS NOT NULL AND d.sales_order_created_at < $1
                 AND NOT EXISTS (SELECT 1 FROM readmodel.payout_transactions t WHERE t.order_id = d.shopify_order_id
                                 AND t.type = 'CHARGE')
                 AND NOT EXISTS (SELECT 1 FROM readmodel.order_payment_gateways g
                                 WHERE g.shopify_order_id = d.shopify_order_id AND cardinality(g.gateway_names) > 0
                                   AND NOT EXISTS (SELECT 1 FROM unnest(g.gateway_names) AS n(name)
                                                   WHERE lower(trim(n.name)) = ANY($3::text[])))
               ORDER BY d.sales_order_created_at LIMIT $2""", before, limit, paying_out)
        return {"days": days, "orders": [_row(r) for r in rows]}

    @routes.post("/payouts/ingest", status_code=202, dependencies=auth)
    async def ingest(payout_id: int | None = Query(None, ge=1, le=MAX_ID),
                     since: AwareDatetime | None = Query(None, description="payouts issued since (ISO 8601)"),
                     requested_by: str = Query("ops-api", max_length=200)) -> dict[str, Any]:
        """Ask the payout ingest to read one payout again, or the payouts issued since a date."""
        if payout_id is not None and since is not None:
            raise HTTPException(422, "give payout_id or since, not both")
        command = RequestPayoutIngest(run_id=uuid4(), payout_id=payout_id, since=since, **stamp(requested_by))
        accepted = await send(command, payout_key(payout_id) if payout_id else str(command.run_id).encode(),
                              "the payout ingest reads Shopify's payouts")
        return {**accepted.model_dump(mode="json"), "run_id": str(command.run_id)}

    @routes.post("/payouts/rematch", status_code=202, dependencies=auth)
    async def rematch_all(requested_by: str = Query("ops-api", max_length=200)):
        """Match the transactions of every payout with unmatched ones again."""
        command = RematchPayout(payout_id=None, **stamp(requested_by))
        return await send(command, b"payouts", "the payout decider matches the unmatched transactions again")

    @routes.get("/payouts/{payout_id}", dependencies=auth)
    async def get_payout(request: Request, payout_id: int = Path(ge=1, le=MAX_ID),
                         transactions: int = Query(1000, ge=0, le=20_000)):
        pool = request.app.state.pool
        row = await pool.fetchrow("SELECT * FROM readmodel.payouts WHERE payout_id = $1", payout_id)
        if row is None:
            raise HTTPException(404, f"payout {payout_id} not seen")
        listed = await pool.fetch(
            "SELECT * FROM readmodel.payout_transactions WHERE payout_id = $1 "
            "ORDER BY match_status = 'unmatched' DESC, processed_at, transaction_id LIMIT $2", payout_id, transactions)
        found = await payout_exceptions(pool, "all", 1000, payout_id)
        shown = _row(row)
        # the reclassification journals (kept with the journal in the read model) listed on the payout
        reclassifications = (shown.get("journal") or {}).pop("reclassifications", [])
        return {**shown, "reclassifications": reclassifications, "transactions": [_row(t) for t in listed],
                "exceptions": [exception_record(e) for e in found]}

    @routes.post("/payouts/{payout_id}/rematch", status_code=202, dependencies=auth)
    async def rematch(payout_id: int = Path(ge=1, le=MAX_ID), requested_by: str = Query("ops-api", max_length=200)):
        command = RematchPayout(payout_id=payout_id, **stamp(requested_by))
        return await send(command, payout_key(payout_id), "the payout decider matches the payout's transactions again")

    @routes.post("/payouts/{payout_id}/release", status_code=202, dependencies=auth)
    async def release(payout_id: int = Path(ge=1, le=MAX_ID), requested_by: str = Query("ops-api", max_length=200)):
        command = ReleasePayout(payout_id=payout_id, **stamp(requested_by))
        return await send(command, payout_key(payout_id), "the payout decider decides the payout again")
