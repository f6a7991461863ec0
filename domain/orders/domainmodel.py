"""The Order aggregate: one per Shopify order, deciding when Prima gets a sales order.

Its events are the order's history; the command it issues (SalesOrderRequested carries a
SalesOrderRequest) leaves through the event store's notification log, never by a direct call.
Events carry the domain's own values (domain/orders/values.py), never wire models.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.catalog.items import ItemMaster
from domain.orders.mapping import map_order_lines
from domain.orders.payment import payment_captured
from domain.orders.sales_order import build_sales_order, totals_mismatch
from domain.orders.values import (
    OrderDelivery,
    OrderSnapshot,
    PrimaOutcome,
    SalesOrderCreatedByPrima,
    SalesOrderParkedByGateway,
    SalesOrderRejectedByPrima,
    SalesOrderRequest,
)

ORDER_NAMESPACE = uuid5(NAMESPACE_URL, "https://shopify-prima/orders")


class OrderState(StrEnum):
    RECEIVED = "received"
    AWAITING_PAYMENT = "awaiting_payment"
    QUARANTINED = "quarantined"
    SENT = "sent"
    IN_PRIMA = "in_prima"
    FAILED = "failed"


class QuarantineReason(StrEnum):
    UNMAPPED_SKU = "unmapped_sku"
    TOTALS_MISMATCH = "totals_mismatch"


class DeliveryOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"


class Order(Aggregate):
    @staticmethod
    def create_id(shopify_order_id: int) -> UUID:
        return uuid5(ORDER_NAMESPACE, str(shopify_order_id))

    # -- events -------------------------------------------------------------------------------

    @event("OrderReceived")
    def __init__(self, shopify_order_id: int, order_name: str, webhook_id: str, webhook_topic: str,
                 received_at: datetime, order: OrderSnapshot) -> None:
        self.shopify_order_id = shopify_order_id
        self.order_name = order_name
        self.first_received_at = received_at
        self.applied_webhook_ids: list[str] = [webhook_id]
        self.snapshot = order
        self.state = OrderState.RECEIVED
        self.quarantine: tuple[str, str, tuple[str, ...]] | None = None  # (reason, detail, SKUs)
        self.command: SalesOrderRequest | None = None
        self.commands_issued = 0
        self.sales_order_number: str | None = None
        self.failure: tuple[str, str] | None = None  # (kind: rejected | parked, reason)

    @event("OrderUpdated")
    def _updated(self, webhook_id: str, webhook_topic: str, received_at: datetime, order: OrderSnapshot) -> None:
        self.applied_webhook_ids.append(webhook_id)
        self.snapshot = order
        self.order_name = order.name

    @event("OrderAwaitingPayment")
    def _awaiting_payment(self, financial_status: str | None) -> None:
        self.state = OrderState.AWAITING_PAYMENT

    @event("OrderQuarantined")
    def _quarantined(self, reason: str, detail: str, unmapped_skus: tuple[str, ...]) -> None:
        self.state = OrderState.QUARANTINED
        self.quarantine = (reason, detail, tuple(unmapped_skus))

    @event("SalesOrderRequested")
    def _sales_order_requested(self, command: SalesOrderRequest) -> None:
        self.state = OrderState.SENT
        self.command = command
        self.commands_issued += 1
        self.quarantine = None
        self.failure = None

    @event("SalesOrderCreated")
    def _sales_order_created(self, command_id: UUID, sales_order_number: str, status: str,
                             occurred_at: datetime) -> None:
        self.state = OrderState.IN_PRIMA
        self.sales_order_number = sales_order_number
        self.failure = None

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

    # -- decisions ----------------------------------------------------------------------------

    @property
    def parked(self) -> bool:
        """The gateway gave up on the command for now (Prima never answered): Prima may hold
        the sales order, and the command is re-driven with its own key until Prima answers."""
        return self.state is OrderState.FAILED and self.failure is not None and self.failure[0] == "parked"

    @property
    def command_issued(self) -> bool:
        """A command stands: sent, done, or parked. Only a rejection (Prima's definite "no")
        lets the order decide again; a parked command is never replaced by a new one, whose
        new key could make a second sales order."""
        return self.command is not None and (self.state in (OrderState.SENT, OrderState.IN_PRIMA) or self.parked)

    @classmethod
    def receive(cls, delivery: OrderDelivery, items: ItemMaster) -> Order:
        order = cls(
            shopify_order_id=delivery.order.shopify_order_id,
            order_name=delivery.order.name,
            webhook_id=delivery.webhook_id,
            webhook_topic=delivery.topic,
            received_at=delivery.received_at,
            order=delivery.order,
        )
        order._decide(items, issued_at=delivery.received_at)
        return order

    def apply_delivery(self, delivery: OrderDelivery, items: ItemMaster) -> DeliveryOutcome:
        if delivery.webhook_id in self.applied_webhook_ids:
            return DeliveryOutcome.DUPLICATE
        if delivery.order.updated_at < self.snapshot.updated_at:
            return DeliveryOutcome.STALE  # Shopify retries carry the payload as it was: older
        self._updated(webhook_id=delivery.webhook_id, webhook_topic=delivery.topic,
                      received_at=delivery.received_at, order=delivery.order)
        self._decide(items, issued_at=delivery.received_at)
        return DeliveryOutcome.APPLIED

    def record_outcome(self, outcome: PrimaOutcome) -> bool:
        """Record what Prima answered to the current command; anything else is ignored."""
        if self.command is None or outcome.command_id != self.command.command_id:
            return False
        if self.state not in (OrderState.SENT, OrderState.FAILED):
            return False  # already in Prima: a repeated outcome changes nothing
        if isinstance(outcome, SalesOrderCreatedByPrima):
            self._sales_order_created(command_id=outcome.command_id, sales_order_number=outcome.sales_order_number,
                                      status=outcome.status, occurred_at=outcome.occurred_at)
        elif self.state is OrderState.FAILED and not (self.parked and isinstance(outcome, SalesOrderRejectedByPrima)):
            return False  # already failed: a second failure adds nothing, but a parked command may be refused
        elif isinstance(outcome, SalesOrderParkedByGateway):
            self._sales_order_parked(command_id=outcome.command_id, attempts=outcome.attempts, reason=outcome.reason)
        else:
            self._sales_order_rejected(command_id=outcome.command_id, status_code=outcome.status_code,
                                       code=outcome.code, reason=outcome.reason)
        return True

    def release(self, items: ItemMaster, released_by: str, now: datetime, *, only_if_mapped: bool = False) -> bool:
        """Decide again a quarantined or failed order, without re-keying anything.

        `only_if_mapped` (the automatic release once missing items exist): only an order
        quarantined for unmapped SKUs whose every line now maps to a sellable item; otherwise
        nothing is recorded, so a sweep that asks again and again adds no events."""
        if self.state not in (OrderState.QUARANTINED, OrderState.FAILED):
            return False
        if only_if_mapped and not (
            self.state is OrderState.QUARANTINED and self.quarantine is not None
            and self.quarantine[0] == QuarantineReason.UNMAPPED_SKU
            and map_order_lines(self.snapshot, items).complete
        ):
            return False
        previous = self.state
        self._released(released_by=released_by, previous_state=str(previous))
        if previous is OrderState.FAILED and self.failure and self.failure[0] == "parked" and self.command:
            # Prima may have created it before the gateway gave up: resend the same command,
            # whose idempotency key makes Prima answer with that sales order, never a second one.
            self._sales_order_requested(command=self.command)
        else:
            self._decide(items, issued_at=now)
        return True

    def _decide(self, items: ItemMaster, issued_at: datetime) -> None:
        if self.command_issued:
            return  # one sales order per Shopify order; edits are a later flow
        order = self.snapshot
        if not payment_captured(order):
            if self.state is not OrderState.AWAITING_PAYMENT:
                self._awaiting_payment(financial_status=order.financial_status)
            return
        mapping = map_order_lines(order, items)
        if not mapping.complete:
            self._quarantine_once(QuarantineReason.UNMAPPED_SKU, mapping.describe(), mapping.unmapped_skus)
            return
        draft = build_sales_order(order, mapping.lines)
        mismatch = totals_mismatch(order, draft)
        if mismatch is not None:
            self._quarantine_once(QuarantineReason.TOTALS_MISMATCH, mismatch.describe(), ())
            return
        command_id = uuid5(self.id, f"create-sales-order/{self.commands_issued + 1}")
        self._sales_order_requested(command=SalesOrderRequest(
            command_id=command_id,
            idempotency_key=f"shopify-prima:create-sales-order:{command_id}",
            shopify_order_id=order.shopify_order_id,
            issued_at=issued_at,
            sales_order=draft,
        ))

    def _quarantine_once(self, reason: QuarantineReason, detail: str, unmapped_skus: tuple[str, ...]) -> None:
        if self.state is OrderState.QUARANTINED and self.quarantine and self.quarantine[1] == detail:
            return
        self._quarantined(reason=str(reason), detail=detail, unmapped_skus=tuple(unmapped_skus))
