"""Bundles through the real order flow (issue 10, item 1): a paid Shopify order with a bundle
line reaches the Prima sandbox as the bundle's component lines, adding up to the cent.

The pieces are the ones the services run: Prima's kit (a bundle item with its components) is
put in a Prima sandbox of its own (served over HTTP, its own PostgreSQL schema), read by the
Prima poller from `GET /v1/items` and applied to the item-master read model (a scratch
database); the order decider runs as the platform Consumer on throwaway Kafka topics, reading
the item master from PostgreSQL, on the Order application's PostgreSQL event store (a schema
of its own); its CreateSalesOrder is taken from the notification log as the relay publishes it
and sent by the Prima gateway over HTTP; Prima's outcome goes back to the decider over Kafka.
What Prima holds is read back from the sandbox's API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest
from pydantic import SecretStr

from contracts.prima.sales_orders import CreateSalesOrder, PrimaSalesOrderCreated
from contracts.topics import PRIMA_COMMANDS, PRIMA_OUTCOMES, SHOPIFY_ORDERS, TopicSpec
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import Order, OrderState
from projections import item_master
from projections.item_master import ItemMasterProjection
from sandboxes.prima.app import create_app
from services.orders.decider import ACCEPTS, OrderDecider
from services.orders.outbox import ORDER_RELAY
from services.platform.kafka import (
    Consumer,
    Delivery,
    Outgoing,
    make_broker,
    publish_all,
)
from services.platform.outbox import Relay
from services.platform.parking import ParkedCommands, RedriveSchedule
from services.platform.settings import Settings
from services.prima.client import PrimaClient
from services.prima.gateway import PrimaGateway
from services.prima.poller import PrimaIngest
from tests.orders.builders import Line, order, received
from tests.support import throwaway_topics

pytestmark = pytest.mark.integration
SUFFIX = uuid.uuid4().hex[:8]
SCHEMA = f"prima_bundles_{SUFFIX}"
EVENT_STORE = f"bundle_orders_{SUFFIX}"
KEY = "bundle-test-key"
D = Decimal
STOCK = ("TSHIRT-BLK-M", "MUG-WHT", "SOCKS-3PK")
GIFT_SET = {"item_id": "ITM-GIFT-SET", "sku": "GIFT-SET", "description": "Gift set: a tee and two mugs",
            "item_type": "bundle", "components": [
                {"item_id": "ITM-TSHIRT-BLK-M", "sku": "TSHIRT-BLK-M", "quantity": 1},
                {"item_id": "ITM-MUG-WHT", "sku": "MUG-WHT", "quantity": 2}]}


@pytest.fixture(scope="module")
async def prima_url(serve_app, database_url) -> AsyncIterator[str]:
    """A Prima sandbox of its own that knows three stock items, in stock, and the gift set kit."""
    try:
        with serve_app(create_app(database_url, KEY, schema=SCHEMA), "the Prima sandbox") as url:
            async with httpx.AsyncClient(base_url=url) as http:
                items = [*({"item_id": f"ITM-{sku}", "sku": sku, "description": f"{sku} (Prima)",
                            "item_type": "stock"} for sku in STOCK), GIFT_SET]
                (await http.put("/_sandbox/items", json={"items": items})).raise_for_status()
                (await http.put("/_sandbox/stock", json={"stock": [
                    {"sku": sku, "warehouse": "WH-MAIN", "on_hand": 100} for sku in STOCK]})).raise_for_status()
            yield url
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        finally:
            await conn.close()


@pytest.fixture
def prima_settings(settings, prima_url, kafka_bootstrap) -> Settings:
    return settings.model_copy(update={
        "kafka_bootstrap": kafka_bootstrap, "consumer_batch_wait_ms": 20, "prima_base_url": prima_url,
        "prima_api_key": SecretStr(KEY), "prima_max_attempts": 3, "prima_backoff_initial_seconds": 0.01,
        "prima_backoff_max_seconds": 0.01, "prima_timeout_seconds": 5.0})


@pytest.fixture
async def prima(prima_url) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=prima_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as http:
        yield http


@pytest.fixture
async def item_master_pool(scratch_pool) -> asyncpg.Pool:
    await scratch_pool.execute("DELETE FROM readmodel.item_master WHERE sku = ANY($1::text[])",
                               [*STOCK, "GIFT-SET"])
    return scratch_pool


@pytest.fixture
def orders(scratch_url) -> Iterator[OrderApplication]:
    """The Order application on a PostgreSQL event store of its own (a schema of the scratch database)."""
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {EVENT_STORE}")
    app = OrderApplication(env=Settings(database_url=scratch_url, event_store_schema=EVENT_STORE)
                           .eventsourcing_env(create_tables=True))
    yield app
    app.close()


@pytest.fixture
async def topics(kafka_bootstrap) -> AsyncIterator[dict[str, TopicSpec]]:
    async with throwaway_topics(kafka_bootstrap) as make:
        yield {
            "orders": TopicSpec(await make("bundles.orders", 1), "Shopify order id", "test", SHOPIFY_ORDERS.messages, 1),
            "outcomes": TopicSpec(await make("bundles.outcomes", 1), "Shopify order id", "test",
                                  PRIMA_OUTCOMES.messages, 1),
            "dead_letters": TopicSpec(await make("bundles.dead-letters", 1), "id", "test"),
            "operations": TopicSpec(await make("bundles.operations", 1), "id", "test"),
        }


async def until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def test_a_paid_order_with_a_bundle_reaches_prima_as_its_components_adding_up_to_the_cent(
        prima_settings, prima, item_master_pool, orders, topics):
    s = prima_settings
    pool = item_master_pool
    client = PrimaClient(s)
    try:
        # Prima's items, as the Prima poller reads them, into the item-master read model
        facts: list[Outgoing] = []

        async def keep(messages: list[Outgoing]) -> None:
            facts.extend(messages)

        polled = await PrimaIngest(s, pool, client, keep, cursor_prefix=f"bundles-{SUFFIX}-").poll_once(["items"])
        assert polled["items"].ok, polled
        projection = ItemMasterProjection(pool)
        start = (await projection.positions(pool)).get(0, 0)  # after what earlier tests applied
        await projection.handle([Delivery(o.message, projection.topic.name, 0, start + i, o.key)
                                 for i, o in enumerate(facts)])
        kit = (await item_master.items_for(pool, ["GIFT-SET"]))["GIFT-SET"]
        assert [(c.sku, c.quantity) for c in kit.components] == [("TSHIRT-BLK-M", 1), ("MUG-WHT", 2)]

        # a paid order: 3 gift sets at 19.99 with 6.00 off and VAT 8.99, and a tee at 12.00 with VAT 2.00
        shopify_order_id = time.time_ns() // 1000 + uuid.uuid4().int % 1000
        vat = D("0.2")
        paid = order(shopify_order_id, [
            Line("GIFT-SET", "Gift set", D("19.99"), 3, D("6.00"), (("VAT", vat, D("8.99")),)),
            Line("TSHIRT-BLK-M", "T-shirt", D("12.00"), 1, taxes=(("VAT", vat, D("2.00")),)),
        ], taxes_included=True, currency="GBP")
        bundle_line = paid.lines[0].line_id

        # the order decider, as its process runs it: the platform Consumer on Kafka
        broker = make_broker(s, "test-bundles-decider")
        decider = OrderDecider(orders, lambda skus: item_master.items_for(pool, skus))
        Consumer(broker, s, group=f"test-bundles-{SUFFIX}", topics=[topics["orders"], topics["outcomes"]],
                 accepts=ACCEPTS, handler=decider.handle, operations_topic=topics["operations"].name,
                 dead_letter_topic=topics["dead_letters"].name)
        published: list[Outgoing] = []

        async def publish(messages: list[Outgoing]) -> None:
            published.extend(messages)

        gateway = PrimaGateway(s, client, ParkedCommands(pool, RedriveSchedule.from_settings(s)), publish)
        await broker.start()
        try:
            await publish_all(broker, [Outgoing(topics["orders"].name, str(shopify_order_id).encode(),
                                                received(paid))])

            def decided() -> Order | None:
                return orders.find_order(shopify_order_id)

            async def sent() -> bool:
                found = decided()
                return found is not None and found.state is OrderState.SENT

            await until(sent)
            # the command as the relay takes it from the notification log to prima.commands.v1
            out, _ = Relay(ORDER_RELAY, s, broker=None, app=orders).read(0)
            [command] = [o.message for o in out if o.topic == PRIMA_COMMANDS.name
                         and isinstance(o.message, CreateSalesOrder) and o.message.shopify_order_id == shopify_order_id]
            await gateway.handle([Delivery(command, PRIMA_COMMANDS.name, 0, 0, None)])
            [created] = [o.message for o in published]
            assert isinstance(created, PrimaSalesOrderCreated)
            await publish_all(broker, [Outgoing(topics["outcomes"].name, str(shopify_order_id).encode(), created)])

            async def in_prima() -> bool:
                found = decided()
                return found is not None and found.state is OrderState.IN_PRIMA

            await until(in_prima)
        finally:
            await broker.stop()
    finally:
        await client.aclose()

    response = await prima.get(f"/v1/sales-orders/{created.sales_order_number}")
    response.raise_for_status()
    held = response.json()
    lines = held["lines"]
    assert "GIFT-SET" not in [line["sku"] for line in lines]  # the kit never reaches Prima as a line
    parts = [line for line in lines if line["external_line_id"] == bundle_line]
    # 59.97 over 9 units (3 tees, 6 mugs): 6.66 each, the 3 cents left to the last three mugs
    assert [(line["sku"], line["quantity"], line["unit_price"]) for line in parts] == [
        ("TSHIRT-BLK-M", 3, "6.66"), ("MUG-WHT", 3, "6.66"), ("MUG-WHT", 3, "6.67")]
    assert sum(D(line["net_amount"]) for line in parts) == D("53.97")  # 3 x 19.99 - 6.00
    assert sum(D(line["discount_amount"]) for line in parts) == D("6.00")
    assert sum(D(line["tax_amount"]) for line in parts) == D("8.99")
    assert all(D(line["net_amount"]) == line["quantity"] * D(line["unit_price"]) - D(line["discount_amount"])
               for line in lines)
    assert held["totals"]["total"] == f"{paid.total_price.amount}" == "65.97"
    assert held["totals"]["tax"] == f"{paid.total_tax.amount}"
    # Prima allocated the components themselves: 4 tees (3 in the sets, 1 alone) and 6 mugs
    stock = (await prima.get("/v1/stock", params={"limit": 100})).json()["stock"]
    allocated = {row["sku"]: row["allocated"] for row in stock if row["warehouse"] == "WH-MAIN"}
    assert (allocated["TSHIRT-BLK-M"], allocated["MUG-WHT"]) == (4, 6)
