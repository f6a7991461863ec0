"""The fulfilment flow's relay table: what each OrderFulfilment event becomes on Kafka.

Every event goes to shopify-prima.fulfilment-events.v1 (keyed by the Shopify order id); a
FulfilmentRequested also goes to shopify.commands.v1 as a CreateFulfilment, a
TrackingUpdateRequested as an UpdateFulfilmentTracking. The relay itself is
services/platform/outbox.py.
"""

from __future__ import annotations

from typing import Any

from contracts.fulfilment import events as wire
from contracts.topics import FULFILMENT_EVENTS, SHOPIFY_COMMANDS, order_key
from domain.fulfilment.application import FulfilmentApplication
from services.fulfilment import translate
from services.platform.outbox import Envelope, RelayTable, Route
from services.platform.settings import Settings


def _published(model: type[Any], fields: Any = lambda e: {}) -> Route[int]:
    def build(env: Envelope[int], e: Any) -> Any:
        return model(event_id=env.event_id, shopify_order_id=env.subject, aggregate_id=env.aggregate_id,
                     aggregate_version=env.aggregate_version, timestamp=env.timestamp,
                     notification_id=env.notification_id, **fields(e))
    return Route(FULFILMENT_EVENTS, order_key, build)


ROUTES: dict[str, list[Route[int]]] = {
    "OrderFulfilment.Opened": [_published(wire.FulfilmentOpened)],
    "OrderFulfilment.LinesRecorded": [_published(wire.OrderLinesRecorded, lambda e: {
        "lines": tuple(translate.order_line(line) for line in e.lines)})],
    "OrderFulfilment.FulfillmentOrdersRead": [_published(wire.FulfillmentOrdersRead, lambda e: {
        "fulfillment_orders": tuple(translate.fulfillment_order(o) for o in e.fulfillment_orders),
        "read_at": e.read_at})],
    "OrderFulfilment.DespatchRecorded": [_published(wire.DespatchRecorded,
                                                    lambda e: translate.despatch_fields(e.despatch))],
    "OrderFulfilment.NothingFulfillable": [_published(wire.NothingFulfillable, lambda e: {
        "despatch_id": e.despatch_id, "reason": e.reason})],
    "OrderFulfilment.FulfilmentRequested": [
        _published(wire.FulfilmentRequested, lambda e: {"command": translate.create_fulfilment(e.command)}),
        Route(SHOPIFY_COMMANDS, order_key, lambda env, e: translate.create_fulfilment(e.command)),
    ],
    "OrderFulfilment.FulfilmentCreated": [_published(wire.FulfilmentRecorded, lambda e: {
        "command_id": e.command_id, "despatch_id": e.despatch_id, "fulfilment_id": e.fulfilment_id,
        "occurred_at": e.occurred_at})],
    "OrderFulfilment.ExceptionRaised": [_published(wire.FulfilmentExceptionRaised, lambda e: {
        "exception": translate.problem(e.exception)})],
    "OrderFulfilment.TrackingUpdateRequested": [
        _published(wire.TrackingUpdateRequested, lambda e: {"command": translate.update_tracking(e.command)}),
        Route(SHOPIFY_COMMANDS, order_key, lambda env, e: translate.update_tracking(e.command)),
    ],
    "OrderFulfilment.TrackingUpdated": [_published(wire.TrackingRecorded, lambda e: {
        "command_id": e.command_id, "occurred_at": e.occurred_at})],
    "OrderFulfilment.Released": [_published(wire.FulfilmentReleased, lambda e: {
        "released_by": e.released_by, "previous": translate.problem(e.previous)})],
    "OrderFulfilment.DespatchSettled": [_published(wire.DespatchSettled, lambda e: {
        "despatch_id": e.despatch_id, "reason": e.reason})],
}


def _application(settings: Settings) -> FulfilmentApplication:
    return FulfilmentApplication(env=settings.eventsourcing_env())


FULFILMENT_RELAY: RelayTable[int] = RelayTable(
    name="fulfilment", lock="fulfilment", application=_application, routes=ROUTES,
    subject_of=lambda first: first.shopify_order_id,
)
