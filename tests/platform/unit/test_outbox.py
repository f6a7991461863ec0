"""The generic outbox relay (services/platform/outbox.py) with each flow's relay table, on the
in-memory event store: every domain event type has a route, every message it builds is valid
on its topic, commands go to their command topic, and a notification that cannot be relayed is
dead-lettered instead of stopping the log."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pydantic import TypeAdapter

from contracts.inventory.events import StockEvent
from contracts.orders.events import OrderEvent
from contracts.platform import DeadLetter
from contracts.prima.sales_orders import CreateSalesOrder
from contracts.shopify.inventory import SetInventoryLevel
from contracts.topics import DEAD_LETTERS, ORDER_EVENTS, PRIMA_COMMANDS, SHOPIFY_COMMANDS, STOCK_EVENTS
from domain.catalog.items import PrimaItem
from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from domain.inventory.domainmodel import CatalogItem, StockItem
from domain.inventory.values import ItemReported, LevelSeen, StockLevelReported, VariantSeen
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import Order
from domain.orders.values import OrderDelivery, OrderLine, OrderSnapshot
from domain.shared.money import Money
from services.inventory.outbox import STOCK_RELAY
from services.orders.outbox import ORDER_RELAY
from services.platform.outbox import Relay
from services.platform.settings import Settings

T = datetime(2026, 11, 2, 9, tzinfo=UTC)
LOC = "gid://shopify/Location/1"


def event_types(aggregate: type) -> set[str]:
    base = {"Event", "Created", "Snapshot"}
    return {f"{aggregate.__name__}.{name}" for name, value in vars(aggregate).items()
            if isinstance(value, type) and issubclass(value, aggregate.Event) and name not in base}


def test_every_domain_event_type_has_a_route():
    assert set(ORDER_RELAY.routes) == event_types(Order)
    assert set(STOCK_RELAY.routes) == event_types(StockItem) | event_types(CatalogItem)


def paid_order(order_id: int = 1001) -> OrderSnapshot:
    usd = lambda amount: Money(Decimal(amount), "USD")  # noqa: E731
    return OrderSnapshot(
        shopify_order_id=order_id, name=f"#{order_id}", order_number=order_id, email=None, currency="USD",
        presentment_currency="USD", taxes_included=False, financial_status="paid", test=False, created_at=T,
        updated_at=T, processed_at=T, cancelled_at=None, subtotal_price=usd("20.00"), total_discounts=usd("0.00"),
        total_tax=usd("0.00"), total_price=usd("20.00"),
        lines=(OrderLine(line_id=1, sku="TEE", title="Tee", variant_id=None, quantity=2, unit_price=usd("10.00"),
                         discount=usd("0.00")),),
    )


def relay_messages(relay: Relay) -> list:
    messages, last = relay.read(0)
    assert last is not None
    return messages


def test_order_events_become_order_event_messages_and_the_request_a_create_sales_order():
    app = OrderApplication()
    items = {"TEE": PrimaItem(item_id="ITM-TEE", sku="TEE", description="Tee")}
    app.handle([OrderDelivery(webhook_id="w1", topic="orders/paid", received_at=T, order=paid_order())], items, T)
    messages = relay_messages(Relay(ORDER_RELAY, Settings(), None, app=app))

    events = [m for m in messages if m.topic == ORDER_EVENTS.name]
    assert [m.message.event_type for m in events] == ["OrderReceived", "SalesOrderRequested"]
    for m in events:
        TypeAdapter(OrderEvent).validate_json(m.message.model_dump_json())
        assert m.key == b"1001" and m.headers["message_type"] == "OrderEvent"
        assert m.headers["content-type"] == "application/json" and m.headers["causation_id"] == str(m.message.event_id)
    (command,) = [m for m in messages if m.topic == PRIMA_COMMANDS.name]
    assert isinstance(command.message, CreateSalesOrder) and command.key == b"1001"
    assert command.message.sales_order.totals.total == Decimal("20.00")
    assert command.message.command_id == events[1].message.command.command_id


def test_stock_events_become_typed_stock_messages_and_the_push_a_set_inventory_level():
    app = InventoryApplication()
    policy = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2))
    app.handle([
        ItemReported(item=PrimaItem(item_id="ITM-TEE", sku="TEE", description="Tee"), updated_at=T),
        StockLevelReported(sku="TEE", warehouse="WH-MAIN", available=10, change_id=1),
        VariantSeen(sku="TEE", variant_id="V1", product_id="P1", product_status="ACTIVE",
                    inventory_item_id="gid://shopify/InventoryItem/1", levels=(LevelSeen(LOC, 0),), observed_at=T),
    ], policy, T)
    messages = relay_messages(Relay(STOCK_RELAY, Settings(), None, app=app))

    events = [TypeAdapter(StockEvent).validate_json(m.message.model_dump_json())
              for m in messages if m.topic == STOCK_EVENTS.name]
    assert {e.event_type for e in events} >= {"CatalogItem.PrimaItemRecorded", "StockItem.Registered",
                                              "StockItem.DesiredLevelChanged", "StockItem.PushRequested"}
    assert all(e.sku == "TEE" for e in events)
    assert {e.location_id for e in events if e.event_type.startswith("StockItem.")} == {LOC}
    assert {e.location_id for e in events if e.event_type.startswith("CatalogItem.")} == {None}
    (command,) = [m for m in messages if m.topic == SHOPIFY_COMMANDS.name]
    assert isinstance(command.message, SetInventoryLevel) and command.message.quantity == 8 and command.key == b"TEE"


def test_a_notification_without_a_route_is_dead_lettered_and_the_relay_goes_on():
    app = OrderApplication()
    app.handle([OrderDelivery(webhook_id="w1", topic="orders/paid", received_at=T, order=paid_order())], {}, T)
    table = ORDER_RELAY.__class__(**{**ORDER_RELAY.__dict__, "routes": {
        k: v for k, v in ORDER_RELAY.routes.items() if k != "Order.OrderReceived"}})
    messages = relay_messages(Relay(table, Settings(), None, app=app))

    (letter,) = [m.message for m in messages if m.topic == DEAD_LETTERS.name]
    assert isinstance(letter, DeadLetter) and letter.group == "outbox-relay.orders"
    assert "no route for Order.OrderReceived" in letter.error
    # the events after it are relayed
    assert [m.message.event_type for m in messages if m.topic == ORDER_EVENTS.name] == ["OrderQuarantined"]
