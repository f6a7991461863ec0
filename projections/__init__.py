"""The read models (CQRS read side): one module per read model, each a Projection
(projections/base.py) that declares its states and exception kinds once."""

from __future__ import annotations

from projections.base import Projection, ReadModel
from projections.dead_letters import DeadLettersProjection
from projections.inventory_health import InventoryHealthProjection
from projections.item_master import ItemMasterProjection
from projections.order_sync import OrderSyncProjection

PROJECTIONS: dict[str, type[Projection]] = {
    p.read_model.name: p
    for p in (OrderSyncProjection, InventoryHealthProjection, ItemMasterProjection, DeadLettersProjection)
}
READ_MODELS: dict[str, ReadModel] = {name: p.read_model for name, p in PROJECTIONS.items()}
