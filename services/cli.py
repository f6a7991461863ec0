"""`shopify-prima`: the operator's command line."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.config import get_settings

app = typer.Typer(help="Operate the Shopify-Prima integration.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders on their way to Prima.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")
inventory_app = typer.Typer(help="Stock in Shopify following Prima: health per SKU and location, resync.",
                            no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
console = Console()


def _ops_url() -> str:
    s = get_settings()
    return f"http://{s.ops_api_host}:{s.ops_api_port}"


def _request(method: str, path: str, **params) -> dict:
    try:
        response = httpx.request(method, _ops_url() + path, params=params or None, timeout=10)
    except httpx.TransportError as exc:
        console.print(f"[red]ops API unreachable at {_ops_url()}: {exc}[/red]")
        raise typer.Exit(2) from exc
    if response.status_code in (400, 404, 503):
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


def _post(path: str, **params) -> dict:
    return _request("POST", path, **params)


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
    return f"{e['shopify_order_id']} {e['order_name']}"


@orders_app.command("show")
def orders_show(shopify_order_id: int) -> None:
    """One order: state, Prima sales order, totals, exceptions."""
    console.print_json(json.dumps(_get(f"/orders/{shopify_order_id}"), default=str))


@orders_app.command("release")
def orders_release(shopify_order_id: int, by: str = typer.Option("cli", help="who releases it")) -> None:
    """Decide a quarantined or failed order again (after fixing the mapping in Prima)."""
    from domain.orders.application import OrderApplication
    from services.prima_client import fetch_items, prima_http_client

    settings = get_settings()

    async def items():
        async with prima_http_client(settings) as client:
            return await fetch_items(client)

    orders = OrderApplication(env=settings.eventsourcing_env())
    try:
        order = orders.release(shopify_order_id, asyncio.run(items()), released_by=by, now=datetime.now(UTC))
    finally:
        orders.close()
    if order is None:
        console.print(f"[yellow]order {shopify_order_id} is not quarantined or failed: nothing to release[/yellow]")
        raise typer.Exit(1)
    console.print(f"order {shopify_order_id} released: now {order.state}")


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
    run_id = _post("/inventory/resync")["run_id"]
    console.print(f"resync run {run_id} requested")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    with Progress(SpinnerColumn(), TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
        reading = bar.add_task("reading Shopify", total=None, info="requested")
        while True:
            view = _get(f"/inventory/resync/{run_id}")
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
                      by: str = typer.Option("cli", help="who releases it")) -> None:
    """Decide a SKU-location again after a rejected or failed push was looked at."""
    from domain.inventory.application import InventoryApplication
    from services.stock_decider import policy_from

    settings = get_settings()
    inventory = InventoryApplication(env=settings.eventsourcing_env())
    try:
        stock = inventory.release(sku, location, by, policy_from(settings), datetime.now(UTC))
    finally:
        inventory.close()
    if stock is None:
        console.print(f"[yellow]{sku} at {location} has no open push exception: nothing to release[/yellow]")
        raise typer.Exit(1)
    pending = f"push of {stock.pending['quantity']} requested" if stock.pending else "nothing to push"
    console.print(f"{sku} at {location} released: desired {stock.desired}, Shopify {stock.shopify_level}; {pending}")


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
                                          help="read model to rebuild: order_sync or inventory_health")) -> None:
    """Rebuild a read model from position zero of its topic."""
    from services.projector import PROJECTIONS, rebuild

    if projection not in PROJECTIONS:
        console.print(f"[red]unknown projection {projection!r}; one of {', '.join(PROJECTIONS)}[/red]")
        raise typer.Exit(2)
    with Progress(TextColumn("replaying {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task(projection, total=None)
        applied = asyncio.run(rebuild(get_settings(), projection, lambda done, total: bar.update(task, completed=done, total=total)))
    console.print(f"{projection}: {applied} events applied")


if __name__ == "__main__":
    app()
