"""The outbox relay process: every flow's notification log onto Kafka (services/platform/outbox.py),
one relay per registered table, side by side. A new flow adds its RelayTable to RELAY_TABLES."""

from __future__ import annotations

import asyncio

from services.fulfilment.outbox import FULFILMENT_RELAY
from services.inventory.outbox import STOCK_RELAY
from services.orders.outbox import ORDER_RELAY
from services.payouts.outbox import PAYOUT_RELAY
from services.platform.kafka import make_broker
from services.platform.outbox import Relay
from services.platform.runner import Worker, run_worker

RELAY_TABLES = (ORDER_RELAY, STOCK_RELAY, PAYOUT_RELAY, FULFILMENT_RELAY)


async def main(worker: Worker) -> None:
    broker = make_broker(worker.settings, "outbox-relay")
    relays = [Relay(table, worker.settings, broker) for table in RELAY_TABLES]
    try:
        async with worker.database(max_size=len(relays) * 2 + 1) as pool, worker.broker(broker):
            await asyncio.gather(*(relay.run(worker, pool) for relay in relays))
    finally:
        for relay in relays:
            relay.close()


if __name__ == "__main__":
    run_worker("outbox-relay", main, lambda s: s.outbox_relay_metrics_port)
