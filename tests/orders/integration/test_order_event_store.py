"""The Order application on the real PostgreSQL event store: one command in the notification
log however often a delivery is handled, and the same state after reloading from the log."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from contracts.shopify import ShopifyOrder, ShopifyOrderReceived
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import DeliveryOutcome, OrderState
from domain.orders.mapping import PrimaItem
from sandboxes.shopify.orders import random_paid_order
from services.config import Settings

pytestmark = pytest.mark.integration
ITEMS = {s: PrimaItem(f"ITM-{s}", s, s) for s in ("A", "B", "C")}


@pytest.fixture
def orders(database_url):
    # its own schema: the running relay must not pick these test orders up
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS event_store_test")
    env = Settings(database_url=database_url, event_store_schema="event_store_test").eventsourcing_env(create_tables=True)
    app = OrderApplication(env=env)
    yield app
    app.close()


def test_repeated_delivery_leaves_one_sales_order_request_in_the_notification_log(orders):
    import random

    order_id = time.time_ns() // 1000
    start = (orders.recorder.max_notification_id() or 0) + 1
    delivery = ShopifyOrderReceived(
        webhook_id=str(uuid.uuid4()), topic="orders/paid", shop_domain="s", received_at=datetime.now(UTC),
        raw_payload_id=uuid.uuid4(), order=ShopifyOrder.from_webhook(random_paid_order(order_id, list(ITEMS), random.Random(7))),
    )
    assert orders.handle_delivery(delivery, ITEMS) is DeliveryOutcome.APPLIED
    assert orders.handle_delivery(delivery, ITEMS) is DeliveryOutcome.DUPLICATE
    topics = [n.topic.rsplit(".", 1)[-1] for n in orders.recorder.select_notifications(start, 100)
              if n.originator_id == orders.find(order_id).id]
    assert topics == ["OrderReceived", "SalesOrderRequested"]
    reloaded = orders.find(order_id)
    assert reloaded.state is OrderState.SENT and reloaded.commands_issued == 1
