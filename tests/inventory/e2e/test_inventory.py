"""End to end on the running stack, inventory (DESIGN.md flow 5):
Prima sandbox stock -> prima ingest -> Kafka -> StockItem aggregates -> outbox -> Shopify
gateway -> Shopify sandbox (Admin GraphQL, cost-based throttle), and back: the catalogue
reader's bulk read -> Kafka -> aggregates (drift repaired) -> inventory health read model.

The stack runs with deploy/local/stack.env: WH-MAIN -> gid://shopify/Location/1, a default
buffer of 2 units and 1 for MUG-* SKUs. Every test uses its own SKUs.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid

import asyncpg
import httpx
import pytest

pytestmark = [pytest.mark.e2e]
LOC = "gid://shopify/Location/1"
BUFFER = 2  # deploy/local/stack.env: the default buffer


def new_prefix() -> str:
    return f"E2E-{uuid.uuid4().hex[:8].upper()}"


class Inventory:
    def __init__(self, settings) -> None:
        self.ops = f"http://{settings.ops_api_host}:{settings.ops_api_port}"
        self.prima = settings.prima_base_url
        self.shopify = settings.shopify_admin_url
        self.prima_auth = {"Authorization": f"Bearer {settings.prima_api_key.get_secret_value()}"}
        self.http = httpx.AsyncClient(timeout=120)
        self.ops_headers = {"Authorization": f"Bearer {settings.ops_api_token.get_secret_value()}"}
        self.database_url = settings.database_url

    async def ensure_locations(self) -> None:
        r = await self.http.post(f"{self.shopify}/_sandbox/locations", json={"locations": [
            {"id": LOC, "name": "Main warehouse"}, {"id": "gid://shopify/Location/2", "name": "North"}]})
        assert r.status_code in (200, 201, 409), r.text

    async def shopify_variants(self, variants: list[dict]) -> list[dict]:
        r = await self.http.post(f"{self.shopify}/_sandbox/catalog", json={"variants": variants})
        assert r.status_code in (200, 201), r.text
        return r.json()["variants"] if isinstance(r.json(), dict) else r.json()

    async def shopify_level(self, sku: str, location: str = LOC) -> int | None:
        r = await self.http.get(f"{self.shopify}/_sandbox/inventory", params={"sku": sku})
        r.raise_for_status()
        rows = r.json()["levels"] if isinstance(r.json(), dict) else r.json()
        return next((row["available"] for row in rows if row["location_id"] == location), None)

    async def set_shopify_levels(self, levels: list[dict]) -> None:
        r = await self.http.put(f"{self.shopify}/_sandbox/inventory", json={"levels": levels})
        assert r.status_code == 200, r.text

    async def adjustments(self, sku: str) -> list[dict]:
        r = await self.http.get(f"{self.shopify}/_sandbox/adjustments", params={"sku": sku})
        r.raise_for_status()
        return r.json()["adjustments"] if isinstance(r.json(), dict) else r.json()

    async def shopify_stats(self) -> dict:
        return (await self.http.get(f"{self.shopify}/_sandbox/stats")).raise_for_status().json()

    async def prima_items(self, items: list[dict]) -> None:
        r = await self.http.put(f"{self.prima}/_sandbox/items", json={"items": items})
        assert r.status_code == 200, r.text

    async def prima_stock(self, rows: list[dict]) -> None:
        r = await self.http.put(f"{self.prima}/_sandbox/stock", json={"stock": rows})
        assert r.status_code == 200, r.text

    async def prima_reference(self, uri: str, sku: str) -> str:
        """A batch of several SKUs carries one URI naming the batch; the gateway's journal maps
        it to each command's Prima stock record."""
        if not uri.startswith("shopify-prima://inventory-batch/"):
            return uri
        conn = await asyncpg.connect(self.database_url)
        try:
            commands = await conn.fetchval(
                "SELECT commands FROM gateway.shopify_inventory_batches WHERE reference_document_uri = $1", uri)
        finally:
            await conn.close()
        assert commands is not None, f"batch {uri} is not in the gateway's journal"
        found = [c for c in json.loads(commands) if c["sku"] == sku]
        assert found, f"batch {uri} has no command for {sku}"
        return found[0]["reference_document_uri"]

    async def health(self, sku: str) -> dict | None:
        r = await self.http.get(f"{self.ops}/inventory/{sku}", headers=self.ops_headers)
        return r.json() if r.status_code == 200 else None

    async def resync(self, timeout: float = 120) -> dict:
        r = await self.http.post(f"{self.ops}/inventory/resync", headers=self.ops_headers)
        assert r.status_code in (200, 201, 202), r.text
        run_id = r.json()["run_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = await self.http.get(f"{self.ops}/inventory/resync/{run_id}", headers=self.ops_headers)
            if response.status_code == 404:  # not recorded by the catalogue reader yet
                await asyncio.sleep(0.2)
                continue
            run = response.json()
            status = run.get("run", run)["status"]
            if status in ("published", "failed"):
                assert status == "published", run
                return run.get("run", run)
            await asyncio.sleep(0.2)
        raise AssertionError(f"sync run {run_id} not published after {timeout}s")

    async def wait_level(self, sku: str, expected: int, timeout: float = 60, location: str = LOC) -> None:
        deadline = time.monotonic() + timeout
        level = None
        while time.monotonic() < deadline:
            level = await self.shopify_level(sku, location)
            if level == expected:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{sku} at {location}: Shopify shows {level}, expected {expected} "
                             f"(health: {await self.health(sku)})")

    async def wait_health(self, sku: str, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        found = None
        while time.monotonic() < deadline:
            found = await self.health(sku)
            if found and predicate(found):
                return found
            await asyncio.sleep(0.2)
        raise AssertionError(f"inventory health of {sku} never matched: {found}")


@pytest.fixture(scope="module", autouse=True)
def fresh_shop(stack):
    """The Shopify sandbox keeps its shop in memory: start this module with an empty one, so a
    full comparison reads only what these tests made (earlier runs' variants would be re-read)."""
    httpx.post(f"{stack.shopify_admin_url}/_sandbox/reset", timeout=30).raise_for_status()


@pytest.fixture
async def inv(stack):
    inventory = Inventory(stack)
    await inventory.ensure_locations()
    yield inventory
    await inventory.http.aclose()


def item(sku: str, **kw) -> dict:
    return {"item_id": f"ITM-{sku}", "sku": sku, "description": sku, "item_type": "stock", **kw}


async def sold_in_shopify(inv: Inventory, skus: list[str], prima_levels: dict[str, int]) -> None:
    """Given SKUs with Prima items and stock, and Shopify variants at 0, after one full read."""
    await inv.prima_items([item(s) for s in skus])
    await inv.shopify_variants([{"sku": s, "levels": {LOC: 0}} for s in skus])
    await inv.prima_stock([{"sku": s, "warehouse": "WH-MAIN", "available": prima_levels[s]} for s in skus])
    for sku in skus:
        expected = prima_levels[sku]
        await inv.wait_health(sku, lambda h, expected=expected: any(r["prima_available"] == expected
                                                                    for r in h["locations"]))
    await inv.resync()


async def test_a_prima_stock_change_reaches_shopify_as_available_minus_buffer(inv):
    sku = new_prefix() + "-TEE"
    await sold_in_shopify(inv, [sku], {sku: 10})
    await inv.wait_level(sku, 10 - BUFFER)

    await inv.prima_stock([{"sku": sku, "warehouse": "WH-MAIN", "available": 4}])
    await inv.wait_level(sku, 4 - BUFFER)
    health = await inv.wait_health(sku, lambda h: h["locations"][0]["state"] == "in_sync")
    row = health["locations"][0]
    assert (row["prima_available"], row["buffer"], row["desired"], row["shopify_level"], row["drift"]) == \
        (4, BUFFER, 2, 2, 0)
    adjustments = await inv.adjustments(sku)
    assert [a["after"] for a in adjustments][-2:] == [8, 2]
    for adjustment in adjustments:  # Shopify's history names the Prima stock record
        reference = await inv.prima_reference(adjustment["reference_document_uri"], sku)
        assert reference.startswith(f"prima://stock/WH-MAIN/{sku}?change=")

    await inv.prima_stock([{"sku": sku, "warehouse": "WH-MAIN", "available": -3}])  # oversold in Prima
    await inv.wait_level(sku, 0)


async def test_a_component_change_moves_its_bundles_level(inv):
    prefix = new_prefix()
    tee, mug, gift = f"{prefix}-TEE", f"{prefix}-MUG", f"{prefix}-GIFT"
    await inv.prima_items([item(tee), item(mug), {
        "item_id": f"ITM-{gift}", "sku": gift, "description": "Gift set", "item_type": "bundle",
        "components": [{"item_id": f"ITM-{tee}", "sku": tee, "quantity": 1},
                       {"item_id": f"ITM-{mug}", "sku": mug, "quantity": 2}]}])
    await inv.shopify_variants([{"sku": gift, "levels": {LOC: 0}}])
    await inv.prima_stock([{"sku": tee, "warehouse": "WH-MAIN", "available": 10},
                           {"sku": mug, "warehouse": "WH-MAIN", "available": 9}])
    await inv.wait_health(gift, lambda h: any(r["prima_available"] == 4 for r in h["locations"]))
    await inv.resync()
    await inv.wait_level(gift, 4 - BUFFER)  # min(10/1, floor(9/2)) = 4, minus the buffer

    await inv.prima_stock([{"sku": mug, "warehouse": "WH-MAIN", "available": 30}])
    await inv.wait_level(gift, 10 - BUFFER)  # now the tees limit it: 10
    await inv.prima_stock([{"sku": tee, "warehouse": "WH-MAIN", "available": 5}])
    await inv.wait_level(gift, 5 - BUFFER)


async def test_a_stale_compare_and_set_is_recovered_with_prima_as_the_truth(inv):
    sku = new_prefix() + "-TEE"
    await sold_in_shopify(inv, [sku], {sku: 10})
    await inv.wait_level(sku, 8)
    await inv.wait_health(sku, lambda h: h["locations"][0]["state"] == "in_sync")
    stale_before = (await inv.shopify_stats()).get("stale_errors", 0)

    await inv.set_shopify_levels([{"sku": sku, "location_id": LOC, "available": 7}])  # a sale in Shopify
    await inv.prima_stock([{"sku": sku, "warehouse": "WH-MAIN", "available": 20}])
    await inv.wait_level(sku, 18)  # the push said "from 8"; Shopify had 7; re-read and set again
    assert (await inv.shopify_stats())["stale_errors"] > stale_before
    health = await inv.wait_health(sku, lambda h: h["locations"][0]["state"] == "in_sync")
    assert health["locations"][0]["shopify_level"] == 18


async def test_a_drifted_level_in_shopify_is_found_and_repaired_by_a_full_comparison(inv):
    sku = new_prefix() + "-MUG"  # E2E-...: the default buffer (the MUG-* group needs the prefix)
    await sold_in_shopify(inv, [sku], {sku: 6})
    await inv.wait_level(sku, 4)
    await inv.set_shopify_levels([{"sku": sku, "location_id": LOC, "available": 50}])  # someone edited it

    await inv.resync()
    await inv.wait_level(sku, 4)
    health = await inv.wait_health(sku, lambda h: h["locations"][0]["state"] == "in_sync")
    assert health["locations"][0]["drift"] == 0


async def test_a_variant_without_an_active_prima_item_is_an_exception(inv):
    sku = new_prefix() + "-GHOST"
    await inv.shopify_variants([{"sku": sku, "levels": {LOC: 3}}])
    await inv.resync()
    deadline = time.monotonic() + 30
    found = []
    while time.monotonic() < deadline and not found:
        rows = (await inv.http.get(f"{inv.ops}/exceptions", params={"source": "inventory"}, headers=inv.ops_headers)).json()
        rows = rows["exceptions"] if isinstance(rows, dict) else rows
        found = [e for e in rows if e.get("sku") == sku]
        await asyncio.sleep(0.2)
    assert found and found[0]["kind"] == "variant_without_prima_item"


async def test_a_full_resync_of_10000_sku_locations_at_standard_rate_is_paced(inv):
    prefix = new_prefix()
    n = 10_000
    skus = [f"{prefix}-{i:05d}" for i in range(n)]
    await inv.http.post(f"{inv.shopify}/_sandbox/plan", json={"plan": "standard"})
    await inv.shopify_variants([{"sku": s, "levels": {LOC: 0}} for s in skus])
    await inv.prima_items([item(s) for s in skus])
    await inv.prima_stock([{"sku": s, "warehouse": "WH-MAIN", "available": 5 + i % 7} for i, s in enumerate(skus)])
    # Prima's levels reach every StockItem (none pushes: Shopify's variants are not read yet)
    deadline = time.monotonic() + 180
    while (await inv.http.get(f"{inv.ops}/inventory/summary", params={"sku": prefix}, headers=inv.ops_headers)).json()["states"][
            "not_in_shopify"] < n:
        assert time.monotonic() < deadline, "Prima's levels did not reach every StockItem"
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # let anything in flight from earlier tests finish
    await inv.http.post(f"{inv.shopify}/_sandbox/stats/reset")

    started = time.monotonic()
    await inv.resync(timeout=300)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        summary = (await inv.http.get(f"{inv.ops}/inventory/summary", params={"sku": prefix}, headers=inv.ops_headers)).json()
        levels = await inv.http.get(f"{inv.shopify}/_sandbox/inventory", params={"sku_prefix": prefix})
        if levels.status_code == 200:
            rows = levels.json()["levels"] if isinstance(levels.json(), dict) else levels.json()
            if len(rows) == n and all(r["available"] == 5 + int(r["sku"][-5:]) % 7 - BUFFER for r in rows):
                break
        await asyncio.sleep(1)
    else:
        raise AssertionError(f"not every level reached Shopify: {summary}")
    elapsed = time.monotonic() - started
    stats = await inv.shopify_stats()
    print(f"\nfull resync of {n} SKU-locations: {elapsed:.1f}s, stats {stats}")
    assert stats["throttled"] == 0
    assert stats["mutation_calls"]["inventorySetQuantities"] == math.ceil(n / 250)
