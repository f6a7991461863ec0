"""The order flow's configurable rules in one value the Order decides with (the decider builds it
from settings; the aggregate never reads configuration itself)."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.orders.cutoff import CutoffRule
from domain.orders.mapping import LineRules


@dataclass(frozen=True)
class OrderPolicy:
    cutoff: CutoffRule = field(default_factory=CutoffRule)
    line_rules: LineRules = field(default_factory=LineRules)
    goodwill_item: str | None = None  # the SKU of the Prima non-stock item an amount-only refund is booked to

    def item_skus(self) -> set[str]:
        """SKUs the rules name, for the item-master read."""
        return self.line_rules.item_skus() | ({self.goodwill_item} if self.goodwill_item else set())


DEFAULT_POLICY = OrderPolicy()
