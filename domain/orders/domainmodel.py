"""The Order aggregate: one per Shopify order, deciding what Prima is asked for about it.

Its events are the order's history (the read model's timeline); the commands it issues (a
sales order to create, amend or cancel; a credit memo per refund) leave through the event
store's notification log, never by a direct call. Events carry the domain's own values
(domain/orders/values.py), never wire models. The rules it decides with each live in one module
of domain/orders: payment, figures, mapping, current (the order as it stands), sales_order,
changes (what counts as a change), cutoff, credit_memo.

One sales-order command at a time: while Prima has not answered one (or it is parked), later
facts are recorded and decided once the answer is in, so Prima always ends up holding the order
as it stands. Credit memos are independent of each other, each keyed by its refund, and wait
for the sales order to exist.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.catalog.items import ItemMaster
from domain.orders.changes import differences, summary
from domain.orders.credit_memo import build_credit_memo
from domain.orders.current import known_refunds, sold_quantity
from domain.orders.cutoff import CutoffPassed
from domain.orders.figures import figure_problem
from domain.orders.mapping import Target, booked_targets, map_lines, map_order_lines
from domain.orders.payment import payment_captured
from domain.orders.policy import DEFAULT_POLICY, OrderPolicy
from domain.orders.sales_order import build_sales_order, totals_mismatch
from domain.orders.values import (
    ChangeResolutionRequested,
    CreditMemoCreatedByPrima,
    CreditMemoRequest,
    OrderDelivery,
    OrderEditNoticed,
    OrderSnapshot,
    PrimaOutcome,
    Refund,
    RefundDelivery,
    RestockType,
    SalesOrder,
    SalesOrderAmendedByPrima,
    SalesOrderAmendment,
    SalesOrderCancellation,
    SalesOrderCancelledByPrima,
    SalesOrderChange,
    SalesOrderChangeRefusedByPrima,
    SalesOrderCreatedByPrima,
    SalesOrderParkedByGateway,
    SalesOrderRejectedByPrima,
    SalesOrderRequest,
)

ORDER_NAMESPACE = uuid5(NAMESPACE_URL, "https://shopify-prima/orders")


def awaits_cancellation_news(refund: Refund, order: OrderSnapshot) -> bool:
    """A refund of units cancelled before fulfilment (restock_type cancel) may be the refund of a
    whole order's cancellation, and Shopify does not order its webhooks: refunds/create can come
    before orders/cancelled. Its memo waits for the order as it stands after the refund (Shopify
    updates the order with every refund: orders/updated or orders/cancelled, or the reconciler):
    cancelled, the sales order is cancelled and no memo is needed (a memo too would reverse the
    sale twice); not cancelled, the memo follows."""
    return (order.cancelled_at is None and order.updated_at < refund.created_at
            and any(line.restock_type == RestockType.CANCEL for line in refund.lines))


class OrderState(StrEnum):
    AWAITING_ORDER = "awaiting_order"  # a refund came first: the order itself has not arrived yet
    RECEIVED = "received"
    AWAITING_PAYMENT = "awaiting_payment"
    QUARANTINED = "quarantined"
    SENT = "sent"
    IN_PRIMA = "in_prima"
    AMENDING = "amending"  # an amendment is with Prima
    CANCELLING = "cancelling"  # a cancellation is with Prima
    AFTER_CUTOFF = "after_cutoff"  # Shopify changed the order after the warehouse took it: for a person
    CANCELLED = "cancelled"  # cancelled in Prima, or cancelled in Shopify before it reached Prima
    FAILED = "failed"


class QuarantineReason(StrEnum):
    UNMAPPED_SKU = "unmapped_sku"
    UNMAPPED_LINE = "unmapped_line"  # a line that is not a product and no line rule maps
    TOTALS_MISMATCH = "totals_mismatch"
    AMOUNT_PRECISION = "amount_precision"
    LINE_FIGURES = "line_figures"
    ORDER_WITHOUT_LINES = "order_without_lines"


class ChangeKind(StrEnum):
    AMEND = "amend"
    CANCEL = "cancel"


class MemoState(StrEnum):
    WAITING = "waiting"  # for the sales order
    REQUESTED = "requested"
    CREATED = "created"
    HELD = "held"  # does not add up, or a line maps nowhere: an exception
    REJECTED = "rejected"
    PARKED = "parked"
    NOT_NEEDED = "not_needed"  # the sales order was cancelled (nothing to credit against)


class DeliveryOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True)
class Memo:
    """What became of one refund."""

    refund_id: int
    state: str = MemoState.WAITING
    command: CreditMemoRequest | None = None
    credit_memo_number: str | None = None
    problem: tuple[str, str] | None = None  # (kind, detail)
    requests: int = 0


def _request_key(kind: str, command_id: UUID) -> str:
    return f"shopify-prima:{kind}:{command_id}"


class Order(Aggregate):
    @staticmethod
    def create_id(shopify_order_id: int) -> UUID:
        return uuid5(ORDER_NAMESPACE, str(shopify_order_id))

    # -- events -------------------------------------------------------------------------------

    @event("OrderReceived")
    def __init__(self, shopify_order_id: int, order_name: str = "", webhook_id: str = "", webhook_topic: str = "",
                 received_at: datetime | None = None, order: OrderSnapshot | None = None) -> None:
        self.shopify_order_id = shopify_order_id
        self.order_name = order_name
        self.first_received_at = received_at
        self.applied_webhook_ids: list[str] = [webhook_id] if webhook_id else []
        self.snapshot: OrderSnapshot | None = order
        self.state = OrderState.RECEIVED
        self.quarantine: tuple[str, str, tuple[str, ...]] | None = None  # (reason, detail, SKUs)
        self.command: SalesOrderRequest | None = None
        self.commands_issued = 0
        self.sales_order_number: str | None = None
        self.failure: tuple[str, str] | None = None  # (kind: rejected | parked, reason) of the create
        # the sales order as Prima holds it, its status as Prima last said, when it was created
        self.prima_order: SalesOrder | None = None
        self.prima_status: str | None = None
        self.in_prima_at: datetime | None = None
        self.change: SalesOrderChange | None = None  # an amendment or cancellation with Prima (or parked)
        self.changes_issued = 0
        self.change_failure: tuple[str, str] | None = None
        self.held: tuple[str, tuple[str, ...]] | None = None  # (change kind, differences) after the cut-off
        self.cancelled = False
        self.refunds: dict[int, Refund] = {}
        self.memos: dict[int, Memo] = {}
        self.edits_noticed: list[int] = []
        # Shopify's order changed since the sales order was last decided on: only then is it
        # decided again (an outcome or a refund alone never re-decides the sales order)
        self.needs_decision = order is not None

    class OrderOpenedByRefund(Aggregate.Created):
        """A refund arrived before any delivery of its order: the Order exists to keep it."""

        shopify_order_id: int
        received_at: datetime

        def apply(self, aggregate: Order) -> None:
            aggregate.state = OrderState.AWAITING_ORDER
            aggregate.order_name = f"#{self.shopify_order_id}"

    @event("OrderUpdated")
    def _updated(self, webhook_id: str, webhook_topic: str, received_at: datetime, order: OrderSnapshot) -> None:
        self.applied_webhook_ids.append(webhook_id)
        if self.snapshot is None:
            self.state = OrderState.RECEIVED
        self.snapshot = order
        self.order_name = order.name
        self.needs_decision = True

    @event("OrderEditNoticed")
    def _edit_noticed(self, webhook_id: str, received_at: datetime, edit_id: int, edited_at: datetime | None,
                      added: tuple[str, ...], removed: tuple[str, ...]) -> None:
        self.applied_webhook_ids.append(webhook_id)
        self.edits_noticed.append(edit_id)

    @event("RefundReceived")
    def _refund_received(self, webhook_id: str, webhook_topic: str, received_at: datetime, refund: Refund) -> None:
        if webhook_id and webhook_id not in self.applied_webhook_ids:
            self.applied_webhook_ids.append(webhook_id)
        self.refunds[refund.refund_id] = refund
        self.memos.setdefault(refund.refund_id, Memo(refund.refund_id))

    @event("OrderAwaitingPayment")
    def _awaiting_payment(self, financial_status: str | None) -> None:
        self.state = OrderState.AWAITING_PAYMENT
        self.needs_decision = False

    @event("OrderQuarantined")
    def _quarantined(self, reason: str, detail: str, unmapped_skus: tuple[str, ...]) -> None:
        self.state = OrderState.QUARANTINED
        self.quarantine = (reason, detail, tuple(unmapped_skus))
        self.needs_decision = False

    @event("SalesOrderRequested")
    def _sales_order_requested(self, command: SalesOrderRequest) -> None:
        self.state = OrderState.SENT
        self.command = command
        self.commands_issued += 1
        self.quarantine = None
        self.failure = None
        self.needs_decision = False

    @event("SalesOrderCreated")
    def _sales_order_created(self, command_id: UUID, sales_order_number: str, status: str,
                             occurred_at: datetime) -> None:
        self.state = OrderState.IN_PRIMA
        self.sales_order_number = sales_order_number
        self.failure = None
        self.prima_order = self.command.sales_order if self.command else None
        self.prima_status = status
        self.in_prima_at = occurred_at

    @event("SalesOrderRejected")
    def _sales_order_rejected(self, command_id: UUID, status_code: int, code: str, reason: str) -> None:
        self.state = OrderState.FAILED
        self.failure = ("rejected", f"{code}: {reason}")

    @event("SalesOrderParked")
    def _sales_order_parked(self, command_id: UUID, attempts: int, reason: str) -> None:
        self.state = OrderState.FAILED
        self.failure = ("parked", reason)

    @event("OrderReleased")
    def _released(self, released_by: str, previous_state: str) -> None:
        """An operator asked for the order to be decided again (after fixing a mapping)."""

    @event("OrderCancelledBeforePrima")
    def _cancelled_before_prima(self, reason: str | None, cancelled_at: datetime | None) -> None:
        """Cancelled in Shopify before any sales order was made: Prima never gets one."""
        self.state = OrderState.CANCELLED
        self.cancelled = True
        self.quarantine = None
        self.needs_decision = False

    def _change_taken(self, command: SalesOrderChange, state: OrderState) -> None:
        """A change of the sales order on its way to Prima (the same command again counts once)."""
        self.state = state
        if self.change is None or self.change.command_id != command.command_id:
            self.changes_issued += 1
        self.change = command
        self.change_failure = None
        self.held = None
        self.quarantine = None
        self.needs_decision = False

    @event("SalesOrderAmendmentRequested")
    def _amendment_requested(self, command: SalesOrderAmendment) -> None:
        self._change_taken(command, OrderState.AMENDING)

    @event("SalesOrderAmended")
    def _amended(self, command_id: UUID, sales_order_number: str, status: str, occurred_at: datetime) -> None:
        self.state = OrderState.IN_PRIMA
        if isinstance(self.change, SalesOrderAmendment):
            self.prima_order = self.change.sales_order
        self.prima_status = status
        self.change = None
        self.change_failure = None

    @event("SalesOrderCancellationRequested")
    def _cancellation_requested(self, command: SalesOrderCancellation) -> None:
        self._change_taken(command, OrderState.CANCELLING)

    @event("SalesOrderCancelled")
    def _sales_order_cancelled(self, command_id: UUID, sales_order_number: str, status: str,
                               occurred_at: datetime) -> None:
        self.state = OrderState.CANCELLED
        self.prima_status = status
        self.cancelled = True
        self.change = None
        self.change_failure = None

    @event("SalesOrderChangeRefused")
    def _change_refused(self, command_id: UUID, change: str, status: str, reason: str) -> None:
        """Prima refused the change: the sales order's status was already past the cut-off."""
        self.prima_status = status
        self.change = None
        self.state = OrderState.IN_PRIMA
        self.needs_decision = True  # decided again: now held at the cut-off

    @event("SalesOrderChangeRejected")
    def _change_rejected(self, command_id: UUID, change: str, status_code: int, code: str, reason: str) -> None:
        self.state = OrderState.FAILED
        self.change = None
        self.change_failure = ("rejected", f"{code}: {reason}")

    @event("SalesOrderChangeParked")
    def _change_parked(self, command_id: UUID, change: str, attempts: int, reason: str) -> None:
        self.state = OrderState.FAILED
        self.change_failure = ("parked", reason)

    @event("ChangeHeldAtCutoff")
    def _held_at_cutoff(self, change: str, differences: tuple[str, ...], prima_status: str | None, reason: str,
                        shopify_now: str, prima_has: str, deadline: datetime | None) -> None:
        self.state = OrderState.AFTER_CUTOFF
        self.held = (change, tuple(differences))
        self.needs_decision = False

    @event("ChangeNoLongerNeeded")
    def _no_longer_needed(self, reason: str) -> None:
        """Shopify and Prima agree again (the change was undone in Shopify)."""
        self.state = OrderState.CANCELLED if self.cancelled else OrderState.IN_PRIMA
        self.held = None
        self.quarantine = None
        self.change_failure = None
        self.needs_decision = False

    @event("SalesOrderUnchanged")
    def _unchanged(self, reason: str) -> None:
        """Shopify's update changes nothing the sales order carries (a note, a tag, a refund's
        financial status): nothing is sent."""
        self.needs_decision = False

    @event("ChangeResolvedByHand")
    def _resolved_by_hand(self, resolved_by: str, note: str, change: str, sales_order: SalesOrder | None) -> None:
        """A person dealt with a change held at the cut-off in Prima: the order as it stands is
        taken as what Prima holds (or, for a cancellation, as cancelled)."""
        self.held = None
        self.change_failure = None
        self.needs_decision = False
        if change == ChangeKind.CANCEL:
            self.cancelled = True
            self.state = OrderState.CANCELLED
        else:
            if sales_order is not None:
                self.prima_order = sales_order
            self.state = OrderState.IN_PRIMA

    @event("CreditMemoRequested")
    def _memo_requested(self, command: CreditMemoRequest) -> None:
        memo = self.memos.get(command.refund_id, Memo(command.refund_id))
        self.memos[command.refund_id] = replace(memo, state=MemoState.REQUESTED, command=command, problem=None,
                                                requests=memo.requests + 1)

    @event("CreditMemoCreated")
    def _memo_created(self, command_id: UUID, refund_id: int, credit_memo_number: str, total: str,
                      occurred_at: datetime) -> None:
        self.memos[refund_id] = replace(self.memos[refund_id], state=MemoState.CREATED,
                                        credit_memo_number=credit_memo_number, problem=None)

    @event("CreditMemoHeld")
    def _memo_held(self, refund_id: int, kind: str, detail: str) -> None:
        memo = self.memos.get(refund_id, Memo(refund_id))
        self.memos[refund_id] = replace(memo, state=MemoState.HELD, problem=(kind, detail))

    @event("CreditMemoRejected")
    def _memo_rejected(self, command_id: UUID, refund_id: int, status_code: int, code: str, reason: str) -> None:
        self.memos[refund_id] = replace(self.memos[refund_id], state=MemoState.REJECTED,
                                        problem=("prima_rejected", f"{code}: {reason}"))

    @event("CreditMemoParked")
    def _memo_parked(self, command_id: UUID, refund_id: int, attempts: int, reason: str) -> None:
        self.memos[refund_id] = replace(self.memos[refund_id], state=MemoState.PARKED,
                                        problem=("command_parked", reason))

    @event("CreditMemoNotNeeded")
    def _memo_not_needed(self, refund_id: int, reason: str) -> None:
        memo = self.memos.get(refund_id, Memo(refund_id))
        self.memos[refund_id] = replace(memo, state=MemoState.NOT_NEEDED, problem=None)

    # -- what the order knows -------------------------------------------------------------------

    @property
    def parked(self) -> bool:
        """The gateway gave up on the create for now (Prima never answered): Prima may hold
        the sales order, and the command is re-driven with its own key until Prima answers."""
        return (self.sales_order_number is None and self.state is OrderState.FAILED and self.failure is not None
                and self.failure[0] == "parked")

    @property
    def command_issued(self) -> bool:
        """A create command stands: sent, done, or parked. Only a rejection (Prima's definite
        "no") lets the order decide again; a parked command is never replaced by a new one, whose
        new key could make a second sales order."""
        return self.command is not None and (
            self.sales_order_number is not None or self.state is OrderState.SENT or self.parked)

    @property
    def change_parked(self) -> bool:
        return self.change is not None and self.change_failure is not None and self.change_failure[0] == "parked"

    @property
    def change_in_flight(self) -> bool:
        """An amendment or cancellation Prima has not answered (sent, or parked and re-driven)."""
        return self.change is not None

    def refunds_known(self) -> tuple[Refund, ...]:
        return known_refunds(self.snapshot, self.refunds)

    def cutoff_passed(self, policy: OrderPolicy, now: datetime) -> CutoffPassed | None:
        return policy.cutoff.passed(self.prima_status, self.in_prima_at, now)

    # -- facts ----------------------------------------------------------------------------------

    @classmethod
    def receive(cls, delivery: OrderDelivery, items: ItemMaster, policy: OrderPolicy = DEFAULT_POLICY) -> Order:
        order = cls(
            shopify_order_id=delivery.order.shopify_order_id,
            order_name=delivery.order.name,
            webhook_id=delivery.webhook_id,
            webhook_topic=delivery.topic,
            received_at=delivery.received_at,
            order=delivery.order,
        )
        order._refunds_listed(delivery)
        order._decide(items, policy, now=delivery.received_at)
        return order

    @classmethod
    def open_by_refund(cls, delivery: RefundDelivery) -> Order:
        """A refund whose order has not arrived: kept until it does (nothing is decided yet)."""
        order = cls._create(cls.OrderOpenedByRefund, id=cls.create_id(delivery.shopify_order_id),
                            shopify_order_id=delivery.shopify_order_id, received_at=delivery.received_at)
        order.receive_refund(delivery, {})
        return order

    def apply_delivery(self, delivery: OrderDelivery, items: ItemMaster, policy: OrderPolicy = DEFAULT_POLICY
                       ) -> DeliveryOutcome:
        if delivery.webhook_id in self.applied_webhook_ids:
            return DeliveryOutcome.DUPLICATE
        if self.snapshot is not None and delivery.order.updated_at < self.snapshot.updated_at:
            return DeliveryOutcome.STALE  # Shopify retries carry the payload as it was: older
        self._updated(webhook_id=delivery.webhook_id, webhook_topic=delivery.topic,
                      received_at=delivery.received_at, order=delivery.order)
        self._refunds_listed(delivery)
        self._decide(items, policy, now=delivery.received_at)
        return DeliveryOutcome.APPLIED

    def _refunds_listed(self, delivery: OrderDelivery) -> None:
        """Refunds the order body lists that were never delivered on their own (a lost
        refunds/create, or an order read by the reconciler) are recorded as received."""
        for refund in delivery.order.refunds:
            if refund.refund_id not in self.refunds:
                self._refund_received(webhook_id="", webhook_topic=delivery.topic, received_at=delivery.received_at,
                                      refund=refund)

    def receive_refund(self, delivery: RefundDelivery, items: ItemMaster, policy: OrderPolicy = DEFAULT_POLICY
                       ) -> DeliveryOutcome:
        """One credit memo per refund, however often and by whatever path it arrives."""
        if delivery.refund.refund_id in self.refunds or delivery.webhook_id in self.applied_webhook_ids:
            return DeliveryOutcome.DUPLICATE
        self._refund_received(webhook_id=delivery.webhook_id, webhook_topic=delivery.topic,
                              received_at=delivery.received_at, refund=delivery.refund)
        self._decide(items, policy, now=delivery.received_at)
        return DeliveryOutcome.APPLIED

    def notice_edit(self, edit: OrderEditNoticed) -> DeliveryOutcome:
        if edit.webhook_id in self.applied_webhook_ids or edit.edit_id in self.edits_noticed:
            return DeliveryOutcome.DUPLICATE
        self._edit_noticed(webhook_id=edit.webhook_id, received_at=edit.received_at, edit_id=edit.edit_id,
                           edited_at=edit.edited_at,
                           added=tuple(f"line {line_id}: +{units}" for line_id, units in edit.added),
                           removed=tuple(f"line {line_id}: -{units}" for line_id, units in edit.removed))
        return DeliveryOutcome.APPLIED

    def record_outcome(self, outcome: PrimaOutcome, items: ItemMaster | None = None,
                       policy: OrderPolicy = DEFAULT_POLICY) -> bool:
        """Record what Prima answered to a command of this order; anything else is ignored.
        Then decide what the order still needs (a change that came meanwhile, waiting memos)."""
        recorded = self._record(outcome)
        if recorded:
            self._decide(items or {}, policy, now=outcome.occurred_at)
        return recorded

    def _record(self, outcome: PrimaOutcome) -> bool:
        command_id = outcome.command_id
        if self.command is not None and command_id == self.command.command_id:
            return self._record_create(outcome)
        if self.change is not None and command_id == self.change.command_id:
            return self._record_change(outcome)
        for memo in list(self.memos.values()):
            if memo.command is not None and memo.command.command_id == command_id:
                return self._record_memo(memo, outcome)
        return False

    def _record_create(self, outcome: PrimaOutcome) -> bool:
        if self.sales_order_number is not None or self.state not in (OrderState.SENT, OrderState.FAILED):
            return False  # already in Prima: a repeated outcome changes nothing
        if isinstance(outcome, SalesOrderCreatedByPrima):
            self._sales_order_created(command_id=outcome.command_id, sales_order_number=outcome.sales_order_number,
                                      status=outcome.status, occurred_at=outcome.occurred_at)
        elif self.state is OrderState.FAILED and not (self.parked and isinstance(outcome, SalesOrderRejectedByPrima)):
            return False  # already failed: a second failure adds nothing, but a parked command may be refused
        elif isinstance(outcome, SalesOrderParkedByGateway):
            self._sales_order_parked(command_id=outcome.command_id, attempts=outcome.attempts, reason=outcome.reason)
        elif isinstance(outcome, SalesOrderRejectedByPrima):
            self._sales_order_rejected(command_id=outcome.command_id, status_code=outcome.status_code,
                                       code=outcome.code, reason=outcome.reason)
        else:
            return False
        return True

    def _record_change(self, outcome: PrimaOutcome) -> bool:
        change = self.change
        assert change is not None
        kind = ChangeKind.CANCEL if isinstance(change, SalesOrderCancellation) else ChangeKind.AMEND
        if isinstance(outcome, SalesOrderAmendedByPrima) and kind is ChangeKind.AMEND:
            self._amended(command_id=outcome.command_id, sales_order_number=outcome.sales_order_number,
                          status=outcome.status, occurred_at=outcome.occurred_at)
        elif isinstance(outcome, SalesOrderCancelledByPrima) and kind is ChangeKind.CANCEL:
            self._sales_order_cancelled(command_id=outcome.command_id, sales_order_number=outcome.sales_order_number,
                                        status=outcome.status, occurred_at=outcome.occurred_at)
        elif isinstance(outcome, SalesOrderChangeRefusedByPrima):
            self._change_refused(command_id=outcome.command_id, change=str(kind), status=outcome.status,
                                 reason=outcome.reason)
        elif isinstance(outcome, SalesOrderRejectedByPrima):
            self._change_rejected(command_id=outcome.command_id, change=str(kind), status_code=outcome.status_code,
                                  code=outcome.code, reason=outcome.reason)
        elif isinstance(outcome, SalesOrderParkedByGateway):
            if self.change_parked:
                return False
            self._change_parked(command_id=outcome.command_id, change=str(kind), attempts=outcome.attempts,
                                reason=outcome.reason)
        else:
            return False
        return True

    def _record_memo(self, memo: Memo, outcome: PrimaOutcome) -> bool:
        if memo.state == MemoState.CREATED:
            return False
        if isinstance(outcome, CreditMemoCreatedByPrima):
            self._memo_created(command_id=outcome.command_id, refund_id=memo.refund_id,
                               credit_memo_number=outcome.credit_memo_number, total=str(outcome.total),
                               occurred_at=outcome.occurred_at)
        elif isinstance(outcome, SalesOrderRejectedByPrima) and memo.state in (MemoState.REQUESTED, MemoState.PARKED):
            self._memo_rejected(command_id=outcome.command_id, refund_id=memo.refund_id,
                                status_code=outcome.status_code, code=outcome.code, reason=outcome.reason)
        elif isinstance(outcome, SalesOrderParkedByGateway) and memo.state == MemoState.REQUESTED:
            self._memo_parked(command_id=outcome.command_id, refund_id=memo.refund_id, attempts=outcome.attempts,
                              reason=outcome.reason)
        else:
            return False
        return True

    def release(self, items: ItemMaster, released_by: str, now: datetime, *, only_if_mapped: bool = False,
                policy: OrderPolicy = DEFAULT_POLICY) -> bool:
        """Decide again, without re-keying anything: a quarantined or failed order, a change held
        at the cut-off (sent to Prima again: Prima's status decides), credit memos held or refused.

        `only_if_mapped` (the automatic release once missing items exist): only an order
        quarantined for unmapped SKUs whose every line now maps to a sellable item; otherwise
        nothing is recorded, so a sweep that asks again and again adds no events."""
        memos = [m for m in self.memos.values() if m.state in (MemoState.HELD, MemoState.REJECTED, MemoState.PARKED)]
        order_releasable = self.state in (OrderState.QUARANTINED, OrderState.FAILED, OrderState.AFTER_CUTOFF)
        if only_if_mapped:
            if not (self.state is OrderState.QUARANTINED and self.quarantine is not None
                    and self.quarantine[0] == QuarantineReason.UNMAPPED_SKU and self.snapshot is not None
                    and map_order_lines(self.snapshot, items, policy.line_rules).complete):
                return False
            memos = []
        elif not order_releasable and not memos:
            return False
        previous = self.state
        self._released(released_by=released_by, previous_state=str(previous))
        if order_releasable:
            if self.parked and self.command:
                # Prima may have created it before the gateway gave up: resend the same command,
                # whose idempotency key makes Prima answer with that sales order, never a second one.
                self._sales_order_requested(command=self.command)
            elif self.change_parked and self.change is not None:
                self._request_change(self.change)  # the same command, the same key
            else:
                self.held = None
                self.change_failure = None
                self._decide(items, policy, now=now, force=True, memos=False)
        for memo in memos:
            if memo.state == MemoState.PARKED and memo.command is not None:
                self._memo_requested(command=memo.command)  # the same command: one memo per refund
        self._decide_memos(items, policy, now, retry={m.refund_id for m in memos if m.state != MemoState.PARKED})
        return True

    def resolve_change(self, fact: ChangeResolutionRequested, items: ItemMaster,
                       policy: OrderPolicy = DEFAULT_POLICY) -> bool:
        """A change held at the cut-off was dealt with by hand in Prima."""
        if self.state is not OrderState.AFTER_CUTOFF or self.held is None or self.snapshot is None:
            return False
        change = self.held[0]
        draft = None
        if change == ChangeKind.AMEND:
            draft = self._draft(items, policy)
            if not isinstance(draft, SalesOrder):
                return False
        self._resolved_by_hand(resolved_by=fact.resolved_by, note=fact.note, change=change, sales_order=draft)
        self._decide_memos(items, policy, fact.requested_at)
        return True

    # -- decisions --------------------------------------------------------------------------------

    def _decide(self, items: ItemMaster, policy: OrderPolicy, now: datetime, *, force: bool = False,
                memos: bool = True) -> None:
        if self.snapshot is None:
            return  # a refund came first: wait for the order
        if self.needs_decision or force:
            if self.sales_order_number is None:
                self._decide_create(items, policy, now)
            else:
                self._decide_change(items, policy, now, force)
        if memos:
            self._decide_memos(items, policy, now)

    def _decide_create(self, items: ItemMaster, policy: OrderPolicy, issued_at: datetime) -> None:
        order = self.snapshot
        assert order is not None
        if self.command_issued:
            return  # one sales order per Shopify order: wait for Prima's answer
        if order.cancelled_at is not None:
            if not self.cancelled:
                self._cancelled_before_prima(reason=order.cancel_reason, cancelled_at=order.cancelled_at)
            return
        if self.cancelled:
            return
        if not payment_captured(order):
            if self.state is not OrderState.AWAITING_PAYMENT:
                self._awaiting_payment(financial_status=order.financial_status)
            return
        draft = self._draft(items, policy)
        if not isinstance(draft, SalesOrder):
            return
        command_id = uuid5(self.id, f"create-sales-order/{self.commands_issued + 1}")
        self._sales_order_requested(command=SalesOrderRequest(
            command_id=command_id,
            idempotency_key=_request_key("create-sales-order", command_id),
            shopify_order_id=order.shopify_order_id,
            issued_at=issued_at,
            sales_order=draft,
        ))

    def _draft(self, items: ItemMaster, policy: OrderPolicy) -> SalesOrder | None:
        """The sales order the order as it stands makes, or None after quarantining the order
        with the first rule it breaks (figures, mapping, totals)."""
        order = self.snapshot
        assert order is not None
        refunds = self.refunds_known()
        problem = figure_problem(order, refunds)
        if problem is not None:
            self._quarantine_once(QuarantineReason(problem.kind), problem.detail, ())
            return None
        mapping = map_lines(((line, sold_quantity(order, line, refunds)) for line in order.lines), items,
                            policy.line_rules, booked=self._booked_lines())
        if not mapping.complete:
            reason = QuarantineReason.UNMAPPED_SKU if mapping.unmapped else QuarantineReason.UNMAPPED_LINE
            self._quarantine_once(reason, mapping.describe(), mapping.unmapped_skus)
            return None
        draft = build_sales_order(order, mapping.lines, refunds)
        mismatch = totals_mismatch(order, draft, refunds)
        if mismatch is not None:
            self._quarantine_once(QuarantineReason.TOTALS_MISMATCH, mismatch.describe(), ())
            return None
        return draft

    def _decide_change(self, items: ItemMaster, policy: OrderPolicy, now: datetime, force: bool) -> None:
        order = self.snapshot
        assert order is not None and self.sales_order_number is not None
        if self.change_in_flight or self.cancelled:
            return  # Prima answers the change first; a cancelled sales order takes no more changes
        if self.state is OrderState.FAILED and self.change_failure is not None and not force:
            return  # a refused change waits for a person (release)
        if order.cancelled_at is not None:
            cut = None if force else self.cutoff_passed(policy, now)
            if cut is not None:
                why = f" ({order.cancel_reason})" if order.cancel_reason else ""
                self._hold_once(ChangeKind.CANCEL, (f"the order was cancelled in Shopify{why}",), cut, "cancelled")
                return
            command_id = uuid5(self.id, f"cancel-sales-order/{self.changes_issued + 1}")
            self._request_change(SalesOrderCancellation(
                command_id=command_id, idempotency_key=_request_key("cancel-sales-order", command_id),
                shopify_order_id=order.shopify_order_id, sales_order_number=self.sales_order_number, issued_at=now,
                reason=order.cancel_reason or "cancelled in Shopify",
                cancellable_statuses=policy.cutoff.changeable_statuses))
            return
        draft = self._draft(items, policy)
        if draft is None:
            return
        prima = self.prima_order
        changed = differences(prima, draft) if prima is not None else ("the sales order Prima holds is not known",)
        if not changed:
            if self.state in (OrderState.AFTER_CUTOFF, OrderState.QUARANTINED, OrderState.FAILED):
                self._no_longer_needed(reason="Shopify's order and Prima's sales order agree")
            elif self.needs_decision:
                self._unchanged(reason="nothing the sales order carries changed")
            return
        cut = None if force else self.cutoff_passed(policy, now)
        if cut is not None:
            self._hold_once(ChangeKind.AMEND, changed, cut, summary(draft))
            return
        command_id = uuid5(self.id, f"amend-sales-order/{self.changes_issued + 1}")
        self._request_change(SalesOrderAmendment(
            command_id=command_id, idempotency_key=_request_key("amend-sales-order", command_id),
            shopify_order_id=order.shopify_order_id, sales_order_number=self.sales_order_number, issued_at=now,
            sales_order=draft, amendable_statuses=policy.cutoff.changeable_statuses, changes=changed))

    def _booked_lines(self) -> dict[int, Target]:
        """What the sales order Prima holds books each Shopify line to: kept for those lines, so
        that an item retired in Prima since does not stop an edit of the order's other lines (a
        bundle line keeps the components it was expanded into)."""
        return booked_targets(self.prima_order)

    def _request_change(self, change: SalesOrderChange) -> None:
        if isinstance(change, SalesOrderCancellation):
            self._cancellation_requested(command=change)
        else:
            self._amendment_requested(command=change)

    def _hold_once(self, change: ChangeKind, changed: tuple[str, ...], cut: CutoffPassed, shopify_now: str) -> None:
        if self.state is OrderState.AFTER_CUTOFF and self.held == (str(change), tuple(changed)):
            return
        self._held_at_cutoff(change=str(change), differences=tuple(changed), prima_status=cut.status or self.prima_status,
                             reason=cut.reason, shopify_now=shopify_now,
                             prima_has=summary(self.prima_order) if self.prima_order else "unknown",
                             deadline=cut.deadline)

    def _decide_memos(self, items: ItemMaster, policy: OrderPolicy, now: datetime, retry: set[int] | None = None) -> None:
        """A credit memo for each refund not yet credited, once the sales order exists."""
        retry = retry or set()
        order = self.snapshot
        for refund in self.refunds_known():
            memo = self.memos.get(refund.refund_id, Memo(refund.refund_id))
            if memo.state in (MemoState.REQUESTED, MemoState.CREATED, MemoState.PARKED, MemoState.NOT_NEEDED):
                continue
            if memo.state in (MemoState.HELD, MemoState.REJECTED) and refund.refund_id not in retry:
                continue
            if self.cancelled or (order is not None and order.cancelled_at is not None and memo.command is None):
                self._memo_not_needed(refund_id=refund.refund_id,
                                      reason="the order was cancelled: its sales order carries nothing to credit")
                continue
            if order is None or self.sales_order_number is None:
                continue  # waits for the sales order
            if memo.command is None and awaits_cancellation_news(refund, order):
                continue
            decision = build_credit_memo(refund, order, self.sales_order_number, self.prima_order, items,
                                         policy.line_rules, policy.goodwill_item)
            if decision.problem is not None:
                if memo.state != MemoState.HELD or memo.problem != (decision.problem.kind, decision.problem.detail):
                    self._memo_held(refund_id=refund.refund_id, kind=decision.problem.kind,
                                    detail=decision.problem.detail)
                continue
            assert decision.memo is not None
            command_id = uuid5(self.id, f"credit-memo/{refund.refund_id}/{memo.requests + 1}")
            self._memo_requested(command=CreditMemoRequest(
                command_id=command_id,
                # one memo per Shopify refund, whatever the deliveries and attempts: the refund's key
                idempotency_key=f"shopify-prima:credit-memo:{refund.refund_id}",
                shopify_order_id=self.shopify_order_id, refund_id=refund.refund_id, issued_at=now,
                credit_memo=decision.memo))

    def _quarantine_once(self, reason: QuarantineReason, detail: str, unmapped_skus: tuple[str, ...]) -> None:
        if self.state is OrderState.QUARANTINED and self.quarantine and self.quarantine[1] == detail:
            return
        self._quarantined(reason=str(reason), detail=detail, unmapped_skus=tuple(unmapped_skus))
