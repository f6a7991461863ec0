"""`shopify-prima payouts`: the payout flow on the command line, through the ops API (like every
command of services/ops/cli.py, whose helpers it uses): list, show, the month-end report (CSV
too), read Shopify's payouts now, match again, release, the open exceptions, and the sales
orders paid but never paid out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import typer
from rich.table import Table

payouts_app = typer.Typer(help="Shopify payouts as summary journals in Prima, every transaction matched.",
                          no_args_is_help=True)


def _cli():
    from services.ops import (
        cli,  # the ops CLI's helpers (token, errors); imported late: cli imports this
    )

    return cli


@payouts_app.command("list")
def payouts_list(state: str | None = typer.Option(None, help="reading, awaiting_paid, held, journal_requested, "
                                                             "journalled, reconciled, journal_failed, failed, ..."),
                 month: str | None = typer.Option(None, help="issued in this month: 2026-11"),
                 limit: int = typer.Option(50, min=1, max=1000)) -> None:
    """Payouts, the latest issued first."""
    cli = _cli()
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    if month:
        params["month"] = month
    table = Table(title=f"payouts{f' ({state})' if state else ''}{f' of {month}' if month else ''}")
    for column in ("payout", "issued", "Shopify", "state", "net", "journal", "matched", "unmatched"):
        table.add_column(column)
    for p in cli._get("/payouts", **params)["payouts"]:
        table.add_row(str(p["payout_id"]), cli._when(p["issued_at"]), p["shopify_status"] or "", p["state"],
                      f"{p['net'] or ''} {p['currency'] or ''}".strip(), p["journal_number"] or "",
                      str(p["matched"]), str(p["unmatched"]))
    cli.console.print(table)


@payouts_app.command("show")
def payouts_show(payout_id: int, transactions: int = typer.Option(200, min=0, max=20_000)) -> None:
    """One payout: state, the Prima journal and its lines, transactions (unmatched first), exceptions."""
    cli = _cli()
    p = cli._get(f"/payouts/{payout_id}", transactions=transactions)
    cli.console.print(f"[bold]payout {p['payout_id']}[/bold] issued {cli._when(p['issued_at'])}: Shopify "
                      f"{p['shopify_status']}, {p['net']} {p['currency']}; [bold]{p['state']}[/bold]; "
                      f"{p['matched']} matched, {p['unmatched']} unmatched, {p['not_applicable']} without a document")
    if p.get("hold_reason"):
        cli.console.print(f"[yellow]held ({p['hold_reason']}): {p['hold_detail']}[/yellow]")
    if p.get("journal"):
        table = Table(title=f"journal {p['journal_number'] or '(requested, not posted yet)'}")
        for column in ("line", "account", "description", "debit", "credit", "tax code"):
            table.add_column(column)
        for line in p["journal"]["lines"]:
            table.add_row(str(line["line_number"]), line["account"], line["description"], line["debit"],
                          line["credit"], line.get("tax_code") or "")
        cli.console.print(table)
    for r in p.get("reclassifications") or []:  # charges moved off the clearing account once matched
        table = Table(title=f"reclassification {r.get('journal_number') or '(not posted yet)'}: {r['status']}, "
                            f"{len(r.get('charge_ids') or [])} charge(s)")
        for column in ("line", "account", "description", "debit", "credit", "tax code"):
            table.add_column(column)
        for line in r["lines"]:
            table.add_row(str(line["line_number"]), line["account"], line["description"], line["debit"],
                          line["credit"], line.get("tax_code") or "")
        cli.console.print(table)
    if p.get("reversal_number"):
        cli.console.print(f"reversed by {p['reversal_number']}")
    table = Table(title="transactions")
    for column in ("transaction", "type", "amount", "fee", "order", "match", "document", "reason"):
        table.add_column(column)
    for t in p["transactions"]:
        table.add_row(str(t["transaction_id"]), t["type"], t["amount"], t["fee"], t["order_name"] or "",
                      t["match_status"] or "", t["document"] or "", t["reason"] or "")
    cli.console.print(table)
    for e in p["exceptions"]:
        if e["status"] == "open":
            cli.console.print(f"  [bold]{e['kind']}[/bold]: {e['reason']}  -> {e['action']}")


@payouts_app.command("report")
def payouts_report(month: str = typer.Option(..., "--month", help="the month: 2026-11"),
                   csv: Path | None = typer.Option(None, "--csv", help="write the report as CSV to this file")) -> None:
    """The month-end report: journalled amounts by category tied to the deposits, payouts not
    journalled, unmatched transactions, refunds against credit memos, sales orders paid out, and
    the month's sales orders tied out to Shopify Payments' payouts, the other gateways' clearing
    accounts and the differences named."""
    cli = _cli()
    if csv is not None:
        csv.write_text(_text("/payouts/report", month=month, format="csv"))
        cli.console.print(f"written to {csv}")
        return
    report = cli._get("/payouts/report", month=month)
    table = Table(title=f"payouts of {month}: journalled amounts by category")
    for column in ("category", "currency", "debit", "credit", "net"):
        table.add_column(column)
    for line in report["categories"]:
        table.add_row(line["category"], line["currency"], line["debit"], line["credit"], line["net"])
    cli.console.print(table)
    for tie in report["tie_out"]:
        colour = "green" if tie["difference"] in ("0", "0.00") else "red"
        cli.console.print(f"[{colour}]{tie['currency']}: categories net {tie['categories_net']} = deposits "
                          f"{tie['deposits']} (difference {tie['difference']})[/{colour}]")
    cli.console.print(f"{len(report['payouts'])} payout(s) journalled, {len(report['not_journalled'])} not")
    for p in report["not_journalled"]:
        cli.console.print(f"  payout {p['payout_id']} {p['net']} {p['currency']}: {p['reason']} {p['detail'] or ''}")
    memos = report["credit_memos"]
    cli.console.print(f"refunds: {memos['refunds']}, {memos['matched_to_credit_memos']} matched to credit memos "
                      f"({memos['refunded_matched']} of {memos['refunded']})")
    so = report["sales_orders"]
    cli.console.print(f"sales orders created: {so['created']} ({so['total']}), {so['paid_out']} paid out")
    for tie in report["sales_tie_out"]:
        sales = Table(title=f"sales orders of {month} ({tie['currency']}): {tie['sales_orders']} orders, "
                            f"{tie['sales_orders_total']}")
        for column in ("where the money is", "gateway", "account", "amount", "orders", "explanation"):
            sales.add_column(column)
        sales.add_row("Shopify Payments paid out", "", "", tie["shopify_payments_paid_out"], "",
                      "in Shopify payouts journalled")
        for x in (*tie["clearing"], *tie["differences"]):
            sales.add_row("clearing" if x["kind"] == "clearing" else x["kind"], x["gateway"] or "", x["account"] or "",
                          x["amount"], str(x["orders"]), x["explanation"])
        cli.console.print(sales)
        colour = "green" if tie["difference"] in ("0", "0.00") else "red"
        cli.console.print(f"[{colour}]{tie['currency']}: sales orders {tie['sales_orders_total']} = paid out "
                          f"{tie['shopify_payments_paid_out']} + clearing {tie['clearing_total']} + differences "
                          f"(difference {tie['difference']})[/{colour}]")
    for u in report["unmatched"][:20]:
        cli.console.print(f"  unmatched {u['type']} {u['transaction_id']} of payout {u['payout_id']}: "
                          f"{u['reason']}: {u['detail']}")


@payouts_app.command("ingest")
def payouts_ingest(payout: int | None = typer.Option(None, "--payout", help="read this payout again"),
                   since: str | None = typer.Option(None, "--since", help="payouts issued since: 2026-11-01, 3d"),
                   by: str | None = typer.Option(None, help="who asks (default: $USER)")) -> None:
    """Read Shopify's payouts now (the payout ingest): one payout, or those issued since a time."""
    cli = _cli()
    params: dict[str, Any] = {"requested_by": by or cli.USER}
    if payout is not None:
        params["payout_id"] = payout
    if since:
        params["since"] = cli.parse_since(since).isoformat()
    accepted = cli._post("/payouts/ingest", **params)
    cli.console.print(f"payout ingest asked (run {accepted['run_id']}): {accepted['detail']}")


@payouts_app.command("rematch")
def payouts_rematch(payout_id: int | None = typer.Argument(None, help="a payout (default: every payout with "
                                                                      "unmatched transactions)"),
                    by: str | None = typer.Option(None, help="who asks (default: $USER)")) -> None:
    """Match a payout's transactions to their Prima documents again."""
    cli = _cli()
    path = f"/payouts/{payout_id}/rematch" if payout_id is not None else "/payouts/rematch"
    accepted = cli._post(path, requested_by=by or cli.USER)
    cli.console.print(f"re-match sent (command {accepted['command_id']}): {accepted['detail']}")


@payouts_app.command("release")
def payouts_release(payout_id: int, by: str | None = typer.Option(None, help="who releases it (default: $USER)")
                    ) -> None:
    """Decide a held payout, or one whose journal failed, again (after fixing its cause)."""
    cli = _cli()
    accepted = cli._post(f"/payouts/{payout_id}/release", requested_by=by or cli.USER)
    cli.console.print(f"release of payout {payout_id} sent (command {accepted['command_id']}): {accepted['detail']}")


@payouts_app.command("exceptions")
def payouts_exceptions(status: str = typer.Option("open", help="open, resolved or all"),
                       limit: int = typer.Option(100, min=1, max=1000)) -> None:
    """Payout exceptions: held payouts, failed journals, unmatched transactions."""
    cli = _cli()
    rows = cli._get("/payouts/exceptions", status=status, limit=limit)["exceptions"]
    cli.console.print(f"{status} payout exceptions: {len(rows)}")
    for e in rows:
        subject = f"payout {e['payload']['payout_id']}" + (
            f" transaction {e['payload']['transaction_id']}" if e["payload"].get("transaction_id") else "")
        cli.console.print(f"  {subject} [bold]{e['kind']}[/bold]: {e['reason']}  -> {e['action']}")


@payouts_app.command("unpaid")
def payouts_unpaid(days: int | None = typer.Option(None, help="sales orders older than this (default: the "
                                                              "configured PAYOUT_UNPAID_AFTER_DAYS)")) -> None:
    """Sales orders paid in Shopify that no payout has paid out after N days."""
    cli = _cli()
    found = cli._get("/payouts/unpaid-orders", **({"days": days} if days else {}))
    cli.console.print(f"sales orders not paid out after {found['days']} days: {len(found['orders'])}")
    for o in found["orders"]:
        cli.console.print(f"  {o['order_name']} ({o['shopify_order_id']}) {o['sales_order_number']} {o['total']} "
                          f"{o['currency']}, created {cli._when(o['sales_order_created_at'])}")


def _text(path: str, **params: Any) -> str:
    """GET a text answer (the CSV report) from the ops API."""
    cli = _cli()
    try:
        response = httpx.get(cli._ops_url() + path, params=params, headers=cli._headers(), timeout=60)
    except httpx.TransportError as exc:
        cli.console.print(f"[red]ops API unreachable at {cli._ops_url()}: {exc}[/red]")
        raise typer.Exit(2) from exc
    if response.status_code >= 400:
        cli.console.print(f"[yellow]{response.text[:500]}[/yellow]")
        raise typer.Exit(1)
    return response.text
