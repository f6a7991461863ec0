"""A paid Shopify order as the gateway gets it (CreateSalesOrder), and the OM link configuration
the OM link tests use: the sandbox's item matrix, charge codes and pay methods."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import httpx

from contracts.prima.sales_orders import (
    CreateSalesOrder,
    SalesOrderDraft,
    SalesOrderLine,
    SalesOrderShipping,
    SalesOrderTotals,
    ShipTo,
)
from services.prima.omlink.config import OmLinkConfig
from services.prima.omlink.documents import Payment

MATRIX = {"pattern": "{Product}-{MtrxCode1}-{MtrxCode2}",
          "table": {"MUG-STONE": {"Product": "MUG-STONE"}, "GIFT-WRAP": {"Product": "GIFT-WRAP"}}}
CODES = {"order_channel": "WEB", "order_number_prefix": "SHOP",
         "charges": {"Standard": "DEL-STD", "Express": "DEL-EXP"},
         "payments": {"shopify_payments": {"PayMethod": "CARD", "SubPayMethod": "SHOPIFY"},
                      "paypal": {"PayMethod": "PAYPAL"}}}


def config(instance_url: str = "http://prima.example/wsa/wsa1", **changes) -> OmLinkConfig:
    return OmLinkConfig.model_validate({"instance_url": instance_url, "sku_matrix": MATRIX, "order_codes": CODES,
                                        "max_attempts": 4, "backoff_initial_seconds": 0.01,
                                        "backoff_max_seconds": 0.05, "timeout_seconds": 2, **changes})


def paid_order(shopify_order_id: int, *, name: str = "Siobhán Ó Dálaigh", city: str = "Dublin",
               shipping: str = "Standard", lines: tuple[SalesOrderLine, ...] | None = None) -> CreateSalesOrder:
    """Two tees (a discount of 4.00) and a mug, standard shipping, prices including VAT."""
    lines = lines or (
        SalesOrderLine(line_number=1, item_id="ITM-0001", sku="TEE-BLK-M", description="Organic tee, black, M",
                       quantity=2, unit_price=Decimal("20.00"), discount_amount=Decimal("4.00"),
                       tax_amount=Decimal("6.73"), net_amount=Decimal("36.00"), external_line_id=9001),
        SalesOrderLine(line_number=2, item_id="ITM-0003", sku="MUG-STONE", description="Stoneware mug",
                       quantity=1, unit_price=Decimal("12.50"), discount_amount=Decimal("0.00"),
                       tax_amount=Decimal("2.34"), net_amount=Decimal("12.50"), external_line_id=9002),
    )
    lines_net = sum((line.net_amount for line in lines), Decimal(0))
    return CreateSalesOrder(
        command_id=uuid4(), idempotency_key=f"so-{uuid4()}", shopify_order_id=shopify_order_id,
        issued_at=datetime.now(UTC),
        sales_order=SalesOrderDraft(
            external_reference=str(shopify_order_id), order_name=f"#{shopify_order_id % 10000}", currency="EUR",
            taxes_included=True, order_date=datetime(2026, 11, 30, 21, 15, tzinfo=UTC),
            customer_email="siobhan@example.ie", lines=lines,
            shipping=SalesOrderShipping(description=shipping, amount=Decimal("4.95"), discount_amount=Decimal("0.00"),
                                        tax_amount=Decimal("0.93")),
            totals=SalesOrderTotals(lines_net=lines_net, shipping_net=Decimal("4.95"), tax=Decimal("10.00"),
                                    total=lines_net + Decimal("4.95")),
            ship_to=ShipTo(name=name, address1="12 Sráid an Mhuilinn", address2="Flat 3", city=city,
                           province_code="D", zip="D08 XY12", country_code="IE", phone="+353 1 555 0100"),
        ),
    )


def card_payment(command: CreateSalesOrder) -> Payment:
    return Payment(gateway="shopify_payments", amount=command.sales_order.totals.total,
                   transaction_id=f"txn-{command.shopify_order_id}", authorization="AUTH-77")


# the Prima sandbox the OM link integration tests serve (tests/prima/integration/conftest.py)
SANDBOX_KEY = "test-key"
SERVICE = "/wsa/wsa1"  # the sandbox's OM link: the instance URL is <sandbox>/wsa/wsa1


async def sales_orders(sandbox: httpx.AsyncClient, external_reference: str) -> list[dict]:
    """The sandbox's sales orders with this external reference (an OM link order's: its OrderNumber)."""
    answer = await sandbox.get("/v1/sales-orders", params={"external_reference": external_reference},
                               headers={"Authorization": f"Bearer {SANDBOX_KEY}"})
    return answer.json()["sales_orders"]


async def omlink_posts(sandbox: httpx.AsyncClient) -> int:
    """How many OM link requests the sandbox has answered."""
    return sum((await sandbox.get("/_sandbox/stats")).json()["requests"].get(f"POST {SERVICE}", {}).values())


async def faults(sandbox: httpx.AsyncClient, **switches) -> None:
    """The sandbox's fault switches, on its OM link requests."""
    answer = await sandbox.post("/_sandbox/faults", json={"path_prefix": SERVICE, "method": "POST", **switches})
    assert answer.status_code == 200
