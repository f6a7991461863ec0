"""Talking to the compose stack's HTTP surfaces on 127.0.0.1 as a user does: signed Shopify
webhooks to the ingest, the Prima and Shopify sandboxes, the ops API (tests/compose)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from decimal import Decimal

import httpx

from contracts.shopify.orders import ShopifyOrder
from sandboxes.shopify.orders import random_paid_order
from sandboxes.shopify.webhooks import send_webhook
from tests.compose.stack import ComposeStack

SKUS = ["TEE-BLK-M", "TEE-BLK-L", "MUG-STONE"]  # the Prima sandbox's default item master
LOC = "gid://shopify/Location/1"  # WH-MAIN in deploy/local/stack.env, the compose services' env_file
BUFFER = {"default": 2, "MUG-": 1}  # SHOPIFY_PRIMA_INVENTORY_BUFFER of deploy/local/stack.env


def new_order_id() -> int:
    return time.time_ns() // 1000 + random.randint(0, 999)


def new_skus(*suffixes: str) -> list[str]:
    """SKUs no other test uses; a suffix starting with MUG- gets the mugs' buffer."""
    prefix = uuid.uuid4().hex[:8].upper()
    return [f"MUG-{prefix}" if s == "MUG" else f"COMPOSE-{prefix}-{s}" for s in suffixes]


def desired(sku: str, prima_available: int) -> int:
    """What Shopify should show: Prima's available quantity less the buffer, never below 0."""
    buffer = BUFFER["MUG-"] if sku.startswith("MUG-") else BUFFER["default"]
    return max(prima_available - buffer, 0)


class Api:
    def __init__(self, compose: ComposeStack, http: httpx.AsyncClient) -> None:
        self.c = compose
        self.http = http

    # ------------------------------------------------------------------ orders

    async def webhook(self, topic: str, body: dict, secret: str | None = None) -> httpx.Response:
        return await send_webhook(self.http, self.c.webhook_url, topic, body, secret or self.c.webhook_secret)

    async def delivered(self, topic: str, body: dict, attempts: int = 10) -> httpx.Response:
        """One delivery as Shopify makes it: a 5xx answer (the ingest's 503 with Retry-After while
        Kafka is slow to acknowledge, on a loaded machine) is sent again with the same webhook id,
        up to `attempts` times; anything else is the answer."""
        webhook_id = str(uuid.uuid4())
        for _ in range(attempts - 1):
            response = await send_webhook(self.http, self.c.webhook_url, topic, body, self.c.webhook_secret,
                                          webhook_id=webhook_id)
            if response.status_code < 500:
                return response
            await asyncio.sleep(min(float(response.headers.get("retry-after") or 1), 5.0))
        return await send_webhook(self.http, self.c.webhook_url, topic, body, self.c.webhook_secret,
                                  webhook_id=webhook_id)

    async def paid_order(self, order_id: int) -> dict:
        body = random_paid_order(order_id, SKUS, random.Random(order_id))
        response = await self.delivered("orders/paid", body)
        assert response.status_code == 200, response.text
        return body

    async def paid_orders(self, count: int) -> dict[int, dict]:
        return {order_id: await self.paid_order(order_id) for order_id in (new_order_id() for _ in range(count))}

    async def order(self, order_id: int) -> dict | None:
        r = await self.http.get(f"{self.c.ops}/orders/{order_id}", headers=self.c.ops_headers)
        return r.json() if r.status_code == 200 else None

    async def wait_for_state(self, order_id: int, states: set[str], timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await self.order(order_id)
            if last and last["state"] in states:
                return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"order {order_id} not in {states} after {timeout}s: {last}")

    async def sales_orders(self, order_id: int) -> list[dict]:
        r = await self.http.get(f"{self.c.prima}/v1/sales-orders", params={"external_reference": str(order_id)},
                                headers=self.c.prima_headers)
        r.raise_for_status()
        return r.json()["sales_orders"]

    async def wait_for_items(self, skus: list[str], timeout: float = 90) -> None:
        """Until the item master (what the order decider maps SKUs with) has them all."""
        deadline = time.monotonic() + timeout
        for sku in skus:
            while (await self.http.get(f"{self.c.ops}/items/{sku}", headers=self.c.ops_headers)).status_code != 200:
                assert time.monotonic() < deadline, f"SKU {sku} not in the item master after {timeout}s"
                await asyncio.sleep(0.2)

    async def one_sales_order_each(self, bodies: dict[int, dict], timeout: float = 90) -> None:
        """Every order reaches Prima as exactly one sales order, of the Shopify order's total."""
        for order_id, body in bodies.items():
            row = await self.wait_for_state(order_id, {"in_prima"}, timeout)
            sales_orders = await self.sales_orders(order_id)
            assert len(sales_orders) == 1, f"order {order_id}: {len(sales_orders)} sales orders"
            assert row["prima_sales_order_number"] == sales_orders[0]["sales_order_number"]
            assert Decimal(sales_orders[0]["totals"]["total"]) == ShopifyOrder.from_webhook(body).total_price.amount
        await asyncio.sleep(1)  # a duplicate command wrongly sent would have arrived by now
        for order_id in bodies:
            assert len(await self.sales_orders(order_id)) == 1, f"order {order_id} sent twice"

    # ------------------------------------------------------------------ inventory

    async def inventory_health(self, sku: str) -> dict | None:
        r = await self.http.get(f"{self.c.ops}/inventory/{sku}", headers=self.c.ops_headers)
        return r.json() if r.status_code == 200 else None

    async def shopify_level(self, sku: str) -> int | None:
        r = await self.http.get(f"{self.c.shopify}/_sandbox/inventory", params={"sku": sku})
        r.raise_for_status()
        rows = r.json()["levels"] if isinstance(r.json(), dict) else r.json()
        return next((row["available"] for row in rows if row["location_id"] == LOC), None)

    async def prima_stock(self, levels: dict[str, int]) -> None:
        """Stock changes in Prima (the sandbox's PUT /_sandbox/stock), warehouse WH-MAIN."""
        r = await self.http.put(f"{self.c.prima}/_sandbox/stock", json={"stock": [
            {"sku": sku, "warehouse": "WH-MAIN", "available": available} for sku, available in levels.items()]})
        assert r.status_code == 200, r.text

    async def sold_in_shopify(self, levels: dict[str, int]) -> None:
        """Given Prima items with these levels and Shopify variants at 0, after a full comparison:
        each SKU's level in Shopify is Prima's less the buffer."""
        r = await self.http.post(f"{self.c.shopify}/_sandbox/locations", json={"locations": [
            {"id": LOC, "name": "Main warehouse"}, {"id": "gid://shopify/Location/2", "name": "North"}]})
        assert r.status_code in (200, 201, 409), r.text
        r = await self.http.put(f"{self.c.prima}/_sandbox/items", json={"items": [
            {"item_id": f"ITM-{sku}", "sku": sku, "description": sku, "item_type": "stock"} for sku in levels]})
        assert r.status_code == 200, r.text
        r = await self.http.post(f"{self.c.shopify}/_sandbox/catalog", json={"variants": [
            {"sku": sku, "levels": {LOC: 0}} for sku in levels]})
        assert r.status_code in (200, 201), r.text
        await self.prima_stock(levels)
        for sku, available in levels.items():  # the stock decider has Prima's level
            deadline = time.monotonic() + 90
            while not any(row["prima_available"] == available
                          for row in ((await self.inventory_health(sku)) or {}).get("locations", [])):
                assert time.monotonic() < deadline, f"{sku}: Prima's level never reached the inventory read model"
                await asyncio.sleep(0.2)
        await self.resync()  # the catalogue reader finds the variants: the pushes follow
        await self.wait_levels({sku: desired(sku, n) for sku, n in levels.items()})

    async def resync(self, timeout: float = 120) -> None:
        """A full comparison (the catalogue reader's bulk read of Shopify), until published."""
        r = await self.http.post(f"{self.c.ops}/inventory/resync", headers=self.c.ops_headers)
        assert r.status_code in (200, 201, 202), r.text
        run_id = r.json()["run_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = await self.http.get(f"{self.c.ops}/inventory/resync/{run_id}", headers=self.c.ops_headers)
            if response.status_code == 200:  # 404 until the catalogue reader records it
                sync_run = response.json().get("run", response.json())
                assert sync_run["status"] != "failed", sync_run
                if sync_run["status"] == "published":
                    return
            await asyncio.sleep(0.2)
        raise AssertionError(f"sync run {run_id} not published after {timeout}s")

    async def wait_levels(self, expected: dict[str, int], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        levels: dict[str, int | None] = {}
        while time.monotonic() < deadline:
            levels = {sku: await self.shopify_level(sku) for sku in expected}
            if levels == expected:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"Shopify shows {levels}, expected {expected}")

    # ------------------------------------------------------------------ faults of the sandboxes

    async def prima_faults(self, **faults: object) -> None:
        (await self.http.post(f"{self.c.prima}/_sandbox/faults", json=faults)).raise_for_status()

    async def shopify_faults(self, **faults: object) -> None:
        (await self.http.post(f"{self.c.shopify}/_sandbox/faults", json=faults)).raise_for_status()

    async def clear_faults(self) -> None:
        (await self.http.delete(f"{self.c.prima}/_sandbox/faults")).raise_for_status()
        (await self.http.delete(f"{self.c.shopify}/_sandbox/faults")).raise_for_status()
