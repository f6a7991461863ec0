"""The order flow's relay table: what each Order event becomes on Kafka.

Every event goes to shopify-prima.order-events.v1 (keyed by the Shopify order id); a request
also goes to prima.commands.v1 as the command the Prima gateway sends: SalesOrderRequested as
CreateSalesOrder, SalesOrderAmendmentRequested as AmendSalesOrder, SalesOrderCancellationRequested
as CancelSalesOrder, CreditMemoRequested as CreateCreditMemo. The relay itself is services/platform/outbox.py.
"""

from __future__ import annotations

from typing import Any

from contracts.orders import events as wire
from contracts.topics import ORDER_EVENTS, PRIMA_COMMANDS, order_key
from domain.orders.application import OrderApplication
from services.orders.translate import (
    wire_amendment,
    wire_cancellation,
    wire_command,
    wire_memo_command,
    wire_order,
    wire_refund,
    wire_sales_order,
)
from services.platform.outbox import Envelope, RelayTable, Route
from services.platform.settings import Settings


def _envelope(env: Envelope[int]) -> dict[str, Any]:
    return {"event_id": env.event_id, "shopify_order_id": env.subject, "aggregate_id": env.aggregate_id,
            "aggregate_version": env.aggregate_version, "timestamp": env.timestamp,
            "notification_id": env.notification_id}


def _published(model: type[wire._Event], fields: Any) -> Route[int]:
    """The event as other teams see it: envelope + the fields `fields(domain_event)` gives."""
    return Route(ORDER_EVENTS, order_key, lambda env, e: model(**_envelope(env), **fields(e)))


ROUTES: dict[str, list[Route[int]]] = {
    "Order.OrderReceived": [_published(wire.OrderReceived, lambda e: {
        "order_name": e.order_name, "webhook_id": e.webhook_id, "webhook_topic": e.webhook_topic,
        "received_at": e.received_at, "order": wire_order(e.order)})],
    "Order.OrderUpdated": [_published(wire.OrderUpdated, lambda e: {
        "webhook_id": e.webhook_id, "webhook_topic": e.webhook_topic, "received_at": e.received_at,
        "order": wire_order(e.order)})],
    "Order.OrderAwaitingPayment": [_published(wire.OrderAwaitingPayment, lambda e: {
        "financial_status": e.financial_status})],
    "Order.OrderQuarantined": [_published(wire.OrderQuarantined, lambda e: {
        "reason": e.reason, "detail": e.detail, "unmapped_skus": list(e.unmapped_skus)})],
    "Order.SalesOrderRequested": [
        _published(wire.SalesOrderRequested, lambda e: {"command": wire_command(e.command)}),
        Route(PRIMA_COMMANDS, order_key, lambda env, e: wire_command(e.command)),
    ],
    "Order.SalesOrderCreated": [_published(wire.SalesOrderCreated, lambda e: {
        "command_id": e.command_id, "sales_order_number": e.sales_order_number, "status": e.status,
        "occurred_at": e.occurred_at})],
    "Order.SalesOrderRejected": [_published(wire.SalesOrderRejected, lambda e: {
        "command_id": e.command_id, "status_code": e.status_code, "code": e.code, "reason": e.reason})],
    "Order.SalesOrderParked": [_published(wire.SalesOrderParked, lambda e: {
        "command_id": e.command_id, "attempts": e.attempts, "reason": e.reason})],
    "Order.OrderReleased": [_published(wire.OrderReleased, lambda e: {
        "released_by": e.released_by, "previous_state": e.previous_state})],
    # the order lifecycle (issue 9)
    "Order.OrderOpenedByRefund": [_published(wire.OrderOpenedByRefund, lambda e: {"received_at": e.received_at})],
    "Order.OrderEditNoticed": [_published(wire.OrderEditNoticed, lambda e: {
        "webhook_id": e.webhook_id, "received_at": e.received_at, "edit_id": e.edit_id, "edited_at": e.edited_at,
        "added": list(e.added), "removed": list(e.removed)})],
    "Order.RefundReceived": [_published(wire.RefundReceived, lambda e: {
        "webhook_id": e.webhook_id, "webhook_topic": e.webhook_topic, "received_at": e.received_at,
        "refund": wire_refund(e.refund)})],
    "Order.OrderCancelledBeforePrima": [_published(wire.OrderCancelledBeforePrima, lambda e: {
        "reason": e.reason, "cancelled_at": e.cancelled_at})],
    "Order.SalesOrderAmendmentRequested": [
        _published(wire.SalesOrderAmendmentRequested, lambda e: {"command": wire_amendment(e.command)}),
        Route(PRIMA_COMMANDS, order_key, lambda env, e: wire_amendment(e.command)),
    ],
    "Order.SalesOrderAmended": [_published(wire.SalesOrderAmended, lambda e: {
        "command_id": e.command_id, "sales_order_number": e.sales_order_number, "status": e.status,
        "occurred_at": e.occurred_at})],
    "Order.SalesOrderCancellationRequested": [
        _published(wire.SalesOrderCancellationRequested, lambda e: {"command": wire_cancellation(e.command)}),
        Route(PRIMA_COMMANDS, order_key, lambda env, e: wire_cancellation(e.command)),
    ],
    "Order.SalesOrderCancelled": [_published(wire.SalesOrderCancelled, lambda e: {
        "command_id": e.command_id, "sales_order_number": e.sales_order_number, "status": e.status,
        "occurred_at": e.occurred_at})],
    "Order.SalesOrderChangeRefused": [_published(wire.SalesOrderChangeRefused, lambda e: {
        "command_id": e.command_id, "change": e.change, "status": e.status, "reason": e.reason})],
    "Order.SalesOrderChangeRejected": [_published(wire.SalesOrderChangeRejected, lambda e: {
        "command_id": e.command_id, "change": e.change, "status_code": e.status_code, "code": e.code,
        "reason": e.reason})],
    "Order.SalesOrderChangeParked": [_published(wire.SalesOrderChangeParked, lambda e: {
        "command_id": e.command_id, "change": e.change, "attempts": e.attempts, "reason": e.reason})],
    "Order.ChangeHeldAtCutoff": [_published(wire.ChangeHeldAtCutoff, lambda e: {
        "change": e.change, "differences": list(e.differences), "prima_status": e.prima_status, "reason": e.reason,
        "shopify_now": e.shopify_now, "prima_has": e.prima_has, "deadline": e.deadline})],
    "Order.ChangeNoLongerNeeded": [_published(wire.ChangeNoLongerNeeded, lambda e: {"reason": e.reason})],
    "Order.SalesOrderUnchanged": [_published(wire.SalesOrderUnchanged, lambda e: {"reason": e.reason})],
    "Order.ChangeResolvedByHand": [_published(wire.ChangeResolvedByHand, lambda e: {
        "resolved_by": e.resolved_by, "note": e.note, "change": e.change,
        "sales_order": wire_sales_order(e.sales_order) if e.sales_order is not None else None})],
    "Order.CreditMemoRequested": [
        _published(wire.CreditMemoRequested, lambda e: {"command": wire_memo_command(e.command)}),
        Route(PRIMA_COMMANDS, order_key, lambda env, e: wire_memo_command(e.command)),
    ],
    "Order.CreditMemoCreated": [_published(wire.CreditMemoCreated, lambda e: {
        "command_id": e.command_id, "refund_id": e.refund_id, "credit_memo_number": e.credit_memo_number,
        "total": e.total, "occurred_at": e.occurred_at})],
    "Order.CreditMemoHeld": [_published(wire.CreditMemoHeld, lambda e: {
        "refund_id": e.refund_id, "kind": e.kind, "detail": e.detail})],
    "Order.CreditMemoRejected": [_published(wire.CreditMemoRejected, lambda e: {
        "command_id": e.command_id, "refund_id": e.refund_id, "status_code": e.status_code, "code": e.code,
        "reason": e.reason})],
    "Order.CreditMemoParked": [_published(wire.CreditMemoParked, lambda e: {
        "command_id": e.command_id, "refund_id": e.refund_id, "attempts": e.attempts, "reason": e.reason})],
    "Order.CreditMemoNotNeeded": [_published(wire.CreditMemoNotNeeded, lambda e: {
        "refund_id": e.refund_id, "reason": e.reason})],
}


def _application(settings: Settings) -> OrderApplication:
    return OrderApplication(env=settings.eventsourcing_env())


ORDER_RELAY: RelayTable[int] = RelayTable(
    name="orders", lock="orders", application=_application, routes=ROUTES,
    subject_of=lambda first: first.shopify_order_id,
)
