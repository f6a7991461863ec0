"""The fulfilment flow's edge (services/fulfilment/translate.py and outbox.py): the sales order
as the order flow sends it -> the order's lines (bundles by their components); Shopify's
fulfillment orders as OrderFulfillmentOrders.graphql reads them; the commands and events as the
wire contracts, for every event the OrderFulfilment aggregate records."""

from __future__ import annotations

import inspect
from decimal import Decimal
from uuid import uuid4

import pytest

from contracts.fulfilment import events as wire_events
from contracts.platform import ReleaseFulfilment
from contracts.prima.sales_orders import (
    SalesOrderDraft,
    SalesOrderLine,
    SalesOrderLineBundle,
    SalesOrderTotals,
)
from contracts.shopify.fulfilments import CreateFulfilment
from domain.fulfilment.application import FulfilmentApplication
from domain.fulfilment.domainmodel import OrderFulfilment
from domain.fulfilment.values import Component, FulfilmentReleaseRequested, OrderLineRecord
from services.fulfilment import translate
from services.fulfilment.decider import FulfilmentDecider
from services.fulfilment.outbox import ROUTES
from services.platform.outbox import Relay, RelayTable
from tests.fulfilment.builders import (
    ORDER,
    SET_LINE,
    T0,
    despatch,
    parcel,
    sales_order_lines,
    whole_order_open,
)

pytestmark = pytest.mark.unit


def wire_draft() -> SalesOrderDraft:
    """The builders' sales-order lines, as services/orders/translate.py sends them to Prima."""
    zero = Decimal(0)
    return SalesOrderDraft(
        external_reference=str(ORDER), order_name="#1001", currency="GBP", taxes_included=True, order_date=T0,
        lines=tuple(SalesOrderLine(
            line_number=li.line_number, item_id=li.item_id, sku=li.sku, description=li.description,
            quantity=li.quantity, unit_price=li.unit_price, discount_amount=li.discount_amount,
            tax_amount=li.tax_amount, net_amount=li.net_amount, kind=li.kind, account=li.account,
            external_line_id=li.line_id,
            bundle=SalesOrderLineBundle(item_id=li.bundle_item_id, sku=li.bundle_sku, units_per_bundle=li.units_per_bundle)
            if li.bundle_sku else None) for li in sales_order_lines()),
        totals=SalesOrderTotals(lines_net=zero, shipping_net=zero, tax=zero, total=zero))


def test_a_sales_order_as_sent_gives_the_order_lines_with_the_bundle_by_its_components():
    stated = translate.lines_stated(ORDER, wire_draft(), T0)
    assert stated.shopify_order_id == ORDER
    bundle = next(line for line in stated.lines if line.line_id == SET_LINE)
    assert bundle == OrderLineRecord(line_id=SET_LINE, sku="GIFT-SET", quantity=2,
                                     components=(Component("TEE-S", 1), Component("MUG-S", 2)))
    assert [(line.sku, line.quantity, line.is_bundle) for line in stated.lines] == [
        ("MUG", 2, False), ("TEE", 1, False), ("GIFT-SET", 2, True)]  # the gift card is not Prima's to despatch


def read_answer(*, more_orders: bool = False, more_lines: bool = False) -> dict:
    return {"id": "gid://shopify/Order/5001", "fulfillmentOrders": {
        "pageInfo": {"hasNextPage": more_orders, "endCursor": None},
        "nodes": [{"id": "gid://shopify/FulfillmentOrder/7", "status": "ON_HOLD", "requestStatus": "UNSUBMITTED",
                   "assignedLocation": {"name": "Main", "location": {"id": "gid://shopify/Location/1"}},
                   "fulfillmentHolds": [{"id": "gid://shopify/FulfillmentHold/1", "reason": "OTHER"}],
                   "lineItems": {"pageInfo": {"hasNextPage": more_lines}, "nodes": [
                       {"id": "gid://shopify/FulfillmentOrderLineItem/70", "sku": "MUG", "totalQuantity": 2,
                        "remainingQuantity": 1, "lineItem": {"id": "gid://shopify/LineItem/11", "sku": "MUG"}}]}}]}}


def test_fulfillment_orders_as_read_keep_status_location_and_what_remains_per_order_line():
    (fo,) = translate.fulfillment_orders(read_answer())
    assert (fo.id, fo.status, fo.location_id) == ("gid://shopify/FulfillmentOrder/7", "ON_HOLD",
                                                  "gid://shopify/Location/1")
    assert [(line.id, line.line_item_id, line.remaining) for line in fo.lines] == [
        ("gid://shopify/FulfillmentOrderLineItem/70", 11, 1)]
    assert translate.fulfillment_orders(None) == ()  # an order Shopify does not know: no fulfillment orders


@pytest.mark.parametrize("kw", [{"more_orders": True}, {"more_lines": True}])
def test_a_read_that_left_a_page_unread_is_refused_rather_than_taken_as_the_whole(kw):
    with pytest.raises(ValueError, match="more"):
        translate.fulfillment_orders(read_answer(**kw))


def test_a_gid_without_a_number_is_refused():
    assert translate.gid_number("gid://shopify/LineItem/123") == 123
    with pytest.raises(ValueError, match="numeric"):
        translate.gid_number("gid://shopify/LineItem/abc")


def decided_order() -> OrderFulfilment:
    fulfilment = OrderFulfilment(ORDER)
    fulfilment.record_lines(translate.lines_stated(ORDER, wire_draft(), T0).lines, T0)
    fulfilment.record_fulfillment_orders(whole_order_open(), T0, T0)
    fulfilment.record_despatch(despatch("DN-000001", ("MUG", 2), ("TEE", 1), parcels=(
        parcel(1, tracking="RM1GB"), parcel(2, tracking="RM2GB"))), T0)
    return fulfilment


def test_the_decided_create_is_a_valid_wire_command_with_the_despatch_key_and_both_tracking_numbers():
    command = decided_order().pending
    assert command is not None
    wire = translate.create_fulfilment(command)
    assert CreateFulfilment.model_validate_json(wire.model_dump_json()) == wire
    assert wire.idempotency_key == "prima-despatch:DN-000001"
    assert wire.tracking.company == "Royal Mail" and wire.tracking.numbers == ("RM1GB", "RM2GB")
    assert sorted((q.line_item_id, q.quantity) for q in wire.line_quantities) == [(11, 2), (12, 1)]


def test_every_event_the_aggregate_records_has_a_route_and_relays_as_its_contract():
    # the aggregate's own event classes (the library's base Event and Created are never recorded:
    # __init__ records Opened)
    event_classes = {f"OrderFulfilment.{name}" for name, value in vars(OrderFulfilment).items()
                     if inspect.isclass(value) and hasattr(value, "apply") and name not in ("Event", "Created")}
    assert event_classes == set(ROUTES)

    app = FulfilmentApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    fulfilment = decided_order()
    app.save(fulfilment)
    table = RelayTable(name="t", lock="t", application=lambda s: app, routes=ROUTES,
                       subject_of=lambda first: first.shopify_order_id)
    relay = Relay(table, settings=None, broker=None, app=app)  # type: ignore[arg-type]
    messages = [m for n in app.recorder.select_notifications(1, 100) for m in relay.messages(n)]
    kinds = [(m.topic, getattr(m.message, "event_type", None) or m.message.message_type) for m in messages]
    assert kinds == [
        ("shopify-prima.fulfilment-events.v1", "OrderFulfilment.Opened"),
        ("shopify-prima.fulfilment-events.v1", "OrderFulfilment.LinesRecorded"),
        ("shopify-prima.fulfilment-events.v1", "OrderFulfilment.FulfillmentOrdersRead"),
        ("shopify-prima.fulfilment-events.v1", "OrderFulfilment.DespatchRecorded"),
        ("shopify-prima.fulfilment-events.v1", "OrderFulfilment.FulfilmentRequested"),
        ("shopify.commands.v1", "CreateFulfilment"),
    ]
    assert all(m.key == str(ORDER).encode() for m in messages)
    command = messages[-1].message
    assert command.command_id == fulfilment.pending.command_id and command.shopify_order_id == ORDER


def test_a_settled_despatch_relays_as_despatch_settled_with_its_reason():
    app = FulfilmentApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    fulfilment = OrderFulfilment(ORDER)
    fulfilment.record_lines(translate.lines_stated(ORDER, wire_draft(), T0).lines, T0)
    fulfilment.record_fulfillment_orders(whole_order_open(), T0, T0)
    fulfilment.record_despatch(despatch("DN-000001", ("LAMP", 1)), T0)
    fulfilment.release("ops@example.com", whole_order_open(), T0, T0, settle=True)
    app.save(fulfilment)
    table = RelayTable(name="t", lock="t", application=lambda s: app, routes=ROUTES,
                       subject_of=lambda first: first.shopify_order_id)
    relay = Relay(table, settings=None, broker=None, app=app)  # type: ignore[arg-type]
    messages = [m.message for n in app.recorder.select_notifications(1, 100) for m in relay.messages(n)]
    [settled] = [m for m in messages if m.event_type == "OrderFulfilment.DespatchSettled"]
    assert isinstance(settled, wire_events.DespatchSettled) and settled.shopify_order_id == ORDER
    assert settled.despatch_id == "DN-000001"
    assert settled.reason == "settled by ops@example.com: despatched SKUs no line of the order holds: LAMP"
    assert [m.event_type for m in messages][-3:] == ["OrderFulfilment.Released", "OrderFulfilment.DespatchSettled",
                                                     "OrderFulfilment.FulfillmentOrdersRead"]


@pytest.mark.parametrize("settle", [False, True])
def test_the_operators_release_becomes_a_release_fact_that_settles_only_when_asked(settle):
    release = ReleaseFulfilment(command_id=uuid4(), requested_by="jo@ops", requested_at=T0, shopify_order_id=ORDER,
                                **({"settle_despatch": True} if settle else {}))
    fact = FulfilmentDecider._fact(release, {ORDER: whole_order_open()}, T0)
    assert fact == FulfilmentReleaseRequested(shopify_order_id=ORDER, released_by="jo@ops",
                                              fulfillment_orders=whole_order_open(), read_at=T0, settle=settle)
