"""The Shopify gateway's handler without the stack: ShopifyGateway.handle/execute over a
ShopifyAdmin whose HTTP is an in-memory Shopify (httpx.MockTransport), with the parked commands
and the batch journal in memory and the outcomes "published" into a list (the injected
`publish`)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from itertools import count
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from contracts.platform import RetryParkedCommand
from contracts.prima.inventory import sku_key
from contracts.shopify.inventory import (
    InventoryLevelConfirmed,
    InventoryLevelFailed,
    InventoryLevelRejected,
    ProductStatusRejected,
    ProductStatusSet,
    SetInventoryLevel,
)
from contracts.topics import OPERATIONS, SHOPIFY_COMMANDS, SHOPIFY_OUTCOMES
from services.platform.kafka import Delivery, Outgoing
from services.shopify.gateway import COMMANDS, ShopifyGateway
from services.shopify.inventory_writer import BATCH_URI_PREFIX, MemoryDecisions
from tests.inventory.builders import LOC, T0, set_level, set_status
from tests.inventory.fake_shopify import FakeClock, FakeShopify, fake_admin


class FakeParking:
    """gateway.parked_commands in memory: what ParkedCommands does, without PostgreSQL."""

    def __init__(self) -> None:
        self.rows: dict[UUID, dict[str, Any]] = {}
        self.loaded: list[UUID] = []

    async def park_many(self, parked, *, gateway: str) -> None:
        for command, subject, reason, attempts in parked:
            row = self.rows.get(command.command_id)
            self.rows[command.command_id] = {
                "gateway": gateway, "subject": subject, "message_type": command.message_type,
                "command": command.model_dump_json(), "reason": reason,
                "attempts": attempts + (row["attempts"] if row else 0), "retried_at": None}

    async def load(self, command_id: UUID, models: dict[str, Any]) -> Any | None:
        self.loaded.append(command_id)
        row = self.rows.get(command_id)
        if row is None or row["message_type"] not in models:
            return None
        return models[row["message_type"]].model_validate_json(row["command"])

    async def mark_retried(self, command_id: UUID) -> None:
        self.rows[command_id]["retried_at"] = "now"

    async def resolve(self, command_ids) -> None:
        for command_id in command_ids:
            if command_id in self.rows:
                self.rows[command_id]["resolved"] = True

    async def resolve_older_levels(self, levels, *, gateway: str) -> None:
        for row in self.rows.values():
            command = json.loads(row["command"])
            if row["message_type"] == "SetInventoryLevel" and any(
                    command["inventory_item_id"] == item and command["location_id"] == location
                    and datetime.fromisoformat(command["issued_at"]) <= at for item, location, at in levels):
                row["resolved"] = True


class FakePool:
    """Only what the gateway does with its pool besides parking: journal batches."""

    def __init__(self) -> None:
        self.journal: list[tuple] = []

    async def executemany(self, statement: str, rows: list[tuple]) -> None:
        assert "gateway.shopify_inventory_batches" in statement
        self.journal.extend(rows)


class Published:
    def __init__(self) -> None:
        self.calls: list[list[Outgoing]] = []
        self.fail: Exception | None = None

    async def __call__(self, messages: list[Outgoing]) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append(list(messages))

    @property
    def messages(self) -> list[Any]:
        return [out.message for call in self.calls for out in call]


@pytest.fixture
def shopify() -> FakeShopify:
    return FakeShopify()


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
async def gateway(shopify, published):
    admin = fake_admin(shopify, FakeClock())
    gateway = ShopifyGateway(admin.settings, admin, FakePool(), published)
    gateway.parked = FakeParking()
    gateway.writer.decisions = MemoryDecisions()  # gateway.inventory_decisions, in memory
    return gateway


OFFSETS = count()


def deliveries(*messages: Any) -> list[Delivery[Any]]:
    return [Delivery(m, OPERATIONS.name if isinstance(m, RetryParkedCommand) else SHOPIFY_COMMANDS.name, 0,
                     next(OFFSETS), sku_key(getattr(m, "sku", ""))) for m in messages]


def stocked(shopify: FakeShopify, *commands: SetInventoryLevel, level: int = 3) -> None:
    for command in commands:
        shopify.levels[(command.inventory_item_id, command.location_id)] = level


def retry(command_id: UUID, gateway: str = "shopify") -> RetryParkedCommand:
    return RetryParkedCommand(command_id=uuid4(), requested_by="ops", requested_at=T0, parked_command_id=command_id,
                              gateway=gateway)


async def test_a_window_of_commands_becomes_one_mutation_and_its_outcomes_are_published(gateway, shopify, published):
    commands = [set_level(i, quantity=10 + i) for i in range(1, 4)]
    superseded = set_level(2, quantity=99, at=T0 - timedelta(seconds=5))  # older, for a level in the window
    stocked(shopify, *commands)

    await gateway.handle(deliveries(commands[0], superseded, *commands[1:]))

    [mutation] = shopify.calls("InventorySetQuantities")
    assert sorted((q["inventoryItemId"], q["quantity"], q["changeFromQuantity"])
                  for q in mutation["input"]["quantities"]) == [
        (f"gid://shopify/InventoryItem/{i}", 10 + i, 3) for i in range(1, 4)]
    assert mutation["input"]["referenceDocumentUri"].startswith(BATCH_URI_PREFIX)
    [call] = published.calls  # all the window's outcomes at once
    assert {o.command_id for o in published.messages} == {c.command_id for c in commands}
    assert all(isinstance(o, InventoryLevelConfirmed) and o.previous_quantity == 3 for o in published.messages)
    for out in call:
        assert (out.topic, out.key) == (SHOPIFY_OUTCOMES.name, out.message.sku.encode())
        assert out.headers["message_type"] == "InventoryLevelConfirmed"
    [journalled] = gateway.pool.journal  # one mutation of many commands: the batch is journalled
    assert journalled[0] == mutation["input"]["referenceDocumentUri"]
    assert gateway.parked.rows == {}


async def test_execute_returns_the_outcomes_and_publishes_nothing(gateway, shopify, published):
    command = set_level(1, quantity=4)
    stocked(shopify, command)
    [outcome] = await gateway.execute([command])
    assert isinstance(outcome, InventoryLevelConfirmed) and outcome.quantity == 4
    assert published.calls == [] and gateway.pool.journal == []  # one command: its own Prima reference


async def test_a_user_error_on_one_command_rejects_only_that_one(gateway, shopify, published):
    known, unknown = set_level(1), set_level(2)
    stocked(shopify, known)
    await gateway.handle(deliveries(known, unknown))
    by_id = {o.command_id: o for o in published.messages}
    assert isinstance(by_id[known.command_id], InventoryLevelConfirmed)
    assert isinstance(by_id[unknown.command_id], InventoryLevelRejected)
    assert by_id[unknown.command_id].code == "INVALID_INVENTORY_ITEM"
    assert gateway.parked.rows == {}  # a rejection is an answer, not a failure


async def test_a_command_shopify_keeps_failing_is_parked_for_the_shopify_gateway(gateway, shopify, published):
    command, status = set_level(1, quantity=4), set_status("SKU-9")
    stocked(shopify, command)
    shopify.script += [httpx.Response(503, text="down")] * 6  # three attempts each (shopify_max_attempts)

    await gateway.handle(deliveries(command, status))

    [failed, refused] = published.messages
    assert isinstance(failed, InventoryLevelFailed) and failed.attempts == 3
    assert isinstance(refused, ProductStatusRejected) and "parked" in refused.reason
    rows = gateway.parked.rows
    assert set(rows) == {command.command_id, status.command_id}
    assert {r["gateway"] for r in rows.values()} == {"shopify"}
    assert (rows[command.command_id]["subject"], rows[command.command_id]["message_type"]) == ("SKU-1",
                                                                                              "SetInventoryLevel")
    assert rows[command.command_id]["attempts"] == 3 and "503" in rows[command.command_id]["reason"]
    assert rows[status.command_id]["message_type"] == "SetProductStatus"
    assert shopify.levels[(command.inventory_item_id, LOC)] == 3  # nothing was written


async def test_a_retry_of_a_parked_command_loads_it_and_sends_it_again(gateway, shopify, published):
    command = set_level(1, quantity=4)
    stocked(shopify, command)
    shopify.script += [httpx.Response(503, text="down")] * 3
    await gateway.handle(deliveries(command))
    assert command.command_id in gateway.parked.rows
    published.calls.clear()

    await gateway.handle(deliveries(retry(command.command_id)))

    assert gateway.parked.loaded == [command.command_id]
    assert gateway.parked.rows[command.command_id]["retried_at"] is not None
    assert len(shopify.calls("InventorySetQuantities")) == 4  # three failed attempts, then the retry
    [outcome] = published.messages
    assert isinstance(outcome, InventoryLevelConfirmed) and outcome.command_id == command.command_id
    assert shopify.levels[(command.inventory_item_id, LOC)] == 4


async def test_a_retry_of_a_parked_product_status_sends_it_again(gateway, shopify, published):
    status = set_status("SKU-9", "DRAFT")
    await gateway.parked.park_many([(status, status.sku, "HTTP 503", 3)], gateway="shopify")
    shopify.products[status.product_id] = "ACTIVE"
    await gateway.handle(deliveries(retry(status.command_id)))
    [outcome] = published.messages
    assert isinstance(outcome, ProductStatusSet) and outcome.status == "DRAFT"
    assert shopify.products[status.product_id] == "DRAFT"


async def test_a_retry_for_the_prima_gateway_or_of_nothing_parked_sends_nothing(gateway, shopify, published):
    command = set_level(1)
    await gateway.parked.park_many([(command, command.sku, "x", 1)], gateway="shopify")
    await gateway.handle(deliveries(retry(command.command_id, gateway="prima"), retry(uuid4())))
    assert len(gateway.parked.loaded) == 1  # the Prima gateway's retry is not even looked up
    assert shopify.requests == [] and published.calls == []


async def test_outcomes_that_cannot_be_published_fail_the_window(gateway, shopify, published):
    """The consumer commits a window only after the handler returned: if the outcomes are not on
    Kafka, the handler raises and the window is read again (compare-and-set makes that harmless)."""
    command = set_level(1, quantity=4)
    stocked(shopify, command)
    published.fail = OSError("Kafka is down")
    with pytest.raises(OSError):
        await gateway.handle(deliveries(command))
    published.fail = None
    await gateway.handle(deliveries(command))  # the redelivery: Shopify has 4 already
    [outcome] = published.messages
    assert isinstance(outcome, InventoryLevelConfirmed) and outcome.previous_quantity == 4


def test_the_gateway_takes_both_shopify_commands():
    assert set(COMMANDS) == {"SetInventoryLevel", "SetProductStatus", "CreateFulfilment", "UpdateFulfilmentTracking"}
