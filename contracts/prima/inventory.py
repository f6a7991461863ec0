"""Facts polled from Prima's stock and item master (prima.inventory.v1, keyed by SKU).

PrimaStockLevel: available to sell per SKU and warehouse, as of one stock change.
PrimaItemChanged: one item of the item master (a bundle, a Prima kit, lists its components).
One topic, so that a SKU's item and stock facts keep their order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.validation import Code, Id, Lines, PositiveQuantity, StockQuantity, Text


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PrimaStockLevel(_Frozen):
    """Prima's available-to-sell for one SKU in one warehouse, as of one stock change."""

    message_type: Literal["PrimaStockLevel"] = "PrimaStockLevel"
    sku: Code
    warehouse: Code
    available: StockQuantity  # may be negative in Prima (oversold); the buffer rule clamps at zero
    change_id: Id  # Prima's stock-change sequence: increasing per record
    changed_at: datetime
    polled_at: datetime
    # The latest sales order whose allocation the record includes: its external reference (the
    # Shopify order id) and number. Prima numbers sales orders in commit order and allocates in
    # the same transaction, so the record includes every sales order up to that number.
    allocated_for: Code | None = None
    allocated_sales_order: Code | None = None


class BundleComponent(_Frozen):
    sku: Code
    quantity: PositiveQuantity  # units of the component in one bundle


class PrimaItemChanged(_Frozen):
    """One item of Prima's item master (a bundle lists its components)."""

    message_type: Literal["PrimaItemChanged"] = "PrimaItemChanged"
    sku: Code
    item_id: Code
    description: Text
    item_type: Literal["stock", "bundle", "service"]
    active: bool
    components: Lines(BundleComponent) = ()
    updated_at: datetime
    polled_at: datetime
    change_id: Id | None = None  # Prima's item-change sequence: increasing in commit order


PrimaInventoryFact = Annotated[PrimaStockLevel | PrimaItemChanged, Field(discriminator="message_type")]


def sales_order_position(number: str | None) -> int:
    """A Prima sales order's place in its sequential numbering: SO-000123 -> 123 (0: none)."""
    digits = "".join(c for c in (number or "").rsplit("-", 1)[-1] if c.isdigit())
    return int(digits) if digits else 0


def sku_key(sku: str) -> bytes:
    """Every message about one SKU is keyed by the SKU, so one consumer sees it in order."""
    return sku.encode()
