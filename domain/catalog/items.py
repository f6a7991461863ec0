"""Prima's item master as the deciders see it (Prima owns items and SKUs).

One rule for what can be sold through Shopify: `is_sellable`. The order decider uses it to map
a line's SKU, the publishing guard to flag a Shopify variant with nothing to sell behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class ItemType(StrEnum):
    STOCK = "stock"
    BUNDLE = "bundle"  # a Prima kit: sold as one, picked as its components
    SERVICE = "service"  # no stock: not sold as a Shopify product


@dataclass(frozen=True)
class Component:
    sku: str
    quantity: int  # units of the component in one bundle


@dataclass(frozen=True)
class PrimaItem:
    item_id: str
    sku: str
    description: str
    item_type: str = ItemType.STOCK
    active: bool = True
    components: tuple[Component, ...] = ()


ItemMaster = Mapping[str, PrimaItem]  # by SKU


def is_sellable(item: PrimaItem | None) -> bool:
    """Shopify may sell a SKU when Prima has an active stock item or kit for it. A service item
    has no stock to sell, an inactive one is withdrawn, an unknown one does not exist."""
    return item is not None and item.active and item.item_type != ItemType.SERVICE


def why_not_sellable(item: PrimaItem | None) -> str | None:
    """None when sellable, else the reason in a few words."""
    if item is None:
        return "no Prima item with this SKU"
    if not item.active:
        return "the Prima item is inactive"
    if item.item_type == ItemType.SERVICE:
        return "the Prima item is a service"
    return None
