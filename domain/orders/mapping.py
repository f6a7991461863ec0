"""SKU mapping: each Shopify line's SKU to a sellable item of Prima's item master.

Prima owns items and SKUs (domain/catalog/items.py says what is sellable). A line whose SKU is
missing, unknown to Prima, inactive or a service item cannot be sent: the whole order is
quarantined rather than sent in part, with each SKU's reason named.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.catalog.items import ItemMaster, PrimaItem, why_not_sellable
from domain.orders.values import OrderLine, OrderSnapshot


@dataclass(frozen=True)
class MappedLine:
    line: OrderLine
    item: PrimaItem


@dataclass(frozen=True)
class MappingResult:
    lines: tuple[MappedLine, ...]
    unmapped: tuple[tuple[str, str], ...]  # (SKU, why); "" stands for a line without a SKU

    @property
    def complete(self) -> bool:
        return not self.unmapped

    @property
    def unmapped_skus(self) -> tuple[str, ...]:
        return tuple(sku for sku, _ in self.unmapped)

    def describe(self) -> str:
        return "; ".join(f"SKU {sku!r}: {why}" if sku else "a line without a SKU" for sku, why in self.unmapped)


def skus_of(order: OrderSnapshot) -> set[str]:
    return {line.sku for line in order.lines if line.sku}


def map_order_lines(order: OrderSnapshot, items: ItemMaster) -> MappingResult:
    mapped: list[MappedLine] = []
    unmapped: dict[str, str] = {}
    for line in order.lines:
        if line.quantity == 0:  # removed by an edit: nothing to sell
            continue
        item = items.get(line.sku or "")
        why = "no SKU" if not line.sku else why_not_sellable(item)
        if why is not None or item is None:
            unmapped.setdefault(line.sku or "", why or "no Prima item with this SKU")
        else:
            mapped.append(MappedLine(line=line, item=item))
    return MappingResult(lines=tuple(mapped), unmapped=tuple(unmapped.items()))
