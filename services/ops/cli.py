"""`shopify-prima`: the operator's command line. It talks to the ops API only (with the bearer
token SHOPIFY_PRIMA_OPS_API_TOKEN): reads come from the read models, and every change is an
operator command that the owning process handles (release, retry, re-drive, resync, replay)."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from projections.order_sync import CREDIT_MEMO_STATES, ORDER_SYNC
from services.platform.settings import get_settings

app = typer.Typer(help="Operate the Shopify-Prima integration.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders on their way to Prima.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")
inventory_app = typer.Typer(help="Stock in Shopify following Prima: health per SKU and location, resync.",
                            no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
dead_letters_app = typer.Typer(help="Messages a consumer gave up on: list them, re-drive them.",
                               no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")
parked_app = typer.Typer(help="Commands a gateway parked after its retries: list them, retry them.",
                         no_args_is_help=True)
app.add_typer(parked_app, name="parked")
console = Console()
USER = os.environ.get("USER") or "cli"


def _ops_url() -> str:
    s = get_settings()
    return f"http://{s.ops_api_host}:{s.ops_api_port}"


def _headers() -> dict[str, str]:
    token = get_settings().ops_api_token
    if token is None:
        console.print("[red]SHOPIFY_PRIMA_OPS_API_TOKEN is not set: the ops API needs it[/red]")
        raise typer.Exit(2)
    return {"Authorization": f"Bearer {token.get_secret_value()}"}


def _request(method: str, path: str, json_body: dict | None = None, **params) -> dict:
    try:
        response = httpx.request(method, _ops_url() + path, params=params or None, json=json_body,
                                 headers=_headers(), timeout=10)
    except httpx.TransportError as exc:
        console.print(f"[red]ops API unreachable at {_ops_url()}: {exc}[/red]")
        raise typer.Exit(2) from exc
    if response.status_code in (400, 401, 404, 409, 422, 503):
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        console.print(f"[yellow]{detail}[/yellow]")
        raise typer.Exit(1)
    response.raise_for_status()
    return response.json()


def _get(path: str, **params) -> dict:
    return _request("GET", path, **params)


def _post(path: str, json_body: dict | None = None, **params) -> dict:
    return _request("POST", path, json_body, **params)


def _get_or_none(path: str, **params) -> dict | None:
    """GET, or None on 404 (something requested but not recorded yet)."""
    try:
        response = httpx.get(_ops_url() + path, params=params or None, headers=_headers(), timeout=10)
    except httpx.TransportError as exc:
        console.print(f"[red]ops API unreachable at {_ops_url()}: {exc}[/red]")
        raise typer.Exit(2) from exc
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


@app.command()
def status() -> None:
    """Orders by state and open exceptions."""
    states: dict[str, int] = {}
    for order in _get("/orders", limit=1000)["orders"]:
        states[order["state"]] = states.get(order["state"], 0) + 1
    table = Table(title="orders (latest 1000)")
    table.add_column("state")
    table.add_column("orders", justify="right")
    for state, n in sorted(states.items()):
        table.add_row(state, str(n))
    console.print(table)
    summary = _get("/inventory/summary")
    if summary["total"]:
        table = Table(title="inventory (SKU-locations)")
        table.add_column("state")
        table.add_column("SKU-locations", justify="right")
        for state, n in summary["states"].items():
            if n:
                table.add_row(state, str(n))
        console.print(table)
    exceptions = _get("/exceptions")["exceptions"]
    console.print(f"open exceptions: {len(exceptions)}")
    for e in exceptions[:20]:
        console.print(f"  {_subject(e)} [bold]{e['kind']}[/bold]: {e['reason']}  -> {e['action']}")


def _subject(e: dict) -> str:
    if e.get("source") == "inventory":
        return f"{e['sku']}" + (f" @ {e['location_id']}" if e.get("location_id") else "")
    if e.get("source") == "dead_letter":
        return f"dead letter of {e['payload']['consumer_group']}"
    if e.get("source") == "payout":
        return f"payout {e['payload']['payout_id']}" + (
            f" transaction {e['payload']['transaction_id']}" if e["payload"].get("transaction_id") else "")
    if e.get("source") == "reconciler" and e["payload"].get("sales_order_number"):
        return f"Prima sales order {e['payload']['sales_order_number']}"
    return f"{e['shopify_order_id']} {e['order_name']}"


@orders_app.command("show")
def orders_show(shopify_order_id: int,
                as_json: bool = typer.Option(False, "--json", help="the ops API's answer as it is")) -> None:
    """One order: state, Prima sales order, cut-off state, totals, its timeline (every fact and
    decision with its time), its credit memos, its fulfilment (despatches, fulfilments with their
    tracking numbers, its exception) and its exceptions."""
    order = _get(f"/orders/{shopify_order_id}")
    if as_json:
        console.print_json(json.dumps(order, default=str))
        return
    cutoff = order.get("cutoff") or {}
    console.print(f"[bold]order {order['shopify_order_id']} {order['order_name']}[/bold]: {order['state']}")
    console.print(f"  Prima sales order {order['prima_sales_order_number'] or '-'} "
                  f"(status {cutoff.get('prima_status') or '-'}); cut-off: {cutoff.get('state') or '-'}"
                  + (f" ({cutoff['detail']})" if cutoff.get("detail") else ""))
    console.print(f"  total {order['total_price']} {order['currency']}, tax {order['total_tax']}"
                  + (f"; cancelled {_when(order['cancelled_at'])} ({order['cancel_reason']})"
                     if order.get("cancelled_at") else ""))
    if order.get("last_change"):
        console.print(f"  last change sent: {order['last_change']}")
    table = Table(title="timeline")
    for column in ("#", "when", "what"):
        table.add_column(column)
    for entry in order.get("timeline", []):
        table.add_row(str(entry["aggregate_version"]), _when(entry["at"]), entry["summary"])
    console.print(table)
    if order.get("credit_memos"):
        table = Table(title="credit memos (one per Shopify refund)")
        for column in ("refund", "state", "credit memo", "refunded", "memo total", "restock", "problem"):
            table.add_column(column)
        for memo in order["credit_memos"]:
            table.add_row(str(memo["refund_id"]), memo["state"], memo["credit_memo_number"] or "-",
                          f"{_n(memo['refunded'])} {memo['currency'] or ''}", _n(memo["total"]),
                          ", ".join(memo["restock_types"]) or "-", memo["problem"] or "")
        console.print(table)
    if order.get("fulfilment"):
        render_fulfilment(console, order["fulfilment"], _when)
    for e in order.get("exceptions", []):
        if e["status"] == "open":
            console.print(f"[red]{e['kind']}[/red]: {e['reason']}\n  -> {e['action']}")


@orders_app.command("list")
def orders_list(state: str | None = typer.Option(None, help=", ".join(ORDER_SYNC.states)),
                limit: int = typer.Option(50, min=1, max=1000)) -> None:
    """Orders, most recently changed first."""
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    table = Table(title=f"orders{f' ({state})' if state else ''}")
    for column in ("order", "name", "state", "Prima sales order", "total", "last change"):
        table.add_column(column)
    for o in _get("/orders", **params)["orders"]:
        table.add_row(str(o["shopify_order_id"]), o["order_name"], o["state"], o["prima_sales_order_number"] or "-",
                      f"{o['total_price']} {o['currency']}", _when(o["last_event_at"]))
    console.print(table)


@orders_app.command("release")
def orders_release(shopify_order_id: int, by: str = typer.Option(USER, help="who releases it"),
                   wait: float = typer.Option(10.0, help="seconds to wait for the order to move (0: do not wait)")
                   ) -> None:
    """Decide a quarantined or failed order again (after fixing its cause, e.g. the item in Prima).
    Sends ReleaseOrder to the order decider."""
    before = _get(f"/orders/{shopify_order_id}")
    held = [e for e in before.get("exceptions", []) if e["status"] == "open"]
    if before["state"] not in ("quarantined", "failed", "after_cutoff") and not held:
        console.print(f"[yellow]order {shopify_order_id} is {before['state']} with no open exception (not "
                      "quarantined, failed, held at the cut-off, nor a credit memo held): nothing to release[/yellow]")
        raise typer.Exit(1)
    accepted = _post(f"/orders/{shopify_order_id}/release", requested_by=by)
    console.print(f"release of order {shopify_order_id} sent (command {accepted['command_id']})")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        order = _get(f"/orders/{shopify_order_id}")
        if order["last_event_version"] != before["last_event_version"]:
            console.print(f"order {shopify_order_id} released: now {order['state']}")
            return
        time.sleep(0.5)
    if wait:
        console.print(f"[yellow]order {shopify_order_id} has not moved yet (still {before['state']}); "
                      "is the order decider running?[/yellow]")
        raise typer.Exit(1)


@orders_app.command("resolve")
def orders_resolve(shopify_order_id: int, note: str = typer.Option("", help="what was done in Prima"),
                   by: str = typer.Option(USER, help="who dealt with it"),
                   wait: float = typer.Option(10.0, help="seconds to wait for the order to move (0: do not wait)")
                   ) -> None:
    """A change held at the warehouse cut-off (state after_cutoff) was dealt with by hand in Prima:
    the order decider takes the order as it stands as what Prima holds (a cancellation: as
    cancelled). Sends ResolveOrderChange."""
    before = _get(f"/orders/{shopify_order_id}")
    accepted = _post(f"/orders/{shopify_order_id}/resolve", note=note, requested_by=by)
    console.print(f"resolution of order {shopify_order_id} sent (command {accepted['command_id']})")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        order = _get(f"/orders/{shopify_order_id}")
        if order["last_event_version"] != before["last_event_version"]:
            console.print(f"order {shopify_order_id}: now {order['state']}")
            return
        time.sleep(0.5)
    if wait:
        console.print(f"[yellow]order {shopify_order_id} has not moved yet; is the order decider running?[/yellow]")
        raise typer.Exit(1)


@orders_app.command("credit-memos")
def orders_credit_memos(state: str | None = typer.Option(None, help=", ".join(CREDIT_MEMO_STATES)),
                        limit: int = typer.Option(50, min=1, max=1000)) -> None:
    """Credit memos, one per Shopify refund, most recently changed first."""
    params: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
    table = Table(title=f"credit memos{f' ({state})' if state else ''}")
    for column in ("refund", "order", "state", "credit memo", "sales order", "refunded", "memo total", "problem"):
        table.add_column(column)
    for memo in _get("/credit-memos", **params)["credit_memos"]:
        table.add_row(str(memo["refund_id"]), str(memo["shopify_order_id"]), memo["state"],
                      memo["credit_memo_number"] or "-", memo["sales_order_number"] or "-",
                      f"{_n(memo['refunded'])} {memo['currency'] or ''}", _n(memo["total"]), memo["problem"] or "")
    console.print(table)


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _n(value: Any) -> str:
    return "-" if value is None else str(value)


STATE_STYLE = {"in_sync": "green", "drift": "yellow", "pending": "cyan", "exception": "red", "unknown": "dim",
               "not_in_shopify": "dim"}


def _catalog_line(sku: str, catalog: dict | None) -> str:
    if catalog is None:
        return f"{sku}: no catalogue entry yet"
    if catalog.get("item_id"):
        prima = (f"Prima item {catalog['item_id']} ({catalog['item_type']}, "
                 f"{'active' if catalog['active'] else 'inactive'})")
        if catalog.get("components"):
            parts = ", ".join(f"{c} x{q}" for c, q in sorted(catalog["components"].items()))
            prima += f", bundle of {parts}"
    else:
        prima = "no Prima item"
    if catalog.get("variant_id"):
        shopify = f"Shopify product {catalog['product_id']} {catalog['product_status']} (variant {catalog['variant_id']})"
        if catalog.get("status_requested"):
            shopify += f", {catalog['status_requested']} requested"
    else:
        shopify = "no Shopify variant seen"
    guard = f"; [red]publishing guard: {catalog['guard_reason']}[/red]" if catalog.get("guard_reason") else ""
    return f"{sku}: {prima}; {shopify}{guard}"


def _health_table(title: str, rows: list[dict], with_sku: bool = False) -> Table:
    table = Table(title=title)
    columns = (["SKU"] if with_sku else []) + [
        "location", "warehouse", "Prima available", "buffer", "desired", "Shopify level", "drift", "state",
        "last push", "pending", "exception"]
    for name in columns:
        table.add_column(name, justify="right" if name in ("Prima available", "desired", "Shopify level", "drift")
                         else "left")
    for r in rows:
        buffer = _n(r["buffer"]) + (f" ({r['buffer_rule']})" if r.get("buffer_rule") else "")
        last_push = (f"{r['last_push_quantity']} at {_when(r['last_push_at'])}" if r.get("last_push_at") else "-")
        pending = f"{r['pending_quantity']}" if r.get("pending_command_id") else "-"
        exception = f"{r['exception_kind']}: {r['exception_reason']}" if r.get("exception_kind") else "-"
        style = STATE_STYLE.get(r["state"], "")
        cells = ([r["sku"]] if with_sku else []) + [
            r["location_id"], _n(r["warehouse"]), _n(r["prima_available"]), buffer, _n(r["desired"]),
            _n(r["shopify_level"]), _n(r["drift"]), f"[{style}]{r['state']}[/{style}]" if style else r["state"],
            last_push, pending, exception]
        table.add_row(*cells)
    return table


@inventory_app.command("show")
def inventory_show(sku: str) -> None:
    """One SKU: per location Prima, buffer, desired, Shopify, drift, state; catalogue; exceptions."""
    found = _get(f"/inventory/{quote(sku, safe='')}")
    console.print(_catalog_line(sku, found["catalog"]))
    if found["locations"]:
        console.print(_health_table(f"inventory health of {sku}", found["locations"]))
    else:
        console.print("no Shopify location holds this SKU")
    for e in found.get("exceptions", []):
        if e["status"] == "open":
            where = f" at {e['location_id']}" if e.get("location_id") else ""
            console.print(f"[red]open {e['kind']}{where}[/red]: {e['reason']}  -> {e['action']}")


@inventory_app.command("list")
def inventory_list(
    state: str | None = typer.Option(None, help="unknown, not_in_shopify, exception, pending, in_sync, drift"),
    sku: str | None = typer.Option(None, help="SKU prefix"),
    limit: int = typer.Option(100, min=1, max=1000),
) -> None:
    """SKU-locations, most recently changed first."""
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    if sku:
        params["sku"] = sku
    rows = _get("/inventory", **params)["inventory"]
    console.print(_health_table(f"inventory health{f' ({state})' if state else ''}: {len(rows)} shown", rows,
                                with_sku=True))


def _unrepaired(states: dict[str, int]) -> int:
    return states.get("drift", 0) + states.get("pending", 0)


@inventory_app.command("resync")
def inventory_resync(
    wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the run until Shopify is repaired"),
    timeout: float = typer.Option(600.0, help="seconds to wait in all"),
    interval: float = typer.Option(1.0, hidden=True, help="seconds between checks"),
) -> None:
    """Compare every Shopify level with Prima now and repair what drifted.

    Phase 1, "reading Shopify": the catalogue reader's bulk read, until its facts are published.
    Phase 2, "repairing": the SKU-locations in drift or pending at the first check, counted
    down as the pushes are confirmed."""
    run_id = _post("/inventory/resync", requested_by=USER)["run_id"]
    console.print(f"resync run {run_id} requested")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    with Progress(SpinnerColumn(), TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
        reading = bar.add_task("reading Shopify", total=None, info="requested")
        while True:
            view = _get_or_none(f"/inventory/resync/{run_id}") or {"run": {"status": "requested"}, "states": {}}
            run = view["run"]
            info = f"{run['status']}: {run.get('variants') or 0} variants, {run.get('levels') or 0} levels"
            if run["status"] == "failed":
                bar.update(reading, info=info)
                bar.stop()
                console.print(f"[red]resync run {run_id} failed: {run.get('error') or 'no error recorded'}[/red]")
                raise typer.Exit(1)
            if run["status"] == "published":
                bar.update(reading, total=1, completed=1, info=info)
                break
            bar.update(reading, info=info)
            if time.monotonic() >= deadline:
                bar.stop()
                console.print(f"[red]timed out after {timeout:g}s: resync run {run_id} is still {run['status']} "
                              "(is the catalogue reader running?)[/red]")
                raise typer.Exit(1)
            time.sleep(interval)

        total = _unrepaired(view["states"])
        repairing = bar.add_task("repairing", total=total, info="")
        settled = 0
        while True:
            states = view["states"]
            left = _unrepaired(states)
            total = max(total, bar.tasks[repairing].completed + left)  # more found meanwhile
            bar.update(repairing, total=total, completed=total - left,
                       info=f"{states.get('drift', 0)} drift, {states.get('pending', 0)} pending")
            settled = settled + 1 if left == 0 else 0
            if settled >= 2:  # zero twice in a row: nothing still arriving from the run
                break
            if time.monotonic() >= deadline:
                bar.stop()
                console.print(f"[red]timed out after {timeout:g}s: {left} SKU-locations not repaired yet "
                              f"({states.get('drift', 0)} drift, {states.get('pending', 0)} pending); "
                              "see `shopify-prima inventory list --state drift`[/red]")
                raise typer.Exit(1)
            time.sleep(interval)
            view = _get(f"/inventory/resync/{run_id}")
    run, states = view["run"], view["states"]
    console.print(f"resync run {run_id}: {run.get('variants') or 0} variants and {run.get('levels') or 0} levels read, "
                  f"{total} SKU-locations repaired; now {states.get('in_sync', 0)} in sync")
    if states.get("exception"):
        console.print(f"[yellow]{states['exception']} SKU-locations hold an exception: "
                      "see `shopify-prima inventory exceptions`[/yellow]")


@inventory_app.command("release")
def inventory_release(sku: str, location: str = typer.Option(..., help="Shopify location GID"),
                      by: str = typer.Option(USER, help="who releases it"),
                      wait: float = typer.Option(10.0, help="seconds to wait for the exception to clear")) -> None:
    """Decide a SKU-location again after a rejected or failed push was looked at (ReleaseStockLevel
    to the stock decider, which decides from Prima's current level)."""
    path = f"/inventory/{quote(sku, safe='')}"
    rows = [r for r in _get(path)["locations"] if r["location_id"] == location]
    if not rows or rows[0]["exception_kind"] is None:
        console.print(f"[yellow]{sku} at {location} has no open push exception: nothing to release[/yellow]")
        raise typer.Exit(1)
    accepted = _post("/inventory/release", {"sku": sku, "location_id": location}, requested_by=by)
    console.print(f"release of {sku} at {location} sent (command {accepted['command_id']})")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        row = next(r for r in _get(path)["locations"] if r["location_id"] == location)
        if row["exception_kind"] is None:
            pending = f"push of {row['pending_quantity']} requested" if row["pending_command_id"] else "nothing to push"
            console.print(f"{sku} at {location} released: desired {row['desired']}, Shopify {row['shopify_level']}; "
                          f"{pending}")
            return
        time.sleep(0.5)
    if wait:
        console.print(f"[yellow]{sku} at {location} still holds its exception; is the stock decider running?[/yellow]")
        raise typer.Exit(1)


@inventory_app.command("exceptions")
def inventory_exceptions(
    status: str = typer.Option("open", help="open, resolved or all"), limit: int = typer.Option(100, min=1, max=1000),
) -> None:
    """Inventory exceptions (publishing guard, unmapped warehouse, rejected or failed pushes), each with its action."""
    rows = _get("/exceptions", source="inventory", status=status, limit=limit)["exceptions"]
    console.print(f"{status} inventory exceptions: {len(rows)}")
    for e in rows:
        console.print(f"  {_when(e['raised_at'])} {_subject(e)} [bold]{e['kind']}[/bold] ({e['status']}): "
                      f"{e['reason']}  -> {e['action']}")


@app.command()
def replay(projection: str = typer.Option("order_sync", "--projection",
                                          help="read model to rebuild: order_sync, inventory_health, item_master, "
                                               "dead_letters"),
           wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the rebuild to its end"),
           timeout: float = typer.Option(3600.0, help="seconds to wait in all"),
           by: str = typer.Option(USER, help="who asks")) -> None:
    """Rebuild a read model from offset zero of its topic (RebuildProjection to the projector,
    which empties it and replays while everything else goes on)."""
    accepted = _post(f"/projections/{quote(projection, safe='')}/rebuild", requested_by=by)
    console.print(f"rebuild of {projection} sent (command {accepted['command_id']})")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("replaying {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task(projection, total=None)
        while True:
            view = _get(f"/projections/{quote(projection, safe='')}")
            rebuild = view["rebuild"]
            if rebuild and rebuild["command_id"] == accepted["command_id"]:
                bar.update(task, total=rebuild["total"], completed=rebuild["done"])
                if rebuild["finished_at"]:
                    break
            if time.monotonic() >= deadline:
                bar.stop()
                console.print(f"[red]timed out after {timeout:g}s; is the projector running?[/red]")
                raise typer.Exit(1)
            time.sleep(0.5)
    console.print(f"{projection}: {rebuild['total']} messages applied again")


@dead_letters_app.command("list")
def dead_letters_list(status: str = typer.Option("open", help="open, resolved or all"),
                      limit: int = typer.Option(50, min=1, max=1000)) -> None:
    """Messages a consumer group gave up on, with their error."""
    rows = _get("/dead-letters", status=status, limit=limit)["dead_letters"]
    console.print(f"{status} dead letters: {len(rows)}")
    for d in rows:
        console.print(f"  {d['dead_letter_id']} {_when(d['dead_lettered_at'])} [bold]{d['consumer_group']}[/bold] "
                      f"{d['original_message_type'] or '?'} from {d['topic']}[{d['kafka_partition']}]@{d['kafka_offset']}"
                      f" ({d['reason']}, {d['attempts']} attempts): {d['error']}")


@dead_letters_app.command("redrive")
def dead_letters_redrive(dead_letter_id: str, by: str = typer.Option(USER, help="who asks")) -> None:
    """Hand a dead letter to its consumer group's handler again (after fixing the cause)."""
    accepted = _post(f"/dead-letters/{quote(dead_letter_id, safe='')}/redrive", requested_by=by)
    console.print(f"re-drive of {dead_letter_id} sent (command {accepted['command_id']}): {accepted['detail']}")


@parked_app.command("list")
def parked_list(gateway: str | None = typer.Option(None, help="prima or shopify"),
                all_: bool = typer.Option(False, "--all", help="resolved ones too"),
                limit: int = typer.Option(50, min=1, max=1000)) -> None:
    """Commands a gateway parked after its retries: re-driven by the gateway once the target
    answers, until the horizon (then `given_up`: a person must look)."""
    params: dict[str, Any] = {"limit": limit, "status": "all" if all_ else "open"}
    if gateway:
        params["gateway"] = gateway
    rows = _get("/parked-commands", **params)["parked_commands"]
    console.print(f"parked commands: {len(rows)}")
    for p in rows:
        retried = f", retried {_when(p['retried_at'])}" if p["retried_at"] else ""
        upcoming = f", next re-drive {_when(p['next_attempt_at'])}" if p["status"] == "redriving" and p[
            "next_attempt_at"] else ""
        console.print(f"  {p['command_id']} {p['gateway']} {p['message_type']} for {p['subject']} [{p['status']}] "
                      f"({p['attempts']} attempts, {p['redrives']} re-drives, parked {_when(p['parked_at'])}"
                      f"{retried}{upcoming}): {p['reason']}")


@parked_app.command("retry")
def parked_retry(command_id: str, by: str = typer.Option(USER, help="who asks")) -> None:
    """Send a parked command again (same idempotency key: never a second document)."""
    accepted = _post(f"/parked-commands/{quote(command_id, safe='')}/retry", requested_by=by)
    console.print(f"retry of {command_id} sent (command {accepted['command_id']}): {accepted['detail']}")


# ------------------------------------------------------------------------------ the order reconciler

_AGO = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`--since`: an ISO 8601 time (with its offset; without one it is taken as UTC), or a
    duration ago: 90s, 30m, 2h, 3d."""
    value = value.strip()
    match = _AGO.match(value)
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither an ISO 8601 time nor a duration such as 30m, 2h or 3d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def reconcile(
    since: str = typer.Option(..., "--since", help="orders updated since: 2026-11-02T10:00:00+00:00, or 30m, 2h, 3d ago"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the run to its end"),
    timeout: float = typer.Option(600.0, help="seconds to wait in all"),
    interval: float = typer.Option(1.0, hidden=True, help="seconds between checks"),
    by: str = typer.Option(USER, help="who asks"),
) -> None:
    """Read every order Shopify updated since a time and feed those the integration has not seen
    (ReconcileOrders to the order reconciler), with a progress bar over the orders read."""
    start = parse_since(since)
    run_id = _post("/orders/reconcile", since=start.isoformat(), requested_by=by)["run_id"]
    console.print(f"reconcile run {run_id} requested: orders updated since {start.isoformat()}")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    with Progress(SpinnerColumn(), TextColumn("reading Shopify's orders"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("orders", total=None, info="requested")
        while True:
            view = _get_or_none(f"/orders/reconcile/{run_id}")
            run = view["run"] if view else {"status": "requested"}
            read = run.get("orders_read") or 0
            info = f"{run['status']}: {run.get('orders_fed') or 0} fed, {run.get('orders_known') or 0} already seen"
            if run["status"] == "done":
                bar.update(task, total=max(run.get("orders_total") or 0, read), completed=read, info=info)
                break
            bar.update(task, total=run.get("orders_total"), completed=read, info=info)
            if run["status"] == "failed":
                bar.stop()
                console.print(f"[red]reconcile run {run_id} failed: {run.get('error') or 'no error recorded'}[/red]")
                raise typer.Exit(1)
            if time.monotonic() >= deadline:
                bar.stop()
                console.print(f"[red]timed out after {timeout:g}s: reconcile run {run_id} is still {run['status']} "
                              "(is the order reconciler running?)[/red]")
                raise typer.Exit(1)
            time.sleep(interval)
    console.print(f"reconcile run {run_id}: {read} orders read, {run.get('orders_fed') or 0} fed to the order decider, "
                  f"{run.get('orders_known') or 0} the integration had seen")
    for fed in view["fed"][:20]:
        console.print(f"  fed order {fed['shopify_order_id']} (updated {_when(fed['shopify_updated_at'])}): "
                      f"shopify-prima orders show {fed['shopify_order_id']}")
    if len(view["fed"]) > 20:
        console.print(f"  ... and {len(view['fed']) - 20} more")
    if run.get("orders_unreadable"):
        console.print(f"[yellow]{run['orders_unreadable']} order(s) could not be fed: see "
                      "`shopify-prima orders orphans --kind unreadable_order`[/yellow]")


@orders_app.command("orphans")
def orders_orphans(status: str = typer.Option("open", help="open, resolved or all"),
                   kind: str | None = typer.Option(None, help="paid_without_sales_order, "
                                                               "sales_order_without_shopify_order, unreadable_order"),
                   limit: int = typer.Option(100, min=1, max=1000)) -> None:
    """The orphan watch: paid orders with no Prima sales order after the deadline, Prima sales
    orders whose Shopify order does not exist, and orders the reconciler read but could not feed."""
    params: dict[str, Any] = {"status": status, "limit": limit}
    if kind:
        params["kind"] = kind
    rows = _get("/orders/orphans", **params)["orphans"]
    console.print(f"{status} orphans: {len(rows)}")
    for e in rows:
        console.print(f"  {_when(e['raised_at'])} {_subject(e)} [bold]{e['kind']}[/bold] ({e['status']}): "
                      f"{e['reason']}  -> {e['action']}")


# ------------------------------------------------------------------------------ payouts (services/ops/payouts_cli.py)

from services.ops.payouts_cli import payouts_app  # noqa: E402 - after the helpers it uses

app.add_typer(payouts_app, name="payouts")

# ------------------------------------------------------------------------------ fulfilment (services/ops/fulfilment_cli.py)

from services.ops.fulfilment_cli import fulfilment_app  # noqa: E402 - after the helpers it uses
from services.ops.fulfilment_cli import render as render_fulfilment  # noqa: E402

app.add_typer(fulfilment_app, name="fulfilment")


if __name__ == "__main__":
    app()
