"""Loading aggregates from the event store, with and without snapshots (issue 8).

    python -m benchmarks.replay [--events 10000] [--batch 200] [--batch-events 300] [--repeat 5] [--keep]

On the stack's PostgreSQL (deploy/local/stack.env), in a throwaway schema of its own (dropped at
the end unless --keep; the running relays read only the stack's event-store schema). It writes,
through the inventory application as the stock decider does (snapshots on, a snapshot every 100
events):
- one StockItem with about `--events` events (a SKU sold in Shopify whose Prima stock changes
  again and again: its level, its desired level and a push per change);
- `--batch` StockItems with about `--batch-events` events each.
Then it loads the one StockItem (load_many of one id, as a decider's batch does) and the batch
of `--batch` StockItems (load_many of them all), each `--repeat` times after one warm-up load:
with snapshots (the application as the services run it) and without (the same application with
no snapshot store: every event read, as before issue 8). Printed per case: the median wall time,
the peak of Python memory allocated during one load (tracemalloc, in a separate load so that
tracing does not slow the timed ones), the events read, the bytes of stored state read, and the
queries.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import psycopg
from rich.console import Console
from rich.table import Table

from benchmarks.orders import machine
from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from domain.inventory.domainmodel import StockItem
from domain.inventory.values import LevelSeen, StockLevelReported, VariantSeen
from services.platform.settings import Settings, use_env_file

STACK_ENV = Path(__file__).resolve().parents[1] / "deploy" / "local" / "stack.env"
LOC = "gid://shopify/Location/1"
POLICY = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHANGES_PER_BATCH = 34  # about 100 events per save for one SKU: one snapshot per save, as in steady traffic
console = Console(width=140)


class WithoutSnapshots(InventoryApplication):
    """The same application and tables, with no snapshot store: every load reads every event."""

    name = "inventory"
    snapshotting_intervals: ClassVar[dict[type, int]] = {}


def variant(sku: str, i: int) -> VariantSeen:
    return VariantSeen(sku=sku, variant_id=f"gid://shopify/ProductVariant/{i}", product_id=f"gid://shopify/Product/{i}",
                       product_status="ACTIVE", inventory_item_id=f"gid://shopify/InventoryItem/{i}",
                       levels=(LevelSeen(LOC, 0),), observed_at=T0, sync_run_id=uuid.uuid4())


def change(sku: str, n: int) -> StockLevelReported:
    return StockLevelReported(sku=sku, warehouse="WH-MAIN", available=10 + n % 7, change_id=n)


def write(app: InventoryApplication, skus: list[str], events: int) -> None:
    """Stock changes until each SKU's StockItem has about `events` events (three a change)."""
    app.handle([variant(sku, i) for i, sku in enumerate(skus)], POLICY, T0)
    changes = max(1, events // 3)
    per_batch = CHANGES_PER_BATCH if len(skus) == 1 else 1
    for first in range(1, changes + 1, per_batch):
        numbers = range(first, min(changes, first + per_batch - 1) + 1)
        app.handle([change(sku, n) for n in numbers for sku in skus], POLICY, T0 + timedelta(seconds=first))


def stored(url: str, schema: str, ids: list[uuid.UUID]) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        count, size = conn.execute(
            f'SELECT count(*), coalesce(sum(octet_length(state)), 0) FROM "{schema}".inventory_events '
            "WHERE originator_id = ANY(%s)", [ids]).fetchone()
    return count, size


def snapshot_bytes(url: str, schema: str, ids: list[uuid.UUID]) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f'SELECT coalesce(sum(octet_length(state)), 0) FROM (SELECT DISTINCT ON (originator_id) state '
            f'FROM "{schema}".inventory_snapshots WHERE originator_id = ANY(%s) '
            "ORDER BY originator_id, originator_version DESC) s", [ids]).fetchone()[0]


def measure(app: InventoryApplication, ids: list[uuid.UUID], repeat: int) -> dict[str, float]:
    app.load_many(ids)  # warm-up: PostgreSQL's cache, the pool's connection
    times = []
    for _ in range(repeat):
        before = (app.load_stats.events, app.load_stats.queries)
        started = time.perf_counter()
        loaded = app.load_many(ids)
        times.append(time.perf_counter() - started)
        assert len(loaded) == len(ids)
    events, queries = app.load_stats.events - before[0], app.load_stats.queries - before[1]
    tracemalloc.start()
    app.load_many(ids)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": statistics.median(times), "peak_mib": peak / 2**20, "events": events, "queries": queries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="events of the one busy StockItem")
    parser.add_argument("--batch", type=int, default=200, help="StockItems in the batch")
    parser.add_argument("--batch-events", type=int, default=300, help="events of each StockItem of the batch")
    parser.add_argument("--repeat", type=int, default=5, help="timed loads per case (the median is printed)")
    parser.add_argument("--keep", action="store_true", help="keep the schema (to run again with --schema)")
    parser.add_argument("--schema", help="load from this schema, written by an earlier run with --keep")
    args = parser.parse_args()

    use_env_file(STACK_ENV)
    base = Settings()
    schema = args.schema or f"bench_replay_{uuid.uuid4().hex[:8]}"
    settings = Settings(event_store_schema=schema)
    url = settings.database_url
    one_sku = "REPLAY-ONE"
    batch_skus = [f"REPLAY-BATCH-{i:04d}" for i in range(args.batch)]
    console.print(f"[bold]Replay benchmark[/bold]: schema {schema} on {base.database_url.rsplit('@', 1)[-1]}")
    if not args.schema:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    app = InventoryApplication(env=settings.eventsourcing_env(create_tables=not args.schema))
    plain = WithoutSnapshots(env=settings.eventsourcing_env())
    try:
        if not args.schema:
            started = time.perf_counter()
            write(app, [one_sku], args.events)
            write(app, batch_skus, args.batch_events)
            console.print(f"written in {time.perf_counter() - started:.1f} s "
                          f"({app.snapshot_stats.taken} snapshots taken, {app.snapshot_stats.failed} failed)")
        cases = {"one StockItem": [StockItem.create_id(one_sku, LOC)],
                 f"batch of {args.batch} StockItems": [StockItem.create_id(s, LOC) for s in batch_skus]}
        table = Table(title="load_many, median of the timed loads", header_style="bold")
        for column in ("case", "events stored", "snapshots", "time", "peak memory", "events read", "bytes read",
                       "queries"):
            table.add_column(column, justify="left" if column in ("case", "snapshots") else "right")
        for case, ids in cases.items():
            count, size = stored(url, schema, ids)
            snap_size = snapshot_bytes(url, schema, ids)
            for label, application in (("without", plain), ("with", app)):
                figures = measure(application, ids, args.repeat)
                read = size if label == "without" else snap_size + round(size * figures["events"] / count)
                table.add_row(case, f"{count:,}", label, f"{figures['seconds'] * 1000:,.1f} ms",
                              f"{figures['peak_mib']:,.1f} MiB", f"{figures['events']:,}",
                              f"{read / 2**20:,.2f} MiB", str(figures["queries"]))
        console.print(table)
        console.print("bytes read: stored event states (with snapshots: the latest snapshot's and, pro rata, "
                      "the events after it); peak memory: Python allocations during one load (tracemalloc)")
        for key, value in machine().items():
            console.print(f"{key}: {value}")
    finally:
        app.close()
        plain.close()
        if not args.keep:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
