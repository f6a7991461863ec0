"""`shopify-prima fulfilment`: the order fulfilment on the command line, through the ops API (like
every command of services/ops/cli.py, whose helpers it uses): the fulfilments by state, the open
exceptions, and the release of an order's fulfilment exception (ReleaseFulfilment to the
fulfilment decider). `render` draws an order's fulfilment for `shopify-prima orders show`."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from projections.order_fulfilment import ORDER_FULFILMENT

fulfilment_app = typer.Typer(help="Prima despatches as Shopify fulfilments with tracking: list, exceptions, release.",
                             no_args_is_help=True)


def _cli():
    from services.ops import (
        cli,  # the ops CLI's helpers (token, errors); imported late: cli imports this
    )

    return cli


def _units(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['sku']} x{e['quantity']}" for e in entries) or "-"


def render(console: Console, f: dict[str, Any], when: Any) -> None:
    """An order's fulfilment: its state, lines, despatches (parcels and tracking), the fulfilments
    made in Shopify (tracking numbers and updates), and its exception."""
    console.print(f"[bold]fulfilment[/bold]: {f['state']}"
                  + (f"; tracking {', '.join(f['tracking_numbers'])}" if f["tracking_numbers"] else ""))
    if f["lines"]:
        table = Table(title="lines (fulfilled in Shopify)")
        for column in ("line", "SKU", "quantity", "fulfilled", "components (per bundle)"):
            table.add_column(column)
        for line in f["lines"]:
            table.add_row(str(line["line_item_id"]), line["sku"], str(line["quantity"]), str(line["fulfilled"]),
                          ", ".join(f"{c['sku']} x{c['units_per_bundle']}" for c in line["components"]) or "-")
        console.print(table)
    if f["despatches"]:
        table = Table(title="Prima despatches")
        for column in ("despatch", "v", "despatched", "units", "parcels (carrier, tracking)", "status", "fulfilment"):
            table.add_column(column)
        for d in f["despatches"]:
            parcels = "; ".join(f"{p['carrier']} {p['tracking_number'] or '(no number yet)'}"
                                + (f" {p['tracking_url']}" if p.get("tracking_url") else "") for p in d["parcels"])
            reason = {"waiting": d["waiting_reason"], "settled": d.get("settled_reason")}.get(d["status"])
            status = d["status"] + (f" ({reason})" if reason else "")
            table.add_row(d["despatch_id"], str(d["version"]), when(d["despatched_at"]), _units(d["lines"]),
                          parcels or "-", status, d["fulfilment_id"] or "-")
        console.print(table)
    if f["fulfilments"]:
        skus = {line["line_item_id"]: line["sku"] for line in f["lines"]}
        table = Table(title="fulfilments in Shopify")
        for column in ("fulfilment", "status", "despatches", "lines", "tracking", "requested", "created"):
            table.add_column(column)
        for x in f["fulfilments"]:
            tracking = x["tracking"]
            shown = f"{tracking['company'] or '?'}: {', '.join(tracking['numbers']) or '-'}"
            for update in x["tracking_updates"]:
                shown += f"\nupdate {update['status']}: {', '.join(update['tracking']['numbers'])}"
            status = x["status"] + (f": {x['refused']['reason']}" if x.get("refused") else "")
            table.add_row(x["fulfilment_id"] or "-", status, ", ".join(x["covers"]),
                          _units([{**q, "sku": skus.get(q["line_item_id"], f"line {q['line_item_id']}")}
                                  for q in x["line_quantities"]]), shown, when(x["requested_at"]),
                          when(x["created_at"]))
        console.print(table)
    if f.get("exception"):
        x = f["exception"]
        console.print(f"[red]fulfilment {x['kind']}[/red] (despatch {x['despatch_id']}, since {when(x['since'])}): "
                      f"{x['reason']}\n  -> {x['action']}")
    for x in f.get("released_exceptions") or []:
        console.print(f"  released {when(x['released_at'])} by {x['released_by']}: {x['kind']} ({x['reason']})")


@fulfilment_app.command("list")
def fulfilment_list(state: str | None = typer.Option(None, help=", ".join(ORDER_FULFILMENT.states)),
                    limit: int = typer.Option(50, min=1, max=1000)) -> None:
    """Orders' fulfilments, most recently changed first."""
    cli = _cli()
    params: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
    table = Table(title=f"fulfilments{f' ({state})' if state else ''}")
    for column in ("order", "name", "state", "despatches", "fulfilments", "tracking", "exception", "changed"):
        table.add_column(column)
    for f in cli._get("/fulfilments", **params)["fulfilments"]:
        table.add_row(str(f["shopify_order_id"]), f["order_name"] or "-", f["state"], str(f["despatches"]),
                      str(f["fulfilments"]), ", ".join(f["tracking_numbers"]) or "-", f["exception_kind"] or "-",
                      cli._when(f["updated_at"]))
    cli.console.print(table)


@fulfilment_app.command("exceptions")
def fulfilment_exceptions(status: str = typer.Option("open", help="open, resolved or all"),
                          limit: int = typer.Option(100, min=1, max=1000)) -> None:
    """Despatches that could not become Shopify fulfilments (sku_not_on_order, cannot_allocate,
    refused_by_shopify, tracking_refused), each with its action."""
    cli = _cli()
    rows = cli._get("/exceptions", source="fulfilment", status=status, limit=limit)["exceptions"]
    cli.console.print(f"{status} fulfilment exceptions: {len(rows)}")
    for e in rows:
        cli.console.print(f"  {cli._when(e['raised_at'])} order {e['shopify_order_id']} {e['order_name'] or ''} "
                          f"despatch {e['payload']['despatch_id']} [bold]{e['kind']}[/bold] ({e['status']}): "
                          f"{e['reason']}  -> {e['action']}")


@fulfilment_app.command("release")
def fulfilment_release(shopify_order_id: int, by: str = typer.Option(None, help="who releases it ($USER)"),
                       wait: float = typer.Option(10.0, help="seconds to wait for the exception to clear (0: do not "
                                                             "wait)"),
                       settle_despatch: bool = typer.Option(
                           False, "--settle-despatch",
                           help="also settle the exception's despatch: what the integration cannot fulfil of it is "
                                "taken as handled outside it (fulfilled by hand in Shopify); the order's next "
                                "despatches are decided")) -> None:
    """Decide an order's fulfilment again once its exception was dealt with (the hold released in
    Shopify, the despatch or the order put right). Sends ReleaseFulfilment to the fulfilment
    decider, which reads the fulfillment orders afresh; the same despatch keeps its idempotency key.
    An exception no release can clear (a SKU not on the order, a line fulfilled by hand in Shopify
    or removed) is released with --settle-despatch."""
    cli = _cli()
    before = cli._get(f"/fulfilments/{shopify_order_id}")
    if before["exception"] is None:
        cli.console.print(f"[yellow]order {shopify_order_id}'s fulfilment is {before['state']} with no open "
                          "exception: nothing to release[/yellow]")
        raise typer.Exit(1)
    accepted = cli._post(f"/fulfilments/{shopify_order_id}/release", requested_by=by or cli.USER,
                         settle_despatch=settle_despatch)
    cli.console.print(f"release of order {shopify_order_id}'s fulfilment"
                      f"{', settling its despatch,' if settle_despatch else ''} sent (command {accepted['command_id']})")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        now = cli._get(f"/fulfilments/{shopify_order_id}")
        if now["last_event_version"] != before["last_event_version"]:
            held = f"; new exception {now['exception']['kind']}" if now["exception"] else ""
            cli.console.print(f"order {shopify_order_id}'s fulfilment released: now {now['state']}{held}")
            return
        time.sleep(0.5)
    if wait:
        cli.console.print(f"[yellow]order {shopify_order_id}'s fulfilment has not moved yet (still "
                          f"{before['state']}); is the fulfilment decider running?[/yellow]")
        raise typer.Exit(1)
