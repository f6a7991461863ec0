"""Payouts to Prima journals: one Shopify payout of N balance transactions through the whole
local stack, the seconds from its ingest requested to its journal posted, and the matching rate.

    python -m benchmarks.payouts --transactions N [--orders M] [--plan enterprise] [--timeout SECONDS]

Needs the stack running (`make up`). Not measured, first:
1. Sends M paid orders (default N - 1: one per charge) through the stack as `orders/paid`
   webhooks (as benchmarks.orders does) and waits until the sales-documents read model holds each
   one's Prima sales order. With M below N - 1 the other charges are for orders the integration
   already has sales documents for (a sales order in Prima, paid in USD, never paid out yet), the
   oldest first; with too few of those it stops.
2. Builds one payout in Shopify's REST shape: a `charge` per order for its total (the
   sales-documents read model's total, so each charge is the amount the sales order says), each
   with Shopify Payments' fee (2.9% + 0.30, carried on the charge as Shopify does), and the
   `payout` transfer of minus the sum of the nets; the payout's amount is that sum. N - 1 charges
   and the transfer: N balance transactions. The payout is dated 40 days back, outside the ingest's
   30-day lookback, so the ingest's own schedule never reads it: only the request below does.
3. Raises the Shopify sandbox's Admin API plan (`POST /_sandbox/plan`, default enterprise: 2000
   points/s restored, a bucket of 40,000) so the cost throttle does not dominate, and seeds the
   payout as paid (`POST /_sandbox/payouts`). Then waits `--settle` seconds (60): sending the
   orders leaves the stock decider and the projector busy for a while, which would otherwise be
   measured with the payout.

Measured, the clock started when it asks the ops API to ingest the payout
(`POST /payouts/ingest?payout_id=...`, as `shopify-prima payouts ingest` does): it polls
`readmodel.payouts` until the payout is journalled (or held, or the timeout passes). Figures,
from timestamps the processes record:
- ingest (read): the request -> `ingest.shopify_payouts.published_at` (every page of
  transactions read through Admin GraphQL and published to Kafka), with the sandbox's queries,
  points charged and THROTTLED answers (`/_sandbox/stats`, before and after) and the throttle's
  own minimum for those points;
- decide: published -> `journal_requested_at` (the JournalRequested event: the decider read the
  facts, matched every transaction against the sales documents and decided the journal);
- post: `journal_requested_at` -> `journalled_at` (the relay, the Prima gateway, the Prima
  sandbox's POST /v1/journals, the outcome back to the decider);
- decide-to-posted (published -> journalled) and the total (request -> journalled); and the
  benchmark's own wall time until its poll saw it in the read model.
- matching rate: matched / (matched + unmatched) of the transactions that need a document
  (charges here; fees and the transfer stand on none), from the read model.
Checks: Prima's journal (GET /v1/journals?external_reference=shopify-payout:<id>) is one journal,
balanced to the cent, its lines the read model's, and the bank line equals the payout's net.
Restores the sandbox's plan at the end. Exit status 0 when the journal is posted, balanced, its
bank line the deposit and every charge matched; 1 otherwise.

Order, payout and transaction ids are the run's start time in microseconds plus offsets, so runs
never collide. Nothing is cleaned up afterwards.

    python -m benchmarks.payouts --decide-only --transactions N [--pages-per-batch K] [--kept 8] [--page-interval S]
                                 [--no-read-ahead]

The decide step alone, in this process, with the working tree's code (the stack runs the code it
was started with): the payout decider (services/payouts/decider.py PayoutDecider, its
PayoutApplication) over the real PostgreSQL event store and sales-documents read model, in a
throwaway database on the stack's PostgreSQL (migrated, dropped at the end; never the stack's
own tables), without Kafka, the relay, the gateway or Prima. Not measured: N - 1 orders' sales
documents written to the read models (sales, shipping 7.95, tax 8.875%, paid through
shopify_payments; each charge its order's total with Shopify Payments' fee), and the payout's read built as the ingest publishes it (pages
of PAGE_MAX transactions, then the payout), each message encoded to JSON as on Kafka. Measured,
batch after batch as the decider's consumer hands them over (K pages a batch, default 1, the
worst case; then the payout's end of read alone): each batch decoded from its JSON and handled
(Payouts loaded or kept, facts applied, documents and payment gateways read, decided, saved in
one transaction with the notification log). Figures: the seconds of the pages' batches together and of the slowest,
the seconds of the last batch (the end of the read -> JournalRequested stored: what the stack's
"decide" is, less Kafka), the event-store events read back, and checks: one journal requested,
balanced, its bank line the net, every charge matched. `--kept 0` keeps no Payout between
batches (each batch loads its Payout from the event store, as before the kept Payouts).
`--page-interval S` hands the pages over at the ingest's pace instead (the ingest publishes each
page as soon as it has read it: one every S seconds, about 0.25 under Shopify's cost throttle on
the enterprise plan; the end of the read with the last page), each batch what came while the
decider was busy, and the decide figure is then from the end of the read to JournalRequested
stored, pages the decider had not finished yet included: the stack's "decide" less Kafka. The
decider reads each page's documents as the page comes (ReadAhead, as the process runs it);
`--no-read-ahead` reads them all at the end of the read, as before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import asyncpg
import httpx
from rich.table import Table

from benchmarks.orders import (
    DATABASE_URL,
    SETTINGS,
    active_stock_skus,
    console,
    cpu_snapshot,
    machine_busy_seconds,
    print_cpu,
    print_machine,
    send_all,
)
from contracts.shopify.payouts import (
    PAGE_MAX,
    ShopifyBalanceTransaction,
    ShopifyPayout,
    ShopifyPayoutObserved,
    ShopifyPayoutTransactionsRead,
    payout_key,
)
from contracts.topics import SHOPIFY_PAYOUTS
from domain.payouts.application import KEPT_PAYOUTS, PayoutApplication
from domain.payouts.checks import transactions_digest
from services.payouts.decider import PayoutDecider, ReadAhead, documents_for, policy_of
from services.platform import migrations
from services.platform.kafka import Delivery, decode_record
from services.platform.settings import Settings, use_env_file
from services.prima.client import PrimaClient

use_env_file(Path(__file__).resolve().parents[1] / "deploy" / "local" / "stack.env")  # the ops API's token
STACK = Settings()
SHOPIFY_URL = STACK.shopify_admin_url.rstrip("/")
OPS_URL = f"http://127.0.0.1:{STACK.ops_api_port}"
CENT = Decimal("0.01")
FEE_RATE, FEE_FIXED = Decimal("0.029"), Decimal("0.30")  # Shopify Payments' online rate (Basic plan, US)


@dataclass(frozen=True)
class Charge:
    order_id: int
    amount: Decimal

    @property
    def fee(self) -> Decimal:
        return (self.amount * FEE_RATE + FEE_FIXED).quantize(CENT, ROUND_HALF_UP)


async def wait_documents(pool: asyncpg.Pool, ids: list[int], deadline: float, interval: float) -> int:
    """Until every order's sales document has its Prima sales order (or the deadline)."""
    while True:
        done = await pool.fetchval("SELECT count(*) FROM readmodel.sales_documents WHERE shopify_order_id = ANY($1) "
                                   "AND sales_order_number IS NOT NULL", ids)
        if done >= len(ids) or time.perf_counter() >= deadline:
            return done
        await asyncio.sleep(interval)


async def charges_for(pool: asyncpg.Pool, new_ids: list[int], wanted: int) -> list[Charge]:
    """A charge per new order with a sales order, topped up with older orders never paid out."""
    rows = list(await pool.fetch(
        "SELECT shopify_order_id, total FROM readmodel.sales_documents WHERE shopify_order_id = ANY($1) "
        "AND sales_order_number IS NOT NULL AND currency = 'USD' ORDER BY shopify_order_id", new_ids))
    if len(rows) < wanted:
        rows += await pool.fetch(
            """SELECT d.shopify_order_id, d.total FROM readmodel.sales_documents d
               WHERE d.sales_order_number IS NOT NULL AND d.currency = 'USD'
                 AND coalesce(d.presentment_currency, 'USD') = 'USD' AND d.total > 0
                 AND d.shopify_order_id <> ALL($1)
                 AND NOT EXISTS (SELECT 1 FROM readmodel.payout_transactions t
                                 WHERE t.order_id = d.shopify_order_id AND t.type = 'CHARGE')
               ORDER BY d.sales_order_created_at LIMIT $2""", new_ids, wanted - len(rows))
    return [Charge(r["shopify_order_id"], r["total"]) for r in rows[:wanted]]


def payout_body(payout_id: int, charges: list[Charge], issued: datetime) -> tuple[dict, Decimal]:
    """The payout and its transactions in Shopify's REST shape; and its net (the deposit)."""
    processed = (issued - timedelta(days=2)).isoformat()
    transactions = []
    for n, c in enumerate(charges, start=1):
        transactions.append({
            "id": payout_id + n, "type": "charge", "test": False, "payout_id": payout_id, "payout_status": "paid",
            "currency": "USD", "amount": str(c.amount), "fee": str(c.fee), "net": str(c.amount - c.fee),
            "source_id": payout_id + 100_000 + n, "source_type": "charge", "source_order_id": c.order_id,
            "source_order_transaction_id": None, "processed_at": processed})
    net = sum((c.amount - c.fee for c in charges), Decimal("0.00"))
    transactions.append({
        "id": payout_id + len(charges) + 1, "type": "payout", "test": False, "payout_id": payout_id,
        "payout_status": "paid", "currency": "USD", "amount": str(-net), "fee": "0.00", "net": str(-net),
        "source_id": payout_id, "source_type": "payout", "source_order_id": None,
        "source_order_transaction_id": None, "processed_at": processed})
    payout = {"id": payout_id, "status": "paid", "date": issued.date().isoformat(), "currency": "USD",
              "amount": str(net)}
    return {"payouts": [{"payout": payout, "transactions": transactions}]}, net


async def wait_journalled(pool: asyncpg.Pool, payout_id: int, deadline: float, interval: float) -> asyncpg.Record | None:
    """Until the payout is journalled (or held, or failed at Prima), or the deadline: its row."""
    while True:
        row = await pool.fetchrow("SELECT * FROM readmodel.payouts WHERE payout_id = $1", payout_id)
        if (row is not None and (row["journalled_at"] is not None or row["state"] in ("held", "journal_failed"))) \
                or time.perf_counter() >= deadline:
            return row
        await asyncio.sleep(interval)


def seconds(a: datetime | None, b: datetime | None) -> str:
    return f"{(b - a).total_seconds():.2f} s" if a is not None and b is not None else "-"


async def run(args: argparse.Namespace) -> int:
    n_charges = args.transactions - 1
    n_orders = n_charges if args.orders is None else min(args.orders, n_charges)
    base = time.time_ns() // 1000
    order_ids = [base + i for i in range(n_orders)]
    payout_id = base + n_orders + 10
    issued = datetime.now(UTC) - timedelta(days=40)
    console.print(f"[bold]Payouts to Prima[/bold]: a payout of {args.transactions} balance transactions "
                  f"({n_charges} charges, the transfer), {n_orders} new orders, payout {payout_id}")
    if STACK.ops_api_token is None:
        console.print("[red]no ops API token: set SHOPIFY_PRIMA_OPS_API_TOKEN (deploy/local/stack.env)[/red]")
        return 2
    ops_headers = {"Authorization": f"Bearer {STACK.ops_api_token.get_secret_value()}"}
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as client:
        plan_before = (await client.get(f"{SHOPIFY_URL}/_sandbox/plan")).json()["plan"]
        try:
            # --- not measured: the orders, their sales documents, the payout seeded ---------------
            if n_orders:
                skus = await active_stock_skus()
                t0 = time.perf_counter()
                deadline = t0 + args.timeout
                sent = await send_all(client, order_ids, skus, args.concurrency, args.seed, deadline)
                documented = await wait_documents(pool, sent.accepted, deadline, args.poll_interval)
                console.print(f"orders: {len(sent.accepted)} accepted, {documented} with a Prima sales order in the "
                              f"sales documents after {time.perf_counter() - t0:.1f} s (not measured)")
            charges = await charges_for(pool, order_ids, n_charges)
            new = set(order_ids)
            reused = sum(1 for c in charges if c.order_id not in new)
            if len(charges) < n_charges:
                console.print(f"[red]only {len(charges)} orders with a Prima sales order for {n_charges} charges[/red]")
                return 1
            body, net = payout_body(payout_id, charges, issued)
            plan = (await client.post(f"{SHOPIFY_URL}/_sandbox/plan", json={"plan": args.plan})).json()
            seeded = await client.post(f"{SHOPIFY_URL}/_sandbox/payouts", json=body)
            seeded.raise_for_status()
            console.print(f"payout {payout_id} seeded paid: {n_charges} charges ({reused} for earlier orders), "
                          f"net {net} USD; Shopify sandbox plan {plan['plan']} "
                          f"(restore {plan['throttleStatus']['restoreRate']:g} points/s)")

            if args.settle:  # the orders' other work (stock, projections) done before the clock starts
                console.print(f"settling {args.settle:g} s (the stack finishes the orders' other work)")
                await asyncio.sleep(args.settle)

            # --- measured: the ingest requested -> the journal posted ------------------------------
            stats_before = (await client.get(f"{SHOPIFY_URL}/_sandbox/stats")).json()
            cpu_before, busy_before = cpu_snapshot(), machine_busy_seconds()
            requested_at = datetime.now(UTC)
            t0 = time.perf_counter()
            answer = await client.post(f"{OPS_URL}/payouts/ingest", params={"payout_id": payout_id,
                                                                             "requested_by": "benchmarks.payouts"},
                                       headers=ops_headers)
            answer.raise_for_status()
            row = await wait_journalled(pool, payout_id, t0 + args.timeout, args.poll_interval)
            seen = time.perf_counter() - t0
            cpu_after, busy_after = cpu_snapshot(), machine_busy_seconds()
            stats_after = (await client.get(f"{SHOPIFY_URL}/_sandbox/stats")).json()
        finally:
            await client.post(f"{SHOPIFY_URL}/_sandbox/plan", json={"plan": plan_before})

        ingested = await pool.fetchrow("SELECT published_at, transaction_count FROM ingest.shopify_payouts "
                                       "WHERE payout_id = $1", payout_id)
        statuses = Counter({r["match_status"] or "undecided": r["n"] for r in await pool.fetch(
            "SELECT match_status, count(*) AS n FROM readmodel.payout_transactions WHERE payout_id = $1 "
            "GROUP BY 1", payout_id)})
        reasons = await pool.fetch(
            "SELECT reason, count(*) AS n FROM readmodel.payout_transactions WHERE payout_id = $1 "
            "AND match_status = 'unmatched' GROUP BY 1", payout_id) if statuses["unmatched"] else []
        async with PrimaClient(STACK) as prima:
            journals = (await prima.get("/v1/journals", external_reference=f"shopify-payout:{payout_id}"))["journals"]
    await pool.close()

    if row is None or row["journalled_at"] is None:
        console.print(f"[red]payout {payout_id} not journalled after {args.timeout:.0f} s[/red]: state "
                      f"{row['state'] if row else 'no read-model row'} "
                      f"{(row['hold_reason'], row['hold_detail'], row['journal_failure']) if row else ''}")
        return 1
    published = ingested["published_at"] if ingested else None
    matched, unmatched = row["matched"], row["unmatched"]
    rate = matched / (matched + unmatched) if matched + unmatched else float("nan")
    lines = journals[0]["lines"] if len(journals) == 1 else []
    debit = sum((Decimal(str(x["debit"])) for x in lines), Decimal(0))
    credit = sum((Decimal(str(x["credit"])) for x in lines), Decimal(0))
    decided = json.loads(row["journal"])["lines"] if row["journal"] else []  # jsonb: text through asyncpg
    bank = [x for x in decided if x.get("category") == "bank"]
    bank_ok = len(bank) == 1 and Decimal(str(bank[0]["debit"])) == net == row["net"]

    def key(x: dict) -> tuple:
        return (x["account"], Decimal(str(x["debit"])), Decimal(str(x["credit"])), x.get("tax_code"))
    same_lines = sorted(map(key, lines)) == sorted(map(key, decided))

    table = Table(title=f"Payout to Prima: {args.transactions} balance transactions", header_style="bold",
                  caption="event and database timestamps of the processes; the clock starts at the ingest request")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("balance transactions (N)", f"{args.transactions} ({n_charges} charges with fees, 1 transfer)")
    table.add_row("orders sent through the stack first / earlier orders", f"{n_orders} / {reused}")
    table.add_row("Shopify sandbox plan", f"{args.plan} (restored to {plan_before} after)")
    table.add_row("ingest (read): request -> published", seconds(requested_at, published))
    ops = {k: v - stats_before["by_operation"].get(k, 0) for k, v in stats_after["by_operation"].items()}
    points = stats_after["points_actual"] - stats_before["points_actual"]
    restore = plan["throttleStatus"]["restoreRate"]
    table.add_row("  Admin GraphQL: Payouts / PayoutBalanceTransactions queries",
                  f"{ops.get('Payouts', 0)} / {ops.get('PayoutBalanceTransactions', 0)}")
    table.add_row("  points charged (all the sandbox's queries) / THROTTLED",
                  f"{points:,} / {stats_after['throttled'] - stats_before['throttled']}")
    table.add_row("  the throttle's minimum: (points - bucket) / restore rate",
                  f"{max(0.0, points - plan['throttleStatus']['maximumAvailable']) / restore:.2f} s")
    table.add_row("decide: published -> JournalRequested", seconds(published, row["journal_requested_at"]))
    table.add_row("post: JournalRequested -> JournalPosted", seconds(row["journal_requested_at"], row["journalled_at"]))
    table.add_row("[bold]decide-to-posted: published -> JournalPosted[/bold]", seconds(published, row["journalled_at"]))
    table.add_row("[bold]total: request -> JournalPosted[/bold]", seconds(requested_at, row["journalled_at"]))
    table.add_row("seen journalled in the read model after", f"{seen:.2f} s")
    table.add_row("transactions read / in the read model",
                  f"{ingested['transaction_count'] if ingested else '-'} / {sum(statuses.values())}")
    table.add_row("match status", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    table.add_row("[bold]matching rate[/bold] (matched / needing a document)", f"{matched} / {matched + unmatched} "
                  f"= {100 * rate:.2f}%")
    if reasons:
        table.add_row("unmatched by reason", ", ".join(f"{r['reason']}: {r['n']}" for r in reasons))
    table.add_row("read-model state / journal", f"{row['state']} / {row['journal_number']}")
    table.add_row("journals in Prima for the payout", f"{len(journals)}")
    table.add_row("journal lines / debits / credits", f"{len(lines)} / {debit} / {credit}")
    table.add_row("balanced", "yes" if lines and debit == credit else "NO")
    table.add_row("bank line = deposit", f"yes ({net} USD)" if bank_ok else f"NO (bank {bank}, net {net})")
    table.add_row("Prima's lines = the decided lines", "yes" if same_lines else "NO")
    console.print(table)
    print_cpu(cpu_before, cpu_after, busy_before, busy_after, seen, what="the measured part")
    print_machine()
    total = (row["journalled_at"] - requested_at).total_seconds()
    d2p = (row["journalled_at"] - published).total_seconds() if published else float("nan")
    console.print(f"[bold]payout of {args.transactions} transactions: {total:.2f} s from request to journal posted "
                  f"(decide-to-posted {d2p:.2f} s), matching rate {100 * rate:.2f}%[/bold]")
    ok = len(journals) == 1 and lines and debit == credit and bank_ok and same_lines and unmatched == 0
    return 0 if ok else 1


# --- the decide step alone, in-process -------------------------------------------------------

DECIDE_SHIPPING, DECIDE_TAX_RATE = Decimal("7.95"), Decimal("0.08875")


def decide_documents(order_ids: list[int]) -> list[tuple]:
    """Sales-documents rows of paid orders with a sales order: sales from 20.00 to 219.99 (by id),
    shipping 7.95, tax 8.875% on both; total = their sum (what a charge of the order pays)."""
    rows = []
    for n, order_id in enumerate(order_ids):
        sales = Decimal("20.00") + Decimal(n % 20_000) / 100
        tax = ((sales + DECIDE_SHIPPING) * DECIDE_TAX_RATE).quantize(CENT, ROUND_HALF_UP)
        parts = [{"category": "sales", "amount": str(sales), "tax_title": None, "tax_rate": None},
                 {"category": "shipping", "amount": str(DECIDE_SHIPPING), "tax_title": None, "tax_rate": None},
                 {"category": "tax", "amount": str(tax), "tax_title": "NY State Tax",
                  "tax_rate": str(DECIDE_TAX_RATE)}]
        rows.append((order_id, f"#B{order_id}", "USD", "USD", sales + DECIDE_SHIPPING + tax, json.dumps(parts),
                     f"SO-{order_id}", datetime.now(UTC)))
    return rows


def decide_read(payout_id: int, charges: list[Charge], issued: datetime) -> tuple[list[tuple[bytes, str]], Decimal]:
    """The payout's read as the payout ingest publishes it (services/payouts/ingest.py PublishedRead):
    its pages of transactions, then the payout, each as the JSON on Kafka; and the net."""
    processed = issued - timedelta(days=2)
    transactions = [ShopifyBalanceTransaction(
        id=payout_id + n, gid=f"gid://shopify/ShopifyPaymentsBalanceTransaction/{payout_id + n}", type="CHARGE",
        amount={"amount": c.amount, "currency": "USD"}, fee={"amount": c.fee, "currency": "USD"},
        net={"amount": c.amount - c.fee, "currency": "USD"}, source_type="CHARGE", source_id=payout_id + 100_000 + n,
        order_id=c.order_id, order_name=f"#B{c.order_id}", transaction_date=processed, payout_id=payout_id,
        payout_status="PAID") for n, c in enumerate(charges, start=1)]
    net = sum((c.amount - c.fee for c in charges), Decimal("0.00"))
    transactions.append(ShopifyBalanceTransaction(
        id=payout_id + len(charges) + 1, gid=f"gid://shopify/ShopifyPaymentsBalanceTransaction/{payout_id}0",
        type="TRANSFER", amount={"amount": -net, "currency": "USD"}, fee={"amount": "0.00", "currency": "USD"},
        net={"amount": -net, "currency": "USD"}, source_type="PAYOUT", source_id=payout_id,
        transaction_date=processed, payout_id=payout_id, payout_status="PAID"))
    payout = ShopifyPayout(id=payout_id, gid=f"gid://shopify/ShopifyPaymentsPayout/{payout_id}", status="PAID",
                           issued_at=issued, net={"amount": net, "currency": "USD"})
    read_id, now = uuid4(), datetime.now(UTC)
    pages = [ShopifyPayoutTransactionsRead(read_id=read_id, payout_id=payout_id, page=n + 1,
                                           transactions=tuple(transactions[i:i + PAGE_MAX]), read_at=now)
             for n, i in enumerate(range(0, len(transactions), PAGE_MAX))]
    observed = ShopifyPayoutObserved(read_id=read_id, payout=payout, transaction_count=len(transactions),
                                     transactions_digest=transactions_digest(t.id for t in transactions),
                                     pages=len(pages), observed_at=now)
    return [(m.model_dump_json().encode(), m.message_type) for m in (*pages, observed)], net


async def run_decide(args: argparse.Namespace) -> int:
    n_charges = args.transactions - 1
    base = time.time_ns() // 1000
    order_ids = [base + i for i in range(n_charges)]
    payout_id = base + n_charges + 10
    name = f"bench_payouts_{base}"
    admin = await asyncpg.connect(DATABASE_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = str(httpx.URL(DATABASE_URL).copy_with(path=f"/{name}"))
    payouts: PayoutApplication | None = None
    try:
        await asyncio.to_thread(migrations.upgrade, url)
        settings = SETTINGS.model_copy(update={"database_url": url, "event_store_schema": "bench_event_store"})
        conn = await asyncpg.connect(url)
        await conn.execute('CREATE SCHEMA "bench_event_store"')
        rows = decide_documents(order_ids)
        await conn.executemany(
            """INSERT INTO readmodel.sales_documents (shopify_order_id, order_name, currency, presentment_currency,
                   total, parts, sales_order_number, sales_order_created_at, last_event_at)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $8)""", rows)
        await conn.executemany(
            """INSERT INTO readmodel.order_payment_gateways (shopify_order_id, gateway_names, order_updated_at,
                   recorded_at) VALUES ($1, '{shopify_payments}', $2, $2)""", [(r[0], r[7]) for r in rows])
        await conn.close()
        charges = [Charge(r[0], r[4]) for r in rows]
        messages, net = decide_read(payout_id, charges, datetime.now(UTC) - timedelta(days=1))
        payouts = PayoutApplication(env=settings.eventsourcing_env(create_tables=True), kept=args.kept)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=3)
        if args.no_read_ahead:
            decider = PayoutDecider(payouts, lambda ids: documents_for(pool, ids), policy_of(settings))
        else:  # as the payout decider runs it (services/payouts/decider.py main)
            documents = ReadAhead(pool)
            decider = PayoutDecider(payouts, documents, policy_of(settings), ahead=documents.ahead)
        accepts = {m.model_fields["message_type"].default: m for m in (ShopifyPayoutTransactionsRead,
                                                                        ShopifyPayoutObserved)}
        *page_messages, end_message = messages
        if args.page_interval:
            batches = []  # made as the pages come, below
            paced = (f"page after page every {args.page_interval:g} s as the ingest publishes them (the last with "
                     f"the end of the read), each batch what has come meanwhile")
        else:
            batches = [page_messages[i:i + args.pages_per_batch]
                       for i in range(0, len(page_messages), args.pages_per_batch)] + [[end_message]]
            paced = f"{args.pages_per_batch} page(s) a batch, then the end of the read"
        console.print(f"[bold]The payout decider alone[/bold] (this working tree, in-process, real PostgreSQL): "
                      f"{args.transactions} balance transactions in {len(page_messages)} pages of up to {PAGE_MAX}, "
                      f"{paced}; Payouts kept between batches: {args.kept}; documents "
                      f"{'read at the end' if args.no_read_ahead else 'read ahead as the pages come'}; "
                      f"database {name} (dropped at the end)")
        timings: list[float] = []
        offset = 0

        async def deliver(batch: list[tuple[bytes, str]]) -> None:
            nonlocal offset
            t0 = time.perf_counter()
            deliveries = []
            for raw, message_type in batch:  # decoded as the decider's consumer decodes a record
                record = SimpleNamespace(topic=SHOPIFY_PAYOUTS.name, value=raw,
                                         headers=[("message_type", message_type.encode())])
                deliveries.append(Delivery(message=decode_record(record, accepts), topic=SHOPIFY_PAYOUTS.name,
                                           partition=0, offset=offset, key=payout_key(payout_id)))
                offset += 1
            await decider.handle(deliveries)
            timings.append(time.perf_counter() - t0)

        after_read = None
        if args.page_interval:
            # the ingest's pace: page n is on Kafka n intervals after the read began, the end of the
            # read with the last page; the consumer hands over whatever has come while it was busy
            start = time.perf_counter()
            due = [start + args.page_interval * (n + 1) for n in range(len(page_messages))]
            due.append(due[-1])
            waiting = list(zip(due, messages, strict=True))
            while waiting:
                ahead = waiting[0][0] - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                now = time.perf_counter()
                batch = [m for d, m in waiting if d <= now]
                waiting = waiting[len(batch):]
                batches.append(batch)
                await deliver(batch)
            after_read = time.perf_counter() - due[-1]
        else:
            for batch in batches:
                await deliver(batch)
        await pool.close()
        loads = replace(payouts.load_stats)  # the batches' loads (the check's own load below not counted)
        found = await asyncio.to_thread(payouts.find_payout, payout_id)
    finally:
        if payouts is not None:
            payouts.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    journal = found.command.journal if found is not None and found.command is not None else None
    lines = journal.lines if journal is not None else ()
    bank = [x for x in lines if x.category == "bank"]
    matched = sum(1 for m in found.matches.values() if m.status == "matched") if found else 0
    unmatched = found.unmatched if found else 0
    pages_seconds, last = sum(timings[:-1]), timings[-1]
    if after_read is not None:
        last = after_read  # from the end of the read published, pages still waiting included
    table = Table(title=f"The payout decider alone: {args.transactions} balance transactions", header_style="bold",
                  caption="in-process over real PostgreSQL (throwaway database); no Kafka, relay, gateway or Prima")
    table.add_column("figure")
    table.add_column("value", justify="right")
    if after_read is not None:
        table.add_row("batches / Payouts kept", f"{len(batches)}, as the pages came every {args.page_interval:g} s "
                                                f"({len(page_messages) * args.page_interval:.2f} s of reading) / "
                                                f"{args.kept}")
        table.add_row("the last batch: messages / seconds", f"{len(batches[-1])} / {timings[-1]:.2f} s")
    else:
        table.add_row("batches (pages a batch) / Payouts kept", f"{len(batches) - 1} ({args.pages_per_batch}) + 1 / "
                                                                 f"{args.kept}")
    table.add_row("pages' batches: together / the slowest", f"{pages_seconds:.2f} s / {max(timings[:-1]):.3f} s")
    table.add_row("[bold]decide: the end of the read -> JournalRequested stored[/bold]", f"{last:.2f} s")
    table.add_row("every batch together", f"{sum(timings):.2f} s")
    table.add_row("event-store events read back by the batches / queries", f"{loads.events} / {loads.queries}")
    table.add_row("journal lines / debits / credits", f"{len(lines)} / {journal.total_debit if journal else '-'} / "
                                                      f"{journal.total_credit if journal else '-'}")
    table.add_row("bank line = net", "yes" if len(bank) == 1 and bank[0].debit == net else f"NO ({bank}, {net})")
    table.add_row("matched / unmatched", f"{matched} / {unmatched}")
    console.print(table)
    print_machine()
    console.print(f"[bold]decide {last:.2f} s (pages {pages_seconds:.2f} s) for {args.transactions} transactions, "
                  f"kept {args.kept}, {'no read-ahead' if args.no_read_ahead else 'documents read ahead'}"
                  f"{f', a page every {args.page_interval:g} s' if args.page_interval else ''}[/bold]")
    ok = journal is not None and journal.total_debit == journal.total_credit and len(bank) == 1 \
        and bank[0].debit == net and matched == n_charges and unmatched == 0
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.payouts", description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000,
                        help="balance transactions in the payout: charges and the transfer (default 10000)")
    parser.add_argument("--orders", type=int, default=None,
                        help="paid orders to send through the stack first (default: one per charge); the other "
                             "charges are for earlier orders with a Prima sales order never paid out")
    parser.add_argument("--plan", default="enterprise", choices=["standard", "advanced", "plus", "enterprise"],
                        help="the Shopify sandbox's Admin API plan during the run (default enterprise)")
    parser.add_argument("--concurrency", type=int, default=16, help="order webhooks in flight at once (default 16)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for the orders, then for the journal (each; default 900)")
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds to wait after seeding, before the clock starts, so the orders' other work "
                             "(stock decider, projector) is not measured with it (default 60)")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="read-model poll interval in seconds")
    parser.add_argument("--seed", type=int, default=11, help="random seed for the order bodies")
    parser.add_argument("--decide-only", action="store_true",
                        help="measure the payout decider alone, in this process, over a throwaway database on the "
                             "stack's PostgreSQL (the working tree's code; no Kafka, relay, gateway or Prima)")
    parser.add_argument("--pages-per-batch", type=int, default=1,
                        help="--decide-only: pages of transactions in each batch the decider handles (default 1)")
    parser.add_argument("--page-interval", type=float, default=0.0,
                        help="--decide-only: hand the pages over at the ingest's pace, one every SECONDS (e.g. "
                             "0.25), the end of the read with the last, and measure from the end of the read "
                             "(default 0: back to back, --pages-per-batch)")
    parser.add_argument("--no-read-ahead", action="store_true",
                        help="--decide-only: read every document at the end of the read (the decider reads each "
                             "page's documents as the page comes, services/payouts/decider.py ReadAhead)")
    parser.add_argument("--kept", type=int, default=KEPT_PAYOUTS,
                        help=f"--decide-only: Payouts kept in memory between batches (default {KEPT_PAYOUTS}; 0: "
                             "each batch loads its Payout from the event store)")
    args = parser.parse_args(argv)
    if args.transactions < 2:
        parser.error("--transactions must be at least 2 (a charge and the transfer)")
    if args.orders is not None and args.orders < 0:
        parser.error("--orders must be 0 or more")
    if args.pages_per_batch < 1 or args.kept < 0 or args.page_interval < 0:
        parser.error("--pages-per-batch must be at least 1, --kept and --page-interval 0 or more")
    return asyncio.run(run_decide(args) if args.decide_only else run(args))


if __name__ == "__main__":
    sys.exit(main())
