"""Given-when-then on payments through other gateways (domain/payouts/clearing.py): the clearing
accounts' configuration, validated; each sales order's total split into where its money is
(paid out by Shopify Payments, a gateway's clearing account, or a difference named), the shares
hand-computed and always adding up to the total; the gateways as the order webhook states them
(contracts/shopify/orders.py payment_gateway_names); and a Shopify Payments charge for only part
of an order also paid through another gateway, matched (domain/payouts/matching.py)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from decimal import Decimal

import pytest
from pydantic import ValidationError

from contracts.shopify.orders import ShopifyOrder
from domain.payouts.application import PayoutApplication
from domain.payouts.clearing import (
    DEFAULT_CLEARING_ACCOUNTS,
    PAYOUT_FLOW,
    Charge,
    ClearingAccounts,
    OrderPayments,
    Share,
    ShareKind,
    allocate,
)
from domain.payouts.domainmodel import PayoutPolicy
from domain.payouts.matching import match_transaction
from services.platform.settings import Settings
from tests.payouts.builders import (
    NOW,
    SAMPLES,
    document,
    parts,
    payout,
    read,
    transfer,
    tx,
)

D = Decimal
ACCOUNTS = ClearingAccounts()
SAMPLE_ORDER = SAMPLES / "orders-create-test-notification.json"  # Shopify's sample (../shared/reference)


def order(total: str, *gateways: str, charges: tuple[tuple[str, bool], ...] = (),
          stated: tuple[tuple[str, str], ...] = ()) -> OrderPayments:
    return OrderPayments(order_id=1001, total=D(total), gateways=gateways,
                         gateway_amounts=tuple((g, D(a)) for g, a in stated),
                         charges=tuple(Charge(D(a), within) for a, within in charges))


def shares(found: list[Share]) -> list[tuple[str, str, str | None, str | None]]:
    return [(str(s.kind), str(s.amount), s.account, s.gateway) for s in found]


# ------------------------------------------------------------------------------ configuration


def test_the_default_names_shopify_payments_as_the_payout_flow_and_a_clearing_account_per_other_gateway():
    assert ACCOUNTS.root == DEFAULT_CLEARING_ACCOUNTS
    assert ACCOUNTS.pays_out("shopify_payments") and ACCOUNTS.account("shopify_payments") == PAYOUT_FLOW
    assert [ACCOUNTS.account(g) for g in ("paypal", "gift_card", "manual", "Cash on Delivery (COD)")] == [
        "1250", "2400", "1260", None]


def test_gateway_names_are_compared_without_case_or_surrounding_spaces():
    accounts = ClearingAccounts({"Shopify_Payments": "payouts", " PayPal ": "1251"})
    assert accounts.root == {"shopify_payments": "payouts", "paypal": "1251"}
    assert accounts.account("PAYPAL") == "1251"


@pytest.mark.parametrize(("mapping", "message"), [
    ({"paypal": "1250"}, "'shopify_payments' must be 'payouts'"),
    ({"shopify_payments": "1010"}, "'shopify_payments' must be 'payouts'"),
    ({"shopify_payments": "payouts", "PayPal": "1250", "paypal": "1251"}, "gateway 'paypal' given twice"),
    ({"shopify_payments": "payouts", "paypal": "12 50"}, "is neither an account code nor 'payouts'"),
    ({"shopify_payments": "payouts", " ": "1250"}, "an empty gateway name"),
])
def test_a_bad_clearing_mapping_is_refused_by_name(mapping, message):
    with pytest.raises(ValidationError, match=message):
        ClearingAccounts(mapping)


def test_the_setting_reads_a_json_object_and_refuses_a_bad_one(monkeypatch):
    monkeypatch.setenv("SHOPIFY_PRIMA_PAYOUT_CLEARING_ACCOUNTS",
                       '{"shopify_payments": "payouts", "paypal": "1251", "Cash on Delivery (COD)": "1261"}')
    assert Settings().payout_clearing_accounts.account("cash on delivery (cod)") == "1261"
    monkeypatch.setenv("SHOPIFY_PRIMA_PAYOUT_CLEARING_ACCOUNTS", '{"paypal": "1251"}')
    with pytest.raises(ValidationError, match="must be 'payouts'"):
        Settings()


# ------------------------------------------------------------------------------ one order's money


def test_an_order_paid_through_shopify_payments_and_paid_out_in_the_month():
    assert shares(allocate(order("118.80", "shopify_payments", charges=(("118.80", True),)), ACCOUNTS)) == [
        ("paid_out", "118.80", None, None)]


def test_an_order_paid_through_shopify_payments_paid_out_after_the_month_or_not_yet():
    assert shares(allocate(order("50.00", "shopify_payments", charges=(("50.00", False),)), ACCOUNTS)) == [
        ("paid_out_later", "50.00", None, None)]
    assert shares(allocate(order("50.00", "shopify_payments"), ACCOUNTS)) == [
        ("awaiting_payout", "50.00", None, None)]


def test_an_order_paid_through_paypal_goes_to_the_paypal_clearing_account():
    assert shares(allocate(order("64.20", "paypal"), ACCOUNTS)) == [("clearing", "64.20", "1250", "paypal")]


def test_a_manual_payment_named_in_capitals_goes_to_the_manual_clearing_account():
    assert shares(allocate(order("20.00", "Manual"), ACCOUNTS)) == [("clearing", "20.00", "1260", "manual")]


def test_a_gift_card_beside_shopify_payments_is_the_rest_once_the_payout_carried_the_card_payment():
    # 100.00 ordered: 60.00 charged to a card (paid out), 40.00 from a gift card
    found = allocate(order("100.00", "gift_card", "shopify_payments", charges=(("60.00", True),)), ACCOUNTS)
    assert shares(found) == [("paid_out", "60.00", None, None), ("clearing", "40.00", "2400", "gift_card")]


def test_a_gift_card_beside_shopify_payments_before_any_payout_is_a_split_not_known_yet():
    found = allocate(order("100.00", "gift_card", "shopify_payments"), ACCOUNTS)
    assert shares(found) == [("several_gateways", "100.00", None, "gift_card, shopify_payments")]


def test_amounts_the_order_states_per_gateway_split_it_before_any_payout():
    found = allocate(order("100.00", "gift_card", "shopify_payments", stated=(("gift_card", "40.00"),
                                                                              ("shopify_payments", "60.00"))),
                     ACCOUNTS)
    assert shares(found) == [("clearing", "40.00", "2400", "gift_card"), ("awaiting_payout", "60.00", None, None)]


def test_two_other_gateways_without_stated_amounts_are_named_together():
    assert shares(allocate(order("80.00", "paypal", "gift_card"), ACCOUNTS)) == [
        ("several_gateways", "80.00", None, "paypal, gift_card")]
    assert shares(allocate(order("80.00", "paypal", "gift_card", stated=(("paypal", "30.00"), ("gift_card", "50.00"))),
                           ACCOUNTS)) == [("clearing", "30.00", "1250", "paypal"), ("clearing", "50.00", "2400",
                                                                                     "gift_card")]


def test_a_gateway_without_a_clearing_account_is_named():
    assert shares(allocate(order("35.00", "Cash on Delivery (COD)"), ACCOUNTS)) == [
        ("unmapped_gateway", "35.00", None, "cash on delivery (cod)")]


def test_an_order_whose_gateways_were_never_recorded():
    assert shares(allocate(order("12.00"), ACCOUNTS)) == [("gateway_not_recorded", "12.00", None, None)]
    # a charge paid out for it still counts: only the rest is not explained by a gateway
    assert shares(allocate(order("12.00", charges=(("10.00", True),)), ACCOUNTS)) == [
        ("paid_out", "10.00", None, None), ("gateway_not_recorded", "2.00", None, None)]


def test_more_paid_out_than_the_order_total_is_a_negative_difference():
    assert shares(allocate(order("100.00", "shopify_payments", charges=(("100.00", True), ("20.00", True))),
                           ACCOUNTS)) == [("paid_out", "120.00", None, None), ("paid_out_over_total", "-20.00", None, None)]


def test_stated_payments_short_of_the_total_are_named():
    assert shares(allocate(order("100.00", "paypal", stated=(("paypal", "70.00"),)), ACCOUNTS)) == [
        ("clearing", "70.00", "1250", "paypal"), ("payments_differ", "30.00", None, None)]


def test_every_order_splits_into_shares_adding_up_to_its_total():
    gateways = ((), ("shopify_payments",), ("paypal",), ("gift_card", "shopify_payments"), ("paypal", "gift_card"),
                ("unknown",), ("shopify_payments", "unknown"))
    charges = ((), (("30.00", True),), (("30.00", False), ("100.00", True)), (("250.00", True),))
    stated = ((), (("paypal", "20.00"),), (("gift_card", "15.00"), ("shopify_payments", "10.00")))
    for names, paid, said in itertools.product(gateways, charges, stated):
        found = allocate(order("120.00", *names, charges=paid, stated=said), ACCOUNTS)
        assert sum((s.amount for s in found), D("0.00")) == D("120.00"), (names, paid, said, found)
        assert all(s.amount != 0 for s in found)
        assert all(s.account is not None for s in found if s.kind is ShareKind.CLEARING)


# ------------------------------------------------------------------------------ the order webhook


def test_the_order_webhook_carries_its_payment_gateway_names():
    body = json.loads(SAMPLE_ORDER.read_text())
    assert ShopifyOrder.from_webhook(body).payment_gateway_names == ("visa", "bogus")  # Shopify's own sample
    assert ShopifyOrder.from_webhook({**body, "payment_gateway_names": ["gift_card", "shopify_payments"]}
                                     ).payment_gateway_names == ("gift_card", "shopify_payments")
    absent = {k: v for k, v in body.items() if k != "payment_gateway_names"}
    assert ShopifyOrder.from_webhook(absent).payment_gateway_names == ()


def test_payment_gateway_names_that_are_not_a_list_of_strings_are_refused():
    body = json.loads(SAMPLE_ORDER.read_text())
    for bad in ("paypal", [1], [{"name": "paypal"}]):
        with pytest.raises(ValueError, match="payment_gateway_names"):
            ShopifyOrder.from_webhook({**body, "payment_gateway_names": bad})


# ------------------------------------------------------------------------------ matching a part paid


GIFT_AND_CARD = document(1001, parts("100.00"), gateways=("gift_card", "shopify_payments"))


def test_a_charge_below_the_total_of_an_order_also_paid_by_a_gift_card_matches_its_sales_order():
    found = match_transaction(tx("CHARGE", "60.00", "2.04", order=1001), {1001: GIFT_AND_CARD})
    assert (found.status, found.document, found.reason) == ("matched", "SO-000001", None)


def test_a_charge_below_the_total_of_an_order_paid_only_through_shopify_payments_still_differs():
    only_card = replace(GIFT_AND_CARD, gateways=("shopify_payments",))
    found = match_transaction(tx("CHARGE", "60.00", "2.04", order=1001), {1001: only_card})
    assert (found.status, found.reason) == ("unmatched", "amount_differs")
    unrecorded = replace(GIFT_AND_CARD, gateways=())
    assert match_transaction(tx("CHARGE", "60.00", order=1001), {1001: unrecorded}).reason == "amount_differs"


def test_a_charge_above_the_total_or_against_its_stated_payment_still_differs():
    assert match_transaction(tx("CHARGE", "120.00", order=1001), {1001: GIFT_AND_CARD}).reason == "amount_differs"
    with_payment = replace(GIFT_AND_CARD, payments=((55, D("70.00")),))
    found = match_transaction(tx("CHARGE", "60.00", order=1001, source_transaction=55), {1001: with_payment})
    assert (found.status, found.reason) == ("unmatched", "amount_differs")  # the payment Shopify states is 70.00


def test_a_gateway_configured_as_paying_out_is_not_another_gateway():
    cards_too = ClearingAccounts({"shopify_payments": "payouts", "gift_card": "payouts"})
    found = match_transaction(tx("CHARGE", "60.00", order=1001), {1001: GIFT_AND_CARD}, clearing=cards_too)
    assert found.reason == "amount_differs"


def test_the_payout_matches_a_card_charge_of_a_gift_card_order_with_its_policys_clearing_accounts():
    app = PayoutApplication()
    try:
        header = payout("57.96")
        charge = tx("CHARGE", "60.00", "2.04", order=1001)
        documents = {1001: GIFT_AND_CARD}
        app.handle(read(header, [charge, transfer(header)]), lambda ids: documents, PayoutPolicy(), NOW)
        found = app.find_payout(700_001)
        assert found.matches[charge.transaction_id].status == "matched" and found.unmatched == 0
        assert [(x.category, x.debit, x.credit) for x in found.command.journal.lines] == [
            ("bank", D("57.96"), D("0.00")), ("sales", D("0.00"), D("60.00")), ("processing_fees", D("2.04"), D("0.00"))]
    finally:
        app.close()
