"""The projector: runs every read model (projections/), each with its own consumer group over its
topic, side by side, and sets the read models' gauges (the only process that does).

Each projection's consumer group commits its offsets after each batch (once the PostgreSQL
transaction that stored the positions is done), so `kafka-consumer-groups --describe --group
projector.<read model>` shows how far behind a read model is; the projector also exports that lag
per partition (gauge shopify_prima_projector_lag_messages, on the dashboard). PostgreSQL's
positions stay what a restarted projection starts from.

It also handles RebuildProjection (shopify-prima replay): the read model's tables and positions
are emptied under its lock, with the end offsets it must reach recorded; its consumer then
seeks back to zero and applies the topic again while everything else goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError

from contracts.platform import RebuildProjection
from projections import PROJECTIONS
from projections.base import Projection
from services.platform.kafka import (
    Consumer,
    Delivery,
    DependencyUnavailable,
    make_broker,
)
from services.platform.metrics import (
    EXCEPTIONS_OPEN,
    PROJECTION_EVENTS,
    PROJECTION_HALTED,
    PROJECTOR_LAG,
    READ_MODEL_ROWS,
)
from services.platform.runner import Worker, run_worker

log = logging.getLogger("shopify_prima.projector")
GROUP = "projector"
GAUGE_INTERVAL_SECONDS = 1.0
LAG_INTERVAL_SECONDS = 5.0  # end offsets and committed offsets asked of Kafka that often


class Projector:
    def __init__(self, pool: asyncpg.Pool, names: list[str] | None = None) -> None:
        self.pool = pool
        self.projections: dict[str, Projection] = {
            name: cls(pool) for name, cls in PROJECTIONS.items() if names is None or name in names}
        self.consumers: dict[str, Consumer] = {}
        self.dirty: set[str] = set(self.projections)

    def attach(self, broker: Any, settings: Any) -> None:
        for projection in self.projections.values():
            self.follow(broker, settings, projection)
        # operator commands only: a new group starts at the end (an old rebuild is not done again)
        Consumer(broker, settings, group=GROUP, topics=[], accepts=(RebuildProjection,), handler=self.on_command,
                 start_from="latest")

    def follow(self, broker: Any, settings: Any, projection: Projection) -> Consumer:
        """The projection's consumer group (`projector.<read model>`) over its topic."""
        self.consumers[projection.name] = Consumer(
            broker, settings, group=projection.group, topics=[projection.topic], accepts=projection.accepts,
            handler=self._applier(projection), operations=False, on_assign=projection.on_assign)
        return self.consumers[projection.name]

    def _applier(self, projection: Projection):
        async def apply(deliveries: list[Delivery[Any]]) -> None:
            await projection.handle(deliveries)
            PROJECTION_EVENTS.labels(projection=projection.name).inc(len(deliveries))
            self.dirty.add(projection.name)
        return apply

    async def on_command(self, deliveries: list[Delivery[Any]]) -> None:
        for delivery in deliveries:
            command: RebuildProjection = delivery.message
            projection = self.projections.get(command.projection)
            if projection is None:
                log.warning("rebuild of %r asked, but this projector has no such projection", command.projection)
                continue
            end = await self.consumers[projection.name].end_offsets()
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", projection.lock)
                await projection.reset(conn, {tp.partition: offset for tp, offset in end.items()}, command.command_id)
            # An idle consumer would wait for a new message before noticing: move it now. A batch
            # already fetched is dropped by the projection (`rebuilt`), which seeks again.
            self.consumers[projection.name].seek(0)
            log.info("rebuilding %s from offset zero (asked by %s): %d messages to apply", projection.name,
                     command.requested_by, sum(end.values()))
            self.dirty.add(projection.name)

    async def update_gauges(self) -> None:
        for name in sorted(self.dirty):
            projection = self.projections[name]
            states, kinds = await projection.counts(self.pool)
            for state, n in states.items():
                READ_MODEL_ROWS.labels(read_model=name, state=state).set(n)
            for kind, n in kinds.items():
                EXCEPTIONS_OPEN.labels(read_model=name, kind=kind).set(n)
            PROJECTION_HALTED.labels(projection=name).set(1 if projection.state.halted else 0)
        self.dirty.clear()

    async def update_lag(self) -> None:
        """Per partition of each projection's topic, the messages not behind the read model yet:
        end offset - next position. The next position is the stored one (PostgreSQL), or the
        group's committed offset when that is further: the consumer commits past messages the
        read model has no business with (PrimaStockLevel for the item master), which it never
        stores a position for."""
        for name, projection in self.projections.items():
            consumer = self.consumers.get(name)
            kafka_consumer = consumer.subscriber.consumer if consumer is not None else None
            if kafka_consumer is None:
                continue
            ends = await consumer.end_offsets()
            stored = await projection.positions(self.pool)
            for tp, end in ends.items():
                position = max(stored.get(tp.partition, 0), await kafka_consumer.committed(tp) or 0)
                PROJECTOR_LAG.labels(projection=name, topic=tp.topic, partition=str(tp.partition)).set(
                    max(end - position, 0))

    async def lag(self, worker: Worker) -> None:
        while not await worker.sleep(LAG_INTERVAL_SECONDS):
            try:
                # Kafka down: aiokafka waits for its coordinator; give up until the next round.
                async with asyncio.timeout(LAG_INTERVAL_SECONDS):
                    await self.update_lag()
            except (TimeoutError, OSError, KafkaError, DependencyUnavailable, asyncpg.PostgresError,
                    asyncpg.InterfaceError) as exc:
                log.debug("lag not updated: %s", exc)

    async def gauges(self, worker: Worker) -> None:
        while not await worker.sleep(GAUGE_INTERVAL_SECONDS):
            try:
                await self.update_gauges()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("gauges not updated: %s", exc)


async def main(worker: Worker) -> None:
    settings = worker.settings
    broker = make_broker(settings, GROUP)
    async with worker.database(max_size=len(PROJECTIONS) + 3) as pool:
        projector = Projector(pool)
        projector.attach(broker, settings)
        async with worker.broker(broker):
            await asyncio.gather(projector.gauges(worker), projector.lag(worker), worker.stopped())


if __name__ == "__main__":
    run_worker(GROUP, main, lambda s: s.projector_metrics_port)
