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
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from contracts.inventory import (
    InventoryLevelConfirmed,
    InventoryLevelFailed,
    InventoryLevelRejected,
    PrimaItemChanged,
    PrimaStockLevel,
    ProductStatusRejected,
    ProductStatusSet,
    ShopifyVariantObserved,
)
from domain.inventory.buffer import BufferRules
from domain.inventory.bundle import bundle_available
from domain.inventory.domainmodel import CatalogItem, StockItem

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


class _UnitOfWork:
    """Aggregates loaded for one batch: each loaded once, saved once, all in one transaction."""

    def __init__(self, app: InventoryApplication) -> None:
        self.app = app
        self.loaded: dict[UUID, Aggregate | None] = {}
        self.changed: dict[UUID, Aggregate] = {}

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        if aggregate_id not in self.loaded:
            try:
                self.loaded[aggregate_id] = self.app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                self.loaded[aggregate_id] = None
        return self.loaded[aggregate_id]

    def preload(self, aggregate_ids: Iterable[UUID]) -> None:
        wanted = [i for i in dict.fromkeys(aggregate_ids) if i not in self.loaded]
        if wanted:
            found = self.app.load_many(wanted)
            for aggregate_id in wanted:
                self.loaded[aggregate_id] = found.get(aggregate_id)

    def add(self, aggregate: Aggregate) -> Aggregate:
        self.loaded[aggregate.id] = aggregate
        self.changed[aggregate.id] = aggregate
        return aggregate

    def stock(self, sku: str, location_id: str, warehouse: str) -> StockItem:
        found = self.get(StockItem.create_id(sku, location_id))
        return found if found is not None else self.add(StockItem(sku, location_id, warehouse))  # type: ignore[return-value]

    def catalog(self, sku: str) -> CatalogItem:
        found = self.get(CatalogItem.create_id(sku))
        return found if found is not None else self.add(CatalogItem(sku))  # type: ignore[return-value]

    def touched(self, aggregate: Aggregate, changed: bool) -> bool:
        if changed:
            self.changed[aggregate.id] = aggregate
        return changed

    def commit(self) -> int:
        pending = [a for a in self.loaded.values() if a is not None and a.pending_events]
        if pending:
            self.app.save(*pending)
        return len(pending)


class InventoryApplication(Application[UUID]):
    name = "inventory"

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
                if domain_event.item_type != "bundle" and aggregate_id not in self._bundle_skus:
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
        if item_type == "bundle" and components:
            self.bundles[sku] = dict(components)
            for component in components:
                self.bundles_of.setdefault(component, set()).add(sku)

    # -- facts ----------------------------------------------------------------------------------

    def load_many(self, aggregate_ids: list[UUID]) -> dict[UUID, Aggregate]:
        """Several aggregates at once: with PostgreSQL one query for all their events (a batch of
        500 facts would otherwise be a thousand round trips); any other store one by one."""
        recorder = self.recorder
        if not (hasattr(recorder, "datastore") and hasattr(recorder, "events_table_name")):
            found = {}
            for aggregate_id in aggregate_ids:
                try:
                    found[aggregate_id] = self.repository.get(aggregate_id)
                except AggregateNotFoundError:
                    pass
            return found
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, [aggregate_ids])
            rows = cursor.fetchall()
        events: dict[UUID, list] = {}
        for row in rows:
            stored = StoredEvent(originator_id=row["originator_id"], originator_version=row["originator_version"],
                                 topic=row["topic"], state=bytes(row["state"]))
            events.setdefault(stored.originator_id, []).append(self.mapper.to_domain_event(stored))
        return {aggregate_id: project_aggregate(None, domain_events) for aggregate_id, domain_events in events.items()}

    def _needed(self, facts: list[object], policy: InventoryPolicy) -> list[UUID]:
        """The aggregates a batch of facts will load (bundles' components come on demand)."""
        warehouses = policy.warehouse_of
        ids: list[UUID] = []
        for fact in facts:
            if isinstance(fact, PrimaStockLevel):
                location = policy.location_map.get(fact.warehouse)
                ids.append(StockItem.create_id(fact.sku, location) if location else CatalogItem.create_id(fact.sku))
            elif isinstance(fact, (PrimaItemChanged, ProductStatusSet, ProductStatusRejected)):
                ids.append(CatalogItem.create_id(fact.sku))
            elif isinstance(fact, ShopifyVariantObserved):
                ids.append(CatalogItem.create_id(fact.sku))
                ids.extend(StockItem.create_id(fact.sku, level.location_id) for level in fact.levels
                           if level.location_id in warehouses)
            elif isinstance(fact, (InventoryLevelConfirmed, InventoryLevelRejected, InventoryLevelFailed)):
                ids.append(StockItem.create_id(fact.sku, fact.location_id))
        return ids

    def handle(self, facts: Iterable[object], policy: InventoryPolicy, now: datetime) -> HandleResult:
        result = HandleResult()
        uow = _UnitOfWork(self)
        facts = list(facts)
        uow.preload(self._needed(facts, policy))
        reindexed: list[tuple[str, str, dict[str, int]]] = []
        for fact in facts:
            applied = self._apply(uow, fact, policy, now, result, reindexed)
            if applied:
                result.applied += 1
            else:
                result.ignored += 1
        for aggregate in uow.loaded.values():
            if isinstance(aggregate, StockItem):
                result.pushes += sum(1 for e in aggregate.pending_events if type(e).__name__ == "PushRequested")
        result.saved_aggregates = uow.commit()
        return result

    def _apply(self, uow: _UnitOfWork, fact: object, policy: InventoryPolicy, now: datetime,
               result: HandleResult, reindexed: list) -> bool:
        rules = policy.rules
        if isinstance(fact, PrimaStockLevel):
            location = policy.location_map.get(fact.warehouse)
            if location is None:
                catalog = uow.catalog(fact.sku)
                if uow.touched(catalog, catalog.record_unmapped_warehouse(fact.warehouse, fact.available, fact.change_id)):
                    result.exceptions.append(f"unmapped warehouse {fact.warehouse} ({fact.sku})")
                    return True
                return False
            stock = uow.stock(fact.sku, location, fact.warehouse)
            changed = uow.touched(stock, stock.record_prima_stock(fact.available, fact.change_id, rules, now))
            if changed:
                for bundle in sorted(self.bundles_of.get(fact.sku, ())):
                    self._recompute_bundle(uow, bundle, location, fact.warehouse, rules, now)
            return changed
        if isinstance(fact, PrimaItemChanged):
            catalog = uow.catalog(fact.sku)
            changed = uow.touched(catalog, catalog.record_prima_item(fact, policy.draft_unpublished, now))
            if changed:
                self._index(fact.sku, fact.item_type, {c.sku: c.quantity for c in fact.components})
                if fact.sku in self.bundles:
                    for warehouse, location in policy.location_map.items():
                        self._recompute_bundle(uow, fact.sku, location, warehouse, rules, now)
            return changed
        if isinstance(fact, ShopifyVariantObserved):
            catalog = uow.catalog(fact.sku)
            changed = uow.touched(catalog, catalog.record_variant(fact, policy.draft_unpublished, now))
            warehouses = policy.warehouse_of
            for level in fact.levels:
                warehouse = warehouses.get(level.location_id)
                if warehouse is None:
                    continue  # a Shopify location Prima does not feed
                stock = uow.stock(fact.sku, level.location_id, warehouse)
                changed |= uow.touched(stock, stock.record_observation(
                    fact.inventory_item_id, level.available, fact.observed_at, fact.sync_run_id, rules, now))
            return changed
        if isinstance(fact, (InventoryLevelConfirmed, InventoryLevelRejected, InventoryLevelFailed)):
            found = uow.get(StockItem.create_id(fact.sku, fact.location_id))
            if found is None:
                return False
            return uow.touched(found, found.record_outcome(fact))
        if isinstance(fact, (ProductStatusSet, ProductStatusRejected)):
            found = uow.get(CatalogItem.create_id(fact.sku))
            if found is None:
                return False
            return uow.touched(found, found.record_status_outcome(fact))
        raise TypeError(f"not an inventory fact: {type(fact).__name__}")

    def _recompute_bundle(self, uow: _UnitOfWork, bundle: str, location: str, warehouse: str,
                          rules: BufferRules, now: datetime) -> None:
        components = self.bundles.get(bundle)
        if not components:
            return
        stock = uow.stock(bundle, location, warehouse)  # loaded before its components are read
        levels = {}
        for component in components:
            found = uow.get(StockItem.create_id(component, location))
            levels[component] = found.prima_available if found is not None and found.prima_available is not None else 0
        uow.touched(stock, stock.record_bundle_level(bundle_available(components, levels), components, rules, now))

    # -- operator actions and queries -----------------------------------------------------------

    def release(self, sku: str, location_id: str, released_by: str, policy: InventoryPolicy,
                now: datetime) -> StockItem | None:
        stock = self.find_stock(sku, location_id)
        if stock is None or not stock.release(released_by, policy.rules, now):
            return None
        self.save(stock)
        return stock

    def refresh(self, keys: Iterable[tuple[str, str]], policy: InventoryPolicy, now: datetime) -> int:
        """Re-evaluate the buffer of these SKU-locations (a peak window opened or closed)."""
        uow = _UnitOfWork(self)
        for sku, location in keys:
            found = uow.get(StockItem.create_id(sku, location))
            if found is not None:
                uow.touched(found, found.refresh(policy.rules, now))
        return uow.commit()

    def find_stock(self, sku: str, location_id: str) -> StockItem | None:
        try:
            return self.repository.get(StockItem.create_id(sku, location_id))
        except AggregateNotFoundError:
            return None

    def find_catalog(self, sku: str) -> CatalogItem | None:
        try:
            return self.repository.get(CatalogItem.create_id(sku))
        except AggregateNotFoundError:
            return None
