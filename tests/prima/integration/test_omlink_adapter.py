"""The OM link adapter (zeep, built from the WSDL the sandbox serves) over HTTP against the Prima
sandbox's OM link, served in-process on a scratch database: NewOrder stored as the Shopify order,
OrderStatus answered, a repeated OrderNumber refused and adopted, a lost answer recovered through
OrderStatus without a second order, Prima's faults retried or reported, ProductAvailableToSell
read by product range."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from lxml import etree

from services.prima.client import PrimaRejected, PrimaUnavailable
from services.prima.omlink.adapter import OmLinkAdapter
from services.prima.omlink.documents import order_status_request, read_answer
from tests.prima.omlink_orders import (
    SERVICE,
    card_payment,
    config,
    faults,
    omlink_posts,
    paid_order,
    sales_orders,
)

order_ids = itertools.count(7_300_001)


@pytest.fixture
async def adapter(sandbox_url):
    async with OmLinkAdapter(config(f"{sandbox_url}{SERVICE}")) as omlink:
        yield omlink


async def test_given_a_paid_order_when_sent_then_prima_holds_one_new_order_equal_to_the_shopify_order(
        sandbox, adapter):
    command = paid_order(next(order_ids))
    payment = card_payment(command)

    created = await adapter.create_sales_order(command, [payment])

    number = f"SHOP{command.shopify_order_id}"
    assert (created.sales_order_number, created.status, created.adopted) == (number, "open", False)
    assert created.command_id == command.command_id
    stored = (await sandbox.get(f"/_sandbox/omlink/orders/{number}")).json()
    assert stored["request"] == adapter.new_order(command, [payment])  # the document as sent, byte for byte
    data = etree.fromstring(stored["request"].encode("ISO-8859-1")).find("Data")
    assert [(line.get("Product"), line.get("MtrxCode1"), line.get("MtrxCode2"), line.get("Quantity"),
             line.get("Price"), line.get("TrDisc")) for line in data.findall("OrderLineData")] == [
        ("TEE", "BLK", "M", "2", "20.00", "4.00"), ("MUG-STONE", None, None, "1", "12.50", "0.00")]
    assert dict(data.find("OrderChargeData").attrib) == {"Charge": "DEL-STD", "ChargeValue": "4.95"}
    assert data.find("OrderPaymentData").get("TranAmount") == "53.45"
    (sales_order,) = await sales_orders(sandbox, number)
    assert [(line["sku"], line["quantity"], line["net_amount"]) for line in sales_order["lines"]] == [
        ("TEE-BLK-M", 2, "36.00"), ("MUG-STONE", 1, "12.50")]
    assert (sales_order["shipping"]["description"], sales_order["shipping"]["amount"]) == ("DEL-STD", "4.95")
    assert Decimal(sales_order["totals"]["total"]) == command.sales_order.totals.total
    assert (sales_order["ship_to"]["name"], sales_order["ship_to"]["country_code"]) == ("Siobhán Ó Dálaigh", "IE")


async def test_given_an_order_in_prima_when_its_status_is_asked_then_prima_says_it_and_despatch_details(
        sandbox, adapter):
    command = paid_order(next(order_ids))
    await adapter.create_sales_order(command, [card_payment(command)])
    number = f"SHOP{command.shopify_order_id}"
    assert (await adapter.order_status(number)).status == "New"
    (sales_order,) = await sales_orders(sandbox, number)

    despatched = await sandbox.post(f"/_sandbox/sales-orders/{sales_order['sales_order_number']}/despatch", json={
        "parcels": [{"carrier": "DPD", "tracking_number": "15501234567890"}]})
    assert despatched.status_code == 200, despatched.text

    status = await adapter.order_status(number)
    assert (status.status, status.details["Carrier"], status.details["TrackingNumber"]) == (
        "Despatched", "DPD", "15501234567890")
    assert await adapter.order_status("SHOP404") is None


async def test_given_an_order_number_prima_holds_when_new_order_is_sent_again_then_refused_and_the_adapter_adopts(
        sandbox, adapter):
    command = paid_order(next(order_ids))
    document = adapter.new_order(command, [card_payment(command)])
    await adapter.create_sales_order(command, [card_payment(command)])
    number = f"SHOP{command.shopify_order_id}"

    repeated = read_answer(await adapter.soap.call(document))  # as a redelivered command would send it
    assert (repeated.ok, repeated.error) == (False, f"Order number {number} already exists")

    again = await adapter.create_sales_order(command.model_copy(update={"command_id": paid_order(1).command_id}),
                                             [card_payment(command)])
    assert (again.sales_order_number, again.adopted) == (number, True)
    assert len(await sales_orders(sandbox, number)) == 1


async def test_given_the_answer_to_new_order_is_lost_when_retried_then_order_status_finds_it_and_no_second_order(
        sandbox, adapter):
    command = paid_order(next(order_ids))
    await faults(sandbox, commit_then_drop_next=1)  # the NewOrder commits, its answer never arrives
    before = await omlink_posts(sandbox)

    created = await adapter.create_sales_order(command, [card_payment(command)])

    assert (created.sales_order_number, created.adopted) == (f"SHOP{command.shopify_order_id}", True)
    assert (await sandbox.get("/_sandbox/faults")).json()["counters"]["commit_then_drops"] == 1
    assert len(await sales_orders(sandbox, created.sales_order_number)) == 1
    assert await omlink_posts(sandbox) - before == 2  # the NewOrder (lost) and one OrderStatus; no resend


async def test_given_a_command_that_may_have_reached_prima_then_order_status_first_and_nothing_resent(
        sandbox, adapter):
    command = paid_order(next(order_ids))
    await adapter.create_sales_order(command, [card_payment(command)])
    before = await omlink_posts(sandbox)

    redriven = await adapter.create_sales_order(command, [card_payment(command)], may_have_reached_prima=True)

    assert redriven.adopted
    assert await omlink_posts(sandbox) - before == 1  # one OrderStatus


async def test_given_prima_unavailable_for_a_while_when_sent_then_retried_until_one_order(sandbox, adapter):
    command = paid_order(next(order_ids))
    await faults(sandbox, fail_next=2, fail_status=503)

    created = await adapter.create_sales_order(command, [card_payment(command)])

    assert not created.adopted  # the failures did nothing in Prima: the third attempt created it
    assert len(await sales_orders(sandbox, created.sales_order_number)) == 1


async def test_given_prima_unavailable_throughout_then_transient_with_the_attempts_and_nothing_created(
        sandbox, adapter):
    command = paid_order(next(order_ids))
    await faults(sandbox, fail_next=50, fail_status=503)

    with pytest.raises(PrimaUnavailable) as unavailable:
        await adapter.create_sales_order(command, [card_payment(command)])

    assert unavailable.value.attempts == 4
    await sandbox.delete("/_sandbox/faults")
    assert await sales_orders(sandbox, f"SHOP{command.shopify_order_id}") == []


async def test_given_a_product_prima_does_not_know_then_rejected_naming_prima_error_and_nothing_created(
        sandbox, adapter):
    command = paid_order(next(order_ids))
    sock = command.sales_order.lines[0].model_copy(update={"sku": "SOCK-RED-S", "item_id": "ITM-9999"})
    command = command.model_copy(update={"sales_order": command.sales_order.model_copy(update={"lines": (sock,)})})

    with pytest.raises(PrimaRejected) as rejected:
        await adapter.create_sales_order(command, [card_payment(command)])

    assert (rejected.value.code, rejected.value.reason) == ("request_error", "product SOCK/RED/S not found")
    assert await sales_orders(sandbox, f"SHOP{command.shopify_order_id}") == []


async def test_given_an_unmapped_shipping_method_then_rejected_naming_it_before_anything_is_sent(sandbox, adapter):
    command = paid_order(next(order_ids), shipping="Click & Collect")
    before = await omlink_posts(sandbox)

    with pytest.raises(PrimaRejected) as rejected:
        await adapter.create_sales_order(command, [card_payment(command)])

    assert rejected.value.code == "unmapped_charge_code" and "'Click & Collect'" in rejected.value.reason
    assert await omlink_posts(sandbox) == before


async def test_given_a_company_id_then_comwsomhandler_carries_it_and_an_unknown_company_is_refused(
        sandbox, sandbox_url):
    command = paid_order(next(order_ids))
    async with OmLinkAdapter(config(f"{sandbox_url}{SERVICE}", company_id="01")) as company:
        created = await company.create_sales_order(command, [card_payment(command)])
    assert (await sandbox.get(f"/_sandbox/omlink/orders/{created.sales_order_number}")).json()["company_id"] == "01"
    async with OmLinkAdapter(config(f"{sandbox_url}{SERVICE}", company_id="99")) as stranger:
        answer = read_answer(await stranger.soap.call(order_status_request(created.sales_order_number)))
    assert (answer.ok, answer.error) == (False, "unknown company '99'")


async def test_given_stock_in_prima_when_availability_is_read_by_range_then_each_page_holds_its_products(
        sandbox, sandbox_url):
    stock = [{"sku": "TEE-BLK-M", "warehouse": "WH-MAIN", "available": 25},
             {"sku": "TEE-BLK-L", "warehouse": "WH-MAIN", "available": 12},
             {"sku": "SOCK-RED-S", "warehouse": "WH-MAIN", "available": 7},
             {"sku": "ZIP-NAVY-L", "warehouse": "WH-MAIN", "available": -2},
             {"sku": "ODD", "warehouse": "WH-MAIN", "available": 5},
             {"sku": "TEE-BLK-M", "warehouse": "WH-NORTH", "available": 99}]
    assert (await sandbox.put("/_sandbox/stock", json={"stock": stock})).status_code == 200
    # ProductTo is included and compared as text: "T" would leave out "TEE", so a range ends at "TZZZZZ"
    ranges = [{"product_to": "MZZZZZ"}, {"product_from": "N", "product_to": "TZZZZZ"}, {"product_from": "U"}]

    async with OmLinkAdapter(config(f"{sandbox_url}{SERVICE}", availability_ranges=ranges)) as omlink:
        pages = [page async for page in omlink.availability()]
        assert [(str(p.product_range), p.levels) for p in pages] == [
            ("(first)..MZZZZZ", {"MUG-STONE": 40}),
            ("N..TZZZZZ", {"SOCK-RED-S": 7, "TEE-BLK-L": 12, "TEE-BLK-M": 25}),
            ("U..(last)", {"ZIP-NAVY-L": -2}),
        ]
        assert [(str(item), reason) for item, reason in pages[1].unmapped] == [
            ("ODD", "the pattern '{Product}-{MtrxCode1}-{MtrxCode2}' needs MtrxCode1, which is empty")]
        assert (pages[0].unmapped, pages[2].unmapped) == ((), ())
        assert {p.warehouse for p in pages} == {"WH-MAIN"}

        await sandbox.put("/_sandbox/stock", json={"stock": [{"sku": "TEE-BLK-M", "warehouse": "WH-MAIN",
                                                              "available": 3}]})
        again = [page async for page in omlink.availability()]
        assert again[1].levels["TEE-BLK-M"] == 3
