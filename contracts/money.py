"""Money as the ledger sees it: a Decimal amount in an ISO 4217 currency, never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from pydantic import BaseModel, ConfigDict, model_validator

from contracts.validation import Amount, CurrencyCode, check_minor_units

# Amount (contracts/validation.py): finite, at most two places, within numeric(18, 2); it travels
# as a string on every topic, so no consumer ever parses a float.
__all__ = ["CENT", "Amount", "Money", "to_cents"]

CENT = Decimal("0.01")


def to_cents(amount: Decimal) -> Decimal:
    """Quantize to the cent (banker's rounding, as ledgers do)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


class Money(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount: Amount
    currency: CurrencyCode

    @model_validator(mode="after")
    def _currency_minor_units(self) -> Money:
        check_minor_units(self.amount, self.currency)
        return self

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount=self.amount + other.amount, currency=self.currency)
