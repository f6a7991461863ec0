"""A Shopify SKU and Prima's item identity: a style code (`Product`) plus up to four matrix codes
(`MtrxCode1..4`: colour, size, ...), as Prima's OM link names its items (reference PRIMA.md).

The integration owns this mapping (DESIGN.md: SKU mapping), as configuration:
- a `pattern` that composes the SKU from the parts, e.g. "{Product}-{MtrxCode2}" or
  "{Product}-{MtrxCode1}-{MtrxCode2}", read both ways;
- a `table` of explicit SKUs ({"MUG-STONE": {"Product": "MUG", "MtrxCode1": "STONE"}}) for the
  SKUs the pattern does not fit; a table entry wins over the pattern, both ways.

Reading a SKU with a pattern: the literal text between placeholders separates them; a matrix
code never contains the separator that follows or precedes it, the `Product` takes the rest
(so "{Product}-{MtrxCode2}" reads "TEE-BLK-M" as Product "TEE-BLK", size "M"). A SKU is mapped
only when composing its parts gives the SKU back; one that does not fit is `SkuNotMapped`, with
the reason. Configuration that could not be read both ways is refused when it is loaded
(`ValueError` naming the entry), never at the first order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

PARTS = ("Product", "MtrxCode1", "MtrxCode2", "MtrxCode3", "MtrxCode4")
MATRIX = PARTS[1:]
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

Code = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=False)]


@dataclass(frozen=True)
class PrimaItemCode:
    """Prima's identity of one sellable item: the style and its matrix codes ("" when unused)."""

    product: str
    mtrx_code1: str = ""
    mtrx_code2: str = ""
    mtrx_code3: str = ""
    mtrx_code4: str = ""

    @property
    def matrix(self) -> tuple[str, str, str, str]:
        return (self.mtrx_code1, self.mtrx_code2, self.mtrx_code3, self.mtrx_code4)

    def part(self, name: str) -> str:
        return self.product if name == "Product" else self.matrix[MATRIX.index(name)]

    def __str__(self) -> str:
        return "/".join([self.product, *self.matrix]).rstrip("/")


class SkuNotMapped(LookupError):
    """A SKU (or a Prima item) the mapping cannot translate; the message says why."""

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"{subject}: {reason}")
        self.subject = subject
        self.reason = reason


class TableEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    Product: Code
    MtrxCode1: str = Field("", max_length=64)
    MtrxCode2: str = Field("", max_length=64)
    MtrxCode3: str = Field("", max_length=64)
    MtrxCode4: str = Field("", max_length=64)

    def code(self) -> PrimaItemCode:
        return PrimaItemCode(self.Product, self.MtrxCode1, self.MtrxCode2, self.MtrxCode3, self.MtrxCode4)


@dataclass(frozen=True)
class _Pattern:
    text: str
    names: tuple[str, ...]
    regex: re.Pattern[str]
    separators: dict[str, str]  # matrix code -> characters it may not contain

    @classmethod
    def parse(cls, text: str) -> _Pattern:
        names = tuple(_PLACEHOLDER.findall(text))
        unknown = [n for n in names if n not in PARTS]
        if unknown:
            raise ValueError(f"pattern {text!r}: unknown placeholder(s) {unknown}; use {', '.join(PARTS)}")
        if "Product" not in names:
            raise ValueError(f"pattern {text!r} has no {{Product}}")
        if len(set(names)) != len(names):
            raise ValueError(f"pattern {text!r} names a part twice")
        literals = _PLACEHOLDER.split(text)[::2]  # the text around the placeholders
        if any("{" in lit or "}" in lit for lit in literals):
            raise ValueError(f"pattern {text!r}: a brace outside a placeholder")
        if any(not lit for lit in literals[1:-1]):
            raise ValueError(f"pattern {text!r}: two placeholders touch; put a separator between them")
        separators: dict[str, str] = {}
        regex = "^" + re.escape(literals[0])
        for i, name in enumerate(names):
            if name == "Product":
                regex += "(?P<Product>.+)"
            else:
                near = set(literals[i] + literals[i + 1])  # the text before and after it
                separators[name] = "".join(sorted(near))
                regex += f"(?P<{name}>[^{re.escape(separators[name])}]+)" if near else f"(?P<{name}>.+?)"
            regex += re.escape(literals[i + 1])
        return cls(text, names, re.compile(regex + "$", re.DOTALL), separators)

    def compose(self, code: PrimaItemCode) -> str:
        for name in MATRIX:
            value = code.part(name)
            if name not in self.names:
                if value:
                    raise SkuNotMapped(str(code), f"the pattern {self.text!r} has no {{{name}}} for {value!r}")
            elif not value:
                raise SkuNotMapped(str(code), f"the pattern {self.text!r} needs {name}, which is empty")
            elif bad := set(value) & set(self.separators[name]):
                raise SkuNotMapped(str(code), f"{name} {value!r} contains the separator {''.join(sorted(bad))!r}")
        return _PLACEHOLDER.sub(lambda m: code.part(m.group(1)), self.text)

    def read(self, sku: str) -> PrimaItemCode:
        match = self.regex.match(sku)
        if match is None:
            raise SkuNotMapped(sku, f"does not fit the pattern {self.text!r} and is not in the table")
        parts = match.groupdict()
        return PrimaItemCode(parts["Product"], *(parts.get(name, "") for name in MATRIX))


class SkuMatrix(BaseModel):
    """The configured mapping (SHOPIFY_PRIMA_OMLINK_SKU_MATRIX, JSON): a `pattern`, a `table`, or
    both. Neither is refused: every SKU would be unmapped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str | None = None
    table: dict[Code, TableEntry] = {}

    @field_validator("pattern")
    @classmethod
    def _pattern_reads_both_ways(cls, value: str | None) -> str | None:
        if value is not None:
            _Pattern.parse(value)
        return value

    @model_validator(mode="after")
    def _one_sku_per_item(self) -> SkuMatrix:
        if self.pattern is None and not self.table:
            raise ValueError("give a pattern (e.g. \"{Product}-{MtrxCode2}\"), a table of SKUs, or both")
        seen: dict[PrimaItemCode, str] = {}
        for sku, entry in self.table.items():
            code = entry.code()
            if code in seen:
                raise ValueError(f"table: SKUs {seen[code]!r} and {sku!r} are both Prima item {code}")
            seen[code] = sku
        return self

    @cached_property
    def _pattern(self) -> _Pattern | None:
        return _Pattern.parse(self.pattern) if self.pattern is not None else None

    def item_code(self, sku: str) -> PrimaItemCode:
        """The Prima item a Shopify SKU is; SkuNotMapped when neither the table nor the pattern
        gives one that composes back to the SKU."""
        if sku in self.table:
            return self.table[sku].code()
        pattern = self._pattern
        if pattern is None:
            raise SkuNotMapped(sku, "not in the SKU table (no pattern is configured)")
        code = pattern.read(sku)
        if self._codes.get(code, sku) != sku:
            raise SkuNotMapped(sku, f"reads as Prima item {code}, which the table gives to {self._codes[code]!r}")
        if pattern.compose(code) != sku:  # a separator inside a code: not read back the same
            raise SkuNotMapped(sku, f"reads as {code} under the pattern {self.pattern!r}, which composes differently")
        return code

    def sku(self, code: PrimaItemCode) -> str:
        """The Shopify SKU of a Prima item (as ProductAvailableToSell names it)."""
        if (sku := self._codes.get(code)) is not None:
            return sku
        pattern = self._pattern
        if pattern is None:
            raise SkuNotMapped(str(code), "not in the SKU table (no pattern is configured)")
        sku = pattern.compose(code)
        if sku in self.table:
            raise SkuNotMapped(str(code), f"composes to {sku!r}, which the table gives to {self.table[sku].code()}")
        return sku

    @cached_property
    def _codes(self) -> dict[PrimaItemCode, str]:
        return {entry.code(): sku for sku, entry in self.table.items()}
