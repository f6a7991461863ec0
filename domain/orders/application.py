"""The order application: a batch of facts in, decisions out.

`handle(facts, items, now)` applies a batch (order deliveries, Prima's outcomes, operator
releases) in order, each to its Order, and saves every Order it changed in one transaction
together with the notification log (the outbox the relay reads). Facts about one order keep
their order; a redelivered batch changes nothing (each Order ignores what it has applied:
webhook ids, updated_at, command ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from eventsourcing.persistence import JSONTranscoder

from domain.catalog.items import ItemMaster
from domain.orders.domainmodel import DeliveryOutcome, Order, OrderState
from domain.orders.values import (
    VALUE_TYPES,
    OrderDelivery,
    OrderFact,
    ReleaseRequested,
    SalesOrderCreatedByPrima,
    shopify_order_id_of,
)
from domain.shared.application import BatchApplication, UnitOfWork
from domain.shared.transcoding import register_values


@dataclass
class HandleResult:
    deliveries: dict[str, int] = field(default_factory=dict)  # outcome -> count
    outcomes_recorded: int = 0
    releases: list[tuple[int, str]] = field(default_factory=list)  # (order, state after), for the operator
    refused_releases: list[int] = field(default_factory=list)
    # for the latency histogram: seconds from the first webhook to the sales order
    created_after: list[float] = field(default_factory=list)
    saved: int = 0


class OrderApplication(BatchApplication):
    name = "orders"

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_values(transcoder, *VALUE_TYPES)

    def handle(self, facts: Sequence[OrderFact], items: ItemMaster, now: datetime) -> HandleResult:
        result = HandleResult()
        uow = self.unit_of_work()
        uow.preload(Order.create_id(shopify_order_id_of(fact)) for fact in facts)
        for fact in facts:
            self._apply(uow, fact, items, now, result)
        result.saved = uow.commit()
        return result

    def _apply(self, uow: UnitOfWork, fact: OrderFact, items: ItemMaster, now: datetime,
               result: HandleResult) -> None:
        order = cast("Order | None", uow.get(Order.create_id(shopify_order_id_of(fact))))
        if isinstance(fact, OrderDelivery):
            if order is None:
                uow.add(Order.receive(fact, items))
                outcome = DeliveryOutcome.APPLIED
            else:
                outcome = order.apply_delivery(fact, items)
            result.deliveries[str(outcome)] = result.deliveries.get(str(outcome), 0) + 1
        elif isinstance(fact, ReleaseRequested):
            if order is not None and order.release(items, released_by=fact.released_by, now=fact.requested_at,
                                                   only_if_mapped=fact.only_if_mapped):
                result.releases.append((fact.shopify_order_id, str(order.state)))
            else:
                result.refused_releases.append(fact.shopify_order_id)
        elif order is not None and order.record_outcome(fact):
            result.outcomes_recorded += 1
            if isinstance(fact, SalesOrderCreatedByPrima) and order.state is OrderState.IN_PRIMA:
                result.created_after.append((fact.occurred_at - order.first_received_at).total_seconds())

    def find_order(self, shopify_order_id: int) -> Order | None:
        return cast("Order | None", self.find(Order.create_id(shopify_order_id)))
