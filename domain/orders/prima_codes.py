"""The codes Prima's order model needs that Shopify does not have, as the integration's validated
configuration (SHOPIFY_PRIMA_OMLINK_ORDER_CODES, JSON), and the rules that pick them:

- `charges`: Shopify shipping method (the order's shipping description: the shipping line
  title, or the titles joined with " + " when an order has several) -> Prima charge code. A
  method with no entry and no `default_charge` is `CodeNotMapped` naming the method: the order
  is held, as an unmapped SKU is, until the map has it.
- `payments`: Shopify payment gateway (as Shopify names it: "shopify_payments", "paypal",
  "gift_card", "manual") -> Prima PayMethod and SubPayMethod; unmapped, `CodeNotMapped`.
- `order_channel`: the OrderChannel every web order carries; `order_number_prefix`: the channel
  prefix of the integration's OrderNumber (prefix + the Shopify order id: deterministic, so the
  number is the idempotency key Prima knows the order by).
- VatInclusive: "Yes" when the Shopify order's prices include tax (`taxes_included`), else "No".
- HoldOrder: "Yes" when `hold_all_orders`, or when `release_countries` is given and the order
  ships to a country outside it (Prima holds the order for a person; nothing else differs).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Prefix = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{0,12}$")]

YES, NO = "Yes", "No"
MAX_ORDER_NUMBER = 30  # characters: the OrderNumber Prima keeps (the adapter refuses a longer one)


class CodeNotMapped(LookupError):
    """A Shopify value with no Prima code configured; `what` names the map, `value` the value."""

    def __init__(self, what: str, value: str) -> None:
        super().__init__(f"no Prima {what} is configured for {value!r}")
        self.what = what
        self.value = value


class PayMethod(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    PayMethod: Code
    SubPayMethod: str = ""


class OrderCodes(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    order_channel: Code = "WEB"
    order_number_prefix: Prefix = "SHOP"
    charges: dict[Code, Code] = {}
    default_charge: Code | None = None
    payments: dict[Code, PayMethod] = {}
    hold_all_orders: bool = False
    release_countries: frozenset[CountryCode] | None = None

    def charge_code(self, shipping_method: str) -> str:
        code = self.charges.get(shipping_method, self.default_charge)
        if code is None:
            raise CodeNotMapped("charge code", shipping_method)
        return code

    def pay_method(self, gateway: str) -> PayMethod:
        try:
            return self.payments[gateway]
        except KeyError:
            raise CodeNotMapped("pay method", gateway) from None

    def order_number(self, shopify_order_id: int) -> str:
        """The integration's OrderNumber for a Shopify order: the same order, the same number."""
        number = f"{self.order_number_prefix}{shopify_order_id}"
        if len(number) > MAX_ORDER_NUMBER:
            raise ValueError(f"OrderNumber {number!r} is longer than {MAX_ORDER_NUMBER} characters")
        return number

    def shopify_order_id(self, order_number: str) -> int | None:
        """The Shopify order an OrderNumber of this channel names (None: not one of ours)."""
        prefix = self.order_number_prefix
        rest = order_number[len(prefix):] if order_number.startswith(prefix) else ""
        return int(rest) if rest.isascii() and rest.isdigit() else None

    def hold_order(self, ship_to_country: str | None) -> str:
        if self.hold_all_orders:
            return YES
        if self.release_countries is not None and ship_to_country not in self.release_countries:
            return YES
        return NO


def vat_inclusive(taxes_included: bool) -> str:
    return YES if taxes_included else NO
