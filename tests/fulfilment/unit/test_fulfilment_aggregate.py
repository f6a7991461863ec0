"""OrderFulfilment decisions, given-when-then on its events and the commands it records
(in-memory event store: pure logic). Every test ends by replaying the aggregate from the store:
its events carry the domain's values and give back the same state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.fulfilment.application import FulfilmentApplication
from domain.fulfilment.carriers import CarrierMap
from domain.fulfilment.domainmodel import FulfilmentPolicy, OrderFulfilment
from domain.fulfilment.rules import order_lines
from domain.fulfilment.values import (
    CreateFulfilment,
    ExceptionKind,
    FulfillmentOrdersStated,
    FulfilmentCreatedByShopify,
    FulfilmentRefusedByShopify,
    FulfilmentReleaseRequested,
    LineQuantity,
    OrderLinesStated,
    TrackingInfo,
    TrackingUpdatedByShopify,
    TrackingUpdateRefusedByShopify,
    UpdateFulfilmentTracking,
)
from tests.fulfilment.builders import (
    MUG_LINE,
    ORDER,
    SET_LINE,
    T0,
    TEE_LINE,
    despatch,
    fulfillment_order,
    parcel,
    sales_order_lines,
    whole_order_open,
)

EVERYTHING = (("MUG", 2), ("TEE", 1), ("TEE-S", 2), ("MUG-S", 4))
POLICY = FulfilmentPolicy(notify_customer=False, carriers=CarrierMap({"DPD": "DPD UK"}))


@pytest.fixture
def app():
    app = FulfilmentApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def opened(app, orders=None) -> OrderFulfilment:
    """An order with its lines and its fulfillment orders read (all open, nothing fulfilled)."""
    fulfilment = OrderFulfilment(ORDER)
    fulfilment.record_lines(order_lines(sales_order_lines()), now=T0, policy=POLICY)
    fulfilment.record_fulfillment_orders(orders or whole_order_open(), read_at=T0, now=T0, policy=POLICY)
    app.save(fulfilment)
    return fulfilment


def later(minutes: int):
    return T0 + timedelta(minutes=minutes)


def creates(app) -> list[CreateFulfilment]:
    return [e.command for e in app.events.get(OrderFulfilment.create_id(ORDER))
            if isinstance(e, OrderFulfilment.FulfilmentRequested)]


def updates(app) -> list[UpdateFulfilmentTracking]:
    return [e.command for e in app.events.get(OrderFulfilment.create_id(ORDER))
            if isinstance(e, OrderFulfilment.TrackingUpdateRequested)]


def created(fulfilment: OrderFulfilment, app, fulfilment_id: str, minutes: int = 5) -> bool:
    assert fulfilment.pending is not None
    outcome = FulfilmentCreatedByShopify(shopify_order_id=ORDER, command_id=fulfilment.pending.command_id,
                                         fulfilment_id=fulfilment_id, occurred_at=later(minutes))
    done = fulfilment.record_outcome(outcome, now=later(minutes), policy=POLICY)
    app.save(fulfilment)
    return done


def replayed(app, fulfilment: OrderFulfilment) -> OrderFulfilment:
    """The aggregate rebuilt from its stored events equals the one that decided."""
    again = app.repository.get(fulfilment.id)
    assert isinstance(again, OrderFulfilment)
    assert vars(again) == vars(fulfilment)
    return again


def test_given_a_full_despatch_in_two_parcels_when_recorded_then_one_fulfilment_with_two_tracking_numbers(app):
    fulfilment = opened(app)
    fulfilment.record_despatch(despatch("DN-1", *EVERYTHING, parcels=(parcel(1, "DPD", "D1"), parcel(2, "DPD", "D2"))),
                               now=later(1), policy=POLICY)
    app.save(fulfilment)
    [command] = creates(app)
    assert command.idempotency_key == "prima-despatch:DN-1" and command.notify_customer is False
    assert command.tracking == TrackingInfo(company="DPD UK", numbers=("D1", "D2"))
    assert command.line_quantities == (LineQuantity(MUG_LINE, 2), LineQuantity(TEE_LINE, 1), LineQuantity(SET_LINE, 2))
    [group] = command.line_items_by_fulfillment_order
    assert group.fulfillment_order_id == "gid://shopify/FulfillmentOrder/1"
    assert [line.quantity for line in group.lines] == [2, 1, 2]
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    assert fulfilment.fully_fulfilled and fulfilment.fulfillment_orders[0].status == "CLOSED"
    assert fulfilment.fulfilment_ids == {"DN-1": "gid://shopify/Fulfillment/1"}
    assert replayed(app, fulfilment).fully_fulfilled


def test_given_a_partial_despatch_then_the_rest_when_recorded_then_two_fulfilments_and_fully_fulfilled(app):
    fulfilment = opened(app)
    fulfilment.record_despatch(despatch("DN-1", ("MUG", 1), parcels=(parcel(1, tracking="RM1"),)), now=later(1))
    app.save(fulfilment)
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    assert not fulfilment.fully_fulfilled and fulfilment.fulfillment_orders[0].status == "IN_PROGRESS"
    fulfilment.record_despatch(despatch("DN-2", ("MUG", 1), ("TEE", 1), ("TEE-S", 2), ("MUG-S", 4),
                                        parcels=(parcel(1, tracking="RM2"),)), now=later(10))
    app.save(fulfilment)
    first, second = creates(app)
    assert first.line_quantities == (LineQuantity(MUG_LINE, 1),)
    assert second.line_quantities == (LineQuantity(MUG_LINE, 1), LineQuantity(TEE_LINE, 1), LineQuantity(SET_LINE, 2))
    assert second.idempotency_key == "prima-despatch:DN-2" and second.tracking.numbers == ("RM2",)
    assert created(fulfilment, app, "gid://shopify/Fulfillment/2", minutes=11)
    assert fulfilment.fully_fulfilled
    replayed(app, fulfilment)


def test_given_a_bundle_despatched_as_components_in_two_notes_then_fulfilled_as_the_bundle_in_whole_bundles(app):
    fulfilment = opened(app)
    # the tee, one whole gift set's components and a mug of the second: the tee and ONE bundle
    fulfilment.record_despatch(despatch("DN-1", ("TEE", 1), ("TEE-S", 2), ("MUG-S", 3),
                                        parcels=(parcel(1, tracking="RM1"),)), now=later(1))
    app.save(fulfilment)
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    # components of the bundle alone, short of a whole one: nothing to fulfil; the note waits
    fulfilment.record_despatch(despatch("DN-2", ("MUG", 1), parcels=(parcel(1, tracking="RM2"),)), now=later(10))
    fulfilment.record_despatch(despatch("DN-3", ("MUG-S", 1), parcels=(parcel(1, tracking="RM3"),)), now=later(11))
    app.save(fulfilment)
    first, second = creates(app)
    assert first.line_quantities == (LineQuantity(TEE_LINE, 1), LineQuantity(SET_LINE, 1))
    assert second.despatch_id == "DN-2" and second.line_quantities == (LineQuantity(MUG_LINE, 1),)
    assert created(fulfilment, app, "gid://shopify/Fulfillment/2", minutes=12)
    third = creates(app)[2]
    assert third.despatch_id == "DN-3" and third.line_quantities == (LineQuantity(SET_LINE, 1),)
    assert created(fulfilment, app, "gid://shopify/Fulfillment/3", minutes=13)
    assert fulfilment.fulfilled == {str(TEE_LINE): 1, str(SET_LINE): 2, str(MUG_LINE): 1}
    replayed(app, fulfilment)


def test_given_a_note_that_fulfils_nothing_when_the_rest_comes_then_one_fulfilment_carries_both_parcels(app):
    fulfilment = opened(app)
    fulfilment.record_despatch(despatch("DN-1", ("TEE-S", 2), parcels=(parcel(1, tracking="RM1"),)), now=later(1))
    app.save(fulfilment)
    assert creates(app) == [] and fulfilment.waiting == ["DN-1"]
    fulfilment.record_despatch(despatch("DN-2", ("MUG-S", 4), parcels=(parcel(1, tracking="RM2"),)), now=later(2))
    app.save(fulfilment)
    [command] = creates(app)
    assert command.line_quantities == (LineQuantity(SET_LINE, 2),)
    assert command.covers == ("DN-1", "DN-2") and command.tracking.numbers == ("RM1", "RM2")
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    assert fulfilment.waiting == [] and fulfilment.undecided == []
    replayed(app, fulfilment)


def test_given_the_same_despatch_three_times_when_recorded_then_one_command(app):
    fulfilment = opened(app)
    note = despatch("DN-1", *EVERYTHING)
    assert [fulfilment.record_despatch(note, now=later(n)) for n in (1, 2, 3)] == [True, False, False]
    command = fulfilment.pending
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    assert not fulfilment.record_despatch(note, now=later(6))
    # the outcome redelivered changes nothing either
    assert not fulfilment.record_outcome(FulfilmentCreatedByShopify(ORDER, command.command_id, "gid://shopify/Fulfillment/1",
                                                                    later(7)), now=later(7))
    app.save(fulfilment)
    assert len(creates(app)) == 1 and fulfilment.fulfilled[str(MUG_LINE)] == 2
    replayed(app, fulfilment)


def test_given_a_fulfillment_order_on_hold_then_an_exception_and_after_release_one_fulfilment(app):
    fulfilment = opened(app, whole_order_open(status="ON_HOLD"))
    fulfilment.record_despatch(despatch("DN-1", *EVERYTHING), now=later(1))
    app.save(fulfilment)
    assert creates(app) == []
    assert fulfilment.exception.kind == ExceptionKind.CANNOT_ALLOCATE and fulfilment.exception.despatch_id == "DN-1"
    assert "on_hold" in fulfilment.exception.reason
    # nothing more is decided while the exception stands (a newer read comes in, a repeat too)
    assert not fulfilment.record_despatch(despatch("DN-1", *EVERYTHING), now=later(2))
    assert fulfilment.release("ops@example.com", whole_order_open(), read_at=later(3), now=later(3))
    app.save(fulfilment)
    [command] = creates(app)
    assert command.despatch_id == "DN-1" and fulfilment.exception is None
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    assert not fulfilment.release("ops@example.com", whole_order_open(), read_at=later(9), now=later(9))
    assert fulfilment.fully_fulfilled
    replayed(app, fulfilment)


def test_given_shopify_refuses_a_fulfilment_when_released_then_a_new_attempt_with_the_same_key_and_one_fulfilment(app):
    fulfilment = opened(app)
    fulfilment.record_despatch(despatch("DN-1", *EVERYTHING), now=later(1))
    refused = fulfilment.pending
    assert fulfilment.record_outcome(FulfilmentRefusedByShopify(
        ORDER, refused.command_id, ("Fulfillment order 1001.1 has an unfulfillable status= on_hold.",), later(2)), now=later(2))
    assert fulfilment.exception.kind == ExceptionKind.REFUSED_BY_SHOPIFY and fulfilment.pending is None
    assert "unfulfillable status= on_hold" in fulfilment.exception.reason
    assert fulfilment.release("ops@example.com", whole_order_open(), read_at=later(3), now=later(3))
    app.save(fulfilment)
    first, again = creates(app)
    assert again.command_id != first.command_id and again.idempotency_key == first.idempotency_key
    # a late answer to the refused attempt changes nothing
    assert not fulfilment.record_outcome(FulfilmentCreatedByShopify(ORDER, first.command_id, "gid://shopify/Fulfillment/9",
                                                                    later(4)), now=later(4))
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    assert fulfilment.fulfilment_ids == {"DN-1": "gid://shopify/Fulfillment/1"}
    replayed(app, fulfilment)


def test_given_a_quantity_above_what_remains_when_decided_then_an_exception_and_nothing_sent(app):
    # someone fulfilled a mug by hand in Shopify: one left, two despatched
    fulfilment = opened(app, (fulfillment_order(1, (MUG_LINE, 1), (TEE_LINE, 1), (SET_LINE, 2), status="IN_PROGRESS"),))
    fulfilment.record_despatch(despatch("DN-1", *EVERYTHING), now=later(1))
    app.save(fulfilment)
    assert creates(app) == []
    assert fulfilment.exception.kind == ExceptionKind.CANNOT_ALLOCATE
    assert fulfilment.exception.reason == f"line {MUG_LINE}: 2 to fulfil, 1 fulfillable: only 1 remaining"
    replayed(app, fulfilment)


def test_given_a_despatched_sku_not_on_the_order_when_decided_then_an_exception(app):
    fulfilment = opened(app)
    fulfilment.record_despatch(despatch("DN-1", ("MUG", 2), ("LAMP", 1)), now=later(1))
    assert fulfilment.pending is None and fulfilment.exception.kind == ExceptionKind.SKU_NOT_ON_ORDER
    assert "LAMP" in fulfilment.exception.reason


def test_given_tracking_added_later_to_a_fulfilled_parcel_then_a_tracking_update_of_the_same_fulfilment(app):
    fulfilment = opened(app)
    untracked = (parcel(1, "DPD", "D1"), parcel(2, "Evri", tracking=""))
    fulfilment.record_despatch(despatch("DN-1", *EVERYTHING, parcels=untracked), now=later(1), policy=POLICY)
    # the number comes while the create is in flight: the update waits for the fulfilment
    tracked = (parcel(1, "DPD", "D1", "https://dpd.example/D1"), parcel(2, "Evri", "H2", "https://evri.example/H2"))
    assert fulfilment.record_despatch(despatch("DN-1", *EVERYTHING, parcels=tracked, version=2), now=later(2), policy=POLICY)
    assert fulfilment.pending_tracking is None and fulfilment.pending.tracking.numbers == ("D1",)
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    [update] = updates(app)
    assert update.fulfilment_id == "gid://shopify/Fulfillment/1" and update.idempotency_key == "prima-despatch:DN-1:v2"
    assert update.tracking == TrackingInfo(company="DPD UK", numbers=("D1", "H2"),
                                           urls=("https://dpd.example/D1", "https://evri.example/H2"))
    assert fulfilment.record_outcome(TrackingUpdatedByShopify(ORDER, update.command_id, update.fulfilment_id, later(6)),
                                     now=later(6), policy=POLICY)
    assert not fulfilment.record_despatch(despatch("DN-1", *EVERYTHING, parcels=tracked, version=2), now=later(7), policy=POLICY)
    app.save(fulfilment)
    assert len(updates(app)) == 1 and len(creates(app)) == 1
    replayed(app, fulfilment)


def tracking_refused(app, user_error: str) -> tuple[OrderFulfilment, UpdateFulfilmentTracking]:
    """An order fulfilled without tracking, whose later tracking update Shopify refused."""
    fulfilment = opened(app)
    fulfilment.record_despatch(despatch("DN-1", *EVERYTHING, parcels=(parcel(1, tracking=""),)), now=later(1))
    created(fulfilment, app, "gid://shopify/Fulfillment/1")
    fulfilment.record_despatch(despatch("DN-1", *EVERYTHING, parcels=(parcel(1, tracking="RM1"),), version=2),
                               now=later(6))
    first = fulfilment.pending_tracking
    assert fulfilment.record_outcome(TrackingUpdateRefusedByShopify(ORDER, first.command_id, (user_error,), later(7)),
                                     now=later(7))
    return fulfilment, first


def test_given_a_tracking_update_refused_when_released_then_sent_again(app):
    fulfilment, first = tracking_refused(app, "Fulfillment does not exist.")
    assert fulfilment.exception.kind == ExceptionKind.TRACKING_REFUSED
    assert fulfilment.release("ops@example.com", fulfilment.fulfillment_orders, read_at=later(8), now=later(8))
    app.save(fulfilment)
    assert updates(app)[0].command_id == first.command_id and len(updates(app)) == 2
    assert updates(app)[1].tracking.numbers == ("RM1",)
    replayed(app, fulfilment)


def test_given_a_despatch_before_the_order_lines_and_fulfillment_orders_when_they_come_then_it_is_decided(app):
    fulfilment = OrderFulfilment(ORDER)
    fulfilment.record_despatch(despatch("DN-1", *EVERYTHING), now=later(1))
    assert fulfilment.pending is None and fulfilment.undecided == ["DN-1"]
    fulfilment.record_lines(order_lines(sales_order_lines()), now=later(2))
    assert fulfilment.pending is None
    fulfilment.record_fulfillment_orders(whole_order_open(), read_at=later(3), now=later(3))
    assert fulfilment.pending is not None and fulfilment.pending.despatch_id == "DN-1"
    # a read while the create is in flight is not taken (it may or may not include it)
    assert not fulfilment.record_fulfillment_orders(whole_order_open(), read_at=later(4), now=later(4))
    app.save(fulfilment)
    replayed(app, fulfilment)


def test_given_a_despatch_of_another_order_when_recorded_then_refused_and_nothing_changes(app):
    fulfilment = opened(app)
    with pytest.raises(ValueError, match="not 5001"):
        fulfilment.record_despatch(despatch("DN-1", ("MUG", 1), order=9999), now=later(1))
    assert fulfilment.despatches == {}


def test_given_a_tracking_update_and_a_create_in_flight_together_when_answered_then_each_keeps_its_own(app):
    fulfilment = opened(app)
    fulfilment.record_despatch(despatch("DN-1", ("MUG", 2), parcels=(parcel(1, tracking=""),)), now=later(1))
    created(fulfilment, app, "gid://shopify/Fulfillment/1")
    fulfilment.record_despatch(despatch("DN-2", ("TEE", 1), parcels=(parcel(1, tracking="RM2"),)), now=later(6))
    fulfilment.record_despatch(despatch("DN-1", ("MUG", 2), parcels=(parcel(1, tracking="RM1"),), version=2),
                               now=later(7))
    update, create = fulfilment.pending_tracking, fulfilment.pending
    assert update.fulfilment_id == "gid://shopify/Fulfillment/1" and create.despatch_id == "DN-2"
    assert created(fulfilment, app, "gid://shopify/Fulfillment/2", minutes=8)
    assert fulfilment.record_outcome(TrackingUpdatedByShopify(ORDER, update.command_id, update.fulfilment_id, later(9)),
                                     now=later(9))
    # the same tracking again in a newer version: nothing to tell Shopify
    fulfilment.record_despatch(despatch("DN-1", ("MUG", 2), parcels=(parcel(1, tracking="RM1"),), version=3),
                               now=later(10))
    app.save(fulfilment)
    assert fulfilment.pending_tracking is None and len(updates(app)) == 1
    assert fulfilment.tracking_sent == {"DN-1": TrackingInfo("Royal Mail", ("RM1",)),
                                        "DN-2": TrackingInfo("Royal Mail", ("RM2",))}
    replayed(app, fulfilment)


def test_given_a_batch_of_facts_when_handled_then_one_command_and_a_redelivered_batch_changes_nothing(app):
    note = despatch("DN-1", *EVERYTHING)
    batch = [note, OrderLinesStated(ORDER, order_lines(sales_order_lines()), T0),
             FulfillmentOrdersStated(ORDER, whole_order_open(), read_at=T0), note, note]
    first = app.handle(batch, now=later(1), policy=POLICY)
    assert (first.applied, first.ignored, first.saved) == (3, 2, 1)
    again = app.handle(batch, now=later(2), policy=POLICY)
    assert (again.applied, again.saved) == (0, 0)
    [command] = creates(app)
    outcome = FulfilmentCreatedByShopify(ORDER, command.command_id, "gid://shopify/Fulfillment/1", later(3))
    answered = app.handle([outcome, outcome,
                           FulfilmentCreatedByShopify(7777, command.command_id, "gid://shopify/Fulfillment/2", later(3)),
                           FulfilmentReleaseRequested(7777, "ops@example.com", (), later(3)),
                           FulfilmentReleaseRequested(ORDER, "ops@example.com", whole_order_open(), later(3))],
                          now=later(3), policy=POLICY)
    assert (answered.applied, answered.outcomes_without_order, answered.refused_releases) == (1, [7777], [7777, ORDER])
    fulfilment = app.find_fulfilment(ORDER)
    assert fulfilment.fully_fulfilled and fulfilment.fulfilment_ids == {"DN-1": "gid://shopify/Fulfillment/1"}
    assert app.find_fulfilment(7777) is None


def test_given_a_release_while_a_create_is_in_flight_then_its_read_is_not_taken_and_the_create_is_counted_once(app):
    # issue 10 review: release() took the fresh read even while a create was in flight; the read
    # (made after Shopify took the create) already lacked its units, and the create's answer then
    # took them off a second time, so the next despatch found nothing left
    fulfilment = opened(app)
    fulfilment.record_despatch(despatch("DN-1", ("TEE", 1), parcels=(parcel(1, tracking=""),)), now=later(1))
    created(fulfilment, app, "gid://shopify/Fulfillment/1")
    fulfilment.record_despatch(despatch("DN-2", ("MUG", 1), parcels=(parcel(1, tracking="RM2"),)), now=later(6))
    fulfilment.record_despatch(despatch("DN-1", ("TEE", 1), parcels=(parcel(1, tracking="RM1"),), version=2),
                               now=later(7))
    update, create = fulfilment.pending_tracking, fulfilment.pending
    assert create.despatch_id == "DN-2"
    assert fulfilment.record_outcome(TrackingUpdateRefusedByShopify(ORDER, update.command_id, ("try again",), later(8)),
                                     now=later(8))
    # Shopify has made DN-2's fulfilment already (its answer is on its way): the read shows it
    shopify_now = (fulfillment_order(1, (MUG_LINE, 1), (TEE_LINE, 0), (SET_LINE, 2), status="IN_PROGRESS"),)
    assert fulfilment.release("ops@example.com", shopify_now, read_at=later(9), now=later(9))
    assert created(fulfilment, app, "gid://shopify/Fulfillment/2", minutes=10)
    fulfilment.record_despatch(despatch("DN-3", ("MUG", 1), parcels=(parcel(1, tracking="RM3"),)), now=later(11))
    app.save(fulfilment)
    assert fulfilment.exception is None
    assert creates(app)[-1].despatch_id == "DN-3" and creates(app)[-1].line_quantities == (LineQuantity(MUG_LINE, 1),)
    replayed(app, fulfilment)


def settled(app) -> list[OrderFulfilment.DespatchSettled]:
    return [e for e in app.events.get(OrderFulfilment.create_id(ORDER)) if isinstance(e, OrderFulfilment.DespatchSettled)]


def test_given_a_despatch_of_a_sku_not_on_the_order_when_settled_then_the_next_despatch_is_fulfilled(app):
    # issue 10 review: a corrected note (version 2) keeps the first version's lines, so a release
    # raised the same exception again and every later despatch of the order waited behind it
    fulfilment = opened(app)
    fulfilment.record_despatch(despatch("DN-1", ("MUG", 2), ("LAMP", 1)), now=later(1))
    assert fulfilment.exception.kind == ExceptionKind.SKU_NOT_ON_ORDER
    fulfilment.record_despatch(despatch("DN-2", ("TEE", 1), parcels=(parcel(1, tracking="RM2"),)), now=later(2))
    assert fulfilment.release("ops@example.com", whole_order_open(), read_at=later(3), now=later(3), settle=True)
    app.save(fulfilment)
    [event] = settled(app)
    assert event.despatch_id == "DN-1"
    assert event.reason == "settled by ops@example.com: despatched SKUs no line of the order holds: LAMP"
    assert fulfilment.exception is None and fulfilment.settled == ["DN-1"] and fulfilment.undecided == ["DN-2"]
    [command] = creates(app)
    assert command.despatch_id == "DN-2" and command.line_quantities == (LineQuantity(TEE_LINE, 1),)
    assert command.covers == ("DN-2",) and command.tracking.numbers == ("RM2",)
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    assert fulfilment.undecided == [] and fulfilment.fulfilment_ids == {"DN-2": "gid://shopify/Fulfillment/1"}
    replayed(app, fulfilment)


def test_given_a_line_fulfilled_by_hand_in_shopify_when_released_it_is_raised_again_and_settled_the_next_is_fulfilled(app):
    # issue 10 review: the merchant fulfilled the mugs by hand; the despatch of the mugs can never
    # be allocated (nothing left), and a release raised it again
    by_hand = (fulfillment_order(1, (MUG_LINE, 0), (TEE_LINE, 1), (SET_LINE, 2), status="IN_PROGRESS"),)
    fulfilment = opened(app, by_hand)
    fulfilment.record_despatch(despatch("DN-1", ("MUG", 2)), now=later(1))
    assert fulfilment.exception.kind == ExceptionKind.CANNOT_ALLOCATE
    assert fulfilment.exception.reason.startswith(f"line {MUG_LINE}: 2 to fulfil, 0 fulfillable: nothing left to fulfil")
    assert fulfilment.release("ops@example.com", by_hand, read_at=later(2), now=later(2))
    assert fulfilment.exception.kind == ExceptionKind.CANNOT_ALLOCATE and fulfilment.exception.despatch_id == "DN-1"
    fulfilment.record_despatch(despatch("DN-2", ("TEE", 1), parcels=(parcel(1, tracking="RM2"),)), now=later(3))
    assert fulfilment.release("ops@example.com", by_hand, read_at=later(4), now=later(4), settle=True)
    app.save(fulfilment)
    [event] = settled(app)
    assert event.despatch_id == "DN-1" and event.reason.startswith(f"settled by ops@example.com: line {MUG_LINE}: 2 to fulfil")
    # the settled mugs are not counted: the tee's despatch is not taken for them
    [command] = creates(app)
    assert command.despatch_id == "DN-2" and command.line_quantities == (LineQuantity(TEE_LINE, 1),)
    assert created(fulfilment, app, "gid://shopify/Fulfillment/1")
    assert fulfilment.exception is None and fulfilment.fulfilled == {str(TEE_LINE): 1}
    replayed(app, fulfilment)


def test_given_a_tracking_update_refused_when_released_with_settle_then_the_tracking_is_sent_again_and_nothing_settled(app):
    fulfilment, _ = tracking_refused(app, "try again")
    assert fulfilment.release("ops@example.com", fulfilment.fulfillment_orders, read_at=later(8), now=later(8),
                              settle=True)
    app.save(fulfilment)
    assert settled(app) == [] and fulfilment.settled == [] and fulfilment.exception is None
    assert len(updates(app)) == 2 and updates(app)[1].tracking.numbers == ("RM1",)
    assert fulfilment.fulfilment_ids == {"DN-1": "gid://shopify/Fulfillment/1"}
    replayed(app, fulfilment)


def test_given_a_settle_release_in_a_batch_when_handled_then_the_despatch_is_settled_and_counted_as_decided(app):
    opened(app)
    note = despatch("DN-1", ("LAMP", 1))
    app.handle([note], now=later(1), policy=POLICY)
    result = app.handle([FulfilmentReleaseRequested(ORDER, "ops@example.com", whole_order_open(), later(2), settle=True)],
                        now=later(2), policy=POLICY)
    assert result.released == [ORDER] and result.decided == {"Released": 1, "DespatchSettled": 1}
    assert app.find_fulfilment(ORDER).settled == ["DN-1"]
