"""Given-when-then on the order after it was placed (issue 9): the order as it stands, the
warehouse cut-off, amendments and cancellations, refunds to credit memos, and lines that are not
Prima stock items. No I/O: the Order aggregate alone, with Shopify's figures built independently
in tests/orders/builders.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from domain.catalog.items import ItemType
from domain.orders.cutoff import CutoffRule
from domain.orders.domainmodel import DeliveryOutcome, MemoState, Order, OrderState
from domain.orders.mapping import LineRule, LineRules
from domain.orders.policy import OrderPolicy
from domain.orders.values import (
    Address,
    ChangeResolutionRequested,
    LineKind,
    SalesOrderAmendedByPrima,
    SalesOrderAmendment,
    SalesOrderCancellation,
    SalesOrderCancelledByPrima,
    SalesOrderChangeRefusedByPrima,
    SalesOrderCreatedByPrima,
)
from domain.shared.money import Money
from tests.orders.builders import (
    ITEMS,
    NOW,
    D,
    Line,
    cancelled_order,
    delivery,
    edited,
    item,
    refund_delivery,
    refunded,
    standing,
    uk_vat_inclusive,
    us_tax_exclusive,
)

ADDRESS = Address(name="A. Customer", address1="1 High Street", city="Leeds", zip="LS1 1AA", country_code="GB")
GOODWILL = item("GOODWILL", item_type=ItemType.SERVICE)
POLICY = OrderPolicy(goodwill_item="GOODWILL")
MASTER = {**ITEMS, "GOODWILL": GOODWILL}


def events_of(order: Order) -> list[str]:
    return [type(e).__name__ for e in order.collect_events()]


def in_prima(snapshot=None, status: str = "open", policy: OrderPolicy = POLICY) -> Order:
    """A paid order whose sales order Prima created (status `status`); its events collected."""
    order = Order.receive(delivery(standing(snapshot or us_tax_exclusive())), MASTER, policy)
    assert order.command is not None
    order.record_outcome(SalesOrderCreatedByPrima(
        command_id=order.command.command_id, shopify_order_id=order.shopify_order_id,
        sales_order_number="SO-000042", status=status, occurred_at=NOW), MASTER, policy)
    order.collect_events()
    return order


def amended(order: Order, status: str = "open") -> None:
    assert isinstance(order.change, SalesOrderAmendment)
    order.record_outcome(SalesOrderAmendedByPrima(
        command_id=order.change.command_id, shopify_order_id=order.shopify_order_id,
        sales_order_number="SO-000042", status=status, occurred_at=NOW), MASTER, POLICY)


def line_ids(order: Order) -> list[int]:
    assert order.snapshot is not None
    return [line.line_id for line in order.snapshot.lines]


# ----------------------------------------------------------------------- before the cut-off


def test_given_a_sales_order_when_an_edit_removes_a_line_then_the_amendment_drops_it_and_equals_current_totals():
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    hoodie, socks = line_ids(order)
    now = edited(original, remove={socks: 2})

    order.apply_delivery(delivery(now, topic="orders/updated"), MASTER, POLICY)

    assert order.state is OrderState.AMENDING
    change = order.change
    assert isinstance(change, SalesOrderAmendment)
    assert [line.line_id for line in change.sales_order.lines] == [hoodie]
    assert change.sales_order.totals.total == now.current_total_price.amount
    assert change.sales_order.totals.tax == now.current_total_tax.amount
    assert any("line removed" in c and "SOCKS-3PK" in c for c in change.changes)
    assert change.amendable_statuses == ("open",)


def test_given_a_sales_order_when_an_edit_adds_a_line_then_the_amendment_carries_it_at_current_totals():
    original = standing(uk_vat_inclusive())
    order = in_prima(original)
    now = edited(original, add=[Line("SOCKS-3PK", "Socks", D("6.00"), 2, taxes=(("VAT", D("0.2"), D("2.00")),))])

    order.apply_delivery(delivery(now, topic="orders/updated"), MASTER, POLICY)

    change = order.change
    assert isinstance(change, SalesOrderAmendment)
    assert [line.sku for line in change.sales_order.lines] == ["TSHIRT-BLK-M", "MUG-WHT", "SOCKS-3PK"]
    assert change.sales_order.totals.total == now.current_total_price.amount == D("70.00")
    assert change.sales_order.totals.tax == now.current_total_tax.amount
    assert any(c.startswith("line added") and "SOCKS-3PK" in c for c in change.changes)


def test_given_a_sales_order_when_the_address_changes_then_the_amendment_names_the_fields_not_the_data():
    original = replace(standing(uk_vat_inclusive()), shipping_address=ADDRESS)
    order = in_prima(original)
    now = edited(original, address=replace(ADDRESS, address1="2 Low Road"))

    order.apply_delivery(delivery(now, topic="orders/updated"), MASTER, POLICY)

    change = order.change
    assert isinstance(change, SalesOrderAmendment)
    assert change.changes == ("delivery address changed (address1)",)
    assert change.sales_order.ship_to == now.shipping_address
    assert "Low Road" not in " ".join(change.changes)


def test_given_an_amendment_when_prima_amends_and_the_same_update_comes_again_then_nothing_more_is_sent():
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    now = edited(original, remove={line_ids(order)[1]: 1})
    update = delivery(now, topic="orders/updated")
    order.apply_delivery(update, MASTER, POLICY)
    amended(order)
    assert order.state is OrderState.IN_PRIMA
    assert order.prima_order is not None and order.prima_order.totals.total == now.current_total_price.amount
    order.collect_events()

    again = order.apply_delivery(update, MASTER, POLICY)
    tagged = order.apply_delivery(delivery(replace(now, updated_at=now.updated_at + timedelta(minutes=5)),
                                           topic="orders/updated"), MASTER, POLICY)

    assert (again, tagged) == (DeliveryOutcome.DUPLICATE, DeliveryOutcome.APPLIED)
    assert order.changes_issued == 1 and order.change is None
    assert "SalesOrderAmendmentRequested" not in events_of(order)


def test_given_a_change_with_prima_when_another_edit_comes_then_it_waits_and_is_sent_after_the_answer():
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    hoodie, socks = line_ids(order)
    first = edited(original, remove={socks: 1})
    second = edited(first, remove={hoodie: 1}, minutes=2)
    order.apply_delivery(delivery(first, topic="orders/updated"), MASTER, POLICY)
    first_change = order.change

    order.apply_delivery(delivery(second, topic="orders/updated"), MASTER, POLICY)
    assert order.change is first_change  # one change at a time
    amended(order)

    assert isinstance(order.change, SalesOrderAmendment) and order.change is not first_change
    assert order.change.sales_order.totals.total == second.current_total_price.amount


def test_given_a_sales_order_when_the_order_is_cancelled_before_the_cut_off_then_it_is_cancelled_in_prima():
    original = standing(us_tax_exclusive())
    order = in_prima(original)

    order.apply_delivery(delivery(cancelled_order(original), topic="orders/cancelled"), MASTER, POLICY)

    assert order.state is OrderState.CANCELLING
    change = order.change
    assert isinstance(change, SalesOrderCancellation)
    assert change.reason == "customer" and change.sales_order_number == "SO-000042"
    order.record_outcome(SalesOrderCancelledByPrima(
        command_id=change.command_id, shopify_order_id=order.shopify_order_id, sales_order_number="SO-000042",
        status="cancelled", occurred_at=NOW), MASTER, POLICY)
    assert order.state is OrderState.CANCELLED
    order.apply_delivery(delivery(replace(cancelled_order(original), updated_at=NOW + timedelta(hours=1)),
                                  topic="orders/updated"), MASTER, POLICY)
    assert order.changes_issued == 1


def test_given_an_unpaid_order_when_it_is_cancelled_then_prima_never_gets_it():
    unpaid = standing(us_tax_exclusive(financial_status="pending"))
    order = Order.receive(delivery(unpaid, topic="orders/create"), MASTER, POLICY)
    assert order.state is OrderState.AWAITING_PAYMENT

    order.apply_delivery(delivery(cancelled_order(unpaid), topic="orders/cancelled"), MASTER, POLICY)

    assert order.state is OrderState.CANCELLED
    assert order.command is None and order.change is None


# ------------------------------------------------------------------------ after the cut-off


def test_given_a_sales_order_being_picked_when_an_edit_comes_then_an_exception_spells_out_the_difference():
    original = standing(us_tax_exclusive())
    order = in_prima(original, status="picking")
    now = edited(original, remove={line_ids(order)[1]: 2})

    order.apply_delivery(delivery(now, topic="orders/updated"), MASTER, POLICY)

    assert order.state is OrderState.AFTER_CUTOFF and order.change is None
    held = [e for e in order.collect_events() if type(e).__name__ == "ChangeHeldAtCutoff"]
    assert len(held) == 1
    assert held[0].change == "amend" and held[0].prima_status == "picking"
    assert any("line removed" in d and "SOCKS-3PK" in d for d in held[0].differences)
    assert "total 78.29" in held[0].prima_has and f"total {now.current_total_price.amount}" in held[0].shopify_now

    order.apply_delivery(delivery(replace(now, updated_at=now.updated_at + timedelta(minutes=1)),
                                  topic="orders/updated"), MASTER, POLICY)
    assert "ChangeHeldAtCutoff" not in events_of(order)  # the same difference is held once


def test_given_a_sales_order_despatched_when_the_order_is_cancelled_then_an_exception_not_a_cancellation():
    original = standing(us_tax_exclusive())
    order = in_prima(original, status="despatched")

    order.apply_delivery(delivery(cancelled_order(original, reason="fraud"), topic="orders/cancelled"), MASTER, POLICY)

    assert order.state is OrderState.AFTER_CUTOFF and order.change is None
    assert order.held == ("cancel", ("the order was cancelled in Shopify (fraud)",))


def test_given_the_daily_time_passed_when_an_edit_comes_then_it_is_held_though_prima_says_open():
    policy = replace(POLICY, cutoff=CutoffRule(status="picking", daily_time=time(14, 0), timezone="Europe/London"))
    original = standing(us_tax_exclusive())
    order = in_prima(original, policy=policy)  # created in Prima at 09:00 UTC
    later = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)

    order.apply_delivery(delivery(edited(original, remove={line_ids(order)[1]: 1}), topic="orders/updated",
                                  received_at=later), MASTER, policy)

    assert order.state is OrderState.AFTER_CUTOFF


def test_given_an_amendment_sent_when_prima_refuses_it_past_the_cut_off_then_the_order_is_held():
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    order.apply_delivery(delivery(edited(original, remove={line_ids(order)[1]: 1}), topic="orders/updated"),
                         MASTER, POLICY)
    change = order.change
    assert change is not None

    order.record_outcome(SalesOrderChangeRefusedByPrima(
        command_id=change.command_id, shopify_order_id=order.shopify_order_id, sales_order_number="SO-000042",
        status="picking", reason="the sales order is picking", occurred_at=NOW), MASTER, POLICY)

    assert order.state is OrderState.AFTER_CUTOFF and order.prima_status == "picking"


def test_given_prima_has_no_request_to_change_an_order_then_the_change_is_held_for_a_person_who_resolves_it():
    """Prima's OM link cannot amend or cancel a sales order: the port answers as past the cut-off
    (status no_change_request, services/prima/gateway.py), the Order holds the change, and once a
    person has made it in Prima by hand, resolving it takes the order as it stands."""
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    order.apply_delivery(delivery(edited(original, remove={line_ids(order)[1]: 1}), topic="orders/updated"),
                         MASTER, POLICY)
    change = order.change
    assert change is not None

    order.record_outcome(SalesOrderChangeRefusedByPrima(
        command_id=change.command_id, shopify_order_id=order.shopify_order_id, sales_order_number="SHOP42",
        status="no_change_request", reason="Prima's OM link has no request for amend sales order",
        occurred_at=NOW), MASTER, POLICY)

    assert order.state is OrderState.AFTER_CUTOFF and order.change is None
    assert order.resolve_change(ChangeResolutionRequested(
        shopify_order_id=order.shopify_order_id, resolved_by="finance", note="amended in Prima by hand",
        requested_at=NOW), MASTER, POLICY)
    assert order.state is OrderState.IN_PRIMA and order.change is None


def test_the_cutoff_rule_refuses_an_unknown_status_and_zone():
    with pytest.raises(ValueError):
        CutoffRule(status="shipped")
    with pytest.raises(ValueError):
        CutoffRule(timezone="Mars/Olympus")
    assert CutoffRule(status="released").changeable_statuses == ("open",)
    assert CutoffRule(status="despatched").changeable_statuses == ("open", "released_to_warehouse", "picking")


# ------------------------------------------------------------------------------ refunds


def memo_of(order: Order, refund_id: int):
    memo = order.memos[refund_id]
    assert memo.state == MemoState.REQUESTED, memo
    assert memo.command is not None
    return memo.command


def test_given_a_sales_order_when_part_is_refunded_with_restock_then_one_memo_equal_to_the_refund():
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    hoodie = line_ids(order)[0]
    refund, _ = refunded(original, 501, lines=[(hoodie, 1, "return")])

    order.receive_refund(refund_delivery(refund), MASTER, POLICY)
    order.receive_refund(refund_delivery(refund), MASTER, POLICY)  # delivered again, another webhook id

    command = memo_of(order, 501)
    memo = command.credit_memo
    assert command.idempotency_key == "shopify-prima:credit-memo:501"
    assert memo.sales_order_number == "SO-000042" and memo.external_reference == "501"
    assert [(line.sku, line.quantity, line.returned, line.restock_type) for line in memo.lines] == [
        ("HOODIE-GRY-L", 1, True, "return")]
    assert memo.totals.total == refund.transactions[0].amount.amount
    assert memo.lines[0].amount == refund.lines[0].subtotal.amount and memo.lines[0].tax_amount == refund.lines[0].tax.amount
    assert events_of(order).count("CreditMemoRequested") == 1
    assert order.change is None  # a refund is a memo, never an amendment


def test_given_two_partial_refunds_then_two_memos_each_to_the_cent():
    original = standing(uk_vat_inclusive())
    order = in_prima(original)
    shirt, mug = line_ids(order)
    first, after = refunded(original, 601, lines=[(shirt, 1, "no_restock")])
    second, after_second = refunded(after, 602, lines=[(shirt, 1, "no_restock"), (mug, 1, "cancel")], minutes=2)

    order.receive_refund(refund_delivery(first), MASTER, POLICY)
    order.receive_refund(refund_delivery(second), MASTER, POLICY)
    # units cancelled before fulfilment: the memo waits for the order after the refund (not cancelled)
    assert 602 not in order.memos or order.memos[602].command is None
    order.apply_delivery(delivery(after_second, topic="orders/updated"), MASTER, POLICY)

    one, two = memo_of(order, 601), memo_of(order, 602)
    assert one.idempotency_key != two.idempotency_key
    assert one.credit_memo.totals.total == first.transactions[0].amount.amount == D("21.60")
    assert two.credit_memo.totals.total == second.transactions[0].amount.amount
    assert one.credit_memo.totals.total + two.credit_memo.totals.total == D("54.00")  # all but the shipping
    assert [line.returned for line in two.credit_memo.lines] == [False, True]


def test_given_a_cancellation_whose_refund_comes_before_orders_cancelled_then_no_memo_only_the_cancellation():
    """Regression: refunds/create before orders/cancelled gave a credit memo for the whole order
    AND a cancelled sales order: the sale reversed twice in Prima."""
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    everything = [(line_id, line.current_quantity, "cancel")
                  for line_id, line in zip(line_ids(order), original.lines, strict=True)]
    refund, _ = refunded(original, 701, lines=everything, shipping=True)
    cancelled = replace(cancelled_order(original, minutes=2), refunds=(refund,), financial_status="refunded")

    order.receive_refund(refund_delivery(refund), MASTER, POLICY)  # the refund first
    assert "CreditMemoRequested" not in events_of(order)
    order.apply_delivery(delivery(cancelled, topic="orders/cancelled"), MASTER, POLICY)

    assert isinstance(order.change, SalesOrderCancellation)
    assert order.memos[701].state == MemoState.NOT_NEEDED and order.memos[701].command is None


def test_given_a_shipping_only_refund_then_the_memo_carries_the_shipping_and_no_line():
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    refund, _ = refunded(original, 701, shipping=True)

    order.receive_refund(refund_delivery(refund), MASTER, POLICY)

    memo = memo_of(order, 701).credit_memo
    assert memo.lines == ()
    assert memo.shipping is not None and memo.shipping.amount == D("5.95") and memo.shipping.tax_amount == D("0.53")
    assert memo.totals.total == D("6.48") == refund.transactions[0].amount.amount


def test_given_a_goodwill_refund_then_an_amount_only_memo_to_the_goodwill_item():
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    refund, _ = refunded(original, 801, amount=D("10.00"))

    order.receive_refund(refund_delivery(refund), MASTER, POLICY)

    memo = memo_of(order, 801).credit_memo
    assert [(line.sku, line.quantity, line.amount, line.tax_amount) for line in memo.lines] == [
        ("GOODWILL", 1, D("10.00"), D("0.00"))]
    assert memo.adjustments == () and memo.totals.total == D("10.00")


def test_given_a_goodwill_refund_without_a_goodwill_item_then_the_memo_is_held_naming_the_setting():
    original = standing(us_tax_exclusive())
    order = in_prima(original, policy=OrderPolicy())
    refund, _ = refunded(original, 802, amount=D("10.00"))

    order.receive_refund(refund_delivery(refund), MASTER, OrderPolicy())

    memo = order.memos[802]
    assert memo.state == MemoState.HELD and memo.command is None
    assert memo.problem is not None and "ORDER_GOODWILL_ITEM" in memo.problem[1]


def test_given_a_refund_whose_transactions_differ_then_no_memo_but_an_exception_naming_both():
    original = standing(us_tax_exclusive())
    order = in_prima(original)
    refund, _ = refunded(original, 901, lines=[(line_ids(order)[0], 1, "no_restock")], paid=D("1.00"))

    order.receive_refund(refund_delivery(refund), MASTER, POLICY)

    memo = order.memos[901]
    assert memo.state == MemoState.HELD and memo.command is None
    assert memo.problem is not None and memo.problem[0] == "credit_memo_mismatch" and "1.00" in memo.problem[1]


def test_given_a_refund_before_its_sales_order_then_the_memo_waits_and_is_sent_once_prima_has_it():
    original = standing(us_tax_exclusive())
    refund, after = refunded(original, 1001, lines=[(original.lines[0].line_id, 1, "return")])

    order = Order.open_by_refund(refund_delivery(refund))
    assert order.state is OrderState.AWAITING_ORDER and order.memos[1001].state == MemoState.WAITING

    order.apply_delivery(delivery(after), MASTER, POLICY)  # the order's webhook, late: after the refund
    assert order.state is OrderState.SENT and order.memos[1001].state == MemoState.WAITING
    assert order.command is not None
    assert order.command.sales_order.totals.total == D("78.29")  # the memo credits the refunded unit
    order.record_outcome(SalesOrderCreatedByPrima(
        command_id=order.command.command_id, shopify_order_id=order.shopify_order_id,
        sales_order_number="SO-000077", status="open", occurred_at=NOW), MASTER, POLICY)

    assert memo_of(order, 1001).credit_memo.sales_order_number == "SO-000077"


def test_given_a_refunded_order_when_it_arrives_then_the_sales_order_still_carries_the_refunded_units():
    """Sales order - credit memos = the order as it stands: nothing is credited twice."""
    original = standing(us_tax_exclusive())
    refund, after = refunded(original, 1101, lines=[(original.lines[1].line_id, 2, "return")])

    order = Order.receive(delivery(after), MASTER, POLICY)

    assert order.command is not None
    sales_order = order.command.sales_order
    assert [line.quantity for line in sales_order.lines] == [3, 2]
    assert sales_order.totals.total == D("78.29")
    assert sales_order.totals.total - refund.transactions[0].amount.amount == after.current_total_price.amount


def test_given_a_refund_first_when_a_late_body_from_before_it_comes_then_an_exception_then_the_current_body_sells():
    """A regression: the body before the refund, with the refund's units added back, made a sales
    order for more units than were ordered."""
    original = standing(us_tax_exclusive())
    refund, after = refunded(original, 1201, lines=[(original.lines[0].line_id, 1, "return")])
    order = Order.open_by_refund(refund_delivery(refund))

    order.apply_delivery(delivery(original), MASTER, POLICY)
    assert order.command is None and order.quarantine is not None and order.quarantine[0] == "line_figures"
    assert "predates a refund" in order.quarantine[1]

    order.apply_delivery(delivery(after, topic="orders/updated"), MASTER, POLICY)
    assert order.command is not None and [line.quantity for line in order.command.sales_order.lines] == [3, 2]


# ------------------------------------------------------------- lines that are not stock items


def with_line(snapshot, title: str, kind: str, price: str, sku: str | None = None):
    lines = (*snapshot.lines, replace(snapshot.lines[0], line_id=snapshot.lines[-1].line_id + 1, sku=sku, title=title,
                                      kind=kind, quantity=1, unit_price=Money(D(price), snapshot.currency),
                                      discount=Money(D("0.00"), snapshot.currency), tax_lines=(),
                                      current_quantity=None))
    bump = Money(snapshot.total_price.amount + D(price), snapshot.currency)
    subtotal = Money(snapshot.subtotal_price.amount + D(price), snapshot.currency)
    return replace(snapshot, lines=lines, total_price=bump, subtotal_price=subtotal)


RULES = LineRules(rules=(LineRule(kind="tip", item="TIP"), LineRule(kind="gift_card", account="2400-GIFT-CARDS"),
                         LineRule(kind="custom", title="engraving*", item="ENGRAVING")))
RULED = OrderPolicy(line_rules=RULES)
NON_STOCK = {**ITEMS, "TIP": item("TIP", item_type=ItemType.SERVICE),
             "ENGRAVING": item("ENGRAVING", item_type=ItemType.SERVICE)}


@pytest.mark.parametrize(("title", "kind", "booked"), [
    ("Tip", LineKind.TIP, ("item", "TIP", None)),
    ("Gift card", LineKind.GIFT_CARD, ("account", None, "2400-GIFT-CARDS")),
    ("Engraving: initials", LineKind.CUSTOM, ("item", "ENGRAVING", None)),
])
def test_given_a_line_rule_when_a_non_stock_line_comes_then_it_is_booked_by_the_rule(title, kind, booked):
    snapshot = with_line(us_tax_exclusive(), title, kind, "5.00")

    order = Order.receive(delivery(snapshot), NON_STOCK, RULED)

    assert order.command is not None, order.quarantine
    line = order.command.sales_order.lines[-1]
    assert (line.kind, line.sku, line.account) == booked
    assert order.command.sales_order.totals.total == snapshot.total_price.amount


@pytest.mark.parametrize(("title", "kind"), [("Tip", LineKind.TIP), ("Gift card", LineKind.GIFT_CARD),
                                             ("Gravure", LineKind.CUSTOM)])
def test_given_no_rule_when_a_non_stock_line_comes_then_the_order_is_held_naming_the_line(title, kind):
    snapshot = with_line(us_tax_exclusive(), title, kind, "5.00")

    order = Order.receive(delivery(snapshot), NON_STOCK, OrderPolicy())

    assert order.command is None and order.state is OrderState.QUARANTINED
    assert order.quarantine is not None and order.quarantine[0] == "unmapped_line" and title in order.quarantine[1]


def test_given_a_price_with_three_decimals_then_an_exception_not_a_rounded_sales_order():
    snapshot = us_tax_exclusive()
    lines = (replace(snapshot.lines[0], unit_price=Money(D("19.995"), "USD")), *snapshot.lines[1:])

    order = Order.receive(delivery(replace(snapshot, lines=lines)), ITEMS)

    assert order.command is None and order.quarantine is not None and order.quarantine[0] == "amount_precision"
    assert "19.995" in order.quarantine[1]


def test_given_an_order_without_lines_then_an_exception():
    order = Order.receive(delivery(replace(us_tax_exclusive(), lines=())), ITEMS)

    assert order.command is None and order.quarantine is not None
    assert order.quarantine[0] == "order_without_lines"


def test_given_every_line_removed_by_edits_then_an_exception_not_an_empty_sales_order():
    original = standing(us_tax_exclusive())
    now = edited(original, remove={line.line_id: line.quantity for line in original.lines})

    order = Order.receive(delivery(now), ITEMS)

    assert order.command is None and order.quarantine is not None
    assert order.quarantine[0] == "order_without_lines"
