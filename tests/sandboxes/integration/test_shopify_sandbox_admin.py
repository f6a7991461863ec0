"""The Shopify sandbox's Admin GraphQL API, in process (httpx.ASGITransport): every document the
integration sends, run as written, with Shopify's cost, throttling, compare-and-set, idempotency,
bulk operations and the sandbox's fault switches."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from contracts.shopify_admin import document, operation_names
from sandboxes.shopify.app import create_app

pytestmark = pytest.mark.integration

TOKEN = "test-token"
VERSION = "2026-07"
MAIN = "gid://shopify/Location/1"
STORE = "gid://shopify/Location/2"


class Sandbox:
    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app, self.client = app, client
        self.catalog: dict[str, dict[str, str]] = {}  # SKU -> variant_id, product_id, inventory_item_id

    async def gql(self, name: str | None = None, variables: dict[str, Any] | None = None, *, query: str | None = None,
                  version: str = VERSION, token: str = TOKEN) -> httpx.Response:
        body = {"query": query if query is not None else document(name), "variables": variables or {}}
        return await self.client.post(f"/admin/api/{version}/graphql.json", json=body,
                                      headers={"X-Shopify-Access-Token": token})

    async def ok(self, name: str | None = None, variables: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        response = await self.gql(name, variables, **kw)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body

    async def seed(self, variants: list[dict[str, Any]]) -> list[dict[str, str]]:
        response = await self.client.post("/_sandbox/catalog", json={"variants": variants})
        assert response.status_code == 200, response.text
        return response.json()["variants"]

    async def inventory(self, sku: str) -> dict[str, dict[str, Any]]:
        rows = (await self.client.get("/_sandbox/inventory", params={"sku": sku})).json()
        return {row["location_id"]: row for row in rows}

    async def throttle_status(self) -> dict[str, Any]:
        return (await self.client.get("/_sandbox/plan")).json()["throttleStatus"]

    async def set_quantities(self, quantities: list[dict[str, Any]], key: str, *, reason: str = "correction",
                             name: str = "available", version: str = VERSION) -> dict[str, Any]:
        body = await self.ok("InventorySetQuantities", {
            "input": {"name": name, "reason": reason, "referenceDocumentUri": "gid://prima/StockSnapshot/42",
                      "quantities": quantities},
            "idempotencyKey": key}, version=version)
        return body["data"]["inventorySetQuantities"]


@pytest.fixture(scope="module")
async def sandbox():
    app = create_app("http://127.0.0.1:9/webhooks/shopify", "sandbox-secret", access_token=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shopify.test",
                                 timeout=120) as client:
        yield Sandbox(app, client)


@pytest.fixture
async def shop(sandbox: Sandbox) -> Sandbox:
    """A fresh shop: two locations, three variants (TEE-BLK-M at both, MUG-STONE at Main only, GIFT-WRAP
    not stocked anywhere), standard plan, full bucket, no faults."""
    await sandbox.app.state.shopify.bulk.wait()
    assert (await sandbox.client.post("/_sandbox/reset")).status_code == 200
    assert (await sandbox.client.post("/_sandbox/plan", json={"plan": "standard"})).status_code == 200
    created = (await sandbox.client.post("/_sandbox/locations", json={"locations": [
        {"id": MAIN, "name": "Main warehouse"}, {"name": "High street store"}]})).json()["locations"]
    assert [loc["id"] for loc in created] == [MAIN, STORE]
    sandbox.catalog = {v["sku"]: v for v in await sandbox.seed([
        {"sku": "TEE-BLK-M", "title": "Organic tee, black, M", "levels": {MAIN: 10, STORE: 3}},
        {"sku": "MUG-STONE", "title": "Stoneware mug", "levels": {MAIN: 4}},
        {"sku": "GIFT-WRAP", "title": "Gift wrapping"},
    ])}
    return sandbox


def item(shop: Sandbox, sku: str) -> str:
    return shop.catalog[sku]["inventory_item_id"]


def level_id(shop: Sandbox, sku: str, location: str) -> str:
    return f"gid://shopify/InventoryLevel/{location.rsplit('/', 1)[1]}?inventory_item_id={item(shop, sku).rsplit('/', 1)[1]}"


def qty(shop: Sandbox, sku: str, location: str, quantity: int, change_from: Any = ...) -> dict[str, Any]:
    q = {"inventoryItemId": item(shop, sku), "locationId": location, "quantity": quantity}
    if change_from is not ...:
        q["changeFromQuantity"] = change_from
    return q


# ---------------------------------------------------------------------- HTTP and auth


async def test_a_wrong_or_missing_token_is_refused_with_401(shop: Sandbox):
    # When a request carries a wrong token, and another none at all
    wrong = await shop.gql("Locations", {"first": 5}, token="not-the-token")
    missing = await shop.client.post(f"/admin/api/{VERSION}/graphql.json", json={"query": document("Locations")})
    # Then both are 401 with Shopify's body, and neither counted nor charged
    for response in (wrong, missing):
        assert response.status_code == 401
        assert response.json() == {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    assert (await shop.client.get("/_sandbox/stats")).json()["requests"] == 0


async def test_malformed_json_is_400_and_a_bad_version_404(shop: Sandbox):
    headers = {"X-Shopify-Access-Token": TOKEN, "Content-Type": "application/json"}
    bad_json = await shop.client.post(f"/admin/api/{VERSION}/graphql.json", content=b"{not json", headers=headers)
    no_query = await shop.client.post(f"/admin/api/{VERSION}/graphql.json", json={"variables": {}}, headers=headers)
    bad_version = await shop.gql("Locations", {"first": 5}, version="latest")
    assert bad_json.status_code == 400
    assert no_query.status_code == 400
    assert bad_version.status_code == 404


async def test_a_document_that_does_not_validate_is_http_200_with_errors(shop: Sandbox):
    # Given a query naming a field the schema does not have
    response = await shop.gql(query="query { locations(first: 5) { nodes { id warehouseCode } } }")
    # Then Shopify's way: HTTP 200, errors with message and locations, nothing charged
    assert response.status_code == 200
    body = response.json()
    assert "warehouseCode" in body["errors"][0]["message"]
    assert body["errors"][0]["locations"] == [{"line": 1, "column": 42}]
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000


# ---------------------------------------------------------------------- every operation, as written


async def test_every_operation_the_integration_sends_is_covered_here():
    assert set(operation_names()) == {"BulkOperation", "BulkOperationRunQuery", "CatalogInventoryBulk",
                                      "InventoryItemsBySku", "InventoryLevels", "InventorySetQuantities",
                                      "Locations", "ProductSetStatus",
                                      # the payout ingest's, run in test_shopify_sandbox_payouts.py
                                      "Payouts", "PayoutBalanceTransactions",
                                      # the order reconciler's, run against this sandbox in
                                      # test_shopify_sandbox_orders.py and tests/orders/integration/test_reconciler.py
                                      "ReconcileOrders", "ReconcileOrdersCount", "ReconcileOrderLines",
                                      "ReconcileOrderRefunds", "ReconcileOrderIds",
                                      # the fulfilment gateway's, run in test_shopify_sandbox_fulfilment.py
                                      "OrderFulfillmentOrders", "FulfillmentCreate", "FulfillmentTrackingInfoUpdate"}


async def test_locations_pages_with_first_and_after(shop: Sandbox):
    # Given an inactive third location
    await shop.client.post("/_sandbox/locations", json={"locations": [{"name": "Closed shop", "isActive": False}]})
    # When the locations are read one a page
    first = (await shop.ok("Locations", {"first": 1}))["data"]["locations"]
    second = (await shop.ok("Locations", {"first": 1, "after": first["pageInfo"]["endCursor"]}))["data"]["locations"]
    # Then page by page, active only (includeInactive defaults to false)
    assert first["nodes"] == [{"id": MAIN, "name": "Main warehouse", "isActive": True}]
    assert first["pageInfo"]["hasNextPage"] is True
    assert second["nodes"] == [{"id": STORE, "name": "High street store", "isActive": True}]
    assert second["pageInfo"]["hasNextPage"] is False
    everything = await shop.ok(query="{ locations(first: 10, includeInactive: true) { nodes { name isActive } } }")
    assert [n["isActive"] for n in everything["data"]["locations"]["nodes"]] == [True, True, False]


async def test_inventory_items_by_sku_returns_variant_product_and_levels(shop: Sandbox):
    body = await shop.ok("InventoryItemsBySku", {"query": "sku:TEE-BLK-M OR sku:MUG-STONE OR sku:NO-SUCH", "first": 10})
    nodes = body["data"]["inventoryItems"]["nodes"]
    assert [n["sku"] for n in nodes] == ["TEE-BLK-M", "MUG-STONE"]
    tee = nodes[0]
    assert tee["id"] == item(shop, "TEE-BLK-M")
    assert tee["variant"] == {"id": shop.catalog["TEE-BLK-M"]["variant_id"],
                              "product": {"id": shop.catalog["TEE-BLK-M"]["product_id"], "status": "ACTIVE"}}
    assert tee["inventoryLevels"]["nodes"] == [
        {"location": {"id": MAIN}, "quantities": [{"name": "available", "quantity": 10}]},
        {"location": {"id": STORE}, "quantities": [{"name": "available", "quantity": 3}]},
    ]


async def test_inventory_levels_by_id_uses_shopifys_level_id_format(shop: Sandbox):
    tee_main = level_id(shop, "TEE-BLK-M", MAIN)
    assert tee_main.startswith("gid://shopify/InventoryLevel/1?inventory_item_id=5")
    body = await shop.ok("InventoryLevels", {"ids": [tee_main, level_id(shop, "MUG-STONE", MAIN),
                                                     level_id(shop, "MUG-STONE", STORE)]})
    nodes = body["data"]["nodes"]
    assert nodes[0] == {"id": tee_main, "item": {"id": item(shop, "TEE-BLK-M")}, "location": {"id": MAIN},
                        "quantities": [{"name": "available", "quantity": 10}]}
    assert nodes[1]["quantities"] == [{"name": "available", "quantity": 4}]
    assert nodes[2] is None  # MUG-STONE is not stocked at the store


async def test_set_quantities_sets_available_and_records_the_adjustment(shop: Sandbox):
    # When the tee at Main is set from 10 to 7 (with compare-and-set) and the mug from 4 to 0
    result = await shop.set_quantities([qty(shop, "TEE-BLK-M", MAIN, 7, 10), qty(shop, "MUG-STONE", MAIN, 0, 4)], "k-1")
    # Then an adjustment group comes back, the levels moved, on_hand with them
    assert result["userErrors"] == []
    group = result["inventoryAdjustmentGroup"]
    assert group["id"].startswith("gid://shopify/InventoryAdjustmentGroup/")
    assert group["referenceDocumentUri"] == "gid://prima/StockSnapshot/42"
    tee = await shop.inventory("TEE-BLK-M")
    assert (tee[MAIN]["available"], tee[MAIN]["on_hand"], tee[STORE]["available"]) == (7, 7, 3)
    assert (await shop.inventory("MUG-STONE"))[MAIN]["available"] == 0
    adjustments = (await shop.client.get("/_sandbox/adjustments", params={"sku": "TEE-BLK-M"})).json()
    assert len(adjustments) == 1
    assert {k: adjustments[0][k] for k in ("location_id", "before", "after", "delta", "reason", "idempotency_key",
                                           "reference_document_uri")} == {
        "location_id": MAIN, "before": 10, "after": 7, "delta": -3, "reason": "correction", "idempotency_key": "k-1",
        "reference_document_uri": "gid://prima/StockSnapshot/42"}
    # And the group is a node with its changes (available and the on_hand that moves with it)
    node = await shop.ok(query="query($id: ID!) { node(id: $id) { ... on InventoryAdjustmentGroup { reason "
                               "changes(inventoryItemIds: [\"%s\"]) { name delta quantityAfterChange } } } }"
                               % item(shop, "TEE-BLK-M"), variables={"id": group["id"]})
    assert node["data"]["node"] == {"reason": "correction", "changes": [
        {"name": "available", "delta": -3, "quantityAfterChange": 7},
        {"name": "on_hand", "delta": -3, "quantityAfterChange": 7}]}


async def test_product_set_status_drafts_a_product(shop: Sandbox):
    product_id = shop.catalog["GIFT-WRAP"]["product_id"]
    body = await shop.ok("ProductSetStatus", {"product": {"id": product_id, "status": "DRAFT"}})
    assert body["data"]["productUpdate"] == {"product": {"id": product_id, "status": "DRAFT"}, "userErrors": []}
    assert (await shop.client.get("/_sandbox/products", params={"sku": "GIFT-WRAP"})).json()[0]["status"] == "DRAFT"
    unknown = await shop.ok("ProductSetStatus", {"product": {"id": "gid://shopify/Product/1", "status": "DRAFT"}})
    assert unknown["data"]["productUpdate"] == {"product": None,
                                                "userErrors": [{"field": ["id"], "message": "Product does not exist"}]}


async def test_bulk_catalogue_read_produces_shopifys_jsonl(shop: Sandbox):
    # When the catalogue bulk query is run and polled until it completes
    started = await shop.ok("BulkOperationRunQuery", {"query": document("CatalogInventoryBulk")})
    run = started["data"]["bulkOperationRunQuery"]
    assert run["userErrors"] == [] and run["bulkOperation"]["status"] == "CREATED"
    op_id = run["bulkOperation"]["id"]
    await shop.app.state.shopify.bulk.wait()
    polled = (await shop.ok("BulkOperation", {"id": op_id}))["data"]["node"]
    # Then it is COMPLETED with one line per variant and per level
    assert polled["status"] == "COMPLETED" and polled["errorCode"] is None
    assert polled["objectCount"] == "6"  # 3 variants + 3 levels; UnsignedInt64 is a string, as on Shopify
    assert polled["url"].startswith("http://shopify.test/_sandbox/bulk/")
    response = await shop.client.get(polled["url"].removeprefix("http://shopify.test"))
    lines = [json.loads(line) for line in response.text.splitlines()]
    tee = shop.catalog["TEE-BLK-M"]
    assert lines[0] == {"id": tee["variant_id"], "sku": "TEE-BLK-M",
                        "product": {"id": tee["product_id"], "status": "ACTIVE"},
                        "inventoryItem": {"id": tee["inventory_item_id"]}}  # nested connection not in the parent line
    assert lines[1] == {"id": level_id(shop, "TEE-BLK-M", MAIN), "location": {"id": MAIN},
                        "quantities": [{"name": "available", "quantity": 10}], "__parentId": tee["variant_id"]}
    assert lines[2]["__parentId"] == tee["variant_id"] and lines[2]["location"] == {"id": STORE}
    assert [line.get("sku") for line in lines if "__parentId" not in line] == ["TEE-BLK-M", "MUG-STONE", "GIFT-WRAP"]
    # And currentBulkOperation reports it too
    current = await shop.ok(query="{ currentBulkOperation { id status rootObjectCount objectCount } }")
    assert current["data"]["currentBulkOperation"] == {"id": op_id, "status": "COMPLETED", "rootObjectCount": "3",
                                                       "objectCount": "6"}


async def test_one_bulk_query_at_a_time_and_invalid_bulk_queries_are_refused(shop: Sandbox, monkeypatch):
    # Given a bulk run that yields to the event loop after every variant, so it is still running
    monkeypatch.setattr("sandboxes.shopify.bulk.YIELD_EVERY", 1)
    await shop.seed([{"sku": f"BULK-{i}", "levels": {MAIN: 1}} for i in range(2_000)])
    first = await shop.ok("BulkOperationRunQuery", {"query": document("CatalogInventoryBulk")})
    second = await shop.ok("BulkOperationRunQuery", {"query": document("CatalogInventoryBulk")})
    assert first["data"]["bulkOperationRunQuery"]["userErrors"] == []
    refused = second["data"]["bulkOperationRunQuery"]
    assert refused["bulkOperation"] is None
    assert refused["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    await shop.app.state.shopify.bulk.wait()
    for bad, why in [
        ("{ nodes(ids: [\"gid://shopify/Location/1\"]) { id } }", "top level"),
        ("{ productVariants { edges { node { sku inventoryItem { inventoryLevels { edges { node { location { id } } } } } } } } }",
         "'id'"),
        ("{ productVariants { edges { node { id warehouse } } } }", "Invalid bulk query"),
    ]:
        answer = (await shop.ok("BulkOperationRunQuery", {"query": bad}))["data"]["bulkOperationRunQuery"]
        assert answer["bulkOperation"] is None
        assert answer["userErrors"][0]["code"] == "INVALID" and why in answer["userErrors"][0]["message"], answer


# ---------------------------------------------------------------------- cost and throttling


async def test_requested_and_actual_cost_match_a_hand_computation(shop: Sandbox):
    # InventoryItemsBySku, first 10: 2 + 10 x (item 1 + variant 1 + product 1 + levels (2 + 10 x (level 1
    # + location 1 + quantities 1))) = 2 + 10 x 35 = 352 requested.
    started = time.monotonic()
    body = await shop.ok("InventoryItemsBySku", {"query": "sku:TEE-BLK-M OR sku:MUG-STONE", "first": 10})
    elapsed = time.monotonic() - started
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 352
    # Actual: 2 + TEE (1 + 2 + (2 + 2 levels x 3)) + MUG (1 + 2 + (2 + 1 x 3)) = 2 + 11 + 8 = 21.
    assert cost["actualQueryCost"] == 21
    # The bucket was charged 352 and refunded 331: 2000 - 21, plus what it refilled while the query
    # ran (restoreRate a second, at most the time the request took; more on a loaded machine).
    refill = cost["throttleStatus"]["restoreRate"] * elapsed
    assert 1979 <= cost["throttleStatus"]["currentlyAvailable"] <= min(2000, 1979 + refill + 1)
    # Locations first 5: 2 + 5 x 1 = 7 requested, 2 + 2 returned = 4 actual; a mutation costs 10.
    locations = (await shop.ok("Locations", {"first": 5}))["extensions"]["cost"]
    assert (locations["requestedQueryCost"], locations["actualQueryCost"]) == (7, 4)
    product = (await shop.ok("ProductSetStatus", {"product": {
        "id": shop.catalog["MUG-STONE"]["product_id"], "status": "ACTIVE"}}))["extensions"]["cost"]
    assert (product["requestedQueryCost"], product["actualQueryCost"]) == (10, 10)
    # nodes(ids:) is sized by the ids: 3 x (1 + item 1 + location 1 + quantities 1) = 12
    levels = await shop.ok("InventoryLevels", {"ids": [level_id(shop, "TEE-BLK-M", MAIN)] * 3})
    assert levels["extensions"]["cost"]["requestedQueryCost"] == 12


async def test_a_query_over_1000_points_is_refused_uncharged(shop: Sandbox):
    before = (await shop.throttle_status())["currentlyAvailable"]
    response = await shop.gql("InventoryItemsBySku", {"query": "sku:TEE-BLK-M", "first": 250})
    body = response.json()
    assert response.status_code == 200
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert body["errors"][0]["message"].startswith("Query cost is 8752, which exceeds the single query max cost limit (1000).")
    assert body["extensions"]["cost"]["requestedQueryCost"] == 8752
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    assert (await shop.throttle_status())["currentlyAvailable"] >= before


async def test_connection_arguments_are_checked_like_shopify(shop: Sandbox):
    no_first = (await shop.gql(query="{ locations { nodes { id } } }")).json()
    too_many = (await shop.gql("Locations", {"first": 251})).json()
    assert no_first["errors"][0]["message"] == "you must provide one of first or last"
    assert no_first["errors"][0]["path"] == ["locations"] and no_first["data"] is None
    assert "251" in too_many["errors"][0]["message"] and too_many["data"] is None
    ids = (await shop.gql("InventoryLevels", {"ids": [level_id(shop, "TEE-BLK-M", MAIN)] * 251})).json()
    assert ids["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"


async def test_the_bucket_empties_throttles_and_refills_at_the_plans_rate(shop: Sandbox):
    # Given 250 variants, so that a 250-variant page costs its full 252 points
    await shop.seed([{"sku": f"PAGE-{i:03d}"} for i in range(250)])
    page = "{ productVariants(first: 250) { nodes { id } } }"
    throttled = None
    for _ in range(20):
        body = (await shop.gql(query=page)).json()
        assert "throttleStatus" in body["extensions"]["cost"]
        if body.get("errors"):
            throttled = body
            break
        assert body["extensions"]["cost"]["actualQueryCost"] == 252
    # Then Shopify's THROTTLED answer came back, with nothing executed
    assert throttled is not None, "the standard bucket (2000 points) should run dry within 8 pages"
    assert throttled["errors"] == [{"message": "Throttled", "extensions": {
        "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}]
    assert "data" not in throttled
    cost = throttled["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 252 and cost["actualQueryCost"] is None
    assert cost["throttleStatus"]["currentlyAvailable"] < 252
    assert (cost["throttleStatus"]["maximumAvailable"], cost["throttleStatus"]["restoreRate"]) == (2000.0, 100.0)
    # And the bucket refills at 100 points a second
    t0 = time.monotonic()
    a0 = (await shop.throttle_status())["currentlyAvailable"]
    await asyncio.sleep(0.5)
    a1 = (await shop.throttle_status())["currentlyAvailable"]
    elapsed = time.monotonic() - t0
    assert 100 * 0.5 - 2 <= a1 - a0 <= 100 * elapsed + 2
    assert (await shop.client.get("/_sandbox/stats")).json()["throttled"] == 1


async def test_a_throttled_mutation_changes_nothing(shop: Sandbox):
    await shop.client.post("/_sandbox/faults", json={"drain_bucket": True})
    response = await shop.gql("InventorySetQuantities", {"input": {
        "name": "available", "reason": "correction", "quantities": [qty(shop, "TEE-BLK-M", MAIN, 1, 10)]},
        "idempotencyKey": "while-throttled"})
    assert response.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 10
    # The key was not used up: once the bucket has 10 points the same request applies.
    await asyncio.sleep(0.15)
    result = await shop.set_quantities([qty(shop, "TEE-BLK-M", MAIN, 1, 10)], "while-throttled")
    assert result["userErrors"] == []
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 1


async def test_a_plan_switch_changes_the_restore_rate_and_refills(shop: Sandbox):
    await shop.client.post("/_sandbox/faults", json={"drain_bucket": True})
    switched = (await shop.client.post("/_sandbox/plan", json={"plan": "plus"})).json()
    assert switched["plan"] == "plus"
    status = (await shop.ok("Locations", {"first": 5}))["extensions"]["cost"]["throttleStatus"]
    assert (status["restoreRate"], status["maximumAvailable"]) == (1000.0, 20000.0)
    assert status["currentlyAvailable"] >= 20000 - 4
    refused = await shop.client.post("/_sandbox/plan", json={"plan": "platinum"})
    assert refused.status_code == 422


# ---------------------------------------------------------------------- compare-and-set and validation


async def test_a_stale_change_from_quantity_fails_the_whole_mutation(shop: Sandbox):
    # Given a sale the integration has not seen: the tee at Main went from 10 to 9
    await shop.client.put("/_sandbox/inventory", json={"levels": [{"sku": "TEE-BLK-M", "location_id": MAIN,
                                                                   "available": 9, "committed": 1}]})
    # When the integration sets it (and the mug) still believing 10
    result = await shop.set_quantities([qty(shop, "MUG-STONE", MAIN, 2, 4), qty(shop, "TEE-BLK-M", MAIN, 6, 10)], "k-stale")
    # Then CHANGE_FROM_QUANTITY_STALE on the tee's changeFromQuantity, and nothing changed, the mug neither
    assert result["inventoryAdjustmentGroup"] is None
    assert result["userErrors"] == [{"field": ["input", "quantities", "1", "changeFromQuantity"],
                                     "message": "The changeFromQuantity value does not match persisted value.",
                                     "code": "CHANGE_FROM_QUANTITY_STALE"}]
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 9
    assert (await shop.inventory("MUG-STONE"))[MAIN]["available"] == 4
    assert (await shop.client.get("/_sandbox/stats")).json()["stale_errors"] == 1
    # And an explicit null opts out of the check
    forced = await shop.set_quantities([qty(shop, "TEE-BLK-M", MAIN, 6, None)], "k-forced")
    assert forced["userErrors"] == []
    row = (await shop.inventory("TEE-BLK-M"))[MAIN]
    assert (row["available"], row["committed"], row["on_hand"]) == (6, 1, 7)


async def test_change_from_quantity_is_required_from_2026_04(shop: Sandbox):
    # When a quantity omits changeFromQuantity at 2026-07
    result = await shop.set_quantities([qty(shop, "TEE-BLK-M", MAIN, 5)], "k-missing")
    assert result["inventoryAdjustmentGroup"] is None
    assert result["userErrors"][0]["field"] == ["input", "quantities", "0", "changeFromQuantity"]
    assert result["userErrors"][0]["code"] == "COMPARE_QUANTITY_REQUIRED"
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 10
    # But at 2026-01 it may be left out (ignoreCompareQuantity is still there)
    older = await shop.ok(query="""mutation($input: InventorySetQuantitiesInput!) {
        inventorySetQuantities(input: $input) { userErrors { field code } } }""", version="2026-01", variables={
        "input": {"name": "available", "reason": "correction", "ignoreCompareQuantity": True,
                  "quantities": [qty(shop, "TEE-BLK-M", MAIN, 5)]}})
    assert older["data"]["inventorySetQuantities"]["userErrors"] == []
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 5


async def test_the_idempotent_directive_is_required_from_2026_04(shop: Sandbox):
    response = await shop.gql(query="""mutation($input: InventorySetQuantitiesInput!) {
        inventorySetQuantities(input: $input) { userErrors { code } } }""", variables={
        "input": {"name": "available", "reason": "correction", "quantities": [qty(shop, "TEE-BLK-M", MAIN, 5, 10)]}})
    body = response.json()
    assert body["data"] == {"inventorySetQuantities": None}
    assert "@idempotent" in body["errors"][0]["message"]
    assert body["errors"][0]["path"] == ["inventorySetQuantities"]
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 10


async def test_a_repeated_idempotency_key_applies_once(shop: Sandbox):
    quantities = [qty(shop, "TEE-BLK-M", MAIN, 8, 10)]
    # When the same request is sent three times with one key
    answers = [await shop.set_quantities(quantities, "key-once") for _ in range(3)]
    # Then the same answer each time, one adjustment, one change
    assert answers[0]["userErrors"] == [] and answers[0] == answers[1] == answers[2]
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 8
    assert len((await shop.client.get("/_sandbox/adjustments")).json()) == 1
    stats = (await shop.client.get("/_sandbox/stats")).json()
    assert stats["idempotent_replays"] == 2 and stats["quantities_set"] == 1
    assert stats["mutation_calls"]["inventorySetQuantities"] == 3
    # And the same key with other arguments is refused, nothing applied
    other = await shop.set_quantities([qty(shop, "TEE-BLK-M", MAIN, 1, 8)], "key-once")
    assert other["inventoryAdjustmentGroup"] is None
    assert other["userErrors"] == [{"field": None, "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                                    "message": "The same idempotency key cannot be used with different operation parameters."}]
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 8


async def test_more_than_250_quantities_are_refused(shop: Sandbox):
    quantities = [qty(shop, "TEE-BLK-M", MAIN, 1, None)] * 251
    response = await shop.gql("InventorySetQuantities", {"input": {
        "name": "available", "reason": "correction", "quantities": quantities}, "idempotencyKey": "k-251"})
    body = response.json()
    assert body["data"] == {"inventorySetQuantities": None}
    assert body["errors"][0]["message"] == "The input array size of 251 is greater than the maximum allowed of 250."
    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 10


async def test_each_bad_quantity_gets_its_own_user_error_and_nothing_applies(shop: Sandbox):
    quantities = [
        qty(shop, "TEE-BLK-M", MAIN, 9, 10),                                        # fine on its own
        {"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": MAIN, "quantity": 1, "changeFromQuantity": None},
        {"inventoryItemId": item(shop, "MUG-STONE"), "locationId": "gid://shopify/Location/99", "quantity": 1,
         "changeFromQuantity": None},
        qty(shop, "GIFT-WRAP", MAIN, 1, None),                                      # not stocked
        qty(shop, "TEE-BLK-M", STORE, -1, 3),                                       # negative
        qty(shop, "TEE-BLK-M", MAIN, 9, 10),                                        # same item and location again
    ]
    result = await shop.set_quantities(quantities, "k-bad", reason="inventory_count")
    assert result["inventoryAdjustmentGroup"] is None
    assert [(e["code"], e["field"]) for e in result["userErrors"]] == [
        ("INVALID_REASON", ["input", "reason"]),
        ("INVALID_INVENTORY_ITEM", ["input", "quantities", "1", "inventoryItemId"]),
        ("INVALID_LOCATION", ["input", "quantities", "2", "locationId"]),
        ("ITEM_NOT_STOCKED_AT_LOCATION", ["input", "quantities", "3", "locationId"]),
        ("INVALID_QUANTITY_NEGATIVE", ["input", "quantities", "4", "quantity"]),
        ("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", ["input", "quantities", "5"]),
    ]
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 10
    assert (await shop.client.get("/_sandbox/adjustments")).json() == []


async def test_on_hand_can_be_set_and_keeps_committed(shop: Sandbox):
    await shop.client.put("/_sandbox/inventory", json={"levels": [{"sku": "TEE-BLK-M", "location_id": MAIN,
                                                                   "available": 8, "committed": 2}]})
    result = await shop.set_quantities([qty(shop, "TEE-BLK-M", MAIN, 12, 10)], "k-on-hand", name="on_hand")
    assert result["userErrors"] == []
    row = (await shop.inventory("TEE-BLK-M"))[MAIN]
    assert (row["on_hand"], row["committed"], row["available"]) == (12, 2, 10)


# ---------------------------------------------------------------------- nodes


async def test_node_resolves_every_type_the_integration_names(shop: Sandbox):
    tee = shop.catalog["TEE-BLK-M"]
    ids = [MAIN, tee["product_id"], tee["variant_id"], tee["inventory_item_id"], level_id(shop, "TEE-BLK-M", STORE),
           "gid://shopify/ProductVariant/1"]
    body = await shop.ok(query="""query($ids: [ID!]!) { nodes(ids: $ids) { __typename id
        ... on ProductVariant { sku } ... on InventoryItem { tracked inventoryLevel(locationId: "%s") { id } }
        ... on InventoryLevel { quantities(names: ["available", "on_hand", "committed"]) { name quantity } } } }""" % MAIN,
                         variables={"ids": ids})
    nodes = body["data"]["nodes"]
    assert [n and n["__typename"] for n in nodes] == ["Location", "Product", "ProductVariant", "InventoryItem",
                                                      "InventoryLevel", None]
    assert nodes[2]["sku"] == "TEE-BLK-M"
    assert nodes[3]["inventoryLevel"] == {"id": level_id(shop, "TEE-BLK-M", MAIN)}
    assert nodes[4]["quantities"] == [{"name": "available", "quantity": 3}, {"name": "on_hand", "quantity": 3},
                                      {"name": "committed", "quantity": 0}]
    one = await shop.ok(query="query($id: ID!) { productVariant(id: $id) { inventoryItem { variant { sku } } } }",
                        variables={"id": tee["variant_id"]})
    assert one["data"]["productVariant"]["inventoryItem"]["variant"]["sku"] == "TEE-BLK-M"


async def test_product_variants_are_found_by_sku(shop: Sandbox):
    body = await shop.ok(query="""{ productVariants(first: 10, query: "sku:MUG-STONE OR sku:GIFT-WRAP") {
        edges { cursor node { sku product { status } } } } }""")
    edges = body["data"]["productVariants"]["edges"]
    assert [e["node"]["sku"] for e in edges] == ["MUG-STONE", "GIFT-WRAP"]
    assert all(e["cursor"] for e in edges)


# ---------------------------------------------------------------------- faults


async def test_fail_next_answers_http_errors_and_runs_nothing(shop: Sandbox):
    await shop.client.post("/_sandbox/faults", json={"fail_next": 2, "fail_status": 502})
    statuses = [(await shop.gql("Locations", {"first": 5})).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]
    assert (await shop.client.get("/_sandbox/faults")).json()["counters"]["http_failures"] == 2


async def test_graphql_error_next_is_an_internal_error_with_http_200(shop: Sandbox):
    await shop.client.post("/_sandbox/faults", json={"graphql_error_next": 1})
    response = await shop.gql("InventorySetQuantities", {"input": {
        "name": "available", "reason": "correction", "quantities": [qty(shop, "TEE-BLK-M", MAIN, 1, 10)]},
        "idempotencyKey": "k-internal"})
    assert response.status_code == 200
    assert response.json()["errors"] == [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]
    assert "throttleStatus" in response.json()["extensions"]["cost"]
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 10
    assert (await shop.gql("Locations", {"first": 5})).json().get("errors") is None


async def test_a_throttle_storm_throttles_everything_for_a_while(shop: Sandbox):
    await shop.client.post("/_sandbox/faults", json={"throttle_storm_seconds": 0.3})
    during = (await shop.gql("Locations", {"first": 5})).json()
    assert during["errors"][0]["extensions"]["code"] == "THROTTLED"
    await asyncio.sleep(0.35)
    after = (await shop.gql("Locations", {"first": 5})).json()
    assert "errors" not in after


async def test_drain_bucket_empties_it_once(shop: Sandbox):
    await shop.client.post("/_sandbox/faults", json={"drain_bucket": True})
    assert (await shop.throttle_status())["currentlyAvailable"] <= 1
    assert (await shop.gql("Locations", {"first": 5})).json()["errors"][0]["extensions"]["code"] == "THROTTLED"


async def test_a_concurrent_change_makes_the_next_mutation_stale(shop: Sandbox):
    # Given another writer will sell one tee at Main just before the next mutation
    await shop.client.post("/_sandbox/faults", json={"concurrent_change_next": 1})
    first = await shop.set_quantities([qty(shop, "TEE-BLK-M", MAIN, 5, 10)], "k-race-1")
    # Then the mutation is stale and the sale stands (available 9, committed 1, on_hand 10)
    assert first["userErrors"][0]["code"] == "CHANGE_FROM_QUANTITY_STALE"
    row = (await shop.inventory("TEE-BLK-M"))[MAIN]
    assert (row["available"], row["committed"], row["on_hand"]) == (9, 1, 10)
    # And after re-reading, a new key with the fresh quantity applies
    fresh = (await shop.ok("InventoryLevels", {"ids": [level_id(shop, "TEE-BLK-M", MAIN)]}))["data"]["nodes"][0]
    seen = fresh["quantities"][0]["quantity"]
    second = await shop.set_quantities([qty(shop, "TEE-BLK-M", MAIN, 5, seen)], "k-race-2")
    assert second["userErrors"] == []
    assert (await shop.inventory("TEE-BLK-M"))[MAIN]["available"] == 5


async def test_latency_delays_each_request_and_faults_can_be_cleared(shop: Sandbox):
    await shop.client.post("/_sandbox/faults", json={"latency_ms": 60})
    started = time.monotonic()
    await shop.ok("Locations", {"first": 5})
    assert time.monotonic() - started >= 0.06
    cleared = (await shop.client.delete("/_sandbox/faults")).json()
    assert cleared["faults"]["latency_ms"] == 0
    refused = await shop.client.post("/_sandbox/faults", json={"fail_nxt": 1})
    assert refused.status_code == 422


# ---------------------------------------------------------------------- control endpoints and scale


async def test_reset_clears_the_shop(shop: Sandbox):
    await shop.set_quantities([qty(shop, "TEE-BLK-M", MAIN, 5, 10)], "k-before-reset")
    await shop.client.post("/_sandbox/reset")
    assert (await shop.client.get("/_sandbox/inventory")).json() == []
    assert (await shop.client.get("/_sandbox/adjustments")).json() == []
    assert (await shop.client.get("/_sandbox/stats")).json()["requests"] == 0
    assert (await shop.ok("Locations", {"first": 5}))["data"]["locations"]["nodes"] == []


async def test_webhook_sender_and_health_are_still_there(shop: Sandbox):
    assert (await shop.client.get("/health")).json() == {"status": "ok"}
    routes = {getattr(r, "path", None) for r in shop.app.routes}
    assert "/_sandbox/webhooks" in routes


async def test_seeding_and_bulk_reading_100000_variants(shop: Sandbox):
    # Given 100,000 variants with a level each
    variants = [{"sku": f"SKU-{i:06d}", "levels": {MAIN: i % 40}} for i in range(100_000)]
    started = time.perf_counter()
    created = await shop.seed(variants)
    seeded = time.perf_counter() - started
    assert len(created) == 100_000
    assert len({v["inventory_item_id"] for v in created}) == 100_000
    page = await shop.ok(query='{ productVariants(first: 1, query: "sku:SKU-099999") { nodes { sku inventoryItem { id } } } }')
    assert page["data"]["productVariants"]["nodes"] == [{"sku": "SKU-099999",
                                                         "inventoryItem": {"id": created[-1]["inventory_item_id"]}}]
    # When the catalogue is read in bulk
    started = time.perf_counter()
    op = (await shop.ok("BulkOperationRunQuery", {"query": document("CatalogInventoryBulk")}))["data"][
        "bulkOperationRunQuery"]["bulkOperation"]
    await shop.app.state.shopify.bulk.wait()
    polled = (await shop.ok("BulkOperation", {"id": op["id"]}))["data"]["node"]
    bulk = time.perf_counter() - started
    # Then every variant and level is a line (plus the fixture's 3 variants and 3 levels)
    assert polled["status"] == "COMPLETED"
    assert polled["objectCount"] == str(2 * 100_000 + 6)
    text = (await shop.client.get(polled["url"].removeprefix("http://shopify.test"))).text
    lines = text.splitlines()
    assert len(lines) == 200_006
    last = json.loads(lines[-1])
    assert last["__parentId"] == created[-1]["variant_id"] and last["quantities"] == [{"name": "available", "quantity": 39}]
    print(f"\nseeded 100,000 variants in {seeded:.2f} s; bulk read in {bulk:.2f} s")


async def test_a_250_quantity_mutation_is_fast_server_side(shop: Sandbox):
    created = await shop.seed([{"sku": f"FAST-{i:03d}", "levels": {MAIN: 5}} for i in range(250)])
    quantities = [{"inventoryItemId": v["inventory_item_id"], "locationId": MAIN, "quantity": 6, "changeFromQuantity": 5}
                  for v in created]
    response = await shop.gql("InventorySetQuantities", {"input": {
        "name": "available", "reason": "correction", "quantities": quantities}, "idempotencyKey": "k-fast"})
    assert response.json()["data"]["inventorySetQuantities"]["userErrors"] == []
    assert (await shop.client.get("/_sandbox/stats")).json()["quantities_set"] == 250
    print(f"\n250-quantity inventorySetQuantities: {response.headers['server-timing']}")
