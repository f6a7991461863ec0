"""The stock decider's handler without the stack: wire messages in (as Deliveries, the way the
platform Consumer hands them over), decisions out through the application's notification log
(the outbox), on the in-memory event store. And once through the platform Consumer on
FastStream's test broker, to show that a published PrimaStockLevel reaches the handler."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from prometheus_client import REGISTRY

from contracts.platform import ReleaseStockLevel
from contracts.prima.inventory import sku_key
from contracts.shopify.inventory import SetInventoryLevel
from contracts.topics import (
    OPERATIONS,
    ORDER_EVENTS,
    PRIMA_INVENTORY,
    SHOPIFY_COMMANDS,
    SHOPIFY_INVENTORY,
    SHOPIFY_OUTCOMES,
)
from domain.inventory.application import InventoryApplication
from domain.inventory.buffer import BufferRules
from domain.inventory.domainmodel import StockItem
from domain.inventory.values import AutoRelease, InventoryPush
from services.inventory.decider import (
    ACCEPTS,
    ORDER_ACCEPTS,
    ORDER_TOPICS,
    TOPICS,
    StockDecider,
    auto_release_from,
    policy_from,
)
from services.inventory.outbox import STOCK_RELAY
from services.platform.kafka import Consumer, Delivery, encode, headers_for, make_broker
from services.platform.outbox import Relay
from services.platform.settings import Settings
from tests.inventory.builders import (
    LOC,
    T0,
    level_confirmed,
    level_failed,
    level_rejected,
    level_stale,
    prima_item,
    prima_stock,
    release_stock_level,
    sales_order_created,
    sales_order_rejected,
    sales_order_requested,
    variant_observed,
)

SETTINGS = Settings(inventory_location_map={"WH-MAIN": LOC}, inventory_buffer=BufferRules(default=2))
TOPIC_OF = {"PrimaStockLevel": PRIMA_INVENTORY, "PrimaItemChanged": PRIMA_INVENTORY,
            "ShopifyVariantObserved": SHOPIFY_INVENTORY, "ReleaseStockLevel": OPERATIONS, "OrderEvent": ORDER_EVENTS}
RETRY = AutoRelease(initial_seconds=5, max_seconds=20, horizon_seconds=60)


class Decisions:
    """The in-memory application, the decider over it, and what it has decided since the last look
    (read from the notification log, as the outbox relay reads it)."""

    def __init__(self) -> None:
        self.app = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.decider = StockDecider(self.app, policy_from(SETTINGS), RETRY)
        self.relay = Relay(dataclasses.replace(STOCK_RELAY, application=lambda _: self.app), SETTINGS, broker=None)
        self.position = 0
        self.offsets = count()

    async def handle(self, *messages: Any) -> None:
        await self.decider.handle([self.delivery(m) for m in messages])

    def delivery(self, message: Any) -> Delivery[Any]:
        topic = TOPIC_OF.get(message.message_type, SHOPIFY_OUTCOMES)
        return Delivery(message, topic.name, 0, next(self.offsets), sku_key(getattr(message, "sku", "")))

    def new_events(self) -> list[Any]:
        notifications = self.app.recorder.select_notifications(self.position + 1, 10_000)
        if notifications:
            self.position = notifications[-1].id
        return [(n, self.app.mapper.to_domain_event(n)) for n in notifications]

    def pushes(self) -> list[InventoryPush]:
        """The pushes decided since the last look (each a PushRequested in the log)."""
        return [e.command for _, e in self.new_events() if isinstance(e, StockItem.PushRequested)]

    def commands(self) -> list[SetInventoryLevel]:
        """The SetInventoryLevel commands the relay would publish for what was decided since."""
        return [out.message for n, _ in self.new_events() for out in self.relay.messages(n)
                if out.topic == SHOPIFY_COMMANDS.name]

    def close(self) -> None:
        self.app.close()


@pytest.fixture
def decisions():
    found = Decisions()
    yield found
    found.close()


async def test_stock_then_a_variant_decides_one_set_inventory_level(decisions):
    await decisions.handle(prima_stock("TEE", 10, 1))
    assert decisions.pushes() == []  # not sold in Shopify yet: nothing to push

    await decisions.handle(variant_observed("TEE", 0))
    [push] = decisions.pushes()
    assert isinstance(push, InventoryPush)
    assert (push.sku, push.location_id, push.quantity, push.change_from_quantity) == ("TEE", LOC, 8, 0)
    assert push.reference_document_uri == "prima://stock/WH-MAIN/TEE?change=1"


async def test_the_decision_leaves_through_the_outbox_as_one_set_inventory_level(decisions):
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 0))
    [command] = decisions.commands()
    assert isinstance(command, SetInventoryLevel)
    assert (command.sku, command.location_id, command.quantity, command.change_from_quantity) == ("TEE", LOC, 8, 0)
    assert command.inventory_item_id == "gid://shopify/InventoryItem/1"


async def test_a_redelivered_batch_decides_nothing_again(decisions):
    batch = [prima_stock("TEE", 10, 1), variant_observed("TEE", 0)]
    await decisions.handle(*batch)
    assert len(decisions.pushes()) == 1
    await decisions.handle(*batch)
    assert decisions.new_events() == []


async def test_a_confirmed_push_is_the_next_compare_value(decisions):
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 0))
    [push] = decisions.pushes()
    await decisions.handle(level_confirmed(push.command_id, "TEE", 8, 0, T0 + timedelta(seconds=1)),
                           prima_stock("TEE", 5, 2))
    [second] = decisions.pushes()
    assert (second.quantity, second.change_from_quantity) == (3, 8)


async def test_a_component_change_moves_its_bundle(decisions):
    await decisions.handle(prima_item("TEE"), prima_item("MUG"),
                           prima_item("GIFT-SET", "bundle", components=(("TEE", 1), ("MUG", 2))),
                           variant_observed("GIFT-SET", 0, item="gid://shopify/InventoryItem/9"),
                           prima_stock("TEE", 10, 1), prima_stock("MUG", 9, 2))
    gift = [p for p in decisions.pushes() if p.sku == "GIFT-SET"]
    assert gift[-1].quantity == 2  # min(10/1, 9/2) = 4, minus the buffer of 2

    await decisions.handle(prima_stock("MUG", 30, 3))  # the mugs allow 15 now: the tees (10) limit it
    [moved] = decisions.pushes()
    assert (moved.sku, moved.quantity) == ("GIFT-SET", 8)
    assert moved.reference_document_uri == "prima://bundle/WH-MAIN/GIFT-SET?components=MUGx2,TEEx1"
    assert decisions.app.find_stock("GIFT-SET", LOC).prima_available == 10


async def test_a_rejected_push_holds_the_sku_location_until_released(decisions):
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 0))
    [push] = decisions.pushes()
    await decisions.handle(level_rejected(push.command_id, "TEE", T0))
    assert decisions.app.find_stock("TEE", LOC).exception.kind == "push_rejected"

    await decisions.handle(prima_stock("TEE", 12, 2), prima_stock("TEE", 14, 3))
    assert decisions.pushes() == []  # no pushing into a known problem
    await decisions.handle(release_stock_level("OTHER-SKU"))  # someone else's release changes nothing here
    assert decisions.pushes() == []

    await decisions.handle(release_stock_level("TEE", by="alice"))
    [again] = decisions.pushes()
    assert (again.quantity, again.change_from_quantity, again.origin) == (12, 0, "operator")
    assert decisions.app.find_stock("TEE", LOC).exception is None


async def test_the_handler_counts_the_facts_it_took(decisions):
    def took(fact: str) -> float:
        return REGISTRY.get_sample_value("shopify_prima_inventory_facts_total", {"fact": fact}) or 0.0

    before = took("PrimaStockLevel"), took("ShopifyVariantObserved")
    await decisions.handle(prima_stock("TEE", 10, 1), prima_stock("MUG", 3, 2), variant_observed("TEE", 0))
    assert (took("PrimaStockLevel"), took("ShopifyVariantObserved")) == (before[0] + 2, before[1] + 1)


async def test_a_published_prima_stock_level_reaches_the_handler_through_the_consumer(decisions):
    """The platform Consumer on FastStream's test broker: decoded by its message_type header into
    the model the topic declares, handed over as a batch of Deliveries."""
    broker = make_broker(SETTINGS, "stock-decider-test")
    seen: list[Delivery[Any]] = []

    async def handler(deliveries: list[Delivery[Any]]) -> None:
        seen.extend(deliveries)
        await decisions.decider.handle(deliveries)

    Consumer(broker, SETTINGS, group="stock-decider-test", topics=TOPICS, accepts=ACCEPTS, handler=handler)
    Consumer(broker, SETTINGS, group="stock-decider-orders-test", topics=ORDER_TOPICS, accepts=ORDER_ACCEPTS,
             handler=handler, operations=False, start_from="latest")
    async with TestKafkaBroker(broker) as test_broker:
        for message in (variant_observed("TEE", 0), prima_stock("TEE", 10, 1)):
            topic = TOPIC_OF[message.message_type].name
            await test_broker.publish(encode(message), topic, key=sku_key(message.sku), headers=headers_for(message))
        release = release_stock_level("TEE")
        await test_broker.publish(encode(release), OPERATIONS.name, key=b"TEE", headers=headers_for(release))
        accepted = sales_order_requested(1001, ("TEE", 1))
        await test_broker.publish(encode(accepted), ORDER_EVENTS.name, key=b"1001",
                                  headers=headers_for(accepted, event_type=accepted.event_type))

    assert [type(d.message).__name__ for d in seen] == ["ShopifyVariantObserved", "PrimaStockLevel",
                                                        "ReleaseStockLevel", "SalesOrderRequested"]
    assert (seen[1].topic, seen[1].key, seen[1].message) == (PRIMA_INVENTORY.name, b"TEE", prima_stock("TEE", 10, 1))
    assert isinstance(seen[2].message, ReleaseStockLevel)
    assert [(p.sku, p.quantity) for p in decisions.pushes()] == [("TEE", 8), ("TEE", 7)]


# ------------------------------------------------------------- the order flow's events (defect 5)


async def test_an_accepted_order_is_held_back_until_primas_stock_feed_reports_its_allocation(decisions):
    """SalesOrderRequested (order events) is a pending allocation at the allocation warehouse's
    location; the stock record that names the order (allocated_for) ends it."""
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 8))
    assert decisions.pushes() == []

    await decisions.handle(sales_order_requested(1001, ("TEE", 2), ("MUG", 1)))
    [push] = decisions.pushes()
    assert (push.quantity, push.change_from_quantity, push.origin) == (6, 8, "pending_allocation")
    assert decisions.app.find_stock("TEE", LOC).pending_allocations == 2
    assert decisions.app.find_stock("MUG", LOC) is None  # no Prima level for it: nothing pends

    await decisions.handle(prima_stock("TEE", 8, 2, allocated_for="1001", allocated_sales_order="SO-000041"))
    found = decisions.app.find_stock("TEE", LOC)
    assert (found.pending_allocations, found.desired, found.allocated_through) == (0, 6, 41)
    assert decisions.pushes() == []  # Prima now says what Shopify was told


async def test_a_rejected_sales_order_ends_the_pending_allocation(decisions):
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 8), sales_order_requested(1001, ("TEE", 2)))
    decisions.pushes()
    await decisions.handle(sales_order_rejected(1001))
    [push] = decisions.pushes()
    assert (push.quantity, push.origin) == (8, "pending_allocation")
    assert decisions.app.find_stock("TEE", LOC).allocations == {}


async def test_a_sales_order_number_older_than_what_prima_reported_ends_it(decisions):
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 8), sales_order_requested(1001, ("TEE", 1)),
                           prima_stock("TEE", 8, 2, allocated_for="1002", allocated_sales_order="SO-000050"))
    assert decisions.app.find_stock("TEE", LOC).pending_allocations == 1
    await decisions.handle(sales_order_created(1001, 49))
    assert decisions.app.find_stock("TEE", LOC).pending_allocations == 0


async def test_order_events_that_are_not_allocation_facts_are_skipped(decisions):
    from contracts.orders.events import OrderAwaitingPayment

    event = sales_order_requested(1001, ("TEE", 1))
    waiting = OrderAwaitingPayment(**event.model_dump(exclude={"event_type", "command"}), financial_status="pending")
    await decisions.handle(waiting)
    assert decisions.new_events() == []


async def test_a_stale_outcome_is_decided_again_from_shopifys_level(decisions):
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 5))
    [command] = decisions.commands()
    assert (command.quantity, command.change_from_quantity) == (8, 5)
    await decisions.handle(sales_order_requested(1001, ("TEE", 1)))  # sold in Shopify: 5 -> 4
    [second] = decisions.commands()
    await decisions.handle(level_stale(second, 4, T0 + timedelta(seconds=1)))
    [third] = decisions.commands()
    assert (third.quantity, third.change_from_quantity, third.origin) == (7, 4, "stale_level")


# --------------------------------------------- a push the gateway gave up on heals (defect 6)


async def test_a_failed_push_is_decided_again_by_the_sweep_with_backoff_until_the_horizon(decisions):
    """After the Shopify gateway gives up, the SKU-location heals without `inventory release`:
    the sweep decides it again (released by "auto: ...") once its backoff is over, doubling per
    failure, and stops at the horizon after the first failure (a person looks then)."""
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 0))
    [first] = decisions.pushes()
    failed_at = T0 + timedelta(seconds=1)
    await decisions.handle(level_failed(first.command_id, "TEE", failed_at))
    assert decisions.app.find_stock("TEE", LOC).exception.kind == "push_failed"

    assert await decisions.decider.auto_release_once(failed_at + timedelta(seconds=4)) == []  # backoff: 5 s
    assert await decisions.decider.auto_release_once(failed_at + timedelta(seconds=5)) == [("TEE", LOC)]
    events = decisions.new_events()
    [released] = [e for _, e in events if isinstance(e, StockItem.PushReleased)]
    assert released.released_by.startswith("auto: ") and released.previous.kind == "push_failed"
    [second] = [e.command for _, e in events if isinstance(e, StockItem.PushRequested)]
    assert (second.quantity, second.change_from_quantity, second.origin) == (8, 0, "auto_release")

    failed_again = failed_at + timedelta(seconds=6)
    await decisions.handle(level_failed(second.command_id, "TEE", failed_again))
    assert await decisions.decider.auto_release_once(failed_again + timedelta(seconds=9)) == []  # now 10 s
    assert await decisions.decider.auto_release_once(failed_again + timedelta(seconds=10)) == [("TEE", LOC)]
    [third] = decisions.pushes()

    late = failed_at + timedelta(seconds=61)  # past the horizon after the first failure
    await decisions.handle(level_failed(third.command_id, "TEE", late))
    assert await decisions.decider.auto_release_once(late + timedelta(minutes=10)) == []
    assert decisions.app.find_stock("TEE", LOC).exception.kind == "push_failed"  # for a person now
    await decisions.handle(release_stock_level("TEE", by="alice"))
    [fourth] = decisions.pushes()
    await decisions.handle(level_confirmed(fourth.command_id, "TEE", 8, 0, late + timedelta(minutes=11)))
    assert decisions.app.failed == set()


async def test_a_rejected_push_is_never_released_by_the_sweep(decisions):
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 0))
    [push] = decisions.pushes()
    await decisions.handle(level_rejected(push.command_id, "TEE", T0))
    assert await decisions.decider.auto_release_once(T0 + timedelta(hours=1)) == []
    assert decisions.app.find_stock("TEE", LOC).exception.kind == "push_rejected"


async def test_the_failed_index_is_rebuilt_from_the_log(decisions):
    await decisions.handle(prima_stock("TEE", 10, 1), variant_observed("TEE", 0))
    [push] = decisions.pushes()
    await decisions.handle(level_failed(push.command_id, "TEE", T0))
    fresh = InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    fresh.recorder = fresh.events.recorder = decisions.app.recorder  # a restart: the same store
    assert fresh.load_failed_index() == 1
    decider = StockDecider(fresh, policy_from(SETTINGS), auto_release_from(SETTINGS))
    assert await decider.auto_release_once(T0 + timedelta(seconds=SETTINGS.parked_redrive_initial_seconds)) == [
        ("TEE", LOC)]
    fresh.close()


async def test_a_peak_boundary_is_not_skipped_when_re_deciding_fails_at_that_moment(decisions, monkeypatch):
    """Issue 8: PostgreSQL down at the moment a peak window opens. The re-decision is tried again
    (not given up, not left to a restart that would only wait for the next boundary), and the
    larger peak buffer reaches Shopify."""
    from datetime import UTC, datetime

    from domain.inventory.buffer import PeakWindow
    from services.platform.runner import Worker

    await decisions.handle(prima_stock("TEE", 10, 1))
    await decisions.handle(variant_observed("TEE", 0))
    assert [p.quantity for p in decisions.pushes()] == [8]
    start = datetime.now(UTC) + timedelta(seconds=0.2)
    rules = BufferRules(default=2, peak=(PeakWindow(name="sale", start=start, end=start + timedelta(hours=1),
                                                     default=5),))
    decisions.decider.policy = dataclasses.replace(decisions.decider.policy, rules=rules)
    refresh, calls = decisions.app.refresh, []

    def failing_once(*args):
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionError("PostgreSQL is restarting")
        return refresh(*args)

    monkeypatch.setattr(decisions.app, "refresh", failing_once)
    monkeypatch.setattr("services.inventory.decider.backoff", lambda attempt, initial, cap: 0.05)
    worker = Worker("stock-decider", SETTINGS)
    task = asyncio.create_task(decisions.decider.peak_boundaries(worker))
    for _ in range(100):
        if len(calls) >= 2:
            break
        await asyncio.sleep(0.05)
    worker.stop.set()
    await asyncio.wait_for(task, 5)
    assert len(calls) == 2
    assert [p.quantity for p in decisions.pushes()] == [5]
