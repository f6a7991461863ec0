"""Hosts the Order aggregate: Shopify order facts and Prima outcomes in, decisions saved to the
event store (whose notification log is the outbox). Offsets are committed only after the save."""

from __future__ import annotations

import asyncio
import logging

from faststream import FastStream
from faststream.kafka import KafkaMessage
from pydantic import TypeAdapter

from contracts.prima import PrimaOutcome, SalesOrderCreated
from contracts.shopify import ShopifyOrderReceived
from contracts.topics import PRIMA_OUTCOMES, SHOPIFY_ORDERS
from domain.orders.application import OrderApplication
from services.config import Settings
from services.kafka import decode, durable_subscriber, make_broker
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

    @durable_subscriber(broker, settings, SHOPIFY_ORDERS.name, GROUP)
    async def on_order_fact(msg: KafkaMessage) -> None:
        delivery = decode(ShopifyOrderReceived.model_validate_json, msg)
        if delivery is None:
            return
        skus = [line.sku or "" for line in delivery.order.line_items]
        master = await items.get(skus)
        outcome = await asyncio.to_thread(orders.handle_delivery, delivery, master)
        ORDER_DELIVERIES.labels(outcome=str(outcome)).inc()

    @durable_subscriber(broker, settings, PRIMA_OUTCOMES.name, GROUP)
    async def on_prima_outcome(msg: KafkaMessage) -> None:
        outcome = decode(OUTCOME.validate_json, msg)
        if outcome is None:
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

