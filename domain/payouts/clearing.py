"""Payments through other gateways, and how a month's sales tie out.

Only Shopify Payments pays out through Shopify payouts (the payout journals). An order paid
through another gateway (PayPal, a gift card, a manual payment such as a bank transfer or cash
on delivery) never appears in a payout: its money reaches the retailer another way, and finance
carries it to that gateway's clearing account. The integration owns the mapping of gateway ->
clearing account (configuration: settings.payout_clearing_accounts, JSON in
SHOPIFY_PRIMA_PAYOUT_CLEARING_ACCOUNTS, validated at start-up):

    {"shopify_payments": "payouts", "paypal": "1250", "gift_card": "2400", "manual": "1260"}

The value `payouts` names the payout flow itself (the gateway's payments come as payouts and are
journalled by them); `shopify_payments` must be mapped to it. Gateway names are Shopify's
`payment_gateway_names` of the order, compared without case and surrounding spaces.

`allocate` splits one sales order's total into shares, each of which says where that money is:
paid out in a journalled payout (by the month's end, or later), still awaiting its payout, on a
gateway's clearing account, or a difference named (no gateway recorded, a gateway without a
clearing account, several gateways whose split Shopify did not state, more paid out than the
order's total). The shares add up to the total to the cent, so the month's sales orders equal
Shopify Payments' payouts plus the other gateways' clearing plus the differences, each named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from pydantic import RootModel, field_validator, model_validator

PAYOUT_FLOW = "payouts"  # a gateway whose payments come as Shopify payouts (journalled by them)
SHOPIFY_PAYMENTS = "shopify_payments"
ACCOUNT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"  # as domain/payouts/accounts.py Account
ZERO = Decimal("0.00")

DEFAULT_CLEARING_ACCOUNTS: dict[str, str] = {
    SHOPIFY_PAYMENTS: PAYOUT_FLOW,
    "paypal": "1250",  # PayPal clearing: PayPal settles to the bank on its own terms
    "gift_card": "2400",  # a gift card redeemed: the gift-card liability (accounts.py gift_cards) goes down
    "manual": "1260",  # manual payments (bank transfer, cash on delivery, cheque) awaiting their receipt
}


def gateway_key(name: str) -> str:
    return name.strip().lower()


class ClearingAccounts(RootModel[dict[str, str]]):
    """Gateway name -> clearing account code, or `payouts` for the payout flow itself."""

    root: dict[str, str] = dict(DEFAULT_CLEARING_ACCOUNTS)
    model_config = {"frozen": True}

    @field_validator("root")
    @classmethod
    def _plain(cls, value: dict[str, str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for gateway, account in value.items():
            key = gateway_key(gateway)
            if not key:
                raise ValueError("payout clearing accounts: an empty gateway name")
            if key in found:
                raise ValueError(f"payout clearing accounts: gateway {key!r} given twice")
            if account != PAYOUT_FLOW and (len(account) > 40 or not re.match(ACCOUNT_PATTERN, account)):
                raise ValueError(f"payout clearing accounts: {gateway!r} -> {account!r} is neither an account "
                                 f"code nor {PAYOUT_FLOW!r}")
            found[key] = account
        return found

    @model_validator(mode="after")
    def _shopify_payments_pays_out(self) -> ClearingAccounts:
        if self.root.get(SHOPIFY_PAYMENTS) != PAYOUT_FLOW:
            raise ValueError(f"payout clearing accounts: {SHOPIFY_PAYMENTS!r} must be {PAYOUT_FLOW!r} (its payments "
                             f"are journalled by the payouts; a clearing account too would count them twice)")
        return self

    def account(self, gateway: str) -> str | None:
        """The gateway's clearing account, PAYOUT_FLOW, or None when it is not configured."""
        return self.root.get(gateway_key(gateway))

    def pays_out(self, gateway: str) -> bool:
        return self.account(gateway) == PAYOUT_FLOW


class ShareKind(StrEnum):
    PAID_OUT = "paid_out"  # Shopify Payments: charged in a payout journalled, issued by the month's end
    PAID_OUT_LATER = "paid_out_later"  # ... in a payout issued after the month (timing)
    AWAITING_PAYOUT = "awaiting_payout"  # Shopify Payments: in no journalled payout yet (timing)
    CLEARING = "clearing"  # another gateway: on its clearing account
    UNMAPPED_GATEWAY = "unmapped_gateway"  # a gateway with no clearing account configured
    SEVERAL_GATEWAYS = "several_gateways"  # other gateways whose split Shopify did not state
    GATEWAY_NOT_RECORDED = "gateway_not_recorded"  # the order's gateways never reached the integration
    PAYMENTS_DIFFER = "payments_differ"  # the payments the order states differ from its total
    PAID_OUT_OVER_TOTAL = "paid_out_over_total"  # payouts carried more than the order's total (negative)


EXPLANATIONS: dict[ShareKind, str] = {
    ShareKind.PAID_OUT: "paid out in a Shopify payout journalled by the month's end",
    ShareKind.PAID_OUT_LATER: "paid out in a Shopify payout issued after the month (timing)",
    ShareKind.AWAITING_PAYOUT: "paid through Shopify Payments, in no journalled payout yet (timing)",
    ShareKind.CLEARING: "paid through another gateway: carried to its clearing account",
    ShareKind.UNMAPPED_GATEWAY: "paid through a gateway with no clearing account: configure "
                                "SHOPIFY_PRIMA_PAYOUT_CLEARING_ACCOUNTS",
    ShareKind.SEVERAL_GATEWAYS: "paid through several gateways whose split is not known (the order did not state "
                                "the amounts; beside Shopify Payments: until its payout carries the order)",
    ShareKind.GATEWAY_NOT_RECORDED: "the order's payment gateways never reached the integration (order received "
                                    "before they were recorded, or a source without them)",
    ShareKind.PAYMENTS_DIFFER: "the payments the order states differ from its total (partly paid, or paid more)",
    ShareKind.PAID_OUT_OVER_TOTAL: "Shopify payouts carried more for the order than its total",
}


@dataclass(frozen=True)
class Charge:
    """A Shopify Payments charge for the order, in a journalled payout."""

    amount: Decimal
    within_month: bool  # its payout was issued by the month's end


@dataclass(frozen=True)
class OrderPayments:
    """What the integration knows of one sales order's payment."""

    order_id: int
    total: Decimal  # the order's total in the shop currency (the sales order's total)
    gateways: tuple[str, ...] = ()  # Shopify's payment_gateway_names, as sent
    gateway_amounts: tuple[tuple[str, Decimal], ...] = ()  # successful sales/captures by gateway, when stated
    charges: tuple[Charge, ...] = ()  # Shopify Payments charges in journalled payouts


@dataclass(frozen=True)
class Share:
    kind: ShareKind
    amount: Decimal
    account: str | None = None  # CLEARING: the clearing account
    gateway: str | None = None  # CLEARING, UNMAPPED_GATEWAY: the gateway (SEVERAL_GATEWAYS: comma-joined)


def allocate(order: OrderPayments, accounts: ClearingAccounts) -> list[Share]:
    """The order's total split into shares that add up to it to the cent (zero shares left out).

    Shopify Payments' part is what its journalled payouts carried (PAID_OUT, PAID_OUT_LATER); the
    rest of it AWAITING_PAYOUT. Another gateway's part is the amount Shopify stated for it (the
    order's transactions), else, when it is the order's only other gateway, the total less what
    the payouts carried; several other gateways without stated amounts, or another gateway beside
    Shopify Payments before any payout carried the order, are SEVERAL_GATEWAYS (the split is not
    known yet)."""
    paid_out = sum((c.amount for c in order.charges if c.within_month), ZERO)
    later = sum((c.amount for c in order.charges if not c.within_month), ZERO)
    carried = paid_out + later
    gateways = list(dict.fromkeys(gateway_key(g) for g in order.gateways if gateway_key(g)))
    through_payouts = [g for g in gateways if accounts.pays_out(g)]
    others = [g for g in gateways if not accounts.pays_out(g)]
    stated = _by_gateway(order.gateway_amounts)
    shares = [Share(ShareKind.PAID_OUT, paid_out), Share(ShareKind.PAID_OUT_LATER, later)]
    rest_kind, rest_gateway = ShareKind.AWAITING_PAYOUT, None
    if not gateways:
        rest_kind = ShareKind.GATEWAY_NOT_RECORDED
    elif others and all(g in stated for g in others):
        shares += [_other(g, stated[g], accounts) for g in others]
        if not through_payouts:
            rest_kind = ShareKind.PAYMENTS_DIFFER
    elif others and through_payouts and carried == 0:
        rest_kind, rest_gateway = ShareKind.SEVERAL_GATEWAYS, ", ".join(gateways)
    elif len(others) == 1:
        shares.append(_other(others[0], order.total - carried, accounts))
    elif others:
        shares.append(Share(ShareKind.SEVERAL_GATEWAYS, order.total - carried, gateway=", ".join(others)))
    rest = order.total - sum((s.amount for s in shares), ZERO)
    if rest < 0 and rest_kind in (ShareKind.AWAITING_PAYOUT, ShareKind.GATEWAY_NOT_RECORDED):
        rest_kind = ShareKind.PAID_OUT_OVER_TOTAL
    shares.append(Share(rest_kind, rest, gateway=rest_gateway))
    return [s for s in shares if s.amount != 0]


def _by_gateway(amounts: Iterable[tuple[str, Decimal]]) -> Mapping[str, Decimal]:
    found: dict[str, Decimal] = {}
    for gateway, amount in amounts:
        found[gateway_key(gateway)] = found.get(gateway_key(gateway), ZERO) + amount
    return found


def _other(gateway: str, amount: Decimal, accounts: ClearingAccounts) -> Share:
    account = accounts.account(gateway)
    if account is None:
        return Share(ShareKind.UNMAPPED_GATEWAY, amount, gateway=gateway)
    return Share(ShareKind.CLEARING, amount, account=account, gateway=gateway)
