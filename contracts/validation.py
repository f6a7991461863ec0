"""The one set of rules every fact from Shopify or Prima meets before anything acts on it
(issue 13), as reusable pydantic types and two functions, in one place.

Where they apply: the contract models (contracts/shopify/, contracts/prima/, the published
events that carry them) declare their fields with these types, so the same rules hold for the
webhook ingest (ShopifyOrder.from_webhook), the Prima poller (PrimaStockLevel, PrimaItemChanged)
and every consumer that decodes a message (services/platform/kafka.py decode_record: a message
that fails them is dead-lettered at once and never reaches a projection or an aggregate).

The rules, and why (each bound is what the integration's own columns and Kafka can hold):
- ids (`Id`): positive and within int64 (PostgreSQL bigint); `true` is not the id 1;
- money (`Amount`, contracts/money.py Money): a finite decimal with at most two places, within
  numeric(18, 2); a Money has at most its currency's minor units (JPY none) and a currency
  code of three capital letters; `within_amount_range` bounds the sums an order leads to;
- quantities (`Quantity`, `StockQuantity`): whole numbers within PostgreSQL integer, never
  negative where they count units (an order line, a bundle's components; Prima's available
  may be negative: an oversold SKU);
- strings (`Text`, `Code`, `Email`): no NUL (PostgreSQL text and jsonb refuse it) and no lone
  surrogate (not UTF-8), and a bounded length;
- currencies: one currency within an order (ShopifyOrder checks it with `one_currency`);
- JSON (`parse_json`, `check_json`): bounded depth, no duplicate keys (no "last one wins"), no
  NaN or Infinity.

Other flows' contracts use the same types for their new fields, so a rule changes here once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

INT64_MAX = 2**63 - 1  # PostgreSQL bigint
INT32_MAX = 2**31 - 1  # PostgreSQL integer
MAX_QUANTITY = 1_000_000_000  # units of one line, stock level or order: within integer, with room for sums
AMOUNT_DIGITS, AMOUNT_PLACES = 18, 2  # numeric(18, 2): every amount column of the read models
MAX_AMOUNT = Decimal("9999999999999999.99")
MAX_TEXT_LENGTH = 2_000  # titles, descriptions, reasons
MAX_CODE_LENGTH = 255  # SKUs, names, codes, ids sent as text (Shopify's SKU limit is 255)
MAX_EMAIL_LENGTH = 320
MAX_JSON_DEPTH = 64  # a Shopify order nests about 8 levels deep
MAX_LIST_LENGTH = 20_000  # lines of one order, components of one bundle, levels of one variant

# ISO 4217 currencies whose minor unit is not 2 (the rest have cents). Three- and four-place
# currencies are held to two places, the most the amount columns (numeric(18, 2)) keep.
_MINOR_UNITS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
                     "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


# ------------------------------------------------------------------------------ the checks


def _not_bool(value: Any) -> Any:
    """JSON's true is not the number 1 (pydantic's lax mode would take it as one)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a NUL character is not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a lone surrogate is not text (not UTF-8)") from None
    return value


def _clean(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    value = value.replace("\x00", "\\x00")
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:MAX_TEXT_LENGTH]


def minor_units(currency: str) -> int:
    """Places an amount in this currency may have: its ISO 4217 minor unit, at most two."""
    return min(_MINOR_UNITS.get(currency, 2), AMOUNT_PLACES)


def check_minor_units(amount: Decimal, currency: str) -> Decimal:
    """`amount` itself, if it has no more places than `currency` has (1.50 is fine for USD,
    100.5 is not for JPY: trailing zeros do not count)."""
    places = minor_units(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-places)):
        raise ValueError(f"an amount in {currency} has at most {places} decimal place(s)")
    return amount


def within_amount_range(amounts: Iterable[Decimal], what: str) -> None:
    """The sum of the magnitudes of `amounts` fits numeric(18, 2): then so does every total,
    net amount or difference computed from them."""
    if sum((abs(a) for a in amounts), Decimal(0)) > MAX_AMOUNT:
        raise ValueError(f"{what} add up to more than {MAX_AMOUNT} (what an amount column holds)")


def not_negative(amounts: Iterable[Decimal], what: str) -> None:
    """No negative price, discount, tax or total (a credit is a refund, not a negative price)."""
    if any(a < 0 for a in amounts):
        raise ValueError(f"{what} may not be negative")


def one_currency(currencies: Iterable[str], expected: str, what: str) -> None:
    """Every amount of `what` is in `expected` (no EUR line on a USD order)."""
    others = sorted({c for c in currencies if c != expected})
    if others:
        raise ValueError(f"{what} is in {expected}, but has amounts in {', '.join(o[:3] for o in others[:3])}")


# ------------------------------------------------------------------------------ the types

Id = Annotated[int, Field(ge=1, le=INT64_MAX), BeforeValidator(_not_bool)]
"""A Shopify or Prima numeric id, a sequence number: positive, within bigint."""

Quantity = Annotated[int, Field(ge=0, le=MAX_QUANTITY), BeforeValidator(_not_bool)]
"""Units ordered, pushed or held: not negative, within integer."""

PositiveQuantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY), BeforeValidator(_not_bool)]
"""Units that must be there (a bundle's component, a sales order line)."""

StockQuantity = Annotated[int, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY), BeforeValidator(_not_bool)]
"""A level as a system reports it: Prima's available or Shopify's may be negative (oversold)."""

Count = Annotated[int, Field(ge=0, le=INT32_MAX), BeforeValidator(_not_bool)]
"""How many times something happened (attempts, retries), within integer."""

Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH), AfterValidator(_text)]
"""Free text (a title, a description, a reason): no NUL, no lone surrogate, bounded."""

Code = Annotated[str, Field(max_length=MAX_CODE_LENGTH), AfterValidator(_text)]
"""A SKU, a name, a status, an id given as text: no NUL, no lone surrogate, at most 255 characters."""

Reason = Annotated[str, BeforeValidator(_clean)]
"""Text this integration writes about a failure (a reason, an error code, Prima's or Shopify's
error message quoted): made fit instead of refused (NUL escaped, a lone surrogate replaced, cut
at MAX_TEXT_LENGTH), since refusing it would lose the failure it reports."""

Email = Annotated[str, Field(max_length=MAX_EMAIL_LENGTH), AfterValidator(_text)]

CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
"""ISO 4217: three capital letters."""

Amount = Annotated[
    Decimal,
    Field(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, allow_inf_nan=False),
    BeforeValidator(_not_bool),
    # Decimals travel as strings on every topic, so no consumer ever parses a float.
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]{1,16}(\.[0-9]+)?$",
                    "description": "a decimal amount as a string: at most 16 digits before the point and "
                                   "two significant places after it (numeric(18, 2))"}),
]
"""An amount of money: finite, at most two places, within numeric(18, 2)."""

Rate = Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False), BeforeValidator(_not_bool),
                 PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
                 WithJsonSchema({"type": "string", "pattern": r"^[0-9]{1,3}(\.[0-9]+)?$",
                                 "description": "a rate as a decimal string, 0 to 100 (0.08875 for 8.875 %)"})]
"""A tax rate (0.08875 for 8.875 %): finite, 0 to 100."""


def Lines(item: Any) -> Any:  # noqa: N802 - a type factory, read as a type
    """A tuple of `item` of bounded length (the lines of an order, a bundle's components)."""
    return Annotated[tuple[item, ...], Field(max_length=MAX_LIST_LENGTH)]


# ------------------------------------------------------------------------------ JSON


class InvalidJSON(ValueError):
    """The text is not JSON this integration takes. The message is short and never quotes it."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise InvalidJSON("an object has the same key twice")
    return document


def _no_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    """A JSON number with a fraction or an exponent; one too large for a float (1e999) is not
    read as Infinity."""
    number = float(text)
    if math.isinf(number):
        raise InvalidJSON("a number is too large")
    return number


def _depth_within(document: Any, limit: int) -> None:
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            raise InvalidJSON(f"the JSON is nested more than {limit} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))


def parse_json(data: bytes | str, *, max_depth: int | None = MAX_JSON_DEPTH) -> Any:
    """The JSON document in `data`, or InvalidJSON: no body, not UTF-8, not JSON, a duplicated
    key, NaN or Infinity (written, or a number too large for a float), a number too long to
    read, or nested deeper than `max_depth` (None: as deep as Python's parser goes, about a
    thousand levels)."""
    if not isinstance(data, (bytes, bytearray, str)):  # a Kafka tombstone (None) has no document
        raise InvalidJSON("there is no body")
    try:
        document = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                              parse_float=_finite)
    except InvalidJSON:
        raise
    except RecursionError:
        raise InvalidJSON(f"the JSON is nested more than {max_depth or 'a thousand'} levels deep") from None
    except UnicodeDecodeError:
        raise InvalidJSON("the body is not UTF-8") from None
    except json.JSONDecodeError as exc:  # its text holds no input: a reason and a position
        raise InvalidJSON(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # an integer of more than 4,300 digits
        raise InvalidJSON("a number is too long") from None
    if max_depth is not None:
        _depth_within(document, max_depth)
    return document


def check_json(data: bytes | str) -> None:
    """InvalidJSON unless `data` is JSON without a duplicated key, NaN or Infinity: for a
    consumer that then validates the same bytes against a model with pydantic (which would take
    a duplicated key's last value). The depth needs no walk there: a model's fields are only as
    deep as the model, and pydantic's parser refuses JSON nested more than 200 levels."""
    parse_json(data, max_depth=None)
