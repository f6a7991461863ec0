"""One set of headers for every producer (services/platform/kafka.py): the names the AsyncAPI
document declares and no other, content-type application/json whatever headers a producer gave,
and the outbox relay's ids stable when the same notifications are relayed again."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
import yaml

from contracts.export import ASYNCAPI_PATH
from contracts.platform import ReleaseOrder
from domain.catalog.items import PrimaItem
from domain.orders.application import OrderApplication
from domain.orders.values import OrderDelivery
from services.orders.outbox import ORDER_RELAY
from services.platform.kafka import (
    CONTENT_TYPE,
    HEADERS,
    Outgoing,
    headers_for,
    wire_headers,
)
from services.platform.outbox import Relay
from services.platform.settings import Settings
from tests.platform.unit.test_outbox import T, paid_order


def command() -> ReleaseOrder:
    return ReleaseOrder(command_id=uuid4(), requested_by="jo@ops", requested_at=datetime.now(UTC),
                        shopify_order_id=1001)


def test_the_headers_a_producer_may_set_are_the_ones_the_asyncapi_document_declares():
    doc = yaml.safe_load(ASYNCAPI_PATH.read_text())
    declared = {name for message in doc["components"]["messages"].values()
                for name in message["headers"]["properties"]}
    assert declared == set(HEADERS)


def test_given_a_header_outside_the_documented_set_when_the_message_is_made_then_it_is_refused():
    with pytest.raises(ValueError, match="gateway"):
        Outgoing("t", b"k", command(), {**headers_for(command()), "gateway": "shopify-gateway"})
    with pytest.raises(TypeError):
        headers_for(command(), gateway="shopify-gateway")  # type: ignore[call-arg]


def test_given_producer_headers_without_a_content_type_when_published_then_the_wire_says_application_json():
    given = Outgoing("t", b"k", command(), {"correlation_id": "webhook-1"})
    assert wire_headers(given) == {"correlation_id": "webhook-1", "message_type": "ReleaseOrder",
                                   "content-type": CONTENT_TYPE}
    assert wire_headers(Outgoing("t", b"k", command())) == {"message_type": "ReleaseOrder",
                                                            "content-type": CONTENT_TYPE}


def test_given_the_same_notifications_relayed_twice_then_event_ids_and_headers_are_the_same():
    app = OrderApplication()
    items = {"TEE": PrimaItem(item_id="ITM-TEE", sku="TEE", description="Tee")}
    app.handle([OrderDelivery(webhook_id="w1", topic="orders/paid", received_at=T, order=paid_order())], items, T)
    first, _ = Relay(ORDER_RELAY, Settings(), None, app=app).read(0)
    again, _ = Relay(ORDER_RELAY, Settings(), None, app=app).read(0)  # a relay restarted before it stored its position

    assert [m.message for m in again] == [m.message for m in first]
    assert [m.headers for m in again] == [m.headers for m in first]
    events = [m for m in first if hasattr(m.message, "event_id")]
    assert events and len({m.message.event_id for m in events}) == len(events)
    for m in first:
        assert set(m.headers) == set(HEADERS)
        assert m.headers["event_type"] == getattr(m.message, "event_type", m.message.message_type)
