"""How the order was paid, on the sales order (domain/orders/sales_order.py `payments_of`): Prima's
OM link records it (OrderPaymentData); the rule says which payments Shopify's order states."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from contracts.shopify.orders import ShopifyOrder
from domain.orders.sales_order import payments_of
from domain.orders.values import PaymentTransaction, SalesOrderPayment
from domain.shared.money import Money
from services.orders.translate import snapshot, wire_order
from tests.orders.builders import Line, order

D = Decimal
TEE = Line("TSHIRT-BLK-M", "Tee", D("20.00"), 2)


def paid(**changes) -> object:
    return replace(order(9001, [TEE], taxes_included=True, currency="EUR"), **changes)


def txn(kind: str, amount: str, gateway: str, *, status: str = "success", currency: str = "EUR",
        transaction_id: int = 1) -> PaymentTransaction:
    return PaymentTransaction(transaction_id=transaction_id, kind=kind, status=status,
                              amount=Money(D(amount), currency), gateway=gateway)


def test_given_an_order_paid_webhook_naming_one_gateway_then_one_payment_of_the_total_through_it():
    assert payments_of(paid(payment_gateways=("shopify_payments",))) == (
        SalesOrderPayment(gateway="shopify_payments", amount=D("40.00")),)


def test_given_the_orders_transactions_then_each_successful_sale_or_capture_is_a_payment_with_its_id():
    order_ = paid(payment_gateways=("gift_card", "shopify_payments"), transactions=(
        txn("authorization", "30.00", "shopify_payments", transaction_id=1),
        txn("capture", "30.00", "shopify_payments", transaction_id=2),
        txn("sale", "10.00", "gift_card", transaction_id=3),
        txn("sale", "10.00", "paypal", status="failure", transaction_id=4),
    ))
    assert payments_of(order_) == (
        SalesOrderPayment(gateway="shopify_payments", amount=D("30.00"), transaction_id="2"),
        SalesOrderPayment(gateway="gift_card", amount=D("10.00"), transaction_id="3"))


def test_given_several_gateways_and_no_amounts_then_no_payment_is_stated_rather_than_a_guessed_split():
    assert payments_of(paid(payment_gateways=("gift_card", "shopify_payments"))) == ()


def test_given_no_gateway_named_and_no_transactions_then_no_payment():
    assert payments_of(paid()) == ()


def test_given_a_transaction_in_another_currency_then_it_is_not_taken_as_paid_in_the_orders_currency():
    order_ = paid(payment_gateways=("shopify_payments",),
                  transactions=(txn("sale", "43.00", "shopify_payments", currency="USD"),))
    assert payments_of(order_) == (SalesOrderPayment(gateway="shopify_payments", amount=D("40.00")),)


def test_given_the_webhooks_gateway_names_then_they_survive_the_order_events_round_trip():
    order_ = paid(payment_gateways=("paypal",))
    wire = wire_order(order_)
    assert wire.payment_gateway_names == ("paypal",)
    assert snapshot(ShopifyOrder.model_validate(wire.model_dump(mode="json"))).payment_gateways == ("paypal",)
