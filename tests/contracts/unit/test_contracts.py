"""The exported wire contracts (contracts/schemas/*.json, contracts/asyncapi.yaml) match the models,
cover every topic and every message a topic carries, and describe what the services really put
on Kafka: money as strings, and the headers every message carries."""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from pydantic import AwareDatetime, BaseModel, TypeAdapter

from contracts import export
from contracts.inventory.events import StockEvent
from contracts.orders.events import OrderEvent
from contracts.orders.events import SalesOrderRequested as SalesOrderRequestedEvent
from contracts.prima.sales_orders import (
    CreateSalesOrder,
    PrimaOutcome,
    PrimaSalesOrderCreated,
    SalesOrderDraft,
    SalesOrderLine,
    SalesOrderShipping,
    SalesOrderTotals,
)
from contracts.shopify.orders import ShopifyOrder, ShopifyOrderReceived
from contracts.topics import ALL_TOPICS, members_of
from contracts.validation import CurrencyCode
from services.platform.kafka import (  # what every producer puts on the wire
    encode,
    headers_for,
)

D = Decimal
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
COMMAND_ID = UUID("7d0f3a52-5c1e-4d7e-9b7a-1f2e3d4c5b6a")
SAMPLE = Path(__file__).resolve().parents[2] / "fixtures/shopify/orders-create-test-notification.json"


def command() -> CreateSalesOrder:
    return CreateSalesOrder(
        command_id=COMMAND_ID,
        idempotency_key=f"shopify-prima:create-sales-order:{COMMAND_ID}",
        shopify_order_id=1001,
        issued_at=NOW,
        sales_order=SalesOrderDraft(
            external_reference="1001",
            order_name="#1001",
            currency="GBP",
            taxes_included=True,
            order_date=NOW,
            customer_email="jon@example.com",
            lines=(
                SalesOrderLine(
                    line_number=1, item_id="ITM-MUG", sku="MUG-WHT", description="Mug", quantity=2,
                    unit_price=D("12.50"), discount_amount=D("0.00"), tax_amount=D("4.17"), net_amount=D("25.00"),
                ),
            ),
            shipping=SalesOrderShipping(
                description="Royal Mail", amount=D("5.00"), discount_amount=D("1.00"), tax_amount=D("0.67"),
            ),
            totals=SalesOrderTotals(lines_net=D("25.00"), shipping_net=D("4.00"), tax=D("4.84"), total=D("29.00")),
        ),
    )


def load_schema(topic_name: str) -> dict[str, Any]:
    return json.loads((export.SCHEMAS_DIR / f"{topic_name}.json").read_text())


def load_asyncapi() -> dict[str, Any]:
    return yaml.safe_load(export.ASYNCAPI_PATH.read_text())


# (a) ------------------------------------------------------------------------------------------


def test_exported_files_are_up_to_date():
    stale = [str(p.relative_to(export.CONTRACTS_DIR.parent)) for p in export.out_of_date()]
    assert stale == [], f"run `python -m contracts.export`: {stale}"


def test_check_flag_reports_a_changed_file(tmp_path, monkeypatch, capsys):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    monkeypatch.setattr(export, "SCHEMAS_DIR", schemas)
    monkeypatch.setattr(export, "ASYNCAPI_PATH", tmp_path / "asyncapi.yaml")
    monkeypatch.setattr(export, "CONTRACTS_DIR", tmp_path)
    assert export.main(["--check"]) == 1  # nothing exported yet
    assert not list(schemas.iterdir()), "--check must not write"
    assert export.main([]) == 0
    assert export.main(["--check"]) == 0
    target = schemas / "prima.commands.v1.json"
    target.write_text(target.read_text().replace('"string"', '"number"'))
    (schemas / "old.topic.v0.json").write_text("{}\n")
    capsys.readouterr()
    assert export.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "prima.commands.v1.json" in err and "old.topic.v0.json" in err
    assert "shopify.orders.v1.json" not in err


# (b) ------------------------------------------------------------------------------------------


def test_the_contract_table_covers_exactly_the_topics():
    assert sorted(c.topic.name for c in export.CONTRACTS) == sorted(t.name for t in ALL_TOPICS)


def message_type_of(model: type[BaseModel]) -> str:
    return model.model_fields["message_type"].default


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_every_topic_declares_its_messages_each_with_its_own_message_type(topic):
    """Consumers decode a record by its message_type header into the model its topic declares
    (services/platform/kafka.py decode_record): so a topic declares at least one model, and two
    models share a message_type only as members of the topic's event union, told apart by
    event_type."""
    assert topic.messages, f"{topic.name} declares no message model"
    by_type: dict[str, list[type[BaseModel]]] = {}
    for model in topic.messages:
        assert isinstance(message_type_of(model), str), f"{model.__name__} has no message_type default"
        by_type.setdefault(message_type_of(model), []).append(model)
    assert sorted(topic.message_types) == sorted(by_type)
    for message_type, models in by_type.items():
        decodes_to = topic.message_types[message_type]
        if len(models) == 1:
            assert decodes_to is models[0]
            continue
        assert set(members_of(decodes_to)) == set(models), f"{message_type}: not the topic's event union"
        event_types = [m.model_fields["event_type"].default for m in models]
        assert len(set(event_types)) == len(event_types), f"{message_type}: two members share an event_type"
        for model in models:  # the union really tells them apart
            assert type(TypeAdapter(decodes_to).validate_json(encode(sample(model)))) is model


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_every_topic_has_a_schema_file_and_a_channel(topic):
    schema = load_schema(topic.name)
    assert schema["$id"] == export.SCHEMA_ID_PREFIX + topic.name
    assert schema["title"] == topic.name
    assert schema["description"] == topic.description

    doc = load_asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    [channel] = [c for c in doc["channels"].values() if c["address"] == topic.name]
    [ref] = channel["messages"].values()
    message = doc["components"]["messages"][ref["$ref"].removeprefix("#/components/messages/")]
    assert message["payload"] == {"$ref": f"schemas/{topic.name}.json"}
    assert (export.ASYNCAPI_PATH.parent / message["payload"]["$ref"]).is_file()
    assert message["bindings"]["kafka"]["key"]["description"] == topic.key
    assert channel["bindings"]["kafka"]["partitions"] == topic.partitions

    headers = message["headers"]["properties"]  # what headers_for puts on every message
    assert {"message_type", "content-type"} <= set(message["headers"]["required"])
    assert headers["message_type"]["enum"] == sorted(topic.message_types)
    assert headers["content-type"]["const"] == "application/json"
    if "event_type" in headers:  # the outbox relay's topics: each event type is named
        kinds = {m.model_fields["event_type"].default if "event_type" in m.model_fields else message_type_of(m)
                 for m in topic.messages}
        assert headers["event_type"]["enum"] == sorted(kinds)


def test_the_document_does_not_say_every_message_is_keyed_by_the_order_id():
    doc = load_asyncapi()
    assert "Every message is keyed by the Shopify order id" not in doc["info"]["description"]
    assert {c["bindings"]["kafka"]["key"]["description"] for c in doc["components"]["messages"].values()} >= {
        "Shopify order id", "SKU", "dead letter id"}


def test_headers_say_where_correlation_and_causation_ids_are_set():
    doc = load_asyncapi()
    channel_of = {c["address"]: c for c in doc["channels"].values()}

    def headers(topic: str) -> dict[str, Any]:
        [ref] = channel_of[topic]["messages"].values()
        return doc["components"]["messages"][ref["$ref"].removeprefix("#/components/messages/")]["headers"]

    assert "correlation_id" in headers("shopify.orders.v1")["required"]  # the webhook id
    for relayed in ("prima.commands.v1", "shopify-prima.order-events.v1", "shopify.commands.v1",
                    "shopify-prima.stock-events.v1"):
        assert {"correlation_id", "causation_id", "event_type"} <= set(headers(relayed)["required"]), relayed
    for topic in ("prima.outcomes.v1", "shopify-prima.operations.v1", "shopify-prima.dead-letters.v1"):
        # FastStream gives every message a correlation_id: a random one where the producer sets none
        assert headers(topic)["required"] == ["message_type", "content-type", "correlation_id"], topic
        assert headers(topic)["properties"]["correlation_id"]["description"] == export.FASTSTREAM_CORRELATION


def test_asyncapi_operations_say_who_sends_and_receives_what():
    doc = load_asyncapi()
    address = {f"#/channels/{cid}": c["address"] for cid, c in doc["channels"].items()}
    seen = {(op["tags"][0]["name"], op["action"], address[op["channel"]["$ref"]]) for op in doc["operations"].values()}
    assert seen == {
        ("shopify-ingest", "send", "shopify.orders.v1"),
        ("order-decider", "receive", "shopify.orders.v1"),
        ("projector", "receive", "shopify.orders.v1"),  # the payment gateways of each order (payouts)
        ("order-decider", "receive", "prima.outcomes.v1"),
        ("outbox-relay", "send", "prima.commands.v1"),
        ("outbox-relay", "send", "shopify-prima.order-events.v1"),
        ("prima-gateway", "receive", "prima.commands.v1"),
        ("prima-gateway", "send", "prima.outcomes.v1"),
        ("projector", "receive", "shopify-prima.order-events.v1"),
        ("prima-ingest", "send", "prima.inventory.v1"),  # services.prima.poller
        ("prima-ingest", "send", "prima.despatches.v1"),  # services.prima.poller, the despatches feed
        ("catalog-reader", "send", "shopify.inventory.v1"),
        ("stock-decider", "receive", "prima.inventory.v1"),
        ("stock-decider", "receive", "shopify.inventory.v1"),
        ("stock-decider", "receive", "shopify.outcomes.v1"),
        ("outbox-relay", "send", "shopify.commands.v1"),
        ("outbox-relay", "send", "shopify-prima.stock-events.v1"),
        ("shopify-gateway", "receive", "shopify.commands.v1"),
        ("shopify-gateway", "send", "shopify.outcomes.v1"),
        ("projector", "receive", "shopify-prima.stock-events.v1"),
        ("projector", "receive", "prima.inventory.v1"),  # the item master
        ("ops-api", "send", "shopify-prima.operations.v1"),
        ("payout-ingest", "send", "shopify.payouts.v1"),  # services.payouts.ingest
        ("payout-decider", "receive", "shopify.payouts.v1"),
        ("payout-decider", "receive", "prima.outcomes.v1"),
        ("stock-decider", "receive", "shopify-prima.order-events.v1"),  # pending allocations
        ("fulfilment-decider", "receive", "prima.despatches.v1"),  # services.fulfilment.decider
        ("fulfilment-decider", "receive", "shopify-prima.order-events.v1"),  # the sales orders' lines
        ("fulfilment-decider", "receive", "shopify.outcomes.v1"),
        ("outbox-relay", "send", "shopify-prima.fulfilment-events.v1"),
        ("projector", "receive", "shopify-prima.fulfilment-events.v1"),
        ("outbox-relay", "send", "shopify-prima.payout-events.v1"),
        ("projector", "receive", "shopify-prima.payout-events.v1"),
        *{(group, "receive", "shopify-prima.operations.v1") for group in export.CONSUMER_GROUPS},
        *{(group, "send", "shopify-prima.dead-letters.v1") for group in (*export.CONSUMER_GROUPS, "outbox-relay")},
        ("projector", "receive", "shopify-prima.dead-letters.v1"),
    }
    for op in doc["operations"].values():  # an operation's messages are its channel's
        for msg in op["messages"]:
            assert msg["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
    for cid in doc["channels"]:
        assert re.fullmatch(r"[A-Za-z0-9_\-]+", cid)


# (c) ------------------------------------------------------------------------------------------


def _no_floats(text: str) -> Any:
    def refuse(literal: str) -> float:
        raise AssertionError(f"a JSON number with a fraction on the wire: {literal}")

    return json.loads(text, parse_float=refuse)


def test_create_sales_order_round_trips_with_amounts_as_strings():
    original = command()
    wire = encode(original)
    body = _no_floats(wire)
    line = body["sales_order"]["lines"][0]
    assert line["unit_price"] == "12.50"
    assert line["discount_amount"] == "0.00"
    assert body["sales_order"]["shipping"]["discount_amount"] == "1.00"
    assert body["sales_order"]["totals"] == {"lines_net": "25.00", "shipping_net": "4.00", "tax": "4.84", "total": "29.00"}
    assert '"unit_price":"12.50"' in wire.decode()

    back = CreateSalesOrder.model_validate_json(wire)
    assert back == original
    assert str(back.sales_order.lines[0].unit_price) == "12.50"  # the scale survives, not 12.5
    assert encode(back) == wire


def test_amount_never_turns_into_exponent_notation():
    cmd = command().model_copy(update={"sales_order": command().sales_order.model_copy(update={
        "totals": SalesOrderTotals(lines_net=D("1E+2"), shipping_net=D("0.10"), tax=D("-0.00"), total=D("100.10")),
    })})
    totals = _no_floats(encode(cmd))["sales_order"]["totals"]
    assert totals == {"lines_net": "100", "shipping_net": "0.10", "tax": "-0.00", "total": "100.10"}


# (d) ------------------------------------------------------------------------------------------
# jsonschema is not a dependency of this project, so the messages are checked against the exported
# schemas by this walker. It implements the keywords pydantic emits and fails on any other
# validation keyword, so a schema that grows a new keyword fails here instead of passing unchecked.

ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "default", "format", "discriminator"}
TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}


def validate(instance: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> list[str]:
    errors: list[str] = []
    unknown = set(schema) - ANNOTATIONS - {
        "$ref", "type", "properties", "required", "items", "const", "enum", "anyOf", "oneOf",
        "exclusiveMinimum", "minimum", "maximum", "minLength", "maxLength", "maxItems", "pattern", "additionalProperties",
    }
    assert not unknown, f"{path}: the test validator does not implement {sorted(unknown)}"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        errors += validate(instance, root["$defs"][name], root, path)
    if "type" in schema:
        expected = TYPES[schema["type"]]
        is_bool = isinstance(instance, bool)
        if not isinstance(instance, expected) or (is_bool and schema["type"] in ("integer", "number")):
            return errors + [f"{path}: {instance!r} is not of type {schema['type']}"]
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{path}: {instance!r} is not {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} not in {schema['enum']}")
    if "exclusiveMinimum" in schema and not instance > schema["exclusiveMinimum"]:
        errors.append(f"{path}: {instance!r} <= {schema['exclusiveMinimum']}")
    if "minimum" in schema and not instance >= schema["minimum"]:
        errors.append(f"{path}: {instance!r} < {schema['minimum']}")
    if "maximum" in schema and not instance <= schema["maximum"]:
        errors.append(f"{path}: {instance!r} > {schema['maximum']}")
    if "minLength" in schema and len(instance) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(instance) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']}")
    if "maxItems" in schema and len(instance) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    if "pattern" in schema and not re.search(schema["pattern"], instance):
        errors.append(f"{path}: {instance!r} does not match {schema['pattern']}")
    if isinstance(instance, dict):
        for key in schema.get("required", ()):
            if key not in instance:
                errors.append(f"{path}: required key {key!r} missing")
        props = schema.get("properties", {})
        for key, value in instance.items():
            if key in props:
                errors += validate(value, props[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected key {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += validate(value, schema["additionalProperties"], root, f"{path}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            errors += validate(item, schema["items"], root, f"{path}[{i}]")
    if "anyOf" in schema:
        if all(validate(instance, s, root, path) for s in schema["anyOf"]):
            errors.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not validate(instance, s, root, path)]
        if len(matching) != 1:
            errors.append(f"{path}: matches {len(matching)} of oneOf, not exactly one")
    return errors


def shopify_order_received() -> ShopifyOrderReceived:
    return ShopifyOrderReceived(
        webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        topic="orders/create",
        shop_domain="sandbox.myshopify.com",
        received_at=NOW,
        raw_payload_id=UUID("0e6f6d1c-7c9a-4c1f-a9b5-36a1c0c1c2d3"),
        order=ShopifyOrder.from_webhook(json.loads(SAMPLE.read_text())),  # Shopify's own sample body
    )


def wire_messages() -> list[tuple[str, BaseModel]]:
    event = TypeAdapter(OrderEvent).validate_python({
        "event_type": "SalesOrderRequested",
        "event_id": UUID("3f1c6a0e-1d2b-4c3d-8e4f-5a6b7c8d9e0f"),
        "shopify_order_id": 1001,
        "aggregate_id": UUID("9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"),
        "aggregate_version": 2,
        "timestamp": NOW,
        "notification_id": 42,
        "command": command().model_dump(mode="json"),  # as the aggregate records it
    })
    outcome = TypeAdapter(PrimaOutcome).validate_python({
        "message_type": "PrimaSalesOrderCreated", "command_id": COMMAND_ID, "shopify_order_id": 1001,
        "sales_order_number": "SO-000123", "status": "open", "occurred_at": NOW,
    })
    stock_event = TypeAdapter(StockEvent).validate_python({
        "event_type": "StockItem.PushRequested", "event_id": UUID("1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0"),
        "sku": "MUG-WHT", "location_id": "gid://shopify/Location/1",
        "aggregate_id": UUID("2c3d4e5f-6071-4283-94a5-b6c7d8e9f0a1"), "aggregate_version": 4, "timestamp": NOW,
        "notification_id": 43, "desired": 5, "shopify_level": None,
        "command": {"command_id": COMMAND_ID, "sku": "MUG-WHT", "inventory_item_id": "gid://shopify/InventoryItem/9",
                    "location_id": "gid://shopify/Location/1", "quantity": 5, "change_from_quantity": 0,
                    "reference_document_uri": "prima://stock/WH-MAIN/MUG-WHT?change=7", "issued_at": NOW},
    })
    assert isinstance(event, SalesOrderRequestedEvent) and isinstance(outcome, PrimaSalesOrderCreated)
    return [
        ("shopify.orders.v1", shopify_order_received()),
        ("prima.commands.v1", command()),
        ("prima.outcomes.v1", outcome),
        ("shopify-prima.order-events.v1", event),
        ("shopify-prima.stock-events.v1", stock_event),
    ]


WIRE_MESSAGES = wire_messages()


@pytest.mark.parametrize(("topic", "message"), WIRE_MESSAGES, ids=[topic for topic, _ in WIRE_MESSAGES])
def test_a_serialized_message_validates_against_its_exported_schema(topic, message):
    schema = load_schema(topic)
    body = json.loads(encode(message))
    assert validate(body, schema, schema) == []


# A value for each string pattern a contract field declares (the sampler cannot invent one).
PATTERN_SAMPLES = {r"^[A-Z]{3}$": "USD", r"^[0-9a-f]{64}$": "0" * 64, r"^[1-9][0-9]{0,18}$": "1"}


def sample(tp: Any, optional: bool = True) -> Any:
    """A value of type `tp` built from its annotations alone, so that every model a topic
    declares has a message to check (with `optional` False, None wherever None is allowed)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp == CurrencyCode or any(getattr(m, "pattern", None) == r"^[A-Z]{3}$" for m in getattr(tp, "__metadata__", ())):
        return "USD"
    if origin is typing.Annotated:
        return sample(args[0], optional)
    if origin is typing.Literal:
        return args[0]
    if origin is typing.Union or origin is types.UnionType:
        inner = [a for a in args if a is not type(None)]
        return None if len(inner) < len(args) and not optional else sample(inner[0], optional)
    if origin in (tuple, list):
        return origin([sample(args[0], optional)])
    if origin is dict:
        return {sample(args[0], optional): sample(args[1], optional)}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp(**{name: PATTERN_SAMPLES[patterns[0]] if (patterns := [m.pattern for m in field.metadata
                                                                           if getattr(m, "pattern", None)])
                     else sample(field.annotation, optional) for name, field in tp.model_fields.items()})
    return {str: "SKU-1", int: 1, bool: True, Decimal: D("12.50"), datetime: NOW, AwareDatetime: NOW, date: NOW.date(),
            UUID: COMMAND_ID}[tp]


EVERY_MESSAGE = [(topic.name, model) for topic in ALL_TOPICS for model in topic.messages]


@pytest.mark.parametrize("optional", [True, False], ids=["optional-fields-set", "optional-fields-none"])
@pytest.mark.parametrize(("topic", "model"), EVERY_MESSAGE, ids=[f"{t}:{m.__name__}" for t, m in EVERY_MESSAGE])
def test_every_message_of_every_topic_validates_against_its_exported_schema(topic, model, optional):
    schema = load_schema(topic)
    message = sample(model, optional)
    body = _no_floats(encode(message))
    assert validate(body, schema, schema) == []
    # and its headers are the ones the AsyncAPI document declares for the topic
    doc = load_asyncapi()
    [channel] = [c for c in doc["channels"].values() if c["address"] == topic]
    [ref] = channel["messages"].values()
    declared = doc["components"]["messages"][ref["$ref"].removeprefix("#/components/messages/")]["headers"]
    # causation_id / event_type where the topic's producers set them (the outbox relay: the event
    # id and the event type), correlation_id always (the producer's, else FastStream's own)
    given = {"correlation_id": "a-correlation-id", "causation_id": "a-causation-id",
             "event_type": getattr(message, "event_type", None) or message.message_type}
    extra = {name: value for name, value in given.items() if name in declared["properties"]}
    headers = headers_for(message, **extra)
    assert validate(headers, declared, declared) == []
    assert set(headers) == set(declared["properties"])


def test_the_validator_rejects_a_float_amount_and_a_missing_key():
    schema = load_schema("prima.commands.v1")
    body = json.loads(encode(command()))
    body["sales_order"]["lines"][0]["unit_price"] = 12.5
    del body["sales_order"]["totals"]["tax"]
    del body["message_type"]
    # the topic carries several commands (oneOf by message_type): the create command's own schema
    errors = validate(body, {"$ref": "#/$defs/CreateSalesOrder"}, schema)
    assert "$.sales_order.lines[0].unit_price: 12.5 is not of type string" in errors
    assert "$.sales_order.totals: required key 'tax' missing" in errors
    assert "$: required key 'message_type' missing" in errors

    outcomes = load_schema("prima.outcomes.v1")
    wrong_variant = json.loads(encode(dict(WIRE_MESSAGES)["prima.outcomes.v1"]))
    wrong_variant["message_type"] = "PrimaSalesOrderRejected"
    assert validate(wrong_variant, outcomes, outcomes) == ["$: matches 0 of oneOf, not exactly one"]


def _decimal_fields(model: type[BaseModel], seen: set[type]) -> list[tuple[str, str]]:
    """(model name, field name) of every Decimal field reachable from `model`."""
    if model in seen:
        return []
    seen.add(model)
    found = []
    for name, field in model.model_fields.items():
        stack = [field.annotation]
        while stack:
            tp = stack.pop()
            if tp is Decimal:
                found.append((model.__name__, name))
            elif isinstance(tp, type) and issubclass(tp, BaseModel):
                found += _decimal_fields(tp, seen)
            else:
                stack += [a for a in typing.get_args(tp) if a is not Ellipsis and not isinstance(a, str)]
    return found


def _union_members(tp: Any) -> list[type[BaseModel]]:
    inner = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    if isinstance(inner, types.UnionType) or typing.get_origin(inner) is typing.Union:
        return list(typing.get_args(inner))
    return [inner]


@pytest.mark.parametrize("contract", export.CONTRACTS, ids=lambda c: c.topic.name)
def test_every_money_field_is_a_string_in_the_schema(contract):
    schema = load_schema(contract.topic.name)
    seen: set[type] = set()
    fields = [f for m in _union_members(contract.payload) for f in _decimal_fields(m, seen)]
    if contract.topic.name in ("shopify.orders.v1", "prima.commands.v1", "shopify-prima.order-events.v1"):
        assert fields, "expected Decimal fields in this message"
    for model, name in fields:
        prop = schema["$defs"][model]["properties"][name] if model in schema["$defs"] else schema["properties"][name]
        types_ = {prop.get("type")} if "type" in prop else {s.get("type") for s in prop["anyOf"]}
        assert "string" in types_ and not types_ & {"number", "integer"}, f"{model}.{name}: {prop}"
    if contract.topic.name == "prima.commands.v1":
        assert {name for model, name in fields if model == "SalesOrderLine"} == {
            "unit_price", "discount_amount", "tax_amount", "net_amount"
        }
        assert schema["$defs"]["SalesOrderTotals"]["required"] == ["lines_net", "shipping_net", "tax", "total"]
    if contract.topic.name == "shopify.orders.v1":
        assert schema["$defs"]["Money"]["properties"]["amount"]["type"] == "string"
