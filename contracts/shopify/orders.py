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

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Money

ORDER_WEBHOOK_TOPICS = ("orders/create", "orders/paid", "orders/updated")
MAX_WEBHOOK_ID_LENGTH = 255  # Shopify's are UUIDs; the ingest refuses longer ones (400) before storing
OrderWebhookTopic = Literal["orders/create", "orders/paid", "orders/updated"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class TaxLine(_Frozen):
    title: str
    rate: Decimal | None = None
    amount: Money


class LineItem(_Frozen):
    id: int
    sku: str | None
    title: str
    variant_id: int | None = None
    quantity: int = Field(ge=0)
    unit_price: Money
    discount: Money  # sum of the line's discount allocations (line and order-level discounts)
    tax_lines: tuple[TaxLine, ...] = ()


class ShippingLine(_Frozen):
    id: int | None = None
    title: str
    code: str | None = None
    price: Money
    discount: Money
    tax_lines: tuple[TaxLine, ...] = ()


class Transaction(_Frozen):
    """A payment transaction, where the source carries them (reconciler, order_transactions)."""

    id: int | None = None
    kind: str  # authorization, capture, sale, void, refund
    status: str  # success, pending, failure, error
    amount: Money | None = None


class ShopifyOrder(_Frozen):
    id: int
    name: str
    order_number: int | None = None
    email: str | None = None
    currency: str  # the shop currency
    presentment_currency: str | None = None
    taxes_included: bool
    financial_status: str | None = None
    test: bool = False
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None = None
    cancelled_at: datetime | None = None
    subtotal_price: Money
    total_discounts: Money
    total_tax: Money
    total_price: Money
    line_items: tuple[LineItem, ...]
    shipping_lines: tuple[ShippingLine, ...] = ()
    transactions: tuple[Transaction, ...] = ()

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
                )
                for t in body_list(body, "transactions")
            ),
        )


class ShopifyOrderReceived(_Frozen):
    """An order webhook accepted by the ingest (signature verified, body normalized)."""

    message_type: Literal["ShopifyOrderReceived"] = "ShopifyOrderReceived"
    webhook_id: str = Field(max_length=MAX_WEBHOOK_ID_LENGTH)
    event_id: str | None = None
    topic: OrderWebhookTopic
    shop_domain: str
    api_version: str | None = None
    triggered_at: datetime | None = None
    received_at: datetime
    raw_payload_id: UUID  # the raw body kept by the ingest, for reprocessing
    order: ShopifyOrder
