"""The inventory application: facts in, StockItem and CatalogItem decisions out.

`handle(facts, now)` applies a batch of facts (Prima stock and items, Shopify catalogue reads,
Shopify outcomes) in order and saves every aggregate it changed in one transaction together with
the notification log (the outbox). A redelivered batch changes nothing: each aggregate ignores a
fact it has already applied (Prima change ids, item update times, Shopify read times, command
ids).

Pending allocations: the order flow's facts (an order accepted, its sales order created in Prima,
refused by Prima) go to the StockItems of the order's SKUs at the allocation warehouse's
location. An index order -> StockItems holding it pending (rebuilt at start from the log, like
the bundle index) finds them for the facts that do not list the lines.

Pushes the Shopify gateway gave up on: an index of the StockItems holding such an exception
(rebuilt at start) lets `auto_release` decide them again after their backoff, without a person.

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
from typing import ClassVar, cast
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder

from domain.catalog.items import ItemType
from domain.inventory.buffer import BufferRules
from domain.inventory.bundle import bundle_available
from domain.inventory.domainmodel import CatalogItem, StockItem
from domain.inventory.values import (
    VALUE_TYPES,
    AutoRelease,
    InventoryFact,
    ItemReported,
    OrderAccepted,
    OrderNotAllocated,
    ProductStatusApplied,
    ProductStatusRefusedByShopify,
    PushConfirmedByShopify,
    PushFoundStaleByShopify,
    PushParkedByGateway,
    PushRejectedByShopify,
    SalesOrderCreatedInPrima,
    StockLevelReleaseRequested,
    StockLevelReported,
    VariantSeen,
)
from domain.shared.application import BatchApplication, UnitOfWork
from domain.shared.transcoding import register_values

ITEM_RECORDED_TOPIC = f"{CatalogItem.__module__}:CatalogItem.PrimaItemRecorded"
ALLOCATION_TOPICS = [f"{StockItem.__module__}:StockItem.AllocationPending",
                     f"{StockItem.__module__}:StockItem.AllocationCleared"]
PUSH_FAILED_TOPIC = f"{StockItem.__module__}:StockItem.PushFailed"
PUSH_OUTCOMES = (PushConfirmedByShopify, PushRejectedByShopify, PushParkedByGateway, PushFoundStaleByShopify)


@dataclass(frozen=True)
class InventoryPolicy:
    """What configuration decides: warehouse -> Shopify location, buffers, the guard switch, and
    the warehouse whose stock an accepted order takes until Prima allocates it (None: the first
    of the map)."""

    location_map: dict[str, str]
    rules: BufferRules
    draft_unpublished: bool = False
    allocation_warehouse: str | None = None

    @property
    def warehouse_of(self) -> dict[str, str]:
        return {location: warehouse for warehouse, location in self.location_map.items()}

    @property
    def allocation_location(self) -> str | None:
        warehouse = self.allocation_warehouse or next(iter(self.location_map), None)
        return self.location_map.get(warehouse) if warehouse is not None else None


@dataclass
class HandleResult:
    applied: int = 0
    ignored: int = 0
    pushes: int = 0
    saved_aggregates: int = 0
    exceptions: list[str] = field(default_factory=list)
    releases: list[tuple[str, str, bool]] = field(default_factory=list)  # (SKU, location, released)
    allocations: int = 0  # pending allocations added (orders accepted, per SKU-location)


class _InventoryWork(UnitOfWork):
    """A unit of work that also creates the StockItem or CatalogItem a fact is the first for."""

    saved = 0

    def stock(self, sku: str, location_id: str, warehouse: str) -> StockItem:
        found = self.get(StockItem.create_id(sku, location_id))
        return cast(StockItem, found if found is not None else self.add(StockItem(sku, location_id, warehouse)))

    def catalog(self, sku: str) -> CatalogItem:
        found = self.get(CatalogItem.create_id(sku))
        return cast(CatalogItem, found if found is not None else self.add(CatalogItem(sku)))



class InventoryApplication(BatchApplication):
    name = "inventory"
    # a snapshot every 100 events (the default of Settings.inventory_snapshot_interval, which overrides it)
    snapshotting_intervals: ClassVar[dict[type, int]] = {StockItem: 100, CatalogItem: 100}

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_values(transcoder, *VALUE_TYPES)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bundles: dict[str, dict[str, int]] = {}  # bundle SKU -> component SKU -> units
        self.bundles_of: dict[str, set[str]] = {}  # component SKU -> bundle SKUs
        self._index_position = 0
        self._bundle_skus: dict[UUID, str] = {}  # CatalogItem id -> SKU, for bundles seen
        self.pending_orders: dict[str, set[UUID]] = {}  # order id -> StockItems holding it pending
        self._allocation_position = 0
        self.failed: set[UUID] = set()  # StockItems whose push the gateway gave up on

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

    def load_allocation_index(self) -> int:
        """Read the pending-allocation events recorded since the last load: which StockItems hold
        which orders pending (an index kept current as facts arrive; a stale entry is harmless,
        the StockItem ignores an order it does not hold)."""
        while True:
            notifications = self.recorder.select_notifications(
                self._allocation_position + 1, 1000, topics=ALLOCATION_TOPICS)
            if not notifications:
                return sum(len(ids) for ids in self.pending_orders.values())
            for notification in notifications:
                self._allocation_position = notification.id
                domain_event = self.mapper.to_domain_event(notification)
                holders = self.pending_orders.setdefault(domain_event.order_id, set())
                if isinstance(domain_event, StockItem.AllocationPending):
                    holders.add(domain_event.originator_id)
                else:
                    holders.discard(domain_event.originator_id)
                if not holders:
                    del self.pending_orders[domain_event.order_id]

    def load_failed_index(self) -> int:
        """The StockItems that hold a push_failed exception now (read from the log at start)."""
        candidates, position = set(), 0
        while True:
            notifications = self.recorder.select_notifications(position + 1, 5000, topics=[PUSH_FAILED_TOPIC])
            if not notifications:
                break
            candidates |= {n.originator_id for n in notifications}
            position = notifications[-1].id
        for aggregate in self.load_many(sorted(candidates)).values():
            self._track_failed(aggregate)
        return len(self.failed)

    def _track_failed(self, aggregate: object) -> None:
        if not isinstance(aggregate, StockItem):
            return
        if aggregate.exception is not None and aggregate.exception.kind == "push_failed":
            self.failed.add(aggregate.id)
        else:
            self.failed.discard(aggregate.id)

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
            elif isinstance(fact, (*PUSH_OUTCOMES, StockLevelReleaseRequested)):
                ids.append(StockItem.create_id(fact.sku, fact.location_id))
            elif isinstance(fact, OrderAccepted):
                location = policy.allocation_location
                if location is not None:
                    ids.extend(StockItem.create_id(line.sku, location) for line in fact.lines)
            elif isinstance(fact, (SalesOrderCreatedInPrima, OrderNotAllocated)):
                ids.extend(self.pending_orders.get(fact.order_id, ()))
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
        self._commit(uow)
        result.saved_aggregates = uow.saved
        return result

    def _commit(self, uow: _InventoryWork) -> None:
        """Save, then bring the in-memory indexes up to date with what was saved."""
        changed = [a for a in uow.loaded.values() if isinstance(a, StockItem) and a.pending_events]
        allocation_events = [(a.id, e) for a in changed for e in a.pending_events
                             if isinstance(e, (StockItem.AllocationPending, StockItem.AllocationCleared))]
        uow.saved = uow.commit()
        for aggregate_id, e in allocation_events:
            holders = self.pending_orders.setdefault(e.order_id, set())
            if isinstance(e, StockItem.AllocationPending):
                holders.add(aggregate_id)
            else:
                holders.discard(aggregate_id)
            if not holders:
                del self.pending_orders[e.order_id]
        for aggregate in changed:
            self._track_failed(aggregate)

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
            changed = stock.record_prima_stock(fact.available, fact.change_id, rules, now,
                                               allocated_for=fact.allocated_for,
                                               allocated_through=fact.allocated_through)
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
        if isinstance(fact, PUSH_OUTCOMES):
            found = cast("StockItem | None", uow.get(StockItem.create_id(fact.sku, fact.location_id)))
            if found is None:
                return False
            return found.record_outcome(fact, rules, now)
        if isinstance(fact, OrderAccepted):
            return self._order_accepted(uow, fact, policy, now, result)
        if isinstance(fact, (SalesOrderCreatedInPrima, OrderNotAllocated)):
            changed = False
            for aggregate_id in sorted(self.pending_orders.get(fact.order_id, ())):
                found = cast("StockItem | None", uow.get(aggregate_id))
                if found is None:
                    continue
                if isinstance(fact, SalesOrderCreatedInPrima):
                    changed |= found.record_sales_order_created(fact.order_id, fact.sales_order_number,
                                                                fact.position, rules, now)
                else:
                    changed |= found.record_order_not_allocated(fact.order_id, fact.reason, rules, now)
            return changed
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
        levels, through = {}, []
        for component in components:
            found = cast("StockItem | None", uow.get(StockItem.create_id(component, location)))
            levels[component] = found.prima_available if found is not None and found.prima_available is not None else 0
            through.append(found.allocated_through if found is not None else 0)
        # a bundle's sales order is allocated on its components: included once every one's records are
        stock.record_bundle_level(bundle_available(components, levels), components, rules, now,
                                  allocated_through=min(through))

    def _order_accepted(self, uow: _InventoryWork, fact: OrderAccepted, policy: InventoryPolicy, now: datetime,
                        result: HandleResult) -> bool:
        location = policy.allocation_location
        if location is None:
            return False
        units: dict[str, int] = {}
        for line in fact.lines:
            units[line.sku] = units.get(line.sku, 0) + line.units
        changed = False
        for sku, count in units.items():
            found = cast("StockItem | None", uow.get(StockItem.create_id(sku, location)))
            if found is not None and found.record_order_accepted(fact.order_id, fact.reference, count,
                                                                 policy.rules, now):
                # indexed at once, for a later fact of the same batch (an entry whose save then
                # fails is harmless: the StockItem ignores an order it does not hold)
                self.pending_orders.setdefault(fact.order_id, set()).add(found.id)
                result.allocations += 1
                changed = True
        return changed

    # -- peak windows and queries ------------------------------------------------------------

    def refresh(self, keys: Iterable[tuple[str, str]], policy: InventoryPolicy, now: datetime) -> int:
        """Re-evaluate the buffer of these SKU-locations (a peak window opened or closed)."""
        uow = _InventoryWork(self)
        for sku, location in keys:
            found = cast("StockItem | None", uow.get(StockItem.create_id(sku, location)))
            if found is not None:
                found.refresh(policy.rules, now)
        self._commit(uow)
        return uow.saved

    def auto_release(self, policy: InventoryPolicy, now: datetime, retry: AutoRelease) -> list[tuple[str, str]]:
        """Decide again the SKU-locations whose push the gateway gave up on, once their backoff
        is over and while the horizon after their first failure is not (then a person looks):
        the same path as an operator's release, released by "auto: ...". The ones released."""
        uow = _InventoryWork(self)
        uow.preload(sorted(self.failed))
        released = []
        for aggregate_id in sorted(self.failed):
            found = cast("StockItem | None", uow.get(aggregate_id))
            if found is None or not found.auto_release_due(now, retry):
                continue
            first = found.first_failed_at or found.failed_at
            by = (f"auto: the Shopify gateway gave up ({found.failures} time(s) since "
                  f"{first.isoformat() if first else 'unknown'}): {found.exception.reason}")[:500]
            if found.release(by, policy.rules, now, origin="auto_release"):
                released.append((found.sku, found.location_id))
        self._commit(uow)
        return released

    def find_stock(self, sku: str, location_id: str) -> StockItem | None:
        return cast("StockItem | None", self.find(StockItem.create_id(sku, location_id)))

    def find_catalog(self, sku: str) -> CatalogItem | None:
        return cast("CatalogItem | None", self.find(CatalogItem.create_id(sku)))
