"""The order flow's relay table: what each Order event becomes on Kafka.

Every event goes to shopify-prima.order-events.v1 (keyed by the Shopify order id); a
SalesOrderRequested also goes to prima.commands.v1 as the CreateSalesOrder the Prima gateway
sends. The relay itself is services/platform/outbox.py.
"""

from __future__ import annotations

from typing import Any

from contracts.orders import events as wire
from contracts.topics import ORDER_EVENTS, PRIMA_COMMANDS, order_key
from domain.orders.application import OrderApplication
from services.orders.translate import wire_command, wire_order
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
}


def _application(settings: Settings) -> OrderApplication:
    return OrderApplication(env=settings.eventsourcing_env())


ORDER_RELAY: RelayTable[int] = RelayTable(
    name="orders", lock="orders", application=_application, routes=ROUTES,
    subject_of=lambda first: first.shopify_order_id,
)
