"""The inventory application: facts in, StockItem and CatalogItem decisions out.

`handle(facts, now)` applies a batch of facts (Prima stock and items, Shopify catalogue reads,
Shopify outcomes) in order and saves every aggregate it changed in one transaction together with
the notification log (the outbox). A redelivered batch changes nothing: each aggregate ignores a
fact it has already applied (Prima change ids, item update times, Shopify read times, command
ids).

Bundles: the application keeps an index bundle -> components, rebuilt at start from the
CatalogItem events in the log and kept current as item facts arrive. When a component's stock
changes at a location, every bundle containing it is recomputed there (the bundle's StockItem is
loaded before its components are read, so a concurrent change of another component makes one of
the two saves conflict and be retried, never leaves a stale minimum).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder

from domain.catalog.items import ItemType
from domain.inventory.buffer import BufferRules
from domain.inventory.bundle import bundle_available
from domain.inventory.domainmodel import CatalogItem, StockItem
from domain.inventory.values import (
    VALUE_TYPES,
    InventoryFact,
    ItemReported,
    ProductStatusApplied,
    ProductStatusRefusedByShopify,
    PushConfirmedByShopify,
    PushParkedByGateway,
    PushRejectedByShopify,
    StockLevelReleaseRequested,
    StockLevelReported,
    VariantSeen,
)
from domain.shared.application import BatchApplication, UnitOfWork
from domain.shared.transcoding import register_values

ITEM_RECORDED_TOPIC = f"{CatalogItem.__module__}:CatalogItem.PrimaItemRecorded"


@dataclass(frozen=True)
class InventoryPolicy:
    """What configuration decides: warehouse -> Shopify location, buffers, the guard switch."""

    location_map: dict[str, str]
    rules: BufferRules
    draft_unpublished: bool = False

    @property
    def warehouse_of(self) -> dict[str, str]:
        return {location: warehouse for warehouse, location in self.location_map.items()}


@dataclass
class HandleResult:
    applied: int = 0
    ignored: int = 0
    pushes: int = 0
    saved_aggregates: int = 0
    exceptions: list[str] = field(default_factory=list)
    releases: list[tuple[str, str, bool]] = field(default_factory=list)  # (SKU, location, released)


class _InventoryWork(UnitOfWork):
    """A unit of work that also creates the StockItem or CatalogItem a fact is the first for."""

    def stock(self, sku: str, location_id: str, warehouse: str) -> StockItem:
        found = self.get(StockItem.create_id(sku, location_id))
        return cast(StockItem, found if found is not None else self.add(StockItem(sku, location_id, warehouse)))

    def catalog(self, sku: str) -> CatalogItem:
        found = self.get(CatalogItem.create_id(sku))
        return cast(CatalogItem, found if found is not None else self.add(CatalogItem(sku)))



class InventoryApplication(BatchApplication):
    name = "inventory"

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_values(transcoder, *VALUE_TYPES)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bundles: dict[str, dict[str, int]] = {}  # bundle SKU -> component SKU -> units
        self.bundles_of: dict[str, set[str]] = {}  # component SKU -> bundle SKUs
        self._index_position = 0
        self._bundle_skus: dict[UUID, str] = {}  # CatalogItem id -> SKU, for bundles seen

    # -- the bundle index ---------------------------------------------------------------------

    def load_bundle_index(self) -> int:
        """Read the CatalogItem item events recorded since the last load (all, the first time)."""
        while True:
            notifications = self.recorder.select_notifications(
                self._index_position + 1, 1000, topics=[ITEM_RECORDED_TOPIC])
            if not notifications:
                return len(self.bundles)
            for notification in notifications:
                self._index_position = notification.id
                domain_event = self.mapper.to_domain_event(notification)
                aggregate_id = domain_event.originator_id
                if domain_event.item_type != ItemType.BUNDLE and aggregate_id not in self._bundle_skus:
                    continue  # neither a bundle nor one that was: nothing to index
                sku = self._bundle_skus.get(aggregate_id) or self._sku_of_catalog(aggregate_id)
                self._bundle_skus[aggregate_id] = sku
                self._index(sku, domain_event.item_type, domain_event.components)

    def _sku_of_catalog(self, aggregate_id: UUID) -> str:
        first = self.recorder.select_events(aggregate_id, lte=1)[0]
        return self.mapper.to_domain_event(first).sku

    def _index(self, sku: str, item_type: str, components: dict[str, int]) -> None:
        for component in self.bundles.pop(sku, {}):
            self.bundles_of.get(component, set()).discard(sku)
        if item_type == ItemType.BUNDLE and components:
            self.bundles[sku] = dict(components)
            for component in components:
                self.bundles_of.setdefault(component, set()).add(sku)

    # -- facts ----------------------------------------------------------------------------------

    def _needed(self, facts: list[InventoryFact], policy: InventoryPolicy) -> list[UUID]:
        """The aggregates a batch of facts will load (bundles' components come on demand)."""
        warehouses = policy.warehouse_of
        ids: list[UUID] = []
        for fact in facts:
            if isinstance(fact, StockLevelReported):
                location = policy.location_map.get(fact.warehouse)
                ids.append(StockItem.create_id(fact.sku, location) if location else CatalogItem.create_id(fact.sku))
            elif isinstance(fact, (ItemReported, ProductStatusApplied, ProductStatusRefusedByShopify)):
                ids.append(CatalogItem.create_id(fact.sku))
            elif isinstance(fact, VariantSeen):
                ids.append(CatalogItem.create_id(fact.sku))
                ids.extend(StockItem.create_id(fact.sku, level.location_id) for level in fact.levels
                           if level.location_id in warehouses)
            elif isinstance(fact, (PushConfirmedByShopify, PushRejectedByShopify, PushParkedByGateway,
                                   StockLevelReleaseRequested)):
                ids.append(StockItem.create_id(fact.sku, fact.location_id))
        return ids

    def handle(self, facts: Iterable[InventoryFact], policy: InventoryPolicy, now: datetime) -> HandleResult:
        result = HandleResult()
        uow = _InventoryWork(self)
        facts = list(facts)
        uow.preload(self._needed(facts, policy))
        for fact in facts:
            applied = self._apply(uow, fact, policy, now, result)
            if applied:
                result.applied += 1
            else:
                result.ignored += 1
        for aggregate in uow.loaded.values():
            if isinstance(aggregate, StockItem):
                result.pushes += sum(1 for e in aggregate.pending_events if isinstance(e, StockItem.PushRequested))
        result.saved_aggregates = uow.commit()
        return result

    def _apply(self, uow: _InventoryWork, fact: InventoryFact, policy: InventoryPolicy, now: datetime,
               result: HandleResult) -> bool:
        rules = policy.rules
        if isinstance(fact, StockLevelReported):
            location = policy.location_map.get(fact.warehouse)
            if location is None:
                catalog = uow.catalog(fact.sku)
                if catalog.record_unmapped_warehouse(fact.warehouse, fact.available, fact.change_id):
                    result.exceptions.append(f"unmapped warehouse {fact.warehouse} ({fact.sku})")
                    return True
                return False
            stock = uow.stock(fact.sku, location, fact.warehouse)
            changed = stock.record_prima_stock(fact.available, fact.change_id, rules, now)
            if changed:
                for bundle in sorted(self.bundles_of.get(fact.sku, ())):
                    self._recompute_bundle(uow, bundle, location, fact.warehouse, rules, now)
            return changed
        if isinstance(fact, ItemReported):
            catalog = uow.catalog(fact.sku)
            changed = catalog.record_prima_item(fact, policy.draft_unpublished, now)
            if changed:
                self._index(fact.sku, str(fact.item.item_type), {c.sku: c.quantity for c in fact.item.components})
                if fact.sku in self.bundles:
                    for warehouse, location in policy.location_map.items():
                        self._recompute_bundle(uow, fact.sku, location, warehouse, rules, now)
            return changed
        if isinstance(fact, VariantSeen):
            catalog = uow.catalog(fact.sku)
            changed = catalog.record_variant(fact, policy.draft_unpublished, now)
            warehouses = policy.warehouse_of
            for level in fact.levels:
                warehouse = warehouses.get(level.location_id)
                if warehouse is None:
                    continue  # a Shopify location Prima does not feed
                stock = uow.stock(fact.sku, level.location_id, warehouse)
                changed |= stock.record_observation(
                    fact.inventory_item_id, level.available, fact.observed_at, fact.sync_run_id, rules, now)
            return changed
        if isinstance(fact, (PushConfirmedByShopify, PushRejectedByShopify, PushParkedByGateway)):
            found = cast("StockItem | None", uow.get(StockItem.create_id(fact.sku, fact.location_id)))
            if found is None:
                return False
            return found.record_outcome(fact)
        if isinstance(fact, (ProductStatusApplied, ProductStatusRefusedByShopify)):
            found_catalog = cast("CatalogItem | None", uow.get(CatalogItem.create_id(fact.sku)))
            if found_catalog is None:
                return False
            return found_catalog.record_status_outcome(fact)
        if isinstance(fact, StockLevelReleaseRequested):
            found = cast("StockItem | None", uow.get(StockItem.create_id(fact.sku, fact.location_id)))
            released = found is not None and found.release(fact.released_by, rules, fact.requested_at)
            result.releases.append((fact.sku, fact.location_id, released))
            return released
        raise TypeError(f"not an inventory fact: {type(fact).__name__}")

    def _recompute_bundle(self, uow: _InventoryWork, bundle: str, location: str, warehouse: str,
                          rules: BufferRules, now: datetime) -> None:
        components = self.bundles.get(bundle)
        if not components:
            return
        stock = uow.stock(bundle, location, warehouse)  # loaded before its components are read
        levels = {}
        for component in components:
            found = cast("StockItem | None", uow.get(StockItem.create_id(component, location)))
            levels[component] = found.prima_available if found is not None and found.prima_available is not None else 0
        stock.record_bundle_level(bundle_available(components, levels), components, rules, now)

    # -- peak windows and queries ------------------------------------------------------------

    def refresh(self, keys: Iterable[tuple[str, str]], policy: InventoryPolicy, now: datetime) -> int:
        """Re-evaluate the buffer of these SKU-locations (a peak window opened or closed)."""
        uow = _InventoryWork(self)
        for sku, location in keys:
            found = cast("StockItem | None", uow.get(StockItem.create_id(sku, location)))
            if found is not None:
                found.refresh(policy.rules, now)
        return uow.commit()

    def find_stock(self, sku: str, location_id: str) -> StockItem | None:
        return cast("StockItem | None", self.find(StockItem.create_id(sku, location_id)))

    def find_catalog(self, sku: str) -> CatalogItem | None:
        return cast("CatalogItem | None", self.find(CatalogItem.create_id(sku)))
