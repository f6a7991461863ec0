"""The Order application on the real PostgreSQL event store: one command in the notification
log however often a delivery is handled, the same state (domain values, not dicts) after
reloading from the store, and a batch's orders loaded in one query as one by one."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from domain.orders.application import OrderApplication
from domain.orders.domainmodel import Order, OrderState
from domain.orders.values import OrderSnapshot, SalesOrderRequest
from services.platform.settings import Settings
from tests.orders.builders import ITEMS, delivery, uk_vat_inclusive, us_tax_exclusive

pytestmark = pytest.mark.integration
SCHEMA = "event_store_test"


@pytest.fixture(scope="module")
def orders(database_url):
    # its own schema, with its own tables: the running relay must not pick these test orders up
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    env = Settings(database_url=database_url, event_store_schema=SCHEMA).eventsourcing_env(create_tables=True)
    app = OrderApplication(env=env)
    yield app
    app.close()


def new_order_id() -> int:
    return time.time_ns() // 1000 + uuid.uuid4().int % 1000


def recorded(app: OrderApplication, shopify_order_id: int, start: int) -> list[str]:
    aggregate_id = Order.create_id(shopify_order_id)
    return [n.topic.rsplit(".", 1)[-1] for n in app.recorder.select_notifications(start, 1000)
            if n.originator_id == aggregate_id]


def test_repeated_delivery_leaves_one_sales_order_request_in_the_notification_log(orders):
    order_id = new_order_id()
    start = (orders.recorder.max_notification_id() or 0) + 1
    paid = delivery(us_tax_exclusive(order_id), received_at=datetime.now(UTC))

    first = orders.handle([paid, paid], ITEMS, datetime.now(UTC))  # twice in one batch
    again = orders.handle([paid], ITEMS, datetime.now(UTC))  # and redelivered

    assert (first.deliveries, first.saved) == ({"applied": 1, "duplicate": 1}, 1)
    assert (again.deliveries, again.saved) == ({"duplicate": 1}, 0)
    assert recorded(orders, order_id, start) == ["OrderReceived", "SalesOrderRequested"]
    reloaded = orders.find_order(order_id)
    assert reloaded is not None and reloaded.state is OrderState.SENT and reloaded.commands_issued == 1
    # the values come back as the domain's own types from PostgreSQL too
    assert isinstance(reloaded.snapshot, OrderSnapshot) and reloaded.snapshot == paid.order
    assert isinstance(reloaded.command, SalesOrderRequest)
    assert str(reloaded.command.sales_order.totals.total) == "78.29"


def test_a_batch_loads_its_orders_at_once_and_as_one_by_one(orders):
    ids = [new_order_id() + i for i in range(20)]
    now = datetime.now(UTC)
    orders.handle([delivery(uk_vat_inclusive(i) if i % 2 else us_tax_exclusive(i), received_at=now) for i in ids],
                  ITEMS, now)
    aggregate_ids = [Order.create_id(i) for i in ids]

    loaded = orders.load_many([*aggregate_ids, uuid.uuid4()])

    assert set(loaded) == set(aggregate_ids)  # an unknown id is simply absent
    for aggregate_id in aggregate_ids:
        one = orders.repository.get(aggregate_id)
        many = loaded[aggregate_id]
        assert (many.version, many.state, many.snapshot, many.command) == (one.version, one.state, one.snapshot,
                                                                           one.command)
