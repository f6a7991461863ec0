"""The Prima gateway against an in-process Prima sandbox (its own schema) and the real PostgreSQL
for parking: a command repeated concurrently makes one sales order, and a command Prima never
answered is parked whole in gateway.parked_commands, then sent again by RetryParkedCommand."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

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
from contracts.topics import OPERATIONS, PRIMA_COMMANDS
from sandboxes.prima.app import create_app
from services.platform import migrations
from services.platform.kafka import Delivery, Outgoing
from services.platform.parking import ParkedCommands
from services.platform.settings import Settings
from services.prima.client import PrimaClient
from services.prima.gateway import PrimaGateway
from tests.orders.builders import SKUS, create_sales_order, us_tax_exclusive

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
async def pool(database_url):
    migrations.upgrade(database_url)  # gateway.parked_commands: there on the stack, made on a fresh database
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def published() -> list[Outgoing]:
    """What the gateway publishes (to prima.outcomes.v1 in the service)."""
    return []


@pytest.fixture
async def gateway(settings, prima_url, pool, published):
    s: Settings = settings.model_copy(update={
        "prima_base_url": prima_url, "prima_api_key": SecretStr(KEY),
        "prima_max_attempts": 3, "prima_backoff_initial_seconds": 0.01, "prima_backoff_max_seconds": 0.01,
        "prima_timeout_seconds": 5.0,
    })
    async def publish(messages: list[Outgoing]) -> None:
        published.extend(messages)

    async with PrimaClient(s) as client:
        yield PrimaGateway(s, client, ParkedCommands(pool), publish)


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
