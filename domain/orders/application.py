"""The order application: loads an Order, lets it decide, saves its events atomically with the
notification log (the outbox the relay reads)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application

from contracts.prima import PrimaOutcome
from contracts.shopify import ShopifyOrderReceived
from domain.orders.domainmodel import DeliveryOutcome, Order
from domain.orders.mapping import ItemMaster


class OrderApplication(Application[UUID]):
    name = "orders"

    def handle_delivery(self, delivery: ShopifyOrderReceived, items: ItemMaster) -> DeliveryOutcome:
        order = self.find(delivery.order.id)
        if order is None:
            self.save(Order.receive(delivery, items))
            return DeliveryOutcome.APPLIED
        outcome = order.apply_delivery(delivery, items)
        if outcome is DeliveryOutcome.APPLIED:
            self.save(order)
        return outcome

    def record_outcome(self, outcome: PrimaOutcome) -> Order | None:
        order = self.find(outcome.shopify_order_id)
        if order is None or not order.record_outcome(outcome):
            return None
        self.save(order)
        return order

    def release(self, shopify_order_id: int, items: ItemMaster, released_by: str, now: datetime) -> Order | None:
        order = self.find(shopify_order_id)
        if order is None or not order.release(items, released_by=released_by, now=now):
            return None
        self.save(order)
        return order

    def find(self, shopify_order_id: int) -> Order | None:
        try:
            return self.repository.get(Order.create_id(shopify_order_id))
        except AggregateNotFoundError:
            return None
