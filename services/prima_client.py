"""HTTP client for Prima's API as assumed in contracts/prima-openapi.yaml."""

from __future__ import annotations

import time
from typing import Any

import httpx

from domain.orders.mapping import PrimaItem
from services.config import Settings


def prima_http_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.prima_base_url,
        headers={"Authorization": f"Bearer {settings.prima_api_key.get_secret_value()}"},
        timeout=httpx.Timeout(settings.prima_timeout_seconds),
    )


async def fetch_items(client: httpx.AsyncClient) -> dict[str, PrimaItem]:
    """The whole item master, page by page, by SKU."""
    items: dict[str, PrimaItem] = {}
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/items", params=params)
        response.raise_for_status()
        page = response.json()
        for item in page["items"]:
            items[item["sku"]] = PrimaItem(
                item_id=item["item_id"], sku=item["sku"], description=item.get("description", ""),
                active=bool(item.get("active", True)), item_type=item.get("item_type", "stock"),
            )
        cursor = page.get("next_cursor")
        if not cursor:
            return items


class ItemMasterCache:
    """Prima's item master, refreshed after a TTL or on demand when a SKU is not found."""

    def __init__(self, client: httpx.AsyncClient, ttl_seconds: float) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self.items: dict[str, PrimaItem] = {}
        self.loaded_at = 0.0

    async def get(self, skus: list[str] | None = None) -> dict[str, PrimaItem]:
        stale = time.monotonic() - self.loaded_at > self.ttl
        missing = any(s not in self.items or not self.items[s].active for s in (skus or ()))
        if stale or missing:
            self.items = await fetch_items(self.client)
            self.loaded_at = time.monotonic()
        return self.items
