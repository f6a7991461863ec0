"""Orders to Prima: drive N paid Shopify orders through the whole local stack and print figures.

    python -m benchmarks.orders --orders N [--concurrency C] [--timeout SECONDS]     # burst
    python -m benchmarks.orders --orders N --rate R [--concurrency C]                # paced
    python -m benchmarks.orders --orders N --baseline [--baseline-batch]             # the floor

Needs the stack running (`make up`). For each order it signs and posts an `orders/paid` webhook to
the ingest, then polls `readmodel.order_sync` in PostgreSQL until every accepted order is
`in_prima` or the timeout passes. Two ways of sending:
- burst (the default): as fast as `--concurrency` webhooks in flight at once allow;
- paced (`--rate R`): order i is sent at start + i/R seconds (an asyncio scheduler, at most
  `--concurrency` requests in flight). A send that cannot start on time (every slot busy: the
  ingest is slower than the rate) starts late, and the report gives how far behind schedule
  sending fell (p99 and max lag) and the send rate achieved, rather than bursting silently.
Latency per order is `in_prima_at - first_received_at` from the read model: both are event
timestamps, the first set when the ingest received the webhook, the second when the Order
aggregate recorded SalesOrderCreated; in paced mode it is the key figure (no queue built by a
burst). Finally it counts the Prima sandbox's sales orders for these orders (schema
`prima_sandbox`) to show that each order made exactly one. The report names the mode, and ends
with one line of orders/s and latency p50/p99, the shape of the baseline's last line.

`--baseline` (and/or `--baseline-batch`) does not send orders: it measures the floor of the
platform under the pipeline, a bare consume -> insert -> produce loop on the same Kafka and
PostgreSQL with the same guarantees as one stage (benchmarks/baseline.py describes it).

Order ids are the run's start time in microseconds plus 0..N-1, so runs never collide with each
other or with earlier data. Nothing is cleaned up afterwards: the orders stay, like real ones.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from sandboxes.shopify.orders import random_paid_order
from sandboxes.shopify.webhooks import send_webhook

from services.platform.settings import Settings
from services.prima.client import PrimaClient

SETTINGS = Settings()  # the same SHOPIFY_PRIMA_* settings as the services
DATABASE_URL = SETTINGS.database_url
WEBHOOK_SECRET = SETTINGS.shopify_webhook_secret.get_secret_value()
INGEST_URL = f"http://{SETTINGS.ingest_host}:{SETTINGS.ingest_port}/webhooks/shopify"
PRIMA_SCHEMA = "prima_sandbox"  # sandboxes/prima/app.py SCHEMA

console = Console()


# --- the machine --------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu_model = "unknown"
    mem = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    return {
        "CPUs (nproc)": str(cpus),
        "CPU model": cpu_model,
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
    }


# --- CPU used by the stack's processes (Linux /proc, best effort) --------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_group(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    args = [a.decode(errors="replace") for a in argv if a]
    if not args:
        return None
    if "-m" in args:
        module = args[args.index("-m") + 1] if args.index("-m") + 1 < len(args) else ""
        if module.startswith(("services.", "sandboxes.")):
            return module
    exe = os.path.basename(args[0])
    if exe == "java" and any("kafka" in a.lower() for a in args):
        return "kafka (java)"
    if exe == "postgres" or args[0].startswith("postgres:"):
        return "postgresql (all backends)"
    return None


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (group, CPU seconds so far) for the stack's processes, plus this benchmark."""
    out: dict[int, tuple[str, float]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        group = "benchmark (this process)" if pid == me else _process_group(pid)
        if group is None:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[pid] = (group, (int(fields[11]) + int(fields[12])) / _TICK)  # utime + stime
    return out


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    used: Counter[str] = Counter()
    for pid, (group, seconds) in after.items():
        used[group] += seconds - (before[pid][1] if pid in before else 0.0)
    return dict(used.most_common())


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (all CPUs, /proc/stat), or None off Linux."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK  # user..steal; guest time is already inside user


def print_cpu(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
              busy_before: float | None, busy_after: float | None, wall: float,
              what: str = "the run") -> None:
    """The CPU table: CPU seconds per process of the stack between two snapshots."""
    cpu = cpu_used(before, after)
    if not cpu or wall <= 0:
        return
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpu_table = Table(title=f"CPU seconds used during {what} ({wall:.1f} s wall, {ncpu} CPUs)", header_style="bold")
    cpu_table.add_column("process")
    cpu_table.add_column("CPU s", justify="right")
    cpu_table.add_column("% of one CPU", justify="right")
    for group, seconds in cpu.items():
        cpu_table.add_row(group, f"{seconds:.1f}", f"{100 * seconds / wall:.0f}%")
    if busy_before is not None and busy_after is not None:
        busy = busy_after - busy_before
        other = busy - sum(cpu.values())
        cpu_table.add_row("other processes on the machine", f"{max(other, 0.0):.1f}",
                          f"{100 * max(other, 0.0) / wall:.0f}%")
        cpu_table.add_row("whole machine busy", f"{busy:.1f}", f"{100 * busy / (wall * ncpu):.0f}% of all CPUs")
    console.print(cpu_table)


def print_machine() -> None:
    mtable = Table(title="machine", show_header=False)
    for k, v in machine().items():
        mtable.add_row(k, v)
    console.print(mtable)


# --- time spent per message in each stage (the workers' FastStream Prometheus metrics) -----------

METRICS_ENDPOINTS = {
    "shopify_ingest": SETTINGS.ingest_port,
    "order_decider": SETTINGS.order_decider_metrics_port,
    "outbox_relay": SETTINGS.outbox_relay_metrics_port,
    "prima_gateway": SETTINGS.prima_gateway_metrics_port,
}
_STAGE_METRIC = re.compile(
    r'^faststream_(received_processed|published)_messages_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$', re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


async def stage_metrics(client: httpx.AsyncClient) -> dict[tuple[str, str], list[float]]:
    """(stage, what) -> [seconds summed, messages] so far, from each worker's /metrics."""
    out: dict[tuple[str, str], list[float]] = {}
    for name, port in METRICS_ENDPOINTS.items():
        try:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)).text
        except httpx.HTTPError:
            continue
        for kind, stat, labels, value in _STAGE_METRIC.findall(text):
            lab = dict(_LABEL.findall(labels))
            what = (f"handle {lab.get('handler')}" if kind == "received_processed"
                    else f"publish to {lab.get('destination')}")
            entry = out.setdefault((name, what), [0.0, 0.0])
            entry[0 if stat == "sum" else 1] += float(value)
    return out


# --- the run ------------------------------------------------------------------------------------

@dataclass
class Sent:
    statuses: Counter[str] = field(default_factory=Counter)
    accepted: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    first_send: datetime | None = None
    send_seconds: float = 0.0
    # paced mode only: seconds each send started behind its slot (start + i/R), and the span from
    # the first send's start to the last one's
    lags: list[float] = field(default_factory=list)
    send_span: float = 0.0


async def active_stock_skus() -> list[str]:
    """The SKUs of Prima's active stock items (through the integration's own Prima client)."""
    skus: list[str] = []
    async with PrimaClient(SETTINGS) as prima:
        async for page in prima.pages("/v1/items", "items", limit=500):
            skus += [i["sku"] for i in page if i["active"] and i["item_type"] == "stock"]
    return sorted(skus)


async def send_all(client: httpx.AsyncClient, ids: list[int], skus: list[str], concurrency: int,
                   seed: int, deadline: float, rate: float | None = None) -> Sent:
    """Post one orders/paid webhook per id, at most `concurrency` in flight; none is started after
    `deadline`. Without `rate`, as fast as that allows (burst); with it, order i is due at
    start + i/rate and starts then, or as soon as a slot frees if every slot is busy (its lag is
    recorded: a late order is sent late, the schedule itself never moves)."""
    rng = random.Random(seed)
    bodies = {oid: random_paid_order(oid, skus, rng) for oid in ids}  # built before the clock starts
    sent = Sent()
    gate = asyncio.Semaphore(concurrency)

    def not_sent(oid: int) -> None:
        sent.statuses["not sent (timeout)"] += 1
        sent.failed[oid] = "not sent: the timeout passed first"

    def too_late(oid: int) -> bool:
        if time.perf_counter() < deadline:
            return False
        not_sent(oid)
        return True

    async def post(oid: int) -> None:
        """Send one webhook; the caller holds a slot of `gate`, released here."""
        try:
            resp = await send_webhook(client, INGEST_URL, "orders/paid", bodies[oid], WEBHOOK_SECRET)
        except httpx.HTTPError as exc:
            sent.statuses[type(exc).__name__] += 1
            sent.failed[oid] = type(exc).__name__
            return
        finally:
            gate.release()
        sent.statuses[str(resp.status_code)] += 1
        if resp.is_success:
            sent.accepted.append(oid)
        else:
            sent.failed[oid] = f"{resp.status_code} {resp.text[:200]}"

    async def one(oid: int) -> None:  # burst
        await gate.acquire()
        if too_late(oid):
            gate.release()
            return
        await post(oid)

    async def paced() -> None:
        tasks: list[asyncio.Task] = []
        first = last = None
        for i, oid in enumerate(ids):
            due = t0 + i / rate
            if due >= deadline:
                for rest in ids[i:]:
                    not_sent(rest)
                break
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            await gate.acquire()  # every slot busy: this send falls behind its schedule
            if time.perf_counter() >= deadline:
                gate.release()
                for rest in ids[i:]:
                    not_sent(rest)
                break
            last = time.perf_counter()
            first = last if first is None else first
            sent.lags.append(max(0.0, last - due))
            tasks.append(asyncio.create_task(post(oid)))
        await asyncio.gather(*tasks)
        sent.send_span = (last - first) if first is not None else 0.0

    sent.first_send = datetime.now(UTC)
    t0 = time.perf_counter()
    if rate is None:
        await asyncio.gather(*(one(oid) for oid in ids))
    else:
        await paced()
    sent.send_seconds = time.perf_counter() - t0
    return sent


async def wait_in_prima(pool: asyncpg.Pool, ids: list[int], deadline: float, interval: float) -> tuple[int, float]:
    """Poll until every id is in_prima or the deadline (perf_counter) passes: (count, seconds waited)."""
    if not ids:
        return 0, 0.0
    t0 = time.perf_counter()
    done = 0
    while True:
        done = await pool.fetchval(
            "SELECT count(*) FROM readmodel.order_sync WHERE shopify_order_id = ANY($1) AND state = 'in_prima'", ids)
        if done >= len(ids) or time.perf_counter() >= deadline:
            return done, time.perf_counter() - t0
        await asyncio.sleep(interval)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


async def prima_check(pool: asyncpg.Pool, client: httpx.AsyncClient, ids: list[int], sample: int) -> dict:
    refs = [str(i) for i in ids]
    per_ref = await pool.fetch(
        f"""SELECT so.external_reference, count(*) AS n, min(so.sales_order_number) AS number,
                   coalesce(sum(k.replays), 0) AS replays, count(k.key) AS keys
            FROM {PRIMA_SCHEMA}.sales_orders so
            LEFT JOIN {PRIMA_SCHEMA}.idempotency_keys k ON k.sales_order_number = so.sales_order_number
            WHERE so.external_reference = ANY($1::text[])
            GROUP BY so.external_reference""", refs)
    numbers = {int(r["external_reference"]): r["number"] for r in per_ref}
    read_model = {r["shopify_order_id"]: r["prima_sales_order_number"] for r in await pool.fetch(
        "SELECT shopify_order_id, prima_sales_order_number FROM readmodel.order_sync WHERE shopify_order_id = ANY($1)",
        ids)}
    # A sample through the API too, so the figure does not rest on the sandbox's tables alone.
    api_counts = []
    async with PrimaClient(SETTINGS) as prima:
        for oid in random.Random(0).sample(ids, k=min(sample, len(ids))):
            api_counts.append(len((await prima.get("/v1/sales-orders", external_reference=str(oid)))["sales_orders"]))
    return {
        "sales_orders": sum(r["n"] for r in per_ref),
        "orders_with_one": sum(1 for r in per_ref if r["n"] == 1),
        "orders_with_more": sorted(int(r["external_reference"]) for r in per_ref if r["n"] > 1),
        "orders_with_none": sorted(set(ids) - set(numbers)),
        "idempotency_keys": sum(r["keys"] for r in per_ref),
        "replays": sum(r["replays"] for r in per_ref),
        "read_model_disagrees": sorted(i for i, n in numbers.items() if read_model.get(i) not in (None, n)),
        "api_sample": api_counts,
    }


def mode_of(args: argparse.Namespace) -> str:
    """The sending mode, as the report names it."""
    if args.rate is None:
        return f"burst, concurrency {args.concurrency}"
    return f"paced at {args.rate:g} orders/s, at most {min(args.concurrency, args.orders)} in flight"


async def run(args: argparse.Namespace) -> int:
    n, rate = args.orders, args.rate
    c = args.concurrency if rate is None else min(args.concurrency, n)
    mode = mode_of(args)
    base = time.time_ns() // 1_000  # microseconds: ids stay far below 2**63 even as line-item ids (x100)
    ids = [base + i for i in range(n)]
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as client:
        skus = await active_stock_skus()
        if not skus:
            console.print("[red]the Prima sandbox has no active stock items[/red]")
            return 2
        pool = await asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=2)
        try:
            console.print(f"[bold]Orders to Prima[/bold]: {n} orders, {mode}, ids {ids[0]}..{ids[-1]}, "
                          f"SKUs {', '.join(skus)}")
            cpu_before, busy_before = cpu_snapshot(), machine_busy_seconds()
            stages_before = await stage_metrics(client)
            deadline = time.perf_counter() + args.timeout
            sent = await send_all(client, ids, skus, c, args.seed, deadline, rate)
            console.print(f"sent {n} webhooks in {sent.send_seconds:.2f} s ({mode}); waiting for in_prima "
                          f"(timeout {args.timeout:.0f} s from the first send)")
            done, waited = await wait_in_prima(pool, sent.accepted, deadline, args.poll_interval)
            observed_seconds = sent.send_seconds + waited
            cpu_after, busy_after = cpu_snapshot(), machine_busy_seconds()
            stages_after = await stage_metrics(client)

            rows = await pool.fetch(
                """SELECT shopify_order_id, state, first_received_at, sent_at, in_prima_at
                   FROM readmodel.order_sync WHERE shopify_order_id = ANY($1)""", ids)
            prima = await prima_check(pool, client, ids, args.api_sample)
        finally:
            await pool.close()

    in_prima = [r for r in rows if r["state"] == "in_prima" and r["in_prima_at"] is not None]
    latency = sorted((r["in_prima_at"] - r["first_received_at"]).total_seconds() for r in in_prima)
    decide = sorted((r["sent_at"] - r["first_received_at"]).total_seconds() for r in in_prima if r["sent_at"])
    deliver = sorted((r["in_prima_at"] - r["sent_at"]).total_seconds() for r in in_prima if r["sent_at"])
    last_in_prima = max((r["in_prima_at"] for r in in_prima), default=None)
    e2e_seconds = (last_in_prima - sent.first_send).total_seconds() if last_in_prima and sent.first_send else None
    states = Counter(r["state"] for r in rows)
    missing_rows = n - len(rows)
    not_arrived = sorted(set(sent.accepted) - {r["shopify_order_id"] for r in in_prima})

    def ms(values: list[float], p: float) -> str:
        return f"{percentile(values, p) * 1000:,.0f}" if values else "-"

    # paced mode: how well the schedule was held
    lags = sorted(sent.lags)
    achieved_rate = (len(lags) - 1) / sent.send_span if len(lags) > 1 and sent.send_span > 0 else None
    fell_behind = bool(lags) and rate is not None and lags[-1] > max(1.0 / rate, 0.010)

    table = Table(title=f"Orders to Prima: {n} orders, {mode}", show_header=True, header_style="bold",
                  caption="latency = in_prima_at - first_received_at (read model, event timestamps)")
    table.add_column("figure")
    table.add_column("value", justify="right")

    table.add_row("orders (N)", f"{n}")
    table.add_row("mode", "burst (as fast as the concurrency allows)" if rate is None
                  else f"paced at {rate:g} orders/s (order i due at start + i/R)")
    table.add_row("concurrency", f"{c}" if rate is None else f"{c} (most in flight)")
    table.add_row("time to send all webhooks", f"{sent.send_seconds:.2f} s")
    table.add_row("webhook acceptance rate", f"{n / sent.send_seconds:,.1f} req/s" if sent.send_seconds else "-")
    if rate is not None:
        table.add_row("achieved send rate (send starts)",
                      f"{achieved_rate:,.1f} orders/s of {rate:g}" if achieved_rate else "-")
        table.add_row("behind schedule p50 / p99 / max (ms)",
                      f"{ms(lags, 50)} / {ms(lags, 99)} / {ms(lags, 100)}")
        table.add_row("sent more than 10 ms late", f"{sum(1 for v in lags if v > 0.010)} / {len(lags)}")
    table.add_row("webhook responses", ", ".join(f"{k}: {v}" for k, v in sorted(sent.statuses.items())))
    table.add_row("non-2xx / errors", f"{sum(v for k, v in sent.statuses.items() if not k.startswith('2'))}")
    table.add_row("in_prima in read model", f"{len(in_prima)} / {n}")
    table.add_row("did not arrive (timeout)", f"{len(not_arrived)}")
    table.add_row("end-to-end time (1st send -> last in_prima)", f"{e2e_seconds:.2f} s" if e2e_seconds else "-")
    table.add_row("end-to-end throughput",
                  f"{len(in_prima) / e2e_seconds:,.1f} orders/s" if e2e_seconds else "-")
    table.add_row("all seen in read model after", f"{observed_seconds:.2f} s")
    table.add_row("latency p50 / p90 / p99 / max (ms)",
                  f"{ms(latency, 50)} / {ms(latency, 90)} / {ms(latency, 99)} / {ms(latency, 100)}")
    table.add_row("  received -> SalesOrderRequested p50/p99/max ms",
                  f"{ms(decide, 50)} / {ms(decide, 99)} / {ms(decide, 100)}")
    table.add_row("  Requested -> SalesOrderCreated p50/p99/max ms",
                  f"{ms(deliver, 50)} / {ms(deliver, 99)} / {ms(deliver, 100)}")
    table.add_row("Prima sales orders for these orders", f"{prima['sales_orders']}")
    table.add_row("orders with exactly one", f"{prima['orders_with_one']} / {n}")
    table.add_row("orders with more than one / none",
                  f"{len(prima['orders_with_more'])} / {len(prima['orders_with_none'])}")
    table.add_row("idempotent replays at Prima", f"{prima['replays']} ({prima['idempotency_keys']} keys)")
    table.add_row("read-model SO number != Prima's", f"{len(prima['read_model_disagrees'])}")
    table.add_row(f"API sample, {len(prima['api_sample'])} orders",
                  "exactly one each" if prima["api_sample"] and set(prima["api_sample"]) == {1}
                  else f"counts {sorted(Counter(prima['api_sample']).items())}")
    console.print(table)

    states_line = ", ".join(f"{k}: {v}" for k, v in sorted(states.items()))
    if missing_rows:
        states_line += f", no row: {missing_rows}"
    console.print(f"read-model states of these orders: {states_line}")

    stage_table = Table(title="time per message in each stage (workers' /metrics, this run only)",
                        header_style="bold", caption="busy = summed handling time / wall time of the run")
    for col in ("stage", "what", "messages", "mean ms", "busy"):
        stage_table.add_column(col, justify="left" if col in ("stage", "what") else "right")
    for key, (total, count) in sorted(stages_after.items()):
        before = stages_before.get(key, [0.0, 0.0])
        d_total, d_count = total - before[0], count - before[1]
        if d_count > 0:
            stage_table.add_row(key[0], key[1], f"{d_count:.0f}", f"{1000 * d_total / d_count:.1f}",
                                f"{100 * d_total / observed_seconds:.0f}%")
    if stage_table.row_count:
        console.print(stage_table)

    print_cpu(cpu_before, cpu_after, busy_before, busy_after, observed_seconds)
    print_machine()

    throughput = f"{len(in_prima) / e2e_seconds:,.1f} orders/s end to end" if e2e_seconds else "- orders/s"
    summary = (f"orders ({mode}): {throughput}, latency p50 {ms(latency, 50)} ms, p99 {ms(latency, 99)} ms")
    if rate is not None:
        summary += (f"; sent at {achieved_rate:,.1f}/s" if achieved_rate else "; sent") + \
            f", at most {ms(lags, 100)} ms behind schedule"
    console.print(f"[bold]{summary}[/bold]")

    problems = 0
    if fell_behind:
        console.print(f"[yellow]sending fell behind schedule by up to {ms(lags, 100)} ms[/yellow] (every one of the {c} "
                      f"in-flight slots busy: the ingest answered slower than {rate:g}/s needs, or this process "
                      "was short of CPU); "
                      "raise --concurrency or lower --rate for a steady pace")
    if sent.failed:
        problems += 1
        console.print(f"[red]{len(sent.failed)} webhooks not accepted[/red], e.g.:")
        for oid, why in list(sent.failed.items())[:10]:
            console.print(f"  {oid}: {why}")
    if not_arrived:
        problems += 1
        console.print(f"[red]{len(not_arrived)} accepted orders not in_prima after {args.timeout:.0f} s[/red], e.g.:")
        by_id = {r["shopify_order_id"]: r["state"] for r in rows}
        for oid in not_arrived[:20]:
            console.print(f"  {oid}: {by_id.get(oid, 'no read-model row')}")
    if prima["orders_with_more"] or prima["read_model_disagrees"]:
        problems += 1
        console.print("[red]doubled or disagreeing sales orders[/red]: "
                      f"more than one {prima['orders_with_more'][:20]}, "
                      f"read model disagrees {prima['read_model_disagrees'][:20]}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.orders", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, required=True,
                        help="how many paid orders to send (with --baseline: how many messages)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="webhooks in flight at once (default 16); with --rate, the most in flight")
    parser.add_argument("--rate", type=float, default=None, metavar="R",
                        help="paced: send order i at start + i/R seconds (R orders/s) instead of a burst; "
                             "the report says how far behind schedule sending fell")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds from the first send after which to stop waiting (default 600)")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="read-model poll interval in seconds")
    parser.add_argument("--seed", type=int, default=2, help="random seed for the order bodies")
    parser.add_argument("--api-sample", type=int, default=20,
                        help="orders also checked through GET /v1/sales-orders (default 20)")
    floor = parser.add_argument_group(
        "baseline", "the floor of the platform instead of orders: a bare consume -> insert -> produce loop on the "
                    "stack's Kafka and PostgreSQL (benchmarks/baseline.py); --baseline and --baseline-batch "
                    "together run both and print both")
    floor.add_argument("--baseline", action="store_true", help="one message per handler call")
    floor.add_argument("--baseline-batch", action="store_true",
                       help="a batch subscriber: one INSERT and one commit per batch")
    floor.add_argument("--baseline-max-records", type=int, default=None,
                       help="most messages per batch with --baseline-batch "
                            "(default SHOPIFY_PRIMA_CONSUMER_BATCH_SIZE, else 500)")
    floor.add_argument("--baseline-workers", type=int, default=None,
                       help="consumers in the group for --baseline "
                            "(default SHOPIFY_PRIMA_CONSUMER_WORKERS, else 3: one per partition)")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.concurrency < 1:
        parser.error("--orders and --concurrency must be at least 1")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be above 0")
    if args.baseline or args.baseline_batch:
        if args.rate is not None:
            parser.error("--rate does not apply to --baseline: the floor reads a topic filled beforehand")
        if any(v is not None and v < 1 for v in (args.baseline_max_records, args.baseline_workers)):
            parser.error("--baseline-max-records and --baseline-workers must be at least 1")
        from benchmarks import baseline  # here: it imports this module's helpers
        return asyncio.run(baseline.run(args))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
