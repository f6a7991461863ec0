"""An in-memory Shopify Admin GraphQL for the fast tests (an httpx.MockTransport handler), with a
fake clock: inventory levels with compare-and-set, InventoryLevels reads, product statuses, and
scripted answers (throttles, 5xx, userErrors) served before anything else."""

from __future__ import annotations

import json

import httpx

from services.platform.settings import Settings
from services.shopify.admin import ShopifyAdmin


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def cost(available=1000.0, requested=10, actual=10, maximum=1000.0, rate=100.0):
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                     "throttleStatus": {"maximumAvailable": maximum, "currentlyAvailable": available,
                                        "restoreRate": rate}}}


class FakeShopify:
    """Levels in memory, inventorySetQuantities with compare-and-set, scripted answers first."""

    def __init__(self):
        self.levels: dict[tuple[str, str], int] = {}
        self.products: dict[str, str] = {}  # product GID -> status
        self.script: list[httpx.Response] = []
        self.requests: list[dict] = []
        self.keys: list[str] = []

    def calls(self, operation: str) -> list[dict]:
        """The variables of every request of this operation, in order."""
        return [r["variables"] for r in self.requests if r["operationName"] == operation]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if self.script:
            return self.script.pop(0)
        name, variables = body["operationName"], body["variables"]
        if name == "InventorySetQuantities":
            self.keys.append(variables["idempotencyKey"])
            errors = []
            quantities = variables["input"]["quantities"]
            for i, q in enumerate(quantities):
                pair = (q["inventoryItemId"], q["locationId"])
                if pair not in self.levels:
                    errors.append({"field": ["input", "quantities", str(i), "inventoryItemId"],
                                   "code": "INVALID_INVENTORY_ITEM", "message": "The item does not exist"})
                elif q["changeFromQuantity"] is not None and q["changeFromQuantity"] != self.levels[pair]:
                    errors.append({"field": ["input", "quantities", str(i), "changeFromQuantity"],
                                   "code": "CHANGE_FROM_QUANTITY_STALE", "message": "stale"})
            if not errors:
                for q in quantities:
                    self.levels[(q["inventoryItemId"], q["locationId"])] = q["quantity"]
            payload = {"inventoryAdjustmentGroup": None if errors else {"id": "gid://shopify/InventoryAdjustmentGroup/1",
                                                                        "referenceDocumentUri": "x"},
                       "userErrors": errors}
            return httpx.Response(200, json={"data": {"inventorySetQuantities": payload}, "extensions": cost()})
        if name == "InventoryLevels":
            nodes = []
            for level in variables["ids"]:
                location, item = level.split("/")[-1].split("?inventory_item_id=")
                pair = (f"gid://shopify/InventoryItem/{item}", f"gid://shopify/Location/{location}")
                nodes.append(None if pair not in self.levels else {
                    "id": level, "item": {"id": pair[0]}, "location": {"id": pair[1]},
                    "quantities": [{"name": "available", "quantity": self.levels[pair]}]})
            return httpx.Response(200, json={"data": {"nodes": nodes}, "extensions": cost()})
        if name == "ProductSetStatus":
            product = variables["product"]
            if product["id"] not in self.products:
                payload = {"product": None, "userErrors": [{"field": ["id"], "message": "Product does not exist"}]}
            else:
                self.products[product["id"]] = product["status"]
                payload = {"product": {"id": product["id"], "status": product["status"]}, "userErrors": []}
            return httpx.Response(200, json={"data": {"productUpdate": payload}, "extensions": cost()})
        return httpx.Response(200, json={"errors": [{"message": f"unknown {name}"}]})


def fake_admin(fake: FakeShopify, clock: FakeClock, **settings) -> ShopifyAdmin:
    """A ShopifyAdmin whose HTTP goes to `fake` and whose time is `clock`'s."""
    configured = Settings(**{"shopify_admin_url": "http://shopify.test", "shopify_max_attempts": 3, **settings})
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return ShopifyAdmin(configured, client, clock=clock, sleep=clock.sleep)
