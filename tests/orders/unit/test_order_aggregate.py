"""Given-when-then on the Order aggregate: the decisions, with no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

from contracts.prima import SalesOrderCreated, SalesOrderFailed, SalesOrderRejected
from contracts.shopify import ShopifyOrder, ShopifyOrderReceived
from domain.orders.domainmodel import DeliveryOutcome, Order, OrderState
from domain.orders.mapping import PrimaItem
from sandboxes.shopify.orders import Line, Shipping, order_body

D = Decimal
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
ITEMS = {
    sku: PrimaItem(item_id=f"ITM-{sku}", sku=sku, description=sku)
    for sku in ("TSHIRT-BLK-M", "MUG-WHT", "HOODIE-GRY-L", "SOCKS-3PK")
}
# Shopify's own orders/create test notification (copied from ../shared/reference/shopify-samples)
SAMPLE = Path(__file__).resolve().parents[1] / "fixtures/shopify/orders-create-test-notification.json"


def uk_vat_inclusive(order_id: int = 1001, **kw) -> dict:
    """UK, prices include VAT 20%; 10% off the lines and 1.00 off shipping."""
    return order_body(
        order_id,
        [
            Line("TSHIRT-BLK-M", "T-shirt", D("24.00"), 2, D("4.80"), [("VAT", D("0.2"), D("7.20"))]),
            Line("MUG-WHT", "Mug", D("12.00"), 1, D("1.20"), [("VAT", D("0.2"), D("1.80"))]),
        ],
        Shipping("Royal Mail", D("5.00"), D("1.00"), [("VAT", D("0.2"), D("0.67"))]),
        taxes_included=True,
        currency="GBP",
        **kw,
    )


def us_tax_exclusive(order_id: int = 2001, **kw) -> dict:
    """New York, sales tax 8.875% on top; 5.00 off allocated to lines and 2.00 off shipping."""
    rate = D("0.08875")
    return order_body(
        order_id,
        [
            Line("HOODIE-GRY-L", "Hoodie", D("19.99"), 3, D("4.22"), [("NY State Tax", rate, D("4.95"))]),
            Line("SOCKS-3PK", "Socks", D("5.49"), 2, D("0.78"), [("NY State Tax", rate, D("0.91"))]),
        ],
        Shipping("UPS Ground", D("7.95"), D("2.00"), [("NY State Tax", rate, D("0.53"))]),
        taxes_included=False,
        currency="USD",
        **kw,
    )


def delivery(body: dict, topic: str = "orders/paid", webhook_id: str | None = None) -> ShopifyOrderReceived:
    return ShopifyOrderReceived(
        webhook_id=webhook_id or str(uuid4()),
        topic=topic,
        shop_domain="sandbox.myshopify.com",
        received_at=NOW,
        raw_payload_id=uuid4(),
        order=ShopifyOrder.from_webhook(body),
    )


def events_of(order: Order) -> list[str]:
    return [type(e).__name__ for e in order.collect_events()]


def test_paid_order_gives_one_sales_order_command():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    assert events_of(order) == ["OrderReceived", "SalesOrderRequested"]
    assert order.state is OrderState.SENT
    assert order.command["sales_order"]["external_reference"] == "1001"
    assert order.command["idempotency_key"].endswith(order.command["command_id"])


def test_unpaid_order_gives_no_sales_order():
    order = Order.receive(delivery(uk_vat_inclusive(financial_status="pending"), topic="orders/create"), ITEMS)
    assert events_of(order) == ["OrderReceived", "OrderAwaitingPayment"]
    assert order.command is None


def test_authorized_then_paid_gives_exactly_one_command():
    t0 = NOW - timedelta(minutes=5)
    order = Order.receive(delivery(uk_vat_inclusive(financial_status="authorized", updated_at=t0), "orders/create"), ITEMS)
    order.collect_events()
    assert order.apply_delivery(delivery(uk_vat_inclusive(updated_at=NOW)), ITEMS) is DeliveryOutcome.APPLIED
    assert events_of(order) == ["OrderUpdated", "SalesOrderRequested"]
    # a later update of the paid order does not send it again
    later = delivery(uk_vat_inclusive(updated_at=NOW + timedelta(minutes=1)), "orders/updated")
    assert order.apply_delivery(later, ITEMS) is DeliveryOutcome.APPLIED
    assert events_of(order) == ["OrderUpdated"]


def test_successful_capture_transaction_counts_as_paid():
    body = uk_vat_inclusive(financial_status="authorized")
    body["transactions"] = [{"id": 1, "kind": "capture", "status": "success", "amount": "58.00"}]
    order = Order.receive(delivery(body), ITEMS)
    assert order.state is OrderState.SENT


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
    order = Order.receive(delivery(uk_vat_inclusive(financial_status="pending", updated_at=NOW), "orders/create"), ITEMS)
    order.collect_events()
    stale = delivery(uk_vat_inclusive(updated_at=NOW - timedelta(seconds=1)))
    assert order.apply_delivery(stale, ITEMS) is DeliveryOutcome.STALE
    assert events_of(order) == []
    assert order.state is OrderState.AWAITING_PAYMENT


def test_unknown_sku_quarantines_the_whole_order():
    items = {k: v for k, v in ITEMS.items() if k != "MUG-WHT"}
    order = Order.receive(delivery(uk_vat_inclusive()), items)
    assert events_of(order) == ["OrderReceived", "OrderQuarantined"]
    assert order.state is OrderState.QUARANTINED
    assert order.quarantine["unmapped_skus"] == ["MUG-WHT"]
    assert order.command is None


def test_inactive_item_and_missing_sku_quarantine():
    items = dict(ITEMS, **{"MUG-WHT": PrimaItem("ITM-MUG", "MUG-WHT", "Mug", active=False)})
    body = uk_vat_inclusive()
    body["line_items"][0]["sku"] = None
    order = Order.receive(delivery(body), items)
    assert order.quarantine["unmapped_skus"] == ["", "MUG-WHT"]


def test_quarantined_order_is_released_once_mapped_without_rekeying():
    order = Order.receive(delivery(uk_vat_inclusive()), {})
    order.collect_events()
    assert order.release(ITEMS, released_by="ops", now=NOW)
    assert events_of(order) == ["OrderReleased", "SalesOrderRequested"]
    assert order.state is OrderState.SENT


def test_uk_vat_inclusive_totals_exact_to_the_cent():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    so = order.command["sales_order"]
    assert [(line["sku"], line["net_amount"], line["discount_amount"], line["tax_amount"]) for line in so["lines"]] == [
        ("TSHIRT-BLK-M", "43.20", "4.80", "7.20"),
        ("MUG-WHT", "10.80", "1.20", "1.80"),
    ]
    assert so["shipping"] == {"description": "Royal Mail", "amount": "5.00", "discount_amount": "1.00", "tax_amount": "0.67"}
    # VAT is inside the prices: the total is lines + shipping, tax shown but not added
    assert so["totals"] == {"lines_net": "54.00", "shipping_net": "4.00", "tax": "9.67", "total": "58.00"}
    assert so["currency"] == "GBP" and so["taxes_included"] is True


def test_us_tax_exclusive_totals_exact_to_the_cent():
    order = Order.receive(delivery(us_tax_exclusive()), ITEMS)
    so = order.command["sales_order"]
    assert [(line["net_amount"], line["tax_amount"]) for line in so["lines"]] == [("55.75", "4.95"), ("10.20", "0.91")]
    assert so["totals"] == {"lines_net": "65.95", "shipping_net": "5.95", "tax": "6.39", "total": "78.29"}
    assert ShopifyOrder.from_webhook(us_tax_exclusive()).total_price.amount == D("78.29")


def test_total_that_does_not_add_up_is_an_exception_not_a_command():
    body = us_tax_exclusive()
    body["total_price_set"]["shop_money"]["amount"] = "78.30"  # Shopify says one cent more
    order = Order.receive(delivery(body), ITEMS)
    assert order.state is OrderState.QUARANTINED
    assert order.quarantine["reason"] == "totals_mismatch"
    assert "78.29" in order.quarantine["detail"] and "78.30" in order.quarantine["detail"]


def test_outcome_created_moves_order_into_prima_once():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    order.collect_events()
    created = SalesOrderCreated(
        command_id=UUID(order.command["command_id"]), shopify_order_id=1001,
        sales_order_number="SO-000001", status="open", occurred_at=NOW,
    )
    assert order.record_outcome(created)
    assert not order.record_outcome(created)
    assert events_of(order) == ["SalesOrderCreated"]
    assert order.state is OrderState.IN_PRIMA and order.sales_order_number == "SO-000001"


def test_rejected_and_parked_outcomes_fail_the_order_and_parked_is_resent_with_the_same_key():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    command = dict(order.command)
    failed = SalesOrderFailed(
        command_id=UUID(command["command_id"]), shopify_order_id=1001, attempts=5, reason="HTTP 500", occurred_at=NOW
    )
    assert order.record_outcome(failed) and order.state is OrderState.FAILED
    order.collect_events()
    assert order.release(ITEMS, released_by="ops", now=NOW)
    assert order.command == command  # same command id, same idempotency key

    other = Order.receive(delivery(us_tax_exclusive()), ITEMS)
    rejected = SalesOrderRejected(
        command_id=UUID(other.command["command_id"]), shopify_order_id=2001, status_code=422,
        code="unknown_item", reason="item ITM-X unknown", occurred_at=NOW,
    )
    first_key = other.command["idempotency_key"]
    assert other.record_outcome(rejected) and other.failure["code"] == "unknown_item"
    assert other.release(ITEMS, released_by="ops", now=NOW)
    assert other.command["idempotency_key"] != first_key  # a rejected command is decided anew


def test_outcome_for_another_command_is_ignored():
    order = Order.receive(delivery(uk_vat_inclusive()), ITEMS)
    stray = SalesOrderCreated(command_id=uuid4(), shopify_order_id=1001, sales_order_number="SO-9", status="open", occurred_at=NOW)
    assert not order.record_outcome(stray)
    assert order.state is OrderState.SENT


def test_shopify_sample_body_parses_and_a_voided_order_is_not_sent():
    body = json.loads(SAMPLE.read_text())
    parsed = ShopifyOrder.from_webhook(body)
    assert parsed.total_price.amount == D("403.00") and parsed.currency == "USD"
    assert [li.sku for li in parsed.line_items] == [li["sku"] for li in body["line_items"]]
    assert parsed.line_items[0].unit_price.amount == D("199.00")
    order = Order.receive(delivery(body, "orders/create"), ITEMS)
    assert order.state is OrderState.AWAITING_PAYMENT
