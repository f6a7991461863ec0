"""Order snapshots (issue 8): an Order in each of its states comes back from its snapshot exactly
as a replay of its events gives it (types included: its state is an OrderState, not a str), a
load reads only the events after the latest snapshot, and a snapshot that cannot be taken never
fails the batch it follows.

Every state any test of this flow reaches is also checked by tests/orders/conftest.py; here the
states are reached on purpose, through the application and its transcoder, and a test fails
when Order gets a state none of these scenarios reaches."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import ClassVar

import pytest
from eventsourcing.domain import Snapshot

from domain.orders.application import OrderApplication
from domain.orders.domainmodel import Order, OrderState
from domain.orders.values import (
    Address,
    Refund,
    RefundDelivery,
    ReleaseRequested,
    SalesOrderAmendedByPrima,
    SalesOrderCancelledByPrima,
    SalesOrderCreatedByPrima,
    SalesOrderParkedByGateway,
    SalesOrderRejectedByPrima,
)
from domain.shared.snapshots import AggregateSnapshot, same_state, state_of
from services.platform.settings import Settings
from tests.orders.builders import (
    ITEMS,
    NOW,
    D,
    delivery,
    items,
    uk_vat_inclusive,
    us_tax_exclusive,
)
from tests.snapshot_check import round_trip

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class SnapshotEveryEvent(OrderApplication):
    snapshotting_intervals: ClassVar[dict[type, int]] = {Order: 1}


@pytest.fixture
def app():
    app = SnapshotEveryEvent(env=POPO)
    yield app
    app.close()


def command_of(app, order_id):
    return app.find_order(order_id).command


def created(app, order_id):
    return SalesOrderCreatedByPrima(command_id=command_of(app, order_id).command_id, shopify_order_id=order_id,
                                    sales_order_number=f"SO-{order_id}", status="open", occurred_at=NOW)


def parked(app, order_id):
    return SalesOrderParkedByGateway(command_id=command_of(app, order_id).command_id, shopify_order_id=order_id,
                                     attempts=5, reason="HTTP 500", occurred_at=NOW)


def rejected(app, order_id):
    return SalesOrderRejectedByPrima(command_id=command_of(app, order_id).command_id, shopify_order_id=order_id,
                                     status_code=422, code="unknown_item", reason="item unknown", occurred_at=NOW)


def release(order_id):
    return ReleaseRequested(shopify_order_id=order_id, released_by="ops", requested_at=NOW)


def later(snapshot, minutes=1, **changes):
    return replace(snapshot, updated_at=snapshot.updated_at + timedelta(minutes=minutes), **changes)


# Scenarios: each drives one order, through the application, along a path of its life.
def sent(app):
    app.handle([delivery(us_tax_exclusive(2001))], ITEMS, NOW)


def awaiting_payment_then_paid(app):
    authorized = uk_vat_inclusive(1001, financial_status="authorized")
    app.handle([delivery(authorized, "orders/create")], ITEMS, NOW)
    app.handle([delivery(later(authorized, financial_status="paid"), "orders/updated")], ITEMS, NOW)


def quarantined_unmapped_then_released(app):
    app.handle([delivery(uk_vat_inclusive(1002))], items("TSHIRT-BLK-M"), NOW)
    app.handle([release(1002)], ITEMS, NOW)


def quarantined_totals(app):
    app.handle([delivery(us_tax_exclusive(2002, total_price=D("1.00")))], ITEMS, NOW)


def in_prima(app):
    app.handle([delivery(us_tax_exclusive(2003))], ITEMS, NOW)
    app.handle([created(app, 2003)], ITEMS, NOW)


def rejected_then_released(app):
    app.handle([delivery(us_tax_exclusive(2004))], ITEMS, NOW)
    app.handle([rejected(app, 2004)], ITEMS, NOW)
    app.handle([release(2004)], ITEMS, NOW)


def parked_then_updated_then_created(app):
    first = us_tax_exclusive(2005)
    app.handle([delivery(first)], ITEMS, NOW)
    app.handle([parked(app, 2005)], ITEMS, NOW)
    app.handle([delivery(later(first), "orders/updated")], ITEMS, NOW)
    app.handle([created(app, 2005)], ITEMS, NOW)


def created_as(app, order_id, status):
    return replace(created(app, order_id), status=status)


def prima_answers_the_change(app, order_id, outcome):
    change = app.find_order(order_id).change
    return outcome(command_id=change.command_id, shopify_order_id=order_id, sales_order_number=f"SO-{order_id}",
                   status="cancelled" if outcome is SalesOrderCancelledByPrima else "open", occurred_at=NOW)


def refunded_before_the_order_came(app):
    refund = Refund(refund_id=91, shopify_order_id=2008, created_at=NOW, note="damaged")
    app.handle([RefundDelivery(webhook_id="r-1", topic="refunds/create", received_at=NOW, refund=refund)], ITEMS, NOW)
    app.handle([delivery(replace(us_tax_exclusive(2008), refunds=(refund,)))], ITEMS, NOW)
    app.handle([created(app, 2008)], ITEMS, NOW)


def cancelled_before_prima(app):
    app.handle([delivery(replace(us_tax_exclusive(2009), cancelled_at=NOW, cancel_reason="customer"),
                        "orders/cancelled")],
               ITEMS, NOW)


def cancelling_then_cancelled(app):
    first = us_tax_exclusive(2010)
    app.handle([delivery(first)], ITEMS, NOW)
    app.handle([created_as(app, 2010, "open")], ITEMS, NOW)
    app.handle([delivery(later(first, cancelled_at=NOW, cancel_reason="customer"), "orders/cancelled")], ITEMS, NOW)
    app.handle([prima_answers_the_change(app, 2010, SalesOrderCancelledByPrima)], ITEMS, NOW)


def amending_then_amended(app):
    first = us_tax_exclusive(2011)
    app.handle([delivery(first)], ITEMS, NOW)
    app.handle([created_as(app, 2011, "open")], ITEMS, NOW)
    app.handle([delivery(later(first, shipping_address=Address(name="A. Customer", city="Albany")),
                         "orders/updated")], ITEMS, NOW)
    app.handle([prima_answers_the_change(app, 2011, SalesOrderAmendedByPrima)], ITEMS, NOW)


def changed_after_the_cutoff(app):
    first = us_tax_exclusive(2012)
    app.handle([delivery(first)], ITEMS, NOW)
    app.handle([created_as(app, 2012, "released_to_warehouse")], ITEMS, NOW)
    app.handle([delivery(later(first, shipping_address=Address(name="A. Customer", city="Albany")),
                         "orders/updated")], ITEMS, NOW)


SCENARIOS = [sent, awaiting_payment_then_paid, quarantined_unmapped_then_released, quarantined_totals, in_prima,
             rejected_then_released, parked_then_updated_then_created,
             # the order's life after its sales order (issue 9)
             refunded_before_the_order_came, cancelled_before_prima, cancelling_then_cancelled,
             amending_then_amended, changed_after_the_cutoff]


def every_version(app):
    """Each Order in the store at each of its versions, as a replay of its events gives it."""
    ids = {n.originator_id for n in app.recorder.select_notifications(1, 10_000)}
    for aggregate_id in sorted(ids):
        latest = app.repository.get(aggregate_id)
        for version in range(1, latest.version + 1):
            yield app.repository.get(aggregate_id, version=version)


def test_an_order_at_every_version_of_every_scenario_survives_a_snapshot_through_the_transcoder(app):
    for scenario in SCENARIOS:
        scenario(app)
    checked = 0
    for order in every_version(app):
        assert round_trip(order) == [], f"order {order.shopify_order_id} v{order.version} ({order.state})"
        checked += 1
    assert checked >= 25


def test_the_scenarios_reach_every_state_of_an_order(app):
    """A state none of these scenarios reaches is checked only where some other test of the
    flow reaches it (tests/orders/conftest.py): add a scenario here when Order gets a state."""
    for scenario in SCENARIOS:
        scenario(app)
    reached = {order.state for order in every_version(app)}
    missing = set(OrderState) - reached
    assert not missing, f"no scenario here reaches {sorted(missing)}: add one to SCENARIOS"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_an_order_loaded_from_its_snapshot_is_the_order_its_events_replay(app, scenario):
    scenario(app)
    [aggregate_id] = {n.originator_id for n in app.recorder.select_notifications(1, 1000)}
    before = app.load_stats.from_snapshot

    loaded = app.load_many([aggregate_id])[aggregate_id]

    assert app.load_stats.from_snapshot == before + 1  # taken at its last save, read by the load
    assert same_state(state_of(app.repository.get(aggregate_id)), state_of(loaded)) == []
    assert type(loaded.state) is OrderState


def test_a_load_starts_from_the_latest_snapshot_and_reads_only_the_events_after_it():
    """The defect: a load replayed every event of the aggregate, however many."""
    app = OrderApplication(env=POPO)  # its own interval: a snapshot every 20 events
    first = us_tax_exclusive(3001)
    app.handle([delivery(first)], ITEMS, NOW)  # v1 received, v2 sales order requested
    for n in range(1, 44):  # v3..v45, a batch each
        app.handle([delivery(later(first, minutes=n), "orders/updated")], ITEMS, NOW)
    aggregate_id = Order.create_id(3001)
    assert app.repository.get(aggregate_id).version == 45
    assert [s.originator_version for s in app.snapshots.get(aggregate_id)] == [20, 40]
    before = (app.load_stats.events, app.load_stats.from_snapshot)

    loaded = app.load_many([aggregate_id])[aggregate_id]

    assert (app.load_stats.events - before[0], app.load_stats.from_snapshot - before[1]) == (5, 1)  # v41..v45
    assert same_state(state_of(app.repository.get(aggregate_id)), state_of(loaded)) == []
    assert app.find_order(3001).version == 45


def test_the_order_snapshot_interval_is_the_setting():
    env = Settings(orders_snapshot_interval=3).eventsourcing_env()
    app = OrderApplication(env={**env, **POPO})
    first = us_tax_exclusive(3002)
    app.handle([delivery(first)], ITEMS, NOW)
    for n in range(1, 8):  # v3..v9
        app.handle([delivery(later(first, minutes=n), "orders/updated")], ITEMS, NOW)

    snapshots = [s.originator_version for s in app.snapshots.get(Order.create_id(3002))]

    assert app.snapshot_intervals == {Order: 3} and snapshots == [3, 6, 9]


def test_a_parked_order_from_its_snapshot_keeps_its_one_command_when_the_next_webhook_comes(app):
    """The eventsourcing library's own Snapshot brings an OrderState back as a plain str: the
    order would no longer be `parked` (a comparison by identity), and the next webhook would
    issue a second sales-order command under a new key (issue 8, defect 1, back again)."""
    first = us_tax_exclusive(2006)
    app.handle([delivery(first)], ITEMS, NOW)
    app.handle([parked(app, 2006)], ITEMS, NOW)
    order = app.find_order(2006)
    assert order.parked and app.load_stats.from_snapshot >= 1
    assert any("state" in d for d in round_trip(order, Snapshot))  # the library's snapshot loses it

    app.handle([delivery(later(first), "orders/updated")], ITEMS, NOW)

    again = app.find_order(2006)
    assert (again.commands_issued, again.command, again.state) == (1, order.command, OrderState.FAILED)


def test_a_snapshot_taken_by_another_version_of_the_order_class_is_passed_over():
    """A snapshot records a fingerprint of the class that took it: after a change of Order (an
    attribute added, say), an older snapshot would lack what the new class expects."""
    app = OrderApplication(env=POPO)
    sent(app)  # two events: below the interval, no snapshot of its own
    aggregate_id = Order.create_id(2001)
    taken = AggregateSnapshot.take(app.repository.get(aggregate_id))
    app.snapshots.put([replace(taken, state={**taken.state, "fingerprint": "another version"})])
    before = (app.load_stats.refused, app.load_stats.from_snapshot)

    loaded = app.load_many([aggregate_id])[aggregate_id]

    assert (app.load_stats.refused - before[0], app.load_stats.from_snapshot - before[1]) == (1, 0)
    assert same_state(state_of(app.repository.get(aggregate_id)), state_of(loaded)) == []


class Unencodable(AggregateSnapshot):
    """A snapshot the transcoder cannot encode (an attribute of a type it does not know)."""

    @classmethod
    def take(cls, aggregate):
        taken = super().take(aggregate)
        taken.state["attributes"]["_dict_"].append(["pending", object()])
        return taken


class Lossy(AggregateSnapshot):
    """A snapshot that encodes but does not come back as it was (tuples as lists, say)."""

    @classmethod
    def take(cls, aggregate):
        return Snapshot.take(aggregate)


@pytest.mark.parametrize("snapshot_class", [Unencodable, Lossy])
def test_a_snapshot_that_cannot_be_taken_exactly_is_skipped_and_never_fails_the_batch(snapshot_class, caplog):
    app = type("App", (SnapshotEveryEvent,), {"snapshot_class": snapshot_class})(env=POPO)
    caplog.set_level(logging.WARNING, logger="shopify_prima.snapshots")

    result = app.handle([delivery(us_tax_exclusive(2007))], ITEMS, NOW)
    app.handle([parked(app, 2007)], ITEMS, NOW)

    assert result.saved == 1  # the batch is saved, its events are in the notification log
    assert [n.topic.rsplit(".", 1)[-1] for n in app.recorder.select_notifications(1, 10)] == [
        "OrderReceived", "SalesOrderRequested", "SalesOrderParked"]
    assert (app.snapshot_stats.taken, app.snapshot_stats.failed) == (0, 2)
    assert list(app.snapshots.get(Order.create_id(2007))) == []  # nothing stored that would not come back
    assert app.find_order(2007).parked  # replayed from its events
    assert len([r for r in caplog.records if "snapshot not taken" in r.getMessage()]) == 1  # said once
