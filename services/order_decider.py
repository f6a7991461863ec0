"""Hosts the Order aggregate: Shopify order facts and Prima outcomes in, decisions saved to the
event store (whose notification log is the outbox). Offsets are committed only after the save."""

from __future__ import annotations

import asyncio
import logging

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaMessage
from pydantic import TypeAdapter, ValidationError

from contracts.prima import PrimaOutcome, SalesOrderCreated
from contracts.shopify import ShopifyOrderReceived
from contracts.topics import PRIMA_OUTCOMES, SHOPIFY_ORDERS
from domain.orders.application import OrderApplication
from services.config import Settings
from services.kafka import make_broker
from services.metrics import ORDER_DELIVERIES, WEBHOOK_TO_SALES_ORDER
from services.prima_client import ItemMasterCache, prima_http_client
from services.runtime import run_faststream_worker

log = logging.getLogger("shopify_prima.order_decider")
OUTCOME = TypeAdapter(PrimaOutcome)
GROUP = "order-decider"


def build(settings: Settings) -> FastStream:
    broker = make_broker(settings, "order-decider")
    orders = OrderApplication(env=settings.eventsourcing_env())
    items = ItemMasterCache(prima_http_client(settings), settings.item_master_ttl_seconds)

    @broker.subscriber(SHOPIFY_ORDERS.name, group_id=GROUP, auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR,
                       max_workers=settings.consumer_workers)
    async def on_order_fact(msg: KafkaMessage) -> None:
        try:
            delivery = ShopifyOrderReceived.model_validate_json(msg.body)
        except ValidationError:
            log.error("undecodable message on %s at offset %s: %r", SHOPIFY_ORDERS.name, msg.raw_message.offset, msg.body[:500])
            ORDER_DELIVERIES.labels(outcome="undecodable").inc()
            return
        skus = [line.sku or "" for line in delivery.order.line_items]
        master = await items.get(skus)
        outcome = await asyncio.to_thread(orders.handle_delivery, delivery, master)
        ORDER_DELIVERIES.labels(outcome=str(outcome)).inc()

    @broker.subscriber(PRIMA_OUTCOMES.name, group_id=GROUP, auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR,
                       max_workers=settings.consumer_workers)
    async def on_prima_outcome(msg: KafkaMessage) -> None:
        try:
            outcome = OUTCOME.validate_json(msg.body)
        except ValidationError:
            log.error("undecodable message on %s at offset %s", PRIMA_OUTCOMES.name, msg.raw_message.offset)
            ORDER_DELIVERIES.labels(outcome="undecodable").inc()
            return
        order = await asyncio.to_thread(orders.record_outcome, outcome)
        if order is not None and isinstance(outcome, SalesOrderCreated):
            WEBHOOK_TO_SALES_ORDER.observe((outcome.occurred_at - order.first_received_at).total_seconds())

    app = FastStream(broker)

    @app.after_shutdown
    async def close() -> None:
        await items.client.aclose()
        orders.close()

    return app


def main() -> None:
    run_faststream_worker(build, lambda s: s.order_decider_metrics_port)


if __name__ == "__main__":
    main()

