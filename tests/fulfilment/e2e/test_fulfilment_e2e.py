"""End to end on the running stack (issue 10): a paid Shopify order -> Prima sales order; the
warehouse despatches it in the Prima sandbox -> the Prima poller -> prima.despatches.v1 -> the
fulfilment decider (reads the order's fulfillment orders from the Shopify sandbox) -> outbox ->
shopify.commands.v1 -> the Shopify gateway -> fulfillmentCreate in the Shopify sandbox; the
answer goes back to the decider and the order read model shows the fulfilment.

Every order here is recorded in the Shopify sandbox as paid (`POST /_sandbox/webhooks`, which also
delivers the orders/paid webhook to the ingest), so the shop has its fulfillment orders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from contracts.prima.despatches import PrimaDespatchRecorded
from contracts.topics import PRIMA_DESPATCHES
from sandboxes.shopify.orders import Line, Shipping, order_body
from services.platform.kafka import Outgoing, headers_for, make_broker, publish_all
from tests.orders.e2e.test_order_to_prima import new_order_id

pytestmark = [pytest.mark.e2e]
D = Decimal
TEE, MUG = "TEE-BLK-M", "MUG-STONE"  # stock items seeded in the Prima sandbox (sandboxes/prima/README.md)
GIFT_SET = "GIFT-SET-TEE-MUG"  # a Prima kit: 1 x TEE-BLK-M + 2 x MUG-STONE (seeded)
TIMEOUT = 60.0


class Flow:
    def __init__(self, settings: Any) -> None:
        self.s = settings
        self.http = httpx.AsyncClient(timeout=30)
        self.shopify = settings.shopify_admin_url
        self.prima = settings.prima_base_url
        self.ops = f"http://{settings.ops_api_host}:{settings.ops_api_port}"
        self.ops_headers = {"Authorization": f"Bearer {settings.ops_api_token.get_secret_value()}"}
        self.prima_headers = {"Authorization": f"Bearer {settings.prima_api_key.get_secret_value()}"}

    async def paid_order(self, lines: list[Line]) -> tuple[int, dict[str, Any]]:
        order_id = new_order_id()
        body = order_body(order_id, lines, Shipping("Standard", D("4.95")), taxes_included=True, currency="GBP")
        r = await self.http.post(f"{self.shopify}/_sandbox/webhooks", json={"topic": "orders/paid", "order": body})
        r.raise_for_status()
        assert r.json()["statuses"] == [200], r.text
        return order_id, body

    async def sales_order(self, order_id: int) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            r = await self.http.get(f"{self.prima}/v1/sales-orders", params={"external_reference": str(order_id)},
                                    headers=self.prima_headers)
            r.raise_for_status()
            found = r.json()["sales_orders"]
            if found:
                assert len(found) == 1, found
                return found[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"order {order_id} has no Prima sales order after {TIMEOUT}s")

    async def despatch(self, number: str, parcels: list[dict[str, Any]],
                       lines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"parcels": parcels}
        if lines is not None:
            body["lines"] = lines
        r = await self.http.post(f"{self.prima}/_sandbox/sales-orders/{number}/despatch", json=body)
        assert r.status_code in (200, 201), r.text
        return r.json()

    async def fulfillments(self, order_id: int) -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.shopify}/_sandbox/fulfillments", params={"order_id": order_id})
        r.raise_for_status()
        return r.json()

    async def fulfillment_orders(self, order_id: int) -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.shopify}/_sandbox/fulfillment_orders", params={"order_id": order_id})
        r.raise_for_status()
        return r.json()

    async def wait_fulfillments(self, order_id: int, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + TIMEOUT
        made: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            made = await self.fulfillments(order_id)
            if len(made) >= count:
                return made
            await asyncio.sleep(0.2)
        raise AssertionError(f"order {order_id}: {len(made)} fulfilments after {TIMEOUT}s, expected {count}")

    async def despatch_facts_handled(self) -> float:
        """The fulfilment decider's count of despatch facts handled (its /metrics)."""
        r = await self.http.get(f"http://127.0.0.1:{self.s.fulfilment_decider_metrics_port}/metrics")
        r.raise_for_status()
        for line in r.text.splitlines():
            if line.startswith('shopify_prima_fulfilment_facts_total{fact="PrimaDespatchRecorded"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def fulfilment(self, order_id: int, until: Any = lambda f: True) -> dict[str, Any]:
        """The order read model's fulfilment (ops API), once `until` holds."""
        deadline = time.monotonic() + TIMEOUT
        last: Any = None
        while time.monotonic() < deadline:
            r = await self.http.get(f"{self.ops}/orders/{order_id}", headers=self.ops_headers)
            if r.status_code == 200:
                last = r.json().get("fulfilment")
                if last is not None and until(last):
                    return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"order {order_id}: fulfilment read model not as expected after {TIMEOUT}s: {last}")


@pytest.fixture
async def flow(stack) -> AsyncIterator[Flow]:
    f = Flow(stack)
    yield f
    await f.http.aclose()


def line_ids(body: dict[str, Any]) -> dict[str, int]:
    return {li["sku"]: li["id"] for li in body["line_items"]}


async def test_a_full_despatch_in_two_parcels_gives_one_fulfilment_with_two_tracking_numbers(flow: Flow):
    order_id, body = await flow.paid_order([Line(TEE, "Tee", D("20.00"), 2), Line(MUG, "Mug", D("8.00"), 1)])
    so = await flow.sales_order(order_id)
    await flow.despatch(so["sales_order_number"], [
        {"carrier": "Royal Mail", "tracking_number": f"RM{order_id}1GB"},
        {"carrier": "Royal Mail", "tracking_number": f"RM{order_id}2GB"},
    ])

    made = await flow.wait_fulfillments(order_id, 1)
    await asyncio.sleep(1.0)  # a second fulfilment, were one wrongly decided, would be there by now
    made = await flow.fulfillments(order_id)
    assert len(made) == 1
    assert made[0]["tracking_company"] == "Royal Mail"
    assert made[0]["tracking_numbers"] == [f"RM{order_id}1GB", f"RM{order_id}2GB"]
    ids = line_ids(body)
    assert sorted((fl["line_item_id"], fl["quantity"]) for fl in made[0]["line_items"]) == sorted(
        [(ids[TEE], 2), (ids[MUG], 1)])
    assert all(fo["status"] == "CLOSED" for fo in await flow.fulfillment_orders(order_id))

    fulfilment = await flow.fulfilment(order_id, lambda f: f["state"] == "fulfilled")
    assert sorted(fulfilment["tracking_numbers"]) == [f"RM{order_id}1GB", f"RM{order_id}2GB"]


async def test_a_partial_despatch_then_the_rest_give_two_fulfilments_and_the_order_is_fulfilled(flow: Flow):
    order_id, body = await flow.paid_order([Line(TEE, "Tee", D("20.00"), 3), Line(MUG, "Mug", D("8.00"), 2)])
    so = await flow.sales_order(order_id)
    tee_line = next(li["line_number"] for li in so["lines"] if li["sku"] == TEE)
    mug_line = next(li["line_number"] for li in so["lines"] if li["sku"] == MUG)
    await flow.despatch(so["sales_order_number"], [{"carrier": "DPD",
                                                     "tracking_number": f"DPD{order_id}A"}],
                        lines=[{"line_number": tee_line, "sku": TEE, "quantity": 2}])
    first = await flow.wait_fulfillments(order_id, 1)
    ids = line_ids(body)
    assert [(fl["line_item_id"], fl["quantity"]) for fl in first[0]["line_items"]] == [(ids[TEE], 2)]
    await flow.fulfilment(order_id, lambda f: f["state"] == "partly_fulfilled")

    await flow.despatch(so["sales_order_number"], [{"carrier": "DPD",
                                                     "tracking_number": f"DPD{order_id}B"}],
                        lines=[{"line_number": tee_line, "sku": TEE, "quantity": 1},
                               {"line_number": mug_line, "sku": MUG, "quantity": 2}])
    made = await flow.wait_fulfillments(order_id, 2)
    assert len(made) == 2
    assert sorted((fl["line_item_id"], fl["quantity"]) for fl in made[1]["line_items"]) == sorted(
        [(ids[TEE], 1), (ids[MUG], 2)])
    assert [f["tracking_numbers"] for f in made] == [[f"DPD{order_id}A"], [f"DPD{order_id}B"]]
    assert all(fo["status"] == "CLOSED" for fo in await flow.fulfillment_orders(order_id))
    await flow.fulfilment(order_id, lambda f: f["state"] == "fulfilled")


async def test_a_bundle_goes_to_prima_as_components_and_is_fulfilled_as_the_bundle(flow: Flow):
    order_id, body = await flow.paid_order([Line(GIFT_SET, "Gift set", D("30.00"), 2)])
    so = await flow.sales_order(order_id)
    # Prima gets the kit's components: 2 bundles x (1 tee + 2 mugs)
    assert sorted((li["sku"], li["quantity"]) for li in so["lines"]) == [(MUG, 4), (TEE, 2)]
    assert {li["bundle"]["sku"] for li in so["lines"]} == {GIFT_SET}
    assert sum(D(li["net_amount"]) for li in so["lines"]) == D("60.00")

    # the warehouse first ships one bundle's worth and a spare mug: one whole bundle
    tee_line = next(li["line_number"] for li in so["lines"] if li["sku"] == TEE)
    mug_line = next(li["line_number"] for li in so["lines"] if li["sku"] == MUG)
    await flow.despatch(so["sales_order_number"], [{"carrier": "Evri",
                                                     "tracking_number": f"EV{order_id}1"}],
                        lines=[{"line_number": tee_line, "sku": TEE, "quantity": 1},
                               {"line_number": mug_line, "sku": MUG, "quantity": 3}])
    first = await flow.wait_fulfillments(order_id, 1)
    bundle_line = line_ids(body)[GIFT_SET]
    assert [(fl["line_item_id"], fl["quantity"]) for fl in first[0]["line_items"]] == [(bundle_line, 1)]

    # then the rest: the second bundle is whole
    await flow.despatch(so["sales_order_number"], [{"carrier": "Evri",
                                                     "tracking_number": f"EV{order_id}2"}])
    made = await flow.wait_fulfillments(order_id, 2)
    assert [(fl["line_item_id"], fl["quantity"]) for fl in made[1]["line_items"]] == [(bundle_line, 1)]
    assert all(fo["status"] == "CLOSED" for fo in await flow.fulfillment_orders(order_id))
    await flow.fulfilment(order_id, lambda f: f["state"] == "fulfilled")


async def test_the_same_despatch_delivered_three_times_gives_one_fulfilment(flow: Flow, stack_kafka_bootstrap, settings):
    order_id, _ = await flow.paid_order([Line(TEE, "Tee", D("20.00"), 1)])
    so = await flow.sales_order(order_id)
    note = await flow.despatch(so["sales_order_number"], [{"carrier": "UPS",
                                                            "tracking_number": f"1Z{order_id}"}])
    await flow.wait_fulfillments(order_id, 1)

    # Kafka delivers at least once: the poller's fact, twice more (as after a lost acknowledgement)
    fact = PrimaDespatchRecorded.from_note(note, polled_at=datetime.now(UTC))
    before = await flow.despatch_facts_handled()
    broker = make_broker(settings.model_copy(update={"kafka_bootstrap": stack_kafka_bootstrap}), "fulfilment-e2e")
    await broker.start()
    try:
        await publish_all(broker, [Outgoing(PRIMA_DESPATCHES.name, fact.key, fact, headers_for(fact))] * 2)
    finally:
        await broker.stop()
    deadline = time.monotonic() + TIMEOUT
    while await flow.despatch_facts_handled() < before + 2:  # the decider has handled both repeats
        assert time.monotonic() < deadline, "the fulfilment decider did not handle the repeated despatch"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # a command decided from them, were one, would reach Shopify by now
    made = await flow.fulfillments(order_id)
    assert len(made) == 1 and made[0]["tracking_numbers"] == [f"1Z{order_id}"]


async def test_a_fulfillment_order_on_hold_gives_an_exception_then_after_release_one_fulfilment(flow: Flow):
    order_id, _ = await flow.paid_order([Line(MUG, "Mug", D("8.00"), 2)])
    so = await flow.sales_order(order_id)
    (fo,) = await flow.fulfillment_orders(order_id)
    num = fo["id"].rsplit("/", 1)[-1]
    (await flow.http.post(f"{flow.shopify}/_sandbox/fulfillment_orders/{num}/hold",
                          json={"reason": "AWAITING_PAYMENT"})).raise_for_status()
    await flow.despatch(so["sales_order_number"], [{"carrier": "DHL",
                                                     "tracking_number": f"JD{order_id}"}])

    held = await flow.fulfilment(order_id, lambda f: f.get("exception") is not None)
    assert held["exception"]["kind"] in ("cannot_allocate", "refused_by_shopify")
    assert "on_hold" in held["exception"]["reason"].lower() or "hold" in held["exception"]["reason"].lower()
    assert await flow.fulfillments(order_id) == []

    (await flow.http.post(f"{flow.shopify}/_sandbox/fulfillment_orders/{num}/release")).raise_for_status()
    r = await flow.http.post(f"{flow.ops}/fulfilments/{order_id}/release", headers=flow.ops_headers)
    assert r.status_code == 202, r.text
    made = await flow.wait_fulfillments(order_id, 1)
    await asyncio.sleep(1.0)
    assert len(await flow.fulfillments(order_id)) == 1
    assert made[0]["tracking_company"] == "DHL Express" and made[0]["tracking_numbers"] == [f"JD{order_id}"]
    released = await flow.fulfilment(order_id, lambda f: f["state"] == "fulfilled")
    assert released.get("exception") is None


async def test_tracking_added_later_to_a_parcel_updates_the_fulfilments_tracking(flow: Flow):
    order_id, _ = await flow.paid_order([Line(TEE, "Tee", D("20.00"), 1)])
    so = await flow.sales_order(order_id)
    note = await flow.despatch(so["sales_order_number"], [{"carrier": "Royal Mail"}])  # no number yet
    (made,) = await flow.wait_fulfillments(order_id, 1)
    assert made["tracking_company"] == "Royal Mail" and made["tracking_numbers"] == []

    r = await flow.http.post(f"{flow.prima}/_sandbox/despatches/{note['despatch_id']}/parcels/1/tracking",
                             json={"tracking_number": f"RM{order_id}LATE"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        (made,) = await flow.fulfillments(order_id)
        if made["tracking_numbers"]:
            break
        await asyncio.sleep(0.2)
    assert made["tracking_numbers"] == [f"RM{order_id}LATE"] and made["tracking_company"] == "Royal Mail"
    assert len(await flow.fulfillments(order_id)) == 1
    await flow.fulfilment(order_id, lambda f: f"RM{order_id}LATE" in f["tracking_numbers"])
