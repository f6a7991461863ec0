"""The read models (CQRS read side): one module per read model, each a Projection
(projections/base.py) that declares its states and exception kinds once."""

from __future__ import annotations

from projections.base import Projection, ReadModel
from projections.dead_letters import DeadLettersProjection
from projections.inventory_health import InventoryHealthProjection
from projections.item_master import ItemMasterProjection
from projections.order_fulfilment import OrderFulfilmentProjection
from projections.order_sync import OrderSyncProjection
from projections.payouts import PaymentGatewaysProjection, PayoutsProjection
from projections.sales_documents import SalesDocumentsProjection

PROJECTIONS: dict[str, type[Projection]] = {
    p.read_model.name: p
    for p in (OrderSyncProjection, InventoryHealthProjection, ItemMasterProjection, DeadLettersProjection,
              PayoutsProjection, SalesDocumentsProjection, OrderFulfilmentProjection, PaymentGatewaysProjection)
}
READ_MODELS: dict[str, ReadModel] = {name: p.read_model for name, p in PROJECTIONS.items()}
