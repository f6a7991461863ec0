"""Facts polled from Prima's stock and item master (prima.inventory.v1, keyed by SKU).

PrimaStockLevel: available to sell per SKU and warehouse, as of one stock change.
PrimaItemChanged: one item of the item master (a bundle, a Prima kit, lists its components).
One topic, so that a SKU's item and stock facts keep their order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PrimaStockLevel(_Frozen):
    """Prima's available-to-sell for one SKU in one warehouse, as of one stock change."""

    message_type: Literal["PrimaStockLevel"] = "PrimaStockLevel"
    sku: str
    warehouse: str
    available: int  # may be negative in Prima (oversold); the buffer rule clamps at zero
    change_id: int = Field(ge=1)  # Prima's stock-change sequence: increasing per record
    changed_at: datetime
    polled_at: datetime


class BundleComponent(_Frozen):
    sku: str
    quantity: int = Field(gt=0)  # units of the component in one bundle


class PrimaItemChanged(_Frozen):
    """One item of Prima's item master (a bundle lists its components)."""

    message_type: Literal["PrimaItemChanged"] = "PrimaItemChanged"
    sku: str
    item_id: str
    description: str
    item_type: Literal["stock", "bundle", "service"]
    active: bool
    components: tuple[BundleComponent, ...] = ()
    updated_at: datetime
    polled_at: datetime


PrimaInventoryFact = Annotated[PrimaStockLevel | PrimaItemChanged, Field(discriminator="message_type")]


def sku_key(sku: str) -> bytes:
    """Every message about one SKU is keyed by the SKU, so one consumer sees it in order."""
    return sku.encode()
