"""Money as the ledger sees it: a Decimal amount in an ISO 4217 currency, never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer

# Decimals travel as strings on every topic, so no consumer ever parses a float.
Amount = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")]

CENT = Decimal("0.01")


def to_cents(amount: Decimal) -> Decimal:
    """Quantize to the cent (banker's rounding, as ledgers do)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


class Money(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount: Amount
    currency: str

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount=self.amount + other.amount, currency=self.currency)
