"""The order application: a batch of facts in, decisions out.

`handle(facts, items, now, policy)` applies a batch (order deliveries, refunds, edit notices,
Prima's outcomes, operator releases and resolutions) in order, with the flow's configured rules
(domain/orders/policy.py), each to its Order, and saves every Order it changed in one transaction
together with the notification log (the outbox the relay reads). Facts about one order keep
their order; a redelivered batch changes nothing (each Order ignores what it has applied:
webhook ids, updated_at, command ids).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, cast

from eventsourcing.persistence import JSONTranscoder

from domain.catalog.items import ItemMaster
from domain.orders.bundles import component_skus
from domain.orders.domainmodel import DeliveryOutcome, Order
from domain.orders.policy import DEFAULT_POLICY, OrderPolicy
from domain.orders.values import (
    VALUE_TYPES,
    ChangeResolutionRequested,
    OrderDelivery,
    OrderEditNoticed,
    OrderFact,
    RefundDelivery,
    ReleaseRequested,
    SalesOrderCreatedByPrima,
    shopify_order_id_of,
)
from domain.shared.application import BatchApplication, UnitOfWork
from domain.shared.transcoding import register_values

ItemLookup = Callable[[set[str]], ItemMaster]


@dataclass
class HandleResult:
    deliveries: dict[str, int] = field(default_factory=dict)  # outcome -> count
    outcomes_recorded: int = 0
    releases: list[tuple[int, str]] = field(default_factory=list)  # (order, state after), for the operator
    refused_releases: list[int] = field(default_factory=list)
    resolutions: list[tuple[int, bool]] = field(default_factory=list)  # (order, done)
    refunds: dict[str, int] = field(default_factory=dict)  # outcome -> count
    edits_without_order: list[int] = field(default_factory=list)  # edit notices of an order never seen
    # for the latency histogram: seconds from the first webhook to the sales order
    created_after: list[float] = field(default_factory=list)
    saved: int = 0


class OrderApplication(BatchApplication):
    name = "orders"
    snapshotting_intervals: ClassVar[dict[type, int]] = {Order: 20}  # an Order's events carry the whole order: a snapshot every 20

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_values(transcoder, *VALUE_TYPES)

    def handle(self, facts: Sequence[OrderFact], items: ItemMaster | ItemLookup, now: datetime,
               policy: OrderPolicy = DEFAULT_POLICY) -> HandleResult:
        """`items`: the item master, or a look-up that gives it for a set of SKUs (asked for the
        SKUs of the batch's deliveries, of the orders the batch touches, and of the rules; then
        once more for the components of the kits among them)."""
        result = HandleResult()
        uow = self.unit_of_work()
        uow.preload(Order.create_id(shopify_order_id_of(fact)) for fact in facts)
        if callable(items):
            lookup = items
            items = lookup(self._skus(facts, uow, policy))
            if components := component_skus(items) - set(items):  # the kits' components: read once more
                items = {**items, **lookup(components)}
        for fact in facts:
            self._apply(uow, fact, items, now, result, policy)
        result.saved = uow.commit()
        return result

    def _apply(self, uow: UnitOfWork, fact: OrderFact, items: ItemMaster, now: datetime,
               result: HandleResult, policy: OrderPolicy = DEFAULT_POLICY) -> None:
        order = cast("Order | None", uow.get(Order.create_id(shopify_order_id_of(fact))))
        if isinstance(fact, OrderDelivery):
            if order is None:
                uow.add(Order.receive(fact, items, policy))
                outcome = DeliveryOutcome.APPLIED
            else:
                outcome = order.apply_delivery(fact, items, policy)
            result.deliveries[str(outcome)] = result.deliveries.get(str(outcome), 0) + 1
        elif isinstance(fact, RefundDelivery):
            if order is None:  # the refund came first: the Order keeps it until its order arrives
                uow.add(Order.open_by_refund(fact))
                outcome = DeliveryOutcome.APPLIED
            else:
                outcome = order.receive_refund(fact, items, policy)
            result.refunds[str(outcome)] = result.refunds.get(str(outcome), 0) + 1
        elif isinstance(fact, OrderEditNoticed):
            if order is None:
                result.edits_without_order.append(fact.shopify_order_id)
            else:
                order.notice_edit(fact)
        elif isinstance(fact, ReleaseRequested):
            if order is not None and order.release(items, released_by=fact.released_by, now=fact.requested_at,
                                                   only_if_mapped=fact.only_if_mapped, policy=policy):
                result.releases.append((fact.shopify_order_id, str(order.state)))
            else:
                result.refused_releases.append(fact.shopify_order_id)
        elif isinstance(fact, ChangeResolutionRequested):
            done = order is not None and order.resolve_change(fact, items, policy)
            result.resolutions.append((fact.shopify_order_id, done))
        elif order is not None:
            created_before = order.sales_order_number is not None
            if order.record_outcome(fact, items, policy):
                result.outcomes_recorded += 1
                if (isinstance(fact, SalesOrderCreatedByPrima) and not created_before
                        and order.first_received_at is not None):
                    result.created_after.append((fact.occurred_at - order.first_received_at).total_seconds())

    @staticmethod
    def _skus(facts: Sequence[OrderFact], uow: UnitOfWork, policy: OrderPolicy) -> set[str]:
        skus = set(policy.item_skus())
        for fact in facts:
            if isinstance(fact, OrderDelivery):
                skus |= {line.sku for line in fact.order.lines if line.sku}
            order = cast("Order | None", uow.get(Order.create_id(shopify_order_id_of(fact))))
            if order is not None and order.snapshot is not None:
                skus |= {line.sku for line in order.snapshot.lines if line.sku}
        return skus

    def find_order(self, shopify_order_id: int) -> Order | None:
        return cast("Order | None", self.find(Order.create_id(shopify_order_id)))
