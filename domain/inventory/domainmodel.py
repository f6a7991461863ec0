"""The inventory aggregates (DESIGN.md flow 5).

StockItem, one per SKU and Shopify location: records what Prima has available (a stock record,
or for a bundle the level its components allow), what Shopify shows (observed in a catalogue
read, confirmed by a push, or found by a push whose compare-and-set was stale), and decides when
Shopify must be told: only when the desired level, max(0, Prima available - buffer - pending
allocations), differs from the level last seen in Shopify. Pending allocations are the units of
orders the integration has accepted (SalesOrderRequested) that Prima's stock records do not
include yet: Shopify already sold them, so Prima's lagging figure must not give them back. An
order stops being pending when a stock record includes its allocation (the record names it, or
names a later sales order: Prima numbers them in commit order), or when Prima refuses it.

Outcomes of pushes apply in the order of the pushes (each push has a number): a redelivered
confirmation of an older push never clears a newer push's exception.

CatalogItem, one per SKU: Prima's item master entry (active, bundle components) beside the
Shopify variant that sells it. It raises the publishing guard's exception when a Shopify
variant has no active Prima item (and, if configured, asks for the product to be set to DRAFT),
and the exception for stock in a warehouse that no Shopify location is mapped to.

Commands (an InventoryPush, a ProductStatusChange) are recorded in events and leave through the
notification log. Events carry the domain's own values (domain/inventory/values.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.catalog.items import ItemType, PrimaItem, is_sellable, why_not_sellable
from domain.inventory.buffer import BufferRules, desired_level
from domain.inventory.values import (
    AutoRelease,
    InventoryPush,
    ItemReported,
    PendingAllocation,
    ProductStatusApplied,
    ProductStatusChange,
    PushConfirmedByShopify,
    PushException,
    PushFoundStaleByShopify,
    PushOutcome,
    PushParkedByGateway,
    PushRejectedByShopify,
    StatusOutcome,
    VariantSeen,
)

STOCK_NAMESPACE = uuid5(NAMESPACE_URL, "https://shopify-prima/stock-items")
CATALOG_NAMESPACE = uuid5(NAMESPACE_URL, "https://shopify-prima/catalog-items")
SETTLED_REMEMBERED = 200  # references of allocated orders a StockItem remembers (a late or repeated request)


def next_issued_at(last: datetime | None, now: datetime) -> datetime:
    """When a command is issued: `now`, unless that is not after the aggregate's last command
    (two decisions in one batch share `now`; the wall clock may step back, NTP or a host moved):
    then one microsecond after the last. The gateway keeps the newest command per level or
    product by issued_at, so an aggregate's commands must be strictly increasing whatever the
    clock does, or a newer decision would lose to an older one."""
    return now if last is None or now > last else last + timedelta(microseconds=1)


def stock_reference(warehouse: str, sku: str, change_id: int) -> str:
    """referenceDocumentUri for a level that comes from one Prima stock record."""
    return f"prima://stock/{warehouse}/{sku}?change={change_id}"


def bundle_reference(warehouse: str, sku: str, components: dict[str, int]) -> str:
    parts = ",".join(f"{c}x{q}" for c, q in sorted(components.items()))
    return f"prima://bundle/{warehouse}/{sku}?components={parts}"


class StockItem(Aggregate):
    @staticmethod
    def create_id(sku: str, location_id: str) -> UUID:
        return uuid5(STOCK_NAMESPACE, f"{sku}@{location_id}")

    @event("Registered")
    def __init__(self, sku: str, location_id: str, warehouse: str) -> None:
        self.sku = sku
        self.location_id = location_id
        self.warehouse = warehouse
        self.prima_available: int | None = None
        self.prima_change_id = 0
        self.prima_reference: str | None = None
        self.buffer: int | None = None
        self.buffer_rule: str | None = None
        self.desired: int | None = None
        self.desired_pending = 0  # the pending allocations the desired level accounts for
        self.inventory_item_id: str | None = None
        self.shopify_level: int | None = None
        self.shopify_level_at: datetime | None = None
        self.pending: InventoryPush | None = None  # the push awaiting its outcome
        self.pushes = 0
        self.last_issued_at: datetime | None = None
        self.exception: PushException | None = None
        # The order of the pushes: each push's number (1, 2, ...), for those an outcome may still
        # apply to. A confirmation applies only to a push not older than the newest confirmed
        # (an equal one is a duplicate) or the newest that became an exception.
        self.issued: dict[str, int] = {}
        self.confirmed_push = 0
        self.excepted_push = 0
        # The gateway gave up: when (last, and first since Shopify last confirmed), how often.
        self.failed_at: datetime | None = None
        self.first_failed_at: datetime | None = None
        self.failures = 0
        # Orders accepted that Prima has not allocated yet; what Prima's records include.
        self.allocations: dict[str, PendingAllocation] = {}
        self.allocated_through = 0  # the highest sales-order position Prima's records include
        self.settled: dict[str, None] = {}  # references of orders known allocated (the latest few)

    # -- events -------------------------------------------------------------------------------

    @event("PrimaAvailabilityRecorded")
    def _prima_recorded(self, available: int, change_id: int, reference: str, source: str,
                        components: dict[str, int] | None, allocated_for: str | None = None,
                        allocated_through: int = 0) -> None:
        self.prima_available = available
        self.prima_change_id = max(self.prima_change_id, change_id)
        self.prima_reference = reference
        self.allocated_through = max(self.allocated_through, allocated_through)
        if allocated_for is not None:
            self._remember_settled(allocated_for)

    @event("DesiredLevelChanged")
    def _desired_changed(self, prima_available: int, buffer: int, buffer_rule: str, desired: int,
                         pending_allocations: int = 0) -> None:
        self.buffer = buffer
        self.buffer_rule = buffer_rule
        self.desired = desired
        self.desired_pending = pending_allocations

    @event("ShopifyLevelObserved")
    def _observed(self, inventory_item_id: str, available: int, observed_at: datetime,
                  sync_run_id: UUID | None) -> None:
        self.inventory_item_id = inventory_item_id
        self.shopify_level = available
        self.shopify_level_at = observed_at
        if self.pending is not None and self.pending.issued_at < observed_at:
            self.pending = None  # read after the command was issued: decide again from what is there

    @event("PushRequested")
    def _push_requested(self, command: InventoryPush, desired: int, shopify_level: int | None) -> None:
        self.pending = command
        self.pushes += 1
        self.issued[str(command.command_id)] = self.pushes
        self.last_issued_at = command.issued_at

    @event("PushConfirmed")
    def _push_confirmed(self, command_id: UUID, quantity: int, previous_quantity: int | None,
                        stale_retries: int, occurred_at: datetime) -> None:
        if self.shopify_level_at is None or occurred_at >= self.shopify_level_at:
            self.shopify_level = quantity
            self.shopify_level_at = occurred_at
        if self.pending is not None and self.pending.command_id == command_id:
            self.pending = None
        self.exception = None
        self.confirmed_push = max(self.confirmed_push, self.issued.get(str(command_id), 0))
        self.failed_at = self.first_failed_at = None
        self.failures = 0
        self._forget_settled_pushes()

    @event("PushRejected")
    def _push_rejected(self, command_id: UUID, code: str, reason: str) -> None:
        self.pending = None
        self.exception = PushException(kind="push_rejected", code=code, reason=reason, command_id=command_id)
        self.excepted_push = max(self.excepted_push, self.issued.get(str(command_id), 0))
        self._forget_settled_pushes()

    @event("PushFailed")
    def _push_failed(self, command_id: UUID, attempts: int, reason: str, failed_at: datetime | None = None) -> None:
        self.pending = None
        self.exception = PushException(kind="push_failed", code="gateway_gave_up", reason=reason,
                                       command_id=command_id)
        self.excepted_push = max(self.excepted_push, self.issued.get(str(command_id), 0))
        self._forget_settled_pushes()
        self.failures += 1
        if failed_at is not None:
            self.failed_at = failed_at
            if self.first_failed_at is None:
                self.first_failed_at = failed_at

    @event("PushFoundStale")
    def _push_found_stale(self, command_id: UUID, shopify_level: int, observed_at: datetime) -> None:
        if self.pending is not None and self.pending.command_id == command_id:
            self.pending = None
        if self.shopify_level_at is None or observed_at >= self.shopify_level_at:
            self.shopify_level = shopify_level
            self.shopify_level_at = observed_at

    @event("AllocationPending")
    def _allocation_pending(self, order_id: str, reference: str, units: int) -> None:
        self.allocations[order_id] = PendingAllocation(order_id=order_id, reference=reference, units=units)

    @event("AllocationNumbered")
    def _allocation_numbered(self, order_id: str, sales_order_number: str, position: int) -> None:
        found = self.allocations.get(order_id)
        if found is not None:
            self.allocations[order_id] = replace(found, position=position)

    @event("AllocationCleared")
    def _allocation_cleared(self, order_id: str, units: int, reason: str) -> None:
        found = self.allocations.pop(order_id, None)
        if found is not None:
            self._remember_settled(found.reference)

    def _forget_settled_pushes(self) -> None:
        floor = max(self.confirmed_push + 1, self.excepted_push)
        self.issued = {cid: n for cid, n in self.issued.items() if n >= floor}

    def _remember_settled(self, reference: str) -> None:
        self.settled.pop(reference, None)
        self.settled[reference] = None
        while len(self.settled) > SETTLED_REMEMBERED:
            del self.settled[next(iter(self.settled))]

    @property
    def pending_allocations(self) -> int:
        return sum(a.units for a in self.allocations.values())

    # -- decisions ----------------------------------------------------------------------------

    def record_prima_stock(self, available: int, change_id: int, rules: BufferRules, now: datetime,
                           allocated_for: str | None = None, allocated_through: int = 0) -> bool:
        """A Prima stock record for this SKU's warehouse. Older or repeated records change nothing.
        The accepted orders the record includes the allocation of are no longer pending."""
        if change_id <= self.prima_change_id:
            return False
        self._prima_recorded(available=available, change_id=change_id,
                             reference=stock_reference(self.warehouse, self.sku, change_id),
                             source="stock", components=None, allocated_for=allocated_for,
                             allocated_through=allocated_through)
        self._settle_allocations(allocated_for)
        self._decide(rules, now, "prima_change")
        return True

    def record_bundle_level(self, available: int, components: dict[str, int], rules: BufferRules,
                            now: datetime, allocated_through: int = 0) -> bool:
        """The level a bundle's components allow at this location, recomputed by the decider;
        `allocated_through`: the sales orders every component's records include."""
        reference = bundle_reference(self.warehouse, self.sku, components)
        if (available, reference) == (self.prima_available, self.prima_reference) \
                and allocated_through <= self.allocated_through:
            return False
        self._prima_recorded(available=available, change_id=0, reference=reference, source="bundle",
                             components=components, allocated_through=allocated_through)
        self._settle_allocations(None)
        self._decide(rules, now, "prima_change")
        return True

    def record_observation(self, inventory_item_id: str, available: int, observed_at: datetime,
                           sync_run_id: UUID | None, rules: BufferRules, now: datetime) -> bool:
        """Shopify's level as read by the catalogue reader. A read older than what is known is
        ignored (a push confirmed after the read started is newer)."""
        same = self.inventory_item_id == inventory_item_id
        older = self.shopify_level_at is not None and observed_at <= self.shopify_level_at
        if same and (older or (available == self.shopify_level and self.pending is None)):
            # nothing new (a full comparison finding Shopify as it should be writes nothing);
            # the buffer is still re-checked (a peak window may have opened)
            return self._decide(rules, now, "full_comparison")
        self._observed(inventory_item_id=inventory_item_id, available=available, observed_at=observed_at,
                       sync_run_id=sync_run_id)
        self._decide(rules, now, "full_comparison")
        return True

    def record_outcome(self, outcome: PushOutcome, rules: BufferRules, now: datetime) -> bool:
        """What Shopify answered to a push. Outcomes are applied in the order of the pushes: a
        confirmation of a push this StockItem did not issue, or older than the newest confirmed
        or excepted push (a redelivery), changes nothing; a failure or a stale compare-and-set of
        a push that a newer one replaced is left to the newer one. A confirmation that clears an
        exception decides again (what changed while pushes were held back)."""
        if isinstance(outcome, PushConfirmedByShopify):
            if str(outcome.command_id) not in self.issued:
                return False
            held_back = self.exception is not None
            self._push_confirmed(command_id=outcome.command_id, quantity=outcome.quantity,
                                 previous_quantity=outcome.previous_quantity,
                                 stale_retries=outcome.stale_retries, occurred_at=outcome.occurred_at)
            if held_back:
                # the exception held pushes back: Prima may have moved since (a parked push
                # re-driven late); decide again from what is known now, or Shopify keeps the
                # confirmed level until the next full comparison
                self._decide(rules, now, "push_confirmed")
            return True
        if self.pending is None or self.pending.command_id != outcome.command_id:
            return False  # a superseded command's failure: the newer command decides
        if isinstance(outcome, PushRejectedByShopify):
            self._push_rejected(command_id=outcome.command_id, code=outcome.code, reason=outcome.reason)
            return True
        if isinstance(outcome, PushParkedByGateway):
            self._push_failed(command_id=outcome.command_id, attempts=outcome.attempts, reason=outcome.reason,
                              failed_at=outcome.occurred_at or now)
            return True
        if isinstance(outcome, PushFoundStaleByShopify):
            # not applied: Shopify moved (a sale, say). Take its level and decide again, with the
            # orders Prima has not allocated yet, rather than force the old quantity over it.
            self._push_found_stale(command_id=outcome.command_id, shopify_level=outcome.shopify_level,
                                   observed_at=outcome.occurred_at)
            self._decide(rules, now, "stale_level")
            return True
        return False

    @event("PushReleased")
    def _released(self, released_by: str, previous: PushException) -> None:
        self.exception = None

    def release(self, released_by: str, rules: BufferRules, now: datetime, origin: str = "operator") -> bool:
        """After a rejected or failed push was looked at (and fixed), or, for a failed one, after
        its backoff (`origin` "auto_release"): decide again."""
        if self.exception is None:
            return False
        # a push the gateway gave up on may have been applied all the same (its answer lost), and
        # so may the pushes it replaced: the level last known is no proof that Shopify holds it,
        # so the desired level is pushed again, compare-and-set against it (a stale answer then
        # tells what Shopify holds); a rejected push changed nothing in Shopify
        unknown = self.exception.kind == "push_failed"
        self._released(released_by=released_by, previous=self.exception)
        self._decide(rules, now, origin, level_unknown=unknown)
        return True

    def auto_release_due(self, now: datetime, policy: AutoRelease) -> bool:
        """A push the gateway gave up on (not one Shopify rejected: that needs a person) is
        decided again after a backoff per failure, until the horizon after its first failure."""
        if self.exception is None or self.exception.kind != "push_failed" or self.failed_at is None:
            return False
        first = self.first_failed_at or self.failed_at
        if (now - first).total_seconds() > policy.horizon_seconds:
            return False
        wait = min(policy.max_seconds, policy.initial_seconds * 2 ** max(0, self.failures - 1))
        return (now - self.failed_at).total_seconds() >= wait

    def refresh(self, rules: BufferRules, now: datetime) -> bool:
        """Re-evaluate the buffer (a peak window opened or closed)."""
        return self._decide(rules, now, "buffer_change")

    # -- pending allocations (orders Shopify sold that Prima has not allocated yet) -------------

    def record_order_accepted(self, order_id: str, reference: str, units: int, rules: BufferRules,
                              now: datetime) -> bool:
        """An order's units, sold in Shopify, that Prima's available does not include yet. Only
        where Prima reports a level (a service item has no stock to allocate); an order already
        pending, or one Prima's records already include, changes nothing."""
        if self.prima_available is None or order_id in self.allocations or reference in self.settled:
            return False
        self._allocation_pending(order_id=order_id, reference=reference, units=units)
        self._decide(rules, now, "pending_allocation")
        return True

    def record_sales_order_created(self, order_id: str, sales_order_number: str, position: int,
                                   rules: BufferRules, now: datetime) -> bool:
        """Prima made the order's sales order: once a stock record includes its number (now or
        later), the order is no longer pending here."""
        found = self.allocations.get(order_id)
        if found is None or found.position == position:
            return False
        if position <= self.allocated_through:
            self._allocation_cleared(order_id=order_id, units=found.units, reason="allocated_by_prima")
            self._decide(rules, now, "pending_allocation")
            return True
        self._allocation_numbered(order_id=order_id, sales_order_number=sales_order_number, position=position)
        return True

    def record_order_not_allocated(self, order_id: str, reason: str, rules: BufferRules, now: datetime) -> bool:
        """Prima refused the order's sales order: it allocated nothing, nothing is pending."""
        found = self.allocations.get(order_id)
        if found is None:
            return False
        self._allocation_cleared(order_id=order_id, units=found.units, reason=f"not_allocated: {reason}"[:500])
        self._decide(rules, now, "pending_allocation")
        return True

    def _settle_allocations(self, allocated_for: str | None) -> None:
        for found in list(self.allocations.values()):
            if found.reference == allocated_for or (
                    found.position is not None and found.position <= self.allocated_through):
                self._allocation_cleared(order_id=found.order_id, units=found.units, reason="allocated_by_prima")

    # -- deciding -----------------------------------------------------------------------------

    def _decide(self, rules: BufferRules, now: datetime, origin: str, *, level_unknown: bool = False) -> bool:
        if self.prima_available is None:
            return False
        buffer = rules.buffer_for(self.sku, now)
        pending = self.pending_allocations
        desired = desired_level(self.prima_available, buffer.units, pending)
        if (desired, buffer.units, buffer.rule, pending) != (self.desired, self.buffer, self.buffer_rule,
                                                             self.desired_pending):
            self._desired_changed(prima_available=self.prima_available, buffer=buffer.units,
                                  buffer_rule=buffer.rule, desired=desired, pending_allocations=pending)
        if self.inventory_item_id is None or self.exception is not None:
            return False  # not sold in Shopify here yet / waiting for a person
        if self.pending is not None:
            if self.pending.quantity == desired:
                return False  # already asked for
            # else a newer push replaces the pending one (even back to Shopify's level: the
            # pending one would otherwise still be written)
        elif desired == self.shopify_level and not level_unknown:
            return False  # push only what changed
        command = InventoryPush(
            command_id=uuid5(self.id, f"set-inventory-level/{self.pushes + 1}"),
            sku=self.sku,
            inventory_item_id=self.inventory_item_id,
            location_id=self.location_id,
            quantity=desired,
            change_from_quantity=self.shopify_level,
            reference_document_uri=self.prima_reference or f"prima://stock/{self.warehouse}/{self.sku}",
            issued_at=next_issued_at(self.last_issued_at, now),  # strictly increasing per StockItem
            origin=origin,
        )
        self._push_requested(command=command, desired=desired, shopify_level=self.shopify_level)
        return True


class CatalogItem(Aggregate):
    @staticmethod
    def create_id(sku: str) -> UUID:
        return uuid5(CATALOG_NAMESPACE, sku)

    @event("Registered")
    def __init__(self, sku: str) -> None:
        self.sku = sku
        self.item: dict[str, Any] | None = None  # Prima's item master entry
        self.variant: dict[str, Any] | None = None  # the Shopify variant selling this SKU
        self.unmapped_warehouses: list[str] = []
        self.guard: dict[str, Any] | None = None  # open publishing-guard exception
        self.drafted_by_us = False
        self.status_command: ProductStatusChange | None = None
        self.status_commands = 0

    @event("PrimaItemRecorded")
    def _item_recorded(self, item_id: str, item_type: str, active: bool, components: dict[str, int],
                       updated_at: datetime, change_id: int | None = None) -> None:
        self.item = {"item_id": item_id, "item_type": item_type, "active": active,
                     "components": components, "updated_at": updated_at.isoformat(), "change_id": change_id}

    @event("ShopifyVariantRecorded")
    def _variant_recorded(self, variant_id: str, product_id: str, product_status: str,
                          inventory_item_id: str, observed_at: datetime) -> None:
        self.variant = {"variant_id": variant_id, "product_id": product_id, "product_status": product_status,
                        "inventory_item_id": inventory_item_id, "observed_at": observed_at.isoformat()}

    @event("UnmappedWarehouseFound")
    def _unmapped_warehouse(self, warehouse: str, available: int, change_id: int) -> None:
        self.unmapped_warehouses.append(warehouse)

    @event("VariantWithoutPrimaItem")
    def _guard_raised(self, reason: str, product_id: str, variant_id: str) -> None:
        self.guard = {"reason": reason, "product_id": product_id, "variant_id": variant_id}

    @event("VariantGuardCleared")
    def _guard_cleared(self, item_id: str) -> None:
        self.guard = None

    @event("ProductStatusRequested")
    def _status_requested(self, command: ProductStatusChange) -> None:
        self.status_command = command
        self.status_commands += 1
        if command.status == "DRAFT":
            self.drafted_by_us = True

    @event("ProductStatusConfirmed")
    def _status_confirmed(self, command_id: UUID, status: str, occurred_at: datetime) -> None:
        if self.variant is not None:
            self.variant = {**self.variant, "product_status": status}
        if status == "ACTIVE":
            self.drafted_by_us = False  # back as it was: a later DRAFT is the merchant's

    @event("ProductStatusRefused")
    def _status_refused(self, command_id: UUID, reason: str) -> None:
        pass

    # -- decisions ----------------------------------------------------------------------------

    @property
    def components(self) -> dict[str, int]:
        return dict(self.item["components"]) if self.item else {}

    @property
    def is_bundle(self) -> bool:
        return bool(self.item and self.item["item_type"] == ItemType.BUNDLE)

    def record_prima_item(self, fact: ItemReported, draft_unpublished: bool, now: datetime) -> bool:
        item = fact.item
        components = {c.sku: c.quantity for c in item.components}
        if self.item is not None and self._is_older(fact):
            return False
        current = self.item
        if current and (current["item_id"], current["item_type"], current["active"], current["components"]) == (
                item.item_id, str(item.item_type), item.active, components):
            return False
        self._item_recorded(item_id=item.item_id, item_type=str(item.item_type), active=item.active,
                            components=components, updated_at=fact.updated_at, change_id=fact.change_id)
        self._guard_decide(draft_unpublished, now)
        return True

    def _is_older(self, fact: ItemReported) -> bool:
        """Prima's item-change sequence orders an item's changes as they were committed (a change
        committed late may carry an earlier updated_at); updated_at where it is not known."""
        known = self.item.get("change_id") if self.item else None
        if known is not None and fact.change_id is not None:
            return fact.change_id <= known
        return datetime.fromisoformat(self.item["updated_at"]) >= fact.updated_at

    def record_variant(self, fact: VariantSeen, draft_unpublished: bool, now: datetime) -> bool:
        seen = (fact.variant_id, fact.product_id, fact.product_status, fact.inventory_item_id)
        changed = self.variant is None or seen != (
            self.variant["variant_id"], self.variant["product_id"], self.variant["product_status"],
            self.variant["inventory_item_id"])
        if changed:
            self._variant_recorded(variant_id=fact.variant_id, product_id=fact.product_id,
                                   product_status=fact.product_status, inventory_item_id=fact.inventory_item_id,
                                   observed_at=fact.observed_at)
        return self._guard_decide(draft_unpublished, now) or changed

    def record_unmapped_warehouse(self, warehouse: str, available: int, change_id: int) -> bool:
        if warehouse in self.unmapped_warehouses:
            return False
        self._unmapped_warehouse(warehouse=warehouse, available=available, change_id=change_id)
        return True

    def record_status_outcome(self, outcome: StatusOutcome) -> bool:
        if self.status_command is None or self.status_command.command_id != outcome.command_id:
            return False
        if isinstance(outcome, ProductStatusApplied):
            self._status_confirmed(command_id=outcome.command_id, status=outcome.status,
                                   occurred_at=outcome.occurred_at)
            return True
        self._status_refused(command_id=outcome.command_id, reason=outcome.reason)
        return True

    def _guard_decide(self, draft_unpublished: bool, now: datetime) -> bool:
        """Publishing guard: a Shopify variant must sell an active Prima item. With the switch
        on, its product is set to DRAFT (once), and back to ACTIVE once the item is active again
        if this integration was what drafted it."""
        if self.variant is None:
            return False
        decided = False
        status = self.variant["product_status"]
        asked = self.status_command.status if self.status_command else None
        item = self._prima_item()
        if not is_sellable(item):
            if self.guard is None:
                reason = why_not_sellable(item) or "not sellable"
                self._guard_raised(reason=reason, product_id=self.variant["product_id"],
                                   variant_id=self.variant["variant_id"])
                decided = True
            if draft_unpublished and status == "ACTIVE" and asked != "DRAFT":
                self._request_status("DRAFT", self.guard["reason"], now)
                decided = True
            return decided
        if self.guard is not None:
            self._guard_cleared(item_id=self.item["item_id"])
            decided = True
        if self.drafted_by_us and status == "DRAFT" and asked != "ACTIVE":
            self._request_status("ACTIVE", "an active Prima item exists again", now)
            decided = True
        return decided

    def _prima_item(self) -> PrimaItem | None:
        if self.item is None:
            return None
        return PrimaItem(item_id=self.item["item_id"], sku=self.sku, description="", item_type=self.item["item_type"],
                         active=self.item["active"])

    def _request_status(self, status: str, reason: str, now: datetime) -> None:
        self._status_requested(command=ProductStatusChange(
            command_id=uuid5(self.id, f"set-product-status/{self.status_commands + 1}"),
            sku=self.sku, product_id=self.variant["product_id"], status=status, reason=reason,
            issued_at=next_issued_at(self.status_command.issued_at if self.status_command else None, now),
        ))
