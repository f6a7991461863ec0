"""`shopify-prima`: the operator's command line."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.config import get_settings

app = typer.Typer(help="Operate the Shopify-Prima integration.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders on their way to Prima.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")
console = Console()


def _ops_url() -> str:
    s = get_settings()
    return f"http://{s.ops_api_host}:{s.ops_api_port}"


def _get(path: str, **params) -> dict:
    try:
        response = httpx.get(_ops_url() + path, params=params, timeout=10)
    except httpx.TransportError as exc:
        console.print(f"[red]ops API unreachable at {_ops_url()}: {exc}[/red]")
        raise typer.Exit(2) from exc
    if response.status_code == 404:
        console.print(f"[yellow]{response.json().get('detail')}[/yellow]")
        raise typer.Exit(1)
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
    exceptions = _get("/exceptions")["exceptions"]
    console.print(f"open exceptions: {len(exceptions)}")
    for e in exceptions[:20]:
        console.print(f"  {e['shopify_order_id']} {e['order_name']} [bold]{e['kind']}[/bold]: {e['reason']}  -> {e['action']}")


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


@app.command()
def replay(projection: str = typer.Option("order_sync", "--projection", help="read model to rebuild")) -> None:
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
