"""What the OM link adapter needs to know about one Prima installation, validated when loaded
(a wrong value is a clear error at start, never at the first order)."""

from __future__ import annotations

import itertools
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
)

from domain.catalog.matrix import SkuMatrix
from domain.orders.prima_codes import OrderCodes

ProductCode = Annotated[str, Field(max_length=64)]


class ProductRange(BaseModel):
    """ProductFrom..ProductTo, both included; "" leaves that end open."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_from: ProductCode = ""
    product_to: ProductCode = ""

    def holds(self, product: str) -> bool:
        key = product.casefold()
        return ((not self.product_from or key >= self.product_from.casefold())
                and (not self.product_to or key <= self.product_to.casefold()))

    def __str__(self) -> str:
        return f"{self.product_from or '(first)'}..{self.product_to or '(last)'}"


class OmLinkConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # the instance URL, without the trailing /wsdl: the WSDL is <url>/wsdl?targetURI=urn:omlink
    # and the operations are posted to <url>
    instance_url: AnyHttpUrl
    company_id: str | None = Field(None, min_length=1)  # set: comwsomhandler with it; unset: wsomhandler
    encoding: str = "ISO-8859-1"
    sku_matrix: SkuMatrix
    order_codes: OrderCodes = OrderCodes()
    line_warehouse: str | None = None  # Warehouse on each NewOrder line (unset: Prima's default)
    availability_warehouse: str = "WH-MAIN"  # the warehouse ProductAvailableToSell's snapshot is of
    # the pages of a full availability pass, one request each; ranges must not overlap
    availability_ranges: tuple[ProductRange, ...] = (ProductRange(),)
    # polling (Prima's OM link has no change feed): a full availability pass every
    # availability_interval_seconds; each open order's OrderStatus at most every
    # status_interval_seconds, and never more than status_requests_per_second OrderStatus requests
    # (the request budget: a backlog of open orders is spread out, never a burst)
    availability_interval_seconds: PositiveFloat = 900.0
    status_interval_seconds: PositiveFloat = 300.0
    status_requests_per_second: PositiveFloat = 2.0
    timeout_seconds: PositiveFloat = 10.0
    max_attempts: PositiveInt = 5
    backoff_initial_seconds: PositiveFloat = 0.2
    backoff_max_seconds: PositiveFloat = 5.0

    @property
    def wsdl_url(self) -> str:
        return f"{str(self.instance_url).rstrip('/')}/wsdl?targetURI=urn:omlink"

    @property
    def service_url(self) -> str:
        return str(self.instance_url).rstrip("/")

    @field_validator("instance_url")
    @classmethod
    def _no_wsdl_suffix(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        if (url.path or "").rstrip("/").endswith("/wsdl") or url.query:
            raise ValueError("give the instance URL without the trailing /wsdl and without a query")
        return url

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            "".encode(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None
        return encoding

    @field_validator("availability_ranges")
    @classmethod
    def _ranges_apart(cls, ranges: tuple[ProductRange, ...]) -> tuple[ProductRange, ...]:
        if not ranges:
            raise ValueError("give at least one product range (one open range reads every product)")
        for r in ranges:
            if r.product_from and r.product_to and r.product_from.casefold() > r.product_to.casefold():
                raise ValueError(f"product range {r}: ProductFrom is after ProductTo")
        ordered = sorted(ranges, key=lambda r: r.product_from.casefold())
        for before, after in itertools.pairwise(ordered):
            if not before.product_to or before.product_to.casefold() >= after.product_from.casefold():
                raise ValueError(f"product ranges {before} and {after} overlap: a product would be read twice")
        return ranges
