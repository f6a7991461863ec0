"""Given-when-then on the Order aggregate and the order application: the decisions, with no I/O.

The aggregate takes the domain's own values (domain/orders/values.py: an OrderDelivery with its
OrderSnapshot, Prima's outcomes, an operator's release) and records events that carry them; the
application applies a batch of those facts and saves every changed Order at once (here on the
eventsourcing library's in-memory persistence)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from uuid import uuid4, uuid5

from contracts.shopify.orders import ShopifyOrder
from domain.catalog.items import Component, ItemType
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import DeliveryOutcome, Order, OrderState
from domain.orders.values import (
    OrderSnapshot,
    ReleaseRequested,
    SalesOrderCreatedByPrima,
    SalesOrderParkedByGateway,
    SalesOrderRejectedByPrima,
    SalesOrderRequest,
    SalesOrderShipping,
    SalesOrderTotals,
)
from services.orders.translate import snapshot
from tests.orders.builders import (
    ITEMS,
    NOW,
    D,
    delivery,
    item,
    items,
    transaction,
    uk_vat_inclusive,
    us_tax_exclusive,
    without_sku,
)

# Shopify's own orders/create test notification (copied from ../shared/reference/shopify-samples)
SAMPLE = Path(__file__).resolve().parents[2] / "fixtures/shopify/orders-create-test-notification.json"


def events_of(order: Order) -> list[str]:
    return [type(e).__name__ for e in order.collect_events()]


def created(order: Order, number: str = "SO-000001") -> SalesOrderCreatedByPrima:
    assert order.command is not None
    return SalesOrderCreatedByPrima(command_id=order.command.command_id, shopify_order_id=order.shopify_order_id,
                                    sales_order_number=number, status="open", occurred_at=NOW)


def parked(order: Order) -> SalesOrderParkedByGateway:
    assert order.command is not None
    return SalesOrderParkedByGateway(command_id=order.command.command_id, shopify_order_id=order.shopify_order_id,
                                     attempts=5, reason="HTTP 500", occurred_at=NOW)


def rejected(order: Order) -> SalesOrderRejectedByPrima:
    assert order.command is not None
    return SalesOrderRejectedByPrima(command_id=order.command.command_id, shopify_order_id=order.shopify_order_id,
                                     status_code=422, code="unknown_item", reason="item ITM-X unknown",
                                     occurred_at=NOW)


# ------------------------------------------------------------------------------ payment


def test_paid_order_gives_one_sales_order_command():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    assert events_of(order) == ["OrderReceived", "SalesOrderRequested"]
    assert order.state is OrderState.SENT
    assert order.command is not None and order.command.sales_order.external_reference == "1001"
    assert order.command.shopify_order_id == 1001
    assert order.command.idempotency_key.endswith(str(order.command.command_id))
    assert order.command.command_id == uuid5(Order.create_id(1001), "create-sales-order/1")  # stable on replay


def test_unpaid_order_gives_no_sales_order():
    order = Order.receive(delivery(uk_vat_inclusive(financial_status="pending"), topic="orders/create"), ITEMS)
    assert events_of(order) == ["OrderReceived", "OrderAwaitingPayment"]
    assert order.state is OrderState.AWAITING_PAYMENT and order.command is None


def test_authorized_then_paid_gives_exactly_one_command():
    t0 = NOW - timedelta(minutes=5)
    order = Order.receive(delivery(uk_vat_inclusive(financial_status="authorized", updated_at=t0), "orders/create"),
                          ITEMS)
    assert events_of(order) == ["OrderReceived", "OrderAwaitingPayment"]
    assert order.apply_delivery(delivery(uk_vat_inclusive(updated_at=NOW)), ITEMS) is DeliveryOutcome.APPLIED
    assert events_of(order) == ["OrderUpdated", "SalesOrderRequested"]
    # a later update of the paid order does not send it again
    later = delivery(uk_vat_inclusive(updated_at=NOW + timedelta(minutes=1)), "orders/updated")
    assert order.apply_delivery(later, ITEMS) is DeliveryOutcome.APPLIED
    assert events_of(order) == ["OrderUpdated"]
    assert order.commands_issued == 1


def test_successful_capture_transaction_counts_as_paid():
    order = Order.receive(delivery(uk_vat_inclusive(
        financial_status="authorized", transactions=[transaction("capture", "success", D("58.00"))])), ITEMS)
    assert order.state is OrderState.SENT


def test_authorization_or_failed_capture_is_not_paid():
    order = Order.receive(delivery(uk_vat_inclusive(
        financial_status="authorized",
        transactions=[transaction("authorization", "success", D("58.00"), transaction_id=1),
                      transaction("capture", "failure", D("58.00"), transaction_id=2)])), ITEMS)
    assert order.state is OrderState.AWAITING_PAYMENT and order.command is None


# ------------------------------------------------------------------ duplicates and ordering


def test_duplicate_delivery_gives_no_second_command():
    first = delivery(uk_vat_inclusive(), webhook_id="wh-1")
    order = Order.receive(first, ITEMS)
    order.collect_events()
    assert order.apply_delivery(first, ITEMS) is DeliveryOutcome.DUPLICATE
    assert events_of(order) == []
    # the same order paid again under another webhook id: recorded, still one command
    assert order.apply_delivery(delivery(uk_vat_inclusive(), webhook_id="wh-2"), ITEMS) is DeliveryOutcome.APPLIED
    assert events_of(order) == ["OrderUpdated"]
    assert order.commands_issued == 1


def test_stale_update_is_ignored():
    order = Order.receive(delivery(uk_vat_inclusive(financial_status="pending", updated_at=NOW), "orders/create"),
                          ITEMS)
    order.collect_events()
    stale = delivery(uk_vat_inclusive(updated_at=NOW - timedelta(seconds=1)))
    assert order.apply_delivery(stale, ITEMS) is DeliveryOutcome.STALE
    assert events_of(order) == []
    assert order.state is OrderState.AWAITING_PAYMENT


# ------------------------------------------------------------------------------ SKU mapping


def test_unknown_sku_quarantines_the_whole_order():
    order = Order.receive(delivery(uk_vat_inclusive()), items("TSHIRT-BLK-M"))
    assert events_of(order) == ["OrderReceived", "OrderQuarantined"]
    assert order.state is OrderState.QUARANTINED
    assert order.quarantine is not None
    reason, detail, skus = order.quarantine
    assert (reason, skus) == ("unmapped_sku", ("MUG-WHT",))
    assert "MUG-WHT" in detail and "no Prima item" in detail
    assert order.command is None


def test_inactive_item_and_missing_sku_quarantine():
    catalogue = items(**{"MUG-WHT": item("MUG-WHT", active=False)})
    order = Order.receive(delivery(without_sku(uk_vat_inclusive(), 0)), catalogue)
    assert order.quarantine is not None
    _, detail, skus = order.quarantine
    assert skus == ("", "MUG-WHT")
    assert "a line without a SKU" in detail and "inactive" in detail


def test_service_item_is_not_sellable_and_quarantines():
    """domain/catalog/items.py: a service item has no stock to sell (the one is_sellable rule)."""
    catalogue = items(**{"MUG-WHT": item("MUG-WHT", item_type=ItemType.SERVICE)})
    order = Order.receive(delivery(uk_vat_inclusive()), catalogue)
    assert order.state is OrderState.QUARANTINED
    assert order.quarantine is not None and order.quarantine[2] == ("MUG-WHT",)
    assert "service" in order.quarantine[1]


def test_bundle_item_is_sellable():
    kit = replace(item("MUG-WHT", item_type=ItemType.BUNDLE), components=(Component("SOCKS-3PK", 2),))
    catalogue = items(**{"MUG-WHT": kit})
    assert Order.receive(delivery(uk_vat_inclusive()), catalogue).state is OrderState.SENT


def test_quarantined_order_is_released_once_mapped_without_rekeying():
    order = Order.receive(delivery(uk_vat_inclusive()), {})
    order.collect_events()
    assert order.release(ITEMS, released_by="ops", now=NOW)
    assert events_of(order) == ["OrderReleased", "SalesOrderRequested"]
    assert order.state is OrderState.SENT and order.quarantine is None


def test_quarantined_order_released_while_still_unmapped_stays_quarantined_once():
    order = Order.receive(delivery(uk_vat_inclusive()), items("TSHIRT-BLK-M"))
    order.collect_events()
    assert order.release(items("TSHIRT-BLK-M"), released_by="ops", now=NOW)
    assert events_of(order) == ["OrderReleased"]  # same reason, same detail: not quarantined twice
    assert order.state is OrderState.QUARANTINED


# ---------------------------------------------------------------- totals, to the cent


def test_uk_vat_inclusive_totals_exact_to_the_cent():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    assert order.command is not None
    so = order.command.sales_order
    assert [(line.sku, line.item_id, line.net_amount, line.discount_amount, line.tax_amount) for line in so.lines] == [
        ("TSHIRT-BLK-M", "ITM-TSHIRT-BLK-M", D("43.20"), D("4.80"), D("7.20")),
        ("MUG-WHT", "ITM-MUG-WHT", D("10.80"), D("1.20"), D("1.80")),
    ]
    assert so.shipping == SalesOrderShipping(description="Royal Mail", amount=D("5.00"), discount_amount=D("1.00"),
                                             tax_amount=D("0.67"))
    # VAT is inside the prices: the total is lines + shipping, tax shown but not added
    assert so.totals == SalesOrderTotals(lines_net=D("54.00"), shipping_net=D("4.00"), tax=D("9.67"), total=D("58.00"))
    assert [str(a) for a in (so.totals.lines_net, so.totals.tax, so.totals.total)] == ["54.00", "9.67", "58.00"]
    assert so.currency == "GBP" and so.taxes_included is True


def test_us_tax_exclusive_totals_exact_to_the_cent():
    order = Order.receive(delivery(us_tax_exclusive()), ITEMS)
    assert order.command is not None
    so = order.command.sales_order
    assert [(line.net_amount, line.tax_amount) for line in so.lines] == [(D("55.75"), D("4.95")), (D("10.20"), D("0.91"))]
    assert so.totals == SalesOrderTotals(lines_net=D("65.95"), shipping_net=D("5.95"), tax=D("6.39"), total=D("78.29"))
    assert str(so.totals.total) == "78.29"
    assert us_tax_exclusive().total_price.amount == D("78.29")  # what Shopify states


def test_total_that_does_not_add_up_is_an_exception_not_a_command():
    order = Order.receive(delivery(us_tax_exclusive(total_price=D("78.30"))), ITEMS)  # Shopify says one cent more
    assert events_of(order) == ["OrderReceived", "OrderQuarantined"]
    assert order.state is OrderState.QUARANTINED and order.command is None
    assert order.quarantine is not None
    reason, detail, skus = order.quarantine
    assert reason == "totals_mismatch" and skus == ()
    assert "78.29" in detail and "78.30" in detail


# ------------------------------------------------------------------------ Prima's outcomes


def test_outcome_created_moves_order_into_prima_once():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    order.collect_events()
    outcome = created(order)
    assert order.record_outcome(outcome)
    assert not order.record_outcome(outcome)
    assert events_of(order) == ["SalesOrderCreated"]
    assert order.state is OrderState.IN_PRIMA and order.sales_order_number == "SO-000001"


def test_parked_then_released_resends_the_same_command():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    command = order.command
    assert order.record_outcome(parked(order)) and order.state is OrderState.FAILED
    assert order.failure == ("parked", "HTTP 500")
    assert not order.record_outcome(parked(order))  # a second failure of the same command adds nothing
    order.collect_events()
    assert order.release(ITEMS, released_by="ops", now=NOW + timedelta(hours=1))
    assert events_of(order) == ["OrderReleased", "SalesOrderRequested"]
    # same command id, same idempotency key, same issue time: Prima answers with what it made, if it did
    assert order.command == command and order.state is OrderState.SENT and order.failure is None


def test_created_after_parked_still_moves_the_order_into_prima():
    """Prima may have created the sales order before the gateway gave up: its answer counts."""
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    order.record_outcome(parked(order))
    order.collect_events()
    assert order.record_outcome(created(order))
    assert events_of(order) == ["SalesOrderCreated"]
    assert order.state is OrderState.IN_PRIMA and order.failure is None


def test_a_parked_order_keeps_its_one_command_when_the_next_webhook_comes():
    """Defect 1: every attempt timed out (Prima may well have created the sales order), the
    command was parked. A routine orders/updated must not issue create-sales-order/2 with a new
    key: the parked command stands, and is re-driven with its own key."""
    order = Order.receive(delivery(uk_vat_inclusive(updated_at=NOW)), ITEMS)
    command = order.command
    assert order.record_outcome(parked(order))
    order.collect_events()

    later = uk_vat_inclusive(updated_at=NOW + timedelta(minutes=5))
    assert order.apply_delivery(delivery(later, topic="orders/updated"), ITEMS) is DeliveryOutcome.APPLIED

    assert events_of(order) == ["OrderUpdated"]  # no SalesOrderRequested
    assert order.command == command and order.commands_issued == 1 and order.command_issued
    assert order.state is OrderState.FAILED and order.failure == ("parked", "HTTP 500")
    # the re-driven command is answered with Prima's sales order: the order is in Prima
    assert order.record_outcome(created(order))
    assert order.state is OrderState.IN_PRIMA and order.commands_issued == 1


def test_a_rejection_of_a_parked_command_lets_the_order_decide_again():
    """Only a definite "no" from Prima ends a parked command: the re-drive was refused (a 422),
    and the next webhook decides anew under a new key."""
    order = Order.receive(delivery(us_tax_exclusive(updated_at=NOW)), ITEMS)
    first = order.command
    order.record_outcome(parked(order))
    assert not order.record_outcome(parked(order))  # parked again (a re-drive that failed): nothing new
    order.collect_events()

    assert order.record_outcome(rejected(order))
    assert events_of(order) == ["SalesOrderRejected"]
    assert order.failure == ("rejected", "unknown_item: item ITM-X unknown") and not order.command_issued
    order.apply_delivery(delivery(us_tax_exclusive(updated_at=NOW + timedelta(minutes=5))), ITEMS)
    assert order.command is not None and first is not None and order.command.command_id != first.command_id
    assert order.state is OrderState.SENT and order.commands_issued == 2


def test_the_automatic_release_only_releases_an_order_whose_lines_all_map_now():
    order = Order.receive(delivery(uk_vat_inclusive()), items("TSHIRT-BLK-M"))
    order.collect_events()
    # the item is still missing: nothing recorded (a sweep asking every few seconds adds no events)
    assert not order.release(items("TSHIRT-BLK-M"), released_by="auto", now=NOW, only_if_mapped=True)
    assert events_of(order) == []
    assert order.release(ITEMS, released_by="auto", now=NOW, only_if_mapped=True)
    assert events_of(order) == ["OrderReleased", "SalesOrderRequested"] and order.state is OrderState.SENT


def test_the_automatic_release_leaves_other_quarantines_and_failures_alone():
    mismatch = Order.receive(delivery(uk_vat_inclusive(total_price=D("1.00"))), ITEMS)
    assert mismatch.state is OrderState.QUARANTINED
    assert not mismatch.release(ITEMS, released_by="auto", now=NOW, only_if_mapped=True)
    failed = Order.receive(delivery(us_tax_exclusive()), ITEMS)
    failed.record_outcome(rejected(failed))
    assert not failed.release(ITEMS, released_by="auto", now=NOW, only_if_mapped=True)


def test_rejected_then_released_is_decided_again_under_a_new_key():
    order = Order.receive(delivery(us_tax_exclusive()), ITEMS)
    assert order.command is not None
    first = order.command
    assert order.record_outcome(rejected(order)) and order.state is OrderState.FAILED
    assert order.failure == ("rejected", "unknown_item: item ITM-X unknown")
    order.collect_events()
    assert order.release(ITEMS, released_by="ops", now=NOW)
    assert events_of(order) == ["OrderReleased", "SalesOrderRequested"]
    assert order.command is not None
    assert order.command.command_id != first.command_id
    assert order.command.idempotency_key != first.idempotency_key  # a rejected command is decided anew
    assert order.command.sales_order == first.sales_order
    assert order.commands_issued == 2


def test_outcome_for_another_command_is_ignored():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    stray = SalesOrderCreatedByPrima(command_id=uuid4(), shopify_order_id=1001, sales_order_number="SO-9",
                                     status="open", occurred_at=NOW)
    assert not order.record_outcome(stray)
    assert order.state is OrderState.SENT


def test_an_order_in_prima_or_sent_cannot_be_released():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    assert not order.release(ITEMS, released_by="ops", now=NOW)
    order.record_outcome(created(order))
    order.collect_events()
    assert not order.release(ITEMS, released_by="ops", now=NOW)
    assert events_of(order) == []


# -------------------------------------------------------------------- Shopify's own sample


def test_shopify_sample_body_parses_and_a_voided_order_is_not_sent():
    body = json.loads(SAMPLE.read_text())
    parsed = ShopifyOrder.from_webhook(body)
    assert parsed.total_price.amount == D("403.00") and parsed.currency == "USD"
    assert [li.sku for li in parsed.line_items] == [li["sku"] for li in body["line_items"]]
    assert parsed.line_items[0].unit_price.amount == D("199.00")
    order = Order.receive(delivery(snapshot(parsed), "orders/create"), ITEMS)
    # voided and cancelled (cancel_reason "customer") before any capture: it never reaches Prima
    assert order.state is OrderState.CANCELLED and order.command is None
    assert events_of(order) == ["OrderReceived", "OrderCancelledBeforePrima"]


# ------------------------------------------------- the application: a batch, saved at once


def recorded(app: OrderApplication, shopify_order_id: int) -> list[str]:
    """The Order's events in the notification log (the outbox), in order."""
    aggregate_id = Order.create_id(shopify_order_id)
    return [n.topic.rsplit(".", 1)[-1] for n in app.recorder.select_notifications(start=1, limit=1000)
            if n.originator_id == aggregate_id]


def test_a_stored_and_reloaded_order_holds_domain_values_not_dicts():
    app = OrderApplication()
    app.handle([delivery(uk_vat_inclusive())], ITEMS, NOW)

    reloaded = app.find_order(1001)

    assert reloaded is not None and reloaded.state is OrderState.SENT
    assert isinstance(reloaded.snapshot, OrderSnapshot) and reloaded.snapshot == uk_vat_inclusive()
    assert isinstance(reloaded.command, SalesOrderRequest)
    assert reloaded.command.sales_order.totals.total == D("58.00")
    received_event, requested_event = app.events.get(Order.create_id(1001))
    assert isinstance(received_event.order, OrderSnapshot)
    assert isinstance(requested_event.command, SalesOrderRequest)
    # stored as the domain's own types (domain/shared/transcoding.py), never a wire model's dump
    stored = app.recorder.select_events(Order.create_id(1001))
    assert b"domain.orders.values:OrderSnapshot" in stored[0].state
    assert b"domain.orders.values:SalesOrderRequest" in stored[1].state
    assert b"contracts." not in stored[0].state + stored[1].state


def test_a_batch_applies_each_orders_facts_in_order_and_saves_them_together():
    app = OrderApplication()
    authorized = uk_vat_inclusive(1001, financial_status="authorized", updated_at=NOW - timedelta(minutes=1))
    result = app.handle([
        delivery(authorized, "orders/create", webhook_id="a-1"),
        delivery(us_tax_exclusive(2001), webhook_id="b-1"),
        delivery(uk_vat_inclusive(1001), webhook_id="a-2"),
        delivery(uk_vat_inclusive(1001), webhook_id="a-2"),  # the same delivery twice
    ], ITEMS, NOW)

    assert result.saved == 2 and result.deliveries == {"applied": 3, "duplicate": 1}
    assert recorded(app, 1001) == ["OrderReceived", "OrderAwaitingPayment", "OrderUpdated", "SalesOrderRequested"]
    assert recorded(app, 2001) == ["OrderReceived", "SalesOrderRequested"]

    # the batch redelivered (offsets not committed before a crash): nothing changes
    again = app.handle([delivery(us_tax_exclusive(2001), webhook_id="b-1")], ITEMS, NOW)
    assert again.saved == 0 and again.deliveries == {"duplicate": 1}
    assert recorded(app, 2001) == ["OrderReceived", "SalesOrderRequested"]


def test_outcomes_and_releases_through_the_application():
    app = OrderApplication()
    app.handle([delivery(uk_vat_inclusive(1001)), delivery(us_tax_exclusive(2001), received_at=NOW)], ITEMS, NOW)
    first, second = app.find_order(1001), app.find_order(2001)
    assert first is not None and second is not None
    later = NOW + timedelta(seconds=3)

    result = app.handle([
        replace(created(first), occurred_at=later),
        parked(second),
        ReleaseRequested(shopify_order_id=2001, released_by="ops", requested_at=later),
        ReleaseRequested(shopify_order_id=1001, released_by="ops", requested_at=later),  # in Prima: refused
        ReleaseRequested(shopify_order_id=4040, released_by="ops", requested_at=later),  # no such order
        SalesOrderCreatedByPrima(command_id=uuid4(), shopify_order_id=4040, sales_order_number="SO-X",
                                 status="open", occurred_at=later),  # about no order: ignored
    ], ITEMS, later)

    assert result.outcomes_recorded == 2
    assert result.releases == [(2001, "sent")] and result.refused_releases == [1001, 4040]
    assert result.created_after == [3.0]  # seconds from the first webhook to the sales order
    assert recorded(app, 1001) == ["OrderReceived", "SalesOrderRequested", "SalesOrderCreated"]
    assert recorded(app, 2001) == ["OrderReceived", "SalesOrderRequested", "SalesOrderParked", "OrderReleased",
                                   "SalesOrderRequested"]
    resent = app.find_order(2001)
    assert resent is not None and resent.command == second.command  # the parked command, as it was
    assert app.find_order(4040) is None


def test_a_quarantined_order_released_through_the_application_once_its_item_exists():
    app = OrderApplication()
    app.handle([delivery(uk_vat_inclusive())], items("TSHIRT-BLK-M"), NOW)
    quarantined = app.find_order(1001)
    assert quarantined is not None and quarantined.state is OrderState.QUARANTINED

    result = app.handle([ReleaseRequested(shopify_order_id=1001, released_by="ops", requested_at=NOW)], ITEMS, NOW)

    assert result.releases == [(1001, "sent")]
    assert recorded(app, 1001) == ["OrderReceived", "OrderQuarantined", "OrderReleased", "SalesOrderRequested"]
    released = app.find_order(1001)
    assert released is not None and released.command is not None
    assert released.command.command_id == uuid5(Order.create_id(1001), "create-sales-order/1")
