"""Refunds to credit memos: N paid orders through the whole local stack, each refunded once, and
the credit memos per second.

    python -m benchmarks.refunds --orders N [--concurrency C] [--timeout SECONDS]

Needs the stack running (`make up`). First it sends N `orders/paid` webhooks (as benchmarks.orders
does) and waits until every order is `in_prima`; that part is not measured. Then, the clock
started, it sends one `refunds/create` webhook per order, in Shopify's shape
(sandboxes/shopify/lifecycle.py `refunded`: one unit of the first line, restock_type return), and
polls `readmodel.credit_memos` until every refund's memo is `created` or the timeout passes.
Figures: refund webhooks sent per second, credit memos created per second (from the first refund
sent to the last memo created), and the latency per refund (the memo's `created_at`, an event
timestamp, less its `received_at`) p50/p99. Finally it checks, in the Prima sandbox's schema,
that each refund made exactly one credit memo and that each memo's total equals the refund's
transactions to the cent.

Order and refund ids are the run's start time in microseconds plus 0..N-1 (refunds: plus N), so
runs never collide. Nothing is cleaned up afterwards. Exit status 0 when every refund became
exactly one credit memo equal to it, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from decimal import Decimal

import asyncpg
import httpx

from benchmarks.orders import (
    DATABASE_URL,
    INGEST_URL,
    PRIMA_SCHEMA,
    WEBHOOK_SECRET,
    active_stock_skus,
    console,
    percentile,
    print_machine,
    send_all,
    wait_in_prima,
)
from sandboxes.shopify.lifecycle import refunded
from sandboxes.shopify.orders import random_paid_order
from sandboxes.shopify.webhooks import send_webhook


async def send_refunds(client: httpx.AsyncClient, bodies: dict[int, dict], concurrency: int) -> dict[int, str]:
    """One refunds/create per refund id, at most `concurrency` in flight: {refund id: failure}."""
    gate = asyncio.Semaphore(concurrency)
    failed: dict[int, str] = {}

    async def one(refund_id: int, body: dict) -> None:
        async with gate:
            try:
                resp = await send_webhook(client, INGEST_URL, "refunds/create", body, WEBHOOK_SECRET)
            except httpx.HTTPError as exc:
                failed[refund_id] = type(exc).__name__
                return
            if not resp.is_success:
                failed[refund_id] = f"{resp.status_code} {resp.text[:200]}"

    await asyncio.gather(*(one(rid, body) for rid, body in bodies.items()))
    return failed


async def wait_memos(pool: asyncpg.Pool, refund_ids: list[int], deadline: float, interval: float) -> int:
    while True:
        done = await pool.fetchval("SELECT count(*) FROM readmodel.credit_memos WHERE refund_id = ANY($1) "
                                   "AND state = 'created'", refund_ids)
        if done >= len(refund_ids) or time.perf_counter() >= deadline:
            return done
        await asyncio.sleep(interval)


async def run(args: argparse.Namespace) -> int:
    print_machine()
    skus = await active_stock_skus()
    base = time.time_ns() // 1000
    ids = [base + i for i in range(args.orders)]
    rng = random.Random(args.seed)
    orders = {oid: random_paid_order(oid, skus, rng) for oid in ids}  # the bodies send_all sends (same seed)
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=4)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            deadline = time.perf_counter() + args.timeout
            sent = await send_all(client, ids, skus, args.concurrency, args.seed, deadline)
            in_prima, _ = await wait_in_prima(pool, sent.accepted, deadline, args.poll_interval)
            console.print(f"orders: {len(sent.accepted)} accepted, {in_prima} in Prima (not measured)")
            ready = [r["shopify_order_id"] for r in await pool.fetch(
                "SELECT shopify_order_id FROM readmodel.order_sync WHERE shopify_order_id = ANY($1) "
                "AND state = 'in_prima'", sent.accepted)]
            refunds: dict[int, dict] = {}
            expected: dict[int, Decimal] = {}
            for n, oid in enumerate(sorted(ready)):
                refund_id = base + args.orders + n
                body = orders[oid]
                refund, _ = refunded(body, refund_id=refund_id, lines=[(body["line_items"][0]["id"], 1, "return")])
                refunds[refund_id] = refund
                expected[refund_id] = sum((Decimal(t["amount"]) for t in refund["transactions"]), Decimal(0))
            if not refunds:
                console.print("[red]no order reached Prima: nothing to refund[/red]")
                return 1

            t0 = time.perf_counter()
            failed = await send_refunds(client, refunds, args.concurrency)
            sent_seconds = time.perf_counter() - t0
            ids_sent = [rid for rid in refunds if rid not in failed]
            created = await wait_memos(pool, ids_sent, time.perf_counter() + args.timeout, args.poll_interval)
        rows = await pool.fetch("SELECT refund_id, total, refunded, received_at, created_at "
                                "FROM readmodel.credit_memos WHERE refund_id = ANY($1)", ids_sent)
        prima = await pool.fetch(f"SELECT external_reference, body->'totals'->>'total' AS total "
                                 f"FROM {PRIMA_SCHEMA}.credit_memos WHERE external_reference = ANY($1)",
                                 [str(r) for r in ids_sent])
    finally:
        await pool.close()

    made = [r for r in rows if r["created_at"] is not None]
    span = (max(r["created_at"] for r in made) - min(r["received_at"] for r in made)).total_seconds() if made else 0
    latencies = sorted((r["created_at"] - r["received_at"]).total_seconds() for r in made)
    per_reference: dict[str, list[Decimal]] = {}
    for m in prima:
        per_reference.setdefault(m["external_reference"], []).append(Decimal(m["total"]))
    twice = [ref for ref, totals in per_reference.items() if len(totals) > 1]
    wrong = [ref for ref, totals in per_reference.items() if totals[0] != expected[int(ref)]]
    console.print(f"refunds: {len(refunds)} sent in {sent_seconds:.2f} s ({len(refunds) / sent_seconds:.0f}/s), "
                  f"{len(failed)} refused by the ingest")
    console.print(f"credit memos: {created} created, {len(per_reference)} in Prima, {len(twice)} made twice, "
                  f"{len(wrong)} not equal to their refund")
    if latencies:
        console.print(f"{len(made) / span if span else float('nan'):.1f} credit memos/s; "
                      f"latency p50 {percentile(latencies, 50):.2f} s, p99 {percentile(latencies, 99):.2f} s")
    ok = not failed and created == len(refunds) == len(per_reference) and not twice and not wrong
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
