"""The ops API's and the CLI's order fulfilment (services/ops/fulfilment_routes.py,
services/ops/fulfilment_cli.py) on a scratch database whose fulfilment read model is built by
its projection from the OrderFulfilment events of tests/fulfilment (the seeded order 42 held by
a refused fulfilment; order 7001 fulfilled in two parcels): an order's page carries its
fulfilment, the fulfilment exceptions are listed with every other exception, and a release is
one ReleaseFulfilment command, only for a fulfilment that holds an exception (settling its
despatch when asked)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from typer.testing import CliRunner

from contracts.platform import ReleaseFulfilment
from projections.order_fulfilment import OrderFulfilmentProjection
from services.ops import api as ops_api
from services.ops import cli
from tests.fulfilment.integration.test_order_fulfilment_projection import (
    project,
    refused_then_released,
    two_parcels,
)
from tests.ops.support import ORDER_ID, at

pytestmark = pytest.mark.integration
HELD = refused_then_released(ORDER_ID, release=False)  # the seeded order 42 (quarantined in order_sync)
RELEASED = refused_then_released(ORDER_ID)


async def _project(url: str, messages: list) -> None:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        await project(OrderFulfilmentProjection(pool), messages)
    finally:
        await pool.close()


@pytest.fixture
async def fulfilments(seeded):
    """The seeded read models, plus order 42's fulfilment held by Shopify's refusal, order 7001
    fulfilled (no order-sync row), and order 43 in order_sync with no fulfilment yet."""
    await _project(seeded, HELD.events + two_parcels().events)
    conn = await asyncpg.connect(seeded)
    try:
        await conn.execute(
            """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, first_received_at,
               last_event_at, last_event_version) VALUES (43, '#1043', 'in_prima', $1, $1, 3)""", at(0))
    finally:
        await conn.close()
    return seeded


def test_an_orders_page_carries_its_fulfilment(api, fulfilments):
    order = api.get(f"/orders/{ORDER_ID}").json()
    without = api.get("/orders/43").json()

    fulfilment = order["fulfilment"]
    assert (fulfilment["state"], fulfilment["exception_kind"], fulfilment["fully_fulfilled"]) == (
        "exception", "refused_by_shopify", False)
    assert fulfilment["exception"]["action"].startswith("Shopify refused the fulfilment")
    assert [d["despatch_id"] for d in fulfilment["despatches"]] == ["D-1"]
    assert without["fulfilment"] is None and without["state"] == "in_prima"


def test_fulfilments_are_read_one_by_one_and_by_state(api, fulfilments):
    one = api.get("/fulfilments/7001")
    listed = api.get("/fulfilments", params={"state": "fulfilled"}).json()["fulfilments"]

    assert one.status_code == 200
    assert (one.json()["state"], one.json()["tracking_numbers"]) == ("fulfilled", ["TRK-1", "TRK-2"])
    assert [(f["shopify_order_id"], f["despatches"], f["fulfilments"]) for f in listed] == [(7001, 1, 1)]
    assert [f["order_name"] for f in api.get("/fulfilments", params={"state": "exception"}).json()["fulfilments"]] == [
        "#1042"]
    assert api.get("/fulfilments/7999").status_code == 404
    assert api.get("/fulfilments", params={"state": "lost"}).status_code == 422


def test_fulfilment_exceptions_are_listed_with_the_others(api, fulfilments):
    listed = api.get("/exceptions", params={"source": "fulfilment"}).json()["exceptions"]
    everything = api.get("/exceptions").json()["exceptions"]

    [held] = listed
    assert (held["source"], held["shopify_order_id"], held["order_name"], held["kind"], held["status"]) == (
        "fulfilment", ORDER_ID, "#1042", "refused_by_shopify", "open")
    assert held["payload"]["despatch_id"] == "D-1" and "shopify-prima fulfilment release 42" in held["action"]
    assert held["exception_id"] in {e["exception_id"] for e in everything}
    assert api.get("/exceptions", params={"source": "fulfilment", "status": "resolved"}).json()["exceptions"] == []


async def test_a_released_exception_is_listed_as_resolved(api, fulfilments):
    await _project(fulfilments, RELEASED.events[len(HELD.events):])

    resolved = api.get("/exceptions", params={"source": "fulfilment", "status": "resolved"}).json()["exceptions"]

    assert [(e["shopify_order_id"], e["kind"], e["payload"]["released_by"]) for e in resolved] == [
        (ORDER_ID, "refused_by_shopify", "jo@ops")]
    assert resolved[0]["resolved_at"] > resolved[0]["raised_at"]
    assert api.get("/exceptions", params={"source": "fulfilment"}).json()["exceptions"] == []
    assert api.get(f"/orders/{ORDER_ID}").json()["fulfilment"]["state"] == "fulfilled"


async def test_release_is_one_command_for_a_held_fulfilment_and_refused_otherwise(api, fulfilments, tap):
    before = await tap.ends()

    accepted = api.post(f"/fulfilments/{ORDER_ID}/release", params={"requested_by": "jo@ops"})
    settling = api.post(f"/fulfilments/{ORDER_ID}/release", params={"requested_by": "jo@ops", "settle_despatch": "true"})
    fulfilled = api.post("/fulfilments/7001/release", params={"settle_despatch": "true"})
    unknown = api.post("/fulfilments/7999/release")

    assert accepted.status_code == 202, accepted.text
    assert settling.status_code == 202, settling.text
    assert accepted.json()["message_type"] == "ReleaseFulfilment"
    assert (fulfilled.status_code, unknown.status_code) == (409, 404)
    record, settled = await tap.since(before)
    assert type(record.message) is ReleaseFulfilment and record.key == b"42"
    assert (record.message.shopify_order_id, record.message.requested_by, str(record.message.command_id)) == (
        ORDER_ID, "jo@ops", accepted.json()["command_id"])
    assert record.message.settle_despatch is False
    assert (settled.message.settle_despatch, str(settled.message.command_id)) == (True, settling.json()["command_id"])


# ---------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def ops_url(ops_settings, operations_topic, serve_app):
    with serve_app(ops_api.create_app(ops_settings, operations_topic=operations_topic), "the ops API") as url:
        yield url


@pytest.fixture
def run_cli(ops_url, ops_settings, monkeypatch):
    monkeypatch.setattr(cli, "_ops_url", lambda: ops_url)
    monkeypatch.setattr(cli, "get_settings", lambda: ops_settings)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli.app, list(args), env={"COLUMNS": "250"})


def test_orders_show_shows_the_despatches_fulfilments_tracking_and_exception(run_cli, fulfilments):
    asyncio.run(_project(fulfilments, RELEASED.events[len(HELD.events):]))
    done = run_cli("orders", "show", str(ORDER_ID))
    assert done.exit_code == 0, done.output
    assert "fulfilment: fulfilled; tracking TRK-9" in done.output
    assert "gid://shopify/Fulfillment/921" in done.output and "D-1" in done.output
    assert "DPD TRK-9 https://track.dpd.co.uk/TRK-9" in done.output and "TEE x2, KIT x1" in done.output
    assert "released" in done.output and "jo@ops: refused_by_shopify" in done.output


def test_orders_show_shows_an_open_fulfilment_exception_with_its_action(run_cli, fulfilments):
    held = run_cli("orders", "show", str(ORDER_ID))
    assert held.exit_code == 0, held.output
    assert "fulfilment: exception" in held.output
    assert "fulfilment refused_by_shopify" in held.output and "shopify-prima fulfilment release 42" in held.output
    unfulfilled = run_cli("orders", "show", "43")
    assert unfulfilled.exit_code == 0 and "fulfilment" not in unfulfilled.output  # none yet: nothing drawn


def test_fulfilment_exceptions_list_and_release_commands(run_cli, fulfilments, tap):
    listed = run_cli("fulfilment", "exceptions")
    assert listed.exit_code == 0, listed.output
    assert "open fulfilment exceptions: 1" in listed.output
    assert "order 42 #1042 despatch D-1 refused_by_shopify" in listed.output

    by_state = run_cli("fulfilment", "list", "--state", "fulfilled")
    assert by_state.exit_code == 0 and "7001" in by_state.output and "TRK-1, TRK-2" in by_state.output

    before = asyncio.run(tap.ends())
    released = run_cli("fulfilment", "release", str(ORDER_ID), "--by", "jo@ops", "--wait", "0")
    assert released.exit_code == 0, released.output
    assert "release of order 42's fulfilment sent" in released.output
    [record] = asyncio.run(tap.since(before))
    assert type(record.message) is ReleaseFulfilment and record.message.requested_by == "jo@ops"
    assert record.message.settle_despatch is False

    before = asyncio.run(tap.ends())
    settling = run_cli("fulfilment", "release", str(ORDER_ID), "--settle-despatch", "--by", "jo@ops", "--wait", "0")
    assert settling.exit_code == 0, settling.output
    assert "release of order 42's fulfilment, settling its despatch, sent" in settling.output
    [record] = asyncio.run(tap.since(before))
    assert type(record.message) is ReleaseFulfilment and record.message.settle_despatch is True

    nothing = run_cli("fulfilment", "release", "7001", "--wait", "0")
    assert nothing.exit_code == 1 and "nothing to release" in nothing.output
