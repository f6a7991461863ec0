"""Chaos run against the local stack (issue 8): nothing lost, nothing doubled, no operator needed.

    make chaos                         # the stack (make up), then this with the defaults below
    python -m benchmarks.chaos [--orders 2000] [--rate 20] [--skus 1000] [--short] [--timeout 900]

While paid orders arrive at a steady rate and Prima's stock changes for SKUs sold in Shopify, it
breaks what breaks in production, then stops breaking things and waits for the stack to heal by
itself. It never sends an operator command. Faults:

- Shopify's deliveries: 30% of webhooks delivered twice (the same X-Shopify-Webhook-Id), some
  orders first created unpaid and paid later, some with a late orders/updated that is older than
  what was delivered before; a delivery that is not answered 2xx is retried, as Shopify does.
- kill -9 of every one of the project's processes in turn, at random moments (the local
  supervisor restarts each, as compose's restart policy does); one Kafka restart and one
  PostgreSQL restart (deploy/local/kafka.sh, postgres.sh).
- Prima failing about 20% of sales-order calls with 500s, and some with answers slower than the
  client's timeout; then a window where Prima is down for longer than the gateway's retry budget.
- Shopify: a throttle storm and 5xx answers while stock pushes go out.
- 5% of orders are paid in the shop but none of their webhooks is ever delivered (the Shopify
  sandbox holds them, `POST /_sandbox/orders`): only the order reconciler can find them
  (services/shopify/reconciler.py, every RECONCILER_INTERVAL_SECONDS; 20 s in the local stack).

At the end it reports, for this run only: orders sent, in Prima, lost, with more than one sales
order; SKU-locations whose Shopify level is not Prima's available minus the buffer; open
exceptions (order, inventory, dead letters raised during the run); manual actions needed (what is
left for a person: every figure above). The exit status is 0 only if all of them are 0.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.orders import active_stock_skus, print_machine
from sandboxes.shopify.orders import random_paid_order
from sandboxes.shopify.webhooks import send_webhook
from services.platform.settings import Settings, use_env_file

ROOT = Path(__file__).resolve().parents[1]
use_env_file(ROOT / "deploy" / "local" / "stack.env")
SETTINGS = Settings()
LOC = "gid://shopify/Location/1"
WAREHOUSE = "WH-MAIN"
PRIMA_SCHEMA = "prima_sandbox"
UNDELIVERED = 0.05  # the share of orders whose webhooks are never delivered
PROCESSES = ("order_decider", "outbox_relay", "prima_gateway", "projector", "stock_decider", "shopify_gateway",
             "prima_ingest", "catalog_reader", "shopify_ingest", "ops_api", "reconciler", "payout_ingest",
             "payout_decider", "fulfilment_decider")
console = Console()


@dataclass
class Run:
    started: datetime
    order_ids: list[int] = field(default_factory=list)
    accepted: set[int] = field(default_factory=set)
    deliveries: int = 0
    retries: int = 0
    read_timeouts: int = 0  # 408: the ingest did not get the body within its read timeout (a stalled sender)
    duplicates: int = 0
    undelivered: int = 0  # orders whose webhooks were never delivered (the reconciler's to find)
    kills: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # what the chaos did, with the time
    stock_changes: int = 0
    stock_failures: int = 0

    def note(self, what: str) -> None:
        self.events.append(f"{(datetime.now(UTC) - self.started).total_seconds():6.1f}s {what}")
        console.print(f"[dim]{self.events[-1]}[/dim]")


# ------------------------------------------------------------------------------- the stack


async def script(*args: str) -> int:
    process = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    return await process.wait()


async def pids() -> dict[str, int]:
    process = await asyncio.create_subprocess_exec("deploy/local/services.sh", "pids", cwd=ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await process.communicate()
    found = {}
    for line in out.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            found[parts[0]] = int(parts[1])
    return found


def buffer_of(sku: str) -> int:
    rules = SETTINGS.inventory_buffer
    found = rules.buffer_for(sku, datetime.now(UTC))
    return found.units


# -------------------------------------------------------------------------------- deliveries


async def deliver(http: httpx.AsyncClient, run: Run, topic: str, body: dict, webhook_id: str, deadline: float) -> bool:
    """One webhook delivery, retried until 2xx as Shopify retries (here every 1-3 s)."""
    url = f"http://{SETTINGS.ingest_host}:{SETTINGS.ingest_port}/webhooks/shopify"
    secret = SETTINGS.shopify_webhook_secret.get_secret_value()
    while time.monotonic() < deadline:
        run.deliveries += 1
        try:
            response = await send_webhook(http, url, topic, body, secret, webhook_id=webhook_id)
            if response.status_code < 300:
                return True
            if response.status_code == 408:  # the body came too slowly (this sender stalled): not the
                run.read_timeouts += 1       # delivery's fault; Shopify retries any non-2xx, so does this
            elif 400 <= response.status_code < 500:
                raise AssertionError(f"the ingest refused a valid delivery: {response.status_code} {response.text}")
        except httpx.HTTPError:
            pass
        run.retries += 1
        await asyncio.sleep(random.uniform(1.0, 3.0))
    return False


async def one_order(http: httpx.AsyncClient, run: Run, order_id: int, skus: list[str], rng: random.Random,
                    deadline: float) -> None:
    paid = random_paid_order(order_id, skus, rng)
    paid_id = f"chaos-{order_id}-paid"
    kind = rng.random()
    if rng.random() < UNDELIVERED:  # paid in the shop, every webhook lost
        if await held_by_the_shop(http, run, paid, deadline):
            run.undelivered += 1
            run.accepted.add(order_id)
        return
    if kind < 0.1:  # created unpaid first, paid a little later
        created = copy.deepcopy(paid)
        created["financial_status"] = "pending"
        created["updated_at"] = (datetime.fromisoformat(paid["updated_at"]) - timedelta(seconds=30)).isoformat()
        await deliver(http, run, "orders/create", created, f"chaos-{order_id}-create", deadline)
        await asyncio.sleep(rng.uniform(0.1, 2.0))
    ok = await deliver(http, run, "orders/paid", paid, paid_id, deadline)
    if ok:
        run.accepted.add(order_id)
    if rng.random() < 0.3:  # delivered twice
        run.duplicates += 1
        await asyncio.sleep(rng.uniform(0.0, 5.0))
        await deliver(http, run, "orders/paid", paid, paid_id, deadline)
    if 0.1 <= kind < 0.2:  # a late orders/updated, older than what came before
        late = copy.deepcopy(paid)
        late["financial_status"] = "pending"
        late["updated_at"] = (datetime.fromisoformat(paid["updated_at"]) - timedelta(seconds=60)).isoformat()
        await asyncio.sleep(rng.uniform(0.5, 5.0))
        await deliver(http, run, "orders/updated", late, f"chaos-{order_id}-late", deadline)


async def held_by_the_shop(http: httpx.AsyncClient, run: Run, order: dict, deadline: float) -> bool:
    """The order exists in the shop (the Shopify sandbox), with no webhook ever sent for it."""
    url = f"{SETTINGS.shopify_admin_url}/_sandbox/orders"
    while time.monotonic() < deadline:
        try:
            response = await http.post(url, json={"orders": [order]})
            if response.status_code < 300:
                return True
            raise AssertionError(f"the Shopify sandbox refused an order: {response.status_code} {response.text}")
        except httpx.HTTPError:
            await asyncio.sleep(1.0)
    return False


async def send_orders(http: httpx.AsyncClient, run: Run, n: int, rate: float, skus: list[str], seed: int,
                      deadline: float) -> None:
    rng = random.Random(seed)
    base = int(time.time() * 1_000_000)
    tasks = []
    start = time.monotonic()
    for i in range(n):
        order_id = base + i
        run.order_ids.append(order_id)
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one_order(http, run, order_id, skus, random.Random(rng.random()), deadline)))
    await asyncio.gather(*tasks)


# ----------------------------------------------------------------------------------- faults


async def prima_faults(http: httpx.AsyncClient, run: Run, rate: float, until: float, down_at: float,
                       down_seconds: float) -> None:
    """About 20% of sales-order calls fail (500) and some time out past the client's timeout;
    from `down_at` Prima is down for `down_seconds`."""
    url = f"{SETTINGS.prima_base_url}/_sandbox/faults"
    per_second = max(1, round(rate * 0.2))
    down_noted = up_noted = False
    tick = 0
    while time.monotonic() < until:
        now = time.monotonic()
        if down_at <= now < down_at + down_seconds:
            faults = {"fail_next": 1_000_000, "fail_status": 503}
            if not down_noted:
                run.note(f"Prima down for {down_seconds:.0f}s (every sales-order call answers 503)")
                down_noted = True
        else:
            if down_noted and not up_noted:
                run.note("Prima back")
                up_noted = True
            timeout_next = 1 if tick % 5 == 0 else 0
            faults = {"fail_next": per_second, "fail_status": 500, "timeout_next": timeout_next,
                      "timeout_seconds": SETTINGS.prima_timeout_seconds + 2}
        try:
            await http.post(url, json=faults)
        except httpx.HTTPError:
            pass
        tick += 1
        await asyncio.sleep(1.0)
    try:
        await http.delete(url)
    except httpx.HTTPError:
        pass


async def control(http: httpx.AsyncClient, url: str, body: dict, within: float = 30.0) -> None:
    """A sandbox control sent until it is taken (a busy machine may make one wait)."""
    deadline = time.monotonic() + within
    while True:
        try:
            (await http.post(url, json=body)).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


async def shopify_faults(http: httpx.AsyncClient, run: Run, at: list[float]) -> None:
    url = f"{SETTINGS.shopify_admin_url}/_sandbox/faults"
    storm_at, errors_at = at
    await asyncio.sleep(max(0.0, storm_at - time.monotonic()))
    run.note("Shopify: a throttle storm for 10s")
    await control(http, url, {"throttle_storm_seconds": 10})
    await asyncio.sleep(max(0.0, errors_at - time.monotonic()))
    run.note("Shopify: the next 30 Admin requests answer 503")
    await control(http, url, {"fail_next": 30, "fail_status": 503})


async def stock_churn(http: httpx.AsyncClient, run: Run, skus: list[str], until: float, rng: random.Random) -> None:
    """Prima's stock changes for the run's SKUs, a few at a time, all along."""
    url = f"{SETTINGS.prima_base_url}/_sandbox/stock"
    while time.monotonic() < until:
        batch = rng.sample(skus, k=min(len(skus), 20))
        rows = [{"sku": s, "warehouse": WAREHOUSE, "available": rng.randint(0, 40)} for s in batch]
        try:
            (await http.put(url, json={"stock": rows})).raise_for_status()
            run.stock_changes += len(rows)
        except httpx.HTTPError:
            run.stock_failures += 1
        await asyncio.sleep(0.5)


async def killer(run: Run, start: float, until: float, interval: float, rng: random.Random) -> None:
    """kill -9 each project process in turn, at random moments; the supervisor restarts it. Goes
    on past the end of the chaos (at most two minutes) until every process was killed once."""
    order = list(PROCESSES)
    rng.shuffle(order)
    i = 0
    while True:
        await asyncio.sleep(rng.uniform(0.5, 1.5) * interval)
        now = time.monotonic()
        if (now >= until and set(run.kills) >= set(PROCESSES)) or now >= until + 120:
            return
        name = order[i % len(order)]
        pid = (await pids()).get(name)
        if not pid:  # being restarted by the supervisor: this one again a little later
            continue
        try:
            os.kill(pid, 9)
            run.kills.append(name)
            run.note(f"kill -9 {name} (pid {pid})")
        except ProcessLookupError:
            continue
        i += 1


async def restarts(run: Run, kafka_at: float, postgres_at: float) -> None:
    await asyncio.sleep(max(0.0, kafka_at - time.monotonic()))
    run.note("Kafka restart: stop")
    await script("deploy/local/kafka.sh", "stop")
    await asyncio.sleep(2)
    rc = await script("deploy/local/kafka.sh", "start")
    run.note(f"Kafka restart: started again (rc {rc})")
    await asyncio.sleep(max(0.0, postgres_at - time.monotonic()))
    run.note("PostgreSQL restart: stop")
    await script("deploy/local/postgres.sh", "stop")
    await asyncio.sleep(2)
    rc = await script("deploy/local/postgres.sh", "start")
    run.note(f"PostgreSQL restart: started again (rc {rc})")


# ---------------------------------------------------------------------------------- set-up


async def seed_inventory(http: httpx.AsyncClient, run: Run, prefix: str, n: int, rng: random.Random) -> list[str]:
    """n SKUs in Prima (items and stock) and in Shopify (variants at LOC, level 0), and a full
    comparison, so that the stock decider knows every variant before the chaos starts."""
    skus = [f"{prefix}-{i:05d}" for i in range(n)]
    await http.post(f"{SETTINGS.shopify_admin_url}/_sandbox/locations",
                    json={"locations": [{"id": LOC, "name": "Main warehouse"},
                                        {"id": "gid://shopify/Location/2", "name": "North"}]})
    items = [{"item_id": f"ITM-{s}", "sku": s, "description": s, "item_type": "stock", "active": True,
              "components": [], "unit_of_measure": "EA"} for s in skus]
    (await http.put(f"{SETTINGS.prima_base_url}/_sandbox/items", json={"items": items})).raise_for_status()
    stock = [{"sku": s, "warehouse": WAREHOUSE, "available": rng.randint(0, 40)} for s in skus]
    (await http.put(f"{SETTINGS.prima_base_url}/_sandbox/stock", json={"stock": stock})).raise_for_status()
    (await http.post(f"{SETTINGS.shopify_admin_url}/_sandbox/catalog",
                     json={"variants": [{"sku": s, "levels": {LOC: 0}} for s in skus]})).raise_for_status()
    ops = f"http://{SETTINGS.ops_api_host}:{SETTINGS.ops_api_port}"
    headers = {"Authorization": f"Bearer {SETTINGS.ops_api_token.get_secret_value()}"}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # Prima's facts have reached the stock decider
        summary = (await http.get(f"{ops}/inventory/summary", params={"sku": prefix}, headers=headers)).json()
        if summary["total"] >= n:
            break
        await asyncio.sleep(1)
    run_id = (await http.post(f"{ops}/inventory/resync", headers=headers, params={"requested_by": "chaos set-up"})
              ).json()["run_id"]
    while time.monotonic() < deadline:
        r = await http.get(f"{ops}/inventory/resync/{run_id}", headers=headers)
        if r.status_code == 200 and r.json()["run"]["status"] == "published":
            break
        await asyncio.sleep(1)
    run.note(f"set-up: {n} SKUs in Prima and Shopify, full comparison {run_id} published")
    return skus


# ------------------------------------------------------------------------------ the verdict


@dataclass
class Verdict:
    sent: int = 0
    accepted: int = 0
    in_prima: int = 0
    lost: list[int] = field(default_factory=list)
    doubled: list[int] = field(default_factory=list)
    not_converged: list[str] = field(default_factory=list)
    open_exceptions: list[str] = field(default_factory=list)

    @property
    def manual_actions(self) -> int:
        return len(self.lost) + len(self.doubled) + len(self.not_converged) + len(self.open_exceptions)


async def verdict(pool: asyncpg.Pool, http: httpx.AsyncClient, run: Run, skus: list[str]) -> Verdict:
    v = Verdict(sent=len(run.order_ids), accepted=len(run.accepted))
    refs = [str(i) for i in run.order_ids]
    counts = {int(r["external_reference"]): r["n"] for r in await pool.fetch(
        f"SELECT external_reference, count(*) AS n FROM {PRIMA_SCHEMA}.sales_orders "
        "WHERE external_reference = ANY($1::text[]) GROUP BY external_reference", refs)}
    v.in_prima = sum(1 for i in run.order_ids if counts.get(i))
    v.lost = sorted(i for i in run.order_ids if not counts.get(i))
    v.doubled = sorted(i for i, n in counts.items() if n > 1)
    prima = {r["sku"]: r["available"] for r in await pool.fetch(
        f"SELECT sku, available FROM {PRIMA_SCHEMA}.stock WHERE warehouse = $1 AND sku = ANY($2::text[])",
        WAREHOUSE, skus)}
    levels = (await http.get(f"{SETTINGS.shopify_admin_url}/_sandbox/inventory", params={"location_id": LOC})).json()
    shopify = {row["sku"]: row["available"] for row in (levels["levels"] if isinstance(levels, dict) else levels)}
    v.not_converged = sorted(s for s in skus if shopify.get(s) != max(0, prima.get(s, 0) - buffer_of(s)))
    orders = await pool.fetch(
        "SELECT shopify_order_id, kind FROM readmodel.exceptions WHERE status = 'open' AND shopify_order_id = ANY($1)",
        run.order_ids)
    inventory = await pool.fetch(
        "SELECT sku, kind FROM readmodel.inventory_exceptions WHERE status = 'open' AND sku = ANY($1::text[])", skus)
    letters = await pool.fetch(
        "SELECT consumer_group, reason FROM readmodel.dead_letters WHERE status = 'open' AND dead_lettered_at >= $1",
        run.started)
    v.open_exceptions = ([f"order {r['shopify_order_id']}: {r['kind']}" for r in orders]
                         + [f"{r['sku']}: {r['kind']}" for r in inventory]
                         + [f"dead letter of {r['consumer_group']}: {r['reason']}" for r in letters])
    return v


async def wait_for_healing(run: Run, skus: list[str], timeout: float) -> tuple[Verdict, float]:
    started = time.monotonic()
    deadline = started + timeout
    last: Verdict | None = None
    async with httpx.AsyncClient(timeout=30) as http:
        while time.monotonic() < deadline:
            try:
                pool = await asyncpg.create_pool(SETTINGS.database_url, min_size=1, max_size=2)
                try:
                    last = await verdict(pool, http, run, skus)
                finally:
                    await pool.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, httpx.HTTPError):
                await asyncio.sleep(2)
                continue
            if last.manual_actions == 0:
                return last, time.monotonic() - started
            await asyncio.sleep(3)
    assert last is not None, "the stack never answered after the chaos"
    return last, time.monotonic() - started


# ---------------------------------------------------------------------------------- running


async def chaos(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    run = Run(started=datetime.now(UTC))
    prefix = f"CHAOS-{run.started:%H%M%S}-{rng.randint(100, 999)}"
    async with httpx.AsyncClient(timeout=30) as http:
        order_skus = await active_stock_skus()
        order_skus = [s for s in order_skus if not s.startswith("CHAOS-")][:50]
        skus = await seed_inventory(http, run, prefix, args.skus, rng)
        duration = args.orders / args.rate
        t0 = time.monotonic()
        until = t0 + duration
        deadline = until + 300  # a delivery is retried for this long after the last send
        run.note(f"chaos: {args.orders} orders at {args.rate}/s for {duration:.0f}s")
        # the deliveries on a client of their own: hundreds waiting on a restarting ingest never
        # hold up the sandbox controls that drive the faults
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=400)) as deliveries:
            await asyncio.gather(
                send_orders(deliveries, run, args.orders, args.rate, order_skus, args.seed, deadline),
                prima_faults(http, run, args.rate, until, t0 + 0.45 * duration, args.prima_down_seconds),
                shopify_faults(http, run, [t0 + 0.3 * duration, t0 + 0.55 * duration]),
                stock_churn(http, run, skus, until, random.Random(rng.random())),
                killer(run, t0, until, args.kill_interval, random.Random(rng.random())),
                restarts(run, t0 + 0.2 * duration, t0 + 0.7 * duration),
            )
        for url in (f"{SETTINGS.prima_base_url}/_sandbox/faults", f"{SETTINGS.shopify_admin_url}/_sandbox/faults"):
            try:
                await http.delete(url)
            except httpx.HTTPError:
                pass
    run.note("chaos over: waiting for the stack to heal by itself (no operator command)")
    result, healed_in = await wait_for_healing(run, skus, args.timeout)
    report(args, run, result, healed_in)
    return 0 if result.manual_actions == 0 else 1


def report(args: argparse.Namespace, run: Run, v: Verdict, healed_in: float) -> None:
    table = Table(title=f"chaos run: {args.orders} orders at {args.rate}/s, {args.skus} SKUs")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("orders sent", v.sent), ("orders accepted by the ingest (after retries)", v.accepted),
        ("orders in Prima", v.in_prima), ("lost (no sales order)", len(v.lost)),
        ("with more than one sales order", len(v.doubled)),
        ("SKU-locations not converged", len(v.not_converged)), ("open exceptions of the run", len(v.open_exceptions)),
        ("manual actions needed", v.manual_actions), ("operator commands sent by the run", 0),
        ("webhook deliveries (incl. retries)", run.deliveries), ("deliveries retried (not 2xx)", run.retries),
        ("of them 408, the body too slow for the ingest's read timeout", run.read_timeouts),
        ("orders delivered twice", run.duplicates),
        ("orders whose webhooks were never delivered (found by the reconciler)", run.undelivered),
        ("kill -9 sent", len(run.kills)),
        ("distinct processes killed", f"{len(set(run.kills))} of {len(PROCESSES)}"),
        ("Prima stock changes", run.stock_changes), ("healed within (after the chaos)", f"{healed_in:.1f} s"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    for what, items in (("lost", v.lost), ("doubled", v.doubled), ("not converged", v.not_converged),
                        ("open exceptions", v.open_exceptions)):
        if items:
            console.print(f"[red]{what} ({len(items)}): {items[:20]}[/red]")
    print(json.dumps({"sent": v.sent, "in_prima": v.in_prima, "lost": len(v.lost), "doubled": len(v.doubled),
                      "not_converged": len(v.not_converged), "open_exceptions": len(v.open_exceptions),
                      "manual_actions": v.manual_actions, "read_timeouts": run.read_timeouts, "kills": len(run.kills), "processes_killed": len(set(run.kills)),
                      "processes": len(PROCESSES), "undelivered": run.undelivered,
                      "healed_in_seconds": round(healed_in, 1)}), flush=True)
    print_machine()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0, help="orders per second")
    parser.add_argument("--skus", type=int, default=1000, help="SKUs whose Prima stock changes during the run")
    parser.add_argument("--kill-interval", type=float, default=8.0, help="seconds between two kill -9, about")
    parser.add_argument("--prima-down-seconds", type=float, default=45.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the stack to heal")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--short", action="store_true", help="a few hundred orders: the variant `make test` runs")
    args = parser.parse_args(argv)
    if args.short:
        args.orders, args.rate, args.skus, args.kill_interval, args.prima_down_seconds = 300, 10.0, 200, 3.0, 20.0
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(chaos(parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
