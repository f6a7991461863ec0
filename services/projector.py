"""Runs the projections (order_sync from the order-events topic, inventory_health from the
stock-events topic): each reads its topic from its own stored positions with its own consumer
and applies batches transactionally; they run side by side. `rebuild` replays one projection
from offset zero."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable
from types import ModuleType

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from projections import inventory_health, order_sync
from services.config import Settings
from services.metrics import EXCEPTIONS_OPEN, INVENTORY_LEVELS, ORDERS_BY_STATE, PROJECTION_POSITION
from services.runtime import start

log = logging.getLogger("shopify_prima.projector")
PROJECTIONS: dict[str, ModuleType] = {order_sync.NAME: order_sync, inventory_health.NAME: inventory_health}
STATES = ("received", "awaiting_payment", "quarantined", "sent", "in_prima", "failed")
ORDER_EXCEPTION_KINDS = ("unmapped_sku", "totals_mismatch", "prima_rejected", "command_parked")
GAUGE_INTERVAL_SECONDS = 1.0


async def _consumer(settings: Settings, topic: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
        client_id="shopify-prima-projector", isolation_level="read_committed", auto_offset_reset="earliest",
    )
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic)]
    if not partitions:
        await consumer.stop()
        raise RuntimeError(f"topic {topic} not found: run `python -m services.setup`")
    consumer.assign(partitions)
    return consumer, partitions


async def topic_partitions(settings: Settings, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="shopify-prima-projector")
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described if d.get("error_code", 0) == 0 for p in d.get("partitions", ()))


def _seek(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], stored: dict[int, int]) -> dict[int, int]:
    for tp in partitions:
        consumer.seek(tp, stored.get(tp.partition, 0))
    return {tp.partition: stored.get(tp.partition, 0) for tp in partitions}


async def update_gauges(pool: asyncpg.Pool, name: str | None = None) -> None:
    """Set the read models' gauges (one projection's, or all)."""
    if name in (None, order_sync.NAME):
        states, kinds = await order_sync.state_counts(pool)
        for state in STATES:
            ORDERS_BY_STATE.labels(state=state).set(states.get(state, 0))
        for kind in ORDER_EXCEPTION_KINDS:
            EXCEPTIONS_OPEN.labels(kind=kind).set(kinds.get(kind, 0))
    if name in (None, inventory_health.NAME):
        for state, n in (await inventory_health.health_counts(pool)).items():
            INVENTORY_LEVELS.labels(state=state).set(n)
        for kind, n in (await inventory_health.exception_counts(pool)).items():
            EXCEPTIONS_OPEN.labels(kind=kind).set(n)


async def _refuse_if_ahead(pool: asyncpg.Pool, projection: ModuleType, consumer: AIOKafkaConsumer,
                           partitions: list[TopicPartition]) -> None:
    async with pool.acquire() as conn:
        stored = await projection.positions(conn)
    end = await consumer.end_offsets(partitions)
    ahead = {tp.partition: (stored[tp.partition], off) for tp, off in end.items() if stored.get(tp.partition, 0) > off}
    if ahead:
        # The topic holds less than the read model has applied: Kafka's data was replaced.
        raise SystemExit(
            f"{projection.NAME} is ahead of {projection.TOPIC} (partition: (stored, end) {ahead}); "
            f"the topic was recreated: rebuild with `shopify-prima replay --projection {projection.NAME}`"
        )


async def _follow(pool: asyncpg.Pool, projection: ModuleType, consumer: AIOKafkaConsumer,
                  partitions: list[TopicPartition], stop: asyncio.Event) -> None:
    """Apply one projection's topic from its stored positions until `stop`."""
    async with pool.acquire() as conn:
        expected = _seek(consumer, partitions, await projection.positions(conn))
        gauges_due = False
        last_gauges = 0.0
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=1000)
            records = [(tp.partition, r.offset, r.value) for tp, rs in fetched.items() for r in rs]
            if records:
                if not await projection.apply_batch(conn, records, expected):
                    log.info("%s: positions moved (a rebuild ran): seeking to the stored positions", projection.NAME)
                    expected = _seek(consumer, partitions, await projection.positions(conn))
                    gauges_due = True
                    continue
                for partition, offset, _ in records:
                    expected[partition] = max(expected.get(partition, 0), offset + 1)
                PROJECTION_POSITION.labels(projection=projection.NAME).inc(len(records))
                gauges_due = True
            # gauges: after a batch, at most once a second while busy; at once when idle
            if gauges_due and (not records or time.monotonic() - last_gauges >= GAUGE_INTERVAL_SECONDS):
                await update_gauges(pool, projection.NAME)
                gauges_due, last_gauges = False, time.monotonic()


async def run_projector(settings: Settings, stop: asyncio.Event, names: Iterable[str] | None = None) -> None:
    """Run every projection (or those named), each with its own consumer over its own topic and
    its own positions, concurrently. Refuses to start if a stored position is past its topic's end."""
    selected = [PROJECTIONS[name] for name in (names or PROJECTIONS)]
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=len(selected) + 2)
    started: list[tuple[ModuleType, AIOKafkaConsumer, list[TopicPartition]]] = []
    try:
        for projection in selected:
            consumer, partitions = await _consumer(settings, projection.TOPIC)
            started.append((projection, consumer, partitions))
            await _refuse_if_ahead(pool, projection, consumer, partitions)
        await update_gauges(pool)
        async with asyncio.TaskGroup() as group:
            for projection, consumer, partitions in started:
                group.create_task(_follow(pool, projection, consumer, partitions, stop), name=projection.NAME)
    finally:
        for _, consumer, _ in started:
            await consumer.stop()
        await pool.close()


async def rebuild(settings: Settings, name: str, progress: Callable[[int, int], None] | None = None) -> int:
    """Empty the projection and apply its topic again from offset zero up to the end offsets
    seen at the start. The projector waits meanwhile (advisory lock) and then carries on from
    the rebuilt positions. Returns the number of events applied."""
    projection = PROJECTIONS[name]
    conn = await asyncpg.connect(settings.database_url)
    consumer, partitions = await _consumer(settings, projection.TOPIC)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", projection.LOCK_KEY)
        async with conn.transaction():
            await projection.reset(conn)
        end = {tp.partition: off for tp, off in (await consumer.end_offsets(partitions)).items()}
        total = sum(end.values())
        _seek(consumer, partitions, {})
        done = 0
        if progress:
            progress(0, total)
        while done < total:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=2000)
            records = [
                (tp.partition, r.offset, r.value) for tp, rs in fetched.items() for r in rs if r.offset < end[tp.partition]
            ]
            if not records:
                if all([await consumer.position(tp) >= end[tp.partition] for tp in partitions]):
                    break  # transaction markers or compaction: nothing more to read
                continue
            await projection.apply_batch(conn, records, None)
            done += len(records)
            if progress:
                progress(done, total)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", projection.LOCK_KEY)
        await consumer.stop()
        await conn.close()


def main() -> None:
    settings = start(lambda s: s.projector_metrics_port)

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_projector(settings, stop)

    asyncio.run(amain())


if __name__ == "__main__":
    main()
