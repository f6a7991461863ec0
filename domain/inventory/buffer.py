"""The safety buffer: how many units of Prima's available-to-sell are held back from Shopify.

Rules, from configuration (settings.inventory_buffer, validated at start-up):
- `default`: the global buffer.
- `groups`: ordered SKU groups, each a glob pattern (fnmatch, e.g. "TEE-*") with its buffer; the
  first group whose pattern matches the SKU applies.
- `skus`: per-SKU buffers; they beat the groups and the default.
- `peak`: time windows (e.g. a sale weekend) with their own layer of the same three rules. While
  a window is open, a value it defines for the SKU (its SKU entry, else its first matching group,
  else its default) beats the normal rules; what the window leaves undefined falls through.
Windows may not overlap, so at most one is open at any instant.
"""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase
from typing import NamedTuple

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    model_validator,
)


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SkuGroup(_Rules):
    name: str = Field(min_length=1)
    match: str = Field(min_length=1)  # fnmatch pattern over the SKU, case-sensitive
    buffer: NonNegativeInt


class _Layer(_Rules):
    skus: dict[str, NonNegativeInt] = {}
    groups: tuple[SkuGroup, ...] = ()

    @model_validator(mode="after")
    def _unique_group_names(self):
        names = [group.name for group in self.groups]
        if len(names) != len(set(names)):
            raise ValueError(f"SKU group names must be unique, got {names}")
        return self

    def _lookup(self, sku: str, default: int | None) -> tuple[int, str] | None:
        if sku in self.skus:
            return self.skus[sku], f"sku {sku}"
        for group in self.groups:
            if fnmatchcase(sku, group.match):
                return group.buffer, f"group {group.name}"
        if default is not None:
            return default, "default"
        return None


class PeakWindow(_Layer):
    name: str = Field(min_length=1)
    start: AwareDatetime
    end: AwareDatetime
    default: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.end <= self.start:
            raise ValueError(f"peak window {self.name!r}: end must be after start")
        return self

    def open_at(self, at: datetime) -> bool:
        return self.start <= at < self.end


class Buffer(NamedTuple):
    units: int
    rule: str  # which rule gave it, for the inventory health read model


class BufferRules(_Layer):
    default: NonNegativeInt = 0
    peak: tuple[PeakWindow, ...] = ()

    @model_validator(mode="after")
    def _windows_do_not_overlap(self):
        windows = sorted(self.peak, key=lambda w: w.start)
        for before, after in zip(windows, windows[1:]):
            if after.start < before.end:
                raise ValueError(f"peak windows {before.name!r} and {after.name!r} overlap")
        return self

    def buffer_for(self, sku: str, at: datetime) -> Buffer:
        for window in self.peak:
            if window.open_at(at):
                found = window._lookup(sku, window.default)
                if found is not None:
                    return Buffer(found[0], f"peak {window.name}: {found[1]}")
        units, rule = self._lookup(sku, self.default)  # type: ignore[misc]  (default is set)
        return Buffer(units, rule)

    def boundaries(self) -> list[datetime]:
        """Instants where a window opens or closes: the desired levels change there."""
        return sorted({w.start for w in self.peak} | {w.end for w in self.peak})


def desired_level(prima_available: int, buffer: int, pending_allocations: int = 0) -> int:
    """What Shopify should show: Prima's available minus the buffer, minus the units of orders
    the integration has accepted that Prima has not allocated yet (Shopify already sold them;
    Prima's figure does not know it), never below zero."""
    return max(0, prima_available - buffer - pending_allocations)
