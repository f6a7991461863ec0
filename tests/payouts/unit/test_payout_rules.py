"""Given-when-then on the payout rules, each in its one place in domain/payouts: which category a
transaction type goes to (every value of Shopify's enum), the account mapping, the split of a
charge, whether a payout adds up, the journal (hand-computed, line by line), and matching."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from contracts.shopify_admin import admin_schema
from domain.payouts.accounts import AccountMapping
from domain.payouts.categories import TRANSACTION_TYPES, Category, categories_of
from domain.payouts.checks import HoldReason, payout_problem
from domain.payouts.journal import bank_amount, build_journal, reversal, unbalanced_by
from domain.payouts.matching import match_payout, match_transaction
from domain.payouts.split import allocate, charge_parts
from domain.payouts.values import CreditMemoDocument, Journal
from tests.payouts.builders import D, document, parts, payout, sample, transfer, tx

ACCOUNTS = AccountMapping()


def lines(journal: Journal) -> list[tuple[str, str, str, str]]:
    """(category, account, debit, credit) of each line, amounts as text."""
    return [(line.category, line.account, f"{line.debit}", f"{line.credit}") for line in journal.lines]


def balanced(journal: Journal, net: str) -> None:
    assert unbalanced_by(journal) == 0
    assert bank_amount(journal) == D(net)


# ------------------------------------------------------------------------------ categories


def test_every_transaction_type_of_shopifys_schema_has_a_category():
    enum = admin_schema().get_type("ShopifyPaymentsTransactionType")
    values = set(enum.values)
    assert len(values) > 90  # the 2025-01 schema has 93
    unmapped = sorted(v for v in values if categories_of(v) is None)
    assert unmapped == []
    assert set(TRANSACTION_TYPES) - values == set()  # and the table names no type Shopify lacks


def test_a_type_shopify_adds_later_has_no_category_and_holds_the_payout():
    header = payout("10.00")
    found = payout_problem(header, [tx("SOME_NEW_CREDIT", "10.00")])
    assert found is not None and found.reason is HoldReason.UNMAPPED_TRANSACTION_TYPE
    assert "SOME_NEW_CREDIT" in found.detail


def test_dispute_fees_go_to_dispute_fees_and_charge_fees_to_processing_fees():
    assert categories_of("DISPUTE_WITHDRAWAL") == (Category.CHARGEBACKS, Category.DISPUTE_FEES)
    assert categories_of("CHARGE") == (Category.SALES, Category.PROCESSING_FEES)
    assert categories_of("RESERVED_FUNDS_WITHDRAWAL")[0] is Category.RESERVES


# ------------------------------------------------------------------------------ the account mapping


def test_the_default_mapping_has_an_account_for_every_category():
    assert {str(c) for c in ACCOUNTS.categories} == {str(c) for c in Category}


def test_a_mapping_without_a_category_is_refused_naming_it():
    partial = {str(c): {"account": "1000"} for c in Category if c is not Category.DISPUTE_FEES}
    with pytest.raises(ValidationError, match="no account for category dispute_fees"):
        AccountMapping(categories=partial)


def test_a_misspelt_category_or_key_is_refused_by_name(monkeypatch):
    from services.platform.settings import Settings

    for name in [n for n in os.environ if n.startswith("SHOPIFY_PRIMA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SHOPIFY_PRIMA_PAYOUT_ACCOUNTS", '{"categories": {"salse": {"account": "4000"}}}')
    with pytest.raises(ValidationError, match="salse"):
        Settings(_env_file=None)
    monkeypatch.setenv("SHOPIFY_PRIMA_PAYOUT_ACCOUNTS", '{"tax": {"default": {"acount": "2200"}}}')
    with pytest.raises(ValidationError, match="acount"):
        Settings(_env_file=None)
    monkeypatch.setenv("SHOPIFY_PRIMA_PAYOUT_ACCOUNTS", '{"tax": {"default": {"account": "22 00"}}}')
    with pytest.raises(ValidationError, match="account"):
        Settings(_env_file=None)
    monkeypatch.delenv("SHOPIFY_PRIMA_PAYOUT_ACCOUNTS")
    monkeypatch.setenv("SHOPIFY_PRIMA_PAYOUT_JOURNAL_ON", '["IN_TRANSIT"]')
    with pytest.raises(ValidationError, match="PAID"):
        Settings(_env_file=None)
    monkeypatch.setenv("SHOPIFY_PRIMA_PAYOUT_JOURNAL_ON", '["PAID", "IN_TRANSIT"]')
    assert Settings(_env_file=None).payout_journal_on == {"PAID", "IN_TRANSIT"}


# ------------------------------------------------------------------------------ the split of a charge


def test_shares_add_up_to_the_amount_to_the_cent():
    assert allocate(D("100.00"), [D(1), D(1), D(1)]) == [D("33.34"), D("33.33"), D("33.33")]
    assert allocate(D("118.50"), [D("100.00"), D("20.00")]) == [D("98.75"), D("19.75")]
    assert allocate(D("45.00"), [D("60.00"), D("-10.00")]) == [D("54.00"), D("-9.00")]
    assert sum(allocate(D("0.05"), [D("3"), D("3"), D("3")])) == D("0.05")
    with pytest.raises(ValueError):
        allocate(D("1.00"), [D("5"), D("-5")])


def test_a_charge_of_the_whole_order_gets_exactly_the_orders_parts():
    order = document(1001, parts("100.00", shipping="10.00", taxes=(("VAT", "0.08", "8.80"),)))
    found = charge_parts(D("118.80"), order)
    assert [(p.category, p.amount) for p in found] == [("sales", D("100.00")), ("shipping", D("10.00")),
                                                       ("tax", D("8.80"))]


def test_a_whole_order_charge_taken_as_its_parts_is_what_the_proportional_split_gives():
    # charge_parts takes a whole-order charge's parts as they are (no arithmetic, ten thousand
    # times a payout): the same as allocating the charge over them
    for n in range(1, 200):
        order = document(n, parts(f"{n * 1.37:.2f}", shipping="7.95", discounts=f"{n % 7:.2f}",
                                  taxes=(("NY State Tax", "0.04", f"{n * 0.05:.2f}"), ("NYC", "0.04875", "0.33"))))
        whole = sum((p.amount for p in order.parts), D("0.00"))
        assert [p.amount for p in charge_parts(whole, order)] == allocate(whole, [p.amount for p in order.parts])


def test_without_the_orders_parts_there_is_no_split():
    assert charge_parts(D("10.00"), None) is None
    assert charge_parts(D("10.00"), document(1, ())) is None


# ------------------------------------------------------------------------------ adding up


def test_the_shared_sample_does_not_add_up_and_names_the_difference():
    header, transactions = sample()
    found = payout_problem(header, transactions)
    assert found is not None and found.reason is HoldReason.DOES_NOT_ADD_UP
    assert found.difference == D("39.48")  # 81.38 - 41.90
    assert "81.38" in found.detail and "41.90" in found.detail and "39.48" in found.detail
    assert "amount - fee other than their net" in found.detail  # its adjustment of -1.50 - -0.25 != -1.75


def test_a_transaction_whose_amount_and_fee_do_not_give_its_net_holds_the_payout():
    header = payout("7.00")
    found = payout_problem(header, [tx("CHARGE", "10.00", "2.00", net="8.00"), tx("ADJUSTMENT", "-1.50", "0.25",
                                                                                     net="-1.00")])
    assert found is not None and found.reason is HoldReason.TRANSACTION_INCONSISTENT
    assert "-1.50 - 0.25 != -1.00" in found.detail


def test_a_transaction_in_another_currency_holds_the_payout():
    found = payout_problem(payout("10.00"), [tx("CHARGE", "10.00", currency="EUR")])
    assert found is not None and found.reason is HoldReason.CURRENCY_MISMATCH and "EUR" in found.detail


def test_the_payouts_own_transfer_must_be_its_net():
    header = payout("10.00")
    assert payout_problem(header, [tx("CHARGE", "10.00"), transfer(header)]) is None
    found = payout_problem(header, [tx("CHARGE", "10.00"), tx("TRANSFER", "-9.00", source_id=header.payout_id)])
    assert found is not None and found.reason is HoldReason.DOES_NOT_ADD_UP


# ------------------------------------------------------------------------------ journals, hand-computed

ORDER_1001 = document(1001, parts("100.00", shipping="10.00", taxes=(("VAT", "0.08", "8.80"),)),
                      sales_order="SO-000001")
ORDER_1002 = document(1002, parts("60.00", discounts="10.00"), sales_order="SO-000002")


def test_given_a_simple_payout_the_journal_credits_sales_shipping_and_tax_and_debits_fees_and_bank():
    header = payout("115.04")
    journal = build_journal(header, [tx("CHARGE", "118.80", "3.76", order=1001), transfer(header)], ACCOUNTS,
                            {1001: ORDER_1001})
    assert lines(journal) == [
        ("bank", "1010", "115.04", "0.00"),
        ("sales", "4000", "0.00", "100.00"),
        ("shipping", "4100", "0.00", "10.00"),
        ("tax", "2200", "0.00", "8.80"),
        ("processing_fees", "6100", "3.76", "0.00"),
    ]
    assert journal.lines[3].description == "Sales tax: VAT 8%" and journal.lines[3].tax_code == "TAX"
    assert journal.external_reference == "shopify-payout:700001"
    balanced(journal, "115.04")


def test_given_a_refund_and_fees_the_refund_is_debited_and_the_fees_add_up():
    header = payout("143.29")
    transactions = [tx("CHARGE", "118.80", "3.76", order=1001), tx("CHARGE", "50.00", "1.75", order=1002),
                    tx("REFUND", "-20.00", order=1001)]
    journal = build_journal(header, transactions, ACCOUNTS, {1001: ORDER_1001, 1002: ORDER_1002})
    assert lines(journal) == [
        ("bank", "1010", "143.29", "0.00"),
        ("sales", "4000", "0.00", "160.00"),
        ("shipping", "4100", "0.00", "10.00"),
        ("discounts", "4900", "10.00", "0.00"),
        ("tax", "2200", "0.00", "8.80"),
        ("refunds", "4950", "20.00", "0.00"),
        ("processing_fees", "6100", "5.51", "0.00"),
    ]
    balanced(journal, "143.29")


def test_given_a_dispute_lost_then_won_the_chargeback_and_its_fee_come_back():
    lost = payout("98.90", payout_id=700_002)
    journal = build_journal(lost, [tx("DISPUTE_WITHDRAWAL", "-80.00", "15.00", order=1003),
                                   tx("CHARGE", "200.00", "6.10", order=1004)], ACCOUNTS,
                            {1004: document(1004, parts("200.00"))})
    assert lines(journal) == [
        ("bank", "1010", "98.90", "0.00"),
        ("sales", "4000", "0.00", "200.00"),
        ("processing_fees", "6100", "6.10", "0.00"),
        ("chargebacks", "4960", "80.00", "0.00"),
        ("dispute_fees", "6110", "15.00", "0.00"),
    ]
    balanced(journal, "98.90")

    won = payout("95.00", payout_id=700_003)
    journal = build_journal(won, [tx("DISPUTE_REVERSAL", "80.00", "-15.00", order=1003)], ACCOUNTS, {})
    assert lines(journal) == [("bank", "1010", "95.00", "0.00"), ("chargebacks", "4960", "0.00", "80.00"),
                              ("dispute_fees", "6110", "0.00", "15.00")]
    balanced(journal, "95.00")

    fee_only = payout("-15.00", payout_id=700_004)
    journal = build_journal(fee_only, [tx("CHARGEBACK_FEE", "-15.00")], ACCOUNTS, {})
    assert lines(journal) == [("bank", "1010", "0.00", "15.00"), ("dispute_fees", "6110", "15.00", "0.00")]


def test_given_a_reserve_held_then_released_the_reserve_account_carries_it():
    held = payout("385.20", payout_id=700_005)
    journal = build_journal(held, [tx("CHARGE", "500.00", "14.80", order=1005),
                                   tx("RESERVED_FUNDS_WITHDRAWAL", "-100.00")], ACCOUNTS,
                            {1005: document(1005, parts("500.00"))})
    assert lines(journal) == [("bank", "1010", "385.20", "0.00"), ("sales", "4000", "0.00", "500.00"),
                              ("processing_fees", "6100", "14.80", "0.00"), ("reserves", "1280", "100.00", "0.00")]
    balanced(journal, "385.20")

    released = payout("100.00", payout_id=700_006)
    journal = build_journal(released, [tx("RESERVED_FUNDS_REVERSAL", "100.00")], ACCOUNTS, {})
    assert lines(journal) == [("bank", "1010", "100.00", "0.00"), ("reserves", "1280", "0.00", "100.00")]


def test_given_an_adjustment_it_has_its_own_line():
    header = payout("45.75")
    journal = build_journal(header, [tx("CHARGE", "50.00", "1.75", order=1006), tx("ADJUSTMENT", "-2.50")],
                            ACCOUNTS, {1006: document(1006, parts("50.00"))})
    assert lines(journal) == [("bank", "1010", "45.75", "0.00"), ("sales", "4000", "0.00", "50.00"),
                              ("processing_fees", "6100", "1.75", "0.00"), ("adjustments", "6190", "2.50", "0.00")]
    balanced(journal, "45.75")


def test_given_a_charge_paid_in_another_currency_the_payout_currency_amount_is_split_to_the_cent():
    # the shop is in USD, the customer paid in EUR: Shopify states the charge in the payout's USD
    order = document(1007, parts("100.00", taxes=(("DE MwSt", "0.20", "20.00"),)), presentment="EUR")
    header = payout("114.76")
    charge = tx("CHARGE", "118.50", "3.74", order=1007, source_transaction=55)
    journal = build_journal(header, [charge], ACCOUNTS, {1007: order})
    assert lines(journal) == [("bank", "1010", "114.76", "0.00"), ("sales", "4000", "0.00", "98.75"),
                              ("tax", "2200", "0.00", "19.75"), ("processing_fees", "6100", "3.74", "0.00")]
    assert journal.lines[2].description == "Sales tax: DE MwSt 20%"
    balanced(journal, "114.76")
    # and the charge matches its sales order: no order amount in USD to compare it with
    assert match_transaction(charge, {1007: order}).status == "matched"


def test_given_taxes_of_two_jurisdictions_each_has_its_line_account_and_tax_code():
    accounts = AccountMapping(tax={"default": {"account": "2200", "tax_code": "TAX"},
                                   "by_title": {"CA State Tax": {"account": "2210", "tax_code": "CA"}}})
    order = document(1008, parts("100.00", taxes=(("CA State Tax", "0.0725", "7.25"),
                                                   ("Los Angeles County Tax", "0.0025", "0.25"))))
    header = payout("107.50")
    journal = build_journal(header, [tx("CHARGE", "107.50", order=1008)], accounts, {1008: order})
    taxes = [(line.account, line.tax_code, line.credit, line.description) for line in journal.lines
             if line.category == "tax"]
    assert taxes == [("2210", "CA", D("7.25"), "Sales tax: CA State Tax 7.25%"),
                     ("2200", "TAX", D("0.25"), "Sales tax: Los Angeles County Tax 0.25%")]


def test_a_charge_whose_order_is_not_known_goes_whole_to_the_unmatched_charges_clearing_account():
    header = payout("9.70")
    journal = build_journal(header, [tx("CHARGE", "10.00", "0.30", order=4242)], ACCOUNTS, {})
    assert lines(journal) == [("bank", "1010", "9.70", "0.00"), ("unmatched_charges", "1290", "0.00", "10.00"),
                              ("processing_fees", "6100", "0.30", "0.00")]


def test_a_withdrawal_credits_the_bank():
    header = payout("-30.00")
    journal = build_journal(header, [tx("REFUND", "-30.00", order=1001)], ACCOUNTS, {})
    assert lines(journal) == [("bank", "1010", "0.00", "30.00"), ("refunds", "4950", "30.00", "0.00")]


def test_a_reversal_swaps_every_line_and_names_the_journal_it_reverses():
    header = payout("115.04")
    journal = build_journal(header, [tx("CHARGE", "118.80", "3.76", order=1001)], ACCOUNTS, {1001: ORDER_1001})
    undo = reversal(journal, "JN-000007", header.issued_at)
    assert undo.reverses == "JN-000007" and undo.external_reference == "shopify-payout:700001:reversal"
    assert [(line.debit, line.credit) for line in undo.lines] == [(line.credit, line.debit) for line in journal.lines]
    assert bank_amount(undo) == D("-115.04") and unbalanced_by(undo) == 0


# ------------------------------------------------------------------------------ matching


def test_a_charge_matches_its_orders_sales_order_when_the_amount_is_the_orders():
    charge = tx("CHARGE", "118.80", "3.76", order=1001)
    found = match_transaction(charge, {1001: ORDER_1001})
    assert (found.status, found.document, found.document_kind, found.reason) == ("matched", "SO-000001",
                                                                                  "sales_order", None)


def test_a_charge_of_another_amount_than_its_payment_is_unmatched_with_both_figures():
    order = document(1009, parts("100.00"), payments=((77, "60.00"), (78, "40.00")))
    assert match_transaction(tx("CHARGE", "60.00", order=1009, source_transaction=77), {1009: order}).status == \
        "matched"  # a split payment: this charge is its payment transaction's 60.00
    found = match_transaction(tx("CHARGE", "55.00", order=1009, source_transaction=78), {1009: order})
    assert (found.status, found.reason) == ("unmatched", "amount_differs")
    assert "55.00" in found.detail and "40.00" in found.detail and found.document == "SO-000001"


def test_unmatched_reasons_an_order_never_seen_no_sales_order_and_no_order_at_all():
    assert match_transaction(tx("CHARGE", "10.00", order=5555), {}).reason == "order_not_seen"
    no_so = document(1010, parts("10.00"), sales_order=None)
    assert match_transaction(tx("CHARGE", "10.00", order=1010), {1010: no_so}).reason == "no_sales_order"
    assert match_transaction(tx("CHARGE", "10.00"), {}).reason == "no_order"
    assert match_transaction(tx("RESERVED_FUNDS", "-10.00"), {}).status == "not_applicable"
    assert match_transaction(tx("ADJUSTMENT", "1.00", order=1010), {1010: no_so}).status == "not_applicable"


def test_a_dispute_matches_its_orders_sales_order():
    found = match_transaction(tx("DISPUTE_WITHDRAWAL", "-118.80", "15.00", order=1001), {1001: ORDER_1001})
    assert (found.status, found.document) == ("matched", "SO-000001")


def test_a_refund_waits_for_its_credit_memo_then_matches_it_by_its_transaction():
    refund = tx("REFUND", "-20.00", order=1001, source_transaction=9001)
    found = match_transaction(refund, {1001: ORDER_1001})
    assert (found.status, found.reason) == ("unmatched", "awaiting_credit_memo")
    with_memos = document(1001, ORDER_1001.parts, credit_memos=(
        CreditMemoDocument("CM-000001", refund_id=1, amount=D("5.00"), transaction_ids=(9000,)),
        CreditMemoDocument("CM-000002", refund_id=2, amount=D("20.00"), transaction_ids=(9001,))))
    found = match_transaction(refund, {1001: with_memos})
    assert (found.status, found.document, found.document_kind) == ("matched", "CM-000002", "credit_memo")


def test_two_refunds_of_the_same_amount_match_two_credit_memos():
    memos = (CreditMemoDocument("CM-000003", refund_id=3, amount=D("5.00")),
             CreditMemoDocument("CM-000004", refund_id=4, amount=D("5.00")))
    order = document(1011, parts("20.00"), credit_memos=memos)
    found = match_payout([tx("REFUND", "-5.00", order=1011), tx("REFUND", "-5.00", order=1011),
                          tx("REFUND", "-5.00", order=1011)], {1011: order})
    assert [(m.status, m.document) for m in found] == [("matched", "CM-000003"), ("matched", "CM-000004"),
                                                        ("unmatched", None)]
