"""Request and response bodies of the assumed Prima API (see contracts/prima/openapi.yaml)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_MONEY = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def _money(value: object) -> object:
    if not isinstance(value, str) or not _MONEY.match(value):
        raise ValueError("amounts are non-negative decimal strings such as '12.50'")
    return value


Money = Annotated[Decimal, BeforeValidator(_money)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
ItemType = Literal["stock", "bundle", "service"]
# the warehouse moves a sales order open -> released_to_warehouse -> picking -> despatched (or it is cancelled)
SalesOrderStatus = Literal["open", "released_to_warehouse", "picking", "despatched", "cancelled"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BundleComponent(_Body):
    item_id: str
    sku: str
    quantity: int = Field(gt=0)


class ItemUpsert(_Body):
    item_id: str = Field(min_length=1)
    sku: str = Field(min_length=1)
    description: str
    active: bool = True
    item_type: ItemType
    components: list[BundleComponent] = []
    unit_of_measure: str = "EA"

    @model_validator(mode="after")
    def _components_only_on_bundles(self) -> ItemUpsert:
        if (self.item_type == "bundle") != bool(self.components):
            raise ValueError("a bundle has components and other item types have none")
        return self


class Item(ItemUpsert):
    updated_at: datetime
    change_id: int  # this item's latest change, from one ever-growing sequence (commit order)


class ItemsUpsert(_Body):
    items: list[ItemUpsert] = Field(min_length=1)


class StockUpsert(_Body):
    """One stock record to set. `available` alone keeps `allocated` (0 for a new record) and sets
    `on_hand` to available + allocated; a negative available that allocated cannot cover sets
    on_hand to 0 and allocated to -available. Or give `on_hand` and/or `allocated` (the other is
    kept). `available` and `on_hand` together are refused: one follows from the other."""

    sku: str = Field(min_length=1)
    warehouse: str = Field(min_length=1)
    available: int | None = None
    on_hand: int | None = Field(None, ge=0)
    allocated: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_way_to_say_it(self) -> StockUpsert:
        if self.available is None and self.on_hand is None and self.allocated is None:
            raise ValueError("give available, or on_hand and/or allocated")
        if self.available is not None and self.on_hand is not None:
            raise ValueError("give available or on_hand, not both (available = on_hand - allocated)")
        return self


class StockUpsertBody(_Body):
    stock: list[StockUpsert] = Field(min_length=1)


class SalesOrderLineBundle(_Body):
    item_id: str
    sku: str
    units_per_bundle: int = Field(gt=0)


class SalesOrderLine(_Body):
    line_number: int = Field(ge=1)
    item_id: str | None
    sku: str | None
    description: str
    quantity: int = Field(gt=0)
    unit_price: Money
    discount_amount: Money
    tax_amount: Money
    net_amount: Money
    kind: Literal["item", "account"] = "item"
    account: str | None = None
    external_line_id: int | None = None
    bundle: SalesOrderLineBundle | None = None

    @model_validator(mode="after")
    def _an_item_or_an_account(self) -> SalesOrderLine:
        if self.kind == "item" and (not self.item_id or not self.sku or self.account is not None):
            raise ValueError("an item line names item_id and sku, and no account")
        if self.kind == "account" and (not self.account or self.item_id is not None or self.sku is not None):
            raise ValueError("an account line names an account, and no item_id or sku")
        return self


class ShipTo(_Body):
    name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province_code: str | None = None
    zip: str | None = None
    country_code: str | None = None
    phone: str | None = None


class Shipping(_Body):
    description: str
    amount: Money
    discount_amount: Money
    tax_amount: Money


class Totals(_Body):
    lines_net: Money
    shipping_net: Money
    tax: Money
    total: Money


class SalesOrderCreate(_Body):
    external_reference: str = Field(min_length=1)
    order_name: str
    currency: Currency
    taxes_included: bool
    order_date: AwareDatetime
    customer_email: str | None
    lines: list[SalesOrderLine] = Field(min_length=1)
    shipping: Shipping | None
    totals: Totals
    ship_to: ShipTo | None = None

    @model_validator(mode="after")
    def _unique_line_numbers(self) -> SalesOrderCreate:
        numbers = [line.line_number for line in self.lines]
        if len(set(numbers)) != len(numbers):
            raise ValueError("line_number must be unique within the order")
        return self

    def totals_mismatches(self) -> list[str]:
        """What does not add up, exactly (Decimal arithmetic); empty when the totals are right."""
        lines_net = sum((line.net_amount for line in self.lines), Decimal(0))
        ship = self.shipping
        shipping_net = ship.amount - ship.discount_amount if ship else Decimal(0)
        tax = sum((line.tax_amount for line in self.lines), Decimal(0)) + (ship.tax_amount if ship else 0)
        total = lines_net + shipping_net + (0 if self.taxes_included else tax)
        expected = {"lines_net": lines_net, "shipping_net": shipping_net, "tax": tax, "total": total}
        return [
            f"{name} is {getattr(self.totals, name)} but the order adds up to {value}"
            for name, value in expected.items()
            if getattr(self.totals, name) != value
        ]


class SalesOrder(SalesOrderCreate):
    sales_order_number: str
    status: SalesOrderStatus
    created_at: datetime
    updated_at: datetime
    released_at: datetime | None
    version: int = 1  # 1 as created, one more per amendment
    cancelled_at: datetime | None = None


class FaultConfig(_Body):
    fail_next: int = Field(0, ge=0)
    fail_status: int = Field(500, ge=400, le=599)
    timeout_next: int = Field(0, ge=0)
    timeout_seconds: float = Field(30, ge=0)
    # after the work: the route ran (a sales order is committed), then the answer comes late or never
    commit_then_timeout_next: int = Field(0, ge=0)
    commit_then_drop_next: int = Field(0, ge=0)
    commit_then_delay_seconds: float = Field(30, ge=0)
    latency_ms: int = Field(0, ge=0)
    path_prefix: str = "/v1/sales-orders"
    method: str | None = "POST"
    # only requests whose body contains this text (OM link: every request is a POST to /wsa/wsa1,
    # so "NewOrder" picks the orders out of the status and availability requests)
    body_contains: str | None = None
