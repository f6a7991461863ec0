"""The Shopify sandbox's fulfilment (sandboxes/shopify/fulfillments.py), served over HTTP: fulfillment
orders per order and location once the order is paid, fulfillmentCreate with Shopify's userErrors,
holds, fulfillmentTrackingInfoUpdate, the fulfillments/create webhook to the subscribed address,
and the cost of the integration's documents (contracts/shopify_admin/operations)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from contracts.shopify_admin import document
from sandboxes.shopify.app import create_app
from sandboxes.shopify.lifecycle import cancelled, edited
from sandboxes.shopify.orders import Line, order_body

pytestmark = pytest.mark.integration

TOKEN = "fulfilment-test-token"
SECRET = "fulfilment-secret"
MAIN, NORTH = "gid://shopify/Location/1", "gid://shopify/Location/2"
ORDER = 7001
ORDER_GID = f"gid://shopify/Order/{ORDER}"
HOLD = """mutation Hold($id: ID!, $reason: FulfillmentHoldReason!, $notes: String, $handle: String) {
  fulfillmentOrderHold(id: $id, fulfillmentHold: {reason: $reason, reasonNotes: $notes, handle: $handle}) {
    fulfillmentHold { id reason reasonNotes heldByRequestingApp }
    fulfillmentOrder { id status fulfillmentHolds { id reason } }
    userErrors { field message code }
  }
}"""
RELEASE = """mutation Release($id: ID!) {
  fulfillmentOrderReleaseHold(id: $id) { fulfillmentOrder { id status } userErrors { field message code } }
}"""
ONE_FULFILLMENT_ORDER = """query One($id: ID!) {
  fulfillmentOrder(id: $id) { id status orderId orderName lineItems(first: 10) { nodes { id remainingQuantity } } }
}"""


def paid_order(order_id: int = ORDER, financial_status: str = "paid") -> dict[str, Any]:
    """Two units of TEE (stocked at Main), three of MUG (stocked at North only)."""
    return order_body(order_id, [Line("TEE", "Tee", Decimal("20.00"), 2), Line("MUG", "Mug", Decimal("8.50"), 3)],
                      taxes_included=True, currency="GBP", financial_status=financial_status)


class Receiver:
    """Stands in for the app's webhook endpoint: every delivery, with its headers and raw body."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.app = FastAPI()

        @self.app.post("/webhooks/fulfillments")
        async def take(request: Request) -> dict[str, str]:
            self.deliveries.append((dict(request.headers), await request.body()))
            return {"status": "accepted"}


class Shop:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post("/admin/api/2026-07/graphql.json", json={"query": query,
                                          "variables": variables or {}}, headers={"X-Shopify-Access-Token": TOKEN})
        assert response.status_code == 200, response.text
        return response.json()

    async def ok(self, name: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = await self.gql(document(name), variables)
        assert "errors" not in body, body
        return body

    async def hold(self, *bodies: dict[str, Any]) -> None:
        response = await self.client.post("/_sandbox/orders", json={"orders": list(bodies)})
        assert response.status_code == 200, response.text

    async def order(self, order_gid: str = ORDER_GID) -> dict[str, Any]:
        return (await self.ok("OrderFulfillmentOrders", {"id": order_gid}))["data"]["order"]

    async def fulfil(self, groups: list[dict[str, Any]], tracking: dict[str, Any] | None = None) -> dict[str, Any]:
        body = await self.ok("FulfillmentCreate", {"fulfillment": {
            "lineItemsByFulfillmentOrder": groups, "trackingInfo": tracking, "notifyCustomer": False}})
        return body["data"]["fulfillmentCreate"]

    async def deliveries(self) -> list[dict[str, Any]]:
        return (await self.client.get("/_sandbox/webhook_deliveries", params={"wait": "true"})).json()


def by_sku(order: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """SKU -> (its fulfillment order, its fulfillment order line item)."""
    return {line["sku"]: (fo, line) for fo in order["fulfillmentOrders"]["nodes"] for line in fo["lineItems"]["nodes"]}


def group(fo: dict[str, Any], *lines: tuple[dict[str, Any], int]) -> dict[str, Any]:
    return {"fulfillmentOrderId": fo["id"],
            "fulfillmentOrderLineItems": [{"id": line["id"], "quantity": quantity} for line, quantity in lines]}


@pytest.fixture(scope="module")
def served(serve_app) -> Iterator[tuple[str, Receiver, str]]:
    receiver = Receiver()
    app = create_app("http://127.0.0.1:9/webhooks/shopify", SECRET, access_token=TOKEN, plan="plus")
    with serve_app(receiver.app, "a webhook receiver") as receiver_url, serve_app(app, "the Shopify sandbox") as url:
        yield url, receiver, receiver_url


@pytest.fixture
async def shop(served) -> Shop:
    url, receiver, receiver_url = served
    receiver.deliveries.clear()
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert (await client.post("/_sandbox/reset")).status_code == 200
        await client.post("/_sandbox/locations", json={"locations": [{"name": "Main warehouse", "id": MAIN},
                                                                     {"name": "North warehouse", "id": NORTH}]})
        seeded = await client.post("/_sandbox/catalog", json={"variants": [
            {"sku": "TEE", "levels": {MAIN: 50, NORTH: 50}}, {"sku": "MUG", "levels": {NORTH: 10}}]})
        assert seeded.status_code == 200, seeded.text
        subscribed = await client.post("/_sandbox/webhook_subscriptions", json={
            "topic": "fulfillments/create", "address": f"{receiver_url}/webhooks/fulfillments"})
        assert subscribed.status_code == 200, subscribed.text
        yield Shop(client)


async def test_a_paid_order_gets_one_fulfillment_order_per_location_with_everything_remaining(shop):
    # Given an order the shop holds unpaid: no fulfillment orders yet
    await shop.hold(paid_order(financial_status="pending"))
    assert (await shop.order())["fulfillmentOrders"]["nodes"] == []
    # When the order is paid
    await shop.hold(paid_order())
    order = await shop.order()
    # Then each line is at the first location stocking it, one fulfillment order per location
    nodes = order["fulfillmentOrders"]["nodes"]
    assert [(fo["assignedLocation"]["location"]["id"], fo["status"]) for fo in nodes] == [(MAIN, "OPEN"),
                                                                                         (NORTH, "OPEN")]
    lines = by_sku(order)
    assert {sku: (line["totalQuantity"], line["remainingQuantity"]) for sku, (_, line) in lines.items()} == {
        "TEE": (2, 2), "MUG": (3, 3)}
    assert lines["TEE"][1]["lineItem"] == {"id": f"gid://shopify/LineItem/{ORDER * 100 + 1}", "sku": "TEE"}
    assert order["displayFulfillmentStatus"] == "UNFULFILLED" and order["fulfillments"] == []
    # And the same payment recorded again splits nothing twice
    await shop.hold(paid_order())
    assert len((await shop.order())["fulfillmentOrders"]["nodes"]) == 2
    # And a fulfillment order reads on its own too
    one = await shop.gql(ONE_FULFILLMENT_ORDER, {"id": nodes[1]["id"]})
    assert one["data"]["fulfillmentOrder"]["orderId"] == ORDER_GID
    assert one["data"]["fulfillmentOrder"]["lineItems"]["nodes"][0]["remainingQuantity"] == 3
    assert (await shop.gql(ONE_FULFILLMENT_ORDER, {"id": "gid://shopify/FulfillmentOrder/1"}))["data"] == {
        "fulfillmentOrder": None}


async def test_a_partial_fulfilment_then_the_rest_closes_the_fulfillment_order(shop):
    await shop.hold(paid_order())
    fo, mug = by_sku(await shop.order())["MUG"]
    # When one mug is fulfilled
    first = await shop.fulfil([group(fo, (mug, 1))], {"company": "Royal Mail", "number": "RM1",
                                                       "url": "https://track.example/RM1"})
    # Then a fulfilment is made and the fulfillment order is in progress with two left
    assert first["userErrors"] == []
    assert first["fulfillment"]["status"] == "SUCCESS" and first["fulfillment"]["name"] == "#7001.1"
    assert first["fulfillment"]["trackingInfo"] == [{"company": "Royal Mail", "number": "RM1",
                                                     "url": "https://track.example/RM1"}]
    assert [(n["quantity"], n["lineItem"]["sku"]) for n in first["fulfillment"]["fulfillmentLineItems"]["nodes"]] == [
        (1, "MUG")]
    fo_after, mug_after = by_sku(order := await shop.order())["MUG"]
    assert (fo_after["status"], mug_after["remainingQuantity"], mug_after["totalQuantity"]) == ("IN_PROGRESS", 2, 3)
    assert order["displayFulfillmentStatus"] == "PARTIALLY_FULFILLED"
    # When the rest goes in two parcels
    rest = await shop.fulfil([group(fo, (mug, 2))], {"company": "Royal Mail", "numbers": ["RM2", "RM3"],
                                                      "urls": ["https://track.example/RM2",
                                                               "https://track.example/RM3"]})
    assert rest["userErrors"] == []
    assert [t["number"] for t in rest["fulfillment"]["trackingInfo"]] == ["RM2", "RM3"]
    # Then that fulfillment order is closed; the order is fulfilled once the tees go too
    fo_closed, mug_closed = by_sku(await shop.order())["MUG"]
    assert (fo_closed["status"], mug_closed["remainingQuantity"]) == ("CLOSED", 0)
    tee_fo, _ = by_sku(await shop.order())["TEE"]
    everything = await shop.fulfil([{"fulfillmentOrderId": tee_fo["id"]}])  # no line items: all that is left
    assert everything["userErrors"] == [] and everything["fulfillment"]["name"] == "#7001.3"
    order = await shop.order()
    assert [fo["status"] for fo in order["fulfillmentOrders"]["nodes"]] == ["CLOSED", "CLOSED"]
    assert order["displayFulfillmentStatus"] == "FULFILLED"
    assert [f["name"] for f in order["fulfillments"]] == ["#7001.1", "#7001.2", "#7001.3"]
    assert order["fulfillments"][1]["trackingInfo"][1] == {"company": "Royal Mail", "number": "RM3",
                                                           "url": "https://track.example/RM3"}
    # And a closed fulfillment order refuses more, in Shopify's words
    again = await shop.fulfil([group(fo, (mug, 1))])
    assert again == {"fulfillment": None, "userErrors": [{
        "field": ["fulfillment"], "message": f"Fulfillment order {fo['id'].rsplit('/', 1)[1]} has an unfulfillable "
                                             "status= closed."}]}


async def test_a_quantity_above_what_remains_is_a_user_error_and_changes_nothing(shop):
    await shop.hold(paid_order())
    before = await shop.order()
    tee_fo, tee = by_sku(before)["TEE"]
    mug_fo, mug = by_sku(before)["MUG"]
    refused = {
        "above what remains": [group(tee_fo, (tee, 3))],
        "the same line twice, above together": [group(tee_fo, (tee, 1), (tee, 2))],
        "zero": [group(tee_fo, (tee, 0))],
    }
    for case, groups in refused.items():
        result = await shop.fulfil(groups)
        assert result == {"fulfillment": None, "userErrors": [{
            "field": ["fulfillment"], "message": "Invalid fulfillment order line item quantity requested."}]}, case
    # the mug's and the tee's fulfillment orders are of two locations: one fulfilment is of one location
    # (fulfillmentCreate's reference), whatever the quantities
    assert mug_fo["assignedLocation"]["location"]["id"] != tee_fo["assignedLocation"]["location"]["id"]
    two_locations = await shop.fulfil([group(mug_fo, (mug, 1)), group(tee_fo, (tee, 1))])
    assert two_locations == {"fulfillment": None, "userErrors": [{
        "field": ["fulfillment"], "message": "All fulfillment orders must be assigned to the same location."}]}
    unknown_fo = await shop.fulfil([{"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/42",
                                     "fulfillmentOrderLineItems": [{"id": tee["id"], "quantity": 1}]}])
    assert unknown_fo["userErrors"] == [{"field": ["fulfillment"],
                                         "message": "Fulfillment order gid://shopify/FulfillmentOrder/42 does not exist."}]
    wrong_line = await shop.fulfil([group(tee_fo, (mug, 1))])  # the mug's line is on the other fulfillment order
    assert wrong_line["userErrors"][0]["message"] == (f"Fulfillment order line item {mug['id']} does not exist on "
                                                      f"fulfillment order {tee_fo['id']}.")
    blank = await shop.fulfil([])
    assert blank["userErrors"] == [{"field": ["fulfillment"], "message": "Line items by fulfillment order can't be blank."}]
    # Then nothing changed and no webhook went out
    assert await shop.order() == before
    assert await shop.deliveries() == []


async def test_a_line_removed_by_an_edit_has_nothing_left_to_fulfil(shop):
    body = paid_order()
    await shop.hold(body)
    # When an edit removes the mugs
    _, after_edit = edited(body, edit_id=1, remove={ORDER * 100 + 2: 3})
    await shop.hold(after_edit)
    # Then their fulfillment order line item has nothing left and the fulfillment order is closed
    mug_fo, mug = by_sku(await shop.order())["MUG"]
    assert (mug["totalQuantity"], mug["remainingQuantity"], mug_fo["status"]) == (0, 0, "CLOSED")
    refused = await shop.fulfil([group(mug_fo, (mug, 1))])
    assert refused["fulfillment"] is None and "unfulfillable status= closed" in refused["userErrors"][0]["message"]
    # And one tee removed of two leaves one to fulfil, and a quantity of two is refused
    _, second_edit = edited(after_edit, edit_id=2, remove={ORDER * 100 + 1: 1})
    await shop.hold(second_edit)
    tee_fo, tee = by_sku(await shop.order())["TEE"]
    assert (tee["totalQuantity"], tee["remainingQuantity"], tee_fo["status"]) == (1, 1, "OPEN")
    assert (await shop.fulfil([group(tee_fo, (tee, 2))]))["userErrors"][0]["message"] == (
        "Invalid fulfillment order line item quantity requested.")
    assert (await shop.fulfil([group(tee_fo, (tee, 1))]))["userErrors"] == []


async def test_a_cancelled_order_and_a_cancelled_fulfillment_order_refuse_fulfilment(shop):
    body = paid_order()
    await shop.hold(body, paid_order(ORDER + 1))
    # Given the merchant cancels the tee fulfillment order of one order, and the other order (its mugs
    # on hold) is cancelled
    tee_fo, tee = by_sku(await shop.order())["TEE"]
    number = tee_fo["id"].rsplit("/", 1)[1]
    assert (await shop.client.post(f"/_sandbox/fulfillment_orders/{number}/cancel")).json()["status"] == "CANCELLED"
    other_mug_number = by_sku(await shop.order(f"gid://shopify/Order/{ORDER + 1}"))["MUG"][0]["id"].rsplit("/", 1)[1]
    assert (await shop.client.post(f"/_sandbox/fulfillment_orders/{other_mug_number}/hold")).status_code == 200
    other, _ = cancelled(paid_order(ORDER + 1), refund_id=9)
    await shop.hold(other)
    # Then fulfilling either is refused
    result = await shop.fulfil([group(tee_fo, (tee, 1))])
    assert result["userErrors"] == [{"field": ["fulfillment"],
                                     "message": f"Fulfillment order {number} has an unfulfillable status= cancelled."}]
    other_order = await shop.order(f"gid://shopify/Order/{ORDER + 1}")
    assert [fo["status"] for fo in other_order["fulfillmentOrders"]["nodes"]] == ["CLOSED", "CLOSED"]
    # And fulfillment orders of two orders in one fulfilment are refused
    mug_fo, mug = by_sku(await shop.order())["MUG"]
    _, other_mug = by_sku(other_order)["MUG"]
    mixed = await shop.fulfil([group(mug_fo, (mug, 1)), {"fulfillmentOrderId": by_sku(other_order)["MUG"][0]["id"]}])
    assert mixed["userErrors"] == [{"field": ["fulfillment"],
                                    "message": "All fulfillment orders must belong to the same order."}]
    assert other_mug["remainingQuantity"] == 0


async def test_a_fulfillment_order_on_hold_refuses_and_fulfils_once_released(shop):
    await shop.hold(paid_order())
    mug_fo, mug = by_sku(await shop.order())["MUG"]
    number = mug_fo["id"].rsplit("/", 1)[1]
    # Given the merchant puts the mugs on hold
    held = await shop.client.post(f"/_sandbox/fulfillment_orders/{number}/hold",
                                  json={"reason": "INCORRECT_ADDRESS", "reason_notes": "flat number missing"})
    assert held.status_code == 200 and held.json()["status"] == "ON_HOLD"
    assert by_sku(await shop.order())["MUG"][0]["fulfillmentHolds"] == [{
        "id": held.json()["holds"][0]["id"], "reason": "INCORRECT_ADDRESS", "reasonNotes": "flat number missing"}]
    # When they are fulfilled: refused, nothing changes
    refused = await shop.fulfil([group(mug_fo, (mug, 3))], {"company": "DPD", "number": "D1"})
    assert refused == {"fulfillment": None, "userErrors": [{
        "field": ["fulfillment"], "message": f"Fulfillment order {number} has an unfulfillable status= on_hold."}]}
    assert by_sku(await shop.order())["MUG"][1]["remainingQuantity"] == 3
    # When the hold is released, the same fulfilment goes through
    released = await shop.client.post(f"/_sandbox/fulfillment_orders/{number}/release")
    assert released.json()["status"] == "OPEN" and released.json()["holds"] == []
    done = await shop.fulfil([group(mug_fo, (mug, 3))], {"company": "DPD", "number": "D1"})
    assert done["userErrors"] == [] and by_sku(await shop.order())["MUG"][0]["status"] == "CLOSED"


async def test_holds_through_the_api_keep_the_status_they_interrupted(shop):
    await shop.hold(paid_order())
    tee_fo, tee = by_sku(await shop.order())["TEE"]
    assert (await shop.fulfil([group(tee_fo, (tee, 1))]))["userErrors"] == []
    # When the app holds the half-fulfilled fulfillment order
    hold = (await shop.gql(HOLD, {"id": tee_fo["id"], "reason": "OTHER", "notes": "check stock", "handle": "h1"}))
    payload = hold["data"]["fulfillmentOrderHold"]
    assert payload["userErrors"] == [] and payload["fulfillmentOrder"]["status"] == "ON_HOLD"
    assert payload["fulfillmentHold"]["heldByRequestingApp"] is True
    assert hold["extensions"]["cost"]["requestedQueryCost"] == 10
    # Then the same handle again is Shopify's DUPLICATE_FULFILLMENT_HOLD_HANDLE, an unknown order not found
    duplicate = (await shop.gql(HOLD, {"id": tee_fo["id"], "reason": "OTHER", "handle": "h1"}))["data"]
    assert duplicate["fulfillmentOrderHold"]["userErrors"][0]["code"] == "DUPLICATE_FULFILLMENT_HOLD_HANDLE"
    missing = (await shop.gql(HOLD, {"id": "gid://shopify/FulfillmentOrder/5", "reason": "OTHER"}))["data"]
    assert missing["fulfillmentOrderHold"]["userErrors"][0]["code"] == "FULFILLMENT_ORDER_NOT_FOUND"
    # And releasing it returns it to IN_PROGRESS
    released = (await shop.gql(RELEASE, {"id": tee_fo["id"]}))["data"]["fulfillmentOrderReleaseHold"]
    assert released == {"fulfillmentOrder": {"id": tee_fo["id"], "status": "IN_PROGRESS"}, "userErrors": []}
    stats = (await shop.client.get("/_sandbox/stats")).json()["mutation_calls"]
    assert stats["fulfillmentOrderHold"] == 3 and stats["fulfillmentOrderReleaseHold"] == 1


async def test_tracking_added_later_replaces_the_fulfilments_tracking(shop, served):
    _, receiver, receiver_url = served
    await shop.client.post("/_sandbox/webhook_subscriptions", json={
        "topic": "fulfillments/update", "address": f"{receiver_url}/webhooks/fulfillments"})
    await shop.hold(paid_order())
    mug_fo, mug = by_sku(await shop.order())["MUG"]
    made = (await shop.fulfil([group(mug_fo, (mug, 3))], {"company": "DPD", "number": "D1"}))["fulfillment"]
    # When the tracking is updated with a second parcel and the urls
    updated = await shop.ok("FulfillmentTrackingInfoUpdate", {
        "fulfillmentId": made["id"], "notifyCustomer": False,
        "trackingInfoInput": {"company": "DPD UK", "numbers": ["D1", "D2"],
                              "urls": ["https://dpd.example/D1", "https://dpd.example/D2"]}})
    payload = updated["data"]["fulfillmentTrackingInfoUpdate"]
    # Then the fulfilment carries the new tracking, also when the order is read
    assert payload["userErrors"] == [] and payload["fulfillment"]["trackingInfo"] == [
        {"company": "DPD UK", "number": "D1", "url": "https://dpd.example/D1"},
        {"company": "DPD UK", "number": "D2", "url": "https://dpd.example/D2"}]
    assert (await shop.order())["fulfillments"][0]["trackingInfo"] == payload["fulfillment"]["trackingInfo"]
    assert updated["extensions"]["cost"]["requestedQueryCost"] == 10
    # And fulfillments/update carried the new tracking to the subscribed address
    assert [(d["topic"], d["status"]) for d in await shop.deliveries()] == [("fulfillments/create", 200),
                                                                          ("fulfillments/update", 200)]
    update = json.loads(receiver.deliveries[-1][1])
    assert receiver.deliveries[-1][0]["x-shopify-topic"] == "fulfillments/update"
    assert (update["id"], update["tracking_company"], update["tracking_numbers"]) == (
        int(made["id"].rsplit("/", 1)[1]), "DPD UK", ["D1", "D2"])
    # And an unknown fulfilment is a userError
    unknown = await shop.ok("FulfillmentTrackingInfoUpdate", {"fulfillmentId": "gid://shopify/Fulfillment/1",
                                                              "trackingInfoInput": {"number": "X"}})
    assert unknown["data"]["fulfillmentTrackingInfoUpdate"] == {
        "fulfillment": None, "userErrors": [{"field": ["fulfillmentId"], "message": "Fulfillment does not exist."}]}


async def test_the_fulfillments_create_webhook_is_sent_once_per_fulfilment_signed(shop, served):
    _, receiver, _ = served
    await shop.hold(paid_order())
    mug_fo, mug = by_sku(await shop.order())["MUG"]
    # When two fulfilments are made (and one refused)
    one = (await shop.fulfil([group(mug_fo, (mug, 1))], {"company": "UPS", "numbers": ["1Z1", "1Z2"],
                                                          "urls": ["https://ups.example/1Z1",
                                                                   "https://ups.example/1Z2"]}))["fulfillment"]
    assert (await shop.fulfil([group(mug_fo, (mug, 9))]))["fulfillment"] is None
    two = (await shop.fulfil([group(mug_fo, (mug, 2))], {"company": "UPS", "number": "1Z3"}))["fulfillment"]
    # Then the subscribed address got one fulfillments/create each, answered 200
    deliveries = await shop.deliveries()
    assert [(d["topic"], d["fulfillment_id"], d["status"]) for d in deliveries] == [
        ("fulfillments/create", one["id"], 200), ("fulfillments/create", two["id"], 200)]
    assert len(receiver.deliveries) == 2
    headers, raw = receiver.deliveries[0]
    # signed with the app's secret, with Shopify's headers
    expected = base64.b64encode(hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(headers["x-shopify-hmac-sha256"], expected)
    assert headers["x-shopify-topic"] == "fulfillments/create"
    assert headers["x-shopify-webhook-id"] == deliveries[0]["webhook_id"]
    assert {"x-shopify-shop-domain", "x-shopify-api-version", "x-shopify-event-id",
            "x-shopify-triggered-at"} <= set(headers)
    # in the REST shape of a fulfilment
    body = json.loads(raw)
    assert body["id"] == int(one["id"].rsplit("/", 1)[1]) and body["admin_graphql_api_id"] == one["id"]
    assert (body["order_id"], body["status"], body["name"], body["location_id"]) == (ORDER, "success", "#7001.1", 2)
    assert (body["tracking_company"], body["tracking_number"], body["tracking_numbers"]) == ("UPS", "1Z1",
                                                                                             ["1Z1", "1Z2"])
    assert body["tracking_url"] == "https://ups.example/1Z1" and len(body["tracking_urls"]) == 2
    assert [(li["id"], li["sku"], li["quantity"], li["fulfillable_quantity"], li["fulfillment_status"])
            for li in body["line_items"]] == [(ORDER * 100 + 2, "MUG", 1, 2, "partial")]
    second = json.loads(receiver.deliveries[1][1])
    assert [(li["quantity"], li["fulfillment_status"]) for li in second["line_items"]] == [(2, "fulfilled")]
    assert second["tracking_numbers"] == ["1Z3"] and second["tracking_urls"] == []


async def test_fulfilment_documents_are_costed_and_throttled_as_shopify_does(shop):
    await shop.hold(paid_order())
    # A query whose page sizes are variable defaults is costed with them (was: "you must provide one
    # of first or last", the defaults ignored)
    read = await shop.ok("OrderFulfillmentOrders", {"id": ORDER_GID})
    assert read["extensions"]["cost"]["requestedQueryCost"] == 617
    assert read["extensions"]["cost"]["actualQueryCost"] < 617
    mug_fo, mug = by_sku(read["data"]["order"])["MUG"]
    # In a throttle storm a fulfilment is THROTTLED and nothing happens
    await shop.client.post("/_sandbox/faults", json={"throttle_storm_seconds": 30})
    throttled = await shop.gql(document("FulfillmentCreate"), {"fulfillment": {
        "lineItemsByFulfillmentOrder": [group(mug_fo, (mug, 1))]}})
    await shop.client.delete("/_sandbox/faults")
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert throttled["extensions"]["cost"]["requestedQueryCost"] == 10
    assert (await shop.client.get("/_sandbox/fulfillments", params={"order_id": ORDER})).json() == []


async def test_a_paid_order_of_a_shop_without_a_location_is_split_once_one_exists(shop):
    # Given a shop reset to no locations, and an order paid there
    assert (await shop.client.post("/_sandbox/reset")).status_code == 200
    await shop.hold(paid_order())
    assert (await shop.client.get("/_sandbox/fulfillment_orders", params={"order_id": ORDER})).json() == []
    # When the shop's location is added (no location is made up meanwhile)
    assert (await shop.client.get("/_sandbox/fulfillment_orders")).json() == []
    await shop.client.post("/_sandbox/locations", json={"locations": [{"name": "Main warehouse"}]})
    # Then the order is split to it, and the location kept the shop's first number
    rows = (await shop.client.get("/_sandbox/fulfillment_orders", params={"order_id": ORDER})).json()
    assert [(row["location_id"], [li["sku"] for li in row["line_items"]]) for row in rows] == [(MAIN, ["TEE", "MUG"])]
    # And an order deleted in Shopify takes its fulfillment orders with it
    assert (await shop.client.delete(f"/_sandbox/orders/{ORDER}")).status_code == 200
    assert (await shop.client.get("/_sandbox/fulfillment_orders")).json() == []
    assert (await shop.gql(ONE_FULFILLMENT_ORDER, {"id": rows[0]["id"]}))["data"] == {"fulfillmentOrder": None}
