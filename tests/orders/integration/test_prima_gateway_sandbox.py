"""The Prima gateway against an in-process Prima sandbox (its own schema) and a scratch
PostgreSQL database for parking: a command repeated concurrently makes one sales order; a
command Prima never answered is parked whole in gateway.parked_commands, then sent again by
RetryParkedCommand, or by itself once Prima answers again; a sales order Prima committed but
never answered for stays one sales order whatever comes next."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from contracts.platform import RetryParkedCommand
from contracts.prima.sales_orders import (
    CreateSalesOrder,
    PrimaSalesOrderCreated,
    PrimaSalesOrderParked,
)
from contracts.topics import OPERATIONS, PRIMA_COMMANDS, PRIMA_OUTCOMES, SHOPIFY_ORDERS
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import Order, OrderState
from domain.orders.values import OrderSnapshot
from projections.order_sync import OrderSyncProjection
from sandboxes.prima.app import create_app
from services.orders.decider import OrderDecider
from services.orders.translate import wire_command
from services.platform.kafka import Delivery, Outgoing
from services.platform.parking import ParkedCommands, RedriveSchedule
from services.platform.settings import Settings
from services.prima.client import PrimaClient
from services.prima.gateway import PrimaGateway
from tests.orders.builders import (
    ITEMS,
    NOW,
    SKUS,
    create_sales_order,
    received,
    us_tax_exclusive,
)
from tests.orders.integration.relayed import exceptions, order_events, project

pytestmark = pytest.mark.integration
SCHEMA = "prima_gateway_test"
KEY = "gateway-test-key"


@pytest.fixture(scope="module")
async def prima_url(serve_app, database_url):
    """A Prima sandbox of its own (schema prima_gateway_test, dropped before and after) that
    knows the items of tests/orders/builders.py."""
    async def drop_schema() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        finally:
            await conn.close()

    await drop_schema()
    with serve_app(create_app(database_url, KEY, schema=SCHEMA), "the Prima sandbox") as url:
        async with httpx.AsyncClient(base_url=url) as http:
            (await http.put("/_sandbox/items", json={"items": [
                {"item_id": f"ITM-{sku}", "sku": sku, "description": sku, "item_type": "stock"} for sku in SKUS
            ]})).raise_for_status()
        yield url
    await drop_schema()


@pytest.fixture(scope="module")
async def pool(scratch_pool):
    """gateway.parked_commands of a scratch database: never the stack's, whose Prima gateway
    re-drives every parked command it finds."""
    return scratch_pool


@pytest.fixture
def published() -> list[Outgoing]:
    """What the gateway publishes (to prima.outcomes.v1 in the service)."""
    return []


@pytest.fixture
async def make_gateway(settings, prima_url, pool, published):
    """make_gateway(**settings) -> a PrimaGateway on the sandbox: three attempts 10 ms apart,
    re-drives 0.2 s after parking (doubling up to 1 s), probes every 0.1 s; outcomes into
    `published`."""
    clients: list[PrimaClient] = []

    async def publish(messages: list[Outgoing]) -> None:
        published.extend(messages)

    def make(**overrides: Any) -> PrimaGateway:
        s: Settings = settings.model_copy(update={
            "prima_base_url": prima_url, "prima_api_key": SecretStr(KEY),
            "prima_max_attempts": 3, "prima_backoff_initial_seconds": 0.01, "prima_backoff_max_seconds": 0.01,
            "prima_timeout_seconds": 5.0, "parked_redrive_initial_seconds": 0.2, "parked_redrive_max_seconds": 1.0,
            "prima_probe_interval_seconds": 0.1, **overrides,
        })
        client = PrimaClient(s)
        clients.append(client)
        return PrimaGateway(s, client, ParkedCommands(pool, RedriveSchedule.from_settings(s)), publish)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def gateway(make_gateway):
    return make_gateway()


@pytest.fixture
async def command(pool):
    """A CreateSalesOrder for a new order; its parked row, if any, is removed afterwards."""
    made = create_sales_order(us_tax_exclusive(time.time_ns() // 1000 + uuid.uuid4().int % 1000))
    yield made
    await pool.execute("DELETE FROM gateway.parked_commands WHERE command_id = $1", made.command_id)


async def sales_orders(prima_url: str, command: CreateSalesOrder) -> list[dict]:
    async with httpx.AsyncClient(base_url=prima_url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        response = await http.get("/v1/sales-orders", params={"external_reference": str(command.shopify_order_id)})
        response.raise_for_status()
        return response.json()["sales_orders"]


async def test_ten_concurrent_repeats_of_one_command_make_one_sales_order(gateway, command, prima_url):
    results = await asyncio.gather(*(gateway.execute(command) for _ in range(10)))

    outcomes = [r.outcome for r in results]
    assert all(isinstance(o, PrimaSalesOrderCreated) for o in outcomes)
    assert len({o.sales_order_number for o in outcomes}) == 1
    assert sorted(o.replayed for o in outcomes) == [False] + [True] * 9  # Prima answered nine from its record
    [created] = await sales_orders(prima_url, command)
    assert created["sales_order_number"] == outcomes[0].sales_order_number
    assert created["totals"]["total"] == "78.29"


async def test_prima_down_parks_the_command_and_a_retry_sends_it(gateway, published, command, prima_url, pool):
    async with httpx.AsyncClient(base_url=prima_url) as http:
        (await http.post("/_sandbox/faults", json={"fail_next": 100, "fail_status": 503})).raise_for_status()
        try:
            await gateway.handle([Delivery(command, PRIMA_COMMANDS.name, 0, 0, None)])
        finally:
            (await http.delete("/_sandbox/faults")).raise_for_status()

    [outcome] = [o.message for o in published]
    assert isinstance(outcome, PrimaSalesOrderParked) and outcome.attempts == 3 and "503" in outcome.reason
    row = await pool.fetchrow("SELECT * FROM gateway.parked_commands WHERE command_id = $1", command.command_id)
    assert row is not None
    assert (row["gateway"], row["subject"], row["message_type"], row["attempts"]) == (
        "prima", str(command.shopify_order_id), "CreateSalesOrder", 3)
    assert CreateSalesOrder.model_validate(json.loads(row["command"])) == command  # kept whole
    assert row["retried_at"] is None
    assert await sales_orders(prima_url, command) == []  # nothing was made

    published.clear()
    retry = RetryParkedCommand(command_id=uuid.uuid4(), requested_by="ops", requested_at=datetime.now(UTC),
                               parked_command_id=command.command_id, gateway="prima")
    await gateway.handle([Delivery(retry, OPERATIONS.name, 0, 1, None)])

    [outcome] = [o.message for o in published]
    assert isinstance(outcome, PrimaSalesOrderCreated) and outcome.command_id == command.command_id
    assert len(await sales_orders(prima_url, command)) == 1
    retried = await pool.fetchval("SELECT retried_at FROM gateway.parked_commands WHERE command_id = $1",
                                  command.command_id)
    assert retried is not None


# ------------------------------------------------------------- the order flow around the gateway


class OrderFlow:
    """The order decider on an in-memory Order application (every SKU known), fed the webhooks
    and what the gateway publishes, as the service is fed them from Kafka."""

    def __init__(self) -> None:
        self.orders = OrderApplication()

        async def lookup(skus: Any) -> dict[str, Any]:
            return dict(ITEMS)

        self.decider = OrderDecider(self.orders, lookup)

    async def webhook(self, snapshot: OrderSnapshot, topic: str = "orders/paid") -> None:
        await self.decider.handle([Delivery(received(snapshot, topic), SHOPIFY_ORDERS.name, 0, 0, None)])

    async def outcomes(self, published: list[Outgoing]) -> None:
        await self.decider.handle([Delivery(o.message, PRIMA_OUTCOMES.name, 0, 0, o.key) for o in published])

    def order(self, shopify_order_id: int) -> Order:
        order = self.orders.find_order(shopify_order_id)
        assert order is not None
        return order

    def command(self, shopify_order_id: int) -> CreateSalesOrder:
        """The CreateSalesOrder the relay puts on prima.commands.v1 for the order's command."""
        command = self.order(shopify_order_id).command
        assert command is not None
        return wire_command(command)

    def recorded(self, shopify_order_id: int) -> list[str]:
        aggregate_id = Order.create_id(shopify_order_id)
        return [n.topic.rsplit(".", 1)[-1] for n in self.orders.recorder.select_notifications(start=1, limit=1000)
                if n.originator_id == aggregate_id]


@pytest.fixture
def flow():
    made = OrderFlow()
    yield made
    made.orders.close()


@contextlib.asynccontextmanager
async def prima_faults(prima_url: str, **faults: Any):
    async with httpx.AsyncClient(base_url=prima_url) as http:
        (await http.post("/_sandbox/faults", json=faults)).raise_for_status()
        try:
            yield http
        finally:
            (await http.delete("/_sandbox/faults")).raise_for_status()


def new_order_id() -> int:
    return time.time_ns() // 1000 + uuid.uuid4().int % 1000


async def answers(http: httpx.AsyncClient) -> collections.Counter[tuple[str, str]]:
    """How often the sandbox answered, by (route, status), so far."""
    requests = (await http.get("/_sandbox/stats")).json()["requests"]
    return collections.Counter({(route, status): n for route, by in requests.items() for status, n in by.items()})


def retry_of(command: CreateSalesOrder) -> Delivery[Any]:
    retry = RetryParkedCommand(command_id=uuid.uuid4(), requested_by="ops", requested_at=datetime.now(UTC),
                               parked_command_id=command.command_id, gateway="prima")
    return Delivery(retry, OPERATIONS.name, 0, 0, None)


@pytest.mark.parametrize("fault", [
    {"commit_then_timeout_next": 3, "commit_then_delay_seconds": 1.0},
    {"commit_then_drop_next": 3},
], ids=["answer-too-late", "connection-dropped"])
async def test_a_sales_order_prima_committed_but_never_answered_stays_one_whatever_comes_next(
        make_gateway, published, prima_url, pool, flow, fault):
    """Defect 1 (with the sandbox fault of defect 11): every attempt commits, or finds the
    sales order committed, and never hears the answer; the command is parked. Then the next
    webhook, a re-send and a command under another key: one sales order in Prima throughout,
    and the order ends in Prima with its number."""
    gateway = make_gateway(prima_timeout_seconds=0.3)
    order_id = new_order_id()
    await flow.webhook(us_tax_exclusive(order_id, updated_at=NOW))
    command = flow.command(order_id)

    async with prima_faults(prima_url, **fault):
        await gateway.handle([Delivery(command, PRIMA_COMMANDS.name, 0, 0, None)])
    [parked] = [o.message for o in published]
    assert isinstance(parked, PrimaSalesOrderParked) and parked.attempts == 3
    [made] = await sales_orders(prima_url, command)  # Prima did it; the gateway never heard
    await flow.outcomes(published)
    published.clear()

    # the next routine webhook: no second command, no new key
    await flow.webhook(us_tax_exclusive(order_id, updated_at=NOW + timedelta(minutes=5)), "orders/updated")
    assert flow.recorded(order_id) == ["OrderReceived", "SalesOrderRequested", "SalesOrderParked", "OrderUpdated"]
    assert flow.order(order_id).commands_issued == 1 and flow.command(order_id) == command
    assert len(await sales_orders(prima_url, command)) == 1

    # the parked command re-sent with its own key: Prima answers with the sales order it made
    await gateway.handle([retry_of(command)])
    [created] = [o.message for o in published]
    assert isinstance(created, PrimaSalesOrderCreated) and created.replayed and not created.adopted
    assert created.sales_order_number == made["sales_order_number"]

    # a command under another key for the same order (what the next webhook used to issue):
    # Prima's 409 duplicate_external_reference is "already created", adopted, not a rejection
    second_id = uuid.uuid5(Order.create_id(order_id), "create-sales-order/2")
    other = command.model_copy(update={"command_id": second_id,
                                       "idempotency_key": f"shopify-prima:create-sales-order:{second_id}"})
    adopted = (await gateway.execute(other)).outcome
    assert isinstance(adopted, PrimaSalesOrderCreated) and adopted.adopted
    assert adopted.sales_order_number == made["sales_order_number"]

    assert len(await sales_orders(prima_url, command)) == 1
    await flow.outcomes(published)
    order = flow.order(order_id)
    assert (order.state, order.sales_order_number) == (OrderState.IN_PRIMA, made["sales_order_number"])
    assert await pool.fetchval("SELECT resolved_at IS NOT NULL FROM gateway.parked_commands WHERE command_id = $1",
                               command.command_id)


async def test_prima_down_longer_than_the_retries_heals_by_itself_once_prima_answers(
        make_gateway, published, prima_url, pool, flow, settings):
    """Defect 6: Prima is fully down past the gateway's retries: the command parks. Nobody
    types a command; the circuit breaker probes while Prima is down (re-sending nothing), and
    within seconds of Prima answering again the order is in Prima, once, and its exception in
    the order-sync read model is resolved."""
    gateway = make_gateway()
    order_id = new_order_id()
    await flow.webhook(us_tax_exclusive(order_id))
    command = flow.command(order_id)
    stop = asyncio.Event()
    redrives = None
    try:
        async with prima_faults(prima_url, fail_next=100_000, fail_status=503, path_prefix="/v1",
                                method=None) as http:
            await gateway.handle([Delivery(command, PRIMA_COMMANDS.name, 0, 0, None)])
            [parked] = [o.message for o in published]
            assert isinstance(parked, PrimaSalesOrderParked)
            await flow.outcomes(published)
            published.clear()
            before = await answers(http)

            redrives = asyncio.create_task(gateway.redriver().run(stop))
            await asyncio.sleep(1.0)  # still down: probes only
            after = await answers(http)
            assert after[("GET /v1/health", "503")] - before[("GET /v1/health", "503")] >= 3
            assert after[("POST /v1/sales-orders", "503")] == before[("POST /v1/sales-orders", "503")]
            assert published == []
        # Prima is back (the faults are cleared): no command is typed
        deadline = time.monotonic() + 5
        while not published and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        if redrives is not None:
            await redrives

    [created] = [o.message for o in published]
    assert isinstance(created, PrimaSalesOrderCreated) and created.command_id == command.command_id
    assert len(await sales_orders(prima_url, command)) == 1
    row = await pool.fetchrow("SELECT * FROM gateway.parked_commands WHERE command_id = $1", command.command_id)
    assert row["resolved_at"] is not None and row["given_up_at"] is None and row["redrives"] == 0

    await flow.outcomes(published)
    assert flow.recorded(order_id) == ["OrderReceived", "SalesOrderRequested", "SalesOrderParked",
                                       "SalesOrderCreated"]
    assert flow.order(order_id).state is OrderState.IN_PRIMA
    projection = OrderSyncProjection(pool)
    await project(projection, order_events(flow.orders, settings, order_id))
    assert await exceptions(pool, order_id) == [("command_parked", "resolved")]
    assert await pool.fetchval("SELECT state FROM readmodel.order_sync WHERE shopify_order_id = $1",
                               order_id) == "in_prima"


# ------------------------------------------------------------ the re-drive schedule, in SQL


async def test_parked_commands_are_claimed_oldest_first_rescheduled_with_backoff_and_given_up(pool):
    parked = ParkedCommands(pool, RedriveSchedule(initial_seconds=5, max_seconds=20, horizon_seconds=3600))
    gateway = f"test-{uuid.uuid4().hex[:8]}"  # rows of this test only
    models = {"CreateSalesOrder": CreateSalesOrder}
    older, newer = create_sales_order(us_tax_exclusive(new_order_id())), create_sales_order(us_tax_exclusive(
        new_order_id()))
    await parked.park(older, gateway=gateway, subject="older", reason="HTTP 503", attempts=3)
    await parked.park(newer, gateway=gateway, subject="newer", reason="HTTP 503", attempts=3)
    parked_at = await pool.fetchval("SELECT max(parked_at) FROM gateway.parked_commands WHERE gateway = $1", gateway)

    assert await parked.due(gateway, parked_at) == 0  # due 5 s after parking
    later = parked_at + timedelta(seconds=6)
    assert await parked.due(gateway, later) == 2
    claimed = await parked.claim_due(gateway, later, models, limit=10, lease_seconds=60)
    assert [c.command for c in claimed] == [older, newer] and [c.subject for c in claimed] == ["older", "newer"]
    assert await parked.claim_due(gateway, later, models, limit=10, lease_seconds=60) == []  # leased

    next_at = await parked.reschedule(claimed[0], "HTTP 500", 1, later)
    assert next_at == later + timedelta(seconds=10)  # 5 s, then twice as long
    row = await pool.fetchrow("SELECT redrives, attempts, reason, next_attempt_at FROM gateway.parked_commands "
                              "WHERE command_id = $1", older.command_id)
    assert (row["redrives"], row["attempts"], row["reason"], row["next_attempt_at"]) == (1, 4, "HTTP 500", next_at)

    await parked.resolve([newer.command_id])
    gone = parked_at + timedelta(hours=1)
    [given_up] = await parked.give_up_expired(gateway, gone)
    assert given_up["command_id"] == older.command_id  # the resolved one is not given up
    assert await parked.due(gateway, gone + timedelta(days=1)) == 0

    # parked again (a retry that failed): a new schedule
    await parked.park(older, gateway=gateway, subject="older", reason="HTTP 503", attempts=3)
    row = await pool.fetchrow("SELECT * FROM gateway.parked_commands WHERE command_id = $1", older.command_id)
    assert (row["redrives"], row["given_up_at"], row["resolved_at"]) == (0, None, None)
    assert row["next_attempt_at"] == row["parked_at"] + timedelta(seconds=5)
    await pool.execute("DELETE FROM gateway.parked_commands WHERE gateway = $1", gateway)
