"""The Shopify order fact, normalized from a webhook body (REST representation).

Shop money is what the ledger uses: every amount here is in the shop's currency, taken from the
`*_set.shop_money` twin where Shopify sends one. Shopify's tax amounts are the truth and are
carried as stated, never recomputed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.money import Money
from contracts.shopify.refunds import ShopifyRefund
from contracts.validation import (
    Code,
    CurrencyCode,
    Email,
    Id,
    Lines,
    Quantity,
    Rate,
    Text,
    not_negative,
    one_currency,
    parse_json,
    within_amount_range,
)

# topics whose body is the order (orders/edited too when its body is the order: contracts/shopify/refunds.py)
ORDER_WEBHOOK_TOPICS = ("orders/create", "orders/paid", "orders/updated", "orders/cancelled")
MAX_WEBHOOK_ID_LENGTH = 255  # Shopify's are UUIDs; the ingest refuses longer ones (400) before storing
OrderWebhookTopic = Literal["orders/create", "orders/paid", "orders/updated", "orders/cancelled", "orders/edited"]
LineKind = Literal["product", "tip", "gift_card", "custom"]
MAX_ORDER_UNITS = 1_000_000  # units in one order: their sums stay far within the integer columns


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class TaxLine(_Frozen):
    title: Text
    rate: Rate | None = None
    amount: Money


class LineItem(_Frozen):
    id: Id
    sku: Code | None
    title: Text
    variant_id: Id | None = None
    quantity: Quantity
    unit_price: Money
    discount: Money  # sum of the line's discount allocations (line and order-level discounts)
    tax_lines: Lines(TaxLine) = ()
    # what is left after edits and refunds (REST current_quantity, 2024-01 on); None: not stated
    current_quantity: Quantity | None = None
    # product; tip (tip_payment_gateway); gift_card (gift_card: true); custom (no product, no variant)
    kind: LineKind = "product"
    discounted_total: Money | None = None  # the line after discounts, where the source states it


class ShippingAddress(_Frozen):
    name: Text | None = None
    company: Text | None = None
    address1: Text | None = None
    address2: Text | None = None
    city: Text | None = None
    province_code: Code | None = None
    zip: Code | None = None
    country_code: Code | None = None
    phone: Code | None = None


class ShippingLine(_Frozen):
    id: Id | None = None
    title: Text
    code: Text | None = None
    price: Money
    discount: Money
    tax_lines: Lines(TaxLine) = ()


class Transaction(_Frozen):
    """A payment transaction, where the source carries them (reconciler, order_transactions)."""

    id: Id | None = None
    kind: Code  # authorization, capture, sale, void, refund
    status: Code  # success, pending, failure, error
    amount: Money | None = None
    gateway: Code | None = None  # gift_card: a gift card paid (a tender, not a discount)


class ShopifyOrder(_Frozen):
    """An order as Shopify sent it, in its shop currency: every amount of the order is in that
    currency, none is negative, and together (a line's unit price times its quantity included)
    they stay within numeric(18, 2) (contracts/validation.py)."""

    id: Id
    name: Code
    order_number: Id | None = None
    email: Email | None = None
    currency: CurrencyCode  # the shop currency
    presentment_currency: CurrencyCode | None = None
    taxes_included: bool
    financial_status: Code | None = None
    test: bool = False
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None = None
    cancelled_at: datetime | None = None
    subtotal_price: Money
    total_discounts: Money
    total_tax: Money
    total_price: Money
    line_items: Lines(LineItem)
    shipping_lines: Lines(ShippingLine) = ()
    transactions: Lines(Transaction) = ()
    # the gateways that paid it, as Shopify names them ("shopify_payments", "paypal", "gift_card",
    # "manual", a manual method's own name); () when the source does not say (payouts: clearing)
    payment_gateway_names: Lines(Code) = ()
    # the order as it stands after edits and refunds (REST current_*); None: not stated
    current_subtotal_price: Money | None = None
    current_total_tax: Money | None = None
    current_total_price: Money | None = None
    shipping_address: ShippingAddress | None = None
    cancel_reason: Code | None = None
    refunds: Lines(ShopifyRefund) = ()

    def amounts(self) -> list[Money]:
        """Every amount of the order (lines, their discounts and taxes, shipping, transactions)."""
        found = [self.subtotal_price, self.total_discounts, self.total_tax, self.total_price]
        for line in (*self.line_items, *self.shipping_lines):
            found += [line.unit_price if isinstance(line, LineItem) else line.price, line.discount,
                      *(t.amount for t in line.tax_lines)]
        return found + [t.amount for t in self.transactions if t.amount is not None]

    @model_validator(mode="after")
    def _one_currency_in_range(self) -> ShopifyOrder:
        amounts = self.amounts()
        one_currency((m.currency for m in amounts), self.currency, f"order {self.id}")
        not_negative((m.amount for m in amounts), "an order's prices, discounts, taxes and totals")
        within_amount_range([m.amount for m in amounts] + [li.unit_price.amount * li.quantity for li in self.line_items],
                            "the order's amounts (a line's unit price times its quantity included)")
        if sum(li.quantity for li in self.line_items) > MAX_ORDER_UNITS:
            raise ValueError(f"the order has more than {MAX_ORDER_UNITS} units")
        return self

    @classmethod
    def from_json(cls, body: bytes | str) -> ShopifyOrder:
        """Normalize a webhook body as it arrived: JSON within contracts/validation.py's rules
        (bounded depth, no duplicated key; else InvalidJSON, a ValueError), then from_webhook."""
        return cls.from_webhook(parse_json(body))

    @classmethod
    def from_webhook(cls, body: dict[str, Any]) -> ShopifyOrder:
        """Normalize an order webhook body. Raises pydantic.ValidationError or ValueError when
        the body is not an order Shopify could have sent."""
        if not isinstance(body, dict):
            raise ValueError("an order webhook body is a JSON object")
        currency = body.get("currency")
        if not currency:
            raise ValueError("order body has no shop currency")

        def money(obj: dict[str, Any], field: str) -> Money:
            twin = obj.get(f"{field}_set")
            if isinstance(twin, dict) and isinstance(twin.get("shop_money"), dict):
                shop = twin["shop_money"]
                return Money(amount=Decimal(str(shop["amount"])), currency=shop["currency_code"])
            value = obj.get(field)
            if value is None:
                raise ValueError(f"missing amount {field!r}")
            return Money(amount=Decimal(str(value)), currency=currency)

        def allocations(obj: dict[str, Any]) -> Money:
            total = Money(amount=Decimal("0.00"), currency=currency)
            for allocation in obj.get("discount_allocations") or ():
                total = total + money(allocation, "amount")
            return total

        def taxes(obj: dict[str, Any]) -> tuple[TaxLine, ...]:
            return tuple(
                TaxLine(
                    title=str(t.get("title") or "Tax"),
                    rate=Decimal(str(t["rate"])) if t.get("rate") is not None else None,
                    amount=money(t, "price"),
                )
                for t in body_list(obj, "tax_lines")
            )

        def body_list(obj: dict[str, Any], field: str) -> list[dict[str, Any]]:
            value = obj.get(field) or []
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ValueError(f"{field!r} must be a list of objects")
            return value

        def gateway_names(value: Any) -> tuple[str, ...]:
            if value is None:
                return ()
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("'payment_gateway_names' must be a list of strings")
            return tuple(v for v in value if v.strip())

        def current(field: str) -> Money | None:
            return money(body, field) if body.get(field) is not None or body.get(f"{field}_set") else None

        def line_kind(li: dict[str, Any]) -> str:
            if li.get("gift_card"):
                return "gift_card"
            if li.get("tip_payment_gateway") or li.get("tip_payment_method"):
                return "tip"
            if not li.get("product_id") and not li.get("variant_id"):
                return "custom"
            return "product"

        def address(value: Any) -> ShippingAddress | None:
            if not isinstance(value, dict):
                return None
            name = value.get("name") or " ".join(p for p in (value.get("first_name"), value.get("last_name")) if p)
            return ShippingAddress(
                name=name or None, company=value.get("company"), address1=value.get("address1"),
                address2=value.get("address2"), city=value.get("city"),
                province_code=value.get("province_code") or value.get("province"), zip=value.get("zip"),
                country_code=value.get("country_code") or value.get("country"), phone=value.get("phone"))

        return cls(
            id=body["id"],
            name=body.get("name") or f"#{body.get('order_number', body['id'])}",
            order_number=body.get("order_number"),
            email=body.get("email") or body.get("contact_email"),
            currency=currency,
            presentment_currency=body.get("presentment_currency"),
            taxes_included=bool(body.get("taxes_included")),
            financial_status=body.get("financial_status"),
            test=bool(body.get("test")),
            created_at=body["created_at"],
            updated_at=body["updated_at"],
            processed_at=body.get("processed_at"),
            cancelled_at=body.get("cancelled_at"),
            subtotal_price=money(body, "subtotal_price"),
            total_discounts=money(body, "total_discounts"),
            total_tax=money(body, "total_tax"),
            total_price=money(body, "total_price"),
            line_items=tuple(
                LineItem(
                    id=li["id"],
                    sku=(li.get("sku") or None),
                    title=li.get("title") or li.get("name") or "",
                    variant_id=li.get("variant_id"),
                    quantity=li["quantity"],
                    unit_price=money(li, "price"),
                    discount=allocations(li),
                    tax_lines=taxes(li),
                    current_quantity=li.get("current_quantity"),
                    kind=line_kind(li),
                    discounted_total=(money(li, "discounted_total")
                                      if li.get("discounted_total") is not None or li.get("discounted_total_set")
                                      else None),
                )
                for li in body_list(body, "line_items")
            ),
            shipping_lines=tuple(
                ShippingLine(
                    id=sl.get("id"),
                    title=sl.get("title") or "Shipping",
                    code=sl.get("code"),
                    price=money(sl, "price"),
                    discount=allocations(sl),
                    tax_lines=taxes(sl),
                )
                for sl in body_list(body, "shipping_lines")
            ),
            transactions=tuple(
                Transaction(
                    id=t.get("id"),
                    kind=str(t.get("kind", "")).lower(),
                    status=str(t.get("status", "")).lower(),
                    amount=money(t, "amount") if t.get("amount") is not None else None,
                    gateway=t.get("gateway"),
                )
                for t in body_list(body, "transactions")
            ),
            payment_gateway_names=gateway_names(body.get("payment_gateway_names")),
            current_subtotal_price=current("current_subtotal_price"),
            current_total_tax=current("current_total_tax"),
            current_total_price=current("current_total_price"),
            shipping_address=address(body.get("shipping_address")),
            cancel_reason=body.get("cancel_reason"),
            refunds=tuple(ShopifyRefund.from_webhook({"order_id": body["id"], **r}, currency)
                          for r in body_list(body, "refunds")),
        )


class ShopifyOrderReceived(_Frozen):
    """An order webhook accepted by the ingest (signature verified, body normalized)."""

    message_type: Literal["ShopifyOrderReceived"] = "ShopifyOrderReceived"
    webhook_id: Code = Field(max_length=MAX_WEBHOOK_ID_LENGTH)
    event_id: Code | None = None
    topic: OrderWebhookTopic
    shop_domain: Code
    api_version: Code | None = None
    triggered_at: datetime | None = None
    received_at: datetime
    raw_payload_id: UUID  # the raw body kept by the ingest, for reprocessing
    order: ShopifyOrder

    @property
    def shopify_order_id(self) -> int:
        return self.order.id
