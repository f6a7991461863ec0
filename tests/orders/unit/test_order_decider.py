"""The order decider's handler (services/orders/decider.py) without the stack: the Order
application on in-memory persistence, the item master as a dict, and deliveries built from the
wire contracts as the platform consumer hands them over. Last, the same handler behind the
platform Consumer on FastStream's in-memory test broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any
from uuid import uuid4, uuid5

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from prometheus_client import REGISTRY
from pydantic import BaseModel

from contracts.platform import ReleaseOrder
from contracts.prima.sales_orders import PrimaSalesOrderCreated, PrimaSalesOrderParked
from contracts.shopify.orders import ShopifyOrderReceived
from contracts.topics import OPERATIONS, PRIMA_OUTCOMES, SHOPIFY_ORDERS, order_key
from domain.catalog.items import PrimaItem
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import Order, OrderState
from services.orders.decider import ACCEPTS, AUTO_RELEASED_BY, OrderDecider
from services.platform.kafka import Consumer, Delivery, encode, headers_for
from services.platform.settings import Settings
from tests.orders.builders import (
    ITEMS,
    NOW,
    items,
    received,
    uk_vat_inclusive,
    us_tax_exclusive,
    without_sku,
)


class ItemLookup:
    """The item-master read model, in memory: what the decider asks for, and what it gets."""

    def __init__(self, catalogue: dict[str, PrimaItem]) -> None:
        self.catalogue = dict(catalogue)
        self.asked: list[set[str]] = []

    async def __call__(self, skus: Iterable[str]) -> dict[str, PrimaItem]:
        wanted = set(skus)
        self.asked.append(wanted)
        return {sku: self.catalogue[sku] for sku in wanted if sku in self.catalogue}


class Saves:
    """Counts the event store's writes: one per transaction."""

    def __init__(self, app: OrderApplication) -> None:
        self.writes: list[int] = []  # events per write
        insert = app.recorder.insert_events

        def counted(stored_events: Any, **kwargs: Any) -> Any:
            self.writes.append(len(stored_events))
            return insert(stored_events, **kwargs)

        app.recorder.insert_events = counted  # type: ignore[method-assign]


def deliveries(*messages: BaseModel) -> list[Delivery[Any]]:
    """Messages as the consumer hands them to the handler: decoded, with where they came from."""
    topic_of = {ShopifyOrderReceived: SHOPIFY_ORDERS.name, ReleaseOrder: OPERATIONS.name}
    return [Delivery(m, topic_of.get(type(m), PRIMA_OUTCOMES.name), 0, offset,
                     order_key(m.shopify_order_id) if hasattr(m, "shopify_order_id") else order_key(m.order.id))
            for offset, m in enumerate(messages)]


def recorded(app: OrderApplication, shopify_order_id: int) -> list[str]:
    aggregate_id = Order.create_id(shopify_order_id)
    return [n.topic.rsplit(".", 1)[-1] for n in app.recorder.select_notifications(start=1, limit=1000)
            if n.originator_id == aggregate_id]


def first_command_id(shopify_order_id: int):
    """The id of an order's first CreateSalesOrder: derived from the order, stable on replay."""
    return uuid5(Order.create_id(shopify_order_id), "create-sales-order/1")


def release(shopify_order_id: int) -> ReleaseOrder:
    return ReleaseOrder(command_id=uuid4(), requested_by="ops@example.com", requested_at=NOW + timedelta(minutes=5),
                        shopify_order_id=shopify_order_id)


def stored_events(app: OrderApplication, shopify_order_id: int) -> list[Any]:
    return [app.mapper.to_domain_event(e) for e in app.recorder.select_events(Order.create_id(shopify_order_id))]


def deliveries_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("shopify_prima_order_deliveries_total", {"outcome": outcome}) or 0.0


@pytest.fixture
def orders():
    app = OrderApplication()  # no environment: the eventsourcing library's in-memory persistence
    yield app
    app.close()


async def test_a_batch_of_two_orders_and_an_outcome_is_saved_once_keeping_each_orders_order(orders):
    saves = Saves(orders)
    decider = OrderDecider(orders, ItemLookup(ITEMS))
    authorized = uk_vat_inclusive(1001, financial_status="authorized", updated_at=NOW - timedelta(minutes=1))

    await decider.handle(deliveries(
        received(us_tax_exclusive(2001)),
        received(authorized, "orders/create"),
        PrimaSalesOrderCreated(command_id=first_command_id(2001), shopify_order_id=2001,
                               sales_order_number="SO-000042", status="open", occurred_at=NOW),
        received(uk_vat_inclusive(1001), "orders/paid"),
    ))

    assert saves.writes == [7]  # one transaction: every event of the batch, with the notification log
    assert recorded(orders, 2001) == ["OrderReceived", "SalesOrderRequested", "SalesOrderCreated"]
    assert recorded(orders, 1001) == ["OrderReceived", "OrderAwaitingPayment", "OrderUpdated", "SalesOrderRequested"]
    in_prima, sent = orders.find_order(2001), orders.find_order(1001)
    assert in_prima is not None and (in_prima.state, in_prima.sales_order_number) == (OrderState.IN_PRIMA, "SO-000042")
    assert sent is not None and sent.state is OrderState.SENT
    assert sent.command is not None and sent.command.sales_order.totals.total == uk_vat_inclusive().total_price.amount


async def test_an_unknown_sku_quarantines_and_a_release_sends_the_order_once_the_item_exists(orders):
    lookup = ItemLookup(items("TSHIRT-BLK-M"))
    decider = OrderDecider(orders, lookup)

    await decider.handle(deliveries(received(uk_vat_inclusive(1001))))
    quarantined = orders.find_order(1001)
    assert quarantined is not None and quarantined.state is OrderState.QUARANTINED
    assert quarantined.quarantine is not None and quarantined.quarantine[2] == ("MUG-WHT",)
    assert lookup.asked == [{"TSHIRT-BLK-M", "MUG-WHT"}]  # the batch's SKUs, read at once

    lookup.catalogue.update(ITEMS)  # Prima's item fact reached the item-master read model
    await decider.handle(deliveries(release(1001)))

    # a release decides on the order as stored: its SKUs are read from the item master again
    assert lookup.asked[-1] == {"TSHIRT-BLK-M", "MUG-WHT"}
    assert recorded(orders, 1001) == ["OrderReceived", "OrderQuarantined", "OrderReleased", "SalesOrderRequested"]
    sent = orders.find_order(1001)
    assert sent is not None and sent.state is OrderState.SENT


async def test_a_duplicate_delivery_in_the_same_batch_changes_nothing(orders):
    saves = Saves(orders)
    decider = OrderDecider(orders, ItemLookup(ITEMS))
    paid = received(uk_vat_inclusive(1001))
    duplicates = deliveries_counted("duplicate")

    await decider.handle(deliveries(paid, paid))

    assert recorded(orders, 1001) == ["OrderReceived", "SalesOrderRequested"]
    assert deliveries_counted("duplicate") == duplicates + 1
    order = orders.find_order(1001)
    assert order is not None and order.commands_issued == 1

    # the whole batch again (redelivered before its offsets were committed): nothing is written
    await decider.handle(deliveries(paid, paid))
    assert saves.writes == [2]
    assert recorded(orders, 1001) == ["OrderReceived", "SalesOrderRequested"]


async def test_a_parked_order_released_is_sent_again_with_the_same_command(orders):
    decider = OrderDecider(orders, ItemLookup(ITEMS))
    await decider.handle(deliveries(received(us_tax_exclusive(2001))))
    first = orders.find_order(2001)
    assert first is not None and first.command is not None

    await decider.handle(deliveries(
        PrimaSalesOrderParked(command_id=first.command.command_id, shopify_order_id=2001, attempts=5,
                              reason="HTTP 503", occurred_at=NOW),
        release(2001),
        release(3003),  # no such order: refused, nothing written for it
    ))

    assert recorded(orders, 2001) == ["OrderReceived", "SalesOrderRequested", "SalesOrderParked", "OrderReleased",
                                      "SalesOrderRequested"]
    resent = orders.find_order(2001)
    assert resent is not None and resent.command == first.command
    assert orders.find_order(3003) is None


class Quarantined:
    """The order-sync read model's open unmapped_sku exceptions, in memory (it lags behind the
    orders: a released order's exception stays until the projector has seen the release)."""

    def __init__(self, *open_exceptions: tuple[int, tuple[str, ...]]) -> None:
        self.open = list(open_exceptions)

    async def __call__(self) -> list[tuple[int, tuple[str, ...]]]:
        return list(self.open)


async def test_a_quarantined_order_is_released_by_the_sweep_once_its_items_exist(orders):
    """Defect 6: nobody types `orders release`; once Prima's item reached the item master, the
    sweep decides the order again, through the same path as an operator's ReleaseOrder."""
    lookup = ItemLookup(items("TSHIRT-BLK-M"))
    decider = OrderDecider(orders, lookup, Quarantined((1001, ("MUG-WHT",))))
    await decider.handle(deliveries(received(uk_vat_inclusive(1001))))

    assert await decider.release_resolved() == []  # MUG-WHT is still unknown to Prima
    assert recorded(orders, 1001) == ["OrderReceived", "OrderQuarantined"]

    lookup.catalogue.update(ITEMS)
    assert await decider.release_resolved() == [1001]
    assert recorded(orders, 1001) == ["OrderReceived", "OrderQuarantined", "OrderReleased", "SalesOrderRequested"]
    order = orders.find_order(1001)
    assert order is not None and order.state is OrderState.SENT
    assert order.command is not None and order.command.command_id == first_command_id(1001)
    [released] = [e for e in stored_events(orders, 1001) if type(e).__name__ == "OrderReleased"]
    assert (released.released_by, released.previous_state) == (AUTO_RELEASED_BY, "quarantined")

    # the read model has not caught up yet: the next sweep asks again, and nothing is recorded
    assert await decider.release_resolved() == [1001]
    assert recorded(orders, 1001) == ["OrderReceived", "OrderQuarantined", "OrderReleased", "SalesOrderRequested"]


async def test_the_sweep_leaves_an_order_whose_lines_do_not_all_map_yet(orders):
    """A line without a SKU never maps: the sweep does not release the order, and even when
    the read model names only SKUs that exist, the order itself refuses: no event (the sweep
    comes back every few seconds)."""
    decider = OrderDecider(orders, ItemLookup(ITEMS), Quarantined((1001, ("",))))
    await decider.handle(deliveries(received(without_sku(uk_vat_inclusive(1001), 0))))
    assert recorded(orders, 1001) == ["OrderReceived", "OrderQuarantined"]

    assert await decider.release_resolved() == []
    decider.quarantined = Quarantined((1001, ("MUG-WHT",)))  # a read model saying less than the order
    assert await decider.release_resolved() == [1001]
    assert recorded(orders, 1001) == ["OrderReceived", "OrderQuarantined"]


async def test_the_sweep_and_the_consumers_batches_decide_one_at_a_time(orders):
    """Both save Orders through the application: never two at once in one decider (a batch
    and a release of the same order would otherwise race to the event store)."""
    lookup = ItemLookup(items("TSHIRT-BLK-M"))
    decider = OrderDecider(orders, lookup, Quarantined((1001, ("MUG-WHT",))))
    await decider.handle(deliveries(received(uk_vat_inclusive(1001))))
    lookup.catalogue.update(ITEMS)
    running, most = [0], [0]
    handle = orders.handle

    def slow_handle(*args: Any) -> Any:  # runs in a worker thread, as in the service
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.05)
        running[0] -= 1
        return handle(*args)

    orders.handle = slow_handle  # type: ignore[method-assign]
    await asyncio.gather(decider.release_resolved(), decider.handle(deliveries(received(us_tax_exclusive(2001)))),
                         decider.handle(deliveries(release(1001))))

    assert most[0] == 1
    assert recorded(orders, 1001) == ["OrderReceived", "OrderQuarantined", "OrderReleased", "SalesOrderRequested"]
    assert recorded(orders, 2001) == ["OrderReceived", "SalesOrderRequested"]


async def test_the_sweep_runs_every_interval_and_outlives_a_read_model_that_fails(orders):
    lookup = ItemLookup(items("TSHIRT-BLK-M"))
    reads = [0]

    async def flaky() -> list[tuple[int, tuple[str, ...]]]:
        reads[0] += 1
        if reads[0] == 1:
            raise ConnectionRefusedError("PostgreSQL is restarting")
        return [(1001, ("MUG-WHT",))]

    decider = OrderDecider(orders, lookup, flaky)
    await decider.handle(deliveries(received(uk_vat_inclusive(1001))))
    lookup.catalogue.update(ITEMS)
    stop = asyncio.Event()
    sweeping = asyncio.create_task(decider.sweep(stop, 0.02))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if orders.find_order(1001).state is OrderState.SENT:  # type: ignore[union-attr]
            break
    stop.set()
    await sweeping
    assert reads[0] >= 2
    assert recorded(orders, 1001) == ["OrderReceived", "OrderQuarantined", "OrderReleased", "SalesOrderRequested"]


async def test_the_decider_runs_behind_the_platform_consumer(orders, settings: Settings):
    """The handler as the worker wires it (services/orders/decider.py main), on FastStream's
    in-memory test broker: a ShopifyOrderReceived published with its message_type header is
    decoded, handed to the decider in a batch, and the Order decides."""
    lookup = ItemLookup(ITEMS)
    broker = KafkaBroker()
    Consumer(broker, settings, group="test-order-decider", topics=[SHOPIFY_ORDERS, PRIMA_OUTCOMES], accepts=ACCEPTS,
             handler=OrderDecider(orders, lookup).handle)
    paid = received(uk_vat_inclusive(1001))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(encode(paid), SHOPIFY_ORDERS.name, key=order_key(1001), headers=headers_for(paid))
        assert recorded(orders, 1001) == ["OrderReceived", "SalesOrderRequested"]

        created = PrimaSalesOrderCreated(command_id=first_command_id(1001), shopify_order_id=1001,
                                         sales_order_number="SO-000007", status="open", occurred_at=NOW)
        await test_broker.publish(encode(created), PRIMA_OUTCOMES.name, key=order_key(1001),
                                  headers=headers_for(created))

    order = orders.find_order(1001)
    assert order is not None and (order.state, order.sales_order_number) == (OrderState.IN_PRIMA, "SO-000007")
    # the outcome's batch asks for its order's SKUs: a delivery that came while the command was
    # with Prima is decided once the answer is in
    assert lookup.asked == [{"TSHIRT-BLK-M", "MUG-WHT"}, {"TSHIRT-BLK-M", "MUG-WHT"}]
