"""The item-master read model: Prima's items by SKU, built from PrimaItemChanged facts
(prima.inventory.v1). The order decider reads it (`items_for`) to map a line's SKU to a Prima
item, without calling Prima inside a handler: an order for a SKU is decided on what Prima's item
facts have said so far, and Prima being down stops nothing.

A fact older than what the row holds changes nothing, so redelivered or reordered facts are
harmless: older by Prima's item-change sequence (change_id) where both carry one, else by
updated_at. Rebuildable from offset zero like every projection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from contracts.prima.inventory import PrimaItemChanged
from contracts.topics import PRIMA_INVENTORY
from domain.catalog.items import Component, ItemMaster, PrimaItem
from projections.base import Projection, ReadModel


class ItemMasterProjection(Projection):
    read_model = ReadModel(name="item_master")
    topic = PRIMA_INVENTORY
    accepts = (PrimaItemChanged,)
    tables = ("readmodel.item_master",)

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        newest: dict[str, PrimaItemChanged] = {}
        for fact in messages:
            current = newest.get(fact.sku)
            if current is None or not later(current, fact):
                newest[fact.sku] = fact
        await conn.executemany(
            """INSERT INTO readmodel.item_master (sku, item_id, description, item_type, active, components, updated_at,
                                                  change_id)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
               ON CONFLICT (sku) DO UPDATE SET item_id = EXCLUDED.item_id, description = EXCLUDED.description,
                   item_type = EXCLUDED.item_type, active = EXCLUDED.active, components = EXCLUDED.components,
                   updated_at = EXCLUDED.updated_at, change_id = EXCLUDED.change_id
               WHERE CASE WHEN readmodel.item_master.change_id IS NOT NULL AND EXCLUDED.change_id IS NOT NULL
                          THEN readmodel.item_master.change_id <= EXCLUDED.change_id
                          ELSE readmodel.item_master.updated_at <= EXCLUDED.updated_at END""",
            [(f.sku, f.item_id, f.description, f.item_type, f.active,
              json.dumps([{"sku": c.sku, "quantity": c.quantity} for c in f.components]), f.updated_at, f.change_id)
             for f in newest.values()])


def later(a: PrimaItemChanged, b: PrimaItemChanged) -> bool:
    """Whether fact `a` is later than `b` (by Prima's change sequence when both carry it)."""
    if a.change_id is not None and b.change_id is not None:
        return a.change_id > b.change_id
    return a.updated_at > b.updated_at


async def items_for(db: asyncpg.Pool | asyncpg.Connection, skus: Iterable[str]) -> ItemMaster:
    """The items of these SKUs that Prima has told of (an unknown SKU is simply absent)."""
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    rows = await db.fetch(
        "SELECT sku, item_id, description, item_type, active, components::text AS components "
        "FROM readmodel.item_master WHERE sku = ANY($1::text[])", wanted)
    return {r["sku"]: PrimaItem(
        item_id=r["item_id"], sku=r["sku"], description=r["description"], item_type=r["item_type"],
        active=r["active"],
        components=tuple(Component(sku=c["sku"], quantity=c["quantity"]) for c in json.loads(r["components"])),
    ) for r in rows}
