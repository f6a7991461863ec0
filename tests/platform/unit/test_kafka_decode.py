"""How a consumer decodes a Kafka record (services/platform/kafka.py): by its `message_type`
header into the model its topic declares; a message the topic carries but the group does not
handle is skipped (None); anything else is Undecodable, with an error that names what is wrong
but never repeats the body (customer data stays out of the logs and the dead letter's error)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

from contracts.inventory.events import PushConfirmed, StockEvent
from contracts.prima.sales_orders import CreateSalesOrder, PrimaSalesOrderCreated, PrimaSalesOrderRejected
from contracts.topics import PRIMA_COMMANDS, PRIMA_OUTCOMES, STOCK_EVENTS
from services.platform.kafka import Undecodable, decode_record, encode, headers_for, message_type_of

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
COMMAND_ID = UUID("6f1c1f0e-8a43-4c59-9d1f-0b5b8f7a2b11")
CUSTOMER_EMAIL = "jane.doe@example.com"


def record(topic: str, value: bytes, headers: dict[str, str] | None = None) -> SimpleNamespace:
    """A consumed record as aiokafka gives it: headers are (name, bytes) pairs."""
    return SimpleNamespace(topic=topic, partition=2, offset=41, key=b"1001", value=value,
                           headers=[(k, v.encode()) for k, v in (headers or {}).items()])


def command_body(**changes: Any) -> dict[str, Any]:
    body = {
        "message_type": "CreateSalesOrder", "command_id": str(COMMAND_ID), "idempotency_key": "k",
        "shopify_order_id": 1001, "issued_at": NOW.isoformat(),
        "sales_order": {"external_reference": "1001", "order_name": "#1001", "currency": "GBP",
                        "taxes_included": True, "order_date": NOW.isoformat(), "customer_email": CUSTOMER_EMAIL,
                        "lines": [], "totals": {"lines_net": "0.00", "shipping_net": "0.00", "tax": "0.00",
                                                "total": "0.00"}},
    }
    body.update(changes)
    return body


def created() -> PrimaSalesOrderCreated:
    return PrimaSalesOrderCreated(command_id=COMMAND_ID, shopify_order_id=1001, sales_order_number="SO-1",
                                  status="open", occurred_at=NOW)


def rejected() -> PrimaSalesOrderRejected:
    return PrimaSalesOrderRejected(command_id=COMMAND_ID, shopify_order_id=1001, status_code=422, code="invalid",
                                   reason="no such item", occurred_at=NOW)


OUTCOMES_GROUP = {"PrimaSalesOrderCreated": PrimaSalesOrderCreated}  # a group handling one outcome only


# ---------------------------------------------------------------------------- message_type_of


def test_message_type_is_read_from_the_header_first():
    found = record(PRIMA_OUTCOMES.name, encode(created()), {"message_type": "PrimaSalesOrderRejected"})
    assert message_type_of(found) == "PrimaSalesOrderRejected"


def test_without_the_header_message_type_is_read_from_the_body():
    assert message_type_of(record(PRIMA_OUTCOMES.name, encode(created()))) == "PrimaSalesOrderCreated"
    assert message_type_of(record(PRIMA_OUTCOMES.name, b"not json")) is None
    assert message_type_of(record(PRIMA_OUTCOMES.name, b'["a", "list"]')) is None
    assert message_type_of(record(PRIMA_OUTCOMES.name, b'{"message_type": 7}')) is None


# ------------------------------------------------------------------------------ decode_record


def test_a_record_with_its_message_type_header_decodes_into_its_model():
    body = json.dumps(command_body()).encode()
    message = decode_record(record(PRIMA_COMMANDS.name, body, {"message_type": "CreateSalesOrder",
                                                               "content-type": "application/json"}),
                            {"CreateSalesOrder": CreateSalesOrder})
    assert isinstance(message, CreateSalesOrder)
    assert message.shopify_order_id == 1001 and str(message.sales_order.totals.total) == "0.00"


def test_a_message_as_producers_send_it_decodes_back_to_the_same_message():
    outcome = created()
    back = decode_record(record(PRIMA_OUTCOMES.name, encode(outcome), headers_for(outcome)), OUTCOMES_GROUP)
    assert back == outcome


def test_an_event_of_a_domain_event_topic_decodes_into_its_event_type():
    event = PushConfirmed(event_id=UUID(int=1), sku="MUG-WHT", location_id="gid://shopify/Location/1",
                          aggregate_id=UUID(int=2), aggregate_version=5, timestamp=NOW, notification_id=9,
                          command_id=COMMAND_ID, quantity=4, previous_quantity=3, stale_retries=0, occurred_at=NOW)
    back = decode_record(record(STOCK_EVENTS.name, encode(event), headers_for(event)), {"StockEvent": StockEvent})
    assert type(back) is PushConfirmed and back == event


def test_a_type_the_topic_carries_but_the_group_does_not_handle_is_skipped():
    outcome = rejected()
    assert decode_record(record(PRIMA_OUTCOMES.name, encode(outcome), headers_for(outcome)), OUTCOMES_GROUP) is None


def test_an_unknown_message_type_is_undecodable():
    with pytest.raises(Undecodable, match="'SalesOrderCreated' is not one prima.outcomes.v1 carries"):
        decode_record(record(PRIMA_OUTCOMES.name, encode(created()), {"message_type": "SalesOrderCreated"}),
                      OUTCOMES_GROUP)
    with pytest.raises(Undecodable, match="None is not one"):  # neither a header nor a body field
        decode_record(record(PRIMA_OUTCOMES.name, b"{}"), OUTCOMES_GROUP)
    with pytest.raises(Undecodable):  # a topic no contract declares
        decode_record(record("somebody-elses.topic.v1", encode(created()), headers_for(created())), {})


@pytest.mark.parametrize("body", [
    command_body(shopify_order_id=CUSTOMER_EMAIL),  # a value of the wrong type
    {k: v for k, v in command_body().items() if k != "command_id"},  # a required field missing
    command_body(sales_order={"customer_email": CUSTOMER_EMAIL}),  # a nested model incomplete
], ids=["wrong-type", "missing-field", "incomplete-nested"])
def test_a_body_that_does_not_validate_is_undecodable_without_repeating_the_body(body):
    raw = json.dumps(body).encode()
    with pytest.raises(Undecodable) as caught:
        decode_record(record(PRIMA_COMMANDS.name, raw, {"message_type": "CreateSalesOrder"}),
                      {"CreateSalesOrder": CreateSalesOrder})
    error = str(caught.value)
    assert error.startswith("CreateSalesOrder does not validate:")
    assert CUSTOMER_EMAIL not in error and "jane.doe" not in error
    assert raw.decode() not in error


def test_a_body_that_is_not_json_is_undecodable_without_repeating_it():
    raw = f"customer {CUSTOMER_EMAIL} is not JSON".encode()
    with pytest.raises(Undecodable, match="CreateSalesOrder does not validate") as caught:
        decode_record(record(PRIMA_COMMANDS.name, raw, {"message_type": "CreateSalesOrder"}),
                      {"CreateSalesOrder": CreateSalesOrder})
    assert CUSTOMER_EMAIL not in str(caught.value)
