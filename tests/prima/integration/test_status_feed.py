"""Issue 15, item 5: despatch and cancellation by polling OrderStatus (services/prima/omlink/
status_feed.py). With OM link there is no despatch feed: the Prima poller asks OrderStatus for each
open order, paced within the request budget, and turns Despatched into the PrimaDespatchRecorded
the fulfilment decider consumes (once, whatever the number of passes), Cancelled into an
operator's signal, and leaves Part Despatched alone.

Real parts: the Prima sandbox's OM link served in-process over HTTP (zeep, from its WSDL) on a
migrated scratch database of this module's, where the order-sync and order-fulfilment read models
(rows put in by the test, as the projector would have them) and the feed's table live; orders
created in the sandbox through NewOrder and despatched or cancelled through its REST controls;
the tests' own Kafka broker (a throwaway despatch topic). Prima's failures come from the
sandbox's fault switches, Kafka's from `publish`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from sandboxes.prima.app import create_app
from services.platform.kafka import make_broker, publish_all
from services.prima.omlink.adapter import OmLinkAdapter
from services.prima.omlink.status_feed import OrderStatusFeed
from tests.inventory.integration.support import end_offsets, published_since
from tests.prima.omlink_orders import card_payment, config, paid_order
from tests.support import scratch_database, throwaway_topics

pytestmark = pytest.mark.integration

KEY = "status-feed-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SCHEMA = "status_feed_sandbox"
SERVICE = "/wsa/wsa1"
order_ids = itertools.count(7_400_001)
# the order-fulfilment read model's lines of paid_order(): two tees (line 9001) and a mug (9002)
LINES = [{"line_item_id": 9001, "sku": "TEE-BLK-M", "quantity": 2, "components": [], "fulfilled": 0},
         {"line_item_id": 9002, "sku": "MUG-STONE", "quantity": 1, "components": [], "fulfilled": 0}]


@pytest.fixture(scope="module")
async def database(database_url):
    async with scratch_database(database_url, "status_feed") as url:
        yield url


@pytest.fixture(scope="module")
async def pool(database):
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def sandbox_url(database, serve_app):
    with serve_app(create_app(database, KEY, schema=SCHEMA), "the Prima sandbox") as url:
        yield url


@pytest.fixture
async def sandbox(sandbox_url, pool):
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10, headers=AUTH) as client:
        assert (await client.post("/_sandbox/reset", params={"items": "true", "stock": "true"})).status_code == 200
        await pool.execute("TRUNCATE readmodel.order_sync, readmodel.order_fulfilment, ingest.omlink_order_status")
        yield client
        await client.delete("/_sandbox/faults")


@pytest.fixture(scope="module")
async def topic(kafka_bootstrap):
    async with throwaway_topics(kafka_bootstrap) as make:
        yield await make("omlink-despatches")


@pytest.fixture(scope="module")
async def broker(settings, kafka_bootstrap):
    broker = make_broker(settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap}), "status-feed-test")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture
async def omlink(sandbox_url):
    async with OmLinkAdapter(config(f"{sandbox_url}{SERVICE}")) as adapter:
        yield adapter


@pytest.fixture
async def make_feed(settings, pool, sandbox_url, sandbox, broker, topic):
    """Feeds on this module's topic, asking the sandbox at 20 requests a second, each order at most
    every `status_interval_seconds` (60 unless said)."""
    adapters: list[OmLinkAdapter] = []

    def make(publish=None, pass_seconds: float = 30.0, **changes) -> OrderStatusFeed:
        adapter = OmLinkAdapter(config(f"{sandbox_url}{SERVICE}", **{
            "status_requests_per_second": 20.0, "status_interval_seconds": 60.0, **changes}))
        adapters.append(adapter)
        return OrderStatusFeed(settings, pool, adapter, publish or (lambda out: publish_all(broker, out)),
                               despatch_topic=topic, pass_seconds=pass_seconds)

    yield make
    for adapter in adapters:
        await adapter.aclose()


async def placed(omlink: OmLinkAdapter, pool: asyncpg.Pool, sandbox: httpx.AsyncClient, *,
                 lines: list | None = LINES) -> tuple[int, str]:
    """A paid order sent to the sandbox through NewOrder, and the read models as the projector
    has them once Prima created it (its lines in the order-fulfilment read model unless None).
    Returns the Shopify order id and the sandbox's sales order number."""
    command = paid_order(next(order_ids))
    created = await omlink.create_sales_order(command, [card_payment(command)])
    order_id, now = command.shopify_order_id, datetime.now(UTC)
    await pool.execute(
        """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, prima_sales_order_number,
           first_received_at, in_prima_at, last_event_at, last_event_version)
           VALUES ($1, $2, 'in_prima', $3, $4, $4, $4, 4)""", order_id, f"#{order_id}", created.sales_order_number, now)
    if lines is not None:
        await put_lines(pool, order_id, lines)
    held = (await sandbox.get(f"/_sandbox/omlink/orders/{created.sales_order_number}")).json()
    return order_id, held["sales_order"]["sales_order_number"]


async def put_lines(pool: asyncpg.Pool, order_id: int, lines: list) -> None:
    await pool.execute(
        """INSERT INTO readmodel.order_fulfilment (shopify_order_id, state, lines, opened_at, updated_at,
           last_event_version) VALUES ($1, 'awaiting_despatch', $2::jsonb, now(), now(), 2)""",
        order_id, json.dumps(lines))


async def despatch(sandbox: httpx.AsyncClient, so_number: str, **body) -> dict:
    answer = await sandbox.post(f"/_sandbox/sales-orders/{so_number}/despatch", json=body)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


async def omlink_posts(sandbox: httpx.AsyncClient) -> int:
    return sum((await sandbox.get("/_sandbox/stats")).json()["requests"].get(f"POST {SERVICE}", {}).values())


async def row(pool: asyncpg.Pool, order_id: int) -> dict | None:
    found = await pool.fetchrow("SELECT * FROM ingest.omlink_order_status WHERE shopify_order_id = $1", order_id)
    return dict(found) if found is not None else None


async def facts(kafka_bootstrap: str, mark) -> list[dict]:
    return [{"key": r.key.decode(), **json.loads(r.value)} for r in await published_since(kafka_bootstrap, mark)]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------------------------ despatched


async def test_given_an_order_despatched_in_prima_when_polled_again_and_again_then_exactly_one_despatch_fact(
        sandbox, omlink, make_feed, pool, topic, kafka_bootstrap):
    order_id, so_number = await placed(omlink, pool, sandbox)
    feed = make_feed(status_interval_seconds=0.01)
    mark = await end_offsets(kafka_bootstrap, topic)

    before = await feed.poll_once()  # not despatched yet: New
    assert (before.ok, before.pages, before.published) == (True, 1, 0)
    assert (await row(pool, order_id))["port_status"] == "open"
    await despatch(sandbox, so_number, parcels=[{"carrier": "DPD", "tracking_number": "15501234567890"}])
    await asyncio.sleep(0.02)
    results = [await feed.poll_once() for _ in range(4)]

    assert [(r.ok, r.pages, r.published) for r in results] == [(True, 1, 1), (True, 0, 0), (True, 0, 0),
                                                                 (True, 0, 0)]
    published = await facts(kafka_bootstrap, mark)
    assert len(published) == 1
    fact = published[0]
    assert (fact["key"], fact["message_type"], fact["shopify_order_id"]) == (
        str(order_id), "PrimaDespatchRecorded", order_id)
    assert (fact["despatch_id"], fact["version"], fact["change"]) == (f"SHOP{order_id}/D1", 1, "despatched")
    assert fact["sales_order_number"] == f"SHOP{order_id}"
    assert [(p["carrier"], p["tracking_number"]) for p in fact["parcels"]] == [("DPD", "15501234567890")]
    assert fact["tracking_given_by_prima"] is True
    assert [(line["external_line_id"], line["sku"], line["quantity"]) for line in fact["lines"]] == [
        (9001, "TEE-BLK-M", 2), (9002, "MUG-STONE", 1)]
    stored = await row(pool, order_id)
    assert (stored["status"], stored["port_status"], stored["despatch_id"]) == (
        "Despatched", "despatched", f"SHOP{order_id}/D1")
    assert stored["published_at"] is not None and stored["closed_at"] is not None
    assert json.loads(stored["details"])["Carrier"] == "DPD"


async def test_given_prima_names_no_tracking_number_when_despatched_then_the_fact_is_flagged_without_tracking(
        sandbox, omlink, make_feed, pool, topic, kafka_bootstrap):
    order_id, so_number = await placed(omlink, pool, sandbox)
    await despatch(sandbox, so_number, parcels=[{"carrier": "Royal Mail"}])
    mark = await end_offsets(kafka_bootstrap, topic)

    assert (await make_feed().poll_once()).published == 1

    [fact] = await facts(kafka_bootstrap, mark)
    assert fact["despatch_id"] == f"SHOP{order_id}/D1"
    assert [(p["carrier"], p["tracking_number"]) for p in fact["parcels"]] == [("Royal Mail", None)]
    assert fact["tracking_given_by_prima"] is False


async def test_given_kafka_failing_when_despatched_then_nothing_is_stored_and_the_next_pass_publishes_it(
        sandbox, omlink, make_feed, pool, topic, kafka_bootstrap):
    order_id, so_number = await placed(omlink, pool, sandbox)
    await despatch(sandbox, so_number, parcels=[{"carrier": "UPS", "tracking_number": "1Z999AA10123456784"}])
    mark = await end_offsets(kafka_bootstrap, topic)

    async def refused(out):
        raise ConnectionError("Kafka unreachable")

    failed = await make_feed(publish=refused).poll_once()
    assert (failed.outcome, failed.published) == ("kafka_error", 0)
    assert await row(pool, order_id) is None  # as if never asked: asked again at once

    healed = await make_feed().poll_once()
    assert (healed.ok, healed.published) == (True, 1)
    assert [f["despatch_id"] for f in await facts(kafka_bootstrap, mark)] == [f"SHOP{order_id}/D1"]


async def test_given_the_order_lines_not_in_the_read_model_yet_when_despatched_then_published_once_they_are(
        sandbox, omlink, make_feed, pool, topic, kafka_bootstrap):
    order_id, so_number = await placed(omlink, pool, sandbox, lines=None)
    await despatch(sandbox, so_number, parcels=[{"carrier": "DPD", "tracking_number": "15509999"}])
    feed = make_feed(status_interval_seconds=0.01)
    mark = await end_offsets(kafka_bootstrap, topic)

    waiting = await feed.poll_once()
    assert (waiting.ok, waiting.pages, waiting.published) == (True, 1, 0)
    stored = await row(pool, order_id)
    assert stored["closed_at"] is None and "not in the order-fulfilment read model" in stored["last_error"]

    await put_lines(pool, order_id, LINES)
    await asyncio.sleep(0.02)
    assert (await feed.poll_once()).published == 1
    assert len(await facts(kafka_bootstrap, mark)) == 1


# ------------------------------------------------------------------------------------ the budget


async def test_given_more_open_orders_than_a_pass_allows_then_paced_within_budget_oldest_asked_first(
        sandbox, omlink, make_feed, pool):
    orders = [(await placed(omlink, pool, sandbox))[0] for _ in range(5)]
    # 10 requests a second, passes of 0.3 s: 3 orders a pass, one every 0.1 s
    feed = make_feed(status_requests_per_second=10.0, pass_seconds=0.3, status_interval_seconds=0.2)
    posts = await omlink_posts(sandbox)

    started = time.monotonic()
    first = await feed.poll_once()
    took = time.monotonic() - started

    assert (first.ok, first.pages) == (True, 3)
    assert await omlink_posts(sandbox) - posts == 3
    assert took >= 0.2  # three requests 0.1 s apart, never at once
    asked = {o: (await row(pool, o)) for o in orders}
    assert [o for o in orders if asked[o] is not None] == orders[:3]  # never asked: by order id

    await asyncio.sleep(0.2)  # the first three are due again
    second = await feed.poll_once()

    assert second.pages == 3 and await omlink_posts(sandbox) - posts == 6
    again = {o: (await row(pool, o))["asked_at"] for o in orders}
    assert {o for o in orders[:3] if again[o] != asked[o]["asked_at"]} == {orders[0]}  # the oldest asked
    stamps = sorted(again.values())
    assert all((b - a).total_seconds() >= 0.09 for a, b in itertools.pairwise(stamps))  # spread, across passes

    idle = make_feed(status_interval_seconds=60.0)
    assert (await idle.poll_once()).pages == 0  # every order asked within the interval: none is due
    assert await omlink_posts(sandbox) - posts == 6


# ------------------------------------------------------------------------------------ other statuses


async def test_given_an_order_cancelled_in_prima_when_polled_then_surfaced_once_and_no_longer_asked(
        sandbox, omlink, make_feed, pool, topic, kafka_bootstrap):
    order_id, so_number = await placed(omlink, pool, sandbox)
    cancelled = await sandbox.post(f"/v1/sales-orders/{so_number}/cancellation",
                                   json={"reason": "customer rang the warehouse", "cancellable_statuses": ["open"]},
                                   headers={"Idempotency-Key": f"cancel-{order_id}"})
    assert cancelled.status_code == 200, cancelled.text
    feed = make_feed(status_interval_seconds=0.01)
    counted = sample("shopify_prima_omlink_cancelled_in_prima_total")
    mark = await end_offsets(kafka_bootstrap, topic)

    result = await feed.poll_once()
    await asyncio.sleep(0.02)
    later = await feed.poll_once()

    assert (result.ok, result.pages, result.published) == (True, 1, 0)
    assert later.pages == 0  # closed: not asked again
    stored = await row(pool, order_id)
    assert (stored["status"], stored["port_status"]) == ("Cancelled", "cancelled")
    assert stored["closed_at"] is not None and stored["despatch_id"] is None
    assert sample("shopify_prima_omlink_cancelled_in_prima_total") - counted == 1
    assert await facts(kafka_bootstrap, mark) == []


async def test_given_an_order_part_despatched_when_polled_then_nothing_is_published_and_it_is_asked_again(
        sandbox, omlink, make_feed, pool, topic, kafka_bootstrap):
    order_id, so_number = await placed(omlink, pool, sandbox)
    await despatch(sandbox, so_number, lines=[{"sku": "TEE-BLK-M", "quantity": 1}], parcels=[{"carrier": "DPD"}])
    feed = make_feed(status_interval_seconds=0.01)
    mark = await end_offsets(kafka_bootstrap, topic)

    first = await feed.poll_once()
    await asyncio.sleep(0.02)
    again = await feed.poll_once()

    assert (first.pages, first.published, again.pages, again.published) == (1, 0, 1, 0)
    stored = await row(pool, order_id)
    assert (stored["status"], stored["port_status"], stored["closed_at"]) == ("Part Despatched", "picking", None)
    assert await facts(kafka_bootstrap, mark) == []


async def test_given_an_order_prima_does_not_know_when_polled_then_counted_and_asked_again_later(
        sandbox, make_feed, pool):
    order_id = next(order_ids)
    await pool.execute(
        """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, prima_sales_order_number,
           first_received_at, last_event_at, last_event_version) VALUES ($1, '#1', 'in_prima', $2, now(), now(), 3)""",
        order_id, f"SHOP{order_id}")
    counted = sample("shopify_prima_omlink_order_status_answers_total", status="unknown")

    result = await make_feed().poll_once()

    assert (result.ok, result.pages, result.published) == (True, 1, 0)
    stored = await row(pool, order_id)
    assert stored["status"] is None and stored["closed_at"] is None
    assert "does not know" in stored["last_error"]
    assert sample("shopify_prima_omlink_order_status_answers_total", status="unknown") - counted == 1


# ------------------------------------------------------------------------------------ faults


async def test_given_prima_unavailable_when_polled_then_state_unchanged_and_the_next_pass_heals(
        sandbox, omlink, make_feed, pool, topic, kafka_bootstrap):
    order_id, so_number = await placed(omlink, pool, sandbox)
    await despatch(sandbox, so_number, parcels=[{"carrier": "DPD", "tracking_number": "15501111"}])
    mark = await end_offsets(kafka_bootstrap, topic)
    feed = make_feed()
    posts = await omlink_posts(sandbox)
    answer = await sandbox.post("/_sandbox/faults", json={"path_prefix": SERVICE, "method": "POST",
                                                          "fail_next": 50, "fail_status": 503})
    assert answer.status_code == 200

    failed = await feed.poll_once()

    assert (failed.outcome, failed.pages, failed.published) == ("prima_unavailable", 0, 0)
    assert await omlink_posts(sandbox) - posts == 1  # one request: no retries outside the budget
    assert await row(pool, order_id) is None

    await sandbox.delete("/_sandbox/faults")
    healed = await feed.poll_once()

    assert (healed.ok, healed.published) == (True, 1)
    assert [f["despatch_id"] for f in await facts(kafka_bootstrap, mark)] == [f"SHOP{order_id}/D1"]
