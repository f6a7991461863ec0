"""The order read model's fulfilment (projections/order_fulfilment.py) on a scratch database, fed
the OrderFulfilment aggregate's events (contracts/fulfilment/events.py) as the projector
delivers them (one batch, the offsets after the stored position): a despatch in two parcels is
one fulfilment with two tracking numbers; a partial despatch and the rest are two fulfilments
and the order fully fulfilled; a refusal is an exception until released, then the re-created
fulfilment clears it; tracking added later updates the fulfilment's numbers; a despatch settled
outside the integration no longer holds the row, and the next despatch is fulfilled; an event
delivered again is applied once; a rebuild from offset zero gives the same rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import asyncpg
import pytest
from pydantic import TypeAdapter

from contracts.fulfilment.events import FulfilmentEvent
from contracts.shopify.fulfilments import CreateFulfilment, UpdateFulfilmentTracking
from contracts.topics import FULFILMENT_EVENTS
from domain.fulfilment.values import ExceptionKind
from projections.order_fulfilment import (
    ORDER_FULFILMENT,
    OrderFulfilmentProjection,
    fulfilment_of,
)
from services.platform.kafka import Delivery, Reposition
from tests.support import scratch_database

pytestmark = pytest.mark.integration

T = datetime(2026, 12, 1, 9, tzinfo=UTC)
_EVENT = TypeAdapter(FulfilmentEvent)
FO = "gid://shopify/FulfillmentOrder/5001"
LINE_TEE, LINE_KIT = 11, 12  # a plain line (2 x TEE) and a bundle line (1 x KIT = MUG x1 + CAP x2)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


class Fulfilment:
    """One order's OrderFulfilment events, typed as the relay publishes them, of consecutive
    versions; the helpers state the order's lines, its fulfillment orders, its despatches and
    Shopify's answers."""

    def __init__(self, shopify_order_id: int) -> None:
        self.shopify_order_id = shopify_order_id
        self.aggregate_id = uuid5(NAMESPACE_URL, f"https://shopify-prima/order-fulfilments/{shopify_order_id}")
        self.events: list[Any] = []
        self.attempts = 0
        self.event("Opened")
        self.event("LinesRecorded", lines=[
            {"line_item_id": LINE_TEE, "sku": "TEE", "quantity": 2},
            {"line_item_id": LINE_KIT, "sku": "KIT", "quantity": 1,
             "components": [{"sku": "MUG", "units_per_bundle": 1}, {"sku": "CAP", "units_per_bundle": 2}]}])
        self.orders_read()

    def event(self, kind: str, **fields: Any) -> Any:
        version = len(self.events) + 1
        e = _EVENT.validate_python({
            "event_type": f"OrderFulfilment.{kind}", "event_id": uuid5(self.aggregate_id, f"event/{version}"),
            "shopify_order_id": self.shopify_order_id, "aggregate_id": self.aggregate_id,
            "aggregate_version": version, "timestamp": at(version), "notification_id": version, **fields})
        self.events.append(e)
        return e

    def orders_read(self, status: str = "OPEN") -> Any:
        return self.event("FulfillmentOrdersRead", read_at=at(len(self.events)), fulfillment_orders=[
            {"id": FO, "status": status, "location_id": "gid://shopify/Location/1", "lines": [
                {"id": "gid://shopify/FulfillmentOrderLineItem/1", "line_item_id": LINE_TEE, "remaining": 2},
                {"id": "gid://shopify/FulfillmentOrderLineItem/2", "line_item_id": LINE_KIT, "remaining": 1}]}])

    def despatch(self, despatch_id: str, units: dict[str, int], numbers: list[str | None], version: int = 1) -> Any:
        return self.event(
            "DespatchRecorded", despatch_id=despatch_id, version=version, change_id=len(self.events),
            sales_order_number="SO-000123", despatched_at=at(0.5),
            lines=[{"sku": sku, "quantity": n} for sku, n in units.items()],
            parcels=[{"parcel_number": i + 1, "carrier": "DPD", "tracking_number": number,
                      "tracking_url": f"https://track.dpd.co.uk/{number}" if number else None}
                     for i, number in enumerate(numbers)])

    def request(self, despatch_id: str, lines: dict[int, int], numbers: list[str],
                covers: tuple[str, ...] = ()) -> CreateFulfilment:
        self.attempts += 1
        command = CreateFulfilment(
            command_id=uuid5(self.aggregate_id, f"create:{despatch_id}:{self.attempts}"),
            idempotency_key=f"prima-despatch:{despatch_id}", shopify_order_id=self.shopify_order_id,
            despatch_id=despatch_id, covers=(*covers, despatch_id), issued_at=at(len(self.events)),
            line_items_by_fulfillment_order=[{"fulfillment_order_id": FO, "fulfillment_order_line_items": [
                {"id": f"gid://shopify/FulfillmentOrderLineItem/{1 if line == LINE_TEE else 2}", "quantity": n}
                for line, n in lines.items()]}],
            line_quantities=[{"line_item_id": line, "quantity": n} for line, n in lines.items()],
            tracking={"company": "DPD UK", "numbers": numbers,
                      "urls": [f"https://track.dpd.co.uk/{n}" for n in numbers]},
            notify_customer=True)
        self.event("FulfilmentRequested", command=command)
        return command

    def created(self, command: CreateFulfilment, fulfilment: int) -> Any:
        return self.event("FulfilmentCreated", command_id=command.command_id, despatch_id=command.despatch_id,
                          fulfilment_id=f"gid://shopify/Fulfillment/{fulfilment}", occurred_at=at(len(self.events)))

    def refused(self, command: CreateFulfilment, reason: str) -> Any:
        return self.event("ExceptionRaised", exception={
            "kind": ExceptionKind.REFUSED_BY_SHOPIFY, "despatch_id": command.despatch_id, "reason": reason,
            "command_id": command.command_id})

    def released(self, by: str = "jo@ops") -> Any:
        previous = next(e for e in reversed(self.events) if e.event_type == "OrderFulfilment.ExceptionRaised")
        return self.event("Released", released_by=by, previous=previous.exception)


def two_parcels(shopify_order_id: int = 7001) -> Fulfilment:
    """Everything despatched in one note, two parcels: one fulfilment with both numbers."""
    f = Fulfilment(shopify_order_id)
    f.despatch("D-1", {"TEE": 2, "MUG": 1, "CAP": 2}, ["TRK-1", "TRK-2"])
    f.created(f.request("D-1", {LINE_TEE: 2, LINE_KIT: 1}, ["TRK-1", "TRK-2"]), 901)
    return f


def partial_then_rest(shopify_order_id: int = 7002) -> Fulfilment:
    """The tees first (fulfilled); the mug alone completes no bundle (waits); the caps complete it:
    a second fulfilment carrying the mug's parcel too."""
    f = Fulfilment(shopify_order_id)
    f.despatch("D-1", {"TEE": 2}, ["TRK-A"])
    f.created(f.request("D-1", {LINE_TEE: 2}, ["TRK-A"]), 911)
    f.despatch("D-2", {"MUG": 1}, ["TRK-B"])
    f.event("NothingFulfillable", despatch_id="D-2", reason="no whole line (or bundle) despatched yet")
    f.despatch("D-3", {"CAP": 2}, ["TRK-C"])
    f.created(f.request("D-3", {LINE_KIT: 1}, ["TRK-B", "TRK-C"], covers=("D-2",)), 912)
    return f


def refused_then_released(shopify_order_id: int = 7003, release: bool = True) -> Fulfilment:
    """Shopify refuses (the fulfillment order on hold): an exception; released with a fresh read,
    the despatch is asked again (same key, new command) and made."""
    f = Fulfilment(shopify_order_id)
    f.despatch("D-1", {"TEE": 2, "MUG": 1, "CAP": 2}, ["TRK-9"])
    f.refused(f.request("D-1", {LINE_TEE: 2, LINE_KIT: 1}, ["TRK-9"]),
              "fulfillmentOrderId: The fulfillment order is on hold.")
    if release:
        f.released()
        f.orders_read()
        f.created(f.request("D-1", {LINE_TEE: 2, LINE_KIT: 1}, ["TRK-9"]), 921)
    return f


def tracking_later(shopify_order_id: int = 7004) -> Fulfilment:
    """The second parcel's number comes with the note's version 2: the fulfilment's tracking is updated."""
    f = Fulfilment(shopify_order_id)
    f.despatch("D-1", {"TEE": 2, "MUG": 1, "CAP": 2}, ["TRK-X", None])
    command = f.request("D-1", {LINE_TEE: 2, LINE_KIT: 1}, ["TRK-X"])
    f.created(command, 931)
    f.despatch("D-1", {"TEE": 2, "MUG": 1, "CAP": 2}, ["TRK-X", "TRK-Y"], version=2)
    update = UpdateFulfilmentTracking(
        command_id=uuid5(f.aggregate_id, "tracking:D-1:1"), idempotency_key="prima-despatch:D-1:v2",
        shopify_order_id=shopify_order_id, despatch_id="D-1", fulfilment_id="gid://shopify/Fulfillment/931",
        issued_at=at(len(f.events)), tracking={"company": "DPD UK", "numbers": ["TRK-X", "TRK-Y"]},
        notify_customer=True)
    f.event("TrackingUpdateRequested", command=update)
    f.event("TrackingUpdated", command_id=update.command_id, occurred_at=at(len(f.events)))
    return f


def settled_then_next(shopify_order_id: int = 7006, *, then: bool = True) -> Fulfilment:
    """A despatch of a SKU not on the order; released settling it (ReleaseFulfilment with
    settle_despatch); the next despatch (the tees) is fulfilled."""
    f = Fulfilment(shopify_order_id)
    f.despatch("D-1", {"LAMP": 1}, ["TRK-L"])
    f.event("ExceptionRaised", exception={"kind": ExceptionKind.SKU_NOT_ON_ORDER, "despatch_id": "D-1",
                                          "reason": "despatched SKUs no line of the order holds: LAMP"})
    f.released()
    f.event("DespatchSettled", despatch_id="D-1",
            reason="settled by jo@ops: despatched SKUs no line of the order holds: LAMP")
    f.orders_read()
    if then:
        f.despatch("D-2", {"TEE": 2}, ["TRK-T"])
        f.created(f.request("D-2", {LINE_TEE: 2}, ["TRK-T"]), 941)
    return f


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
async def scratch_url(database_url) -> AsyncIterator[str]:
    async with scratch_database(database_url, "fulfilment_rm") as url:
        yield url


@pytest.fixture
async def pool(scratch_url) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(scratch_url, min_size=1, max_size=2)
    await pool.execute("TRUNCATE readmodel.order_fulfilment, readmodel.positions, readmodel.applied_versions, "
                       "readmodel.rebuilds")
    yield pool
    await pool.close()


async def project(projection: OrderFulfilmentProjection, messages: list[Any], partition: int = 0) -> None:
    """Deliver `messages` as one batch at the offsets after the stored position (new offsets each
    time: what a relay that published again looks like)."""
    start = (await projection.positions(projection.pool)).get(partition, 0)
    await projection.handle([Delivery(m, FULFILMENT_EVENTS.name, partition, start + i,
                                      str(m.shopify_order_id).encode()) for i, m in enumerate(messages)])


async def rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    ids = [r["shopify_order_id"] for r in await pool.fetch(
        "SELECT shopify_order_id FROM readmodel.order_fulfilment ORDER BY shopify_order_id")]
    return [await fulfilment_of(pool, i) for i in ids]


class WithoutVersionDedupe(OrderFulfilmentProjection):
    """The projection without the platform's version dedupe: its rows must still take each
    event once (the row keeps the last version it applied)."""

    def version_of(self, message: Any) -> tuple[UUID, int] | None:
        return None


# ---------------------------------------------------------------------------------------- tests


def test_the_read_model_declares_the_kinds_the_aggregate_raises():
    kinds = {v for k, v in vars(ExceptionKind).items() if not k.startswith("_")}
    assert set(ORDER_FULFILMENT.exception_kinds) == kinds
    assert ORDER_FULFILMENT.exception_kinds == ("sku_not_on_order", "cannot_allocate", "refused_by_shopify",
                                                "tracking_refused")


async def test_given_a_full_despatch_in_two_parcels_when_projected_then_one_fulfilment_with_two_numbers(pool):
    projection = OrderFulfilmentProjection(pool)

    await project(projection, two_parcels().events)

    row = await fulfilment_of(pool, 7001)
    assert row is not None
    assert (row["state"], row["fully_fulfilled"]) == ("fulfilled", True)
    assert row["tracking_numbers"] == ["TRK-1", "TRK-2"]
    [fulfilment] = row["fulfilments"]
    assert (fulfilment["status"], fulfilment["fulfilment_id"], fulfilment["covers"]) == (
        "created", "gid://shopify/Fulfillment/901", ["D-1"])
    assert fulfilment["line_quantities"] == [{"line_item_id": LINE_TEE, "quantity": 2},
                                             {"line_item_id": LINE_KIT, "quantity": 1}]
    assert fulfilment["tracking"]["urls"] == ["https://track.dpd.co.uk/TRK-1", "https://track.dpd.co.uk/TRK-2"]
    [despatch] = row["despatches"]
    assert (despatch["despatch_id"], despatch["status"], despatch["fulfilment_id"]) == (
        "D-1", "fulfilled", "gid://shopify/Fulfillment/901")
    assert [(p["carrier"], p["tracking_number"]) for p in despatch["parcels"]] == [("DPD", "TRK-1"), ("DPD", "TRK-2")]
    assert [(line["sku"], line["quantity"], line["fulfilled"]) for line in row["lines"]] == [
        ("TEE", 2, 2), ("KIT", 1, 1)]
    assert row["lines"][1]["components"] == [{"sku": "MUG", "units_per_bundle": 1}, {"sku": "CAP", "units_per_bundle": 2}]
    assert (row["exception"], row["exception_kind"], row["released_exceptions"]) == (None, None, [])


async def test_given_a_partial_despatch_then_the_rest_then_two_fulfilments_and_fully_fulfilled(pool):
    projection = OrderFulfilmentProjection(pool)
    f = partial_then_rest()
    first_created = next(i for i, e in enumerate(f.events) if e.event_type == "OrderFulfilment.FulfilmentCreated")
    waiting = next(i for i, e in enumerate(f.events) if e.event_type == "OrderFulfilment.NothingFulfillable")

    await project(projection, f.events[:first_created + 1])
    partly = await fulfilment_of(pool, 7002)
    await project(projection, f.events[first_created + 1:waiting + 1])
    mug_waiting = await fulfilment_of(pool, 7002)
    await project(projection, f.events[waiting + 1:])
    row = await fulfilment_of(pool, 7002)

    assert (partly["state"], partly["fully_fulfilled"], partly["tracking_numbers"]) == (
        "partly_fulfilled", False, ["TRK-A"])
    assert mug_waiting["state"] == "partly_fulfilled"
    assert [(d["despatch_id"], d["status"]) for d in mug_waiting["despatches"]] == [("D-1", "fulfilled"),
                                                                                  ("D-2", "waiting")]
    assert (row["state"], row["fully_fulfilled"]) == ("fulfilled", True)
    assert [(x["fulfilment_id"], x["covers"]) for x in row["fulfilments"]] == [
        ("gid://shopify/Fulfillment/911", ["D-1"]), ("gid://shopify/Fulfillment/912", ["D-2", "D-3"])]
    assert row["tracking_numbers"] == ["TRK-A", "TRK-B", "TRK-C"]
    assert [(d["despatch_id"], d["status"], d["fulfilment_id"]) for d in row["despatches"]] == [
        ("D-1", "fulfilled", "gid://shopify/Fulfillment/911"), ("D-2", "fulfilled", "gid://shopify/Fulfillment/912"),
        ("D-3", "fulfilled", "gid://shopify/Fulfillment/912")]


async def test_given_a_refused_fulfilment_when_released_and_made_then_the_exception_is_cleared(pool):
    projection = OrderFulfilmentProjection(pool)
    held = refused_then_released(release=False)

    await project(projection, held.events)
    row = await fulfilment_of(pool, 7003)
    assert row["state"] == "exception" and row["exception_kind"] == "refused_by_shopify"
    assert row["exception"]["despatch_id"] == "D-1" and "on hold" in row["exception"]["reason"]
    assert row["exception"]["action"].endswith("`shopify-prima fulfilment release 7003` (the same despatch keeps its "
                                               "idempotency key)")
    assert [(x["status"], x["refused"]["reason"]) for x in row["fulfilments"]] == [
        ("refused", "fulfillmentOrderId: The fulfillment order is on hold.")]
    assert row["despatches"][0]["status"] == "exception" and row["tracking_numbers"] == []
    states, kinds = await projection.counts(pool)
    assert (states["exception"], kinds["refused_by_shopify"], kinds["cannot_allocate"]) == (1, 1, 0)

    await project(projection, refused_then_released().events[len(held.events):])

    row = await fulfilment_of(pool, 7003)
    assert (row["state"], row["exception"], row["exception_kind"]) == ("fulfilled", None, None)
    assert [(x["status"], x["fulfilment_id"]) for x in row["fulfilments"]] == [
        ("refused", None), ("created", "gid://shopify/Fulfillment/921")]
    [released] = row["released_exceptions"]
    assert (released["kind"], released["released_by"], released["despatch_id"]) == (
        "refused_by_shopify", "jo@ops", "D-1")
    assert released["since"] < released["released_at"]
    assert row["tracking_numbers"] == ["TRK-9"]
    states, kinds = await projection.counts(pool)
    assert (states["exception"], states["fulfilled"], kinds["refused_by_shopify"]) == (0, 1, 0)


async def test_given_tracking_added_later_when_updated_then_the_fulfilment_has_both_numbers(pool):
    projection = OrderFulfilmentProjection(pool)
    f = tracking_later()

    await project(projection, f.events[:-3])
    before = await fulfilment_of(pool, 7004)
    await project(projection, f.events[-3:])
    row = await fulfilment_of(pool, 7004)

    assert (before["state"], before["tracking_numbers"]) == ("fulfilled", ["TRK-X"])
    assert (row["state"], row["tracking_numbers"]) == ("fulfilled", ["TRK-X", "TRK-Y"])
    [fulfilment] = row["fulfilments"]
    assert fulfilment["tracking"]["numbers"] == ["TRK-X", "TRK-Y"]
    assert [(u["status"], u["idempotency_key"]) for u in fulfilment["tracking_updates"]] == [
        ("updated", "prima-despatch:D-1:v2")]
    [despatch] = row["despatches"]
    assert despatch["version"] == 2 and [p["tracking_number"] for p in despatch["parcels"]] == ["TRK-X", "TRK-Y"]


async def test_given_a_despatch_settled_when_released_then_it_holds_the_row_no_more_and_the_next_is_fulfilled(pool):
    projection = OrderFulfilmentProjection(pool)
    held = settled_then_next(then=False)
    raised = next(i for i, e in enumerate(held.events) if e.event_type == "OrderFulfilment.ExceptionRaised")

    await project(projection, held.events[:raised + 1])
    before = await fulfilment_of(pool, 7006)
    await project(projection, held.events[raised + 1:])
    settled = await fulfilment_of(pool, 7006)
    await project(projection, settled_then_next().events[len(held.events):])
    row = await fulfilment_of(pool, 7006)

    assert (before["state"], before["exception_kind"]) == ("exception", "sku_not_on_order")
    assert "`shopify-prima fulfilment release 7006 --settle-despatch`" in before["exception"]["action"]
    assert (settled["state"], settled["exception"], settled["exception_kind"]) == ("awaiting_despatch", None, None)
    [despatch] = settled["despatches"]
    assert (despatch["status"], despatch["settled_reason"]) == (
        "settled", "settled by jo@ops: despatched SKUs no line of the order holds: LAMP")
    assert [(x["kind"], x["released_by"]) for x in settled["released_exceptions"]] == [("sku_not_on_order", "jo@ops")]
    assert (row["state"], row["tracking_numbers"]) == ("partly_fulfilled", ["TRK-T"])
    assert [(d["despatch_id"], d["status"], d["fulfilment_id"]) for d in row["despatches"]] == [
        ("D-1", "settled", None), ("D-2", "fulfilled", "gid://shopify/Fulfillment/941")]


@pytest.mark.parametrize("projection_type", [OrderFulfilmentProjection, WithoutVersionDedupe],
                         ids=["with-dedupe", "without-dedupe"])
async def test_given_events_delivered_again_when_projected_then_each_is_applied_once(pool, projection_type):
    projection = projection_type(pool)
    f = partial_then_rest()
    await project(projection, f.events)
    once = await rows(pool)

    await project(projection, f.events)  # the relay published them again, at new offsets
    await project(projection, [f.events[4], f.events[3]])  # and a stray pair, out of order

    assert await rows(pool) == once
    assert len(once[0]["fulfilments"]) == 2 and once[0]["state"] == "fulfilled"


async def test_given_every_scenario_when_rebuilt_from_zero_then_the_rows_are_the_same(pool):
    projection = OrderFulfilmentProjection(pool)
    scenarios = [two_parcels(), partial_then_rest(), refused_then_released(), tracking_later(),
                 refused_then_released(7005, release=False)]
    # the topic as the relay wrote it: each order's events in order, orders interleaved
    topic = [e for batch in zip_longest(*[s.events for s in scenarios]) for e in batch if e is not None]
    for start in range(0, len(topic), 7):  # batches as the consumer fetches them
        await project(projection, topic[start:start + 7])
    built = await rows(pool)
    assert [(r["shopify_order_id"], r["state"]) for r in built] == [
        (7001, "fulfilled"), (7002, "fulfilled"), (7003, "fulfilled"), (7004, "fulfilled"), (7005, "exception")]

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", projection.lock)
        await projection.reset(conn, {0: len(topic)}, uuid5(NAMESPACE_URL, "rebuild-order-fulfilment"))
    assert await rows(pool) == []
    with pytest.raises(Reposition):  # the batch fetched before the rebuild is dropped; the consumer seeks to zero
        await projection.handle([Delivery(topic[-1], FULFILMENT_EVENTS.name, 0, len(topic), b"7005")])
    await projection.handle([Delivery(e, FULFILMENT_EVENTS.name, 0, i, str(e.shopify_order_id).encode())
                             for i, e in enumerate(topic)])

    assert await rows(pool) == built
    finished = await pool.fetchval("SELECT finished_at FROM readmodel.rebuilds WHERE projection = $1",
                                   projection.name)
    assert finished is not None
