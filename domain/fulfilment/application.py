"""The fulfilment application: OrderFulfilment aggregates in the event store, their events
transcoded as the domain's values (domain/fulfilment/values.py).

`handle` takes a batch of facts (despatch notes, the order's lines, reads of its fulfillment
orders, Shopify's answers, operators' releases), loads the orders they name at once, applies
them in order and commits once (the commands leave through the notification log). A
redelivered batch changes nothing: each OrderFulfilment ignores what it has already applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from eventsourcing.persistence import JSONTranscoder

from domain.fulfilment.domainmodel import (
    DEFAULT_POLICY,
    FulfilmentPolicy,
    OrderFulfilment,
)
from domain.fulfilment.values import (
    VALUE_TYPES,
    Despatch,
    FulfillmentOrdersStated,
    FulfilmentFact,
    FulfilmentReleaseRequested,
    OrderLinesStated,
)
from domain.shared.application import BatchApplication, UnitOfWork
from domain.shared.transcoding import register_values


@dataclass
class HandleResult:
    applied: int = 0  # facts that changed an order
    ignored: int = 0  # repeats, older versions, answers to commands not in flight
    outcomes_without_order: list[int] = field(default_factory=list)  # an answer for an order never seen
    released: list[int] = field(default_factory=list)
    refused_releases: list[int] = field(default_factory=list)  # no exception to release
    saved: int = 0
    # what the batch decided, per event kind (FulfilmentRequested, ExceptionRaised, ...)
    decided: dict[str, int] = field(default_factory=dict)
    # (despatch time, fulfilment made) of each fulfilment Shopify made in this batch
    fulfilled: list[tuple[datetime, datetime]] = field(default_factory=list)


DECISIONS = ("NothingFulfillable", "FulfilmentRequested", "ExceptionRaised", "TrackingUpdateRequested",
             "FulfilmentCreated", "TrackingUpdated", "Released", "DespatchSettled")


class FulfilmentApplication(BatchApplication):
    name = "fulfilment"

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_values(transcoder, *VALUE_TYPES)

    def handle(self, facts: Sequence[FulfilmentFact], now: datetime,
               policy: FulfilmentPolicy = DEFAULT_POLICY) -> HandleResult:
        result = HandleResult()
        uow = self.unit_of_work()
        uow.preload(OrderFulfilment.create_id(fact.shopify_order_id) for fact in facts)
        for fact in facts:
            self._apply(uow, fact, now, policy, result)
        for aggregate in uow.loaded.values():
            for pending in getattr(aggregate, "pending_events", ()):
                kind = type(pending).__name__
                if kind in DECISIONS:
                    result.decided[kind] = result.decided.get(kind, 0) + 1
                if kind == "FulfilmentCreated":
                    despatch = cast("OrderFulfilment", aggregate).despatches[pending.despatch_id]
                    result.fulfilled.append((despatch.despatched_at, pending.occurred_at))
        result.saved = uow.commit()
        return result

    @staticmethod
    def _apply(uow: UnitOfWork, fact: FulfilmentFact, now: datetime, policy: FulfilmentPolicy,
               result: HandleResult) -> None:
        found = cast("OrderFulfilment | None", uow.get(OrderFulfilment.create_id(fact.shopify_order_id)))
        if found is None and not isinstance(fact, Despatch | OrderLinesStated | FulfillmentOrdersStated):
            if isinstance(fact, FulfilmentReleaseRequested):
                result.refused_releases.append(fact.shopify_order_id)
            else:
                result.outcomes_without_order.append(fact.shopify_order_id)
            return
        fulfilment = found or cast("OrderFulfilment", uow.add(OrderFulfilment(fact.shopify_order_id)))
        if isinstance(fact, Despatch):
            changed = fulfilment.record_despatch(fact, now, policy)
        elif isinstance(fact, OrderLinesStated):
            changed = fulfilment.record_lines(fact.lines, now, policy)
        elif isinstance(fact, FulfillmentOrdersStated):
            changed = fulfilment.record_fulfillment_orders(fact.fulfillment_orders, fact.read_at, now, policy)
        elif isinstance(fact, FulfilmentReleaseRequested):
            changed = fulfilment.release(fact.released_by, fact.fulfillment_orders, fact.read_at, now, policy,
                                         settle=fact.settle)
            (result.released if changed else result.refused_releases).append(fact.shopify_order_id)
        else:
            changed = fulfilment.record_outcome(fact, now, policy)
        if changed:
            result.applied += 1
        else:
            result.ignored += 1

    def find_fulfilment(self, shopify_order_id: int) -> OrderFulfilment | None:
        return cast("OrderFulfilment | None", self.find(OrderFulfilment.create_id(shopify_order_id)))
