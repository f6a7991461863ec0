"""The Shopify gateway's fulfilments against the Shopify sandbox over HTTP (uvicorn on a free
loopback port) and a throwaway PostgreSQL database (the journal gateway.fulfilment_writes, parked
commands): one fulfilment per despatch however often its command comes, a lost answer adopted, a
hold refused then made once released, tracking replaced, Shopify down then re-driven; and the two
consumers of shopify.commands.v1 on the tests' Kafka, each with its own commands."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from pydantic import SecretStr, TypeAdapter

from contracts.platform import RetryParkedCommand
from contracts.prima.inventory import sku_key
from contracts.shopify.fulfilments import (
    CreateFulfilment,
    FulfillmentOrderLineQuantity,
    FulfillmentOrderLines,
    FulfilmentCreated,
    FulfilmentOutcome,
    FulfilmentRefused,
    FulfilmentTrackingRefused,
    FulfilmentTrackingUpdated,
    LineQuantity,
    TrackingInfo,
    UpdateFulfilmentTracking,
)
from contracts.shopify.inventory import (
    InventoryLevelConfirmed,
    SetInventoryLevel,
    ShopifyOutcome,
)
from contracts.topics import (
    OPERATIONS,
    SHOPIFY_COMMANDS,
    SHOPIFY_OUTCOMES,
    TOPICS,
    order_key,
)
from sandboxes.shopify.orders import Line, order_body
from services.platform.kafka import (
    Delivery,
    Outgoing,
    _accepted,
    decode_record,
    make_broker,
    publish_all,
)
from services.shopify.admin import ShopifyAdmin
from services.shopify.fulfilment_writer import FulfilmentWriter
from services.shopify.gateway import (
    FULFILMENT_COMMANDS,
    INVENTORY_COMMANDS,
    ShopifyGateway,
    consumer,
    fulfilment_consumer,
)
from tests.inventory.integration.support import end_offsets, eventually, published_since
from tests.support import scratch_database, throwaway_topics

pytestmark = pytest.mark.integration

TOKEN = "fulfilment-gateway-token"
MAIN = "gid://shopify/Location/1"
ORDER = 8101
OUTCOMES = TypeAdapter(FulfilmentOutcome)


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shopify_url(serve_app):
    from sandboxes.shopify.app import create_app

    app = create_app("http://127.0.0.1:9/webhooks/shopify", "sandbox-secret", access_token=TOKEN, plan="plus")
    with serve_app(app, "the Shopify sandbox") as url:
        yield url


@pytest.fixture(scope="module")
async def pool(database_url):
    async with scratch_database(database_url, "fulfilment_gateway") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
        yield pool
        await pool.close()


@pytest.fixture
def gw_settings(settings, shopify_url):
    return settings.model_copy(update={
        "shopify_admin_url": shopify_url, "shopify_access_token": SecretStr(TOKEN),
        "shopify_backoff_initial_seconds": 0.05, "shopify_backoff_max_seconds": 0.2, "shopify_max_attempts": 3,
        "parked_redrive_initial_seconds": 0.01, "inventory_debounce_seconds": 0.2,
    })


class Shop:
    """The sandbox's controls: a paid order of two tees and three mugs at one location."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def paid_order(self, order_id: int = ORDER) -> None:
        body = order_body(order_id, [Line("TEE", "Tee", Decimal("20.00"), 2), Line("MUG", "Mug", Decimal("8.50"), 3)],
                          taxes_included=True, currency="GBP")
        (await self.client.post("/_sandbox/orders", json={"orders": [body]})).raise_for_status()

    async def fulfillment_orders(self, order_id: int = ORDER) -> list[dict[str, Any]]:
        return (await self.client.get("/_sandbox/fulfillment_orders", params={"order_id": order_id})).json()

    async def lines(self, order_id: int = ORDER) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        """SKU -> (its fulfillment order, its fulfillment order line item)."""
        return {line["sku"]: (fo, line) for fo in await self.fulfillment_orders(order_id) for line in fo["line_items"]}

    async def fulfillments(self, order_id: int = ORDER) -> list[dict[str, Any]]:
        return (await self.client.get("/_sandbox/fulfillments", params={"order_id": order_id})).json()

    async def create_calls(self) -> int:
        stats = (await self.client.get("/_sandbox/stats")).json()
        return (stats.get("mutation_calls") or {}).get("fulfillmentCreate", 0)

    async def faults(self, **faults: Any) -> None:
        if faults:
            (await self.client.post("/_sandbox/faults", json=faults)).raise_for_status()
        else:
            (await self.client.delete("/_sandbox/faults")).raise_for_status()


@pytest.fixture
async def shop(shopify_url):
    async with httpx.AsyncClient(base_url=shopify_url, timeout=30) as client:
        (await client.post("/_sandbox/reset")).raise_for_status()
        (await client.delete("/_sandbox/faults")).raise_for_status()
        (await client.post("/_sandbox/locations", json={"locations": [{"id": MAIN, "name": "Main"}]})).raise_for_status()
        seeded = await client.post("/_sandbox/catalog", json={"variants": [
            {"sku": "TEE", "levels": {MAIN: 50}}, {"sku": "MUG", "levels": {MAIN: 50}}]})
        seeded.raise_for_status()
        (await client.post("/_sandbox/stats/reset")).raise_for_status()
        shop = Shop(client)
        await shop.paid_order()
        yield shop


@pytest.fixture
async def admin(gw_settings):
    async with ShopifyAdmin(gw_settings) as client:
        yield client


@pytest.fixture
async def writer(admin, pool, gw_settings):
    writer = FulfilmentWriter(admin, pool, gw_settings)
    yield writer
    await writer.aclose()


class Published:
    """The gateway's `publish`, into a list."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def __call__(self, messages: list[Outgoing]) -> None:
        self.messages.extend(messages)


@pytest.fixture
async def gateway(gw_settings, admin, pool):
    published = Published()
    gateway = ShopifyGateway(gw_settings, admin, pool, published)
    gateway.published = published
    yield gateway
    await gateway.aclose()


def create(shop_lines: dict[str, tuple[dict, dict]], quantities: dict[str, int], *, numbers: tuple[str, ...] = (),
           company: str | None = "Royal Mail", despatch: str | None = None, order_id: int = ORDER) -> CreateFulfilment:
    """The fulfilment of these SKUs' units, as the OrderFulfilment aggregate decides it."""
    despatch = despatch or f"D-{uuid.uuid4().hex[:10]}"
    groups: dict[str, list[FulfillmentOrderLineQuantity]] = {}
    for sku, quantity in quantities.items():
        fo, line = shop_lines[sku]
        groups.setdefault(fo["id"], []).append(FulfillmentOrderLineQuantity(id=line["id"], quantity=quantity))
    return CreateFulfilment(
        command_id=uuid.uuid4(), idempotency_key=f"prima-despatch:{despatch}", shopify_order_id=order_id,
        despatch_id=despatch, covers=(despatch,), issued_at=datetime.now(UTC),
        line_items_by_fulfillment_order=tuple(FulfillmentOrderLines(fulfillment_order_id=fo, fulfillment_order_line_items=tuple(items))
                                              for fo, items in groups.items()),
        line_quantities=tuple(LineQuantity(line_item_id=shop_lines[sku][1]["line_item_id"], quantity=quantity)
                              for sku, quantity in quantities.items()),
        tracking=TrackingInfo(company=company, numbers=numbers,
                              urls=tuple(f"https://track.example/{n}" for n in numbers)),
        notify_customer=True)


def again(command: CreateFulfilment) -> CreateFulfilment:
    """The same despatch decided again (a re-driven attempt): same key, a new command id."""
    return command.model_copy(update={"command_id": uuid.uuid4(), "issued_at": datetime.now(UTC)})


async def journal(pool: asyncpg.Pool, key: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM gateway.fulfilment_writes WHERE idempotency_key = $1", key)


class LoseAnswer(httpx.AsyncBaseTransport):
    """Sends every request to Shopify, but loses the answer of the first `times` fulfillmentCreate
    requests (a read timeout after Shopify made the fulfilment)."""

    def __init__(self, times: int = 1) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.times = times
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.lost < self.times and json.loads(request.content).get("operationName") == "FulfillmentCreate":
            await response.aread()
            await response.aclose()
            self.lost += 1
            raise httpx.ReadTimeout("the answer was lost on the way back", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def losing(settings, times: int = 1) -> tuple[ShopifyAdmin, LoseAnswer]:
    transport = LoseAnswer(times)
    once = ShopifyAdmin(settings.model_copy(update={"shopify_max_attempts": 1}),
                        httpx.AsyncClient(transport=transport, timeout=10))
    return once, transport


# ------------------------------------------------------------------------------ creating


async def test_a_despatch_in_two_parcels_is_one_fulfilment_with_two_tracking_numbers(shop, writer, pool):
    # Given the whole order despatched in two parcels
    command = create(await shop.lines(), {"TEE": 2, "MUG": 3}, numbers=("RM1", "RM2"))
    # When the gateway writes it
    written = await writer.execute(command)
    # Then Shopify has one fulfilment of everything, with both numbers and their URLs
    outcome = written.outcome
    assert isinstance(outcome, FulfilmentCreated) and outcome.adopted is False
    assert (outcome.command_id, outcome.shopify_order_id, outcome.despatch_id) == (
        command.command_id, ORDER, command.despatch_id)
    [made] = await shop.fulfillments()
    assert (outcome.fulfilment_id, outcome.fulfilment_name) == (made["id"], made["name"]) == (made["id"], "#8101.1")
    assert (made["tracking_company"], made["tracking_numbers"], made["tracking_urls"]) == (
        "Royal Mail", ["RM1", "RM2"], ["https://track.example/RM1", "https://track.example/RM2"])
    assert sorted((line["sku"], line["quantity"]) for line in made["line_items"]) == [("MUG", 3), ("TEE", 2)]
    assert made["notify_customer"] is True
    assert [fo["status"] for fo in await shop.fulfillment_orders()] == ["CLOSED"]
    # And the journal has the attempt with what the order had before, and the fulfilment made
    row = await journal(pool, command.idempotency_key)
    assert (row["kind"], row["fulfilment_id"], row["answer"], row["known_fulfilment_ids"], row["attempts"]) == (
        "create", made["id"], "created", [], 1)
    assert json.loads(row["command"])["command_id"] == str(command.command_id)


async def test_a_partial_despatch_then_the_rest_are_two_fulfilments(shop, writer):
    lines = await shop.lines()
    # Given one tee despatched, then the other: the same line and quantity twice, two despatches
    first = create(lines, {"TEE": 1}, numbers=("P1",))
    rest = create(lines, {"TEE": 1, "MUG": 3}, numbers=("P2",))
    first_written, rest_written = await writer.execute(first), await writer.execute(rest)
    # Then two fulfilments, neither adopted, and the order is fully fulfilled
    assert [type(w.outcome) for w in (first_written, rest_written)] == [FulfilmentCreated, FulfilmentCreated]
    assert [w.outcome.adopted for w in (first_written, rest_written)] == [False, False]
    made = await shop.fulfillments()
    assert [f["id"] for f in made] == [first_written.outcome.fulfilment_id, rest_written.outcome.fulfilment_id]
    assert [f["tracking_numbers"] for f in made] == [["P1"], ["P2"]]
    assert [fo["status"] for fo in await shop.fulfillment_orders()] == ["CLOSED"]


async def test_a_second_despatch_of_the_same_units_is_not_taken_for_an_earlier_fulfilment(shop, writer):
    """The partial fulfilment already made carries the same line and quantity as the next despatch;
    the next despatch's key has no earlier attempt, so nothing is adopted: it is made."""
    lines = await shop.lines()
    await writer.execute(create(lines, {"TEE": 1}))
    second = create(lines, {"TEE": 1})
    written = await writer.execute(second)
    assert isinstance(written.outcome, FulfilmentCreated) and written.outcome.adopted is False
    assert len(await shop.fulfillments()) == 2 and await shop.create_calls() == 2


async def test_the_same_command_three_times_is_one_fulfilment(shop, gateway, pool):
    command = create(await shop.lines(), {"TEE": 2, "MUG": 3}, numbers=("RM9",))
    # When the same command is delivered three times (a redelivery, then a re-driven attempt)
    for message in (command, command, again(command)):
        await gateway.handle_fulfilments([Delivery(message, SHOPIFY_COMMANDS.name, 0, 0, order_key(ORDER))])
    # Then Shopify made one fulfilment, asked once, and each delivery was answered
    [made] = await shop.fulfillments()
    assert await shop.create_calls() == 1
    outcomes = [m.message for m in gateway.published.messages]
    assert [type(o) for o in outcomes] == [FulfilmentCreated] * 3
    assert [o.adopted for o in outcomes] == [False, True, True]
    assert {o.fulfilment_id for o in outcomes} == {made["id"]}
    assert {o.fulfilment_name for o in outcomes} == {made["name"]}
    assert [m.key for m in gateway.published.messages] == [order_key(ORDER)] * 3
    assert outcomes[2].command_id != command.command_id  # the answer names the command that asked
    assert (await journal(pool, command.idempotency_key))["answer"] == "adopted"


async def test_the_same_despatch_written_twice_at_once_is_one_fulfilment(shop, admin, pool, gw_settings):
    """A redelivery in the consumer and a re-drive of the same despatch at the same moment (or two
    gateways during a rebalance): the order's advisory lock makes the second wait, find the first's
    fulfilment in the journal and adopt it."""
    command = create(await shop.lines(), {"TEE": 2, "MUG": 3}, numbers=("TWICE",))
    writers = [FulfilmentWriter(admin, pool, gw_settings), FulfilmentWriter(admin, pool, gw_settings)]
    try:
        results = await asyncio.gather(writers[0].execute(command), writers[1].execute(again(command)))
    finally:
        for w in writers:
            await w.aclose()
    assert [type(r.outcome) for r in results] == [FulfilmentCreated, FulfilmentCreated]
    assert sorted(r.outcome.adopted for r in results) == [False, True]
    [made] = await shop.fulfillments()
    assert {r.outcome.fulfilment_id for r in results} == {made["id"]} and await shop.create_calls() == 1


async def test_an_answer_lost_after_shopify_made_the_fulfilment_is_adopted(shop, admin, pool, gw_settings):
    # Given Shopify makes the fulfilment but its answer never arrives (a read timeout)
    once, transport = losing(gw_settings)
    writer = FulfilmentWriter(admin, pool, gw_settings, once=once)
    command = create(await shop.lines(), {"MUG": 3}, numbers=("LOST1",))
    try:
        written = await writer.execute(command)
    finally:
        await once.aclose()
    # Then the gateway read the order again, found the fulfilment its attempt made, and adopted it
    assert transport.lost == 1
    [made] = await shop.fulfillments()
    assert await shop.create_calls() == 1
    assert isinstance(written.outcome, FulfilmentCreated)
    assert (written.outcome.adopted, written.outcome.fulfilment_id) == (True, made["id"])
    row = await journal(pool, command.idempotency_key)
    assert (row["fulfilment_id"], row["answer"], row["attempts"]) == (made["id"], "adopted", 1)


async def test_an_answer_lost_then_parked_is_adopted_by_the_next_attempt(shop, admin, pool, gw_settings):
    """The answer lost and no round left (the process stopped, or the command was parked): the
    journal row says an attempt was made knowing no fulfilment; the next delivery finds the one it
    made and adopts it."""
    settings = gw_settings.model_copy(update={"shopify_max_attempts": 1})
    once, _ = losing(settings)
    command = create(await shop.lines(), {"TEE": 2}, numbers=("LOST2",))
    try:
        parked = await FulfilmentWriter(admin, pool, settings, once=once).execute(command)
    finally:
        await once.aclose()
    assert parked.outcome is None and "ReadTimeout" in parked.park_reason
    assert len(await shop.fulfillments()) == 1  # Shopify did make it

    restarted = FulfilmentWriter(admin, pool, gw_settings)
    try:
        written = await restarted.execute(again(command))
    finally:
        await restarted.aclose()
    [made] = await shop.fulfillments()
    assert isinstance(written.outcome, FulfilmentCreated) and written.outcome.adopted is True
    assert written.outcome.fulfilment_id == made["id"] and await shop.create_calls() == 1


# ------------------------------------------------------------------------------ refusals


async def test_a_fulfillment_order_on_hold_is_refused_then_made_once_released(shop, writer, pool):
    lines = await shop.lines()
    fo = lines["TEE"][0]
    number = fo["id"].rsplit("/", 1)[1]
    (await shop.client.post(f"/_sandbox/fulfillment_orders/{number}/hold")).raise_for_status()
    command = create(lines, {"TEE": 2})
    # When the gateway writes a fulfilment of a fulfillment order on hold
    refused = await writer.execute(command)
    # Then Shopify's error is the answer, and nothing is made
    assert isinstance(refused.outcome, FulfilmentRefused)
    on_hold = f"fulfillment: Fulfillment order {number} has an unfulfillable status= on_hold."
    assert refused.outcome.user_errors == (on_hold,)
    assert await shop.fulfillments() == []
    row = await journal(pool, command.idempotency_key)
    assert (row["fulfilment_id"], row["answer"], row["user_errors"]) == (None, "refused", list(refused.outcome.user_errors))
    # When the hold is released and the same despatch comes again (the exception re-driven)
    (await shop.client.post(f"/_sandbox/fulfillment_orders/{number}/release")).raise_for_status()
    retried = again(command)
    made = await writer.execute(retried)
    # Then it is made, once
    assert isinstance(made.outcome, FulfilmentCreated) and made.outcome.adopted is False
    assert made.outcome.command_id == retried.command_id
    assert [f["id"] for f in await shop.fulfillments()] == [made.outcome.fulfilment_id]
    assert (await journal(pool, command.idempotency_key))["answer"] == "created"


async def test_a_quantity_above_what_remains_is_refused_in_shopifys_words(shop, writer):
    command = create(await shop.lines(), {"MUG": 4})
    written = await writer.execute(command)
    assert isinstance(written.outcome, FulfilmentRefused)
    assert written.outcome.user_errors == ("fulfillment: Invalid fulfillment order line item quantity requested.",)
    assert await shop.fulfillments() == []


async def test_an_order_shopify_does_not_have_is_refused(shop, writer):
    command = create(await shop.lines(), {"MUG": 1}, order_id=ORDER + 77)
    written = await writer.execute(command)
    assert isinstance(written.outcome, FulfilmentRefused)
    assert written.outcome.user_errors == (f"order: Order gid://shopify/Order/{ORDER + 77} does not exist.",)


# ------------------------------------------------------------------------------ tracking


async def test_a_tracking_update_replaces_the_fulfilments_tracking(shop, writer, pool):
    made = (await writer.execute(create(await shop.lines(), {"TEE": 2, "MUG": 3}, numbers=("OLD1",)))).outcome
    update = UpdateFulfilmentTracking(
        command_id=uuid.uuid4(), idempotency_key=f"prima-despatch:{made.despatch_id}:v2", shopify_order_id=ORDER,
        despatch_id=made.despatch_id, fulfilment_id=made.fulfilment_id, issued_at=datetime.now(UTC),
        tracking=TrackingInfo(company="DHL Express", numbers=("NEW1", "NEW2"),
                              urls=("https://dhl.example/NEW1", "https://dhl.example/NEW2")),
        notify_customer=False)
    written = await writer.execute(update)
    assert isinstance(written.outcome, FulfilmentTrackingUpdated)
    assert (written.outcome.command_id, written.outcome.fulfilment_id) == (update.command_id, made.fulfilment_id)
    [fulfilment] = await shop.fulfillments()
    assert (fulfilment["tracking_company"], fulfilment["tracking_numbers"], fulfilment["tracking_urls"]) == (
        "DHL Express", ["NEW1", "NEW2"], ["https://dhl.example/NEW1", "https://dhl.example/NEW2"])
    # the same update again (a redelivery) leaves the same tracking
    assert isinstance((await writer.execute(update)).outcome, FulfilmentTrackingUpdated)
    assert (await shop.fulfillments())[0]["tracking_numbers"] == ["NEW1", "NEW2"]
    row = await journal(pool, update.idempotency_key)
    assert (row["kind"], row["fulfilment_id"], row["answer"], row["attempts"]) == (
        "tracking", made.fulfilment_id, "updated", 2)


async def test_a_tracking_update_of_an_unknown_fulfilment_is_refused(shop, writer):
    update = UpdateFulfilmentTracking(
        command_id=uuid.uuid4(), idempotency_key="prima-despatch:D-X:v2", shopify_order_id=ORDER, despatch_id="D-X",
        fulfilment_id="gid://shopify/Fulfillment/1", issued_at=datetime.now(UTC),
        tracking=TrackingInfo(company="Evri", numbers=("E1",)), notify_customer=False)
    written = await writer.execute(update)
    assert isinstance(written.outcome, FulfilmentTrackingRefused)
    assert written.outcome.user_errors == ("fulfillmentId: Fulfillment does not exist.",)


# ---------------------------------------------------------------------- Shopify unavailable


async def test_shopify_down_parks_the_command_and_the_redriver_makes_it_once(shop, gateway, pool):
    command = create(await shop.lines(), {"TEE": 2, "MUG": 3}, numbers=("DOWN1",))
    await shop.faults(fail_next=1000, fail_status=503)
    # When Shopify answers 503 to everything
    await gateway.handle_fulfilments([Delivery(command, SHOPIFY_COMMANDS.name, 0, 0, order_key(ORDER))])
    # Then the command is parked, nothing published, nothing made
    assert gateway.published.messages == []
    row = await pool.fetchrow("SELECT * FROM gateway.parked_commands WHERE command_id = $1", command.command_id)
    assert (row["gateway"], row["subject"], row["message_type"]) == ("shopify", f"order:{ORDER}", "CreateFulfilment")
    assert "HTTP 503" in row["reason"] and row["resolved_at"] is None
    redriver = gateway.redriver()
    await asyncio.sleep(0.05)
    assert await redriver.once() is False  # still down: the probe fails, nothing re-driven
    # When Shopify answers again, the re-driver sends it through the same read-first path
    await shop.faults()
    await redriver.once()
    [out] = gateway.published.messages
    assert isinstance(out.message, FulfilmentCreated) and out.message.command_id == command.command_id
    assert out.key == order_key(ORDER) and out.message.adopted is False
    assert [f["id"] for f in await shop.fulfillments()] == [out.message.fulfilment_id]
    assert await pool.fetchval("SELECT resolved_at IS NOT NULL FROM gateway.parked_commands WHERE command_id = $1",
                               command.command_id)
    # And the command delivered again later is answered from the journal: still one fulfilment
    await gateway.handle_fulfilments([Delivery(command, SHOPIFY_COMMANDS.name, 0, 1, order_key(ORDER))])
    assert gateway.published.messages[-1].message.adopted is True
    assert len(await shop.fulfillments()) == 1 and await shop.create_calls() == 1


async def test_an_operators_retry_of_a_parked_fulfilment_sends_it_and_the_inventory_consumer_leaves_it(
        shop, gateway, pool):
    command = create(await shop.lines(), {"MUG": 3})
    await shop.faults(fail_next=1000, fail_status=503)
    await gateway.handle_fulfilments([Delivery(command, SHOPIFY_COMMANDS.name, 0, 0, order_key(ORDER))])
    await shop.faults()
    retry = RetryParkedCommand(command_id=uuid.uuid4(), requested_by="ops", requested_at=datetime.now(UTC),
                               parked_command_id=command.command_id, gateway="shopify")
    delivery = Delivery(retry, OPERATIONS.name, 0, 0, None)
    # The inventory consumer reads the same retry: not its command, it sends nothing
    await gateway.handle([delivery])
    assert gateway.published.messages == [] and await shop.fulfillments() == []
    # The fulfilment consumer sends it
    await gateway.handle_fulfilments([delivery])
    [out] = gateway.published.messages
    assert isinstance(out.message, FulfilmentCreated) and out.message.command_id == command.command_id
    assert len(await shop.fulfillments()) == 1
    row = await pool.fetchrow("SELECT retried_at, resolved_at FROM gateway.parked_commands WHERE command_id = $1",
                              command.command_id)
    assert row["retried_at"] is not None and row["resolved_at"] is not None


# -------------------------------------------------------------------------- the two groups


def test_each_consumer_skips_the_others_commands_on_the_commands_topic():
    """decode_record gives None (skipped, not dead-lettered) for a message type the topic carries
    but the group does not take."""
    @dataclasses.dataclass
    class Record:
        topic: str
        value: bytes
        headers: list

    fulfilment = create({"TEE": ({"id": "gid://shopify/FulfillmentOrder/1"},
                                 {"id": "gid://shopify/FulfillmentOrderLineItem/1", "line_item_id": 1})}, {"TEE": 1})
    level = SetInventoryLevel(command_id=uuid.uuid4(), sku="TEE", inventory_item_id="gid://shopify/InventoryItem/1",
                              location_id=MAIN, quantity=1, change_from_quantity=0,
                              reference_document_uri="prima://stock/WH-MAIN/TEE/1", issued_at=datetime.now(UTC))

    def record(message) -> Record:
        return Record(SHOPIFY_COMMANDS.name, message.model_dump_json().encode(),
                      [("message_type", message.message_type.encode())])

    inventory_accepts = _accepted([*INVENTORY_COMMANDS.values(), RetryParkedCommand])
    fulfilment_accepts = _accepted([*FULFILMENT_COMMANDS.values(), RetryParkedCommand])
    assert decode_record(record(fulfilment), inventory_accepts) is None
    assert decode_record(record(level), fulfilment_accepts) is None
    assert decode_record(record(fulfilment), fulfilment_accepts) == fulfilment
    assert decode_record(record(level), inventory_accepts) == level


async def test_through_kafka_each_group_answers_its_own_commands(shop, gw_settings, pool, kafka_bootstrap,
                                                                monkeypatch):
    """Both consumers of one gateway on a commands topic of their own: the fulfilment's outcome is
    published keyed by the order id, the inventory push's by its SKU, each once; each group skips
    the other's command and commits past both."""
    variant = (await shop.client.post("/_sandbox/catalog", json={"variants": [
        {"sku": "KAFKA-SKU", "levels": {MAIN: 5}}]})).json()
    variant = (variant["variants"] if isinstance(variant, dict) else variant)[0]
    fulfilment = create(await shop.lines(), {"TEE": 2, "MUG": 3}, numbers=("K1",))
    level = SetInventoryLevel(command_id=uuid.uuid4(), sku="KAFKA-SKU", inventory_item_id=variant["inventory_item_id"],
                              location_id=MAIN, quantity=9, change_from_quantity=5,
                              reference_document_uri="prima://stock/WH-MAIN/KAFKA-SKU/1", issued_at=datetime.now(UTC))
    settings = gw_settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    suffix = uuid.uuid4().hex[:8]
    groups = (f"shopify-gateway-test-{suffix}", f"shopify-gateway-fulfilments-test-{suffix}")
    async with throwaway_topics(kafka_bootstrap) as make:
        commands_topic = dataclasses.replace(SHOPIFY_COMMANDS, name=await make("fulfilment-gateway.commands"))
        outcomes_topic = dataclasses.replace(SHOPIFY_OUTCOMES, name=await make("fulfilment-gateway.outcomes"))
        # the consumers decode by the topic's declared messages (contracts.topics.TOPICS, by name)
        monkeypatch.setitem(TOPICS, commands_topic.name, commands_topic)
        monkeypatch.setitem(TOPICS, outcomes_topic.name, outcomes_topic)
        skipped_before = {g: REGISTRY.get_sample_value("shopify_prima_messages_skipped_total",
                                                       {"group": g, "topic": commands_topic.name}) or 0 for g in groups}
        mark = await end_offsets(kafka_bootstrap, outcomes_topic.name)
        broker = make_broker(settings, groups[0])
        async with ShopifyAdmin(settings) as admin:
            gateway = ShopifyGateway(settings, admin, pool, lambda out: publish_all(broker, out),
                                     outcomes_topic=outcomes_topic.name)
            consumer(broker, settings, gateway, group=groups[0], topic=commands_topic)
            fulfilment_consumer(broker, settings, gateway, group=groups[1], topic=commands_topic)
            await broker.start()
            try:
                await publish_all(broker, [Outgoing(commands_topic.name, order_key(ORDER), fulfilment),
                                           Outgoing(commands_topic.name, sku_key(level.sku), level)])
                sent = await end_offsets(kafka_bootstrap, commands_topic.name)

                async def answered() -> bool:
                    return len(await published_since(kafka_bootstrap, mark)) >= 2

                async def committed() -> bool:
                    for group in groups:
                        check = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                                                 enable_auto_commit=False)
                        await check.start()
                        try:
                            found = {tp: await check.committed(tp) for tp in sent}
                        finally:
                            await check.stop()
                        if not all(offset == 0 or (found[tp] or 0) >= offset for tp, offset in sent.items()):
                            return False
                    return True

                await eventually(answered, "both outcomes on Kafka", 60)
                await eventually(committed, "both groups' offsets committed", 30)
            finally:
                await broker.stop()
                await gateway.aclose()
        records = await published_since(kafka_bootstrap, mark)
    by_type = {dict(r.headers)["message_type"].decode(): r for r in records}
    assert sorted(by_type) == ["FulfilmentCreated", "InventoryLevelConfirmed"] and len(records) == 2
    created = OUTCOMES.validate_json(by_type["FulfilmentCreated"].value)
    assert by_type["FulfilmentCreated"].key == order_key(ORDER)
    assert created.command_id == fulfilment.command_id and created.adopted is False
    confirmed = TypeAdapter(ShopifyOutcome).validate_json(by_type["InventoryLevelConfirmed"].value)
    assert isinstance(confirmed, InventoryLevelConfirmed) and by_type["InventoryLevelConfirmed"].key == sku_key("KAFKA-SKU")
    assert [f["tracking_numbers"] for f in await shop.fulfillments()] == [["K1"]]
    for group in groups:  # each group skipped the other's command (no dead letter)
        skipped = REGISTRY.get_sample_value("shopify_prima_messages_skipped_total",
                                            {"group": group, "topic": commands_topic.name})
        assert skipped - skipped_before[group] == 1
