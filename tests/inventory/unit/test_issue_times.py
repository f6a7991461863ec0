"""Commands are ordered by issued_at, whatever the decider's wall clock does (issue 8).

The Shopify gateway keeps, per level, the command with the latest issued_at (within a window,
newest_per_pair; across windows and restarts, its decision store), and per product the latest
SetProductStatus of a window. The issue times come from the decider's clock, which may step back
(NTP, a host moved): a decision taken after the step would then lose to the one before it. So an
aggregate's commands are strictly increasing: now, or one microsecond after its last command
(domain/inventory/domainmodel.py next_issued_at)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from domain.inventory.application import InventoryApplication, InventoryPolicy
from domain.inventory.buffer import BufferRules
from domain.inventory.domainmodel import CatalogItem, StockItem, next_issued_at
from domain.inventory.values import ProductStatusApplied
from services.inventory.translate import set_inventory_level, set_product_status
from services.shopify.inventory_writer import (
    MemoryDecisions,
    newest_per_pair,
    newest_status_per_product,
)
from tests.inventory.builders import LOC, T0, item, stock, variant

POLICY = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(default=2))
DRAFTING = InventoryPolicy(location_map={"WH-MAIN": LOC}, rules=BufferRules(), draft_unpublished=True)
STEPPED_BACK = T0 - timedelta(minutes=5)
US = timedelta(microseconds=1)


def app() -> InventoryApplication:
    return InventoryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def test_a_command_is_issued_now_unless_now_is_not_after_the_last_one():
    assert next_issued_at(None, T0) == T0
    assert next_issued_at(T0, T0 + US) == T0 + US
    assert next_issued_at(T0, T0) == T0 + US  # two decisions in one batch
    assert next_issued_at(T0, STEPPED_BACK) == T0 + US  # the clock stepped back


def test_a_level_decided_after_the_clock_stepped_back_is_the_one_the_gateway_writes():
    inventory = app()
    inventory.handle([variant("TEE", 0), stock("TEE", 10, 1)], POLICY, T0)  # 8
    inventory.handle([stock("TEE", 4, 2)], POLICY, STEPPED_BACK)  # then 2, by a clock 5 minutes behind
    older, newer = [set_inventory_level(e.command) for e in inventory.events.get(StockItem.create_id("TEE", LOC))
                    if isinstance(e, StockItem.PushRequested)]
    assert (older.quantity, newer.quantity) == (8, 2) and newer.issued_at == T0 + US

    kept, superseded = newest_per_pair([older, newer])  # in one window
    assert ([c.quantity for c in kept], [c.quantity for c in superseded]) == ([2], [8])
    decisions = MemoryDecisions()  # across windows: the older one redelivered after the newer
    assert asyncio.run(decisions.take_up([newer])) == set()
    assert asyncio.run(decisions.take_up([older])) == {older.command_id}


def test_a_product_status_decided_after_the_clock_stepped_back_is_the_one_the_gateway_sends():
    """The defect: the CatalogItem stamped its SetProductStatus with the wall clock as it was. A
    product drafted at 09:00 and restored at "08:55" by a clock that stepped back: the DRAFT
    (redelivered in the same window, say after a gateway restart) won, the ACTIVE was dropped as
    superseded, and the CatalogItem, waiting for the ACTIVE's outcome, never asked again: the
    product stayed unpublished."""
    inventory = app()
    inventory.handle([item("CAP", active=False), variant("CAP", 0)], DRAFTING, T0)
    drafted = inventory.find_catalog("CAP").status_command
    inventory.handle([ProductStatusApplied(command_id=drafted.command_id, sku="CAP", product_id=drafted.product_id,
                                           status="DRAFT", occurred_at=T0)], DRAFTING, T0)
    inventory.handle([item("CAP", active=True, at=T0 + timedelta(minutes=1)),
                      variant("CAP", 0, at=T0 + timedelta(minutes=2), status="DRAFT")], DRAFTING, STEPPED_BACK)
    draft, active = [set_product_status(e.command) for e in inventory.events.get(CatalogItem.create_id("CAP"))
                     if isinstance(e, CatalogItem.ProductStatusRequested)]
    assert (draft.status, active.status) == ("DRAFT", "ACTIVE")

    assert active.issued_at > draft.issued_at
    assert [c.status for c in newest_status_per_product([draft, active])] == ["ACTIVE"]
