"""Inventory: a full resync of N SKU-locations at each Shopify plan's restore rate.

    python -m benchmarks.inventory [--levels 100000] [--plans standard,advanced,plus,enterprise]

Needs the stack running (`make up`). Once: N SKUs get a Prima item and stock in WH-MAIN (Prima
sandbox) and a Shopify variant at gid://shopify/Location/1 (Shopify sandbox); the run waits
until Prima's levels have reached the StockItem aggregates. Then for each plan: every Shopify
level is knocked off (set to a wrong value in the sandbox, as a merchant edit would), the plan
is switched (the bucket refills), the sandbox's counters reset, and a full comparison is
requested (`POST /inventory/resync`): bulk read -> ShopifyVariantObserved facts -> StockItem
aggregates find the drift -> SetInventoryLevel commands -> the Shopify gateway's batched,
paced, compare-and-set mutations. The clock stops when the sandbox has applied N quantities;
then every level is checked against Prima available minus the buffer.

Printed per plan: elapsed time; calls (inventorySetQuantities and all GraphQL requests); points
(requested and actual, from the sandbox's cost accounting); THROTTLED answers; and the
throttle's theoretical minimum for the same points, max(0, actual points - bucket size) /
restore rate: the time the cheapest possible client would need with the bucket full at start.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.orders import machine
from services.platform.settings import Settings, use_env_file

STACK_ENV = Path(__file__).resolve().parents[1] / "deploy" / "local" / "stack.env"

LOC = "gid://shopify/Location/1"
PLANS = {"standard": 100, "advanced": 200, "plus": 1000, "enterprise": 2000}
console = Console(width=150)


def prima_available(i: int) -> int:
    return 5 + i % 23


async def seed(http: httpx.AsyncClient, s: Settings, skus: list[str]) -> None:
    shopify, prima = s.shopify_admin_url, s.prima_base_url
    # an empty shop, so each full comparison reads exactly these N levels (the sandbox keeps its
    # shop in memory; the Prima sandbox and the event store keep everything)
    (await http.post(f"{shopify}/_sandbox/reset")).raise_for_status()
    r = await http.post(f"{shopify}/_sandbox/locations", json={"locations": [{"id": LOC, "name": "Main warehouse"}]})
    assert r.status_code in (200, 201, 409), r.text
    for start in range(0, len(skus), 20_000):
        chunk = skus[start:start + 20_000]
        (await http.post(f"{shopify}/_sandbox/catalog",
                         json={"variants": [{"sku": sku, "levels": {LOC: 0}} for sku in chunk]})).raise_for_status()
        (await http.put(f"{prima}/_sandbox/items", json={"items": [
            {"item_id": f"ITM-{sku}", "sku": sku, "description": sku, "item_type": "stock"} for sku in chunk]})
         ).raise_for_status()
        (await http.put(f"{prima}/_sandbox/stock", json={"stock": [
            {"sku": sku, "warehouse": "WH-MAIN", "available": prima_available(start + i)}
            for i, sku in enumerate(chunk)]})).raise_for_status()


async def wait_for(predicate, timeout: float, what: str, poll: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(poll)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


async def levels(http: httpx.AsyncClient, s: Settings, prefix: str) -> dict[str, int]:
    body = (await http.get(f"{s.shopify_admin_url}/_sandbox/inventory", params={"sku_prefix": prefix})).json()
    rows = body["levels"] if isinstance(body, dict) else body
    return {row["sku"]: row["available"] for row in rows if row["location_id"] == LOC}


async def run(n: int, plans: list[str], timeout: float) -> int:
    use_env_file(STACK_ENV)  # the buffer the stack runs with
    s = Settings()
    ops = f"http://{s.ops_api_host}:{s.ops_api_port}"
    prefix = f"BENCH-{uuid.uuid4().hex[:6].upper()}"
    skus = [f"{prefix}-{i:06d}" for i in range(n)]
    expected = {sku: max(0, prima_available(i) - s.inventory_buffer.buffer_for(sku, _now()).units)
                for i, sku in enumerate(skus)}
    results = []
    async with httpx.AsyncClient(timeout=300) as http:
        t0 = time.monotonic()
        await seed(http, s, skus)
        console.print(f"seeded {n} SKUs in Prima and Shopify in {time.monotonic() - t0:.1f}s")

        async def prima_levels_arrived() -> bool:
            summary = (await http.get(f"{ops}/inventory/summary", params={"sku": prefix})).json()
            return summary["states"].get("not_in_shopify", 0) >= n
        t0 = time.monotonic()
        await wait_for(prima_levels_arrived, timeout, "Prima's levels to reach the StockItems")
        console.print(f"Prima levels in the aggregates after {time.monotonic() - t0:.1f}s")

        for plan in plans:
            (await http.put(f"{s.shopify_admin_url}/_sandbox/inventory", json={"levels": [
                {"sku": sku, "location_id": LOC, "available": 999} for sku in skus]})).raise_for_status()
            (await http.post(f"{s.shopify_admin_url}/_sandbox/plan", json={"plan": plan})).raise_for_status()
            await asyncio.sleep(1)
            (await http.post(f"{s.shopify_admin_url}/_sandbox/stats/reset")).raise_for_status()
            started = time.monotonic()
            run_id = (await http.post(f"{ops}/inventory/resync")).json()["run_id"]

            async def applied() -> bool:
                stats = (await http.get(f"{s.shopify_admin_url}/_sandbox/stats")).json()
                return stats.get("quantities_set", 0) >= n
            await wait_for(applied, timeout, f"{n} quantities set at the {plan} rate", poll=0.25)
            elapsed = time.monotonic() - started
            stats = (await http.get(f"{s.shopify_admin_url}/_sandbox/stats")).json()
            run = (await http.get(f"{ops}/inventory/resync/{run_id}")).json()["run"]
            shown = await levels(http, s, prefix)
            wrong = sum(1 for sku, want in expected.items() if shown.get(sku) != want)
            rate = PLANS[plan]
            bucket = stats.get("maximum_available", rate * 10)
            points = stats["points_actual"]
            results.append({
                "plan": plan, "rate": rate, "elapsed": elapsed,
                "minimum": max(0.0, points - bucket) / rate,
                "mutations": stats["mutation_calls"].get("inventorySetQuantities", 0),
                "requests": stats["requests"], "points_requested": stats["points_requested"],
                "points_actual": points, "throttled": stats["throttled"], "wrong": wrong,
                "levels_read": run.get("levels"),
            })
            console.print(f"{plan}: {elapsed:.1f}s, {results[-1]}")

    table = Table(title=f"Full resync of {n:,} SKU-locations")
    for column in ("plan", "pts/s", "elapsed s", "min s", "mutations", "requests", "pts req", "pts actual",
                   "THROTTLED", "wrong"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r["plan"], str(r["rate"]), f"{r['elapsed']:.1f}", f"{r['minimum']:.1f}", str(r["mutations"]),
                      str(r["requests"]), str(r["points_requested"]), str(r["points_actual"]), str(r["throttled"]),
                      str(r["wrong"]))
    console.print(table)
    console.print(machine())
    return 0 if all(r["wrong"] == 0 for r in results) else 1


def _now():
    from datetime import UTC, datetime
    return datetime.now(UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=100_000)
    parser.add_argument("--plans", default=",".join(PLANS))
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    plans = [p.strip() for p in args.plans.split(",") if p.strip()]
    unknown = [p for p in plans if p not in PLANS]
    if unknown:
        raise SystemExit(f"unknown plan(s) {unknown}: choose from {list(PLANS)}")
    sys.exit(asyncio.run(run(args.levels, plans, args.timeout)))


if __name__ == "__main__":
    main()
