"""The fulfilment aggregate (DESIGN.md flow 3): OrderFulfilment, one per Shopify order.

It records what it needs to decide: the order's lines (what a bundle is made of), Prima's
despatch notes (each once: a repeat or an older version of a note changes nothing), and
Shopify's fulfillment orders as last read. It decides the commands, by the rules of
domain/fulfilment/rules.py and carriers.py:

- CreateFulfilment: per despatch note, in the order they came, what the units despatched so far
  make fulfillable (whole bundles only), allocated to the fulfillment orders; the tracking of
  the note's parcels (and of earlier notes that fulfilled nothing: a bundle's first components,
  say); notifyCustomer from the policy; the idempotency key from the despatch. A note that makes
  nothing fulfillable waits (its parcels ride with the next fulfilment). One create is in flight
  at a time: the next note is decided once Shopify has answered, on the fulfillment orders as
  that fulfilment left them.
- UpdateFulfilmentTracking: when a note's later version gives a parcel its tracking and the
  note's fulfilment exists, the fulfilment's tracking as it should now be (it replaces what
  Shopify has); its key is the despatch's and the sum of the versions it carries, which grows
  with every change. Only a newer note does this (a change of the carrier map is not sent back
  to fulfilments already made). One update is in flight at a time.

Outcomes: created (Shopify's fulfilment id; the gateway reports the same when it finds the
despatch's fulfilment already there); refused (userErrors) or not allocatable as read (on hold,
closed, above remaining, a line removed): an exception with the reason, and nothing more is
decided for the order until an operator releases it with a fresh read of the fulfillment orders,
when the despatch is decided again (a new command id, the same idempotency key). A despatch
never gives a second fulfilment: once created, its command's outcomes are redeliveries.

Settled: an exception that cannot clear (a SKU the order does not hold, which a later version of
the note cannot change; a line fulfilled by hand in Shopify or removed by an edit, so nothing is
left) is released with `settle`: the exception's despatch, while undecided, is taken as handled
outside the integration (DespatchSettled). It is decided no more, its units are no longer
attributed (a later despatch of the same line is not taken for it), and the order's next
despatches are decided.

Events carry the domain's values (domain/fulfilment/values.py); replaying them gives the same
state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.fulfilment.carriers import DEFAULT_CARRIER_MAP, CarrierMap, tracking_for
from domain.fulfilment.rules import (
    after_fulfilment,
    allocate,
    attribute,
    fulfillable,
    fulfilment_key,
    tracking_key,
)
from domain.fulfilment.values import (
    CreateFulfilment,
    Despatch,
    ExceptionKind,
    FulfillmentOrder,
    FulfilmentCreatedByShopify,
    FulfilmentException,
    FulfilmentOutcome,
    FulfilmentRefusedByShopify,
    OrderLineRecord,
    TrackingInfo,
    TrackingUpdatedByShopify,
    UpdateFulfilmentTracking,
)

FULFILMENT_NAMESPACE = uuid5(NAMESPACE_URL, "https://shopify-prima/order-fulfilments")


@dataclass(frozen=True)
class FulfilmentPolicy:
    notify_customer: bool = True
    carriers: CarrierMap = field(default_factory=lambda: DEFAULT_CARRIER_MAP)


DEFAULT_POLICY = FulfilmentPolicy()


def _tuple(value: Any) -> tuple:
    return tuple(value) if value is not None else ()


class OrderFulfilment(Aggregate):
    @staticmethod
    def create_id(shopify_order_id: int) -> UUID:
        return uuid5(FULFILMENT_NAMESPACE, str(shopify_order_id))

    @event("Opened")
    def __init__(self, shopify_order_id: int) -> None:
        self.shopify_order_id = shopify_order_id
        self.lines: tuple[OrderLineRecord, ...] | None = None
        self.fulfillment_orders: tuple[FulfillmentOrder, ...] | None = None
        self.read_at: datetime | None = None
        self.despatches: dict[str, Despatch] = {}  # despatch id -> the latest version, in arrival order
        self.undecided: list[str] = []  # despatches not yet fulfilled nor found to fulfil nothing
        self.waiting: list[str] = []  # despatches that fulfilled nothing: their parcels ride with the next
        self.settled: list[str] = []  # despatches an operator took as handled outside the integration
        self.pending: CreateFulfilment | None = None
        self.pending_tracking: UpdateFulfilmentTracking | None = None
        self.fulfilment_ids: dict[str, str] = {}  # despatch id -> Shopify's fulfilment id
        self.covers: dict[str, tuple[str, ...]] = {}  # despatch id -> the despatches its fulfilment carries
        self.tracking_sent: dict[str, TrackingInfo] = {}  # despatch id -> the tracking Shopify has
        # the despatch versions (summed over what a fulfilment carries) its tracking was built from
        self.tracking_versions: dict[str, int] = {}
        self.asked_versions = 0  # those of the create in flight
        self.tracking_asked_versions = 0  # those of the tracking update in flight
        self.fulfilled: dict[str, int] = {}  # Shopify line id (str) -> units fulfilled by our fulfilments
        self.exception: FulfilmentException | None = None
        self.attempts: dict[str, int] = {}  # despatch id -> creates issued
        self.tracking_commands = 0
        self.last_issued_at: datetime | None = None

    # -- events -------------------------------------------------------------------------------

    @event("LinesRecorded")
    def _lines_recorded(self, lines: tuple[OrderLineRecord, ...]) -> None:
        self.lines = _tuple(lines)

    @event("FulfillmentOrdersRead")
    def _orders_read(self, fulfillment_orders: tuple[FulfillmentOrder, ...], read_at: datetime) -> None:
        self.fulfillment_orders = _tuple(fulfillment_orders)
        self.read_at = read_at

    @event("DespatchRecorded")
    def _despatch_recorded(self, despatch: Despatch) -> None:
        known = self.despatches.get(despatch.despatch_id)
        if known is None:
            self.despatches[despatch.despatch_id] = despatch
            self.undecided.append(despatch.despatch_id)
        else:  # a later version: new tracking; what was shipped is the note's first statement
            self.despatches[despatch.despatch_id] = replace(despatch, lines=known.lines)

    @event("NothingFulfillable")
    def _nothing_fulfillable(self, despatch_id: str, reason: str) -> None:
        self.undecided.remove(despatch_id)
        self.waiting.append(despatch_id)

    @event("FulfilmentRequested")
    def _fulfilment_requested(self, command: CreateFulfilment) -> None:
        self.pending = command
        self.asked_versions = self._versions(command.covers)
        self.attempts[command.despatch_id] = self.attempts.get(command.despatch_id, 0) + 1
        self.last_issued_at = command.issued_at

    @event("FulfilmentCreated")
    def _fulfilment_created(self, command_id: UUID, despatch_id: str, fulfilment_id: str,
                            occurred_at: datetime) -> None:
        command = self.pending
        assert command is not None and command.command_id == command_id
        self.pending = None
        self.fulfilment_ids[despatch_id] = fulfilment_id
        self.covers[despatch_id] = command.covers
        self.tracking_sent[despatch_id] = command.tracking
        self.tracking_versions[despatch_id] = self.asked_versions
        for line in command.line_quantities:
            self.fulfilled[str(line.line_id)] = self.fulfilled.get(str(line.line_id), 0) + line.quantity
        if self.fulfillment_orders is not None:
            self.fulfillment_orders = after_fulfilment(self.fulfillment_orders, command.line_items_by_fulfillment_order)
        self.undecided = [d for d in self.undecided if d != despatch_id]
        self.waiting = [d for d in self.waiting if d not in command.covers]

    @event("ExceptionRaised")
    def _exception_raised(self, exception: FulfilmentException) -> None:
        self.exception = exception
        if self.pending is not None and self.pending.command_id == exception.command_id:
            self.pending = None
        if self.pending_tracking is not None and self.pending_tracking.command_id == exception.command_id:
            self.pending_tracking = None

    @event("TrackingUpdateRequested")
    def _tracking_requested(self, command: UpdateFulfilmentTracking) -> None:
        self.pending_tracking = command
        self.tracking_asked_versions = self._versions(self.covers[command.despatch_id])
        self.tracking_commands += 1
        self.last_issued_at = command.issued_at

    @event("TrackingUpdated")
    def _tracking_updated(self, command_id: UUID, occurred_at: datetime) -> None:
        command = self.pending_tracking
        assert command is not None and command.command_id == command_id
        self.pending_tracking = None
        self.tracking_sent[command.despatch_id] = command.tracking
        self.tracking_versions[command.despatch_id] = self.tracking_asked_versions

    @event("Released")
    def _released(self, released_by: str, previous: FulfilmentException) -> None:
        self.exception = None

    @event("DespatchSettled")
    def _despatch_settled(self, despatch_id: str, reason: str) -> None:
        self.undecided.remove(despatch_id)
        self.settled.append(despatch_id)

    # -- what is known ------------------------------------------------------------------------

    @property
    def fully_fulfilled(self) -> bool:
        """Every line's units fulfilled by this integration's fulfilments."""
        return self.lines is not None and all(self.fulfilled.get(str(line.line_id), 0) >= line.quantity
                                              for line in self.lines)

    def _versions(self, despatch_ids: tuple[str, ...]) -> int:
        return sum(self.despatches[d].version for d in despatch_ids)

    def _issued_at(self, now: datetime) -> datetime:
        last = self.last_issued_at
        return now if last is None or now > last else last + timedelta(microseconds=1)

    # -- decisions ----------------------------------------------------------------------------

    def record_lines(self, lines: tuple[OrderLineRecord, ...], now: datetime,
                     policy: FulfilmentPolicy = DEFAULT_POLICY) -> bool:
        """The order's lines (domain/fulfilment/rules.py `order_lines` of its sales order)."""
        lines = tuple(lines)
        if lines == self.lines:
            return False
        self._lines_recorded(lines=lines)
        self._decide(now, policy)
        return True

    def record_fulfillment_orders(self, orders: tuple[FulfillmentOrder, ...], read_at: datetime, now: datetime,
                                  policy: FulfilmentPolicy = DEFAULT_POLICY) -> bool:
        """Shopify's fulfillment orders as read at `read_at`. Not taken while a create is in
        flight (the read may or may not include it): the create's answer advances the fulfillment
        orders as last read (after_fulfilment), and the decider's next read replaces them."""
        if self.pending is not None or (self.read_at is not None and read_at <= self.read_at):
            return False
        self._orders_read(fulfillment_orders=tuple(orders), read_at=read_at)
        self._decide(now, policy)
        return True

    def record_despatch(self, despatch: Despatch, now: datetime, policy: FulfilmentPolicy = DEFAULT_POLICY) -> bool:
        """A despatch note (a version of one). A repeat, or a version not newer than the one
        known, changes nothing."""
        if despatch.shopify_order_id != self.shopify_order_id:
            raise ValueError(f"despatch {despatch.despatch_id} is for order {despatch.shopify_order_id}, "
                             f"not {self.shopify_order_id}")
        known = self.despatches.get(despatch.despatch_id)
        if known is not None and (despatch.version, despatch.change_id) <= (known.version, known.change_id):
            return False
        self._despatch_recorded(despatch=despatch)
        self._decide(now, policy)
        return True

    def record_outcome(self, outcome: FulfilmentOutcome, now: datetime,
                       policy: FulfilmentPolicy = DEFAULT_POLICY) -> bool:
        """What Shopify answered. An answer to a command that is not the one in flight (a
        redelivery, a superseded attempt) changes nothing."""
        if isinstance(outcome, FulfilmentCreatedByShopify | FulfilmentRefusedByShopify):
            command = self.pending
            if command is None or command.command_id != outcome.command_id:
                return False
            if isinstance(outcome, FulfilmentCreatedByShopify):
                self._fulfilment_created(command_id=command.command_id, despatch_id=command.despatch_id,
                                         fulfilment_id=outcome.fulfilment_id, occurred_at=outcome.occurred_at)
            else:
                self._exception_raised(exception=FulfilmentException(
                    kind=ExceptionKind.REFUSED_BY_SHOPIFY, despatch_id=command.despatch_id,
                    reason="; ".join(outcome.user_errors) or "refused without a reason", command_id=command.command_id))
        else:
            tracking = self.pending_tracking
            if tracking is None or tracking.command_id != outcome.command_id:
                return False
            if isinstance(outcome, TrackingUpdatedByShopify):
                self._tracking_updated(command_id=tracking.command_id, occurred_at=outcome.occurred_at)
            else:
                self._exception_raised(exception=FulfilmentException(
                    kind=ExceptionKind.TRACKING_REFUSED, despatch_id=tracking.despatch_id,
                    reason="; ".join(outcome.user_errors) or "refused without a reason",
                    command_id=tracking.command_id))
        self._decide(now, policy)
        return True

    def release(self, released_by: str, orders: tuple[FulfillmentOrder, ...], read_at: datetime, now: datetime,
                policy: FulfilmentPolicy = DEFAULT_POLICY, settle: bool = False) -> bool:
        """An operator re-drives the exception (the hold released, the quantities fixed): decide
        again from a fresh read of the fulfillment orders. With `settle`, the exception's despatch
        is taken as handled outside the integration first, if it is still undecided (that of a
        sku_not_on_order, cannot_allocate or refused_by_shopify exception; a tracking_refused
        exception's despatch is fulfilled already: its tracking is sent again)."""
        exception = self.exception
        if exception is None:
            return False
        self._released(released_by=released_by, previous=exception)
        if settle and exception.despatch_id in self.undecided:
            self._despatch_settled(despatch_id=exception.despatch_id,
                                   reason=f"settled by {released_by}: {exception.reason}")
        if self.pending is None:  # a read while a create is in flight may or may not include it
            self._orders_read(fulfillment_orders=tuple(orders), read_at=read_at)
        self._decide(now, policy)
        return True

    def _decide(self, now: datetime, policy: FulfilmentPolicy) -> None:
        if self.exception is not None or self.lines is None:
            return
        self._decide_tracking(now, policy)
        if self.pending is not None or self.fulfillment_orders is None:
            return
        while self.undecided:
            despatch_id = self.undecided[0]
            counted = [d for d_id, d in self.despatches.items()
                       if (d_id not in self.undecided or d_id == despatch_id) and d_id not in self.settled]
            attribution = attribute(counted, self.lines)
            unknown = sorted({sku for d_id, sku in attribution.unknown if d_id == despatch_id})
            if unknown:
                self._exception_raised(exception=FulfilmentException(
                    kind=ExceptionKind.SKU_NOT_ON_ORDER, despatch_id=despatch_id,
                    reason=f"despatched SKUs no line of the order holds: {', '.join(unknown)}"))
                return
            quantities = fulfillable(self.lines, attribution.units,
                                        {int(k): v for k, v in self.fulfilled.items()})
            if not quantities:
                self._nothing_fulfillable(despatch_id=despatch_id,
                                          reason="no whole line (or bundle) despatched yet beyond what is fulfilled")
                continue
            allocation = allocate(quantities, self.fulfillment_orders)
            if not allocation.ok:
                self._exception_raised(exception=FulfilmentException(
                    kind=ExceptionKind.CANNOT_ALLOCATE, despatch_id=despatch_id,
                    reason="; ".join(r.describe() for r in allocation.refused)))
                return
            covers = (*self.waiting, despatch_id)
            tracking, warnings = tracking_for((p for d in covers for p in self.despatches[d].parcels), policy.carriers)
            attempt = self.attempts.get(despatch_id, 0) + 1
            self._fulfilment_requested(command=CreateFulfilment(
                command_id=uuid5(self.id, f"create:{despatch_id}:{attempt}"),
                idempotency_key=fulfilment_key(despatch_id), shopify_order_id=self.shopify_order_id,
                despatch_id=despatch_id, covers=covers, issued_at=self._issued_at(now),
                line_items_by_fulfillment_order=allocation.groups, line_quantities=quantities,
                tracking=tracking, notify_customer=policy.notify_customer, warnings=warnings))
            return

    def _decide_tracking(self, now: datetime, policy: FulfilmentPolicy) -> None:
        if self.pending_tracking is not None:
            return
        for despatch_id, fulfilment_id in self.fulfilment_ids.items():
            covers = self.covers[despatch_id]
            if self._versions(covers) <= self.tracking_versions[despatch_id]:
                continue  # no newer note since the tracking Shopify has
            tracking, warnings = tracking_for((p for d in covers for p in self.despatches[d].parcels), policy.carriers)
            if tracking == self.tracking_sent[despatch_id]:
                continue  # a newer note, the same tracking: nothing to tell
            self._tracking_requested(command=UpdateFulfilmentTracking(
                command_id=uuid5(self.id, f"tracking:{despatch_id}:{self.tracking_commands + 1}"),
                idempotency_key=tracking_key(despatch_id, self._versions(covers)),
                shopify_order_id=self.shopify_order_id, despatch_id=despatch_id, fulfilment_id=fulfilment_id,
                issued_at=self._issued_at(now), tracking=tracking, notify_customer=policy.notify_customer,
                warnings=warnings))
            return
