"""Given-when-then on bundles through the Order aggregate: a Shopify line whose SKU is a Prima kit
becomes its components' lines on the sales order (domain/orders/bundles.py), on create, on
amendments and on credit memos, each naming the Shopify line it came from; a kit whose component
Prima does not have quarantines the order like an unknown SKU; an order recorded before bundles
were expanded still loads. No I/O: the aggregate and the application on in-memory persistence."""

from __future__ import annotations

from dataclasses import replace

from eventsourcing.persistence import StoredEvent

from domain.catalog.items import Component, ItemType
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import MemoState, Order, OrderState, QuarantineReason
from domain.orders.values import (
    SalesOrder,
    SalesOrderAmendment,
    SalesOrderCreatedByPrima,
)
from services.orders.translate import wire_command
from tests.orders.builders import (
    ITEMS,
    NOW,
    D,
    Line,
    delivery,
    edited,
    item,
    order,
    refund_delivery,
    refunded,
    standing,
)

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
KIT = replace(item("GIFT-SET", item_type=ItemType.BUNDLE),
              components=(Component("TSHIRT-BLK-M", 1), Component("MUG-WHT", 2)))
MASTER = {**ITEMS, "GIFT-SET": KIT}


def with_bundle(order_id: int = 7001, bundles: int = 2, **kw) -> object:
    """A UK order, VAT inside the prices: 2 gift sets (a tee and two mugs each) at 25.00 with 5.00
    off and VAT 7.50, and a pair of socks at 6.00 with VAT 1.00; total 51.00 + 6.00."""
    vat = D("0.2")
    return order(order_id, [
        Line("GIFT-SET", "Gift set", D("25.00"), bundles, D("5.00"), (("VAT", vat, D("7.50")),)),
        Line("SOCKS-3PK", "Socks", D("6.00"), 1, taxes=(("VAT", vat, D("1.00")),)),
    ], taxes_included=True, currency="GBP", **kw)


def events_of(order_: Order) -> list[str]:
    return [type(e).__name__ for e in order_.collect_events()]


def in_prima(snapshot, master=MASTER) -> Order:
    decided = Order.receive(delivery(snapshot), master)
    assert decided.command is not None
    decided.record_outcome(SalesOrderCreatedByPrima(
        command_id=decided.command.command_id, shopify_order_id=decided.shopify_order_id,
        sales_order_number="SO-000077", status="open", occurred_at=NOW), master)
    decided.collect_events()
    return decided


def bundle_lines(sales_order: SalesOrder, line_id: int):
    return [line for line in sales_order.lines if line.line_id == line_id and line.bundle_sku is not None]


# ------------------------------------------------------------------------------ create


def test_given_a_paid_order_with_a_bundle_line_then_prima_gets_its_components_adding_up_to_the_bundle_line():
    snapshot = with_bundle()
    gift_set, socks = snapshot.lines

    decided = Order.receive(delivery(snapshot), MASTER)

    assert decided.state is OrderState.SENT and decided.command is not None
    sales_order = decided.command.sales_order
    assert [(line.sku, line.quantity, line.unit_price, line.discount_amount, line.tax_amount, line.line_id)
            for line in sales_order.lines] == [
        # 50.00 over 6 units (2 tees, 4 mugs): 8.33 each, the 2 cents left to the last two mugs
        ("TSHIRT-BLK-M", 2, D("8.33"), D("1.66"), D("2.50"), gift_set.line_id),
        ("MUG-WHT", 2, D("8.33"), D("1.66"), D("2.50"), gift_set.line_id),
        ("MUG-WHT", 2, D("8.34"), D("1.68"), D("2.50"), gift_set.line_id),
        ("SOCKS-3PK", 1, D("6.00"), D("0.00"), D("1.00"), socks.line_id),
    ]
    parts = bundle_lines(sales_order, gift_set.line_id)
    assert sum(line.net_amount for line in parts) == D("45.00")  # 2 x 25.00 - 5.00
    assert sum(line.tax_amount for line in parts) == D("7.50")
    assert all(line.net_amount == line.quantity * line.unit_price - line.discount_amount for line in sales_order.lines)
    assert {(line.bundle_sku, line.bundle_item_id) for line in parts} == {("GIFT-SET", "ITM-GIFT-SET")}
    assert [line.units_per_bundle for line in parts] == [1, 2, 2]
    assert [line.line_number for line in sales_order.lines] == [1, 2, 3, 4]
    assert sales_order.totals.total == snapshot.total_price.amount == D("51.00")
    assert sales_order.totals.tax == snapshot.total_tax.amount


def test_the_component_lines_reach_prima_naming_the_shopify_line_they_came_from():
    snapshot = with_bundle()
    decided = Order.receive(delivery(snapshot), MASTER)
    assert decided.command is not None

    command = wire_command(decided.command)

    assert [(line.sku, line.external_line_id) for line in command.sales_order.lines][:3] == [
        ("TSHIRT-BLK-M", snapshot.lines[0].line_id), ("MUG-WHT", snapshot.lines[0].line_id),
        ("MUG-WHT", snapshot.lines[0].line_id)]
    assert command.sales_order.totals.total == D("51.00")


def test_given_a_kit_with_a_component_prima_does_not_have_then_quarantined_naming_the_component_and_released_once_it_has():
    master = {sku: found for sku, found in MASTER.items() if sku != "MUG-WHT"}

    decided = Order.receive(delivery(with_bundle()), master)

    assert decided.state is OrderState.QUARANTINED and decided.command is None
    assert decided.quarantine == (QuarantineReason.UNMAPPED_SKU,
                                  "SKU 'MUG-WHT': component of kit 'GIFT-SET': no Prima item with this SKU",
                                  ("MUG-WHT",))
    decided.collect_events()
    assert decided.release(MASTER, released_by="auto", now=NOW, only_if_mapped=True)
    assert events_of(decided) == ["OrderReleased", "SalesOrderRequested"]
    assert decided.command is not None and len(decided.command.sales_order.lines) == 4


def test_given_a_kit_with_an_inactive_component_then_quarantined_naming_it():
    master = {**MASTER, "TSHIRT-BLK-M": item("TSHIRT-BLK-M", active=False)}
    decided = Order.receive(delivery(with_bundle()), master)
    assert decided.quarantine is not None and decided.quarantine[2] == ("TSHIRT-BLK-M",)
    assert "component of kit 'GIFT-SET': the Prima item is inactive" in decided.quarantine[1]


def test_given_an_item_lookup_then_the_application_reads_the_kits_components_too():
    app = OrderApplication(env=POPO)
    asked: list[set[str]] = []

    def lookup(skus: set[str]):
        asked.append(set(skus))
        return {sku: MASTER[sku] for sku in skus if sku in MASTER}

    app.handle([delivery(with_bundle(7002))], lookup, NOW)

    assert asked == [{"GIFT-SET", "SOCKS-3PK"}, {"TSHIRT-BLK-M", "MUG-WHT"}]
    stored = app.find_order(7002)
    assert stored is not None and stored.state is OrderState.SENT
    assert stored.command is not None and bundle_lines(stored.command.sales_order, 700201)
    app.close()


# ------------------------------------------------------------------------ after the create


def test_given_a_bundle_in_prima_when_an_edit_adds_a_line_then_the_components_are_kept_as_booked():
    original = standing(with_bundle(7003))
    prima = in_prima(original)
    now = edited(original, add=[Line("HOODIE-GRY-L", "Hoodie", D("30.00"), 1, taxes=(("VAT", D("0.2"), D("5.00")),))])
    retired = {sku: found for sku, found in MASTER.items() if sku not in ("GIFT-SET", "MUG-WHT")}

    prima.apply_delivery(delivery(now, topic="orders/updated"), retired)  # the kit since retired in Prima

    change = prima.change
    assert isinstance(change, SalesOrderAmendment)
    assert change.sales_order.lines[:3] == prima.prima_order.lines[:3]  # the bundle's lines as they were
    assert [c for c in change.changes if "line" in c] == ["line added: 'Hoodie' (SKU HOODIE-GRY-L) x1 at 30.00"]
    assert change.sales_order.totals.total == now.current_total_price.amount


def test_given_a_bundle_in_prima_when_an_edit_removes_one_bundle_then_its_components_follow():
    original = standing(with_bundle(7004))
    prima = in_prima(original)
    gift_set = original.lines[0].line_id
    now = edited(original, remove={gift_set: 1})

    prima.apply_delivery(delivery(now, topic="orders/updated"), MASTER)

    change = prima.change
    assert isinstance(change, SalesOrderAmendment)
    parts = bundle_lines(change.sales_order, gift_set)
    # 25.00 over 3 units: 8.33, 8.33 and the last mug 8.34
    assert [(line.sku, line.quantity, line.unit_price) for line in parts] == [
        ("TSHIRT-BLK-M", 1, D("8.33")), ("MUG-WHT", 1, D("8.33")), ("MUG-WHT", 1, D("8.34"))]
    assert sum(line.net_amount for line in parts) == D("22.50")  # 25.00 - half of the 5.00 off
    assert change.sales_order.totals.total == now.current_total_price.amount
    assert change.sales_order.totals.tax == now.current_total_tax.amount


def test_given_a_bundle_in_prima_when_the_same_order_comes_again_then_nothing_changes():
    original = standing(with_bundle(7005))
    prima = in_prima(original)
    again = replace(original, updated_at=original.updated_at.replace(minute=5))

    prima.apply_delivery(delivery(again, topic="orders/updated"), MASTER)

    assert events_of(prima) == ["OrderUpdated", "SalesOrderUnchanged"]


def test_given_a_refunded_bundle_then_the_credit_memo_credits_its_components_to_the_cent():
    original = standing(with_bundle(7006))
    prima = in_prima(original)
    gift_set = original.lines[0].line_id
    refund, _ = refunded(original, 801, lines=[(gift_set, 1, "return")])

    prima.receive_refund(refund_delivery(refund), MASTER)

    memo_state = prima.memos[801]
    assert memo_state.state == MemoState.REQUESTED and memo_state.command is not None
    memo = memo_state.command.credit_memo
    assert [(line.sku, line.quantity, line.amount, line.tax_amount, line.line_id, line.returned)
            for line in memo.lines] == [("TSHIRT-BLK-M", 1, D("7.50"), D("1.25"), gift_set, True),
                                        ("MUG-WHT", 2, D("15.00"), D("2.50"), gift_set, True)]
    assert sum(line.amount for line in memo.lines) == refund.lines[0].subtotal.amount == D("22.50")
    assert memo.totals.total == refund.transactions[0].amount.amount


# ---------------------------------------------------------------------------------- replay


def test_an_order_recorded_before_bundles_were_expanded_still_loads_and_keeps_its_kit_line_as_booked():
    """Before this rule a kit reached Prima as its own SKU, and the events' sales-order lines had
    no bundle fields: such an order loads, and an update that changes nothing amends nothing
    (Prima holds the kit line: it stays as booked, not expanded behind the warehouse's back)."""
    snapshot = standing(with_bundle(7007))
    as_before = {**MASTER, "GIFT-SET": replace(KIT, item_type=ItemType.STOCK, components=())}
    app = OrderApplication(env=POPO)
    app.handle([delivery(snapshot)], as_before, NOW)
    sent = app.find_order(7007)
    assert sent is not None and sent.command is not None
    app.handle([SalesOrderCreatedByPrima(command_id=sent.command.command_id, shopify_order_id=7007,
                                         sales_order_number="SO-000078", status="open", occurred_at=NOW)],
               as_before, NOW)
    old = []
    for stored in app.recorder.select_events(Order.create_id(7007)):
        text = stored.state.decode()
        for name in ("bundle_item_id", "bundle_sku", "units_per_bundle"):
            text = text.replace(f',"{name}":null', "")
        assert "bundle" not in text.replace("with_bundle", "")
        old.append(StoredEvent(originator_id=stored.originator_id, originator_version=stored.originator_version,
                               topic=stored.topic, state=text.encode()))
    before = OrderApplication(env=POPO)
    before.recorder.insert_events(old)

    loaded = before.find_order(7007)
    assert loaded is not None and loaded.state is OrderState.IN_PRIMA and loaded.prima_order is not None
    assert [(line.sku, line.bundle_sku) for line in loaded.prima_order.lines] == [("GIFT-SET", None),
                                                                                  ("SOCKS-3PK", None)]
    before.handle([delivery(replace(snapshot, updated_at=snapshot.updated_at.replace(minute=7)), "orders/updated")],
                  MASTER, NOW)

    again = before.find_order(7007)
    assert again is not None and again.state is OrderState.IN_PRIMA and again.change is None
    assert again.version == loaded.version + 2  # OrderUpdated, SalesOrderUnchanged
    app.close()
    before.close()
