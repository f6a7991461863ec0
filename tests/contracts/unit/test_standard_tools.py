"""The published contracts pass the standard tools another team would check them with: the
official AsyncAPI CLI accepts contracts/asyncapi.yaml (no error, no warning), and every JSON
Schema in contracts/schemas compiles with ajv in strict mode and takes the messages the services
put on the wire. The document says, per topic, how messages are delivered and what to deduplicate
on; money carries a pattern; no payload is an untyped object.

The tools come from tools/contracts (pinned; `make unit` / `make test` install them); these tests
fail, never skip, without them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from contracts import export
from contracts.topics import ALL_TOPICS, TOPICS
from services.platform.kafka import encode
from tests.contracts.standard_tools import (
    ajv_compile,
    ajv_validate,
    asyncapi_validate,
    diagnostics,
)
from tests.contracts.unit.test_contracts import (
    EVERY_MESSAGE,
    _decimal_fields,
    _no_floats,
    _union_members,
    command,
    sample,
)

SCHEMAS = sorted(export.SCHEMAS_DIR.glob("*.json"))
ERROR, WARNING = 0, 1  # the CLI's (Spectral's) diagnostic severities
DOMAIN_EVENT_TOPICS = ("shopify-prima.order-events.v1", "shopify-prima.stock-events.v1",
                       "shopify-prima.payout-events.v1")
COMMAND_TOPICS = ("prima.commands.v1", "shopify.commands.v1", "shopify-prima.operations.v1")
OUTCOME_TOPICS = ("prima.outcomes.v1", "shopify.outcomes.v1")


def document() -> dict[str, Any]:
    return yaml.safe_load(export.ASYNCAPI_PATH.read_text())


def pydantic_schema(topic: str) -> dict[str, Any]:
    """The topic's schema as pydantic writes it, before the export makes it strict JSON Schema."""
    [contract] = [c for c in export.CONTRACTS if c.topic.name == topic]
    return TypeAdapter(contract.payload).json_schema(mode="serialization", schema_generator=export.WireJsonSchema)


# -- the AsyncAPI CLI ------------------------------------------------------------------------------


def test_the_asyncapi_cli_validates_the_published_document_without_errors_or_warnings(tmp_path):
    done = asyncapi_validate(export.ASYNCAPI_PATH, tmp_path)
    output = done.stdout + done.stderr
    found = diagnostics(done.stdout)
    assert done.returncode == 0, output
    assert "is valid" in output, output
    assert [d for d in found if d["severity"] in (ERROR, WARNING)] == [], output


def test_given_the_pydantic_discriminator_back_in_a_schema_when_validated_then_the_cli_refuses_it(tmp_path):
    """The regression: the document as exported before (pydantic's `discriminator` object in the
    oneOf schemas) is what the CLI refused; it must still refuse it, or the test above tests nothing."""
    shutil.copytree(export.SCHEMAS_DIR, tmp_path / "schemas")
    shutil.copy(export.ASYNCAPI_PATH, tmp_path / "asyncapi.yaml")
    old = pydantic_schema("prima.inventory.v1")
    assert "discriminator" in old
    (tmp_path / "schemas" / "prima.inventory.v1.json").write_text(export.dump_json(old))

    done = asyncapi_validate(tmp_path / "asyncapi.yaml", tmp_path)
    errors = [d for d in diagnostics(done.stdout) if d["severity"] == ERROR]
    assert done.returncode != 0
    assert any("discriminator" in d["message"] for d in errors), done.stdout


# -- ajv, strict ---------------------------------------------------------------------------------


def test_every_published_schema_compiles_with_ajv_in_strict_mode():
    assert [p.name for p in SCHEMAS] == sorted(f"{t.name}.json" for t in ALL_TOPICS)
    results = ajv_compile(SCHEMAS)
    assert [(Path(r["schema"]).name, r["error"]) for r in results if not r["ok"]] == []
    assert len(results) == len(ALL_TOPICS) == 15


def test_given_the_pydantic_discriminator_back_when_compiled_strictly_then_ajv_refuses_it(tmp_path):
    old = tmp_path / "prima.commands.v1.json"
    old.write_text(export.dump_json(pydantic_schema("prima.commands.v1")))
    [result] = ajv_compile([old])
    assert not result["ok"] and 'unknown keyword: "discriminator"' in result["error"]


def test_the_export_leaves_no_keyword_that_is_not_json_schema():
    found = [path.name for path in SCHEMAS if '"discriminator"' in path.read_text()]
    assert found == []
    assert export.strict({"oneOf": [], "discriminator": {"propertyName": "x"},
                          "properties": {"discriminator": {"type": "string"}}}) == {
        "oneOf": [], "properties": {"discriminator": {"type": "string"}}}  # a field of that name stays


@pytest.mark.parametrize("topic", sorted({t for t, _ in EVERY_MESSAGE}))
def test_every_message_a_topic_declares_validates_strictly_against_its_schema(topic):
    """One message of each model (optional fields set, and None), as encoded for Kafka."""
    bodies = [_no_floats(encode(sample(model, optional))) for t, model in EVERY_MESSAGE if t == topic
              for optional in (True, False)]
    result = ajv_validate(export.SCHEMAS_DIR / f"{topic}.json", bodies)
    assert result["count"] == len(bodies) == 2 * len(TOPICS[topic].messages)
    assert result["invalid"] == []


def test_the_strict_validator_refuses_a_float_amount_an_unknown_message_type_and_a_bad_uuid():
    good = json.loads(encode(command()))
    float_amount = json.loads(encode(command()))
    float_amount["sales_order"]["lines"][0]["unit_price"] = 12.5
    unknown = {**good, "message_type": "DeleteSalesOrder"}
    bad_id = {**good, "command_id": "not-a-uuid"}
    exponent = json.loads(encode(command()))
    exponent["sales_order"]["totals"]["total"] = "1E+2"
    result = ajv_validate(export.SCHEMAS_DIR / "prima.commands.v1.json", [good, float_amount, unknown, bad_id, exponent])
    assert [i["index"] for i in result["invalid"]] == [1, 2, 3, 4]
    by_index = {i["index"]: i["errors"] for i in result["invalid"]}
    assert any(e["instancePath"] == "/sales_order/lines/0/unit_price" and e["keyword"] == "type" for e in by_index[1])
    assert any(e["instancePath"] == "/command_id" and e["keyword"] == "format" for e in by_index[3])
    assert any(e["instancePath"] == "/sales_order/totals/total" and e["keyword"] == "pattern" for e in by_index[4])


# -- money and typed payloads ------------------------------------------------------------------------


def _property(schema: dict[str, Any], model: str, name: str) -> dict[str, Any]:
    return schema["$defs"][model]["properties"][name] if model in schema.get("$defs", {}) else \
        schema["properties"][name]


@pytest.mark.parametrize("contract", export.CONTRACTS, ids=lambda c: c.topic.name)
def test_every_decimal_field_carries_a_pattern(contract):
    """Money (and every other decimal, such as a tax rate) travels as a string with a pattern, so a
    consumer's validator refuses "12,50", "1e3" or a float."""
    schema = json.loads((export.SCHEMAS_DIR / f"{contract.topic.name}.json").read_text())
    seen: set[type] = set()
    fields = [f for m in _union_members(contract.payload) for f in _decimal_fields(m, seen)]
    missing = []
    for model, name in fields:
        prop = _property(schema, model, name)
        strings = [s for s in prop.get("anyOf", [prop]) if s.get("type") == "string"]
        if not strings or not all("pattern" in s for s in strings):
            missing.append(f"{model}.{name}: {prop}")
    assert missing == []


def _untyped(schema: Any, path: str = "#") -> list[str]:
    """Places in a schema that take any value (no type, $ref, const, enum or combinator), and
    objects whose members are not described (no properties, no typed additionalProperties)."""
    found: list[str] = []
    if isinstance(schema, dict):
        if not {"type", "$ref", "const", "enum", "anyOf", "oneOf", "allOf"} & set(schema):
            found.append(path)
        if schema.get("type") == "object" and "properties" not in schema and \
                not isinstance(schema.get("additionalProperties"), dict):
            found.append(f"{path} (object without properties)")
        if schema.get("additionalProperties") is True:
            found.append(f"{path} (any additional property)")
        for key in ("properties", "$defs"):
            for name, sub in schema.get(key, {}).items():
                found += _untyped(sub, f"{path}/{key}/{name}")
        for key in ("anyOf", "oneOf", "allOf"):
            for i, sub in enumerate(schema.get(key, ())):
                found += _untyped(sub, f"{path}/{key}/{i}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                found += _untyped(schema[key], f"{path}/{key}")
    return found


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.stem)
def test_no_payload_is_an_untyped_object(path):
    assert _untyped(json.loads(path.read_text())) == []


def test_the_untyped_check_finds_an_any_field_and_a_bare_object():
    schema = {"type": "object", "properties": {"data": {"title": "Data"}, "meta": {"type": "object"},
                                               "ok": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    assert _untyped(schema) == ["#/properties/data", "#/properties/meta (object without properties)"]


# -- delivery, per topic -----------------------------------------------------------------------------


def channels() -> dict[str, dict[str, Any]]:
    return {c["address"]: c for c in document()["channels"].values()}


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_every_channel_says_how_its_messages_are_delivered(topic):
    channel = channels()[topic.name]
    terms = channel["x-delivery"]
    assert terms["guarantee"] == "at-least-once"
    assert terms["key"] == topic.key and topic.key in terms["ordering"]
    assert terms["retentionMs"] == int(topic.config["retention.ms"])
    assert channel["bindings"]["kafka"]["topicConfiguration"]["retention.ms"] == terms["retentionMs"]
    assert terms["deduplicateOn"] and all(f in terms["deduplication"] for f in terms["deduplicateOn"])
    assert "at-least-once" in channel["description"] and terms["retention"] in channel["description"]
    # every field to deduplicate on is a required field of some message of the topic
    schema = json.loads((export.SCHEMAS_DIR / f"{topic.name}.json").read_text())
    required = [set(v.get("required", ())) for v in export._variants(schema)]
    assert all(any(f in r for r in required) for f in terms["deduplicateOn"])
    # the message says it too
    [ref] = channel["messages"].values()
    message = document()["components"]["messages"][ref["$ref"].rsplit("/", 1)[-1]]
    assert terms["deduplication"] in message["description"]


def test_events_dedupe_on_event_id_commands_and_outcomes_on_command_id():
    found = {name: c["x-delivery"]["deduplicateOn"] for name, c in channels().items()}
    assert {t: found[t] for t in DOMAIN_EVENT_TOPICS} == {key: ["event_id"] for key in DOMAIN_EVENT_TOPICS}
    assert {t: found[t] for t in COMMAND_TOPICS + OUTCOME_TOPICS} == {key: ["command_id"] for key in COMMAND_TOPICS + OUTCOME_TOPICS}
    assert found["shopify.orders.v1"] == ["webhook_id"]
    assert found["shopify-prima.dead-letters.v1"] == ["message_type", "dead_letter_id"]


def test_the_event_id_a_consumer_dedupes_on_is_the_same_on_every_relay():
    """The relay derives it from the aggregate's id and the event's version (both stored), so a
    notification relayed again after a crash carries the same event_id."""
    from uuid import UUID

    from services.platform.outbox import event_id

    aggregate = UUID("9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d")
    assert event_id(aggregate, 3) == event_id(aggregate, 3)
    assert event_id(aggregate, 3) != event_id(aggregate, 4)


def test_a_field_to_deduplicate_on_that_no_message_has_is_refused():
    [contract] = [c for c in export.CONTRACTS if c.topic.name == "prima.commands.v1"]
    schema = json.loads((export.SCHEMAS_DIR / "prima.commands.v1.json").read_text())
    export.check_dedupe(contract, schema)
    wrong = export.TopicContract(contract.topic, contract.message, contract.producers, contract.consumers,
                                 dedupe=("event_id", "not a field of a command"))
    with pytest.raises(ValueError, match="event_id"):
        export.check_dedupe(wrong, schema)


def test_the_document_says_delivery_is_at_least_once_and_never_that_every_message_is_keyed_by_the_order():
    description = document()["info"]["description"]
    assert "at least once" in description and "deduplicates" in description
    assert "every message is keyed by the Shopify order id" not in description
