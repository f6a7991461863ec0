"""SKU mapping: each Shopify line's SKU to an active item of Prima's item master.

Prima owns items and SKUs. A line whose SKU is missing, unknown to Prima or inactive cannot be
sent: the whole order is quarantined rather than sent in part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contracts.shopify import LineItem, ShopifyOrder


@dataclass(frozen=True)
class PrimaItem:
    item_id: str
    sku: str
    description: str
    active: bool = True
    item_type: str = "stock"


ItemMaster = Mapping[str, PrimaItem]  # by SKU


@dataclass(frozen=True)
class MappedLine:
    line: LineItem
    item: PrimaItem


@dataclass(frozen=True)
class MappingResult:
    lines: tuple[MappedLine, ...]
    unmapped_skus: tuple[str, ...]  # "" stands for a line that has no SKU at all

    @property
    def complete(self) -> bool:
        return not self.unmapped_skus


def map_order_lines(order: ShopifyOrder, items: ItemMaster) -> MappingResult:
    mapped: list[MappedLine] = []
    unmapped: list[str] = []
    for line in order.line_items:
        if line.quantity == 0:  # removed by an edit: nothing to sell
            continue
        item = items.get(line.sku or "")
        if item is None or not item.active:
            unmapped.append(line.sku or "")
        else:
            mapped.append(MappedLine(line=line, item=item))
    return MappingResult(lines=tuple(mapped), unmapped_skus=tuple(dict.fromkeys(unmapped)))
