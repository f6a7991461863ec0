"""The Shopify catalogue reader: full comparisons of Shopify's inventory against Prima's.

A sync run reads every variant with its SKU, product status, inventory item and "available" per
location through one bulk operation (CatalogInventoryBulk.graphql: bulk reads are not charged
against the GraphQL throttle beyond starting and polling them), and publishes one
ShopifyVariantObserved fact per variant to `shopify.inventory.v1`. The StockItem aggregates
compare what Shopify shows with what it should show and push the difference (drift repaired);
the CatalogItem aggregates apply the publishing guard.

Runs come from the table inventory.sync_runs (the reader's own): an operator's request
(`shopify-prima inventory resync`, POST /inventory/resync: a RequestFullComparison command on the
operations topic, which the reader records as a requested run) or the schedule (every
inventory_full_sync_interval_seconds, and once at start when no run was ever made). A run is
marked published only after Kafka acknowledged every fact. The read's time is the moment the bulk operation was requested: a push
confirmed after that is newer than anything the read can have seen.

One reader runs at a time (an advisory lock). So a run still 'reading' when a reader starts was
left by one that died midway (kill -9, a crash, PostgreSQL gone): at start the reader marks it
failed ("interrupted (the catalogue reader restarted)") and, when an operator asked for it,
requests a new run, so that `inventory resync` never waits on a run nobody is reading.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from contracts.platform import RequestFullComparison
from contracts.prima.inventory import sku_key
from contracts.shopify.inventory import ShopifyLevel, ShopifyVariantObserved
from contracts.shopify_admin import document
from contracts.topics import SHOPIFY_INVENTORY
from services.platform.kafka import (
    Consumer,
    Delivery,
    Outgoing,
    make_broker,
    publish_all,
)
from services.platform.metrics import CATALOG_LEVELS_READ, CATALOG_READS
from services.platform.runner import Worker, run_worker
from services.platform.settings import Settings

if TYPE_CHECKING:
    from services.shopify.admin import ShopifyAdmin

log = logging.getLogger("shopify_prima.catalog_reader")
GROUP = "catalog-reader"
INTERRUPTED = "interrupted (the catalogue reader restarted)"


async def request_run(conn: asyncpg.Connection | asyncpg.Pool, trigger: str, run_id: UUID | None = None) -> UUID:
    """Record a requested run (a repeated request for the same run id is recorded once)."""
    run_id = run_id or uuid4()
    await conn.execute(
        "INSERT INTO inventory.sync_runs (run_id, trigger, status, requested_at) VALUES ($1, $2, 'requested', now()) "
        "ON CONFLICT (run_id) DO NOTHING", run_id, trigger)
    return run_id


class BulkReadFailed(RuntimeError):
    pass


async def bulk_catalogue(admin: ShopifyAdmin, http: httpx.AsyncClient, poll_seconds: float = 0.5,
                         timeout_seconds: float = 3600) -> AsyncIterator[dict[str, Any]]:
    """Run the CatalogInventoryBulk query as a bulk operation and yield its JSONL lines."""
    data = await admin.execute("BulkOperationRunQuery", {"query": document("CatalogInventoryBulk")})
    payload = data["bulkOperationRunQuery"]
    if payload["userErrors"]:
        raise BulkReadFailed(f"bulk operation refused: {payload['userErrors']}")
    operation_id = payload["bulkOperation"]["id"]
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while True:
        node = (await admin.execute("BulkOperation", {"id": operation_id}))["node"]
        if node["status"] == "COMPLETED":
            break
        if node["status"] in ("FAILED", "CANCELED", "EXPIRED"):
            raise BulkReadFailed(f"bulk operation {operation_id} {node['status']}: {node.get('errorCode')}")
        if asyncio.get_running_loop().time() > deadline:
            raise BulkReadFailed(f"bulk operation {operation_id} still {node['status']} after {timeout_seconds}s")
        await asyncio.sleep(poll_seconds)
    if not node.get("url"):
        return  # an empty shop: Shopify gives no file
    async with http.stream("GET", node["url"]) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.strip():
                yield json.loads(line)


def variants_from_lines(lines: list[dict[str, Any]], observed_at: datetime, run_id: UUID | None
                        ) -> tuple[list[ShopifyVariantObserved], int]:
    """Variant lines and their inventory-level lines (linked by __parentId) -> one fact per
    variant that has a SKU. Returns the facts and how many variants had no SKU."""
    variants: dict[str, dict[str, Any]] = {}
    by_item: dict[str, str] = {}
    levels: dict[str, list[ShopifyLevel]] = {}
    for line in lines:
        if "__parentId" not in line:
            variants[line["id"]] = line
            item = line.get("inventoryItem") or {}
            if item.get("id"):
                by_item[item["id"]] = line["id"]
            continue
        parent = line["__parentId"]
        variant_id = parent if parent in variants else by_item.get(parent)
        if variant_id is None:
            continue
        available = next((q["quantity"] for q in line.get("quantities", ()) if q["name"] == "available"), None)
        if available is not None:
            levels.setdefault(variant_id, []).append(
                ShopifyLevel(location_id=line["location"]["id"], available=available))
    facts, without_sku = [], 0
    for variant_id, line in variants.items():
        if not line.get("sku") or not line.get("inventoryItem"):
            without_sku += 1
            continue
        facts.append(ShopifyVariantObserved(
            sku=line["sku"], variant_id=variant_id, product_id=line["product"]["id"],
            product_status=line["product"]["status"], inventory_item_id=line["inventoryItem"]["id"],
            levels=tuple(levels.get(variant_id, ())), observed_at=observed_at, sync_run_id=run_id,
        ))
    return facts, without_sku


async def missing_locations(admin: ShopifyAdmin, mapped: list[str]) -> list[str]:
    """Mapped locations that Shopify does not have (or has deactivated)."""
    active, after = set(), None
    while True:
        page = (await admin.execute("Locations", {"first": 250, "after": after}))["locations"]
        active |= {node["id"] for node in page["nodes"] if node["isActive"]}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    return sorted(set(mapped) - active)


class CatalogReader:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, admin: ShopifyAdmin,
                 publish: Any, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.pool = pool
        self.admin = admin
        self.publish = publish
        self.http = http

    async def on_command(self, deliveries: list[Delivery[Any]]) -> None:
        """RequestFullComparison (the operator's resync): recorded as a requested run."""
        for delivery in deliveries:
            command: RequestFullComparison = delivery.message
            await request_run(self.pool, f"operator:{command.requested_by}"[:200], command.run_id)

    async def recover_interrupted(self) -> list[UUID]:
        """Runs left 'reading' (or requested and already started) by a reader that died: failed,
        and an operator's asked for again. Called holding the reader's lock, so no live reader
        owns them. Returns the runs requested again."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """UPDATE inventory.sync_runs SET status = 'failed', finished_at = now(), error = $1
                   WHERE status = 'reading' OR (status = 'requested' AND started_at IS NOT NULL)
                   RETURNING run_id, trigger""", INTERRUPTED)
            again = []
            for row in sorted(rows, key=lambda r: str(r["run_id"])):
                if row["trigger"].startswith("operator:"):
                    again.append(await request_run(conn, row["trigger"]))
        for row in rows:
            log.warning("sync run %s (%s) was interrupted by a restart: marked failed%s", row["run_id"],
                        row["trigger"], "; requested again" if row["trigger"].startswith("operator:") else "")
        return again

    async def next_run(self) -> UUID | None:
        """A requested run, or a scheduled one when it is due."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT run_id FROM inventory.sync_runs WHERE status = 'requested' "
                "ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED")
            if row is not None:
                return row["run_id"]
            interval = self.settings.inventory_full_sync_interval_seconds
            if interval <= 0:
                return None
            last = await conn.fetchval("SELECT max(requested_at) FROM inventory.sync_runs")
            if last is None or datetime.now(UTC) - last >= timedelta(seconds=interval):
                return await request_run(conn, "schedule")
        return None

    async def run(self, run_id: UUID) -> int:
        """One full comparison: returns the number of levels read (and published)."""
        observed_at = datetime.now(UTC)
        await self.pool.execute(
            "UPDATE inventory.sync_runs SET status = 'reading', started_at = $2 WHERE run_id = $1", run_id, observed_at)
        try:
            problems = []
            missing = await missing_locations(self.admin, list(self.settings.inventory_location_map.values()))
            if missing:
                problems.append(f"mapped location(s) not active in Shopify: {', '.join(missing)}")
                log.error("inventory location map names %s, which Shopify does not have", missing)
            lines = [line async for line in bulk_catalogue(self.admin, self.http)]
            facts, without_sku = variants_from_lines(lines, observed_at, run_id)
            if without_sku:
                problems.append(f"{without_sku} variant(s) without a SKU")
            # every fact acknowledged before the run is published
            await self.publish([Outgoing(SHOPIFY_INVENTORY.name, sku_key(fact.sku), fact) for fact in facts])
            levels = sum(len(f.levels) for f in facts)
            await self.pool.execute(
                "UPDATE inventory.sync_runs SET status = 'published', finished_at = now(), variants = $2, "
                "levels = $3, error = $4 WHERE run_id = $1",
                run_id, len(facts), levels, "; ".join(problems) or None)
            CATALOG_READS.labels(outcome="published").inc()
            CATALOG_LEVELS_READ.inc(levels)
            log.info("sync run %s: %d variants, %d levels published", run_id, len(facts), levels)
            return levels
        except Exception as exc:
            log.exception("sync run %s failed", run_id)
            await self.pool.execute(
                "UPDATE inventory.sync_runs SET status = 'failed', finished_at = now(), error = $2 WHERE run_id = $1",
                run_id, f"{type(exc).__name__}: {exc}"[:2000])
            CATALOG_READS.labels(outcome="failed").inc()
            return 0

    async def serve(self, worker: Worker, poll_seconds: float = 1.0) -> None:
        async with worker.singleton(self.pool, "catalog-reader") as mine:
            if not mine:
                return
            await self.recover_interrupted()
            while not worker.stop.is_set():
                run_id = await self.next_run()
                if run_id is not None:
                    await self.run(run_id)
                    continue
                await worker.sleep(poll_seconds)


async def main(worker: Worker) -> None:
    from services.shopify.admin import ShopifyAdmin

    settings = worker.settings
    broker = make_broker(settings, GROUP)
    http = httpx.AsyncClient(timeout=settings.shopify_timeout_seconds)
    admin = ShopifyAdmin(settings)
    try:
        async with worker.database(max_size=3) as pool:
            reader = CatalogReader(settings, pool, admin, lambda out: publish_all(broker, out), http)
            # operator commands only: a new group starts at the end (an old request is not run again)
            Consumer(broker, settings, group=GROUP, topics=[], accepts=(RequestFullComparison,),
                     handler=reader.on_command, start_from="latest")
            async with worker.broker(broker):
                await reader.serve(worker)
    finally:
        await admin.aclose()
        await http.aclose()


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.catalog_reader_metrics_port)
