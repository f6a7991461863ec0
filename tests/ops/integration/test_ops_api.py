"""The ops API changes nothing itself: each write endpoint publishes exactly one operator command
(contracts/platform.py) to the operations topic, keyed by what it is about, for the owning
process to handle. Read back from Kafka here (a throwaway operations topic: tests/ops/support.py).
Paths an operator can mistype answer 404 or 422, never 500; /read-models says what each read
model's states and exception kinds are.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from contracts.platform import (
    RebuildProjection,
    RedriveDeadLetter,
    ReleaseOrder,
    ReleaseStockLevel,
    RequestFullComparison,
    RetryParkedCommand,
)
from contracts.prima.inventory import sku_key
from contracts.topics import order_key
from projections import READ_MODELS
from tests.ops.support import DEAD_LETTER_ID, LOC, PARKED_COMMAND_ID, RELAY_DEAD_LETTER_ID, dead_letter

pytestmark = pytest.mark.integration

# (method, path, JSON body, the command's model, its key, what the command says)
WRITES: list[tuple[str, str, dict | None, type, bytes, dict[str, Any]]] = [
    ("POST", "/orders/42/release", None, ReleaseOrder, order_key(42), {"shopify_order_id": 42}),
    ("POST", "/inventory/release", {"sku": "OPS-TEE", "location_id": LOC}, ReleaseStockLevel, sku_key("OPS-TEE"),
     {"sku": "OPS-TEE", "location_id": LOC}),
    ("POST", "/inventory/resync", None, RequestFullComparison, b"<run_id>", {}),
    ("POST", "/projections/inventory_health/rebuild", None, RebuildProjection, b"inventory_health",
     {"projection": "inventory_health"}),
    ("POST", f"/parked-commands/{PARKED_COMMAND_ID}/retry", None, RetryParkedCommand, b"OPS-MUG",
     {"parked_command_id": PARKED_COMMAND_ID, "gateway": "shopify"}),
    ("POST", f"/dead-letters/{DEAD_LETTER_ID}/redrive", None, RedriveDeadLetter, str(DEAD_LETTER_ID).encode(),
     {"dead_letter_id": DEAD_LETTER_ID, "group": "order-decider", "topic": "prima.outcomes.v1",
      "key_base64": dead_letter().key_base64, "value_base64": dead_letter().value_base64,
      "headers": {"message_type": "PrimaSalesOrderCreated"}}),
]


@pytest.mark.parametrize(("method", "path", "body", "model", "key", "fields"), WRITES,
                         ids=[w[3].__name__ for w in WRITES])
async def test_a_write_publishes_exactly_one_operator_command_of_its_type_and_key(
        api, seeded, tap, method, path, body, model, key, fields):
    before = await tap.ends()
    response = api.request(method, path, json=body, params={"requested_by": "jo@ops"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["message_type"] == model.__name__ and accepted["detail"]

    published = await tap.since(before)
    assert len(published) == 1, published
    [record] = published
    command = record.message
    assert type(command) is model
    assert str(command.command_id) == accepted["command_id"]
    assert command.requested_by == "jo@ops"
    assert record.key == (str(command.run_id).encode() if model is RequestFullComparison else key)
    # the headers every message carries (contracts/asyncapi.yaml): FastStream's own correlation_id here
    assert record.headers == {"message_type": model.__name__, "content-type": "application/json",
                              "correlation_id": record.headers.get("correlation_id")}
    assert UUID(record.headers["correlation_id"])
    assert {name: getattr(command, name) for name in fields} == fields
    if model is RequestFullComparison:
        assert accepted["run_id"] == str(command.run_id)


async def test_two_requests_are_two_commands_with_their_own_ids(api, seeded, tap):
    before = await tap.ends()
    first = api.post("/orders/42/release").json()
    second = api.post("/orders/42/release").json()
    published = await tap.since(before)
    assert sorted(str(r.message.command_id) for r in published) == sorted([first["command_id"], second["command_id"]])
    assert first["command_id"] != second["command_id"]
    assert {r.message.requested_by for r in published} == {"ops-api"}  # who, when nobody is named


@pytest.mark.parametrize(("path", "status"), [
    (f"/parked-commands/{uuid4()}/retry", 404),
    (f"/dead-letters/{uuid4()}/redrive", 404),
    ("/projections/nope/rebuild", 404),
    (f"/dead-letters/{RELAY_DEAD_LETTER_ID}/redrive", 409),  # the outbox relay's: not a consumer group's
    ("/orders/0/release", 422),
    ("/orders/99999999999999999999/release", 422),
    ("/parked-commands/not-a-uuid/retry", 422),
    ("/dead-letters/not-a-uuid/redrive", 422),
    ("/inventory/release", 422),  # no body
], ids=lambda v: str(v))
async def test_a_write_that_cannot_be_done_publishes_nothing(api, seeded, tap, path, status):
    before = await tap.ends()
    response = api.post(path)
    assert response.status_code == status, response.text
    assert await tap.since(before) == []


async def test_a_release_of_an_empty_sku_is_refused(api, seeded, tap):
    before = await tap.ends()
    assert api.post("/inventory/release", json={"sku": "", "location_id": LOC}).status_code == 422
    assert api.post("/inventory/release", json={"sku": "OPS-TEE"}).status_code == 422
    assert api.post("/orders/42/release", params={"requested_by": "x" * 201}).status_code == 422
    assert await tap.since(before) == []


@pytest.mark.parametrize(("path", "status"), [
    ("/orders/99999999999999999999", 422),
    ("/orders/0", 422),
    ("/orders/-1", 422),
    ("/orders/not-a-number", 422),
    ("/orders/7", 404),
    ("/inventory/%00", 422),
    ("/inventory/OPS%00TEE", 422),
    ("/items/%00", 422),
    ("/items/NO-SUCH-SKU", 404),
    ("/projections/nope", 404),
    ("/inventory/resync/not-a-uuid", 422),
    (f"/inventory/resync/{uuid4()}", 404),
    ("/inventory?limit=0", 422),
    ("/exceptions?status=maybe", 422),
    ("/dead-letters?status=maybe", 422),
    ("/parked-commands?gateway=sap", 422),
    ("/no/such/route", 404),
], ids=lambda v: str(v))
def test_a_bad_path_answers_404_or_422_never_500(api, seeded, path, status):
    response = api.get(path)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_read_models_declare_their_states_and_exception_kinds(api):
    declared = api.get("/read-models").json()
    assert declared == {name: {"states": list(rm.states), "exception_kinds": list(rm.exception_kinds)}
                        for name, rm in READ_MODELS.items()}
    assert set(declared) == {"order_sync", "inventory_health", "item_master", "dead_letters", "payouts",
                             "sales_documents", "order_fulfilment", "payment_gateways"}
    assert "drift" in declared["inventory_health"]["states"]
    assert "unmapped_sku" in declared["order_sync"]["exception_kinds"]


def test_projections_show_their_topic_and_positions(api, seeded):
    listed = api.get("/projections").json()["projections"]
    assert [p["name"] for p in listed] == list(READ_MODELS)
    one = api.get("/projections/inventory_health").json()
    assert one == {"name": "inventory_health", "topic": "shopify-prima.stock-events.v1", "positions": {},
                   "applied": 0, "rebuild": None}


def test_dead_letters_and_parked_commands_are_listed(api, seeded):
    [letter] = api.get("/dead-letters").json()["dead_letters"]
    assert (letter["dead_letter_id"], letter["consumer_group"], letter["reason"]) == (
        str(DEAD_LETTER_ID), "order-decider", "undecodable")
    assert "value_base64" not in letter  # the body (customer data) stays out of the listing
    assert len(api.get("/dead-letters", params={"status": "all"}).json()["dead_letters"]) == 2

    [parked] = api.get("/parked-commands", params={"gateway": "shopify"}).json()["parked_commands"]
    assert (UUID(parked["command_id"]), parked["subject"], parked["message_type"], parked["attempts"]) == (
        PARKED_COMMAND_ID, "OPS-MUG", "SetInventoryLevel", 5)
    assert "command" not in parked
    assert (parked["status"], parked["redrives"], parked["resolved_at"]) == ("redriving", 0, None)
    assert api.get("/parked-commands", params={"gateway": "prima"}).json()["parked_commands"] == []


def test_postgresql_down_is_503_with_retry_after_never_500(ops_settings, operations_topic, ops_headers):
    """Issue 8, defect 10: a dependency down answers 503 (the ops API with its database gone)."""
    import asyncpg as _asyncpg
    from fastapi.testclient import TestClient

    from services.ops import api as ops_api

    app = ops_api.create_app(ops_settings, operations_topic=operations_topic)
    with TestClient(app, headers=ops_headers, raise_server_exceptions=False) as client:
        pool = app.state.pool

        async def down(*args, **kwargs):
            raise _asyncpg.CannotConnectNowError("the database system is starting up")

        app.state.pool = type("DownPool", (), {"fetch": down, "fetchrow": down, "fetchval": down})()
        try:
            for path in ("/orders", "/orders/1", "/exceptions", "/inventory/summary", "/health"):
                response = client.get(path)
                assert response.status_code == 503, (path, response.status_code, response.text)
                assert response.headers["Retry-After"] == "5"
        finally:
            app.state.pool = pool
