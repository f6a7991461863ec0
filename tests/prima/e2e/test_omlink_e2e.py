"""End to end on the running stack with Prima's OM link (PRIMA_ADAPTER=omlink), the order and stock
flows once more through the other adapter of the Prima port: Shopify webhook -> ingest -> Order
aggregate -> Prima gateway -> OM link NewOrder in the Prima sandbox; and Prima's availability
snapshot -> the poller's comparison -> StockItem aggregates -> Shopify sandbox.

The module switches the stack's Prima gateway and Prima poller to OM link (deploy/local/services.sh
stop, then start with SHOPIFY_PRIMA_PRIMA_ADAPTER=omlink and SHOPIFY_PRIMA_PRIMA_OMLINK) and back
to REST at its end. Its availability ranges cover only products named OML*, which only these tests
make, so the rest of the stack's stock is not touched. It is marked `omlink`: `make test` runs it
after everything else (the chaos run included), so that no other test sees the stack switched.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from lxml import etree

from contracts.shopify.orders import ShopifyOrder
from sandboxes.shopify.orders import Line, Shipping, order_body
from sandboxes.shopify.webhooks import send_webhook

pytestmark = [pytest.mark.e2e, pytest.mark.omlink]
REPO = Path(__file__).resolve().parents[3]
SERVICES = REPO / "deploy" / "local" / "services.sh"
SWITCHED = "prima_gateway prima_ingest"
LOC = "gid://shopify/Location/1"
BUFFER = 2  # deploy/local/stack.env: the default safety buffer
D = Decimal


def omlink_configuration(prima_base_url: str) -> dict:
    """The OM link configuration the switched processes run with: the sandbox's item matrix
    (SKU = Product-Colour-Size), charge codes and pay methods; fast polling for the test."""
    return {
        "instance_url": f"{prima_base_url}/wsa/wsa1",
        "sku_matrix": {"pattern": "{Product}-{MtrxCode1}-{MtrxCode2}"},
        "order_codes": {"order_channel": "WEB", "order_number_prefix": "SHOP",
                        "charges": {"Standard": "DEL-STD", "Express": "DEL-EXP"},
                        "payments": {"shopify_payments": {"PayMethod": "CARD", "SubPayMethod": "SHOPIFY"}}},
        "availability_ranges": [{"product_from": "OML", "product_to": "OMLZZZZZZZZZ"}],
        "availability_interval_seconds": 1, "status_interval_seconds": 2, "status_requests_per_second": 10,
        "max_attempts": 3, "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1, "timeout_seconds": 5,
    }


def services(command: str, env: dict[str, str]) -> None:
    done = subprocess.run([str(SERVICES), command], env={**env, "SERVICES": SWITCHED}, cwd=REPO,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"services.sh {command}: {done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def omlink_stack(stack):
    """The stack with its Prima gateway and poller on OM link for this module; REST again after."""
    rest = {k: v for k, v in os.environ.items() if k not in ("SHOPIFY_PRIMA_PRIMA_ADAPTER",
                                                             "SHOPIFY_PRIMA_PRIMA_OMLINK")}
    omlink = {**rest, "SHOPIFY_PRIMA_PRIMA_ADAPTER": "omlink",
              "SHOPIFY_PRIMA_PRIMA_OMLINK": json.dumps(omlink_configuration(stack.prima_base_url))}
    services("stop", rest)
    try:
        services("start", omlink)
        yield stack
    finally:
        services("stop", rest)
        services("start", rest)
        retire_items(stack)


MADE: dict[str, None] = {}  # the SKUs this module made in the Prima sandbox


def retire_items(stack) -> None:
    """The Prima items this module made, made inactive in the sandbox: their item master entries
    came from OM link (item ids of Prima's item codes), so nothing run after this module on REST
    (a benchmark, the chaos run) may pick them as active stock items to order."""
    if not MADE:
        return
    r = httpx.put(f"{stack.prima_base_url}/_sandbox/items", timeout=30, json={"items": [
        {"item_id": f"ITM-{sku}", "sku": sku, "description": sku, "item_type": "stock", "active": False}
        for sku in MADE]})
    assert r.status_code == 200, r.text


class OmLinkStack:
    def __init__(self, settings) -> None:
        self.s = settings
        self.http = httpx.AsyncClient(timeout=30)
        self.ops = f"http://{settings.ops_api_host}:{settings.ops_api_port}"
        self.ops_headers = {"Authorization": f"Bearer {settings.ops_api_token.get_secret_value()}"}
        self.prima = settings.prima_base_url
        self.prima_headers = {"Authorization": f"Bearer {settings.prima_api_key.get_secret_value()}"}
        self.webhook_url = f"http://{settings.ingest_host}:{settings.ingest_port}/webhooks/shopify"

    async def prima_items_and_stock(self, levels: dict[str, int]) -> None:
        MADE.update(dict.fromkeys(levels))
        r = await self.http.put(f"{self.prima}/_sandbox/items", json={"items": [
            {"item_id": f"ITM-{sku}", "sku": sku, "description": sku, "item_type": "stock"} for sku in levels]})
        assert r.status_code == 200, r.text
        await self.prima_stock(levels)

    async def prima_stock(self, levels: dict[str, int]) -> None:
        r = await self.http.put(f"{self.prima}/_sandbox/stock", json={"stock": [
            {"sku": sku, "warehouse": "WH-MAIN", "available": n} for sku, n in levels.items()]})
        assert r.status_code == 200, r.text

    async def until(self, what: str, probe, timeout: float = 60):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await probe()
            if last:
                return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what} not seen after {timeout}s (last: {last})")

    async def item_known(self, sku: str) -> dict | None:
        r = await self.http.get(f"{self.ops}/items/{sku}", headers=self.ops_headers)
        return r.json() if r.status_code == 200 else None

    async def order(self, order_id: int) -> dict | None:
        r = await self.http.get(f"{self.ops}/orders/{order_id}", headers=self.ops_headers)
        return r.json() if r.status_code == 200 else None

    async def in_prima(self, order_id: int) -> dict:
        async def probe():
            row = await self.order(order_id)
            return row if row and row["state"] == "in_prima" else None
        return await self.until(f"order {order_id} in Prima", probe)

    async def new_order(self, number: str) -> etree._Element:
        r = await self.http.get(f"{self.prima}/_sandbox/omlink/orders/{number}")
        assert r.status_code == 200, r.text
        return etree.fromstring(r.json()["request"].encode("ISO-8859-1")).find("Data")

    async def prima_sales_orders(self, number: str) -> list[dict]:
        r = await self.http.get(f"{self.prima}/v1/sales-orders", params={"external_reference": number},
                                headers=self.prima_headers)
        r.raise_for_status()
        return r.json()["sales_orders"]

    async def webhook(self, body: dict) -> None:
        r = await send_webhook(self.http, self.webhook_url, "orders/paid", body,
                               self.s.shopify_webhook_secret.get_secret_value())
        assert r.status_code == 200, r.text

    async def resync(self) -> None:
        """A full comparison (the catalogue reader reads Shopify's variants), so the StockItem
        knows the new variant's inventory item; until it is published."""
        r = await self.http.post(f"{self.ops}/inventory/resync", headers=self.ops_headers)
        assert r.status_code in (200, 201, 202), r.text
        run_id = r.json()["run_id"]

        async def published():
            answer = await self.http.get(f"{self.ops}/inventory/resync/{run_id}", headers=self.ops_headers)
            if answer.status_code == 404:  # not recorded by the catalogue reader yet
                return None
            run = answer.json().get("run", answer.json())
            assert run["status"] != "failed", run
            return run["status"] == "published"
        await self.until(f"sync run {run_id} published", published, timeout=120)

    async def shopify_level(self, sku: str) -> int | None:
        r = await self.http.get(f"{self.s.shopify_admin_url}/_sandbox/inventory", params={"sku": sku})
        r.raise_for_status()
        rows = r.json()["levels"] if isinstance(r.json(), dict) else r.json()
        return next((row["available"] for row in rows if row["location_id"] == LOC), None)


@pytest.fixture
async def om(omlink_stack):
    made = OmLinkStack(omlink_stack)
    yield made
    await made.http.delete(f"{made.prima}/_sandbox/faults")
    await made.http.aclose()


def style() -> str:
    return f"OML{uuid.uuid4().hex[:8].upper()}"


def paid_order(order_id: int, skus: list[str]) -> dict:
    body = order_body(order_id, [Line(skus[0], "Organic tee", D("25.00"), 2, discount=D("5.00")),
                                 Line(skus[1], "Organic tee", D("25.00"), 1)],
                      Shipping("Standard", D("4.95")), taxes_included=True, currency="EUR")
    body["payment_gateway_names"] = ["shopify_payments"]
    return body


async def test_a_paid_order_reaches_prima_through_om_link_as_a_new_order_equal_to_the_shopify_order(om):
    product = style()
    skus = [f"{product}-BLK-M", f"{product}-BLK-L"]
    await om.prima_items_and_stock(dict.fromkeys(skus, 10))
    for sku in skus:  # the item master learns them from the availability snapshot
        await om.until(f"item {sku}", lambda sku=sku: om.item_known(sku))
    order_id = time.time_ns() // 1000
    body = paid_order(order_id, skus)

    await om.webhook(body)

    row = await om.in_prima(order_id)
    number = f"SHOP{order_id}"
    assert row["prima_sales_order_number"] == number
    data = await om.new_order(number)
    shopify = ShopifyOrder.from_webhook(body)
    assert (data.get("OrderNumber"), data.get("TPGUID"), data.get("OrderChannel"), data.get("VatInclusive")) == (
        number, str(order_id), "WEB", "Yes")
    assert [(line.get("Product"), line.get("MtrxCode1"), line.get("MtrxCode2"), line.get("Quantity"),
             line.get("Price"), line.get("TrDisc")) for line in data.findall("OrderLineData")] == [
        (product, "BLK", "M", "2", "25.00", "5.00"), (product, "BLK", "L", "1", "25.00", "0.00")]
    assert dict(data.find("OrderChargeData").attrib) == {"Charge": "DEL-STD", "ChargeValue": "4.95"}
    payment = data.find("OrderPaymentData")
    assert (payment.get("PayMethod"), payment.get("SubPayMethod"), D(payment.get("TranAmount"))) == (
        "CARD", "SHOPIFY", shopify.total_price.amount)
    (sales_order,) = await om.prima_sales_orders(number)
    assert D(sales_order["totals"]["total"]) == shopify.total_price.amount


async def test_a_lost_new_order_answer_is_recovered_through_order_status_without_a_second_order(om):
    product = style()
    skus = [f"{product}-RED-S", f"{product}-RED-M"]
    await om.prima_items_and_stock(dict.fromkeys(skus, 10))
    for sku in skus:
        await om.until(f"item {sku}", lambda sku=sku: om.item_known(sku))
    r = await om.http.post(f"{om.prima}/_sandbox/faults", json={
        "path_prefix": "/wsa/wsa1", "method": "POST", "commit_then_drop_next": 1, "body_contains": "NewOrder"})
    assert r.status_code == 200, r.text
    order_id = time.time_ns() // 1000

    await om.webhook(paid_order(order_id, skus))

    row = await om.in_prima(order_id)
    number = f"SHOP{order_id}"
    assert row["prima_sales_order_number"] == number
    faults = (await om.http.get(f"{om.prima}/_sandbox/faults")).json()
    assert faults["counters"]["commit_then_drops"] >= 1  # the NewOrder committed and its answer was lost
    assert len(await om.prima_sales_orders(number)) == 1


async def test_a_change_in_the_availability_snapshot_reaches_shopify_as_available_minus_the_buffer(om):
    product = style()
    sku = f"{product}-GRN-M"
    r = await om.http.post(f"{om.s.shopify_admin_url}/_sandbox/catalog",
                           json={"variants": [{"sku": sku, "levels": {LOC: 0}}]})
    assert r.status_code in (200, 201), r.text
    await om.prima_items_and_stock({sku: 7})
    await om.until(f"item {sku}", lambda: om.item_known(sku))  # the snapshot named it
    await om.resync()
    await om.until(f"{sku} at {7 - BUFFER} in Shopify", lambda: _level_is(om, sku, 7 - BUFFER))

    await om.prima_stock({sku: 12})

    await om.until(f"{sku} at {12 - BUFFER} in Shopify", lambda: _level_is(om, sku, 12 - BUFFER))


async def _level_is(om: OmLinkStack, sku: str, expected: int) -> bool:
    return await om.shopify_level(sku) == expected


async def test_a_despatch_learnt_by_polling_order_status_becomes_one_fulfilment_with_its_tracking(om):
    product = style()
    skus = [f"{product}-BLU-M", f"{product}-BLU-L"]
    await om.prima_items_and_stock(dict.fromkeys(skus, 10))
    for sku in skus:
        await om.until(f"item {sku}", lambda sku=sku: om.item_known(sku))
    order_id = time.time_ns() // 1000
    body = paid_order(order_id, skus)
    r = await om.http.post(f"{om.s.shopify_admin_url}/_sandbox/webhooks", json={"topic": "orders/paid", "order": body})
    assert r.status_code == 200 and r.json()["statuses"] == [200], r.text  # recorded in the shop, and delivered
    await om.in_prima(order_id)
    (sales_order,) = await om.prima_sales_orders(f"SHOP{order_id}")
    tracking = f"1550{order_id}"

    r = await om.http.post(f"{om.prima}/_sandbox/sales-orders/{sales_order['sales_order_number']}/despatch",
                           json={"parcels": [{"carrier": "DPD", "tracking_number": tracking}]})
    assert r.status_code in (200, 201), r.text

    async def fulfilments():
        answer = await om.http.get(f"{om.s.shopify_admin_url}/_sandbox/fulfillments", params={"order_id": order_id})
        answer.raise_for_status()
        return answer.json()
    made = await om.until(f"order {order_id} fulfilled in Shopify", fulfilments)
    await asyncio.sleep(3.0)  # several status passes: a second fulfilment, were one wrongly made, would be there
    made = await fulfilments()
    assert len(made) == 1
    assert (made[0]["tracking_company"], made[0]["tracking_numbers"]) == ("DPD", [tracking])
    ids = {li["sku"]: li["id"] for li in body["line_items"]}
    assert sorted((fl["line_item_id"], fl["quantity"]) for fl in made[0]["line_items"]) == sorted(
        [(ids[skus[0]], 2), (ids[skus[1]], 1)])


async def test_an_orders_units_are_held_back_until_a_snapshot_includes_its_allocation_and_then_released(om):
    """An accepted order holds its units back from Shopify until Prima's stock is known to include
    them; with OM link a snapshot taken after Prima confirmed the order includes them, so Shopify
    ends at Prima's available less the buffer, not less the order's units a second time."""
    product = style()
    sku, other = f"{product}-GRY-M", f"{product}-GRY-L"
    r = await om.http.post(f"{om.s.shopify_admin_url}/_sandbox/catalog",
                           json={"variants": [{"sku": sku, "levels": {LOC: 0}}, {"sku": other, "levels": {LOC: 0}}]})
    assert r.status_code in (200, 201), r.text
    await om.prima_items_and_stock({sku: 10, other: 10})
    for s in (sku, other):
        await om.until(f"item {s}", lambda s=s: om.item_known(s))
    await om.resync()
    await om.until(f"{sku} at {10 - BUFFER} in Shopify", lambda: _level_is(om, sku, 10 - BUFFER))
    order_id = time.time_ns() // 1000

    await om.webhook(paid_order(order_id, [sku, other]))  # 2 x sku, 1 x other

    await om.in_prima(order_id)
    # Prima allocated 2 and 1 (10 -> 8 and 9): once a snapshot showing that names the order, the
    # units are no longer held on top (before: 10 - 2 held - 2 = 6 while Prima still showed 10)
    for s, prima in ((sku, 8), (other, 9)):
        await om.until(f"{s}: Prima's {prima} in the stock read model, nothing held",
                       lambda s=s, prima=prima: _settled(om, s, prima))
        await om.until(f"{s} at {prima - BUFFER} in Shopify", lambda s=s, prima=prima: _level_is(om, s, prima - BUFFER))
    await asyncio.sleep(3.0)  # more passes: the level stays where Prima's snapshot puts it
    assert (await om.shopify_level(sku), await om.shopify_level(other)) == (8 - BUFFER, 9 - BUFFER)


async def _settled(om: OmLinkStack, sku: str, prima: int) -> bool:
    """The stock read model has Prima's level and desires it less the buffer only (no units held)."""
    r = await om.http.get(f"{om.ops}/inventory/{sku}", headers=om.ops_headers)
    rows = r.json()["locations"] if r.status_code == 200 else []
    return any(row["location_id"] == LOC and row["prima_available"] == prima and row["desired"] == prima - BUFFER
               for row in rows)
