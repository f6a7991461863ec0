"""Despatch to fulfilment: Prima despatches at a steady rate through the whole local stack, and
the seconds from each despatch in Prima to its fulfilment in Shopify (issue 10).

    python -m benchmarks.fulfilment --orders N [--rate R] [--timeout SECONDS]

Needs the stack running (`make up`). Not measured, first: N paid orders (one to three lines of
the Prima sandbox's seeded stock items) are recorded in the Shopify sandbox, which delivers their
orders/paid webhooks to the ingest (`POST /_sandbox/webhooks`), and the benchmark waits until
Prima holds each one's sales order.

Measured: the warehouse despatches the orders one by one at R a second (`POST
/_sandbox/sales-orders/<n>/despatch`, everything in one parcel with a tracking number), paced by
an asyncio scheduler. Each despatch's time is the note's `despatched_at` as the Prima sandbox
records it (its PostgreSQL clock, microseconds, on this machine). Meanwhile the benchmark reads
the Shopify sandbox's fulfilments (`GET /_sandbox/fulfillments`) every 0.1 s; an order's
fulfilment time is when it was first seen there (so each figure is up to 0.1 s late).
Between the two: the Prima poller's poll (PRIMA_POLL_INTERVAL_SECONDS), Kafka, the fulfilment
decider (its read of the order's fulfillment orders from Shopify's Admin API, the decision, the
save), the outbox relay, the Shopify gateway's fulfillmentCreate, the sandbox.

Prints the despatch rate achieved, the latency p50/p90/p99/max, and checks that every order got
exactly one fulfilment with its tracking number. Exit status 0 when they all did; 1 otherwise.
Order ids are the run's start time in microseconds plus offsets, so runs never collide; nothing is
cleaned up afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from benchmarks.orders import machine, percentile
from sandboxes.shopify.orders import Line, Shipping, order_body
from services.platform.settings import Settings

SKUS = ("TEE-BLK-M", "TEE-BLK-L", "MUG-STONE")  # seeded in the Prima sandbox (sandboxes/prima/README.md)
POLL = 0.1


async def send_orders(http: httpx.AsyncClient, shopify: str, ids: list[int], rng: random.Random) -> None:
    gate = asyncio.Semaphore(8)

    async def one(order_id: int) -> None:
        lines = [Line(sku, sku, Decimal("10.00"), rng.randint(1, 2)) for sku in rng.sample(SKUS, rng.randint(1, 3))]
        body = order_body(order_id, lines, Shipping("Standard", Decimal("4.95")), taxes_included=True, currency="GBP")
        async with gate:
            r = await http.post(f"{shopify}/_sandbox/webhooks", json={"topic": "orders/paid", "order": body})
        r.raise_for_status()

    await asyncio.gather(*(one(i) for i in ids))


async def sales_orders(http: httpx.AsyncClient, prima: str, headers: dict[str, str], ids: list[int],
                       timeout: float) -> dict[int, str]:
    found: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    gate = asyncio.Semaphore(8)

    async def look(order_id: int) -> None:
        async with gate:
            r = await http.get(f"{prima}/v1/sales-orders", params={"external_reference": str(order_id)},
                               headers=headers)
        r.raise_for_status()
        orders = r.json()["sales_orders"]
        if orders:
            found[order_id] = orders[0]["sales_order_number"]

    while len(found) < len(ids) and time.monotonic() < deadline:
        await asyncio.gather(*(look(i) for i in ids if i not in found))
        if len(found) < len(ids):
            await asyncio.sleep(0.5)
    return found


async def run(args: argparse.Namespace) -> int:
    s = Settings()
    shopify, prima = s.shopify_admin_url, s.prima_base_url
    prima_headers = {"Authorization": f"Bearer {s.prima_api_key.get_secret_value()}"}
    base = time.time_ns() // 1000
    ids = [base + i for i in range(args.orders)]
    rng = random.Random(args.seed)
    async with httpx.AsyncClient(timeout=60) as http:
        print(f"sending {args.orders} paid orders through the stack (not measured) ...", flush=True)
        await send_orders(http, shopify, ids, rng)
        numbers = await sales_orders(http, prima, prima_headers, ids, args.timeout)
        if len(numbers) < len(ids):
            print(f"only {len(numbers)} of {len(ids)} orders reached Prima in {args.timeout}s", file=sys.stderr)
            return 1
        print(f"{len(ids)} sales orders in Prima; despatching at {args.rate}/s (measured)", flush=True)

        despatched: dict[int, datetime] = {}
        seen: dict[int, datetime] = {}
        fulfilments: dict[int, list[dict[str, Any]]] = {}
        done = asyncio.Event()

        async def watch() -> None:
            wanted = set(ids)
            while not done.is_set():
                r = await http.get(f"{shopify}/_sandbox/fulfillments")
                now = datetime.now(UTC)
                for row in r.json():
                    if row["order_id"] in wanted:
                        fulfilments.setdefault(row["order_id"], [])
                        if row["id"] not in {f["id"] for f in fulfilments[row["order_id"]]}:
                            fulfilments[row["order_id"]].append(row)
                        seen.setdefault(row["order_id"], now)
                await asyncio.sleep(POLL)

        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        lag: list[float] = []

        async def despatch(index: int, order_id: int) -> None:
            due = started + index / args.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            lag.append(max(0.0, time.monotonic() - due))
            r = await http.post(f"{prima}/_sandbox/sales-orders/{numbers[order_id]}/despatch", json={
                "parcels": [{"carrier": "Royal Mail", "tracking_number": f"RM{order_id}GB"}]})
            r.raise_for_status()
            despatched[order_id] = datetime.fromisoformat(r.json()["despatched_at"].replace("Z", "+00:00"))

        await asyncio.gather(*(despatch(i, order_id) for i, order_id in enumerate(ids)))
        sent_in = time.monotonic() - started
        deadline = time.monotonic() + args.timeout
        while len(seen) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
        await asyncio.sleep(2.0)  # a second fulfilment of an order, were one made, shows by now
        done.set()
        await watcher

    latencies = sorted((seen[i] - despatched[i]).total_seconds() for i in ids if i in seen)
    doubled = [i for i in ids if len(fulfilments.get(i, [])) > 1]
    wrong_tracking = [i for i in ids if i in fulfilments
                      and fulfilments[i][0]["tracking_numbers"] != [f"RM{i}GB"]]
    m = machine()
    print(f"machine: {m}")
    print(f"despatches: {len(ids)} in {sent_in:.1f}s ({len(ids) / sent_in:.2f}/s, asked {args.rate}/s; "
          f"scheduling lag p99 {percentile(sorted(lag), 99):.3f}s)")
    print(f"fulfilled: {len(latencies)} of {len(ids)}; more than one fulfilment: {len(doubled)}; "
          f"wrong tracking: {len(wrong_tracking)}")
    if latencies:
        print(f"despatch -> fulfilment seconds: p50 {percentile(latencies, 50):.2f}, p90 {percentile(latencies, 90):.2f}, "
              f"p99 {percentile(latencies, 99):.2f}, max {latencies[-1]:.2f} (aim: p99 < 5 s; each figure up to "
              f"{POLL}s late)")
    return 0 if len(latencies) == len(ids) and not doubled and not wrong_tracking else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="despatches a second")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=10)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
